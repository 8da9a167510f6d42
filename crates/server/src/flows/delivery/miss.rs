//! When delivery cannot happen in time: the deadline passed, or the platform's endpoint
//! refused the order for good. The product's policy applies at once: refund, or put the
//! order in front of a person as a dropped order. And when the endpoint delivers an order
//! whose money has already started going back, a person decides.

use crate::flows::refund::request::request_in;
use crate::flows::refund::{Origin, RefundError};
use serde_json::json;
use zerodrop_domain::catalog::MissPolicy;
use zerodrop_domain::order::{Actor, EventKind};
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::orders::OrderRow;
use zerodrop_store::{StoreError, Tx};

/// Why delivery is missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The deadline passed with the order undelivered.
    Deadline,
    /// The platform's endpoint refused the delivery for good.
    DeliveryRefused,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Deadline => "deadline",
            Why::DeliveryRefused => "delivery_refused",
        }
    }

    fn refund_origin(self) -> Origin {
        match self {
            Why::Deadline => Origin::Deadline,
            Why::DeliveryRefused => Origin::DeliveryFailed,
        }
    }
}

/// Applies the product's on-miss policy to a paid order that cannot be delivered in time
/// (its deadline passed, or the platform's endpoint refused it for good): refund at once,
/// or put it in front of a person as a dropped order. The caller holds the order's lock.
#[tracing::instrument(name = "delivery.miss", skip_all, fields(order.no = %order.order_no, why = why.as_str()))]
pub async fn miss_in(tx: &mut Tx, order: &mut OrderRow, cause: &str, why: Why, now_ms: i64) -> Result<(), StoreError> {
    let reason = why.as_str();
    let policy = order.product.on_deadline_miss;
    let data = json!({ "reason": reason, "policy": policy.as_str(), "deliver_by_ms": order.deliver_by_ms });
    let missed = NewEvent::new(EventKind::DeadlineMissed, Actor::System, cause, data);
    match policy {
        MissPolicy::Refund => {
            let due = NewEvent::new(EventKind::RefundDue, Actor::System, cause, json!({ "reason": reason }));
            events::append_all(tx, order, vec![missed, due], now_ms).await?;
            match request_in(tx, order, None, why.refund_origin(), reason, now_ms).await {
                Ok(_) => Ok(()),
                Err(RefundError::Store(e)) => Err(e),
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
    miss_in(tx, order, cause, Why::DeliveryRefused, now_ms).await
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
