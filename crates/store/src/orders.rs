//! Orders: created with their first event, read by number or id, locked for changes.
//! Their status is only ever changed through [`crate::events::append`].

use crate::events::{self, NewEvent};
use crate::{Conn, Result, StoreError, Tx};
use sqlx::any::AnyRow;
use sqlx::Row;
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
     attention, attention_reason, created_at_ms, expires_at_ms, paid_at_ms, deliver_by_ms, settled_at_ms, event_seq";

/// Inserts the order and its `created` event. Returns `None` if the order number is
/// already taken, so the caller can draw another.
pub async fn insert(tx: &mut Tx, order: &NewOrder, cause: &str, now_ms: i64) -> Result<Option<OrderRow>> {
    let product = serde_json::to_string(&order.product).map_err(|e| StoreError::Corrupt(e.to_string()))?;
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
    let data = serde_json::json!({
        "sku": order.product.sku, "quantity": order.quantity,
        "amount": order.amount.to_decimal(), "currency": order.amount.currency.code(),
        "expires_at_ms": order.expires_at_ms, "provider": order.provider,
    });
    events::append_first(tx, &mut row, NewEvent::new(EventKind::Created, Actor::Merchant, cause, data), now_ms).await?;
    Ok(Some(row))
}

pub async fn get(conn: &mut Conn, id: OrderId) -> Result<Option<OrderRow>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM orders WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.map(|r| decode(&r)).transpose()
}

pub async fn get_by_no(conn: &mut Conn, order_no: &str) -> Result<Option<OrderRow>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM orders WHERE order_no = $1"))
        .bind(order_no)
        .fetch_optional(conn)
        .await?;
    row.map(|r| decode(&r)).transpose()
}

/// Reads the order for a change, holding its row lock until the transaction ends.
pub async fn lock(tx: &mut Tx, id: OrderId) -> Result<OrderRow> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE id = $1{}", tx.dialect().for_update());
    let row = sqlx::query(&sql).bind(id.to_string()).fetch_optional(&mut **tx).await?;
    row.map(|r| decode(&r)).transpose()?.ok_or(StoreError::NotFound)
}

/// Reads the order with this number for a change, holding its row lock.
pub async fn lock_by_no(tx: &mut Tx, order_no: &str) -> Result<Option<OrderRow>> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE order_no = $1{}", tx.dialect().for_update());
    let row = sqlx::query(&sql).bind(order_no).fetch_optional(&mut **tx).await?;
    row.map(|r| decode(&r)).transpose()
}

/// Orders in a status, oldest first, for sweeps and reports.
pub async fn list_by_status(conn: &mut Conn, status: OrderStatus, limit: i64) -> Result<Vec<OrderRow>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM orders WHERE status = $1 ORDER BY created_at_ms LIMIT $2"))
        .bind(status.as_str())
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter().map(decode).collect()
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
    let rows = sqlx::query("SELECT order_no, status, attention, settled_at_ms FROM orders ORDER BY created_at_ms")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(OrderSummary {
                order_no: r.try_get(0)?,
                status: r.try_get(1)?,
                attention: r.try_get::<i64, _>(2)? != 0,
                settled_at_ms: r.try_get(3)?,
            })
        })
        .collect()
}

/// Counts of orders per status, and of orders flagged for attention.
pub async fn count_by_status(conn: &mut Conn) -> Result<Vec<(String, i64, i64)>> {
    let rows = sqlx::query(
        "SELECT status, COUNT(*), CAST(COALESCE(SUM(attention), 0) AS BIGINT) FROM orders GROUP BY status ORDER BY status",
    )
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect()
}

pub(crate) fn decode(row: &AnyRow) -> Result<OrderRow> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("order {what}"));
    let id: String = row.try_get("id")?;
    let order_no: String = row.try_get("order_no")?;
    let user_id: String = row.try_get("user_id")?;
    let product: String = row.try_get("product")?;
    let currency: String = row.try_get("currency")?;
    let status: String = row.try_get("status")?;
    Ok(OrderRow {
        id: OrderId::parse(&id).ok_or_else(|| corrupt("id"))?,
        order_no: OrderNo::parse(&order_no).ok_or_else(|| corrupt("number"))?,
        user_id: UserId::parse(&user_id).map_err(|_| corrupt("user id"))?,
        product: serde_json::from_str(&product).map_err(|_| corrupt("product snapshot"))?,
        quantity: row.try_get("quantity")?,
        amount: Money::new(
            row.try_get("amount_minor")?,
            Currency::parse(&currency).ok_or_else(|| corrupt("currency"))?,
        ),
        provider: row.try_get("provider")?,
        status: OrderStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        attention: row.try_get::<i64, _>("attention")? != 0,
        attention_reason: row.try_get("attention_reason")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        paid_at_ms: row.try_get("paid_at_ms")?,
        deliver_by_ms: row.try_get("deliver_by_ms")?,
        settled_at_ms: row.try_get("settled_at_ms")?,
        event_seq: row.try_get("event_seq")?,
    })
}
