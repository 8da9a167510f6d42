//! The user-message outbox: a message is stored in the transaction that decided it (so a
//! reminder, a failed charge or a lapse the user must hear about is never lost), and, when
//! the platform configured a webhook (`[messages]`), a bounded delivery job
//! ([`DeliverMessage`]) is enqueued in that same transaction. Messages are readable
//! through `GET /v1/users/{user_id}/messages` whether or not they were delivered.

use crate::config::MessagesConfig;
use crate::jobs::deliver_message::DeliverMessage;
use zerodrop_domain::{Texts, UserId};
use zerodrop_store::agreements::messages;
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
        // Bounded by the configured attempts: the platform decides how long its own
        // channel may be down before a person is told.
        let job = DeliverMessage { message_id: id };
        crate::jobs::enqueue_bounded(tx, &job, now_ms, config.attempts_max, now_ms).await?;
    }
    Ok(Some(id))
}

/// [`post`] for a caller without the configuration at hand (the paid path): the delivery
/// job is always enqueued, with the kind's own bound, and does nothing when no webhook is
/// configured when it runs.
pub async fn post_stored(
    tx: &mut Tx,
    user_id: &UserId,
    kind: &str,
    body: &Texts,
    dedupe_key: &str,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    let Some(id) = messages::insert_once(tx, user_id, kind, body, dedupe_key, now_ms).await? else {
        return Ok(None);
    };
    crate::jobs::enqueue(tx, &DeliverMessage { message_id: id }, now_ms, now_ms).await?;
    Ok(Some(id))
}
