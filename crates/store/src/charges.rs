//! Charges: every trade a provider reports as paid, recorded exactly once (unique per
//! provider and trade number) whatever it matches. A charge's class names the policy that
//! ends it; the audit counts charges, not payments, so money that fits no order is still
//! followed to its end.

use crate::{Conn, Result, StoreError, Tx};
use serde::Serialize;
use zerodrop_domain::money::{Currency, Money};
use zerodrop_domain::OrderId;

/// What a charge is, and so which policy ends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeClass {
    /// The order's one payment: delivered by the normal path.
    Matched,
    /// The order's payment, made after it expired: the product's late policy ends it.
    Late,
    /// Another trade for an order already paid (the user paid twice): refunded in full.
    DuplicateTrade,
    /// Not the order's amount: refunded in full; the order stays unpaid and flagged.
    AmountMismatch,
    /// Paid through another provider than the order's: refunded in full, order flagged.
    ProviderMismatch,
    /// For an order zerodrop does not know: refunded in full after the park window,
    /// unless the order appears first.
    UnknownOrder,
}

impl ChargeClass {
    pub const ALL: [ChargeClass; 6] = [
        ChargeClass::Matched,
        ChargeClass::Late,
        ChargeClass::DuplicateTrade,
        ChargeClass::AmountMismatch,
        ChargeClass::ProviderMismatch,
        ChargeClass::UnknownOrder,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChargeClass::Matched => "matched",
            ChargeClass::Late => "late",
            ChargeClass::DuplicateTrade => "duplicate_trade",
            ChargeClass::AmountMismatch => "amount_mismatch",
            ChargeClass::ProviderMismatch => "provider_mismatch",
            ChargeClass::UnknownOrder => "unknown_order",
        }
    }

    pub fn parse(text: &str) -> Option<ChargeClass> {
        ChargeClass::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// True when the charge is its order's payment (ended by delivery or the order's refund);
    /// false when the charge itself is refunded in full.
    pub fn is_order_payment(self) -> bool {
        match self {
            ChargeClass::Matched | ChargeClass::Late => true,
            ChargeClass::DuplicateTrade
            | ChargeClass::AmountMismatch
            | ChargeClass::ProviderMismatch
            | ChargeClass::UnknownOrder => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChargeRow {
    pub id: i64,
    pub provider: String,
    pub trade_no: String,
    /// The merchant order number the provider reported (ours, or one we never issued).
    pub order_no: String,
    pub order_id: Option<String>,
    pub amount: Money,
    pub paid_at_ms: Option<i64>,
    pub class: ChargeClass,
    /// What reported it: the stored notification, or the provider's query answer.
    pub evidence: serde_json::Value,
    pub recorded_at_ms: i64,
    pub classified_at_ms: i64,
}

impl ChargeRow {
    pub fn order_id(&self) -> Option<OrderId> {
        self.order_id.as_deref().and_then(OrderId::parse)
    }
}

pub struct NewCharge<'a> {
    pub provider: &'a str,
    pub trade_no: &'a str,
    pub order_no: &'a str,
    pub order_id: Option<OrderId>,
    pub amount: Money,
    pub paid_at_ms: Option<i64>,
    pub class: ChargeClass,
    pub evidence: &'a serde_json::Value,
}

/// Records the charge unless its trade is already recorded. Returns the stored charge and
/// whether this call recorded it.
pub async fn record(tx: &mut Tx, charge: &NewCharge<'_>, now_ms: i64) -> Result<(ChargeRow, bool)> {
    if let Some(recorded) = insert_new(tx, charge, now_ms).await? {
        return Ok((recorded, true));
    }
    let stored = by_trade(tx, charge.provider, charge.trade_no)
        .await?
        .ok_or_else(|| StoreError::Invariant(format!("charge {} vanished", charge.trade_no)))?;
    Ok((stored, false))
}

/// Records the charge in one statement when its trade is new (the payment path's common
/// case); `None` when the trade is already recorded (the caller reads what is there).
pub async fn insert_new(tx: &mut Tx, charge: &NewCharge<'_>, now_ms: i64) -> Result<Option<ChargeRow>> {
    if charge.amount.minor <= 0 {
        return Err(StoreError::Invariant(format!("charge {} has no positive amount", charge.trade_no)));
    }
    let order_no: String = charge.order_no.chars().take(ORDER_NO_CHARS_MAX).collect();
    let evidence = charge.evidence.to_string();
    let seal = crate::seal::content::charge(&crate::seal::content::ChargeFacts {
        provider: charge.provider,
        trade_no: charge.trade_no,
        order_no: &order_no,
        amount_minor: charge.amount.minor,
        currency: charge.amount.currency.code(),
        paid_at_ms: charge.paid_at_ms,
        evidence: &evidence,
        recorded_at_ms: now_ms,
    });
    let batch = tx.seal_batch();
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO charges (provider, trade_no, order_no, order_id, amount_minor, currency, paid_at_ms, class, \
             evidence, recorded_at_ms, classified_at_ms, seal, seal_batch) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12) \
         ON CONFLICT (provider, trade_no) DO NOTHING RETURNING id",
    )
    .bind(charge.provider)
    .bind(charge.trade_no)
    .bind(&order_no)
    .bind(charge.order_id.map(|id| id.to_string()))
    .bind(charge.amount.minor)
    .bind(charge.amount.currency.code())
    .bind(charge.paid_at_ms)
    .bind(charge.class.as_str())
    .bind(&evidence)
    .bind(now_ms)
    .bind(&seal)
    .bind(batch)
    .fetch_optional(&mut **tx)
    .await?;
    if id.is_some() {
        tx.sealed_in_batch(seal);
    }
    Ok(id.map(|id| ChargeRow {
        id,
        provider: charge.provider.to_owned(),
        trade_no: charge.trade_no.to_owned(),
        order_no,
        order_id: charge.order_id.map(|id| id.to_string()),
        amount: charge.amount,
        paid_at_ms: charge.paid_at_ms,
        class: charge.class,
        evidence: charge.evidence.clone(),
        recorded_at_ms: now_ms,
        classified_at_ms: now_ms,
    }))
}

