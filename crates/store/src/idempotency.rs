//! Idempotency keys: the first response to a request is stored with a hash of its body,
//! so a replay returns the same response and a different body under the same key is refused.

use crate::{Conn, Result, Tx};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub request_hash: String,
    pub status_code: u16,
    pub response: String,
}

pub async fn get(conn: &mut Conn, scope: &str, key: &str) -> Result<Option<Stored>> {
    let row = sqlx::query_as::<_, StoredRecord>(
        "SELECT request_hash, status_code, response FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Into::into))
}

/// An `idempotency_keys` row as [`get`] reads it.
#[derive(sqlx::FromRow)]
struct StoredRecord {
    request_hash: String,
    /// BIGINT: the `Any` driver has no unsigned types.
    status_code: i64,
    response: String,
}

impl From<StoredRecord> for Stored {
    fn from(r: StoredRecord) -> Stored {
        // `put` only ever stores a u16; a value out of range answers as a server error instead of failing the read.
        Stored {
            request_hash: r.request_hash,
            status_code: u16::try_from(r.status_code).unwrap_or(500),
            response: r.response,
        }
    }
}

/// Stores the first response. `false` means another request with the key won the race;
/// the caller must roll back and return what that one stored.
pub async fn put(tx: &mut Tx, scope: &str, key: &str, stored: &Stored, now_ms: i64) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, key) DO NOTHING",
    )
    .bind(scope)
    .bind(key)
    .bind(&stored.request_hash)
    .bind(i64::from(stored.status_code))
    .bind(&stored.response)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}
