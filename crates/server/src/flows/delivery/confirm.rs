//! The platform's endpoint confirms a delivery it accepted (`202`) with a signed
//! `delivered` or `failed`. The signed body names the order and the attempt (the request
//! it accepted), so a confirmation is bound to both: it is refused on any other order, and
//! each is accepted once. A replay (the same confirmation again, a `failed` one included)
//! is refused, kept in the order's timeline as evidence, and changes nothing else.

use super::complete::complete_later;
use super::miss::{arrived_after_refund_in, refused_in};
use crate::config::EndpointConfig;
use crate::flows::endpoint::{self, SignatureError};
use crate::jobs::deadline::Deadline;
use crate::jobs::deliver_external::DeliverExternal;
use crate::jobs::Job;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use zerodrop_domain::catalog::ProductKind;
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_domain::OrderNo;
use zerodrop_store::confirmations::{self, ConfirmationRow, NewConfirmation};
use zerodrop_store::events::{self, EventRow, NewEvent};
use zerodrop_store::orders::{self, OrderRow};
use zerodrop_store::{jobs, now_ms, Store, StoreError, Tx};

/// Longest reason kept from a confirmation, in characters.
const REASON_CHARS_MAX: usize = 200;
/// Longest attempt id accepted, in characters (zerodrop's are 32 hex digits).
const ATTEMPT_CHARS_MAX: usize = 64;
/// Replays recorded in one order's timeline; later ones are refused the same way and
/// only logged, so replaying a captured confirmation cannot grow a timeline unbounded.
pub const REPLAYS_RECORDED_MAX: usize = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Confirmation {
    /// The order confirmed. The signature covers the body, so naming the order in it is
    /// what ties a confirmation to one order: without it, a genuine confirmation for one
    /// order could be replayed against any other (a `failed` one would refund it).
    order_no: String,
    /// The attempt confirmed: the `attempt` of the request the endpoint accepted. With the
    /// order, it names the confirmation, which is accepted once.
    attempt: String,
    /// `delivered` or `failed`.
    status: String,
    #[serde(default)]
    reason: String,
}

