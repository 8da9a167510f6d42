//! Messages a user can read (`GET /v1/users/{id}/messages`): one-time codes and notices,
//! newest first, in bounded pages. Stored in the transaction that made them, so a code
//! the user was told about always exists.

use crate::{Conn, Result, Tx};
use serde::Serialize;
use zerodrop_domain::{Texts, UserId};

/// Longest page of messages.
pub const PAGE_ROWS_MAX: i64 = 100;

#[derive(Clone, Debug, Serialize)]
pub struct MessageRow {
    pub id: i64,
    pub at_ms: i64,
    pub kind: String,
    pub body: Texts,
}

pub async fn insert(tx: &mut Tx, user_id: &UserId, kind: &str, body: &Texts, now_ms: i64) -> Result<()> {
    sqlx::query("INSERT INTO user_messages (user_id, at_ms, kind, body) VALUES ($1, $2, $3, $4)")
        .bind(user_id.as_str())
        .bind(now_ms)
        .bind(kind)
        .bind(serde_json::to_string(body)?)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A page of the user's messages, newest first: those older than `before_id` (all when
/// `None`), at most `limit` (clamped to [`PAGE_ROWS_MAX`]).
pub async fn page(conn: &mut Conn, user_id: &UserId, before_id: Option<i64>, limit: i64) -> Result<Vec<MessageRow>> {
    let rows = sqlx::query_as::<_, (i64, i64, String, String)>(
        "SELECT id, at_ms, kind, body FROM user_messages WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(user_id.as_str())
    .bind(before_id.unwrap_or(i64::MAX))
    .bind(limit.clamp(1, PAGE_ROWS_MAX))
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(id, at_ms, kind, body)| Ok(MessageRow { id, at_ms, kind, body: serde_json::from_str(&body)? }))
        .collect()
}

/// Stores a message at most once per `dedupe_key` (a reminder per agreement, period and
/// kind): `Some(id)` when stored now, `None` when a message with that key exists already.
pub async fn insert_once(
    tx: &mut Tx,
    user_id: &UserId,
    kind: &str,
    body: &Texts,
    dedupe_key: &str,
    now_ms: i64,
) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar::<_, i64>(
        "INSERT INTO user_messages (user_id, at_ms, kind, body, dedupe_key) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
    )
    .bind(user_id.as_str())
    .bind(now_ms)
    .bind(kind)
    .bind(serde_json::to_string(body)?)
    .bind(dedupe_key)
    .fetch_optional(&mut **tx)
    .await?)
}

/// One message with its user, for the outbox's delivery.
pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<(UserId, MessageRow)>> {
    let row = sqlx::query_as::<_, (String, i64, i64, String, String)>(
        "SELECT user_id, id, at_ms, kind, body FROM user_messages WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    let Some((user_id, id, at_ms, kind, body)) = row else { return Ok(None) };
    let user_id =
        UserId::parse(&user_id).map_err(|_| crate::StoreError::Corrupt(format!("user message {id}: user id")))?;
    Ok(Some((user_id, MessageRow { id, at_ms, kind, body: serde_json::from_str(&body)? })))
}
