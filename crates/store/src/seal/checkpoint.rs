//! Checkpoints: the sealing job folds the heads committed transactions moved into one
//! signed record that names the checkpoint before it.
//!
//! A checkpoint's hash covers its number, time, the previous checkpoint's hash, and the
//! root of its heads; its signature is the seal key's over the same message. Two
//! instances sealing at once race on the next number: one commits, the other's
//! transaction fails and its heads wait for the next run.

use super::key::SealKey;
use super::{link, sha256_hex, Field, Head, GENESIS};
use crate::{Result, Store, StoreError};
use serde::{Deserialize, Serialize};

/// Pending rows (one per committed transaction) folded into one checkpoint. A backlog
/// larger than this is sealed as several checkpoints in one run, so a checkpoint's size
/// stays bounded whatever the load.
pub const PENDING_ROWS_PER_CHECKPOINT_MAX: i64 = 5_000;
/// Pending rows deleted per statement once sealed (far below both engines' parameter limits).
const DELETES_PER_STATEMENT_MAX: usize = 500;
/// Checkpoints one run writes at most; what is left waits for the next run.
pub const CHECKPOINTS_PER_RUN_MAX: usize = 20;

/// A checkpoint as stored and exported (the heads themselves stay in the database; the
/// seal log carries their root, which binds them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub id: i64,
    pub at_ms: i64,
    pub prev_hash: String,
    pub heads_root: String,
    pub heads_count: i64,
    pub hash: String,
    pub public_key: String,
    pub signature: String,
}

impl Checkpoint {
    /// What the hash and the signature cover.
    pub fn message(id: i64, at_ms: i64, prev_hash: &str, heads_root: &str, heads_count: i64) -> String {
        format!("zerodrop-checkpoint-v1\n{id}\n{at_ms}\n{prev_hash}\n{heads_root}\n{heads_count}\n")
    }

    fn own_message(&self) -> String {
        Checkpoint::message(self.id, self.at_ms, &self.prev_hash, &self.heads_root, self.heads_count)
    }

    /// Whether the hash is the hash of its fields.
    pub fn hash_is_own(&self) -> bool {
        sha256_hex(self.own_message().as_bytes()) == self.hash
    }

    /// Whether `public_key` signed it.
    pub fn signed_by(&self, public_key: &str) -> bool {
        super::key::verify(public_key, self.own_message().as_bytes(), &self.signature)
    }
}

/// The root of a checkpoint's heads (sorted by stream): unambiguous, like a row's seal.
pub fn heads_root(heads: &[Head]) -> String {
    let mut fields = Vec::with_capacity(heads.len() * 3);
    for Head(stream, seq, seal) in heads {
        fields.push(Field::Text(stream));
        fields.push(Field::Int(*seq));
        fields.push(Field::Text(seal));
    }
    link("checkpoint_heads", GENESIS, &fields)
}

/// Writes checkpoints for everything committed since the last one (at least one, empty if
/// nothing changed: an empty checkpoint still proves the record did not move). Returns
/// what it wrote, in order.
pub async fn seal(store: &Store, key: &SealKey, now_ms: i64) -> Result<Vec<Checkpoint>> {
    let mut written = Vec::new();
    while written.len() < CHECKPOINTS_PER_RUN_MAX {
        let (checkpoint, more) = seal_once(store, key, now_ms).await?;
        written.push(checkpoint);
        if !more {
            break;
        }
    }
    Ok(written)
}

