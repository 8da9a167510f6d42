//! Delivery, in the caller's transaction.
//!
//! Internal goods (a wallet credit, membership days) are delivered in the payment's own
//! transaction (S4). A card key is allocated there too when one is in stock; otherwise the
//! order waits, visibly, for a restock. External goods are handed to a delivery job. Every
//! order that does not deliver at once gets a deadline job, stored in the same
//! transaction, so no paid order can wait unbounded.

use crate::{jobs, refund};
use serde_json::json;
use zerodrop_domain::catalog::{Compensation, MissPolicy, ProductKind};
use zerodrop_domain::ledger::Transfer;
use zerodrop_domain::order::{Actor, EventKind};
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::jobs::NewJob;
use zerodrop_store::ledger;
use zerodrop_store::orders::OrderRow;
use zerodrop_store::{card_keys, memberships, payments, StoreError, Tx};

/// External deliveries are retried for at least a day: backoff grows to 10 minutes with
/// jitter down to half of that, so even the shortest waits (5 minutes) need 288 attempts
/// for 24 hours; 300 bound it at 25 to 50 hours.
pub const EXTERNAL_ATTEMPTS_MAX: i64 = 300;
/// The deadline job must fire; a failure to record it is retried this often.
const DEADLINE_ATTEMPTS_MAX: i64 = 30;

/// How delivery started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    Delivered,
    /// Waiting for stock or for the platform's endpoint, with a deadline job stored.
    Waiting,
}

/// Starts delivery of a freshly captured order, appending `pending` events (the capture)
/// first.
pub async fn start(
    tx: &mut Tx,
    order: &mut OrderRow,
    mut pending: Vec<NewEvent>,
    now_ms: i64,
) -> Result<Started, StoreError> {
    match order.product.kind.clone() {
        ProductKind::CurrencyPack { .. } | ProductKind::Membership { .. } => {
            complete(tx, order, pending, None, now_ms).await?;
            Ok(Started::Delivered)
        }
        ProductKind::CardKey => match card_keys::allocate(tx, order.product.sku.as_str(), order.id, now_ms).await? {
            Some(key) => {
                complete(tx, order, pending, Some(json!({ "card_key_id": key.id })), now_ms).await?;
                Ok(Started::Delivered)
            }
            None => {
                let data = json!({ "sku": order.product.sku, "reason": "out of stock" });
                pending.push(NewEvent::new(EventKind::AwaitingStock, Actor::System, "card_key_stock", data));
                events::append_all(tx, order, pending, now_ms).await?;
                enqueue_deadline(tx, order, now_ms).await?;
                Ok(Started::Waiting)
            }
        },
        ProductKind::External { .. } => {
            events::append_all(tx, order, pending, now_ms).await?;
            enqueue_external(tx, order, None, now_ms).await?;
            enqueue_deadline(tx, order, now_ms).await?;
            Ok(Started::Waiting)
        }
    }
}

/// Completes delivery of an order that waited (a restock, the endpoint's answer or
/// confirmation).
pub async fn complete_later(
    tx: &mut Tx,
    order: &mut OrderRow,
    detail: Option<serde_json::Value>,
    now_ms: i64,
) -> Result<(), StoreError> {
    complete(tx, order, Vec::new(), detail, now_ms).await
}

async fn complete(
    tx: &mut Tx,
    order: &mut OrderRow,
    mut pending: Vec<NewEvent>,
    extra: Option<serde_json::Value>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let invariant = |m: String| StoreError::Invariant(m);
    let mut detail = match &order.product.kind {
        ProductKind::Membership { plan, days } => {
            let days = days.checked_mul(order.quantity).ok_or_else(|| invariant("membership days overflow".into()))?;
            let period = memberships::extend(tx, &order.user_id, plan, days, order.id, now_ms).await?;
            json!({ "kind": "membership", "plan": plan, "days": days, "starts_at_ms": period.starts_at_ms, "ends_at_ms": period.ends_at_ms })
        }
        ProductKind::CurrencyPack { virtual_currency, units } => {
            let units = units.checked_mul(order.quantity).ok_or_else(|| invariant("currency units overflow".into()))?;
            json!({ "kind": "currency_pack", "currency": virtual_currency, "units": units })
        }
        ProductKind::CardKey => json!({ "kind": "card_key" }),
        ProductKind::External { endpoint, .. } => json!({ "kind": "external", "endpoint": endpoint }),
    };
    if let (Some(extra), Some(map)) = (extra, detail.as_object_mut()) {
        if let Some(extra) = extra.as_object() {
            map.extend(extra.clone());
        }
    }
    payments::insert_delivery(tx, order.id, order.product.kind.name(), &detail, now_ms).await?;
    pending.push(NewEvent::new(EventKind::Delivered, Actor::System, "delivery", detail));
    let compensation = compensation_due(tx, order, &pending, now_ms).await?;
    if let Some(event) = &compensation {
        pending.push(NewEvent::new(EventKind::Compensated, Actor::System, "late_delivery", event.clone()));
    }
    events::append_all(tx, order, pending, now_ms).await?;
    if compensation.is_some() {
        pay_compensation(tx, order, now_ms).await?;
    }
    // The ledger credit goes last, so it joins the other deferred ledger work at commit.
    if let ProductKind::CurrencyPack { virtual_currency, units } = &order.product.kind {
        let transfer = Transfer::order_credit(order.id, &order.user_id, virtual_currency, units * order.quantity)
            .map_err(|e| invariant(e.to_string()))?;
        apply_once(tx, order, &transfer, now_ms).await?;
    }
    Ok(())
}

