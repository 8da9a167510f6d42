//! Delivery of one stored user message to the platform's webhook (the outbox): one
//! signed POST per run, retried with backoff; when `messages.attempts_max` runs out the
//! job ends in `attention` (an item with its clock) and the message stays readable
//! through the API.
//!
//! The webhook receives a JSON POST signed exactly like external deliveries
//! ([`endpoint::sign`]: `X-Zerodrop-Timestamp`, `X-Zerodrop-Signature: v1=<hex
//! HMAC-SHA256(secret, "timestamp.body")>`), with `Idempotency-Key: message:<id>`. Any
//! 2xx is delivered; anything else (or no answer) is retried.

use super::{Job, Outcome, Run};
use crate::flows::endpoint::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::services::Services;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use zerodrop_domain::{OrderId, UserId};
use zerodrop_store::agreements::messages::{self, MessageRow};
use zerodrop_store::now_ms;

/// Attempts when enqueued through [`super::enqueue`]; the outbox enqueues with the
/// configured `messages.attempts_max` instead. 300 with backoff capped at 10 minutes is a
/// day or more, as external deliveries.
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
            messages::get(&mut conn, self.message_id).await
        };
        let (user_id, message) = match found {
            Ok(Some(found)) => found,
            Ok(None) => return Outcome::Retry(format!("message {} not found", self.message_id)),
            Err(e) => return e.into(),
        };
        let body = match serde_json::to_vec(&payload(&user_id, &message)) {
            Ok(body) => body,
            Err(e) => return Outcome::Retry(format!("message {} does not serialize: {e}", self.message_id)),
        };
        match send(services, &body, self.message_id, now_ms() / 1000).await {
            Ok(()) => Outcome::Done,
            Err(error) => Outcome::Retry(error),
        }
    }
}

/// The JSON the webhook receives.
pub fn payload(user_id: &UserId, message: &MessageRow) -> serde_json::Value {
    json!({
        "id": message.id,
        "user_id": user_id,
        "kind": message.kind,
        "at_ms": message.at_ms,
        "body": message.body,
    })
}

/// One signed POST of `body` to the webhook. `Err` says why it was not delivered, never
/// naming the URL or the secret.
async fn send(services: &Services, body: &[u8], message_id: i64, now_secs: i64) -> Result<(), String> {
    let config = &services.config.messages;
    let Some(webhook) = config.webhook() else { return Ok(()) };
    let signature = endpoint::sign(webhook.secret, now_secs, body);
    let request = services
        .http
        .post(webhook.url)
        .timeout(Duration::from_millis(config.timeout_ms))
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, now_secs.to_string())
        .header(SIGNATURE_HEADER, signature)
        .header("idempotency-key", format!("message:{message_id}"))
        .body(body.to_vec());
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("the message webhook answered {}", response.status().as_u16())),
        // The error's text may carry the URL (and so a secret in it): say only what kind.
        Err(e) if e.is_timeout() => Err("the message webhook did not answer in time".into()),
        Err(e) if e.is_connect() => Err("the message webhook refused or could not be reached".into()),
        Err(_) => Err("the message webhook's answer was broken off".into()),
    }
}
