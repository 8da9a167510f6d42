//! Provider notification intake: `POST /v1/providers/{provider}/notify`.
//!
//! Verification is a pure function of the request, so it runs first; then one
//! transaction stores the raw request with its verdict and, for a payment, records it
//! through the one payment path. Only after that commit does the provider get its
//! acknowledgement. Refused requests are stored too, as evidence. A notification for an
//! unknown order is parked with a job that keeps trying to match it, never acknowledged
//! and forgotten. Any fault on our side stores what it can and asks the provider to retry.

use crate::app::App;
use crate::payment::{self, PaymentFact, Recorded};
use crate::refund;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::net::SocketAddr;
use zerodrop_domain::order::{Actor, EventKind};
use zerodrop_providers::{AckKind, Notice, NoticeStatus, Provider, RefundNotice, Rejection};
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::jobs::NewJob;
use zerodrop_store::notifications::{self, NewNotification, Verdict};
use zerodrop_store::orders::OrderRow;
use zerodrop_store::payments::PaymentSource;
use zerodrop_store::refunds::{self, RefundState};
use zerodrop_store::{now_ms, orders, StoreError, Tx};

/// Largest notification body accepted. Real notifications are a few KiB.
pub const NOTIFY_BODY_BYTES_MAX: usize = 64 * 1024;
/// Headers that are never stored with the evidence.
const HEADERS_NOT_STORED: &[&str] = &["authorization", "cookie", "proxy-authorization"];
/// A parked notification is retried for about 45 minutes before a person is asked.
pub const RESOLVE_PARKED_ATTEMPTS_MAX: i64 = 12;

pub struct Request<'a> {
    pub provider: &'a str,
    pub remote: Option<SocketAddr>,
    pub headers: &'a HeaderMap,
    /// The body, or `None` when it was larger than [`NOTIFY_BODY_BYTES_MAX`].
    pub body: Option<&'a [u8]>,
}

/// A received notification as it is stored: owned, so it can wait for the committer.
pub struct Inbound {
    pub provider: String,
    pub remote: Option<String>,
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
}

impl Inbound {
    fn new(request: &Request<'_>, body: &[u8]) -> Inbound {
        Inbound {
            provider: request.provider.chars().take(128).collect(),
            remote: request.remote.map(|a| a.to_string()),
            headers: stored_headers(request.headers),
            body: body.to_vec(),
        }
    }
}

pub async fn handle(app: &App, request: Request<'_>) -> Response {
    let Some(provider) = app.provider(request.provider).cloned() else {
        let stored = store_refusal(app, &request, "unknown_provider", "no such provider").await;
        log_store_failure(stored);
        return (StatusCode::NOT_FOUND, "unknown provider").into_response();
    };
    let Some(body) = request.body else {
        let detail = format!("body larger than {NOTIFY_BODY_BYTES_MAX} bytes");
        log_store_failure(store_refusal(app, &request, "body_too_large", &detail).await);
        // The provider's own refusal body, with the status that says why.
        let ack = provider.ack(AckKind::Rejected);
        return (StatusCode::PAYLOAD_TOO_LARGE, [("content-type", ack.content_type)], ack.body).into_response();
    };
    let verified = provider.verify_notification(request.headers, body);
    let inbound = Inbound::new(&request, body);
    let outcome = match verified {
        Ok(notice) => app.committer.submit(inbound, notice).await,
        Err(rejection) => reject(app, &inbound, &rejection).await.map_err(|e| e.to_string()),
    };
    let kind = match outcome {
        Ok(kind) => kind,
        Err(e) => {
            tracing::error!(error = %e, provider = request.provider, "notification not processed; provider will retry");
            let inbound = Inbound::new(&request, body);
            let stored = store_row(app, &inbound, Verdict::Failed, Some(&e), None).await;
            log_store_failure(stored.map(|_| ()));
            AckKind::RetryLater
        }
    };
    let ack = provider.ack(kind);
    let status = StatusCode::from_u16(ack.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("content-type", ack.content_type)], ack.body).into_response()
}

fn log_store_failure(result: Result<(), StoreError>) {
    if let Err(e) = result {
        tracing::error!(error = %e, "could not store a refused notification");
    }
}