/// The compensation event's data when delivery lands after the deadline through the
/// platform's fault. The deadline runs from the provider's payment time, so it is missed
/// when zerodrop learned of the payment late (a lost notification found by a later query,
/// an outage on the platform's side) or when the goods waited (stock, the platform's
/// endpoint). Both are the platform's to answer for: it queries actively and owns its
/// stock and endpoint. A late payment (made after the order expired) is the payer's
/// delay, not the platform's, and is never compensated.
async fn compensation_due(
    tx: &mut Tx,
    order: &OrderRow,
    pending: &[NewEvent],
    now_ms: i64,
) -> Result<Option<serde_json::Value>, StoreError> {
    let (Some(rule), Some(deadline)) = (&order.product.compensation, events::deliver_by_ms(order, pending, now_ms))
    else {
        return Ok(None);
    };
    if now_ms <= deadline {
        return Ok(None);
    }
    let payment = payments::for_order(tx, order.id).await?;
    if payment.is_none_or(|p| p.late) {
        return Ok(None);
    }
    Ok(Some(json!({ "rule": rule, "late_by_ms": now_ms - deadline, "reason": "delivered after the deadline" })))
}

async fn pay_compensation(tx: &mut Tx, order: &OrderRow, now_ms: i64) -> Result<(), StoreError> {
    let invariant = |m: String| StoreError::Invariant(m);
    match (&order.product.compensation, &order.product.kind) {
        (Some(Compensation::Percent { percent }), ProductKind::CurrencyPack { virtual_currency, units }) => {
            let bonus = (units * order.quantity * percent / 100).max(1);
            let transfer = Transfer::compensation(order.id, &order.user_id, virtual_currency, bonus)
                .map_err(|e| invariant(e.to_string()))?;
            apply_once(tx, order, &transfer, now_ms).await
        }
        (Some(Compensation::Units { currency, units }), _) => {
            let transfer = Transfer::compensation(order.id, &order.user_id, currency, *units)
                .map_err(|e| invariant(e.to_string()))?;
            apply_once(tx, order, &transfer, now_ms).await
        }
        (Some(Compensation::Days { days }), ProductKind::Membership { plan, .. }) => {
            let id = format!("compensation:{}", order.id);
            memberships::adjust(tx, &id, &order.user_id, plan, *days, order.id, now_ms).await.map(|_| ())
        }
        // The catalog refuses these combinations; nothing to pay.
        (Some(Compensation::Percent { .. }), _) | (Some(Compensation::Days { .. }), _) | (None, _) => Ok(()),
    }
}

/// Applies a transfer that happens exactly once with this order (its id names the order,
/// and the order has one delivery): written at commit, where a reused id fails the commit.
async fn apply_once(tx: &mut Tx, order: &OrderRow, transfer: &Transfer, now_ms: i64) -> Result<(), StoreError> {
    ledger::apply_new(tx, transfer, Some(order.id), now_ms)
}

/// Stores the delivery deadline: once per order, ever.
pub async fn enqueue_deadline(tx: &mut Tx, order: &OrderRow, now_ms: i64) -> Result<(), StoreError> {
    let deadline = order.deliver_by_ms.unwrap_or(now_ms);
    let job = NewJob {
        kind: jobs::DEADLINE,
        order_id: Some(order.id),
        payload: json!({ "order_id": order.id.to_string() }),
        run_at_ms: deadline,
        max_attempts: DEADLINE_ATTEMPTS_MAX,
        dedupe_key: Some(format!("deadline:{}", order.id)),
    };
    zerodrop_store::jobs::enqueue(tx, &job, now_ms).await.map(|_| ())
}

