//! Refunding a whole charge that is not an order's payment: a second trade for a paid
//! order, a wrong amount or provider, a payment for an order zerodrop never knew. The
//! money goes back in full through the same refund row, request number and job as every
//! other refund; the order (when there is one) keeps its own status and payment.

use crate::jobs::enqueue;
use crate::jobs::refund::Refund;
use serde_json::json;
use zerodrop_domain::order::{Actor, EventKind};
use zerodrop_store::charges::ChargeRow;
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::orders::OrderRow;
use zerodrop_store::refunds::{self, NewRefund, RefundRow, RefundState};
use zerodrop_store::{StoreError, Tx};

/// The request number the provider sees for a charge's refund: one per charge, so every
/// retry, resend or second caller names the same refund.
pub fn request_no(charge: &ChargeRow) -> String {
    format!("ZDC{}", charge.id)
}

/// Requests the full refund of `charge` in the caller's transaction, once: a charge that
/// already has a refund that did not fail gets that refund back. `order` is the charge's
/// order, locked by the caller, when it has one (its timeline records the refund).
pub async fn refund_in(
    tx: &mut Tx,
    charge: &ChargeRow,
    order: Option<&mut OrderRow>,
    reason: &str,
    cause: &str,
    now_ms: i64,
) -> Result<RefundRow, StoreError> {
    if charge.class.is_order_payment() {
        return Err(StoreError::Invariant(format!("charge {} is an order's payment, refunded with it", charge.id)));
    }
    let existing = refunds::for_charge(tx, charge.id).await?;
    if let Some(live) = existing.iter().find(|r| r.state != RefundState::Failed) {
        return Ok(live.clone());
    }
    // A refused refund may be asked again by a person: a new number, same charge.
    let request_no =
        if existing.is_empty() { request_no(charge) } else { format!("{}R{}", request_no(charge), existing.len() + 1) };
    let id = uuid::Uuid::now_v7().to_string();
    let order_id = order.as_ref().map(|o| o.id).or_else(|| charge.order_id());
    let new = NewRefund {
        id: &id,
        order_id,
        charge_id: charge.id,
        request_no: &request_no,
        amount: charge.amount,
        full: true,
        origin: charge.class.as_str(),
        reason,
    };
    refunds::insert(tx, &new, now_ms).await?;
    if let Some(order) = order {
        let data = json!({
            "refund_id": id, "request_no": request_no, "charge_id": charge.id, "class": charge.class.as_str(),
            "trade_no": charge.trade_no, "amount": charge.amount.to_decimal(), "currency": charge.amount.currency.code(),
            "reason": reason,
        });
        let event = NewEvent::new(EventKind::ChargeRefundRequested, Actor::System, cause, data);
        events::append(tx, order, event, now_ms).await?;
    }
    enqueue(tx, &Refund { refund_id: id.clone(), order_id }, now_ms, now_ms).await?;
    tracing::info!(charge.id = charge.id, class = charge.class.as_str(), "charge refund requested");
    refunds::get(tx, &id).await?.ok_or_else(|| StoreError::Invariant("refund vanished".into()))
}
