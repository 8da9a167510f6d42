//! Completing a delivery, now (internal goods, a card key in stock) or after waiting (a
//! restock, the endpoint's answer or confirmation): the delivery row (one per order,
//! ever), the `delivered` event, the ledger credit, and the product's compensation when
//! the delivery is late through the platform's fault.

use crate::jobs::renewal::RemindMembership;
use serde_json::json;
use zerodrop_domain::catalog::{Compensation, ProductKind};
use zerodrop_domain::ledger::Transfer;
use zerodrop_domain::order::{Actor, EventKind};
use zerodrop_domain::renewal::expiry_reminder_at;
use zerodrop_domain::terms::REMIND_DAYS_BEFORE_DEFAULT;
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::ledger;
use zerodrop_store::orders::OrderRow;
use zerodrop_store::{memberships, payments, StoreError, Tx};

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

/// Completes delivery in the caller's transaction, appending `pending` events (the
/// capture, when it is delivered at once) first.
#[tracing::instrument(name = "delivery.complete", skip_all, fields(order.no = %order.order_no))]
pub(super) async fn complete(
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
            remind_before_expiry(tx, order, plan, period.ends_at_ms, now_ms).await?;
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

/// Enqueues the reminder before the membership's new end, in the delivery's transaction
/// (every membership's end is announced, renewing or not; a later extension makes this
/// one moot and schedules its own). None when that moment already passed.
async fn remind_before_expiry(
    tx: &mut Tx,
    order: &OrderRow,
    plan: &str,
    ends_at_ms: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    let Some(at) = expiry_reminder_at(ends_at_ms, REMIND_DAYS_BEFORE_DEFAULT, now_ms) else { return Ok(()) };
    let job = RemindMembership {
        user_id: order.user_id.clone(),
        plan: plan.to_owned(),
        title: order.product.title.clone(),
        ends_at_ms,
    };
    crate::jobs::enqueue(tx, &job, at, now_ms).await.map(|_| ())
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

/// A person delivered the goods by hand (resolving an attention item): currency and
/// membership are granted as any delivery would; a card code or an external grant the
/// person handed over is recorded as they describe it (`what`), under its own delivery
/// kind, since no stock key or endpoint answer stands behind it.
pub async fn by_hand(
    tx: &mut Tx,
    order: &mut OrderRow,
    what: &str,
    actor: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let extra = json!({ "by_hand": true, "what": what, "actor": actor });
    match &order.product.kind {
        ProductKind::CurrencyPack { .. } | ProductKind::Membership { .. } => {
            complete(tx, order, Vec::new(), Some(extra), now_ms).await
        }
        ProductKind::CardKey | ProductKind::External { .. } => {
            let mut detail = extra;
            detail["kind"] = json!(order.product.kind.name());
            payments::insert_delivery(tx, order.id, BY_HAND_KIND, &detail, now_ms).await?;
            let event = NewEvent::new(EventKind::Delivered, Actor::Operator, "by_hand", detail);
            events::append(tx, order, event, now_ms).await
        }
    }
}

/// The delivery kind of goods a person handed over outside zerodrop's stock and endpoints.
pub const BY_HAND_KIND: &str = "by_hand";

/// A person grants the product's compensation (resolving an attention item): once per
/// order, whatever the clock said. Returns false when the product has no compensation
/// rule or the order was already compensated.
pub async fn compensate_by_hand(
    tx: &mut Tx,
    order: &mut OrderRow,
    actor: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let Some(rule) = &order.product.compensation else { return Ok(false) };
    let already = events::list(tx, order.id).await?.iter().any(|e| e.kind == EventKind::Compensated.as_str());
    if already {
        return Ok(false);
    }
    let data = json!({ "rule": rule, "reason": "granted by a person", "actor": actor });
    events::append(tx, order, NewEvent::new(EventKind::Compensated, Actor::Operator, "by_hand", data), now_ms).await?;
    pay_compensation(tx, order, now_ms).await?;
    Ok(true)
}
