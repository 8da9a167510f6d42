//! `POST /v1/users/{user_id}/totp`, `POST /v1/users/{user_id}/totp/confirm` and
//! `GET /v1/users/{user_id}/messages`.

use super::error::{ApiError, ErrorCode};
use super::extract::{LimitedBody, Merchant, UserPath};
use crate::app::App;
use crate::flows::agreement::verification::{self, Confirmed, Enrolled};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use zerodrop_store::agreements::messages;
use zerodrop_store::now_ms;

/// Messages per page when the caller names no limit.
const MESSAGES_PAGE_DEFAULT: i64 = 20;

/// Enrols the user's TOTP: the `otpauth://` URI, once. Any body is ignored; the answer is
/// never stored (no idempotency record: it carries the secret).
pub async fn enrol(State(app): State<App>, _: Merchant, UserPath(user): UserPath) -> Result<Response, ApiError> {
    match verification::enrol(&app, &user, now_ms()).await? {
        Enrolled::New(uri) => {
            let body = json!({ "otpauth_uri": uri.expose(), "confirmed": false });
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        Enrolled::AlreadyConfirmed => Err(ApiError::conflict(
            ErrorCode::TotpAlreadyEnrolled,
            "this user's authenticator is already confirmed; it is kept",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmTotp {
    code: String,
}

pub async fn confirm(
    State(app): State<App>,
    _: Merchant,
    UserPath(user): UserPath,
    LimitedBody(bytes): LimitedBody,
) -> Result<Response, ApiError> {
    let request: ConfirmTotp = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::invalid(ErrorCode::InvalidRequest, "the body is not a valid {\"code\": \"123456\"}"))?;
    match verification::confirm(&app, &user, &request.code, now_ms()).await? {
        Confirmed::Confirmed => Ok(Json(json!({ "confirmed": true })).into_response()),
        Confirmed::NotEnrolled => {
            Err(ApiError::not_found(ErrorCode::TotpNotEnrolled, "this user has no authenticator enrolled"))
        }
        Confirmed::WrongCode => Err(ApiError::invalid(
            ErrorCode::VerificationFailed,
            "the code is wrong, expired or already used; wrong codes are counted",
        )),
    }
}

#[derive(Deserialize)]
pub struct MessagesQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

/// The user's messages, newest first, in bounded pages (`before` = the last id seen).
pub async fn messages(
    State(app): State<App>,
    _: Merchant,
    UserPath(user): UserPath,
    query: Result<Query<MessagesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|_| ApiError::invalid(ErrorCode::InvalidRequest, "before and limit are integers"))?;
    let mut conn = app.store.reader().await?;
    let limit = query.limit.unwrap_or(MESSAGES_PAGE_DEFAULT);
    let page = messages::page(&mut conn, &user, query.before, limit).await?;
    let next =
        (page.len() as i64 >= limit.clamp(1, messages::PAGE_ROWS_MAX)).then(|| page.last().map(|m| m.id)).flatten();
    Ok(Json(json!({ "messages": page, "next_before": next })).into_response())
}
