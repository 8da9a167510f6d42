//! The notification inbox: every provider request, stored raw with the verdict zerodrop
//! reached, kept as evidence. A verified notification is kept whole, forever. A refused
//! one that never verified (forged, unsigned, unreadable) is kept as its first
//! [`REFUSED_BODY_BYTES_KEPT`] bytes with the SHA-256 and length of the whole, and may be
//! pruned after its retention ([`prune_refused`]): anyone can send those, and they must
//! not be able to fill the disk.

use crate::{Conn, Result, StoreError, Tx};
use serde::Serialize;

/// What zerodrop concluded about a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Verified and acted on (a payment recorded).
    Accepted,
    /// Verified; the fact was already recorded. Acknowledged the same way.
    Duplicate,
    /// Verified; nothing to do (e.g. WAIT_BUYER_PAY).
    Ignored,
    /// Refused: bad signature, wrong merchant, amount mismatch, malformed.
    Rejected,
    /// Verified, but for an order zerodrop does not know. Kept and retried, never dropped.
    Parked,
    /// A parked notification later matched its order and was applied.
    Resolved,
    /// Processing failed inside zerodrop; the provider was told to retry.
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Duplicate => "duplicate",
            Verdict::Ignored => "ignored",
            Verdict::Rejected => "rejected",
            Verdict::Parked => "parked",
            Verdict::Resolved => "resolved",
            Verdict::Failed => "failed",
        }
    }
}

/// What is kept of a refused, unverified body: enough to read what it claimed (a real
/// notification is a few KiB), not enough for a flood of 64 KiB bodies to fill the disk.
pub const REFUSED_BODY_BYTES_KEPT: usize = 8 * 1024;

pub struct NewNotification<'a> {
    pub provider: &'a str,
    pub remote_addr: Option<String>,
    pub headers: serde_json::Value,
    /// The whole body as received: stored whole, or cut to [`REFUSED_BODY_BYTES_KEPT`]
    /// when `refused_unverified`. Its hash and length are stored either way.
    pub body: &'a [u8],
    /// Refused, and never verified as the provider's: kept in part, prunable.
    pub refused_unverified: bool,
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub order_no: Option<String>,
    pub trade_no: Option<String>,
    pub notify_id: Option<String>,
}

/// Random bits under the millisecond in a notification id: two notifications in the same
/// millisecond collide with odds of one in a million, and a collision only fails (and
/// retries) the transaction.
const ID_RANDOM_BITS: u32 = 20;
/// Rows written per statement at commit ([`COLUMNS_WRITTEN`] parameters each).
const ROWS_PER_INSERT_MAX: usize = 100;

/// Columns each row writes at commit.
const COLUMNS_WRITTEN: usize = 17;

/// Draws of an id before one that repeats a pending id is kept (the commit then fails and
/// the committer's fallback records the batch one by one). With 2^20 ids a millisecond and
/// batches of hundreds, a second draw is already rare.
const ID_DRAWS_MAX: u32 = 8;

/// A time-ordered id: milliseconds since the epoch, then random bits.
fn new_id(now_ms: i64) -> i64 {
    (now_ms << ID_RANDOM_BITS) | i64::from(rand::random::<u32>() >> (32 - ID_RANDOM_BITS))
}

/// A notification row waiting for its transaction's commit.
pub(crate) struct Pending {
    id: i64,
    provider: String,
    received_at_ms: i64,
    remote_addr: Option<String>,
    headers: String,
    body: Vec<u8>,
    body_sha256: String,
    body_bytes: i64,
    refused_unverified: i64,
    verdict: Verdict,
    reason: Option<String>,
    order_no: Option<String>,
    trade_no: Option<String>,
    notify_id: Option<String>,
    processed_at_ms: i64,
}

