//! Settling a refund: its final outcome recorded once, in the caller's transaction, under
//! the order's lock, whoever learned it (the refund job, or the provider's refund
//! notification). A refund that failed puts the order in front of a person.

use serde_json::json;
use zerodrop_domain::order::{Actor, EventKind};
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::orders::OrderRow;
use zerodrop_store::refunds::{self, RefundRow, RefundState};
use zerodrop_store::{StoreError, Tx};

/// A refund's final outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Final {
    Succeeded,
    Failed(String),
}

/// Records a refund's final outcome once, in the caller's transaction, under the order's
/// lock. Returns false when it was already final.
#[tracing::instrument(name = "refund.settle", skip_all, fields(order.no = %order.order_no, refund.request_no = %refund.request_no))]
pub async fn settle_in(
    tx: &mut Tx,
    order: &mut OrderRow,
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
    let data = json!({ "refund_id": refund.id, "request_no": refund.request_no, "amount": refund.amount.to_decimal(), "detail": detail });
    let mut pending = Vec::new();
    let kind = match (outcome, refund.full) {
        (Final::Succeeded, true) => EventKind::RefundSucceeded,
        (Final::Succeeded, false) => EventKind::PartialRefundSucceeded,
        (Final::Failed(_), true) => EventKind::RefundFailed,
        (Final::Failed(_), false) => EventKind::PartialRefundFailed,
    };
    pending.push(NewEvent::new(kind, Actor::Provider, cause, data.clone()));
    if let Final::Failed(_) = outcome {
        let mut attention = data;
        attention["reason"] = json!("refund_failed");
        pending.push(NewEvent::new(EventKind::AttentionRaised, Actor::System, cause, attention));
    }
    events::append_all(tx, order, pending, now_ms).await?;
    Ok(true)
}
