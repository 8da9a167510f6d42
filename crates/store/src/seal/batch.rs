//! Sealed batches: every row a transaction sealed, covered by one head.
//!
//! A transaction used to list each stream it moved in its `seal_pending` row: an order's
//! events, two accounts' entries, and a payment, a charge, a delivery and a notification
//! (each a stream of one row), about 90 bytes a head and six heads a delivery, hundreds
//! per committed batch of notifications. That row is written at commit while the hot
//! issuance account is locked, and on PostgreSQL its bytes lengthened the one section
//! every committer shares. Now every sealed row but an operator action (rare, and still
//! headed per stream) and an entry of a shared account (issuance, compensation, loss:
//! written under their locks after the pending row, and checkpointed by their accounts'
//! heads, which the sealing job reads) names its transaction's batch (random bytes, the same for all of
//! them), and the transaction records one head: `batch:<hex id>`, how many rows, and the
//! digest of their seals, sorted.
//!
//! A checkpoint covers that head like any other. The audit gathers the rows naming each
//! checkpointed batch and recomputes its count and digest, so a row edited and re-sealed
//! (with every later row of its chain), removed, or moved to another batch after a
//! checkpoint changes what the key signed. Rows sealed before batches name none, and are
//! held to the per-stream heads their checkpoints recorded.
//!
//! The id is drawn at random rather than counted: a counter costs a statement (or a
//! sequence, which SQLite lacks). With 128 random bits, two transactions drawing the
//! same id is out of reach (about n²/2^129 after n transactions); if it happened, the
//! audit would report both batches as changed, never pass an edit.

use super::verify::Tally;
use super::{link, Field, GENESIS};
use std::collections::HashMap;

/// Bytes of a batch id: random, so collisions need no coordination (see the module doc).
pub const BATCH_ID_BYTES: usize = 16;

const STREAM_PREFIX: &str = "batch:";

/// A transaction's batch: its id, drawn when its first sealed row is written, and the
/// seals of the rows that name it.
#[derive(Default)]
pub(crate) struct Batch {
    id: Option<Vec<u8>>,
    seals: Vec<String>,
}

impl Batch {
    /// The id the transaction's one-row records name.
    pub(crate) fn id(&mut self) -> Vec<u8> {
        self.id.get_or_insert_with(|| rand::random::<[u8; BATCH_ID_BYTES]>().to_vec()).clone()
    }

    pub(crate) fn add(&mut self, seal: String) {
        self.seals.push(seal);
    }

    /// The head the batch adds to the transaction's pending row, if it sealed anything.
    pub(crate) fn take_head(&mut self) -> Option<super::Head> {
        let seals = std::mem::take(&mut self.seals);
        let id = self.id.take()?;
        if seals.is_empty() {
            return None;
        }
        let count = seals.len() as i64;
        Some(super::Head(stream(&id), count, digest(&id, seals)))
    }
}

/// The stream name under which a batch's head is checkpointed.
pub fn stream(id: &[u8]) -> String {
    format!("{STREAM_PREFIX}{}", hex::encode(id))
}

/// The batch id a head's stream names, if it is a batch's.
pub fn id_of(stream: &str) -> Option<Vec<u8>> {
    stream.strip_prefix(STREAM_PREFIX).and_then(|h| hex::decode(h).ok())
}

/// The digest of a batch: its id and its rows' seals, in sorted order (rows are written by
/// several statements, and the audit reads them table by table).
pub fn digest(id: &[u8], mut seals: Vec<String>) -> String {
    seals.sort_unstable();
    let mut fields = Vec::with_capacity(seals.len() + 1);
    fields.push(Field::Bytes(id));
    fields.extend(seals.iter().map(|s| Field::Text(s)));
    link("seal_batch", GENESIS, &fields)
}

/// Rows of a changed batch named in its failure line; the rest are counted.
const BATCH_ROWS_NAMED_MAX: usize = 8;

