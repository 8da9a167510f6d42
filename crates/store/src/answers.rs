//! Provider answers kept as evidence: the signed answer behind a payment zerodrop learned
//! by asking (a query, a close), exactly as it came, so the audit can verify it again with
//! the provider's public key. Never changed, never deleted.

use crate::{Conn, Result, StoreError, Tx};

/// A provider's signed answer, as it is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAnswer<'a> {
    pub provider: &'a str,
    /// The gateway method it answers (`alipay.trade.query`).
    pub method: &'a str,
    /// The order zerodrop asked about.
    pub order_no: &'a str,
    /// The trade the answer names, when it reports one paid.
    pub trade_no: Option<&'a str>,
    /// The exact text the signature covers.
    pub content: &'a str,
    pub sign: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerRow {
    pub id: i64,
    pub provider: String,
    pub method: String,
    pub order_no: String,
    pub trade_no: Option<String>,
    pub content: String,
    pub sign: String,
    pub received_at_ms: i64,
}

/// Longest answer text kept, in bytes: real answers are a few KiB, and the gateway reads
/// at most 1 MiB of a response, so this never cuts a genuine one.
pub const CONTENT_BYTES_MAX: usize = 1024 * 1024;

/// Stores the answer in the caller's transaction; returns its id, which the charge it
/// backs cites.
pub async fn insert(tx: &mut Tx, answer: &NewAnswer<'_>, now_ms: i64) -> Result<i64> {
    if answer.content.len() > CONTENT_BYTES_MAX {
        return Err(StoreError::Invariant(format!("a provider answer of {} bytes is too long", answer.content.len())));
    }
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO provider_answers (provider, method, order_no, trade_no, content, sign, received_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(answer.provider)
    .bind(answer.method)
    .bind(answer.order_no)
    .bind(answer.trade_no)
    .bind(answer.content)
    .bind(answer.sign)
    .bind(now_ms)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

const COLUMNS: &str = "id, provider, method, order_no, trade_no, content, sign, received_at_ms";

pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<AnswerRow>> {
    let sql = format!("SELECT {COLUMNS} FROM provider_answers WHERE id = $1");
    let row = sqlx::query_as::<_, AnswerRecord>(&sql).bind(id).fetch_optional(conn).await?;
    Ok(row.map(Into::into))
}

/// A `provider_answers` row as stored ([`COLUMNS`]).
#[derive(sqlx::FromRow)]
struct AnswerRecord {
    id: i64,
    provider: String,
    method: String,
    order_no: String,
    trade_no: Option<String>,
    content: String,
    sign: String,
    received_at_ms: i64,
}

impl From<AnswerRecord> for AnswerRow {
    fn from(r: AnswerRecord) -> AnswerRow {
        AnswerRow {
            id: r.id,
            provider: r.provider,
            method: r.method,
            order_no: r.order_no,
            trade_no: r.trade_no,
            content: r.content,
            sign: r.sign,
            received_at_ms: r.received_at_ms,
        }
    }
}
