//! Delivery through the platform's endpoint: one attempt per run, each recorded in the
//! order's timeline; retried with backoff for more than a day, while the deadline job
//! guards the promise. An operator's replay is its own job (its own dedupe key) and
//! runs even for an order already delivered.

use super::{read_order, Job, Outcome, Run};
use crate::flows::delivery::attempt::{self, Purpose};
use crate::flows::endpoint::{self, Answer};
use crate::services::Services;
use serde::{Deserialize, Serialize};
use zerodrop_domain::order::OrderStatus;
use zerodrop_domain::{OrderId, ProductKind};
use zerodrop_store::now_ms;

/// External deliveries are retried for at least a day: backoff grows to 10 minutes with
/// jitter down to half of that, so even the shortest waits (5 minutes) need 288 attempts
/// for 24 hours; 300 bound it at 25 to 50 hours.
pub const ATTEMPTS_MAX: i64 = 300;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeliverExternal {
    pub order_id: OrderId,
    /// An operator's replay: sent even when the order is already delivered.
    #[serde(default)]
    pub replay: bool,
    /// Names the replay (absent in jobs stored before replays were named, and for the
    /// first delivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_id: Option<String>,
}

impl DeliverExternal {
    /// The order's delivery.
    pub fn first(order_id: OrderId) -> DeliverExternal {
        DeliverExternal { order_id, replay: false, replay_id: None }
    }

    /// An operator's replay, named by `replay_id`.
    pub fn replay(order_id: OrderId, replay_id: String) -> DeliverExternal {
        DeliverExternal { order_id, replay: true, replay_id: Some(replay_id) }
    }
}

impl Job for DeliverExternal {
    const KIND: &'static str = "deliver_external";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        match &self.replay_id {
            Some(id) => format!("deliver_external:{}:replay:{id}", self.order_id),
            None => format!("deliver_external:{}", self.order_id),
        }
    }

    fn order_id(&self) -> Option<OrderId> {
        Some(self.order_id)
    }

    async fn run(self, services: &Services, run: &Run) -> Outcome {
        let order = match read_order(services, self.order_id).await {
            Ok(order) => order,
            Err(outcome) => return outcome,
        };
        let wanted = order.status == OrderStatus::Paid || (self.replay && order.status == OrderStatus::Delivered);
        if !wanted {
            return Outcome::Done; // delivered, refunded or escalated meanwhile: stop sending
        }
        let ProductKind::External { endpoint, .. } = &order.product.kind else {
            return Outcome::Retry("not an external product".into());
        };
        let Some(endpoint) = services.endpoint(endpoint) else {
            return Outcome::Retry(format!("delivery endpoint {endpoint} is not configured"));
        };
        let attempt = endpoint::send(&services.http, endpoint, &order, now_ms() / 1000).await;
        // An unknown answer is sent again like a failure: with the same idempotency key,
        // the endpoint answers with what it did the first time.
        let retry = match &attempt.answer {
            Answer::Failed(error) | Answer::Unknown(error) => Some(error.clone()),
            Answer::Delivered | Answer::Accepted | Answer::Refused => None,
        };
        let purpose = if self.replay { Purpose::Replay } else { Purpose::Deliver };
        let cause = run.cause();
        if let Err(e) = attempt::record(&services.store, self.order_id, &attempt, &cause, run.attempt, purpose).await {
            return e.into();
        }
        services.wake(); // a refusal may have enqueued a refund
        match retry {
            Some(error) => Outcome::Retry(format!("delivery endpoint: {error}")),
            None => Outcome::Done,
        }
    }
}
