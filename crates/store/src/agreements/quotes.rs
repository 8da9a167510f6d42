//! Termination quotes: what a termination will do, stated before it is confirmed, and
//! used once. Using a quote stores the answer given, so the same quote id confirmed again
//! gets the same answer (the confirm is idempotent by quote id); the database refuses a
//! second use and any change to a quote's content.

use crate::{Conn, Result, StoreError, Tx};
use zerodrop_domain::termination::Quote;

#[derive(Clone, Debug, PartialEq)]
pub struct QuoteRow {
    pub id: String,
    pub agreement_id: String,
    pub quote: Quote,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub used_at_ms: Option<i64>,
    /// The answer given when the quote was used (JSON), to give again.
    pub answer: Option<serde_json::Value>,
}

impl QuoteRow {
    pub fn is_expired(&self, now_ms: i64) -> bool {
        now_ms >= self.expires_at_ms
    }
}

pub async fn insert(tx: &mut Tx, id: &str, agreement_id: &str, quote: &Quote, now_ms: i64) -> Result<QuoteRow> {
    let text = serde_json::to_string(quote)?;
    sqlx::query(
        "INSERT INTO termination_quotes (id, agreement_id, quote, created_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(agreement_id)
    .bind(text)
    .bind(now_ms)
    .bind(quote.expires_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(QuoteRow {
        id: id.to_owned(),
        agreement_id: agreement_id.to_owned(),
        quote: quote.clone(),
        created_at_ms: now_ms,
        expires_at_ms: quote.expires_at_ms,
        used_at_ms: None,
        answer: None,
    })
}

pub async fn get(conn: &mut Conn, id: &str) -> Result<Option<QuoteRow>> {
    let row = sqlx::query_as::<_, QuoteRecord>(
        "SELECT id, agreement_id, quote, created_at_ms, expires_at_ms, used_at_ms, answer \
         FROM termination_quotes WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(TryInto::try_into).transpose()
}

/// Marks the quote used with `answer`, in the caller's transaction (which holds the
/// agreement's lock). `false` when it was already used: read its stored answer instead.
pub async fn mark_used(tx: &mut Tx, id: &str, answer: &serde_json::Value, now_ms: i64) -> Result<bool> {
    let updated =
        sqlx::query("UPDATE termination_quotes SET used_at_ms = $1, answer = $2 WHERE id = $3 AND used_at_ms IS NULL")
            .bind(now_ms)
            .bind(serde_json::to_string(answer)?)
            .bind(id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    Ok(updated == 1)
}

#[derive(sqlx::FromRow)]
struct QuoteRecord {
    id: String,
    agreement_id: String,
    quote: String,
    created_at_ms: i64,
    expires_at_ms: i64,
    used_at_ms: Option<i64>,
    answer: Option<String>,
}

impl TryFrom<QuoteRecord> for QuoteRow {
    type Error = StoreError;

    fn try_from(r: QuoteRecord) -> Result<QuoteRow> {
        Ok(QuoteRow {
            quote: serde_json::from_str(&r.quote)?,
            answer: r.answer.as_deref().map(serde_json::from_str).transpose()?,
            id: r.id,
            agreement_id: r.agreement_id,
            created_at_ms: r.created_at_ms,
            expires_at_ms: r.expires_at_ms,
            used_at_ms: r.used_at_ms,
        })
    }
}
