//! Requesting a refund, in the caller's transaction, under the order's lock: the amount
//! checked against what is left, the refund row with its stable request number, what the
//! refund covers taken back, the events, and the refund job.

use super::{Origin, RefundError};
use crate::jobs::enqueue;
use crate::jobs::refund::Refund;
use serde_json::json;
use zerodrop_domain::catalog::ProductKind;
use zerodrop_domain::ledger::{AccountId, Transfer};
use zerodrop_domain::money::Money;
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_domain::refund::{reclaim_share, refundable, split_reclaim};
use zerodrop_domain::OrderNo;
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::ledger::{self, TransferOutcome};
use zerodrop_store::orders::{self, OrderRow};
use zerodrop_store::refunds::{self, NewRefund, RefundRow, RefundState};
use zerodrop_store::{card_keys, charges, memberships, payments, StoreError, Tx};

/// The merchant's refund of the order numbered `order_no`: `amount` is a decimal in the
/// order's currency, everything left when `None`. Returns the refund and the order as it
/// now stands.
pub async fn merchant_in(
    tx: &mut Tx,
    order_no: &str,
    amount: Option<&str>,
    reason: &str,
    now_ms: i64,
) -> Result<(RefundRow, OrderRow), RefundError> {
    if OrderNo::parse(order_no).is_none() {
        return Err(RefundError::OrderNotFound);
    }
    let mut order = orders::lock_by_no(tx, order_no).await?.ok_or(RefundError::OrderNotFound)?;
    let currency = order.amount.currency;
    let amount = match amount {
        Some(text) => {
            let parsed = Money::parse_decimal(text, currency).ok().filter(|m| m.minor > 0);
            Some(parsed.ok_or(RefundError::BadAmount(currency))?)
        }
        None => None,
    };
    let refund = request_in(tx, &mut order, amount, Origin::Merchant, reason, now_ms).await?;
    Ok((refund, order))
}

/// Requests a refund of `amount` (or of everything left, when `None`).
#[tracing::instrument(name = "refund.request", skip_all, fields(order.no = %order.order_no, origin = origin.as_str()))]
pub async fn request_in(
    tx: &mut Tx,
    order: &mut OrderRow,
    amount: Option<Money>,
    origin: Origin,
    reason: &str,
    now_ms: i64,
) -> Result<RefundRow, RefundError> {
    let payment = payments::for_order(tx, order.id).await?.ok_or(RefundError::NotPaid)?;
    let charge = charges::payment_of(tx, order.id)
        .await?
        .ok_or_else(|| StoreError::Invariant(format!("order {} is paid but has no charge", order.order_no)))?;
    // Only refunds of the order's own payment count here (a second trade's refund is its
    // own money). An unknown refund counts: the provider may already have paid it out.
    let existing = refunds::of_order_payment(tx, order.id).await?;
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
        return Err(RefundError::BadAmount(payment.amount.currency));
    }
    if amount.minor > left {
        return Err(RefundError::Exceeds { asked: amount, left: Money::new(left, amount.currency) });
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
        order_id: Some(order.id),
        charge_id: charge.id,
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
        let covered = Covered { before_minor: committed, this_minor: amount.minor, paid_minor: payment.amount.minor };
        if let Some(taken) = reclaim(tx, order, &id, covered, full, now_ms).await? {
            pending.push(NewEvent::new(EventKind::GoodsReclaimed, Actor::System, &format!("refund:{id}"), taken));
        }
    }
    events::append_all(tx, order, pending, now_ms).await?;
    enqueue(tx, &Refund { refund_id: id.clone(), order_id: Some(order.id) }, now_ms, now_ms).await?;
    refunds::get(tx, &id).await?.ok_or_else(|| StoreError::Invariant("refund vanished".into()).into())
}

/// Takes back what a refund of a delivered order covers: unspent currency (the spent rest
/// is the platform's loss, never the user's debt), membership days, the card key.
async fn reclaim(
    tx: &mut Tx,
    order: &OrderRow,
    refund_id: &str,
    covered: Covered,
    full: bool,
    now_ms: i64,
) -> Result<Option<serde_json::Value>, StoreError> {
    let invariant = |m: String| StoreError::Invariant(m);
    match &order.product.kind {
        ProductKind::CurrencyPack { virtual_currency, units } => {
            let share = covered.share(units * order.quantity);
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
            let share = covered.share(days * order.quantity);
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

/// What refunds of the order's payment cover: those before this one, and this one.
#[derive(Clone, Copy, Debug)]
struct Covered {
    before_minor: i64,
    this_minor: i64,
    paid_minor: i64,
}

impl Covered {
    /// The share of `granted` this refund takes back: what all refunds so far cover,
    /// less what the earlier ones covered. Reclaimed in total never exceeds the share the
    /// refunded total covers, however the refunds are split or repeated under new keys.
    fn share(self, granted: i64) -> i64 {
        let after = reclaim_share(granted, self.before_minor + self.this_minor, self.paid_minor);
        let before = reclaim_share(granted, self.before_minor, self.paid_minor);
        (after - before).max(0)
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
