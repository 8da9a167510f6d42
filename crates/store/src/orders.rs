//! Orders: created with their first event, read by number or id, locked for changes.
//! Their status is only ever changed through [`crate::events::append`].

use crate::events::{self, NewEvent};
use crate::{Conn, Result, StoreError, Tx};
use zerodrop_domain::money::{Currency, Money};
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_domain::{OrderId, OrderNo, Product, UserId};

#[derive(Clone, Debug, PartialEq)]
pub struct OrderRow {
    pub id: OrderId,
    pub order_no: OrderNo,
    pub user_id: UserId,
    pub product: Product,
    pub quantity: i64,
    pub amount: Money,
    pub provider: String,
    pub status: OrderStatus,
    pub attention: bool,
    pub attention_reason: Option<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub paid_at_ms: Option<i64>,
    pub deliver_by_ms: Option<i64>,
    pub settled_at_ms: Option<i64>,
    pub event_seq: i64,
    /// The seal of the order's last event: where its chain continues.
    pub seal_head: Option<String>,
}

pub struct NewOrder {
    pub id: OrderId,
    pub order_no: OrderNo,
    pub user_id: UserId,
    pub product: Product,
    pub quantity: i64,
    pub amount: Money,
    pub provider: String,
    pub expires_at_ms: i64,
}

const COLUMNS: &str = "id, order_no, user_id, product, quantity, amount_minor, currency, provider, status, \
     attention, attention_reason, created_at_ms, expires_at_ms, paid_at_ms, deliver_by_ms, settled_at_ms, event_seq, seal_head";

/// Inserts the order and its `created` event. Returns `None` if the order number is
/// already taken, so the caller can draw another.
pub async fn insert(tx: &mut Tx, order: &NewOrder, cause: &str, now_ms: i64) -> Result<Option<OrderRow>> {
    let product = serde_json::to_string(&order.product).map_err(StoreError::Json)?;
    let inserted = sqlx::query(
        "INSERT INTO orders (id, order_no, user_id, sku, product, quantity, amount_minor, currency, provider, \
             status, attention, created_at_ms, expires_at_ms, event_seq) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $12, 0) \
         ON CONFLICT (order_no) DO NOTHING",
    )
    .bind(order.id.to_string())
    .bind(order.order_no.as_str())
    .bind(order.user_id.as_str())
    .bind(order.product.sku.as_str())
    .bind(product)
    .bind(order.quantity)
    .bind(order.amount.minor)
    .bind(order.amount.currency.code())
    .bind(&order.provider)
    .bind(OrderStatus::AwaitingPayment.as_str())
    .bind(now_ms)
    .bind(order.expires_at_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }
    let mut row = lock(tx, order.id).await?;
    // The row was inserted with no events; `created` is its first, so the stored status
    // equals the fold from the start.
    row.status = OrderStatus::AwaitingPayment;
    // Every fact of the row that never changes, so the audit can hold the row to the
    // event (events are append-only, and what a seal protects).
    let data = serde_json::json!({
        "order_no": order.order_no, "user_id": order.user_id, "sku": order.product.sku,
        "product": order.product, "quantity": order.quantity,
        "amount": order.amount.to_decimal(), "currency": order.amount.currency.code(),
        "expires_at_ms": order.expires_at_ms, "provider": order.provider,
    });
    events::append_first(tx, &mut row, NewEvent::new(EventKind::Created, Actor::Merchant, cause, data), now_ms).await?;
    Ok(Some(row))
}

pub async fn get(conn: &mut Conn, id: OrderId) -> Result<Option<OrderRow>> {
    let row = sqlx::query_as::<_, OrderRecord>(&format!("SELECT {COLUMNS} FROM orders WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.map(TryInto::try_into).transpose()
}

pub async fn get_by_no(conn: &mut Conn, order_no: &str) -> Result<Option<OrderRow>> {
    let row = sqlx::query_as::<_, OrderRecord>(&format!("SELECT {COLUMNS} FROM orders WHERE order_no = $1"))
        .bind(order_no)
        .fetch_optional(conn)
        .await?;
    row.map(TryInto::try_into).transpose()
}

/// Reads the order for a change, holding its row lock until the transaction ends.
pub async fn lock(tx: &mut Tx, id: OrderId) -> Result<OrderRow> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE id = $1{}", tx.dialect().for_update());
    let row = sqlx::query_as::<_, OrderRecord>(&sql).bind(id.to_string()).fetch_optional(&mut **tx).await?;
    row.map(TryInto::try_into).transpose()?.ok_or(StoreError::NotFound)
}

/// Reads the order with this number for a change, holding its row lock.
pub async fn lock_by_no(tx: &mut Tx, order_no: &str) -> Result<Option<OrderRow>> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE order_no = $1{}", tx.dialect().for_update());
    let row = sqlx::query_as::<_, OrderRecord>(&sql).bind(order_no).fetch_optional(&mut **tx).await?;
    row.map(TryInto::try_into).transpose()
}

