//! The user-message outbox: a message is stored in the transaction that decided it (so a
//! reminder, a failed charge or a lapse the user must hear about is never lost), and, when
//! the platform configured a webhook (`[messages]`), a bounded delivery job is enqueued in
//! that same transaction. Messages are readable through `GET /v1/users/{user_id}/messages`
//! whether or not they were delivered.
//!
//! The webhook receives a JSON POST signed exactly like external deliveries
//! ([`crate::flows::endpoint::sign`]: `X-Zerodrop-Timestamp`, `X-Zerodrop-Signature:
//! v1=<hex HMAC-SHA256(secret, "timestamp.body")>`), with `Idempotency-Key:
//! message:<id>`. Any 2xx is delivered; anything else (or no answer) is retried with
//! backoff until `messages.attempts_max`, after which the job ends in `attention`.

use crate::config::MessagesConfig;
use crate::flows::endpoint::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::jobs::deliver_message::DeliverMessage;
use crate::services::Services;
use serde_json::json;
use std::time::Duration;
use zerodrop_domain::{Texts, UserId};
use zerodrop_store::agreements::messages::{self, MessageRow};
use zerodrop_store::jobs::NewJob;
use zerodrop_store::{StoreError, Tx};

/// Stores `body` for `user_id` once per `dedupe_key` and, with a webhook configured,
/// enqueues its delivery, in the caller's transaction. `Some(id)` when stored now, `None`
/// when that message exists already (nothing more is done). The caller wakes the workers
/// after its commit.
pub async fn post(
    tx: &mut Tx,
    config: &MessagesConfig,
    user_id: &UserId,
    kind: &str,
    body: &Texts,
    dedupe_key: &str,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    let Some(id) = messages::insert_once(tx, user_id, kind, body, dedupe_key, now_ms).await? else {
        return Ok(None);
    };
    if config.webhook().is_some() {
        enqueue_delivery(tx, config, id, now_ms).await?;
    }
    Ok(Some(id))
}

/// Enqueues the delivery of message `id` (once per message), bounded by the configured
/// attempts rather than a kind-wide constant: the platform decides how long its own
/// channel may be down.
pub async fn enqueue_delivery(tx: &mut Tx, config: &MessagesConfig, id: i64, now_ms: i64) -> Result<bool, StoreError> {
    let job = DeliverMessage { message_id: id };
    let payload = serde_json::to_value(&job)
        .map_err(|e| StoreError::Invariant(format!("message delivery payload does not serialize: {e}")))?;
    let new = NewJob {
        kind: <DeliverMessage as crate::jobs::Job>::KIND,
        order_id: None,
        payload,
        run_at_ms: now_ms,
        max_attempts: config.attempts_max,
        dedupe_key: Some(crate::jobs::Job::dedupe_key(&job)),
    };
    zerodrop_store::jobs::enqueue(tx, &new, now_ms).await
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

/// What one POST to the webhook came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    /// Not delivered (a status or a transport error), to retry. Never names the secret.
    Failed(String),
}

/// One signed POST of `body` to the webhook.
pub async fn send(services: &Services, body: &[u8], message_id: i64, now_secs: i64) -> Sent {
    let config = &services.config.messages;
    let Some(webhook) = config.webhook() else { return Sent::Delivered };
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
        Ok(response) if response.status().is_success() => Sent::Delivered,
        Ok(response) => Sent::Failed(format!("the message webhook answered {}", response.status().as_u16())),
        // The error's text may carry the URL (and so a secret in it): say only what kind.
        Err(e) if e.is_timeout() => Sent::Failed("the message webhook did not answer in time".into()),
        Err(e) if e.is_connect() => Sent::Failed("the message webhook refused or could not be reached".into()),
        Err(_) => Sent::Failed("the message webhook's answer was broken off".into()),
    }
}