/// Stores a verified notification and acts on it, in the caller's transaction (the
/// committer's batch). Returns how to answer the provider once that transaction commits.
pub async fn accept_in(tx: &mut Tx, inbound: &Inbound, notice: &Notice, now: i64) -> Result<AckKind, StoreError> {
    let Some(mut order) = orders::lock_by_no(tx, &notice.order_no).await? else {
        let id = insert(tx, inbound, Verdict::Parked, Some("unknown order"), Some(notice), now).await?;
        let job = NewJob {
            kind: crate::jobs::RESOLVE_PARKED,
            order_id: None,
            payload: json!({ "notification_id": id, "provider": inbound.provider }),
            run_at_ms: now + 1_000,
            max_attempts: RESOLVE_PARKED_ATTEMPTS_MAX,
            dedupe_key: Some(format!("parked:{id}")),
        };
        zerodrop_store::jobs::enqueue(tx, &job, now).await?;
        tracing::warn!(provider = %inbound.provider, order.no = %notice.order_no, "notification for an unknown order parked");
        // Not acknowledged: the provider keeps resending while we keep looking.
        return Ok(AckKind::RetryLater);
    };
    if let Some(refund) = &notice.refund {
        let id = insert(tx, inbound, Verdict::Accepted, Some("refund notification"), Some(notice), now).await?;
        refund_notice(tx, &mut order, refund, id, now).await?;
        return Ok(AckKind::Accepted);
    }
    let NoticeStatus::Paid { amount, paid_at_ms } = &notice.status else {
        insert(tx, inbound, Verdict::Ignored, Some("not a payment"), Some(notice), now).await?;
        return Ok(AckKind::Accepted);
    };
    let Some(trade_no) = notice.trade_no.clone() else {
        insert(tx, inbound, Verdict::Rejected, Some("malformed: paid without trade_no"), Some(notice), now).await?;
        return Ok(AckKind::Rejected);
    };
    let id = insert(tx, inbound, Verdict::Accepted, None, Some(notice), now).await?;
    let fact = PaymentFact { provider: inbound.provider.clone(), trade_no, amount: *amount, paid_at_ms: *paid_at_ms };
    let cause = format!("notification:{id}");
    let recorded = payment::record_locked(tx, &mut order, &fact, PaymentSource::Notification, &cause, now).await?;
    Ok(match recorded {
        Recorded::Delivered { .. } | Recorded::Waiting { .. } | Recorded::RefundDue => AckKind::Accepted,
        Recorded::Duplicate => {
            notifications::set_verdict(tx, id, Verdict::Duplicate, Some("payment already recorded"), now).await?;
            AckKind::Accepted
        }
        Recorded::Refused { reason } => {
            notifications::set_verdict(tx, id, Verdict::Rejected, Some(reason), now).await?;
            AckKind::Rejected
        }
    })
}

/// A provider reports a refund: it settles ours (the same outcome path as the refund job's
/// query), and a refunded total beyond what zerodrop asked for goes to a person.
async fn refund_notice(
    tx: &mut Tx,
    order: &mut OrderRow,
    notice: &RefundNotice,
    notification_id: i64,
    now: i64,
) -> Result<(), StoreError> {
    let cause = format!("notification:{notification_id}");
    let data = json!({
        "request_no": notice.request_no, "refunded_total": notice.refunded_total.to_decimal(),
        "at_ms": notice.at_ms, "reason": "refund_outside_zerodrop",
    });
    if !order.status.is_paid() {
        let event = NewEvent::new(EventKind::AttentionRaised, Actor::Provider, &cause, data);
        return events::append(tx, order, event, now).await;
    }
    events::append(tx, order, NewEvent::new(EventKind::RefundNotified, Actor::Provider, &cause, data.clone()), now)
        .await?;
    let ours = refunds::for_order(tx, order.id).await?;
    if let Some(refund) = notice.request_no.as_ref().and_then(|no| ours.iter().find(|r| &r.request_no == no)) {
        refund::settle_in(tx, order, refund, &refund::Outcome::Succeeded, &cause, now).await?;
    }
    let asked: i64 = ours.iter().filter(|r| r.state != RefundState::Failed).map(|r| r.amount.minor).sum();
    if notice.refunded_total.minor > asked {
        events::append(tx, order, NewEvent::new(EventKind::AttentionRaised, Actor::System, &cause, data), now).await?;
    }
    Ok(())
}