/// Orders in a status, oldest first, for sweeps and reports.
pub async fn list_by_status(conn: &mut Conn, status: OrderStatus, limit: i64) -> Result<Vec<OrderRow>> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE status = $1 ORDER BY created_at_ms LIMIT $2");
    let rows = sqlx::query_as::<_, OrderRecord>(&sql).bind(status.as_str()).bind(limit).fetch_all(conn).await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// A light view of an order, for reports over many orders.
#[derive(Clone, Debug)]
pub struct OrderSummary {
    pub order_no: String,
    pub status: String,
    pub attention: bool,
    pub settled_at_ms: Option<i64>,
}

/// Every order, lightly (for reports and the demo; not for request paths).
pub async fn summaries(conn: &mut Conn) -> Result<Vec<OrderSummary>> {
    let rows = sqlx::query_as::<_, SummaryRecord>(
        "SELECT order_no, status, attention, settled_at_ms FROM orders ORDER BY created_at_ms",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Counts of orders per status, and of orders flagged for attention.
pub async fn count_by_status(conn: &mut Conn) -> Result<Vec<(String, i64, i64)>> {
    let rows = sqlx::query_as::<_, (String, i64, i64)>(
        "SELECT status, COUNT(*), CAST(COALESCE(SUM(attention), 0) AS BIGINT) FROM orders GROUP BY status ORDER BY status",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// An `orders` row as stored ([`COLUMNS`]): the raw column types both engines hand back
/// through the `Any` driver, parsed into an [`OrderRow`] by its `TryFrom`.
#[derive(sqlx::FromRow)]
struct OrderRecord {
    id: String,
    order_no: String,
    user_id: String,
    /// The product snapshot, as JSON.
    product: String,
    quantity: i64,
    amount_minor: i64,
    currency: String,
    provider: String,
    status: String,
    /// A boolean stored as INTEGER 0/1 (SQLite has no boolean type).
    attention: i64,
    attention_reason: Option<String>,
    created_at_ms: i64,
    expires_at_ms: i64,
    paid_at_ms: Option<i64>,
    deliver_by_ms: Option<i64>,
    settled_at_ms: Option<i64>,
    event_seq: i64,
    seal_head: Option<String>,
}

impl TryFrom<OrderRecord> for OrderRow {
    type Error = StoreError;

    fn try_from(r: OrderRecord) -> Result<OrderRow> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("order {what}"));
        Ok(OrderRow {
            id: OrderId::parse(&r.id).ok_or_else(|| corrupt("id"))?,
            order_no: OrderNo::parse(&r.order_no).ok_or_else(|| corrupt("number"))?,
            user_id: UserId::parse(&r.user_id).map_err(|_| corrupt("user id"))?,
            product: serde_json::from_str(&r.product).map_err(|_| corrupt("product snapshot"))?,
            quantity: r.quantity,
            amount: Money::new(r.amount_minor, Currency::parse(&r.currency).ok_or_else(|| corrupt("currency"))?),
            provider: r.provider,
            status: OrderStatus::parse(&r.status).ok_or_else(|| corrupt("status"))?,
            attention: r.attention != 0,
            attention_reason: r.attention_reason,
            created_at_ms: r.created_at_ms,
            expires_at_ms: r.expires_at_ms,
            paid_at_ms: r.paid_at_ms,
            deliver_by_ms: r.deliver_by_ms,
            settled_at_ms: r.settled_at_ms,
            event_seq: r.event_seq,
            seal_head: r.seal_head,
        })
    }
}

/// The columns [`summaries`] reads, as stored.
#[derive(sqlx::FromRow)]
struct SummaryRecord {
    order_no: String,
    status: String,
    /// INTEGER 0/1.
    attention: i64,
    settled_at_ms: Option<i64>,
}

impl From<SummaryRecord> for OrderSummary {
    fn from(r: SummaryRecord) -> OrderSummary {
        OrderSummary {
            order_no: r.order_no,
            status: r.status,
            attention: r.attention != 0,
            settled_at_ms: r.settled_at_ms,
        }
    }
}
