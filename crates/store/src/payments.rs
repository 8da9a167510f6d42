//! Captured payments (unique per provider trade and per order) and deliveries (one per order).

use crate::{Conn, Result, StoreError, Tx};
use serde::Serialize;
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
    let order_id = payment.order_id.to_string();
    let seal = crate::seal::content::payment(&crate::seal::content::PaymentFacts {
        order_id: &order_id,
        provider: payment.provider,
        trade_no: payment.trade_no,
        amount_minor: payment.amount.minor,
        currency: payment.amount.currency.code(),
        paid_at_ms: payment.paid_at_ms,
        recorded_at_ms: now_ms,
        source: payment.source.as_str(),
        late: payment.late,
    });
    let batch = tx.seal_batch();
    let inserted = sqlx::query(
        "INSERT INTO payments (order_id, provider, trade_no, amount_minor, currency, paid_at_ms, recorded_at_ms, source, \
             late, seal, seal_batch) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
    )
    .bind(&order_id)
    .bind(payment.provider)
    .bind(payment.trade_no)
    .bind(payment.amount.minor)
    .bind(payment.amount.currency.code())
    .bind(payment.paid_at_ms)
    .bind(now_ms)
    .bind(payment.source.as_str())
    .bind(i64::from(payment.late))
    .bind(&seal)
    .bind(batch)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        tx.sealed_in_batch(seal);
    }
    Ok(inserted == 1)
}

const COLUMNS: &str =
    "id, order_id, provider, trade_no, amount_minor, currency, paid_at_ms, recorded_at_ms, source, late";

pub async fn for_order(conn: &mut Conn, order_id: OrderId) -> Result<Option<PaymentRow>> {
    let row = sqlx::query_as::<_, PaymentRecord>(&format!("SELECT {COLUMNS} FROM payments WHERE order_id = $1"))
        .bind(order_id.to_string())
        .fetch_optional(conn)
        .await?;
    row.map(TryInto::try_into).transpose()
}

pub async fn by_trade(conn: &mut Conn, provider: &str, trade_no: &str) -> Result<Option<PaymentRow>> {
    let sql = format!("SELECT {COLUMNS} FROM payments WHERE provider = $1 AND trade_no = $2");
    let row = sqlx::query_as::<_, PaymentRecord>(&sql).bind(provider).bind(trade_no).fetch_optional(conn).await?;
    row.map(TryInto::try_into).transpose()
}

/// Every payment, oldest first, in pages (for comparisons against a provider's records).
pub async fn list_after(conn: &mut Conn, after_id: i64, limit: i64) -> Result<Vec<PaymentRow>> {
    let sql = format!("SELECT {COLUMNS} FROM payments WHERE id > $1 ORDER BY id LIMIT $2");
    let rows = sqlx::query_as::<_, PaymentRecord>(&sql).bind(after_id).bind(limit).fetch_all(conn).await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// A `payments` row as stored ([`COLUMNS`]), parsed into a [`PaymentRow`] by its `TryFrom`.
#[derive(sqlx::FromRow)]
struct PaymentRecord {
    id: i64,
    order_id: String,
    provider: String,
    trade_no: String,
    amount_minor: i64,
    currency: String,
    paid_at_ms: Option<i64>,
    recorded_at_ms: i64,
    source: String,
    /// A boolean stored as INTEGER 0/1.
    late: i64,
}

impl TryFrom<PaymentRecord> for PaymentRow {
    type Error = StoreError;

    fn try_from(r: PaymentRecord) -> Result<PaymentRow> {
        let currency = Currency::parse(&r.currency).ok_or_else(|| StoreError::Corrupt("payment currency".into()))?;
        Ok(PaymentRow {
            id: r.id,
            order_id: r.order_id,
            provider: r.provider,
            trade_no: r.trade_no,
            amount: Money::new(r.amount_minor, currency),
            paid_at_ms: r.paid_at_ms,
            recorded_at_ms: r.recorded_at_ms,
            source: r.source,
            late: r.late != 0,
        })
    }
}

/// When each delivered order was delivered, by order number: (order id, delivered at).
pub async fn delivered_at_by_order_no(conn: &mut Conn) -> Result<std::collections::HashMap<String, (String, i64)>> {
    let rows = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT o.order_no, o.id, d.delivered_at_ms FROM deliveries d JOIN orders o ON o.id = d.order_id",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(order_no, id, delivered_at_ms)| (order_no, (id, delivered_at_ms))).collect())
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

/// Rows written per statement at commit (6 parameters each).
const DELIVERIES_PER_INSERT_MAX: usize = 200;

pub(crate) async fn flush_deliveries(tx: &mut Tx) -> Result<()> {
    let pending = std::mem::take(&mut tx.deliveries);
    if pending.is_empty() {
        return Ok(());
    }
    let batch = tx.seal_batch();
    for chunk in pending.chunks(DELIVERIES_PER_INSERT_MAX) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = i * 6;
                format!("(${}, ${}, ${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4, p + 5, p + 6)
            })
            .collect();
        let sql = format!(
            "INSERT INTO deliveries (order_id, kind, delivered_at_ms, detail, seal, seal_batch) VALUES {}",
            values.join(", ")
        );
        let mut insert = sqlx::query(&sql);
        let mut seals = Vec::with_capacity(chunk.len());
        for d in chunk {
            let seal = crate::seal::content::delivery(&d.order_id, &d.kind, d.delivered_at_ms, &d.detail);
            seals.push(seal.clone());
            insert = insert
                .bind(d.order_id.clone())
                .bind(d.kind.clone())
                .bind(d.delivered_at_ms)
                .bind(d.detail.clone())
                .bind(seal)
                .bind(batch.clone());
        }
        insert.execute(&mut **tx).await?;
        for seal in seals {
            tx.sealed_in_batch(seal);
        }
    }
    Ok(())
}

/// How many deliveries of each product kind exist (reports and the demo).
pub async fn delivered_kinds(conn: &mut Conn) -> Result<std::collections::HashMap<String, u64>> {
    let rows = sqlx::query_as::<_, (String, i64)>("SELECT kind, COUNT(*) FROM deliveries GROUP BY kind")
        .fetch_all(conn)
        .await?;
    // COUNT(*) is never negative; the fallback only keeps this free of a panic path.
    Ok(rows.into_iter().map(|(kind, count)| (kind, u64::try_from(count).unwrap_or(0))).collect())
}
