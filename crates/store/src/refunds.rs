//! Refunds: one row each, with a request number the provider sees and that never changes.

use crate::{Conn, Result, StoreError, Tx};
use serde::Serialize;
use zerodrop_domain::money::{Currency, Money};
use zerodrop_domain::OrderId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// Stored; the provider has not answered yet.
    Requested,
    /// The provider accepted it and has not finished.
    Processing,
    /// No final answer came (timeouts, or none within the bound): the money may be gone.
    /// It counts against what can be refunded and is still asked about, never failed.
    Unknown,
    Succeeded,
    Failed,
}

impl RefundState {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundState::Requested => "requested",
            RefundState::Processing => "processing",
            RefundState::Unknown => "unknown",
            RefundState::Succeeded => "succeeded",
            RefundState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<RefundState> {
        [
            RefundState::Requested,
            RefundState::Processing,
            RefundState::Unknown,
            RefundState::Succeeded,
            RefundState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    pub fn is_final(self) -> bool {
        match self {
            RefundState::Succeeded | RefundState::Failed => true,
            RefundState::Requested | RefundState::Processing | RefundState::Unknown => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RefundRow {
    pub id: String,
    /// The order, when the refunded money belongs to one (a charge for an order zerodrop
    /// never knew has none).
    pub order_id: Option<String>,
    /// The charge whose money goes back (absent only on refunds stored before charges).
    pub charge_id: Option<i64>,
    pub request_no: String,
    pub amount: Money,
    pub full: bool,
    pub origin: String,
    pub reason: String,
    pub state: RefundState,
    pub detail: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

pub struct NewRefund<'a> {
    pub id: &'a str,
    pub order_id: Option<OrderId>,
    pub charge_id: i64,
    pub request_no: &'a str,
    pub amount: Money,
    pub full: bool,
    pub origin: &'a str,
    pub reason: &'a str,
}

pub async fn insert(tx: &mut Tx, refund: &NewRefund<'_>, now_ms: i64) -> Result<()> {
    let order_id = refund.order_id.map(|id| id.to_string());
    let reason: String = refund.reason.chars().take(200).collect();
    let seal = crate::seal::content::refund(&crate::seal::content::RefundFacts {
        id: refund.id,
        order_id: order_id.as_deref(),
        charge_id: Some(refund.charge_id),
        request_no: refund.request_no,
        amount_minor: refund.amount.minor,
        currency: refund.amount.currency.code(),
        full: refund.full,
        origin: refund.origin,
        reason: &reason,
        created_at_ms: now_ms,
    });
    let batch = tx.seal_batch();
    sqlx::query(
        "INSERT INTO refunds (id, order_id, charge_id, request_no, amount_minor, currency, full_refund, origin, reason, \
             state, created_at_ms, updated_at_ms, seal, seal_batch) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13)",
    )
    .bind(refund.id)
    .bind(&order_id)
    .bind(refund.charge_id)
    .bind(refund.request_no)
    .bind(refund.amount.minor)
    .bind(refund.amount.currency.code())
    .bind(i64::from(refund.full))
    .bind(refund.origin)
    .bind(&reason)
    .bind(RefundState::Requested.as_str())
    .bind(now_ms)
    .bind(&seal)
    .bind(batch)
    .execute(&mut **tx)
    .await?;
    tx.sealed_in_batch(seal);
    Ok(())
}

const COLUMNS: &str =
    "id, order_id, charge_id, request_no, amount_minor, currency, full_refund, origin, reason, state, detail, \
     created_at_ms, updated_at_ms, finished_at_ms";

pub async fn get(conn: &mut Conn, id: &str) -> Result<Option<RefundRow>> {
    let sql = format!("SELECT {COLUMNS} FROM refunds WHERE id = $1");
    let row = sqlx::query_as::<_, RefundRecord>(&sql).bind(id).fetch_optional(conn).await?;
    row.map(TryInto::try_into).transpose()
}

pub async fn by_request_no(conn: &mut Conn, request_no: &str) -> Result<Option<RefundRow>> {
    let row = sqlx::query_as::<_, RefundRecord>(&format!("SELECT {COLUMNS} FROM refunds WHERE request_no = $1"))
        .bind(request_no)
        .fetch_optional(conn)
        .await?;
    row.map(TryInto::try_into).transpose()
}

pub async fn for_order(conn: &mut Conn, order_id: OrderId) -> Result<Vec<RefundRow>> {
    let sql = format!("SELECT {COLUMNS} FROM refunds WHERE order_id = $1 ORDER BY created_at_ms, id");
    let rows = sqlx::query_as::<_, RefundRecord>(&sql).bind(order_id.to_string()).fetch_all(conn).await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// Refunds of the order's own payment (not of extra charges reported on the order),
/// oldest first: what limits how much more of the order can be refunded.
pub async fn of_order_payment(conn: &mut Conn, order_id: OrderId) -> Result<Vec<RefundRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM refunds WHERE order_id = $1 AND (charge_id IS NULL OR charge_id IN \
           (SELECT c.id FROM charges c WHERE c.order_id = $1 AND c.class IN ('matched', 'late'))) \
         ORDER BY created_at_ms, id"
    );
    let rows = sqlx::query_as::<_, RefundRecord>(&sql).bind(order_id.to_string()).fetch_all(conn).await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// Refunds of one charge, oldest first.
pub async fn for_charge(conn: &mut Conn, charge_id: i64) -> Result<Vec<RefundRow>> {
    let sql = format!("SELECT {COLUMNS} FROM refunds WHERE charge_id = $1 ORDER BY created_at_ms, id");
    let rows = sqlx::query_as::<_, RefundRecord>(&sql).bind(charge_id).fetch_all(conn).await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// Moves a refund to `state` unless it already reached a final state. Returns whether it moved.
pub async fn set_state(tx: &mut Tx, id: &str, state: RefundState, detail: Option<&str>, now_ms: i64) -> Result<bool> {
    let finished = state.is_final().then_some(now_ms);
    let moved = sqlx::query(
        "UPDATE refunds SET state = $1, detail = COALESCE($2, detail), updated_at_ms = $3, finished_at_ms = $4 \
         WHERE id = $5 AND state NOT IN ('succeeded', 'failed')",
    )
    .bind(state.as_str())
    .bind(detail.map(|d| d.chars().take(500).collect::<String>()))
    .bind(now_ms)
    .bind(finished)
    .bind(id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(moved == 1)
}

/// A `refunds` row as stored ([`COLUMNS`]), parsed into a [`RefundRow`] by its `TryFrom`.
#[derive(sqlx::FromRow)]
struct RefundRecord {
    id: String,
    order_id: Option<String>,
    charge_id: Option<i64>,
    request_no: String,
    amount_minor: i64,
    currency: String,
    /// A boolean stored as INTEGER 0/1.
    full_refund: i64,
    origin: String,
    reason: String,
    state: String,
    detail: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
    finished_at_ms: Option<i64>,
}

impl TryFrom<RefundRecord> for RefundRow {
    type Error = StoreError;

    fn try_from(r: RefundRecord) -> Result<RefundRow> {
        let currency = Currency::parse(&r.currency).ok_or_else(|| StoreError::Corrupt("refund currency".into()))?;
        Ok(RefundRow {
            id: r.id,
            order_id: r.order_id,
            charge_id: r.charge_id,
            request_no: r.request_no,
            amount: Money::new(r.amount_minor, currency),
            full: r.full_refund != 0,
            origin: r.origin,
            reason: r.reason,
            state: RefundState::parse(&r.state).ok_or_else(|| StoreError::Corrupt("refund state".into()))?,
            detail: r.detail,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            finished_at_ms: r.finished_at_ms,
        })
    }
}

/// Every refund, oldest first (reports and comparisons with the provider's books).
pub async fn all(conn: &mut Conn) -> Result<Vec<RefundRow>> {
    let sql = format!("SELECT {COLUMNS} FROM refunds ORDER BY created_at_ms, id");
    let rows = sqlx::query_as::<_, RefundRecord>(&sql).fetch_all(conn).await?;
    rows.into_iter().map(TryInto::try_into).collect()
}