/// A reported merchant order number longer than ours is cut to this (it names no order).
const ORDER_NO_CHARS_MAX: usize = 128;

/// Gives an `unknown_order` charge the order that claimed it, with its class. Only an
/// unknown-order charge with no refund can be claimed; returns whether it was.
pub async fn claim(tx: &mut Tx, id: i64, order_id: OrderId, class: ChargeClass, now_ms: i64) -> Result<bool> {
    // The park window's end locks the charge before requesting its refund: taking the same
    // lock first means the refund check below (a new statement, a fresh snapshot on
    // PostgreSQL) sees a refund committed while we waited.
    lock(tx, id).await?;
    let claimed = sqlx::query(
        "UPDATE charges SET order_id = $1, class = $2, classified_at_ms = $3 \
         WHERE id = $4 AND class = 'unknown_order' AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.charge_id = $4)",
    )
    .bind(order_id.to_string())
    .bind(class.as_str())
    .bind(now_ms)
    .bind(id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(claimed == 1)
}

const COLUMNS: &str =
    "id, provider, trade_no, order_no, order_id, amount_minor, currency, paid_at_ms, class, evidence, \
     recorded_at_ms, classified_at_ms";

pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<ChargeRow>> {
    let sql = format!("SELECT {COLUMNS} FROM charges WHERE id = $1");
    let row = sqlx::query_as::<_, ChargeRecord>(&sql).bind(id).fetch_optional(conn).await?;
    row.map(TryInto::try_into).transpose()
}

/// The charge, locked for the rest of `tx` (PostgreSQL; SQLite's writer holds the lock).
pub async fn lock(tx: &mut Tx, id: i64) -> Result<ChargeRow> {
    let sql = format!("SELECT {COLUMNS} FROM charges WHERE id = $1{}", tx.dialect().for_update());
    let row = sqlx::query_as::<_, ChargeRecord>(&sql).bind(id).fetch_optional(&mut **tx).await?;
    row.ok_or(StoreError::NotFound)?.try_into()
}

pub async fn by_trade(conn: &mut Conn, provider: &str, trade_no: &str) -> Result<Option<ChargeRow>> {
    let sql = format!("SELECT {COLUMNS} FROM charges WHERE provider = $1 AND trade_no = $2");
    let row = sqlx::query_as::<_, ChargeRecord>(&sql).bind(provider).bind(trade_no).fetch_optional(conn).await?;
    row.map(TryInto::try_into).transpose()
}

pub async fn for_order(conn: &mut Conn, order_id: OrderId) -> Result<Vec<ChargeRow>> {
    let sql = format!("SELECT {COLUMNS} FROM charges WHERE order_id = $1 ORDER BY id");
    let rows = sqlx::query_as::<_, ChargeRecord>(&sql).bind(order_id.to_string()).fetch_all(conn).await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// The order's own payment as a charge (matched or late), if it has one.
pub async fn payment_of(conn: &mut Conn, order_id: OrderId) -> Result<Option<ChargeRow>> {
    let sql = format!("SELECT {COLUMNS} FROM charges WHERE order_id = $1 AND class IN ('matched', 'late')");
    let row = sqlx::query_as::<_, ChargeRecord>(&sql).bind(order_id.to_string()).fetch_optional(conn).await?;
    row.map(TryInto::try_into).transpose()
}

/// Every charge, oldest first (reports and comparisons with the provider's books; not
/// for request paths).
pub async fn all(conn: &mut Conn) -> Result<Vec<ChargeRow>> {
    let sql = format!("SELECT {COLUMNS} FROM charges ORDER BY id");
    let rows = sqlx::query_as::<_, ChargeRecord>(&sql).fetch_all(conn).await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// How many charges of each class exist, with their total in minor units (reports, demo).
pub async fn count_by_class(conn: &mut Conn) -> Result<Vec<(String, i64, i64)>> {
    let rows = sqlx::query_as::<_, (String, i64, i64)>(
        "SELECT class, COUNT(*), CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM charges GROUP BY class ORDER BY class",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// A `charges` row as stored ([`COLUMNS`]), parsed into a [`ChargeRow`] by its `TryFrom`.
#[derive(sqlx::FromRow)]
struct ChargeRecord {
    id: i64,
    provider: String,
    trade_no: String,
    order_no: String,
    order_id: Option<String>,
    amount_minor: i64,
    currency: String,
    paid_at_ms: Option<i64>,
    class: String,
    /// JSON text.
    evidence: String,
    recorded_at_ms: i64,
    classified_at_ms: i64,
}

impl TryFrom<ChargeRecord> for ChargeRow {
    type Error = StoreError;

    fn try_from(r: ChargeRecord) -> Result<ChargeRow> {
        let currency = Currency::parse(&r.currency).ok_or_else(|| StoreError::Corrupt("charge currency".into()))?;
        Ok(ChargeRow {
            id: r.id,
            provider: r.provider,
            trade_no: r.trade_no,
            order_no: r.order_no,
            order_id: r.order_id,
            amount: Money::new(r.amount_minor, currency),
            paid_at_ms: r.paid_at_ms,
            class: ChargeClass::parse(&r.class).ok_or_else(|| StoreError::Corrupt("charge class".into()))?,
            evidence: serde_json::from_str(&r.evidence)?,
            recorded_at_ms: r.recorded_at_ms,
            classified_at_ms: r.classified_at_ms,
        })
    }
}
