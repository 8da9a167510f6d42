//! Agreements (issue 11): `GET /v1/plans/{plan}/terms`, `POST /v1/agreements`,
//! `GET /v1/agreements/{id}` and the provider's
//! `POST /v1/providers/{provider}/agreements/notify`.

use super::error::{ApiError, ErrorCode};
use super::extract::{Creates, Idempotent, Merchant};
use super::idempotency;
use crate::app::App;
use crate::flows::agreement::{self, notify as agreement_notify, AgreementError, SignAgreement};
use crate::intake::{Intake, Request};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::net::SocketAddr;
use zerodrop_providers::{Ack, AckKind};
use zerodrop_store::agreements::terms;
use zerodrop_store::now_ms;

impl Creates for SignAgreement {
    const WHAT: &'static str = "agreement request";
    const SCOPE: &'static str = "sign_agreement";
    const KEY_REQUIRED: bool = false;
}

/// Every published version of a plan's terms, oldest first, each with its hash; the
/// current one (what a new signing consents to) is named.
pub async fn terms(State(app): State<App>, _: Merchant, Path(plan): Path<String>) -> Result<Response, ApiError> {
    let mut conn = app.store.reader().await?;
    let versions = terms::list(&mut conn, &plan).await?;
    let Some(current) = versions.last().map(|t| t.version) else {
        return Err(ApiError::not_found(ErrorCode::UnknownPlan, "no plan with this id"));
    };
    let versions: Vec<_> = versions
        .iter()
        .map(|t| {
            json!({
                "version": t.version,
                "sha256": t.sha256,
                "published_at_ms": t.published_at_ms,
                "terms": serde_json::from_str::<serde_json::Value>(&t.canonical_json).ok(),
            })
        })
        .collect();
    Ok(Json(json!({ "plan": plan, "current_version": current, "versions": versions })).into_response())
}

pub async fn create(
    State(app): State<App>,
    _: Merchant,
    Idempotent { request, key }: Idempotent<SignAgreement>,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let prepared = agreement::prepare(&app, request, now).map_err(refusal)?;
    let mut tx = app.store.begin().await?;
    let signing = agreement::insert_in(&mut tx, prepared, now).await.map_err(refusal)?;
    let view = agreement::AgreementView { agreement: signing.agreement, timeline: Vec::new(), terms: None };
    let body = json!({ "agreement": view.json(&app), "sign": signing.sign });
    let response = idempotency::commit(&app.store, key.as_ref(), tx, StatusCode::CREATED, body).await?;
    tracing::info!(agreement = %view.agreement.id, plan = %view.agreement.plan, "agreement created (signing)");
    Ok(response)
}

fn refusal(e: AgreementError) -> ApiError {
    let message = e.to_string();
    match e {
        AgreementError::InvalidUserId => ApiError::invalid(ErrorCode::InvalidUserId, message),
        AgreementError::UnknownPlan(_) => ApiError::invalid(ErrorCode::UnknownPlan, message),
        AgreementError::UnknownProvider { known, .. } => {
            ApiError::invalid(ErrorCode::UnknownProvider, message).with_details(json!({ "providers": known }))
        }
        AgreementError::Provider(_) | AgreementError::NumbersExhausted | AgreementError::Store(_) => {
            ApiError::internal(&e)
        }
    }
}

pub fn agreement_not_found() -> ApiError {
    ApiError::not_found(ErrorCode::AgreementNotFound, "no agreement with this id")
}

pub async fn get(State(app): State<App>, _: Merchant, Path(id): Path<String>) -> Result<Response, ApiError> {
    let view = agreement::load(&app, &id).await?.ok_or_else(agreement_not_found)?;
    Ok(Json(json!({ "agreement": view.json(&app) })).into_response())
}

/// The provider's sign and unsign notifications: stored, verified, applied, and
/// acknowledged in the provider's protocol only after the commit.
pub async fn notify(
    State(app): State<App>,
    Path(provider): Path<String>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let max = crate::intake::NOTIFY_BODY_BYTES_MAX;
    let bytes = super::extract::read_limited(body, max).await.unwrap_or(Some(Bytes::new()));
    let adapter = app.provider(&provider).cloned();
    if !app.readiness.is_ready() {
        // Nothing can be stored yet: the provider's own "retry later".
        return match adapter {
            Some(adapter) => answer(adapter.ack(AckKind::RetryLater)),
            None => super::gate::not_ready().into_response(),
        };
    }
    let intake = Intake { store: &app.store, committer: &app.committer, refusals: &app.refusals };
    let request = Request { provider_name: &provider, remote: Some(remote), headers: &headers, body: bytes.as_deref() };
    // What nothing can verify as the provider's is refused as the notification intake
    // refuses it (kept in part, rate-limited per source, pruned); only a message the
    // provider signed is stored whole, as agreement evidence.
    let Some(adapter) = adapter else {
        crate::intake::refuse_unverified(&intake, request, "unknown_provider: no such provider").await;
        return (StatusCode::NOT_FOUND, format!("unknown provider (request id {})", ApiError::request_id()))
            .into_response();
    };
    let Some(body) = bytes.as_deref() else {
        let reason = format!("body_too_large: body larger than {max} bytes");
        crate::intake::refuse_unverified(&intake, request, &reason).await;
        return answer(Ack { status: 413, ..adapter.ack(AckKind::Rejected) });
    };
    if let Err(rejection) = adapter.verify_agreement_notification(&headers, body) {
        if !rejection.signed {
            let reason = format!("{}: {}", rejection.code.as_str(), rejection.detail);
            crate::intake::refuse_unverified(&intake, request, &reason).await;
            return answer(adapter.ack(AckKind::Rejected));
        }
    }
    // Headers bounded as the notification intake bounds them.
    let inbound = crate::intake::evidence::Inbound::new(&provider, Some(remote), &headers, body);
    let received = agreement_notify::Received { remote: inbound.remote, headers: inbound.headers, body: inbound.body };
    match agreement_notify::receive(&app, &provider, received).await {
        Some(ack) => answer(ack),
        None => {
            (StatusCode::NOT_FOUND, format!("unknown provider (request id {})", ApiError::request_id())).into_response()
        }
    }
}

fn answer(ack: Ack) -> Response {
    let status = StatusCode::from_u16(ack.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("content-type", ack.content_type)], ack.body).into_response()
}