/// Stores the notification with the caller's transaction: its id now, its row at commit
/// (one insert for a whole batch). Nothing is acknowledged before that commit.
pub fn insert(tx: &mut Tx, n: &NewNotification<'_>, now_ms: i64) -> i64 {
    // A batch shares one `now_ms`: draw again when its random bits repeat an id already in
    // this transaction, or the whole batch's commit would fail on the primary key (it was
    // then recorded one by one, but the batch's work was wasted).
    let mut id = new_id(now_ms);
    for _ in 1..ID_DRAWS_MAX {
        if !tx.notifications.iter().any(|p| p.id == id) {
            break;
        }
        id = new_id(now_ms);
    }
    tx.notifications.push(Pending {
        id,
        provider: n.provider.to_owned(),
        received_at_ms: now_ms,
        remote_addr: n.remote_addr.clone(),
        headers: n.headers.to_string(),
        body: if n.refused_unverified {
            n.body[..n.body.len().min(REFUSED_BODY_BYTES_KEPT)].to_vec()
        } else {
            n.body.to_vec()
        },
        body_sha256: sha256_hex(n.body),
        body_bytes: i64::try_from(n.body.len()).unwrap_or(i64::MAX),
        refused_unverified: i64::from(n.refused_unverified),
        verdict: n.verdict,
        reason: n.reason.clone(),
        order_no: n.order_no.clone(),
        trade_no: n.trade_no.clone(),
        notify_id: n.notify_id.clone(),
        processed_at_ms: now_ms,
    });
    id
}

pub async fn set_verdict(tx: &mut Tx, id: i64, verdict: Verdict, reason: Option<&str>, now_ms: i64) -> Result<()> {
    if let Some(pending) = tx.notifications.iter_mut().find(|p| p.id == id) {
        pending.verdict = verdict;
        pending.reason = reason.map(str::to_owned);
        pending.processed_at_ms = now_ms;
        return Ok(());
    }
    sqlx::query("UPDATE notifications SET verdict = $1, reason = $2, processed_at_ms = $3 WHERE id = $4")
        .bind(verdict.as_str())
        .bind(reason)
        .bind(now_ms)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Writes the transaction's pending notifications, a hundred rows per statement.
pub(crate) async fn flush(tx: &mut Tx) -> Result<()> {
    let pending = std::mem::take(&mut tx.notifications);
    let batch = if pending.iter().any(|n| n.verdict != Verdict::Rejected) { Some(tx.seal_batch()) } else { None };
    for chunk in pending.chunks(ROWS_PER_INSERT_MAX) {
        let mut sql = String::from(
            "INSERT INTO notifications (id, provider, received_at_ms, remote_addr, headers, body, body_sha256, \
             body_bytes, refused_unverified, verdict, reason, order_no, trade_no, notify_id, processed_at_ms, seal, \
             seal_batch) \
             VALUES ",
        );
        for i in 0..chunk.len() {
            let params: Vec<String> = (1..=COLUMNS_WRITTEN).map(|k| format!("${}", i * COLUMNS_WRITTEN + k)).collect();
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("({})", params.join(", ")));
        }
        let mut insert = sqlx::query(&sql);
        let mut seals = Vec::new();
        for n in chunk {
            // Verified notifications are evidence and sealed; refused ones are not (they
            // prove nothing about money, and are pruned after their retention).
            let seal = (n.verdict != Verdict::Rejected).then(|| {
                let seal = crate::seal::content::notification(
                    n.id,
                    &n.provider,
                    n.received_at_ms,
                    n.remote_addr.as_deref(),
                    &n.headers,
                    &n.body,
                );
                seals.push(seal.clone());
                seal
            });
            let sealed_batch = seal.as_ref().and(batch.clone());
            insert = insert
                .bind(n.id)
                .bind(n.provider.clone())
                .bind(n.received_at_ms)
                .bind(n.remote_addr.clone())
                .bind(n.headers.clone())
                .bind(n.body.clone())
                .bind(n.body_sha256.clone())
                .bind(n.body_bytes)
                .bind(n.refused_unverified)
                .bind(n.verdict.as_str())
                .bind(n.reason.clone())
                .bind(n.order_no.clone())
                .bind(n.trade_no.clone())
                .bind(n.notify_id.clone())
                .bind(n.processed_at_ms)
                .bind(seal)
                .bind(sealed_batch);
        }
        insert.execute(&mut **tx).await?;
        for seal in seals {
            tx.sealed_in_batch(seal);
        }
    }
    Ok(())
}

