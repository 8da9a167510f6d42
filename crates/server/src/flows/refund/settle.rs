//! Settling a refund: its final outcome recorded once, in the caller's transaction, under
//! the order's lock when there is an order, whoever learned it (the refund job, or the
//! provider's refund notification).
//!
//! - A refund that succeeded ends any "outcome unknown" item raised for it.
//! - A refund the provider refused gives back what it took back (wallet units, membership
//!   days, the card key) in the same transaction, and puts the money in front of a person.
//! - A refund whose outcome stays unknown past its bound goes to a person too, and keeps
//!   being asked about: it is never called failed.

use serde_json::json;
use zerodrop_domain::catalog::ProductKind;
use zerodrop_domain::ledger::{AccountId, AccountKind, Transfer};
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_domain::refund::reclaim_share;
use zerodrop_domain::OrderId;
use zerodrop_store::attention::{self, NewAction, NewItem};
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::orders::OrderRow;
use zerodrop_store::refunds::{self, RefundRow, RefundState};
use zerodrop_store::{card_keys, charges, ledger, memberships, payments, StoreError, Tx};

/// A refund's final outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Final {
    Succeeded,
    Failed(String),
}

/// Whether a refund returns an order's own payment (and so moves the order), or a whole
/// charge that was never the order's payment.
async fn is_order_payment(tx: &mut Tx, refund: &RefundRow) -> Result<bool, StoreError> {
    let Some(charge_id) = refund.charge_id else { return Ok(true) };
    let charge = charges::get(tx, charge_id).await?.ok_or(StoreError::NotFound)?;
    Ok(charge.class.is_order_payment())
}

/// Records a refund's final outcome once. `order` is the refund's order, locked by the
/// caller (required when the refund has one). Returns false when it was already final.
#[tracing::instrument(name = "refund.settle", skip_all, fields(refund.request_no = %refund.request_no))]
pub async fn settle_in(
    tx: &mut Tx,
    order: Option<&mut OrderRow>,
    refund: &RefundRow,
    outcome: &Final,
    cause: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let (state, detail) = match outcome {
        Final::Succeeded => (RefundState::Succeeded, None),
        Final::Failed(reason) => (RefundState::Failed, Some(reason.as_str())),
    };
    if !refunds::set_state(tx, &refund.id, state, detail, now_ms).await? {
        return Ok(false);
    }
    end_unknown_items(tx, refund, outcome, now_ms).await?;
    let order_payment = is_order_payment(tx, refund).await?;
    let data = json!({
        "refund_id": refund.id, "request_no": refund.request_no, "amount": refund.amount.to_decimal(),
        "charge_id": refund.charge_id, "detail": detail,
    });
    let Some(order) = order else {
        if refund.order_id.is_some() {
            return Err(StoreError::Invariant(format!("refund {} settled without its order", refund.request_no)));
        }
        // A charge for no order: its refund failing is money a person must return.
        if let Final::Failed(_) = outcome {
            let item = NewItem {
                charge_id: refund.charge_id,
                at_stake_minor: refund.amount.minor,
                currency: Some(refund.amount.currency.code().to_owned()),
                ..NewItem::new("refund_failed", data)
            };
            attention::raise(tx, item, now_ms).await?;
        }
        return Ok(true);
    };
    let kind = match (outcome, order_payment, refund.full) {
        (Final::Succeeded, false, _) => EventKind::ChargeRefundSucceeded,
        (Final::Failed(_), false, _) => EventKind::ChargeRefundFailed,
        (Final::Succeeded, true, true) => EventKind::RefundSucceeded,
        (Final::Succeeded, true, false) => EventKind::PartialRefundSucceeded,
        (Final::Failed(_), true, true) => EventKind::RefundFailed,
        (Final::Failed(_), true, false) => EventKind::PartialRefundFailed,
    };
    let mut pending = vec![NewEvent::new(kind, Actor::Provider, cause, data.clone())];
    if let Final::Failed(_) = outcome {
        // Goods come back only to an order that can hold them again: delivered (a partial
        // refund), or owed a refund after this full one failed. A partial refund refused
        // while a later full refund is under way or done gives nothing back (the full one
        // took the goods); its money is the person's item below.
        let after = if refund.full { OrderStatus::RefundDue } else { order.status };
        if order_payment && matches!(after, OrderStatus::Delivered | OrderStatus::RefundDue) {
            if let Some(restored) = restore(tx, order, refund, now_ms).await? {
                pending.push(NewEvent::new(EventKind::GoodsRestored, Actor::System, cause, restored));
            }
        }
        let mut attention = data;
        attention["reason"] = json!("refund_failed");
        attention["at_stake_minor"] = json!(refund.amount.minor);
        pending.push(NewEvent::new(EventKind::AttentionRaised, Actor::System, cause, attention));
    }
    if order.attention && pending.iter().all(|e| e.kind != EventKind::AttentionRaised) {
        // The answer ended the order's last open item (an unknown refund): the flag goes too.
        if attention::open_for_order(tx, order.id).await?.is_empty() {
            let cleared = json!({ "note": "the provider's answer ended the last open item" });
            pending.push(NewEvent::new(EventKind::AttentionCleared, Actor::System, cause, cleared));
        }
    }
    events::append_all(tx, order, pending, now_ms).await?;
    Ok(true)
}