async fn seal_once(store: &Store, key: &SealKey, now_ms: i64) -> Result<(Checkpoint, bool)> {
    let mut tx = store.begin().await?;
    let rows = sqlx::query_as::<_, (i64, String)>("SELECT id, heads FROM seal_pending ORDER BY id LIMIT $1")
        .bind(PENDING_ROWS_PER_CHECKPOINT_MAX)
        .fetch_all(&mut *tx)
        .await?;
    let more = rows.len() as i64 == PENDING_ROWS_PER_CHECKPOINT_MAX;
    let mut furthest: std::collections::BTreeMap<String, (i64, String)> = Default::default();
    for (_, text) in &rows {
        let heads: Vec<Head> = serde_json::from_str(text).map_err(StoreError::Json)?;
        for Head(stream, seq, seal) in heads {
            let slot = furthest.entry(stream).or_insert((seq, seal.clone()));
            if seq > slot.0 {
                *slot = (seq, seal);
            }
        }
    }
    // The shared accounts' entries name no batch (they are written under the hottest
    // locks, after the pending row: see `ledger::flush`): their chains' heads are read
    // here, one consistent statement, and vouch for every entry before them.
    for Head(stream, seq, seal) in shared_account_heads(&mut tx).await? {
        let slot = furthest.entry(stream).or_insert((seq, seal.clone()));
        if seq > slot.0 {
            *slot = (seq, seal);
        }
    }
    let heads: Vec<Head> = furthest.into_iter().map(|(stream, (seq, seal))| Head(stream, seq, seal)).collect();
    let last = sqlx::query_as::<_, (i64, String)>("SELECT id, hash FROM seal_checkpoints ORDER BY id DESC LIMIT 1")
        .fetch_optional(&mut *tx)
        .await?;
    let (id, prev_hash) = match last {
        Some((id, hash)) => (id + 1, hash),
        None => (1, GENESIS.to_owned()),
    };
    let heads_root = heads_root(&heads);
    let heads_count = heads.len() as i64;
    let message = Checkpoint::message(id, now_ms, &prev_hash, &heads_root, heads_count);
    let checkpoint = Checkpoint {
        id,
        at_ms: now_ms,
        prev_hash,
        heads_root,
        heads_count,
        hash: sha256_hex(message.as_bytes()),
        public_key: key.public_base64(),
        signature: key.sign(message.as_bytes()),
    };
    sqlx::query(
        "INSERT INTO seal_checkpoints (id, at_ms, prev_hash, heads_root, heads_count, heads, hash, public_key, \
             signature) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(checkpoint.id)
    .bind(checkpoint.at_ms)
    .bind(&checkpoint.prev_hash)
    .bind(&checkpoint.heads_root)
    .bind(checkpoint.heads_count)
    .bind(serde_json::to_string(&heads).map_err(StoreError::Json)?)
    .bind(&checkpoint.hash)
    .bind(&checkpoint.public_key)
    .bind(&checkpoint.signature)
    .execute(&mut *tx)
    .await?;
    // By id, not by range: on PostgreSQL a row with a lower id may commit after this read.
    for chunk in rows.chunks(DELETES_PER_STATEMENT_MAX) {
        let params: Vec<String> = (1..=chunk.len()).map(|k| format!("${k}")).collect();
        let sql = format!("DELETE FROM seal_pending WHERE id IN ({})", params.join(", "));
        let mut delete = sqlx::query(&sql);
        for (id, _) in chunk {
            delete = delete.bind(*id);
        }
        delete.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok((checkpoint, more))
}

/// The account kinds that may go negative, as the shared accounts' index (migration 0009)
/// names them.
const SHARED_KINDS_SQL: &str = "('issuance', 'compensation', 'loss')";

/// The chain heads of the accounts that may go negative (a currency's issuance, the
/// compensation and loss accounts): a handful, found by their kind's own index.
async fn shared_account_heads(tx: &mut crate::Tx) -> Result<Vec<Head>> {
    let sql = format!(
        "SELECT a.id, a.seal_seq, e.seal FROM ledger_accounts a \
         JOIN ledger_entries e ON e.account_id = a.id AND e.seal_seq = a.seal_seq \
         WHERE a.kind IN {SHARED_KINDS_SQL} AND a.seal_seq > 0"
    );
    let rows = sqlx::query_as::<_, (String, i64, Option<String>)>(&sql).fetch_all(&mut **tx).await?;
    Ok(rows
        .into_iter()
        .map(|(id, seq, seal)| Head(super::stream::entries(&id), seq, seal.unwrap_or_default()))
        .collect())
}

/// Every stored checkpoint after `after_id`, in order, at most `limit`.
pub async fn list(conn: &mut crate::Conn, after_id: i64, limit: i64) -> Result<Vec<Checkpoint>> {
    let rows = sqlx::query_as::<_, CheckpointRecord>(
        "SELECT id, at_ms, prev_hash, heads_root, heads_count, hash, public_key, signature FROM seal_checkpoints \
         WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after_id)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// A checkpoint's heads as stored.
pub async fn heads(conn: &mut crate::Conn, id: i64) -> Result<Vec<Head>> {
    let text = sqlx::query_scalar::<_, String>("SELECT heads FROM seal_checkpoints WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    serde_json::from_str(&text).map_err(StoreError::Json)
}

/// How many transactions' heads wait for the sealing job, and since when.
pub async fn pending(conn: &mut crate::Conn) -> Result<(i64, Option<i64>)> {
    let row = sqlx::query_as::<_, (i64, Option<i64>)>("SELECT COUNT(*), MIN(at_ms) FROM seal_pending")
        .fetch_one(conn)
        .await?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use zerodrop_domain::ledger::AccountKind;

    /// The kinds whose heads the sealing job reads are exactly those whose entries name no
    /// batch: the accounts that may go negative (`ledger::flush` writes them last).
    #[test]
    fn the_shared_kinds_are_the_ones_that_may_go_negative() {
        let sql = super::SHARED_KINDS_SQL;
        for kind in [
            AccountKind::Wallet,
            AccountKind::Issuance,
            AccountKind::Creator,
            AccountKind::Platform,
            AccountKind::Compensation,
            AccountKind::Loss,
        ] {
            let named = sql.contains(&format!("'{}'", kind.as_str()));
            assert_eq!(named, kind.may_go_negative(), "{}", kind.as_str());
        }
    }
}

#[derive(sqlx::FromRow)]
struct CheckpointRecord {
    id: i64,
    at_ms: i64,
    prev_hash: String,
    heads_root: String,
    heads_count: i64,
    hash: String,
    public_key: String,
    signature: String,
}

impl From<CheckpointRecord> for Checkpoint {
    fn from(r: CheckpointRecord) -> Checkpoint {
        Checkpoint {
            id: r.id,
            at_ms: r.at_ms,
            prev_hash: r.prev_hash,
            heads_root: r.heads_root,
            heads_count: r.heads_count,
            hash: r.hash,
            public_key: r.public_key,
            signature: r.signature,
        }
    }
}
