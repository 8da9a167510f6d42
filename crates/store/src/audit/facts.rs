//! Everything the per-order checks compare, read one page of orders at a time: each
//! order's row and the rows that follow from it (events, payment, charges, delivery, ledger
//! transfers, membership changes, card keys, refunds, queued jobs, open items). Every
//! table is read by a range of order ids through an index, so a page costs a dozen
//! queries whatever the database's size.

use crate::{Conn, Result};
use std::collections::HashMap;

/// Orders read per page, to bound memory (each brings its events and money with it).
pub(super) const PAGE_ORDERS: i64 = 1_000;

/// An order and everything the audit follows from it.
#[derive(Debug, Default)]
pub(super) struct OrderFacts {
    pub id: String,
    pub order_no: String,
    pub user_id: String,
    pub sku: String,
    /// The product snapshot, as stored (JSON text).
    pub product: String,
    pub quantity: i64,
    pub amount_minor: i64,
    pub currency: String,
    pub provider: String,
    pub status: String,
    pub attention: bool,
    pub expires_at_ms: i64,
    pub paid_at_ms: Option<i64>,
    pub deliver_by_ms: Option<i64>,
    pub event_seq: i64,
    /// In sequence order.
    pub events: Vec<EventFact>,
    pub payment: Option<PaymentFact>,
    pub charges: Vec<ChargeFact>,
    pub delivery: Option<DeliveryFact>,
    pub transfers: Vec<TransferFact>,
    pub periods: Vec<PeriodFact>,
    pub adjustments: Vec<AdjustmentFact>,
    pub card_keys: Vec<CardKeyFact>,
    pub refunds: Vec<RefundFact>,
    /// Kinds of the order's queued jobs.
    pub queued_jobs: Vec<String>,
    pub open_items: i64,
    /// Recorded operator actions that granted the order's compensation by hand.
    pub compensate_actions: i64,
}

