//! Delivery of one stored user message to the platform's webhook (the outbox): one
//! signed POST per run, retried with backoff; when `messages.attempts_max` runs out the
//! job ends in `attention` (an item with its clock) and the message stays readable
//! through the API.

use super::{Job, Outcome, Run};
use crate::flows::messages::{self, Sent};
use crate::services::Services;
use serde::{Deserialize, Serialize};
use zerodrop_domain::OrderId;
use zerodrop_store::now_ms;

/// Attempts when enqueued through [`Job`] alone; [`messages::enqueue_delivery`] uses the
/// configured `messages.attempts_max` instead. 300 with backoff capped at 10 minutes is
/// a day or more, as external deliveries.
pub const ATTEMPTS_MAX: i64 = 300;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeliverMessage {
    pub message_id: i64,
}

impl Job for DeliverMessage {
    const KIND: &'static str = "deliver_message";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        format!("deliver_message:{}", self.message_id)
    }

    fn order_id(&self) -> Option<OrderId> {
        None
    }

    async fn run(self, services: &Services, _run: &Run) -> Outcome {
        if services.config.messages.webhook().is_none() {
            return Outcome::Done; // the webhook was removed: the message stays stored only
        }
        let found = {
            let mut conn = match services.store.reader().await {
                Ok(conn) => conn,
                Err(e) => return e.into(),
            };
            zerodrop_store::agreements::messages::get(&mut conn, self.message_id).await
        };
        let (user_id, message) = match found {
            Ok(Some(found)) => found,
            Ok(None) => return Outcome::Retry(format!("message {} not found", self.message_id)),
            Err(e) => return e.into(),
        };
        let body = match serde_json::to_vec(&messages::payload(&user_id, &message)) {
            Ok(body) => body,
            Err(e) => return Outcome::Retry(format!("message {} does not serialize: {e}", self.message_id)),
        };
        match messages::send(services, &body, self.message_id, now_ms() / 1000).await {
            Sent::Delivered => Outcome::Done,
            Sent::Failed(error) => Outcome::Retry(error),
        }
    }
}
