//! Order events: the append-only history whose fold is the order's status.
//!
//! `append` is the only code that changes `orders.status`: it asks the domain's status
//! machine whether the event is allowed, inserts the event with the next sequence
//! number, and updates the order row to the folded state, in the caller's transaction.

use crate::orders::OrderRow;
use crate::{attention, seal, Conn, Result, StoreError, Tx};
use serde::Serialize;
use zerodrop_domain::order::{self, Actor, EventKind, OrderState, OrderStatus};
use zerodrop_domain::OrderId;

pub struct NewEvent {
    pub kind: EventKind,
    pub actor: Actor,
    /// What brought the event about, e.g. `notification:42`, `job:7`, `api`.
    pub cause: String,
    pub data: serde_json::Value,
}

impl NewEvent {
    pub fn new(kind: EventKind, actor: Actor, cause: &str, data: serde_json::Value) -> NewEvent {
        NewEvent { kind, actor, cause: cause.to_owned(), data }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct EventRow {
    pub seq: i64,
    pub at_ms: i64,
    pub kind: String,
    pub actor: String,
    pub cause: String,
    pub data: serde_json::Value,
}

/// Appends the first event of a freshly inserted order (whose row has no events yet).
pub(crate) async fn append_first(tx: &mut Tx, order: &mut OrderRow, event: NewEvent, now_ms: i64) -> Result<()> {
    let state = order::apply(None, event.kind)?;
    write(tx, order, vec![(state, event)], now_ms).await
}

/// Appends an event to an order the caller has locked (see [`crate::orders::lock`]) and
/// moves the row to the folded state. Refused transitions are errors and roll back.
pub async fn append(tx: &mut Tx, order: &mut OrderRow, event: NewEvent, now_ms: i64) -> Result<()> {
    append_all(tx, order, vec![event], now_ms).await
}

/// Appends several events in order, as one insert and one update of the order row.
pub async fn append_all(tx: &mut Tx, order: &mut OrderRow, events: Vec<NewEvent>, now_ms: i64) -> Result<()> {
    let mut state = OrderState { status: order.status, attention: order.attention };
    let mut steps = Vec::with_capacity(events.len());
    for event in events {
        state = order::apply(Some(state), event.kind)?;
        steps.push((state, event));
    }
    write(tx, order, steps, now_ms).await
}

async fn write(tx: &mut Tx, order: &mut OrderRow, steps: Vec<(OrderState, NewEvent)>, now_ms: i64) -> Result<()> {
    let Some((final_state, _)) = steps.last().map(|(s, e)| (*s, e.kind)) else {
        return Ok(());
    };
    let mut next = order.clone();
    let mut sql = String::from(
        "INSERT INTO order_events (order_id, seq, at_ms, kind, actor, cause, data, seal, seal_batch) VALUES ",
    );
    for i in 0..steps.len() {
        let p = i * 9;
        if i > 0 {
            sql.push_str(", ");
        }
        let params: Vec<String> = (1..=9).map(|k| format!("${}", p + k)).collect();
        sql.push_str(&format!("({})", params.join(", ")));
    }
    let order_id = order.id.to_string();
    // The order's chain: each event seals the one before (the head is kept on the order
    // row, which this transaction holds).
    let mut head = order.seal_head.clone().unwrap_or_else(|| seal::GENESIS.to_owned());
    let batch = tx.seal_batch();
    let mut seals = Vec::with_capacity(steps.len());
    let mut insert = sqlx::query(&sql);
    for (i, (_, event)) in steps.iter().enumerate() {
        let data = serde_json::to_string(&event.data).map_err(StoreError::Json)?;
        let seq = order.event_seq + 1 + i as i64;
        let kind = event.kind.as_str();
        head = seal::content::event(&head, &order_id, seq, now_ms, kind, event.actor.as_str(), &event.cause, &data);
        insert = insert
            .bind(order_id.clone())
            .bind(seq)
            .bind(now_ms)
            .bind(kind)
            .bind(event.actor.as_str())
            .bind(event.cause.clone())
            .bind(data)
            .bind(head.clone())
            .bind(batch.clone());
        seals.push(head.clone());
        derive_columns(&mut next, event, now_ms);
    }
    insert.execute(&mut **tx).await?;

    let seq = order.event_seq + steps.len() as i64;
    next.status = final_state.status;
    next.attention = final_state.attention;
    next.event_seq = seq;
    let updated = sqlx::query(
        "UPDATE orders SET status = $1, attention = $2, attention_reason = $3, paid_at_ms = $4, \
             deliver_by_ms = $5, settled_at_ms = $6, event_seq = $7, seal_head = $8 \
         WHERE id = $9 AND event_seq = $10",
    )
    .bind(next.status.as_str())
    .bind(i64::from(next.attention))
    .bind(&next.attention_reason)
    .bind(next.paid_at_ms)
    .bind(next.deliver_by_ms)
    .bind(next.settled_at_ms)
    .bind(seq)
    .bind(&head)
    .bind(&order_id)
    .bind(order.event_seq)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if updated != 1 {
        // Another writer moved the order since we read it: never overwrite its state.
        return Err(StoreError::Invariant(format!("order {} changed concurrently", order.id)));
    }
    next.seal_head = Some(head);
    for seal in seals {
        tx.sealed_in_batch(seal);
    }
    for (state, event) in steps.iter().filter(|(_, e)| e.kind == EventKind::AttentionRaised) {
        attention::raise(tx, item_for(order, state.status, event), now_ms).await?;
    }
    *order = next;
    Ok(())
}

/// The attention item an `attention_raised` event opens. The money at stake is what the
/// raiser names (`at_stake_minor`), or else the order's amount while the provider holds
/// the user's money with no outcome (paid, refund owed, refund under way), or nothing.
fn item_for(order: &OrderRow, status: OrderStatus, event: &NewEvent) -> attention::NewItem {
    let reason = event.data.get("reason").and_then(|r| r.as_str()).unwrap_or("attention_raised");
    let held = match status {
        OrderStatus::Paid | OrderStatus::RefundDue | OrderStatus::Refunding => order.amount.minor,
        OrderStatus::AwaitingPayment | OrderStatus::Delivered | OrderStatus::Expired | OrderStatus::Refunded => 0,
    };
    let at_stake = event.data.get("at_stake_minor").and_then(|v| v.as_i64()).unwrap_or(held);
    let charge_id = event.data.get("charge_id").and_then(|v| v.as_i64());
    attention::NewItem {
        order_id: Some(order.id),
        charge_id,
        at_stake_minor: at_stake,
        currency: Some(order.amount.currency.code().to_owned()),
        ..attention::NewItem::new(reason, event.data.clone())
    }
}

/// When a payment was made, from its capture event: the provider's payment time when it
/// gave one (never in our future, whatever its clock says). The delivery deadline runs
/// from the payment, not from when zerodrop happened to learn of it.
fn captured_at_ms(event: &NewEvent, now_ms: i64) -> i64 {
    let provider_ms = event.data.get("paid_at_ms").and_then(|v| v.as_i64());
    provider_ms.map_or(now_ms, |ms| ms.min(now_ms))
}

/// The order's delivery deadline, also before the capture among `pending` events has
/// been appended (delivery in the payment's own transaction decides with it).
pub fn deliver_by_ms(order: &OrderRow, pending: &[NewEvent], now_ms: i64) -> Option<i64> {
    order.deliver_by_ms.or_else(|| {
        let capture = pending.iter().find(|e| e.kind == EventKind::PaymentCaptured)?;
        Some(captured_at_ms(capture, now_ms) + order.product.delivery_deadline_secs * 1000)
    })
}

/// Columns that summarise the timeline for queries (when paid, delivery deadline, when
/// settled, why attention is needed). They are derived from events, never set apart from them.
fn derive_columns(order: &mut OrderRow, event: &NewEvent, now_ms: i64) {
    match event.kind {
        EventKind::PaymentCaptured => {
            let paid_ms = captured_at_ms(event, now_ms);
            order.paid_at_ms = Some(paid_ms);
            order.deliver_by_ms = Some(paid_ms + order.product.delivery_deadline_secs * 1000);
        }
        // Settled: nothing more will happen without a person or a new request.
        EventKind::Delivered | EventKind::Expired | EventKind::RefundSucceeded => {
            order.settled_at_ms = Some(now_ms);
        }
        // A refund that failed, or a new one, reopens the order.
        EventKind::RefundFailed | EventKind::RefundRequested => order.settled_at_ms = None,
        // Goods given back after a refused refund: delivered again.
        EventKind::GoodsRestored => order.settled_at_ms = Some(now_ms),
        EventKind::AttentionRaised => {
            let reason = event.data.get("reason").and_then(|r| r.as_str()).unwrap_or("attention raised");
            order.attention_reason = Some(reason.chars().take(200).collect());
        }
        EventKind::AttentionCleared => order.attention_reason = None,
        EventKind::Created
        | EventKind::RefundDue
        | EventKind::PartialRefundRequested
        | EventKind::PartialRefundSucceeded
        | EventKind::PartialRefundFailed
        | EventKind::GoodsReclaimed
        | EventKind::AwaitingStock
        | EventKind::DeliveryAttempted
        | EventKind::DeliveryAccepted
        | EventKind::DeliveryUnknown
        | EventKind::DeliveryFailed
        | EventKind::DeadlineMissed
        | EventKind::Compensated
        | EventKind::ProviderQueried
        | EventKind::ProviderCloseRequested
        | EventKind::NotificationRejected
        | EventKind::RefundNotified
        | EventKind::ChargeRecorded
        | EventKind::ChargeRefundRequested
        | EventKind::ChargeRefundSucceeded
        | EventKind::ChargeRefundFailed
        | EventKind::RefundUnknown
        | EventKind::ActionTaken
        | EventKind::ConfirmationReplayed => {}
    }
}

pub async fn list(conn: &mut Conn, order_id: OrderId) -> Result<Vec<EventRow>> {
    let rows = sqlx::query_as::<_, EventRecord>(
        "SELECT seq, at_ms, kind, actor, cause, data FROM order_events WHERE order_id = $1 ORDER BY seq",
    )
    .bind(order_id.to_string())
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// An `order_events` row as [`list`] reads it, parsed into an [`EventRow`] by its `TryFrom`.
#[derive(sqlx::FromRow)]
struct EventRecord {
    seq: i64,
    at_ms: i64,
    kind: String,
    actor: String,
    cause: String,
    /// The event's data, as JSON text.
    data: String,
}

impl TryFrom<EventRecord> for EventRow {
    type Error = StoreError;

    fn try_from(r: EventRecord) -> Result<EventRow> {
        Ok(EventRow {
            seq: r.seq,
            at_ms: r.at_ms,
            kind: r.kind,
            actor: r.actor,
            cause: r.cause,
            data: serde_json::from_str(&r.data).map_err(StoreError::Json)?,
        })
    }
}

/// Folds stored event kinds into a state, for the audit and for tests.
pub fn fold_kinds(kinds: &[String]) -> Result<Option<OrderState>, String> {
    let parsed: Vec<EventKind> = kinds
        .iter()
        .map(|k| EventKind::parse(k).ok_or_else(|| format!("unknown event kind {k:?}")))
        .collect::<Result<_, _>>()?;
    order::fold(parsed).map_err(|e| e.to_string())
}

/// Status names, for readers that need to say which statuses are settled.
pub fn settled_statuses() -> Vec<&'static str> {
    OrderStatus::ALL.into_iter().filter(|s| s.is_settled()).map(|s| s.as_str()).collect()
}

/// How many events of each kind exist (reports and the demo).
pub async fn count_by_kind(conn: &mut Conn) -> Result<Vec<(String, i64)>> {
    let rows =
        sqlx::query_as::<_, (String, i64)>("SELECT kind, COUNT(*) FROM order_events GROUP BY kind ORDER BY kind")
            .fetch_all(conn)
            .await?;
    Ok(rows)
}
