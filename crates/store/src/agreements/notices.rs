//! Agreement notifications (sign, unsign) kept as evidence: stored raw before anything
//! acts on them, then given a verdict. Whatever acts on one reads it back and verifies it
//! again (`verify_stored_agreement`), so evidence edited in the database is never acted on.

use crate::{Conn, Result, Tx};
use serde::Serialize;

/// Longest reason kept: provider error texts can be long.
pub const REASON_CHARS_MAX: usize = 500;

/// What zerodrop concluded about an agreement notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeVerdict {
    /// Stored, not yet judged (the process stopped in between: judged again).
    Received,
    /// Verified and applied.
    Accepted,
    /// Verified; already applied (a duplicate) or out of order: recorded, nothing changed.
    Ignored,
    /// Refused: bad signature, malformed.
    Rejected,
    /// Verified, for an agreement zerodrop does not know.
    Unknown,
}

impl NoticeVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeVerdict::Received => "received",
            NoticeVerdict::Accepted => "accepted",
            NoticeVerdict::Ignored => "ignored",
            NoticeVerdict::Rejected => "rejected",
            NoticeVerdict::Unknown => "unknown",
        }
    }
}

pub struct NewNotice<'a> {
    pub provider: &'a str,
    pub remote_addr: Option<String>,
    pub headers: serde_json::Value,
    pub body: &'a [u8],
}

#[derive(Clone, Debug)]
pub struct NoticeRow {
    pub id: i64,
    pub provider: String,
    pub received_at_ms: i64,
    pub body: Vec<u8>,
    pub verdict: String,
    pub reason: Option<String>,
    pub external_agreement_no: Option<String>,
    pub notify_type: Option<String>,
    pub processed_at_ms: Option<i64>,
}

/// Stores a notification as received (verdict `received`); returns its id.
pub async fn insert(tx: &mut Tx, notice: &NewNotice<'_>, now_ms: i64) -> Result<i64> {
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO agreement_notifications (provider, received_at_ms, remote_addr, headers, body, verdict) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(notice.provider)
    .bind(now_ms)
    .bind(&notice.remote_addr)
    .bind(serde_json::to_string(&notice.headers)?)
    .bind(notice.body.to_vec())
    .bind(NoticeVerdict::Received.as_str())
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

/// What was concluded: the verdict, why, and what the (verified) notification named.
pub struct Judgement<'a> {
    pub verdict: NoticeVerdict,
    pub reason: Option<&'a str>,
    pub external_agreement_no: Option<&'a str>,
    pub notify_type: Option<&'a str>,
    pub notify_id: Option<&'a str>,
}

pub async fn judge(tx: &mut Tx, id: i64, judgement: &Judgement<'_>, now_ms: i64) -> Result<()> {
    let reason = judgement.reason.map(|r| r.chars().take(REASON_CHARS_MAX).collect::<String>());
    sqlx::query(
        "UPDATE agreement_notifications SET verdict = $1, reason = $2, external_agreement_no = $3, \
             notify_type = $4, notify_id = $5, processed_at_ms = $6 WHERE id = $7",
    )
    .bind(judgement.verdict.as_str())
    .bind(reason)
    .bind(judgement.external_agreement_no)
    .bind(judgement.notify_type)
    .bind(judgement.notify_id)
    .bind(now_ms)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<NoticeRow>> {
    let row = sqlx::query_as::<_, NoticeRecord>(
        "SELECT id, provider, received_at_ms, body, verdict, reason, external_agreement_no, notify_type, \
             processed_at_ms FROM agreement_notifications WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Into::into))
}

/// Notifications stored but never judged (the process stopped in between), oldest first.
pub async fn unjudged(conn: &mut Conn, limit: i64) -> Result<Vec<NoticeRow>> {
    let rows = sqlx::query_as::<_, NoticeRecord>(
        "SELECT id, provider, received_at_ms, body, verdict, reason, external_agreement_no, notify_type, \
             processed_at_ms FROM agreement_notifications WHERE verdict = $1 ORDER BY id LIMIT $2",
    )
    .bind(NoticeVerdict::Received.as_str())
    .bind(limit.max(1))
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

#[derive(sqlx::FromRow)]
struct NoticeRecord {
    id: i64,
    provider: String,
    received_at_ms: i64,
    body: Vec<u8>,
    verdict: String,
    reason: Option<String>,
    external_agreement_no: Option<String>,
    notify_type: Option<String>,
    processed_at_ms: Option<i64>,
}

impl From<NoticeRecord> for NoticeRow {
    fn from(r: NoticeRecord) -> NoticeRow {
        NoticeRow {
            id: r.id,
            provider: r.provider,
            received_at_ms: r.received_at_ms,
            body: r.body,
            verdict: r.verdict,
            reason: r.reason,
            external_agreement_no: r.external_agreement_no,
            notify_type: r.notify_type,
            processed_at_ms: r.processed_at_ms,
        }
    }
}