#[derive(Debug)]
pub(super) struct EventFact {
    pub seq: i64,
    pub at_ms: i64,
    pub kind: String,
    pub cause: String,
    /// `Null` when the stored text is not JSON (a violation the timeline check names).
    pub data: serde_json::Value,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct PaymentFact {
    pub order_id: String,
    pub provider: String,
    pub trade_no: String,
    pub amount_minor: i64,
    pub currency: String,
    /// INTEGER 0/1.
    pub late: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ChargeFact {
    pub order_id: String,
    pub id: i64,
    pub trade_no: String,
    pub order_no: String,
    pub class: String,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct DeliveryFact {
    pub order_id: String,
    pub kind: String,
    pub delivered_at_ms: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct TransferFact {
    pub order_id: String,
    pub id: String,
    pub from_account: String,
    pub to_account: String,
    pub currency: String,
    pub amount: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct PeriodFact {
    pub order_id: String,
    pub user_id: String,
    pub plan: String,
    pub days: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct AdjustmentFact {
    pub order_id: String,
    pub id: String,
    pub user_id: String,
    pub plan: String,
    pub days: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct CardKeyFact {
    pub order_id: String,
    pub id: i64,
    pub sku: String,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct RefundFact {
    pub order_id: String,
    pub id: String,
    pub request_no: String,
    pub amount_minor: i64,
    pub state: String,
    pub charge_id: Option<i64>,
}

/// The `orders` columns the checks read, as stored.
#[derive(sqlx::FromRow)]
struct OrderRecord {
    id: String,
    order_no: String,
    user_id: String,
    sku: String,
    product: String,
    quantity: i64,
    amount_minor: i64,
    currency: String,
    provider: String,
    status: String,
    /// INTEGER 0/1.
    attention: i64,
    expires_at_ms: i64,
    paid_at_ms: Option<i64>,
    deliver_by_ms: Option<i64>,
    event_seq: i64,
}

/// The `order_events` columns the checks read, as stored.
#[derive(sqlx::FromRow)]
struct EventRecord {
    order_id: String,
    seq: i64,
    at_ms: i64,
    kind: String,
    cause: String,
    data: String,
}

/// The page of orders after `after` (by id), with their facts; empty when none are left.
pub(super) async fn page(conn: &mut Conn, after: &str) -> Result<Vec<OrderFacts>> {
    let rows = sqlx::query_as::<_, OrderRecord>(
        "SELECT id, order_no, user_id, sku, product, quantity, amount_minor, currency, provider, status, attention, \
             expires_at_ms, paid_at_ms, deliver_by_ms, event_seq \
         FROM orders WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(PAGE_ORDERS)
    .fetch_all(&mut *conn)
    .await?;
    let Some(last) = rows.last().map(|o| o.id.clone()) else { return Ok(Vec::new()) };
    let mut by_id: HashMap<String, OrderFacts> = rows
        .into_iter()
        .map(|r| {
            let facts = OrderFacts {
                id: r.id.clone(),
                order_no: r.order_no,
                user_id: r.user_id,
                sku: r.sku,
                product: r.product,
                quantity: r.quantity,
                amount_minor: r.amount_minor,
                currency: r.currency,
                provider: r.provider,
                status: r.status,
                attention: r.attention != 0,
                expires_at_ms: r.expires_at_ms,
                paid_at_ms: r.paid_at_ms,
                deliver_by_ms: r.deliver_by_ms,
                event_seq: r.event_seq,
                ..OrderFacts::default()
            };
            (r.id, facts)
        })
        .collect();
    let range = (after, last.as_str());

    for e in
        rows_in::<EventRecord>(conn, "order_id, seq, at_ms, kind, cause, data", "order_events", range, "seq").await?
    {
        if let Some(o) = by_id.get_mut(&e.order_id) {
            let data = serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null);
            o.events.push(EventFact { seq: e.seq, at_ms: e.at_ms, kind: e.kind, cause: e.cause, data });
        }
    }
    let cols = "order_id, provider, trade_no, amount_minor, currency, late";
    for p in rows_in::<PaymentFact>(conn, cols, "payments", range, "id").await? {
        if let Some(o) = by_id.get_mut(&p.order_id) {
            o.payment = Some(p);
        }
    }
    for c in rows_in::<ChargeFact>(conn, "order_id, id, trade_no, order_no, class", "charges", range, "id").await? {
        if let Some(o) = by_id.get_mut(&c.order_id) {
            o.charges.push(c);
        }
    }
    for d in rows_in::<DeliveryFact>(conn, "order_id, kind, delivered_at_ms", "deliveries", range, "order_id").await? {
        if let Some(o) = by_id.get_mut(&d.order_id) {
            o.delivery = Some(d);
        }
    }
    let cols = "order_id, id, from_account, to_account, currency, amount";
    for t in rows_in::<TransferFact>(conn, cols, "ledger_transfers", range, "id").await? {
        if let Some(o) = by_id.get_mut(&t.order_id) {
            o.transfers.push(t);
        }
    }
    for p in
        rows_in::<PeriodFact>(conn, "order_id, user_id, plan, days", "membership_periods", range, "order_id").await?
    {
        if let Some(o) = by_id.get_mut(&p.order_id) {
            o.periods.push(p);
        }
    }
    let cols = "order_id, id, user_id, plan, days";
    for a in rows_in::<AdjustmentFact>(conn, cols, "membership_adjustments", range, "id").await? {
        if let Some(o) = by_id.get_mut(&a.order_id) {
            o.adjustments.push(a);
        }
    }
    for k in rows_in::<CardKeyFact>(conn, "order_id, id, sku", "card_keys", range, "id").await? {
        if let Some(o) = by_id.get_mut(&k.order_id) {
            o.card_keys.push(k);
        }
    }
    let cols = "order_id, id, request_no, amount_minor, state, charge_id";
    for r in rows_in::<RefundFact>(conn, cols, "refunds", range, "id").await? {
        if let Some(o) = by_id.get_mut(&r.order_id) {
            o.refunds.push(r);
        }
    }
    let queued = sqlx::query_as::<_, (String, String)>(
        "SELECT order_id, kind FROM jobs WHERE order_id > $1 AND order_id <= $2 AND state = 'queued'",
    )
    .bind(range.0)
    .bind(range.1)
    .fetch_all(&mut *conn)
    .await?;
    for (order_id, kind) in queued {
        if let Some(o) = by_id.get_mut(&order_id) {
            o.queued_jobs.push(kind);
        }
    }
    let open = sqlx::query_as::<_, (String, i64)>(
        "SELECT order_id, COUNT(*) FROM attention_items \
         WHERE order_id > $1 AND order_id <= $2 AND resolved_at_ms IS NULL GROUP BY order_id",
    )
    .bind(range.0)
    .bind(range.1)
    .fetch_all(&mut *conn)
    .await?;
    for (order_id, count) in open {
        if let Some(o) = by_id.get_mut(&order_id) {
            o.open_items = count;
        }
    }
    // Compensation by hand is rare: only orders with such an event are asked about.
    for o in by_id.values_mut() {
        if o.events.iter().any(|e| e.kind == "compensated" && e.cause == "by_hand") {
            o.compensate_actions = sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM operator_actions WHERE order_id = $1 AND action = 'compensate'",
            )
            .bind(&o.id)
            .fetch_one(&mut *conn)
            .await?;
        }
    }
    let mut page: Vec<OrderFacts> = by_id.into_values().collect();
    page.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(page)
}

/// The rows of `table` whose `order_id` falls in the page (`after` < id ≤ `last`).
async fn rows_in<T>(conn: &mut Conn, columns: &str, table: &str, range: (&str, &str), order_by: &str) -> Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    let sql = format!(
        "SELECT {columns} FROM {table} WHERE order_id > $1 AND order_id <= $2 AND order_id IS NOT NULL \
         ORDER BY order_id, {order_by}"
    );
    Ok(sqlx::query_as::<_, T>(&sql).bind(range.0).bind(range.1).fetch_all(conn).await?)
}