/// Holds every checkpointed batch head to the rows naming that batch now: the same count,
/// and the same digest over their seals.
pub(super) fn check(
    heads: &HashMap<String, Vec<(i64, String)>>,
    rows: &HashMap<Vec<u8>, Vec<(String, String)>>,
    tally: &mut Tally,
) {
    for (name, recorded) in heads {
        let Some(id) = id_of(name) else { continue };
        let now = rows.get(&id).map(Vec::as_slice).unwrap_or_default();
        let now_digest = digest(&id, now.iter().map(|(_, seal)| seal.clone()).collect());
        for (count, sealed) in recorded {
            if *count != now.len() as i64 || *sealed != now_digest {
                tally.fail(|| {
                    let mut named: Vec<&str> = now.iter().map(|(s, _)| s.as_str()).collect();
                    named.sort_unstable();
                    named.dedup();
                    let more = named.len().saturating_sub(BATCH_ROWS_NAMED_MAX);
                    named.truncate(BATCH_ROWS_NAMED_MAX);
                    let rows = match (named.is_empty(), more) {
                        (true, _) => "no row names it now".to_owned(),
                        (false, 0) => named.join(", "),
                        (false, more) => format!("{} and {more} more", named.join(", ")),
                    };
                    format!(
                        "{name} ({rows}): its rows differ from the sealed checkpoint ({count} sealed, {} now)",
                        now.len()
                    )
                });
            }
        }
    }
}

/// The batch a sealed record was written in (the stream it is named by and its place in
/// it, as proofs name records), or `None` for a record sealed before batches (migration
/// 0008) or in a stream not batched (operator actions): those are checkpointed under
/// their own stream's head.
pub async fn of_record(conn: &mut crate::Conn, stream: &str, seq: i64) -> crate::Result<Option<Vec<u8>>> {
    let (sql, key): (&str, &str) = if let Some(order) = stream.strip_prefix("order:") {
        ("SELECT seal_batch FROM order_events WHERE order_id = $1 AND seq = $2", order)
    } else if let Some(account) = stream.strip_prefix("account:") {
        ("SELECT seal_batch FROM ledger_entries WHERE account_id = $1 AND seal_seq = $2", account)
    } else if let Some(order) = stream.strip_prefix("payment:") {
        ("SELECT seal_batch FROM payments WHERE order_id = $1 AND $2 = $2", order)
    } else if let Some(order) = stream.strip_prefix("delivery:") {
        ("SELECT seal_batch FROM deliveries WHERE order_id = $1 AND $2 = $2", order)
    } else if let Some(refund) = stream.strip_prefix("refund:") {
        ("SELECT seal_batch FROM refunds WHERE id = $1 AND $2 = $2", refund)
    } else if let Some(rest) = stream.strip_prefix("charge:") {
        let Some((provider, trade_no)) = rest.split_once(':') else { return Ok(None) };
        let batch: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT seal_batch FROM charges WHERE provider = $1 AND trade_no = $2")
                .bind(provider)
                .bind(trade_no)
                .fetch_optional(conn)
                .await?;
        return Ok(batch.flatten());
    } else if let Some(id) = stream.strip_prefix("notification:") {
        let Ok(id) = id.parse::<i64>() else { return Ok(None) };
        let batch: Option<Option<Vec<u8>>> = sqlx::query_scalar("SELECT seal_batch FROM notifications WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
        return Ok(batch.flatten());
    } else {
        return Ok(None);
    };
    let batch: Option<Option<Vec<u8>>> = sqlx::query_scalar(sql).bind(key).bind(seq).fetch_optional(conn).await?;
    Ok(batch.flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_digest_binds_its_id_and_every_seal_in_any_order() {
        let id = [7_u8; BATCH_ID_BYTES];
        let seals = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let d = digest(&id, seals.clone());
        assert_eq!(d, digest(&id, vec!["c".into(), "a".into(), "b".into()]), "order does not matter");
        assert_ne!(d, digest(&id, vec!["a".into(), "b".into()]), "a row removed");
        assert_ne!(d, digest(&id, vec!["a".into(), "b".into(), "d".into()]), "a row re-sealed");
        assert_ne!(d, digest(&[8_u8; BATCH_ID_BYTES], seals), "another batch");
        assert_eq!(id_of(&stream(&id)), Some(id.to_vec()));
        assert_eq!(id_of("payment:x"), None);
    }

    #[test]
    fn a_transaction_without_one_row_records_adds_no_head() {
        let mut batch = Batch::default();
        assert!(batch.take_head().is_none());
        let id = batch.id();
        assert!(batch.take_head().is_none(), "an id drawn for a row not written");
        assert_ne!(batch.id(), id, "each transaction's batch is its own");
        batch.add("s".into());
        let head = batch.take_head().unwrap();
        assert_eq!(head.1, 1);
        assert!(head.0.starts_with(STREAM_PREFIX));
    }
}
