//! Provider notification intake: what `POST /v1/providers/{provider}/notify` does.
//!
//! Verification is a pure function of the request, so it runs first; then one
//! transaction stores the raw request with its verdict and acts on it ([`accept`]), in
//! a batch shared with other notifications ([`committer`]). Only after that commit does
//! the provider get its acknowledgement. Refused requests are stored too, as evidence
//! ([`evidence`]). Any fault on our side stores what it can and asks the provider to
//! retry.

pub mod accept;
pub mod committer;
pub mod evidence;
pub mod limit;

use committer::{Committer, SubmitError};
use evidence::{Fields, Inbound};
use limit::RefusalLimiter;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use zerodrop_domain::order::{Actor, EventKind};
use zerodrop_providers::{Ack, AckKind, Provider, Rejection};
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::notifications::Verdict;
use zerodrop_store::{now_ms, orders, Store, StoreError};

/// Largest notification body accepted. Real notifications are a few KiB.
pub const NOTIFY_BODY_BYTES_MAX: usize = 64 * 1024;

pub struct Request<'a> {
    pub provider_name: &'a str,
    pub remote: Option<SocketAddr>,
    pub headers: &'a axum::http::HeaderMap,
    /// The body, or `None` when it was larger than [`NOTIFY_BODY_BYTES_MAX`].
    pub body: Option<&'a [u8]>,
}

/// The answer for the provider: its own protocol's acknowledgement, or `None` when no
/// provider has that name (the route answers 404).
pub type Answer = Option<Ack>;

/// What intake is given besides the request: the database, the group committer, and
/// the limit on refused notifications stored.
pub struct Intake<'a> {
    pub store: &'a Store,
    pub committer: &'a Committer,
    pub refusals: &'a RefusalLimiter,
}

/// Takes one notification request to the end: stored, acted on, and answered.
#[tracing::instrument(name = "intake", skip_all, fields(provider = request.provider_name))]
pub async fn receive(intake: &Intake<'_>, provider: Option<Arc<dyn Provider>>, request: Request<'_>) -> Answer {
    let store = intake.store;
    let inbound =
        Inbound::new(request.provider_name, request.remote, request.headers, request.body.unwrap_or_default());
    let Some(provider) = provider else {
        store_refused(intake, &inbound, request.remote, "unknown_provider: no such provider").await;
        return None;
    };
    let Some(body) = request.body else {
        let reason = format!("body_too_large: body larger than {NOTIFY_BODY_BYTES_MAX} bytes");
        store_refused(intake, &inbound, request.remote, &reason).await;
        // The provider's own refusal body, with the status that says why.
        return Some(Ack { status: 413, ..provider.ack(AckKind::Rejected) });
    };
    let kind = match provider.verify_notification(request.headers, body) {
        Ok(notice) => intake.committer.submit(inbound, notice).await,
        Err(rejection) if !rejection.signed && !intake.refusals.allow(request.remote, now_ms()) => {
            Ok(AckKind::Rejected)
        }
        Err(rejection) => reject(store, &inbound, &rejection).await.map_err(SubmitError::Store),
    };
    let kind = match kind {
        Ok(kind) => kind,
        Err(e) if e.is_unavailable() => {
            // Storing evidence would wait for the same missing database: nothing is
            // stored, and the provider sends the notification again.
            tracing::warn!(error = %e, "database unavailable; notification not processed; provider will retry");
            AckKind::RetryLater
        }
        Err(e) => {
            tracing::error!(error = %e, "notification not processed; provider will retry");
            let inbound = Inbound::new(request.provider_name, request.remote, request.headers, body);
            log_store_failure(evidence::store_alone(store, &inbound, Verdict::Failed, &e.to_string(), false).await);
            AckKind::RetryLater
        }
    };
    Some(provider.ack(kind))
}

/// Refuses a request to any notification route that nothing verified as the provider's
/// (no such provider, a body too large, a forged or unsigned message): kept as every such
/// refusal is (its first 8 KiB, the whole body's hash and length, pruned after its
/// retention) while its source is within the refusal limit, so no route lets anyone fill
/// the disk.
pub async fn refuse_unverified(intake: &Intake<'_>, request: Request<'_>, reason: &str) {
    let inbound =
        Inbound::new(request.provider_name, request.remote, request.headers, request.body.unwrap_or_default());
    store_refused(intake, &inbound, request.remote, reason).await;
}

/// Stores a refusal nothing verified (in part), while its source is within the limit.
async fn store_refused(intake: &Intake<'_>, inbound: &Inbound, remote: Option<SocketAddr>, reason: &str) {
    if intake.refusals.allow(remote, now_ms()) {
        log_store_failure(evidence::store_alone(intake.store, inbound, Verdict::Rejected, reason, true).await);
    }
}

fn log_store_failure(result: Result<i64, StoreError>) {
    if let Err(e) = result {
        tracing::error!(error = %e, "could not store a refused notification");
    }
}

/// Stores a refused notification; one that names an order zerodrop knows (a forged
/// amount, say) also flags that order for a person.
async fn reject(store: &Store, inbound: &Inbound, rejection: &Rejection) -> Result<AckKind, StoreError> {
    let mut tx = store.begin().await?;
    let now = now_ms();
    let reason = format!("{}: {}", rejection.code, rejection.detail);
    // Only a refusal whose signature verified (a genuine message that does not add up) is
    // kept whole; anyone can send the others.
    let fields =
        Fields { order_no: rejection.order_no.as_deref(), refused_unverified: !rejection.signed, ..Fields::default() };
    let id = evidence::insert(&mut tx, inbound, Verdict::Rejected, Some(&reason), fields, now);
    if let (true, Some(order_no)) = (rejection.code.flags_order(), &rejection.order_no) {
        if let Some(mut order) = orders::lock_by_no(&mut tx, order_no).await? {
            let cause = format!("notification:{id}");
            let data =
                json!({ "notification_id": id, "code": rejection.code.as_str(), "reason": rejection.code.as_str() });
            let rejected = NewEvent::new(EventKind::NotificationRejected, Actor::Provider, &cause, data.clone());
            let flagged = NewEvent::new(EventKind::AttentionRaised, Actor::System, &cause, data);
            events::append_all(&mut tx, &mut order, vec![rejected, flagged], now).await?;
        }
    }
    tx.commit().await?;
    tracing::warn!(code = %rejection.code, "notification refused");
    Ok(AckKind::Rejected)
}
