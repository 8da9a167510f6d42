//! Recording one call to the platform's endpoint, whoever made it (the delivery job, an
//! operator's replay, or the deadline settling an unknown answer): the attempt event, and
//! what its answer decides for the order.

use super::complete::complete_later;
use super::miss;
use crate::flows::endpoint::{Answer, Attempt};
use serde_json::json;
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_domain::OrderId;
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::{now_ms, orders, Store, StoreError, Tx};

/// Why the request was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The order's delivery (its first send and retries).
    Deliver,
    /// An operator's replay: sent even when the order is already delivered.
    Replay,
    /// Sent again by the deadline to learn what an unknown or unconfirmed attempt did.
    Settle,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Deliver => "deliver",
            Purpose::Replay => "replay",
            Purpose::Settle => "settle",
        }
    }
}

/// Records `attempt` (run `number` of its job) in its own transaction and applies what a
/// definite answer decides.
pub async fn record(
    store: &Store,
    order_id: OrderId,
    attempt: &Attempt,
    cause: &str,
    number: i64,
    purpose: Purpose,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let now = now_ms();
    let mut order = orders::lock(&mut tx, order_id).await?;
    let replay = purpose == Purpose::Replay;
    let data = json!({
        "attempt": number, "attempt_id": attempt.id, "http_status": attempt.status, "latency_ms": attempt.latency_ms,
        "response_excerpt": attempt.excerpt, "outcome": format!("{:?}", attempt.answer), "replay": replay,
        "purpose": purpose.as_str(),
    });
    events::append(&mut tx, &mut order, NewEvent::new(EventKind::DeliveryAttempted, Actor::System, cause, data), now)
        .await?;
    let paid = order.status == OrderStatus::Paid;
    let money_going_back =
        matches!(order.status, OrderStatus::RefundDue | OrderStatus::Refunding | OrderStatus::Refunded);
    match &attempt.answer {
        Answer::Delivered if paid => {
            complete_later(&mut tx, &mut order, Some(json!({ "http_status": attempt.status })), now).await?;
        }
        // A repeated key answered 202 again is the same acceptance, still unconfirmed:
        // recorded once.
        Answer::Accepted if paid && purpose != Purpose::Settle => {
            let data = json!({ "http_status": attempt.status, "awaiting": "confirmation" });
            let accepted = NewEvent::new(EventKind::DeliveryAccepted, Actor::System, cause, data);
            events::append(&mut tx, &mut order, accepted, now).await?;
        }
        Answer::Refused if paid => {
            let data = json!({ "http_status": attempt.status, "reason": attempt.excerpt });
            miss::refused_in(&mut tx, &mut order, cause, data, now).await?;
        }
        // The endpoint may have delivered: not a failure. Until a definite answer to the
        // same key, the deadline settles before its policy acts.
        Answer::Unknown(why) if paid && !replay => {
            let data = json!({ "why": why, "http_status": attempt.status });
            events::append(
                &mut tx,
                &mut order,
                NewEvent::new(EventKind::DeliveryUnknown, Actor::System, cause, data),
                now,
            )
            .await?;
        }
        // Delivered, or perhaps delivered, while the deadline was refunding it: the user
        // may hold both, and a person decides.
        Answer::Delivered if !replay && money_going_back => {
            let data = json!({ "http_status": attempt.status });
            miss::arrived_after_refund_in(&mut tx, &mut order, cause, data, now).await?;
        }
        // Unknown while the money goes back: a person decides, unless a definite answer to
        // the same key (a refusal, a delivery) already said what this call did.
        Answer::Unknown(why) if !replay && money_going_back && !answered(&mut tx, order_id).await? => {
            let data = json!({ "reason": "delivery_unknown", "why": why, "after_refund": true });
            events::append(
                &mut tx,
                &mut order,
                NewEvent::new(EventKind::AttentionRaised, Actor::System, cause, data),
                now,
            )
            .await?;
        }
        // A replay of a delivered order, or a refused or accepted order whose money is
        // already going back: the attempt is evidence and nothing else changes (a later
        // confirmation of an accepted one is checked when it comes).
        Answer::Delivered | Answer::Accepted | Answer::Refused | Answer::Failed(_) | Answer::Unknown(_) => {}
    }
    tx.commit().await
}

/// True when the endpoint gave the order's key a definite answer: every call under the
/// key has that same result.
async fn answered(tx: &mut Tx, order_id: OrderId) -> Result<bool, StoreError> {
    let history = events::list(tx, order_id).await?;
    let definite = [EventKind::DeliveryFailed.as_str(), EventKind::Delivered.as_str()];
    Ok(history.iter().any(|e| definite.contains(&e.kind.as_str())))
}
