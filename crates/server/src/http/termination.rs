//! Ending an agreement (issue 11): `POST /v1/agreements/{id}/termination-quote`,
//! `POST /v1/agreements/{id}/terminate`, `POST /v1/agreements/{id}/verification-code`
//! and the platform's `POST /v1/users/{user_id}/security-signal`.
//!
//! A refusal is the documented error with its stable code, `message: {zh_cn, en}` (what
//! happened, why, whose side, what next, with its time) and `next_step`.

use super::agreements::agreement_not_found;
use super::error::{ApiError, ErrorCode};
use super::extract::{LimitedBody, Merchant, UserPath};
use crate::app::App;
use crate::flows::agreement::holds;
use crate::flows::agreement::terminate::{self, Confirm, TerminateError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use zerodrop_domain::texts::format_utc;
use zerodrop_domain::{Refusal, UserId};
use zerodrop_store::agreements;
use zerodrop_store::now_ms;

/// Longest hold a signal may ask for, in seconds, before the rules cap it (the cap is
/// the domain's `TAKEOVER_HOLD_MS_MAX`); this only keeps the arithmetic in range.
const HOLD_SECS_MAX: i64 = 365 * 86_400;

/// The optional body of a quote or code request: the user the caller acts for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForUser {
    #[serde(default)]
    user_id: Option<String>,
}

fn parse_user(text: Option<&str>) -> Result<Option<UserId>, ApiError> {
    text.map(|t| UserId::parse(t).map_err(|e| ApiError::invalid(ErrorCode::InvalidUserId, e.to_string()))).transpose()
}

fn for_user(bytes: &[u8]) -> Result<Option<UserId>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let body: ForUser = serde_json::from_slice(bytes)
        .map_err(|_| ApiError::invalid(ErrorCode::InvalidRequest, "the body is empty or {\"user_id\": \"...\"}"))?;
    parse_user(body.user_id.as_deref())
}

pub async fn quote(
    State(app): State<App>,
    _: Merchant,
    Path(id): Path<String>,
    LimitedBody(bytes): LimitedBody,
) -> Result<Response, ApiError> {
    let user = for_user(&bytes)?;
    let stored = terminate::quote(&app, &id, user.as_ref(), now_ms()).await.map_err(refused)?;
    Ok((StatusCode::CREATED, Json(json!({ "quote": terminate::quote_json(&stored) }))).into_response())
}

pub async fn terminate(
    State(app): State<App>,
    _: Merchant,
    Path(id): Path<String>,
    LimitedBody(bytes): LimitedBody,
) -> Result<Response, ApiError> {
    let request: Confirm = serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::invalid(
            ErrorCode::InvalidRequest,
            "the body is {\"quote_id\": \"...\", \"verification\": {\"totp\": \"123456\"} or {\"code\": \"123456\"}}",
        )
    })?;
    let user = parse_user(request.user_id.as_deref())?;
    let answered = terminate::confirm(&app, &id, &request, user.as_ref(), now_ms()).await.map_err(refused)?;
    let mut body = json!({ "termination": answered.body });
    body["replayed"] = json!(!answered.first);
    Ok(Json(body).into_response())
}

/// Sends a one-time code for ending the agreement, as a user message (never in the answer).
pub async fn verification_code(
    State(app): State<App>,
    _: Merchant,
    Path(id): Path<String>,
    LimitedBody(bytes): LimitedBody,
) -> Result<Response, ApiError> {
    let user = for_user(&bytes)?;
    let row = {
        let mut conn = app.store.reader().await?;
        agreements::get(&mut conn, &id).await?
    };
    let row = row.filter(|r| user.as_ref().is_none_or(|u| *u == r.user_id)).ok_or_else(agreement_not_found)?;
    let now = now_ms();
    let sent = holds::send_code(&app, &row, now).await?;
    let body = json!({ "sent_to": "messages", "user_id": row.user_id, "expires_at_ms": sent.expires_at_ms });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecuritySignal {
    kind: String,
    hold_secs: i64,
}

/// The platform reports signs of an account takeover: the user's agreements are held.
pub async fn security_signal(
    State(app): State<App>,
    _: Merchant,
    UserPath(user): UserPath,
    LimitedBody(bytes): LimitedBody,
) -> Result<Response, ApiError> {
    let signal: SecuritySignal = serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::invalid(ErrorCode::InvalidRequest, "the body is {\"kind\": \"account_takeover\", \"hold_secs\": N}")
    })?;
    if signal.kind != "account_takeover" {
        return Err(ApiError::invalid(ErrorCode::InvalidRequest, "the only signal kind is account_takeover"));
    }
    if !(1..=HOLD_SECS_MAX).contains(&signal.hold_secs) {
        return Err(ApiError::invalid(ErrorCode::InvalidRequest, "hold_secs is a positive number of seconds"));
    }
    let now = now_ms();
    let (held, hold) = holds::takeover_signal(&app, &user, signal.hold_secs * 1000, now).await?;
    tracing::warn!(user = %user, agreements = held.len(), "account takeover signal: agreements held");
    let body =
        json!({ "held": held, "hold": hold, "unlock_at": format_utc(hold.until_ms), "reason": hold.reason_text(now) });
    Ok(Json(body).into_response())
}

fn refused(e: TerminateError) -> ApiError {
    match e {
        TerminateError::NotFound => agreement_not_found(),
        TerminateError::QuoteNotFound => {
            ApiError::not_found(ErrorCode::QuoteNotFound, "no quote with this id for this agreement")
        }
        TerminateError::Refused(refusal) => refusal_error(&refusal),
        TerminateError::TermsMissing => ApiError::internal(&e),
        TerminateError::Store(e) => e.into(),
    }
}

/// A refusal as the API answers it: its status, code, both languages and next step.
pub fn refusal_error(refusal: &Refusal) -> ApiError {
    let now = now_ms();
    let body = refusal.body(now);
    let (status, code) = match refusal {
        Refusal::VerificationRequired { .. } => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::VerificationRequired),
        Refusal::VerificationFailed { .. } => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::VerificationFailed),
        Refusal::SecurityHold { .. } => (StatusCode::LOCKED, ErrorCode::SecurityHold),
        Refusal::QuoteExpired { .. } => (StatusCode::CONFLICT, ErrorCode::QuoteExpired),
        Refusal::AlreadyTerminated { .. } => (StatusCode::CONFLICT, ErrorCode::AlreadyTerminated),
        Refusal::ChargeInProgress { .. } => (StatusCode::CONFLICT, ErrorCode::ChargeInProgress),
        Refusal::FeeUnpaid { .. } => (StatusCode::PAYMENT_REQUIRED, ErrorCode::FeeUnpaid),
    };
    let mut details = serde_json::to_value(&body.details).unwrap_or_default();
    match refusal {
        Refusal::SecurityHold { unlock_at_ms, .. } => details["unlock_at"] = json!(format_utc(*unlock_at_ms)),
        Refusal::ChargeInProgress { settled_by_ms } => {
            details["settles_by"] = json!(format_utc(*settled_by_ms));
            details["settles_by_ms"] = json!(settled_by_ms);
        }
        Refusal::VerificationRequired { .. }
        | Refusal::VerificationFailed { .. }
        | Refusal::QuoteExpired { .. }
        | Refusal::AlreadyTerminated { .. }
        | Refusal::FeeUnpaid { .. } => {}
    }
    ApiError::new(status, code, body.message.en.clone()).with_texts(body.message, body.next_step).with_details(details)
}