/// Marks a refund whose outcome is not known. With `raise`, also puts it in front of a
/// person (once): the money may be gone or not, and only the provider can say.
pub async fn mark_unknown_in(
    tx: &mut Tx,
    order: Option<&mut OrderRow>,
    refund: &RefundRow,
    why: &str,
    raise: bool,
    cause: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    if refund.state.is_final() {
        return Ok(());
    }
    refunds::set_state(tx, &refund.id, RefundState::Unknown, Some(why), now_ms).await?;
    if !raise || already_raised(tx, refund).await? {
        return Ok(());
    }
    let data = json!({
        "reason": "refund_unknown", "refund_id": refund.id, "request_no": refund.request_no,
        "amount": refund.amount.to_decimal(), "charge_id": refund.charge_id, "why": why,
        "at_stake_minor": refund.amount.minor,
    });
    match order {
        Some(order) => {
            let mut pending = Vec::new();
            // The machine takes `refund_unknown` only on paid orders (an extra charge's
            // refund can run on an order never paid); the item is raised either way.
            if order.status.is_paid() {
                pending.push(NewEvent::new(EventKind::RefundUnknown, Actor::System, cause, data.clone()));
            }
            pending.push(NewEvent::new(EventKind::AttentionRaised, Actor::System, cause, data));
            events::append_all(tx, order, pending, now_ms).await
        }
        None => {
            let item = NewItem {
                charge_id: refund.charge_id,
                at_stake_minor: refund.amount.minor,
                currency: Some(refund.amount.currency.code().to_owned()),
                ..NewItem::new("refund_unknown", data)
            };
            attention::raise(tx, item, now_ms).await.map(|_| ())
        }
    }
}

/// Whether an open `refund_unknown` item already names this refund.
async fn already_raised(tx: &mut Tx, refund: &RefundRow) -> Result<bool, StoreError> {
    Ok(!unknown_items(tx, refund).await?.is_empty())
}

async fn unknown_items(tx: &mut Tx, refund: &RefundRow) -> Result<Vec<attention::Item>, StoreError> {
    let filter = attention::Filter {
        open: Some(true),
        reason: Some("refund_unknown".into()),
        order_id: refund.order_id.as_deref().and_then(OrderId::parse),
        charge_id: refund.charge_id,
        ..attention::Filter::default()
    };
    let items = attention::list(tx, &filter, 0, 100).await?;
    Ok(items.into_iter().filter(|i| i.detail.get("refund_id").and_then(|v| v.as_str()) == Some(&refund.id)).collect())
}

/// The provider answered at last: the "outcome unknown" items for this refund end, by
/// zerodrop, with the answer as the action (a failure raises its own item).
async fn end_unknown_items(tx: &mut Tx, refund: &RefundRow, outcome: &Final, now_ms: i64) -> Result<(), StoreError> {
    for item in unknown_items(tx, refund).await? {
        let answer = match outcome {
            Final::Succeeded => "provider_confirmed_refund",
            Final::Failed(_) => "provider_refused_refund",
        };
        let detail = json!({ "refund_id": refund.id, "answer": answer });
        let action = NewAction {
            item_id: Some(item.id),
            order_id: item.order_id.as_deref().and_then(OrderId::parse),
            charge_id: item.charge_id,
            action: "settled_by_provider",
            reason_code: answer,
            note: "the provider gave the refund's final outcome",
            actor: "zerodrop",
            channel: "system",
            detail: &detail,
        };
        attention::resolve(tx, item.id, &action, now_ms).await?;
    }
    Ok(())
}