async fn reject(app: &App, inbound: &Inbound, rejection: &Rejection) -> Result<AckKind, StoreError> {
    let mut tx = app.store.begin().await?;
    let now = now_ms();
    let reason = format!("{}: {}", rejection.code, rejection.detail);
    let id =
        insert_raw(&mut tx, inbound, Verdict::Rejected, Some(&reason), rejection.order_no.as_deref(), None, None, now)
            .await?;
    if rejection.code.flags_order() {
        if let Some(order_no) = &rejection.order_no {
            if let Some(order) = orders::get_by_no(&mut tx, order_no).await? {
                let mut order = orders::lock(&mut tx, order.id).await?;
                let cause = format!("notification:{id}");
                let data = json!({ "notification_id": id, "code": rejection.code.as_str(), "reason": rejection.code.as_str() });
                events::append(
                    &mut tx,
                    &mut order,
                    NewEvent::new(EventKind::NotificationRejected, Actor::Provider, &cause, data.clone()),
                    now,
                )
                .await?;
                events::append(
                    &mut tx,
                    &mut order,
                    NewEvent::new(EventKind::AttentionRaised, Actor::System, &cause, data),
                    now,
                )
                .await?;
            }
        }
    }
    tx.commit().await?;
    tracing::warn!(provider = %inbound.provider, code = %rejection.code, "notification refused");
    Ok(AckKind::Rejected)
}

async fn insert(
    tx: &mut Tx,
    inbound: &Inbound,
    verdict: Verdict,
    reason: Option<&str>,
    notice: Option<&Notice>,
    now: i64,
) -> Result<i64, StoreError> {
    let order_no = notice.map(|n| n.order_no.as_str());
    let trade_no = notice.and_then(|n| n.trade_no.as_deref());
    let notify_id = notice.and_then(|n| n.notify_id.as_deref());
    insert_raw(tx, inbound, verdict, reason, order_no, trade_no, notify_id, now).await
}

#[allow(clippy::too_many_arguments)]
async fn insert_raw(
    tx: &mut Tx,
    inbound: &Inbound,
    verdict: Verdict,
    reason: Option<&str>,
    order_no: Option<&str>,
    trade_no: Option<&str>,
    notify_id: Option<&str>,
    now: i64,
) -> Result<i64, StoreError> {
    let clip = |s: &str| s.chars().take(128).collect::<String>();
    let row = NewNotification {
        provider: &inbound.provider,
        remote_addr: inbound.remote.clone(),
        headers: inbound.headers.clone(),
        body: &inbound.body,
        verdict,
        reason: reason.map(|r| r.chars().take(500).collect()),
        order_no: order_no.map(clip),
        trade_no: trade_no.map(clip),
        notify_id: notify_id.map(clip),
    };
    Ok(notifications::insert(tx, &row, now))
}

/// Stores a refused request in its own transaction (nothing else to do with it).
async fn store_refusal(app: &App, request: &Request<'_>, code: &str, detail: &str) -> Result<(), StoreError> {
    let inbound = Inbound::new(request, request.body.unwrap_or_default());
    store_row(app, &inbound, Verdict::Rejected, Some(&format!("{code}: {detail}")), None).await.map(|_| ())
}

async fn store_row(
    app: &App,
    inbound: &Inbound,
    verdict: Verdict,
    reason: Option<&str>,
    notice: Option<&Notice>,
) -> Result<i64, StoreError> {
    let mut tx = app.store.begin().await?;
    let id = insert(&mut tx, inbound, verdict, reason, notice, now_ms()).await?;
    tx.commit().await?;
    Ok(id)
}

fn stored_headers(headers: &HeaderMap) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        if HEADERS_NOT_STORED.contains(&name.as_str()) {
            continue;
        }
        let text: String = String::from_utf8_lossy(value.as_bytes()).chars().take(512).collect();
        map.insert(name.as_str().to_owned(), serde_json::Value::String(text));
    }
    serde_json::Value::Object(map)
}

/// Re-verifies a stored notification (used when resolving parked ones).
pub fn reverify(provider: &dyn Provider, headers_json: &str, body: &[u8]) -> Result<Notice, Rejection> {
    let mut headers = HeaderMap::new();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(headers_json) {
        for (name, value) in map {
            let (Ok(name), Some(Ok(value))) = (
                axum::http::HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(axum::http::HeaderValue::from_str),
            ) else {
                continue;
            };
            headers.insert(name, value);
        }
    }
    provider.verify_notification(&headers, body)
}
