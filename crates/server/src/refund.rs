//! The one path for refunds.
//!
//! The merchant API, a missed deadline, a failed delivery and a late payment all call
//! [`request_in`]. Under the order's lock it checks that refunds never exceed what was
//! paid, stores the refund with a request number the provider will see on every retry
//! (so a retry is never a second refund), takes back what the refund covers, appends the
//! events and enqueues the refund job, all in the caller's transaction. The job asks the
//! provider and queries until the refund is final; [`settle_in`] records the outcome,
//! whoever learns it (the job, or the provider's refund notification).

use crate::jobs;
use serde_json::json;
use zerodrop_domain::catalog::ProductKind;
use zerodrop_domain::ledger::{AccountId, Transfer};
use zerodrop_domain::money::Money;
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_domain::refund::{reclaim_share, refundable, split_reclaim};
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::jobs::NewJob;
use zerodrop_store::ledger::{self, TransferOutcome};
use zerodrop_store::orders::OrderRow;
use zerodrop_store::refunds::{self, NewRefund, RefundRow, RefundState};
use zerodrop_store::{card_keys, memberships, payments, StoreError, Tx};

/// Refund jobs retry for a long time (money is owed); backoff caps at 10 minutes.
pub const REFUND_ATTEMPTS_MAX: i64 = 100;

/// Why zerodrop is refunding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The platform asked, through the merchant API.
    Merchant,
    /// Delivery missed its deadline under a refund policy.
    Deadline,
    /// The platform's endpoint refused the delivery for good.
    DeliveryFailed,
    /// The payment landed after the order expired, under a refund policy.
    LatePayment,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Merchant => "merchant",
            Origin::Deadline => "deadline",
            Origin::DeliveryFailed => "delivery_failed",
            Origin::LatePayment => "late_payment",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error("the order has no captured payment to refund")]
    NotPaid,
    #[error("everything paid for this order is already refunded or being refunded")]
    NothingLeft,
    #[error("the refund ({asked}) is larger than what is left to refund ({left})")]
    Exceeds { asked: String, left: String },
    #[error("a partial refund needs a delivered order; refund the whole order instead")]
    PartialNotAllowed,
    #[error("a full refund of this order is already under way")]
    InProgress,
    #[error("the refund amount must be positive and in the order's currency")]
    BadAmount,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Requests a refund of `amount` (or of everything left, when `None`).
pub async fn request_in(
    tx: &mut Tx,
    order: &mut OrderRow,
    amount: Option<Money>,
    origin: Origin,
    reason: &str,
    now_ms: i64,
) -> Result<RefundRow, RefundError> {
    let payment = payments::for_order(tx, order.id).await?.ok_or(RefundError::NotPaid)?;
    let existing = refunds::for_order(tx, order.id).await?;
    let committed: i64 = existing.iter().filter(|r| r.state != RefundState::Failed).map(|r| r.amount.minor).sum();
    let left = refundable(payment.amount.minor, committed);
    if order.status == OrderStatus::Refunding {
        return Err(RefundError::InProgress);
    }
    if left == 0 {
        return Err(RefundError::NothingLeft);
    }
    let amount = amount.unwrap_or(Money::new(left, payment.amount.currency));
    if amount.currency != payment.amount.currency || amount.minor <= 0 {
        return Err(RefundError::BadAmount);
    }
    if amount.minor > left {
        let left = Money::new(left, amount.currency);
        return Err(RefundError::Exceeds { asked: amount.to_decimal(), left: left.to_decimal() });
    }
    let full = amount.minor == left;
    let delivered = order.status == OrderStatus::Delivered;
    if !full && !delivered {
        return Err(RefundError::PartialNotAllowed);
    }

    let id = uuid::Uuid::now_v7().to_string();
    let request_no = format!("{}R{}", order.order_no, existing.len() + 1);
    let new = NewRefund {
        id: &id,
        order_id: order.id,
        request_no: &request_no,
        amount,
        full,
        origin: origin.as_str(),
        reason,
    };
    refunds::insert(tx, &new, now_ms).await?;
    let kind = if full { EventKind::RefundRequested } else { EventKind::PartialRefundRequested };
    let data = json!({
        "refund_id": id, "request_no": request_no, "amount": amount.to_decimal(), "currency": amount.currency.code(),
        "origin": origin.as_str(), "reason": reason,
    });
    let mut pending = vec![NewEvent::new(kind, Actor::System, &format!("refund:{id}"), data)];
    if delivered {
        if let Some(taken) = reclaim(tx, order, &id, amount, payment.amount, full, now_ms).await? {
            pending.push(NewEvent::new(EventKind::GoodsReclaimed, Actor::System, &format!("refund:{id}"), taken));
        }
    }
    events::append_all(tx, order, pending, now_ms).await?;
    let job = NewJob {
        kind: jobs::REFUND,
        order_id: Some(order.id),
        payload: json!({ "refund_id": id }),
        run_at_ms: now_ms,
        max_attempts: REFUND_ATTEMPTS_MAX,
        dedupe_key: Some(format!("refund:{id}")),
    };
    zerodrop_store::jobs::enqueue(tx, &job, now_ms).await?;
    refunds::get(tx, &id).await?.ok_or_else(|| StoreError::Invariant("refund vanished".into()).into())
}