/// The signature headers of a confirmation, as sent.
pub struct Signed<'a> {
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("no order with this number")]
    NotFound,
    #[error("this order is not delivered by an endpoint")]
    NotExternal,
    #[error("the order's delivery endpoint {0} is not configured")]
    EndpointMissing(String),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("the body is not a valid confirmation: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("status must be delivered or failed")]
    UnknownStatus,
    #[error("the confirmation names another order than the one it was sent for")]
    OtherOrder,
    #[error("the confirmation names no delivery attempt zerodrop made for this order")]
    UnknownAttempt,
    #[error("a delivery request to the endpoint is still out; send the confirmation again shortly")]
    AttemptInFlight,
    #[error("this confirmation was already accepted; a replay changes nothing")]
    Replayed,
    #[error("the order is being refunded; a person will look at this delivery")]
    Refunded,
    #[error("the order is {0}")]
    NotAwaiting(OrderStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Verifies and applies a confirmation; returns the order as it now stands.
#[tracing::instrument(name = "delivery.confirm", skip(store, endpoints, signed))]
pub async fn confirm(
    store: &Store,
    endpoints: &BTreeMap<String, EndpointConfig>,
    order_no: &str,
    signed: Signed<'_>,
) -> Result<OrderRow, ConfirmError> {
    if OrderNo::parse(order_no).is_none() {
        return Err(ConfirmError::NotFound);
    }
    let mut tx = store.begin().await?;
    let now = now_ms();
    let mut order = orders::lock_by_no(&mut tx, order_no).await?.ok_or(ConfirmError::NotFound)?;
    let ProductKind::External { endpoint, .. } = &order.product.kind else {
        return Err(ConfirmError::NotExternal);
    };
    let endpoint = endpoints.get(endpoint).ok_or_else(|| ConfirmError::EndpointMissing(endpoint.clone()))?;
    endpoint::verify(endpoint.secret.expose(), signed.timestamp, signed.signature, signed.body, now / 1000)?;
    let confirmation: Confirmation = serde_json::from_slice(signed.body).map_err(ConfirmError::Malformed)?;
    if confirmation.order_no != order_no {
        return Err(ConfirmError::OtherOrder);
    }
    if !matches!(confirmation.status.as_str(), "delivered" | "failed") {
        return Err(ConfirmError::UnknownStatus);
    }
    let attempt = confirmation.attempt.as_str();
    let well_formed = (1..=ATTEMPT_CHARS_MAX).contains(&attempt.len())
        && attempt.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !well_formed {
        return Err(ConfirmError::UnknownAttempt);
    }
    let history = events::list(&mut tx, order.id).await?;
    let order_id = order.id.to_string();
    let signed_at_secs: i64 = signed.timestamp.and_then(|t| t.trim().parse().ok()).unwrap_or_default();
    let body_sha256 = sha256_hex(signed.body);
    if let Some(first) = confirmations::find(&mut tx, &order_id, attempt).await? {
        let replay = Replay { confirmation: &confirmation, first: &first, signed_at_secs, body_sha256: &body_sha256 };
        record_replay(&mut tx, &mut order, &history, &replay, &endpoint.name, now).await?;
        tx.commit().await?;
        return Err(ConfirmError::Replayed);
    }
    if !attempted(&history, attempt) {
        // zerodrop records an attempt once its answer is back: a confirmation sent right
        // after the 202 may arrive first. While a request is out, ask for a resend.
        let out = jobs::running_for_order(&mut tx, order.id, DeliverExternal::KIND, now).await?
            || jobs::running_for_order(&mut tx, order.id, Deadline::KIND, now).await?;
        return Err(if out { ConfirmError::AttemptInFlight } else { ConfirmError::UnknownAttempt });
    }
    let cause = format!("endpoint:{}", endpoint.name);
    let reason: String = confirmation.reason.chars().take(REASON_CHARS_MAX).collect();
    let accepted = NewConfirmation {
        order_id: &order_id,
        attempt_id: attempt,
        status: &confirmation.status,
        reason: &reason,
        signed_at_secs,
        signature: signed.signature.unwrap_or_default(),
        body_sha256: &body_sha256,
    };
    let data = json!({ "confirmation": confirmation.status, "reason": reason, "attempt_id": attempt });
    match (confirmation.status.as_str(), order.status) {
        ("delivered", OrderStatus::Paid) => {
            let detail = json!({ "confirmed": true, "attempt_id": attempt });
            complete_later(&mut tx, &mut order, Some(detail), now).await?;
        }
        // Delivered already (another attempt's answer said so): the confirmation agrees.
        ("delivered", OrderStatus::Delivered) => {}
        ("failed", OrderStatus::Paid) => refused_in(&mut tx, &mut order, &cause, data, now).await?,
        ("delivered", OrderStatus::RefundDue | OrderStatus::Refunding | OrderStatus::Refunded) => {
            arrived_after_refund_in(&mut tx, &mut order, &cause, data, now).await?;
            confirmations::insert(&mut tx, &accepted, now).await?;
            tx.commit().await?;
            return Err(ConfirmError::Refunded);
        }
        (_, status) => return Err(ConfirmError::NotAwaiting(status)),
    }
    confirmations::insert(&mut tx, &accepted, now).await?;
    tx.commit().await?;
    Ok(order)
}

/// True when the order's timeline records a request carrying this attempt id.
fn attempted(history: &[EventRow], attempt: &str) -> bool {
    history.iter().any(|e| e.kind == EventKind::DeliveryAttempted.as_str() && e.data["attempt_id"] == attempt)
}

/// A confirmation that came again, and the first one accepted under its attempt.
struct Replay<'a> {
    confirmation: &'a Confirmation,
    first: &'a ConfirmationRow,
    signed_at_secs: i64,
    body_sha256: &'a str,
}

/// Puts a refused replay in the order's timeline (up to [`REPLAYS_RECORDED_MAX`] per
/// order; past that it is logged only). Nothing else changes.
async fn record_replay(
    tx: &mut Tx,
    order: &mut OrderRow,
    history: &[EventRow],
    replay: &Replay<'_>,
    endpoint: &str,
    now: i64,
) -> Result<(), StoreError> {
    let recorded = history.iter().filter(|e| e.kind == EventKind::ConfirmationReplayed.as_str()).count();
    tracing::warn!(attempt = %replay.first.attempt_id, recorded, "a delivery confirmation was replayed; refused");
    if recorded >= REPLAYS_RECORDED_MAX {
        return Ok(());
    }
    let data = json!({
        "attempt_id": replay.first.attempt_id,
        "status": replay.confirmation.status,
        "first_status": replay.first.status,
        "first_received_at_ms": replay.first.received_at_ms,
        "signed_at_secs": replay.signed_at_secs,
        "same_body": replay.body_sha256 == replay.first.body_sha256,
    });
    let event = NewEvent::new(EventKind::ConfirmationReplayed, Actor::System, &format!("endpoint:{endpoint}"), data);
    events::append(tx, order, event, now).await
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}