#[derive(Clone, Debug, Serialize)]
pub struct NotificationRow {
    pub id: i64,
    pub provider: String,
    pub received_at_ms: i64,
    pub verdict: String,
    pub reason: Option<String>,
    pub order_no: Option<String>,
    pub trade_no: Option<String>,
    pub notify_id: Option<String>,
    #[serde(skip)]
    pub headers: String,
    /// As stored: whole, or its first [`REFUSED_BODY_BYTES_KEPT`] bytes when refused
    /// unverified (compare [`NotificationRow::body_bytes`]).
    #[serde(skip)]
    pub body: Vec<u8>,
    /// The whole body's SHA-256 (hex) and length (absent on rows stored before they were kept).
    pub body_sha256: Option<String>,
    pub body_bytes: Option<i64>,
    /// 1: refused and never verified (prunable evidence); 0: not; absent on older rows.
    pub refused_unverified: Option<i64>,
}

const COLUMNS: &str = "id, provider, received_at_ms, verdict, reason, order_no, trade_no, notify_id, headers, body, \
                       body_sha256, body_bytes, refused_unverified";

pub async fn get(conn: &mut Conn, id: i64) -> Result<NotificationRow> {
    let row = sqlx::query_as::<_, NotificationRecord>(&format!("SELECT {COLUMNS} FROM notifications WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(row.into())
}

pub async fn for_order_no(conn: &mut Conn, order_no: &str) -> Result<Vec<NotificationRow>> {
    let sql = format!("SELECT {COLUMNS} FROM notifications WHERE order_no = $1 ORDER BY id");
    let rows = sqlx::query_as::<_, NotificationRecord>(&sql).bind(order_no).fetch_all(conn).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn count_by_verdict(conn: &mut Conn) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query_as::<_, (String, i64)>(
        "SELECT verdict, COUNT(*) FROM notifications GROUP BY verdict ORDER BY verdict",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// A `notifications` row as stored ([`COLUMNS`]). Every column is already in its public
/// form; the record keeps the row type free of the database mapping.
#[derive(sqlx::FromRow)]
struct NotificationRecord {
    id: i64,
    provider: String,
    received_at_ms: i64,
    verdict: String,
    reason: Option<String>,
    order_no: Option<String>,
    trade_no: Option<String>,
    notify_id: Option<String>,
    headers: String,
    /// BLOB on SQLite, BYTEA on PostgreSQL.
    body: Vec<u8>,
    body_sha256: Option<String>,
    body_bytes: Option<i64>,
    refused_unverified: Option<i64>,
}

impl From<NotificationRecord> for NotificationRow {
    fn from(r: NotificationRecord) -> NotificationRow {
        NotificationRow {
            id: r.id,
            provider: r.provider,
            received_at_ms: r.received_at_ms,
            verdict: r.verdict,
            reason: r.reason,
            order_no: r.order_no,
            trade_no: r.trade_no,
            notify_id: r.notify_id,
            headers: r.headers,
            body: r.body,
            body_sha256: r.body_sha256,
            body_bytes: r.body_bytes,
            refused_unverified: r.refused_unverified,
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// Which rows are refused, unverified evidence: those marked so, and rows stored before
/// the mark existed whose reason says they never verified (the same test the database's
/// delete trigger makes; see migration 0005).
const PRUNABLE: &str = "(refused_unverified = 1 OR (refused_unverified IS NULL AND verdict = 'rejected' AND (\
    reason LIKE 'bad_signature:%' OR reason LIKE 'missing_signature:%' OR reason LIKE 'unknown_provider:%' \
    OR reason LIKE 'body_too_large:%' OR reason LIKE 'malformed: not a form body%' \
    OR reason LIKE 'malformed: field % appears twice')))";

/// The shortest retention the database allows: its delete trigger refuses younger rows.
pub const REFUSED_RETENTION_MS_MIN: i64 = 7 * 86_400_000;

/// Deletes up to `limit` refused, unverified notifications received before `before_ms`
/// (oldest first), in the caller's transaction; returns how many went. Verified
/// notifications are never deleted (the database refuses it).
pub async fn prune_refused(tx: &mut Tx, before_ms: i64, limit: i64) -> Result<u64> {
    let sql = format!(
        "DELETE FROM notifications WHERE id IN \
         (SELECT id FROM notifications WHERE {PRUNABLE} AND received_at_ms < $1 ORDER BY received_at_ms LIMIT $2)"
    );
    let deleted = sqlx::query(&sql).bind(before_ms).bind(limit).execute(&mut **tx).await?.rows_affected();
    Ok(deleted)
}