/// Takes back what a refund of a delivered order covers: unspent currency (the spent rest
/// is the platform's loss, never the user's debt), membership days, the card key.
async fn reclaim(
    tx: &mut Tx,
    order: &OrderRow,
    refund_id: &str,
    amount: Money,
    paid: Money,
    full: bool,
    now_ms: i64,
) -> Result<Option<serde_json::Value>, StoreError> {
    let invariant = |m: String| StoreError::Invariant(m);
    match &order.product.kind {
        ProductKind::CurrencyPack { virtual_currency, units } => {
            let share = reclaim_share(units * order.quantity, amount.minor, paid.minor);
            if share == 0 {
                return Ok(None);
            }
            let wallet = AccountId::wallet(&order.user_id, virtual_currency);
            let balance = ledger::balance(tx, &wallet).await?;
            let (taken, lost) = split_reclaim(share, balance);
            if taken > 0 {
                let transfer = Transfer::reclaim(refund_id, &order.user_id, virtual_currency, taken)
                    .map_err(|e| invariant(e.to_string()))?;
                applied(ledger::apply(tx, &transfer, Some(order.id), now_ms).await?)?;
            }
            if lost > 0 {
                let transfer =
                    Transfer::write_off(refund_id, virtual_currency, lost).map_err(|e| invariant(e.to_string()))?;
                applied(ledger::apply(tx, &transfer, Some(order.id), now_ms).await?)?;
            }
            Ok(Some(json!({ "currency": virtual_currency, "taken_back": taken, "already_spent_written_off": lost })))
        }
        ProductKind::Membership { plan, days } => {
            let share = reclaim_share(days * order.quantity, amount.minor, paid.minor);
            if share == 0 {
                return Ok(None);
            }
            let (_, ends_at_ms) =
                memberships::adjust(tx, &format!("refund:{refund_id}"), &order.user_id, plan, -share, order.id, now_ms)
                    .await?;
            Ok(Some(json!({ "plan": plan, "days_taken_back": share, "ends_at_ms": ends_at_ms })))
        }
        ProductKind::CardKey if full => {
            let revoked = card_keys::revoke(tx, order.id, now_ms).await?;
            Ok(revoked.then(|| json!({ "card_key": "revoked" })))
        }
        ProductKind::CardKey => Ok(None),
        ProductKind::External { endpoint, .. } => Ok(Some(
            json!({ "endpoint": endpoint, "note": "external goods are taken back by the platform, not by zerodrop" }),
        )),
    }
}

fn applied(outcome: Result<TransferOutcome, ledger::TransferRefused>) -> Result<(), StoreError> {
    match outcome {
        Ok(TransferOutcome::Applied) => Ok(()),
        Ok(TransferOutcome::AlreadyApplied) => {
            Err(StoreError::Invariant("a refund's ledger transfer ran twice".into()))
        }
        Err(refused) => Err(StoreError::Invariant(refused.to_string())),
    }
}

/// A refund's final outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed(String),
}

/// Records a refund's final outcome once, in the caller's transaction, under the order's
/// lock. Returns false when it was already final.
pub async fn settle_in(
    tx: &mut Tx,
    order: &mut OrderRow,
    refund: &RefundRow,
    outcome: &Outcome,
    cause: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let (state, detail) = match outcome {
        Outcome::Succeeded => (RefundState::Succeeded, None),
        Outcome::Failed(reason) => (RefundState::Failed, Some(reason.as_str())),
    };
    if !refunds::set_state(tx, &refund.id, state, detail, now_ms).await? {
        return Ok(false);
    }
    let data = json!({ "refund_id": refund.id, "request_no": refund.request_no, "amount": refund.amount.to_decimal(), "detail": detail });
    let mut pending = Vec::new();
    let kind = match (outcome, refund.full) {
        (Outcome::Succeeded, true) => EventKind::RefundSucceeded,
        (Outcome::Succeeded, false) => EventKind::PartialRefundSucceeded,
        (Outcome::Failed(_), true) => EventKind::RefundFailed,
        (Outcome::Failed(_), false) => EventKind::PartialRefundFailed,
    };
    pending.push(NewEvent::new(kind, Actor::Provider, cause, data.clone()));
    if let Outcome::Failed(_) = outcome {
        let mut attention = data;
        attention["reason"] = json!("refund_failed");
        pending.push(NewEvent::new(EventKind::AttentionRaised, Actor::System, cause, attention));
    }
    events::append_all(tx, order, pending, now_ms).await?;
    Ok(true)
}
