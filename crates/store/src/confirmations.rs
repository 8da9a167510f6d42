//! Delivery confirmations from the platform's endpoint, each accepted once: one row per
//! (order, attempt), append-only. A confirmation that finds its row already there is a
//! replay (an attacker's, or an endpoint resending) and changes nothing.

use crate::{Conn, Result, Tx};

/// A confirmation as it is stored.
pub struct NewConfirmation<'a> {
    pub order_id: &'a str,
    /// The delivery attempt it confirms (the `attempt` of zerodrop's request).
    pub attempt_id: &'a str,
    /// `delivered` or `failed`.
    pub status: &'a str,
    pub reason: &'a str,
    /// The `X-Zerodrop-Timestamp` it was signed with.
    pub signed_at_secs: i64,
    pub signature: &'a str,
    /// Hex SHA-256 of the signed body.
    pub body_sha256: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ConfirmationRow {
    pub id: i64,
    pub order_id: String,
    pub attempt_id: String,
    pub status: String,
    pub reason: String,
    pub signed_at_secs: i64,
    pub body_sha256: String,
    pub received_at_ms: i64,
}

/// Stores the confirmation in the caller's transaction; `false` when one for the same
/// order and attempt was already accepted (nothing is written then).
pub async fn insert(tx: &mut Tx, c: &NewConfirmation<'_>, now_ms: i64) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO delivery_confirmations \
         (order_id, attempt_id, status, reason, signed_at_secs, signature, body_sha256, received_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (order_id, attempt_id) DO NOTHING",
    )
    .bind(c.order_id)
    .bind(c.attempt_id)
    .bind(c.status)
    .bind(c.reason)
    .bind(c.signed_at_secs)
    .bind(c.signature)
    .bind(c.body_sha256)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// The accepted confirmation of this order's attempt, if any.
pub async fn find(conn: &mut Conn, order_id: &str, attempt_id: &str) -> Result<Option<ConfirmationRow>> {
    let row = sqlx::query_as::<_, ConfirmationRow>(
        "SELECT id, order_id, attempt_id, status, reason, signed_at_secs, body_sha256, received_at_ms \
         FROM delivery_confirmations WHERE order_id = $1 AND attempt_id = $2",
    )
    .bind(order_id)
    .bind(attempt_id)
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// Every accepted confirmation of an order, oldest first.
pub async fn for_order(conn: &mut Conn, order_id: &str) -> Result<Vec<ConfirmationRow>> {
    let rows = sqlx::query_as::<_, ConfirmationRow>(
        "SELECT id, order_id, attempt_id, status, reason, signed_at_secs, body_sha256, received_at_ms \
         FROM delivery_confirmations WHERE order_id = $1 ORDER BY id",
    )
    .bind(order_id)
    .fetch_all(conn)
    .await?;
    Ok(rows)
}