/// Gives back what a refused refund took back when it was requested (its
/// `goods_reclaimed` event says how it was taken), in the caller's transaction. Returns
/// what was given back, or `None` when the refund took nothing.
async fn restore(
    tx: &mut Tx,
    order: &OrderRow,
    refund: &RefundRow,
    now_ms: i64,
) -> Result<Option<serde_json::Value>, StoreError> {
    let cause = format!("refund:{}", refund.id);
    let taken = events::list(tx, order.id)
        .await?
        .into_iter()
        .find(|e| e.kind == EventKind::GoodsReclaimed.as_str() && e.cause == cause)
        .map(|e| e.data);
    // A partial refund always reclaimed its share (partials need a delivered order), even
    // a share that rounded to nothing and so left no event; a full one only if it says so.
    if taken.is_none() && refund.full {
        return Ok(None);
    }
    let taken = taken.unwrap_or_default();
    let number = |name: &str| taken.get(name).and_then(|v| v.as_i64()).unwrap_or(0);
    let invariant = |e: zerodrop_domain::ledger::TransferError| StoreError::Invariant(e.to_string());
    match &order.product.kind {
        ProductKind::CurrencyPack { virtual_currency: currency, units } => {
            let give = share_back(tx, order, refund, units * order.quantity).await?;
            // Reverse this refund's own write-off first (the units it found spent); the
            // rest goes back to the wallet. Never reverses a loss another refund wrote off.
            let lost = number("already_spent_written_off").min(give);
            let back = give - lost;
            if back > 0 {
                let transfer = Transfer::new(
                    format!("refund:{}:restore", refund.id),
                    (AccountId::issuance(currency), AccountKind::Issuance),
                    (AccountId::wallet(&order.user_id, currency), AccountKind::Wallet),
                    currency,
                    back,
                )
                .map_err(invariant)?;
                applied(ledger::apply(tx, &transfer, Some(order.id), now_ms).await?)?;
            }
            if lost > 0 {
                // The loss written off for spent units never happened: the money stayed.
                let transfer = Transfer::new(
                    format!("refund:{}:loss_reversed", refund.id),
                    (AccountId::issuance(currency), AccountKind::Issuance),
                    (AccountId::loss(currency), AccountKind::Loss),
                    currency,
                    lost,
                )
                .map_err(invariant)?;
                applied(ledger::apply(tx, &transfer, Some(order.id), now_ms).await?)?;
            }
            Ok((give > 0).then(|| json!({ "currency": currency, "given_back": back, "loss_reversed": lost })))
        }
        ProductKind::Membership { plan, days } => {
            let give = share_back(tx, order, refund, days * order.quantity).await?;
            if give == 0 {
                return Ok(None);
            }
            let id = format!("restore:{}", refund.id);
            let (_, ends_at_ms) = memberships::adjust(tx, &id, &order.user_id, plan, give, order.id, now_ms).await?;
            Ok(Some(json!({ "plan": plan, "days_given_back": give, "ends_at_ms": ends_at_ms })))
        }
        ProductKind::CardKey if taken.get("card_key").is_some() => {
            let restored = card_keys::restore(tx, order.id).await?;
            Ok(restored.then(|| json!({ "card_key": "restored" })))
        }
        // External goods are the platform's to give back; the refund failing is on the timeline.
        ProductKind::CardKey | ProductKind::External { .. } => Ok(None),
    }
}

/// How much of `granted` a refused refund gives back: what the refunds of the order's
/// payment covered with it, less what the others still cover without it. Not simply what
/// it took itself: shares are rounded down on the running total, so with odd splits the
/// others cover a different amount once it is gone (0.55 and 0.55 of 6.00 took 5 and 6 of
/// 60 units; 0.55 alone covers 5, so a refused first refund gives back 6). This keeps
/// what is taken back at exactly what the live refunds cover, whichever of them fails.
async fn share_back(tx: &mut Tx, order: &OrderRow, refund: &RefundRow, granted: i64) -> Result<i64, StoreError> {
    let paid = payments::for_order(tx, order.id)
        .await?
        .ok_or_else(|| StoreError::Invariant(format!("refund {} of an unpaid order", refund.request_no)))?;
    let others: i64 = refunds::of_order_payment(tx, order.id)
        .await?
        .iter()
        .filter(|r| r.state != RefundState::Failed && r.id != refund.id)
        .map(|r| r.amount.minor)
        .sum();
    let with = reclaim_share(granted, others + refund.amount.minor, paid.amount.minor);
    let without = reclaim_share(granted, others, paid.amount.minor);
    Ok((with - without).max(0))
}

fn applied(outcome: Result<ledger::TransferOutcome, ledger::TransferRefused>) -> Result<(), StoreError> {
    match outcome {
        Ok(ledger::TransferOutcome::Applied) => Ok(()),
        Ok(ledger::TransferOutcome::AlreadyApplied) => {
            Err(StoreError::Invariant("a refund's restore ran twice".into()))
        }
        Err(refused) => Err(StoreError::Invariant(refused.to_string())),
    }
}
