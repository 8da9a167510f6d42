//! Captured payments (unique per provider trade and per order) and deliveries (one per order).

use crate::{Conn, Result, StoreError, Tx};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use zerodrop_domain::money::{Currency, Money};
use zerodrop_domain::OrderId;

/// Who brought the news that an order is paid. Every source goes through one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentSource {
    Notification,
    Query,
    Close,
    Parked,
    Operator,
}

impl PaymentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentSource::Notification => "notification",
            PaymentSource::Query => "query",
            PaymentSource::Close => "close",
            PaymentSource::Parked => "parked",
            PaymentSource::Operator => "operator",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PaymentRow {
    pub id: i64,
    pub order_id: String,
    pub provider: String,
    pub trade_no: String,
    pub amount: Money,
    pub paid_at_ms: Option<i64>,
    pub recorded_at_ms: i64,
    pub source: String,
    pub late: bool,
}

pub struct NewPayment<'a> {
    pub order_id: OrderId,
    pub provider: &'a str,
    pub trade_no: &'a str,
    pub amount: Money,
    pub paid_at_ms: Option<i64>,
    pub source: PaymentSource,
    pub late: bool,
}

/// Inserts the payment. `false` means one already exists for this order or this trade:
/// the caller decides whether that is a duplicate or a conflict.
pub async fn insert(tx: &mut Tx, payment: &NewPayment<'_>, now_ms: i64) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO payments (order_id, provider, trade_no, amount_minor, currency, paid_at_ms, recorded_at_ms, source, late) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(payment.order_id.to_string())
    .bind(payment.provider)
    .bind(payment.trade_no)
    .bind(payment.amount.minor)
    .bind(payment.amount.currency.code())
    .bind(payment.paid_at_ms)
    .bind(now_ms)
    .bind(payment.source.as_str())
    .bind(i64::from(payment.late))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

const COLUMNS: &str =
    "id, order_id, provider, trade_no, amount_minor, currency, paid_at_ms, recorded_at_ms, source, late";

pub async fn for_order(conn: &mut Conn, order_id: OrderId) -> Result<Option<PaymentRow>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM payments WHERE order_id = $1"))
        .bind(order_id.to_string())
        .fetch_optional(conn)
        .await?;
    row.map(|r| decode(&r)).transpose()
}

pub async fn by_trade(conn: &mut Conn, provider: &str, trade_no: &str) -> Result<Option<PaymentRow>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM payments WHERE provider = $1 AND trade_no = $2"))
        .bind(provider)
        .bind(trade_no)
        .fetch_optional(conn)
        .await?;
    row.map(|r| decode(&r)).transpose()
}

/// Every payment, oldest first, in pages (for comparisons against a provider's records).
pub async fn list_after(conn: &mut Conn, after_id: i64, limit: i64) -> Result<Vec<PaymentRow>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM payments WHERE id > $1 ORDER BY id LIMIT $2"))
        .bind(after_id)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter().map(decode).collect()
}

fn decode(row: &AnyRow) -> Result<PaymentRow> {
    let currency: String = row.try_get("currency")?;
    Ok(PaymentRow {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        provider: row.try_get("provider")?,
        trade_no: row.try_get("trade_no")?,
        amount: Money::new(
            row.try_get("amount_minor")?,
            Currency::parse(&currency).ok_or_else(|| StoreError::Corrupt("payment currency".into()))?,
        ),
        paid_at_ms: row.try_get("paid_at_ms")?,
        recorded_at_ms: row.try_get("recorded_at_ms")?,
        source: row.try_get("source")?,
        late: row.try_get::<i64, _>("late")? != 0,
    })
}

/// When each delivered order was delivered, by order number: (order id, delivered at).
pub async fn delivered_at_by_order_no(conn: &mut Conn) -> Result<std::collections::HashMap<String, (String, i64)>> {
    let rows =
        sqlx::query("SELECT o.order_no, o.id, d.delivered_at_ms FROM deliveries d JOIN orders o ON o.id = d.order_id")
            .fetch_all(conn)
            .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?)))).collect()
}

/// A delivery row waiting for its transaction's commit.
pub(crate) struct PendingDelivery {
    order_id: String,
    kind: String,
    delivered_at_ms: i64,
    detail: String,
}

/// Records the one delivery of an order, written at commit. A second delivery violates
/// the primary key and fails the commit: double delivery is impossible by construction,
/// not by care.
pub async fn insert_delivery(
    tx: &mut Tx,
    order_id: OrderId,
    kind: &str,
    detail: &serde_json::Value,
    now_ms: i64,
) -> Result<()> {
    tx.deliveries.push(PendingDelivery {
        order_id: order_id.to_string(),
        kind: kind.to_owned(),
        delivered_at_ms: now_ms,
        detail: detail.to_string(),
    });
    Ok(())
}

/// Rows written per statement at commit (4 parameters each).
const DELIVERIES_PER_INSERT_MAX: usize = 200;

pub(crate) async fn flush_deliveries(tx: &mut Tx) -> Result<()> {
    let pending = std::mem::take(&mut tx.deliveries);
    for chunk in pending.chunks(DELIVERIES_PER_INSERT_MAX) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${}, ${}, ${})", i * 4 + 1, i * 4 + 2, i * 4 + 3, i * 4 + 4))
            .collect();
        let sql =
            format!("INSERT INTO deliveries (order_id, kind, delivered_at_ms, detail) VALUES {}", values.join(", "));
        let mut insert = sqlx::query(&sql);
        for d in chunk {
            insert =
                insert.bind(d.order_id.clone()).bind(d.kind.clone()).bind(d.delivered_at_ms).bind(d.detail.clone());
        }
        insert.execute(&mut **tx).await?;
    }
    Ok(())
}

/// How many deliveries of each product kind exist (reports and the demo).
pub async fn delivered_kinds(conn: &mut Conn) -> Result<std::collections::HashMap<String, u64>> {
    let rows = sqlx::query("SELECT kind, COUNT(*) FROM deliveries GROUP BY kind").fetch_all(conn).await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, u64::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0)))).collect()
}