/// Stores a delivery to the platform's endpoint. `replay` names an operator's replay, which
/// runs even for an order already delivered.
pub async fn enqueue_external(
    tx: &mut Tx,
    order: &OrderRow,
    replay: Option<&str>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let dedupe = match replay {
        Some(id) => format!("deliver_external:{}:replay:{id}", order.id),
        None => format!("deliver_external:{}", order.id),
    };
    let job = NewJob {
        kind: jobs::DELIVER_EXTERNAL,
        order_id: Some(order.id),
        payload: json!({ "order_id": order.id.to_string(), "replay": replay.is_some() }),
        run_at_ms: now_ms,
        max_attempts: EXTERNAL_ATTEMPTS_MAX,
        dedupe_key: Some(dedupe),
    };
    zerodrop_store::jobs::enqueue(tx, &job, now_ms).await
}

/// Applies the product's on-miss policy to a paid order that cannot be delivered in time
/// (its deadline passed, or the platform's endpoint refused it for good): refund at once,
/// or put it in front of a person as a dropped order. The caller holds the order's lock.
pub async fn miss_in(
    tx: &mut Tx,
    order: &mut OrderRow,
    cause: &str,
    reason: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let policy = order.product.on_deadline_miss;
    let data = json!({ "reason": reason, "policy": policy.as_str(), "deliver_by_ms": order.deliver_by_ms });
    let missed = NewEvent::new(EventKind::DeadlineMissed, Actor::System, cause, data);
    match policy {
        MissPolicy::Refund => {
            let due = NewEvent::new(EventKind::RefundDue, Actor::System, cause, json!({ "reason": reason }));
            events::append_all(tx, order, vec![missed, due], now_ms).await?;
            let origin = if reason == "deadline" { refund::Origin::Deadline } else { refund::Origin::DeliveryFailed };
            match refund::request_in(tx, order, None, origin, reason, now_ms).await {
                Ok(_) => Ok(()),
                Err(refund::RefundError::Store(e)) => Err(e),
                Err(other) => Err(StoreError::Invariant(format!("refund after a missed delivery: {other}"))),
            }
        }
        MissPolicy::Escalate => {
            let data = json!({ "reason": "dropped_order", "priority": "dropped_order", "why": reason });
            let escalate = NewEvent::new(EventKind::AttentionRaised, Actor::System, cause, data);
            events::append_all(tx, order, vec![missed, escalate], now_ms).await
        }
    }
}

/// The platform's endpoint refused a paid order for good (a 4xx, or a `failed`
/// confirmation): recorded, then the product's miss policy applies at once.
pub async fn refused_in(
    tx: &mut Tx,
    order: &mut OrderRow,
    cause: &str,
    data: serde_json::Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    events::append(tx, order, NewEvent::new(EventKind::DeliveryFailed, Actor::System, cause, data), now_ms).await?;
    miss_in(tx, order, cause, "delivery_refused", now_ms).await
}

/// The platform's endpoint delivered an order whose money has started going back (the
/// deadline refunded it while the request or its confirmation was under way): the user
/// may now hold both, and a person decides. Recorded, never dropped.
pub async fn arrived_after_refund_in(
    tx: &mut Tx,
    order: &mut OrderRow,
    cause: &str,
    mut data: serde_json::Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    data["reason"] = json!("delivered_after_refund");
    events::append(tx, order, NewEvent::new(EventKind::AttentionRaised, Actor::System, cause, data), now_ms).await
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no order with this number")]
    NotFound,
    #[error("this order is not delivered by an endpoint")]
    NotExternal,
    #[error("the order is {0}: nothing to deliver")]
    NotDeliverable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Sends an external order's delivery request to the platform's endpoint again (for an
/// operator, or the merchant API). Returns the replay's id.
pub async fn replay(app: &crate::App, order_no: &str) -> Result<String, ReplayError> {
    use zerodrop_domain::order::OrderStatus;
    if zerodrop_domain::OrderNo::parse(order_no).is_none() {
        return Err(ReplayError::NotFound);
    }
    let mut tx = app.store.begin().await?;
    let order = zerodrop_store::orders::lock_by_no(&mut tx, order_no).await?.ok_or(ReplayError::NotFound)?;
    if !matches!(order.product.kind, ProductKind::External { .. }) {
        return Err(ReplayError::NotExternal);
    }
    if !matches!(order.status, OrderStatus::Paid | OrderStatus::Delivered) {
        return Err(ReplayError::NotDeliverable(order.status.to_string()));
    }
    let replay_id = uuid::Uuid::now_v7().to_string();
    enqueue_external(&mut tx, &order, Some(&replay_id), zerodrop_store::now_ms()).await?;
    tx.commit().await?;
    app.wake();
    Ok(replay_id)
}
