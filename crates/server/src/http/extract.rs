//! Extractors: what every handler's opening used to repeat. [`Merchant`] authenticates
//! the platform's back end, [`LimitedBody`] reads a body under the size limit, and
//! [`Idempotent`] reads a JSON request under its `Idempotency-Key`, answering a replay
//! itself.

use super::error::{ApiError, ErrorCode};
use super::idempotency::IdempotencyKey;
use crate::app::App;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use zerodrop_domain::UserId;

/// Largest API request body, in bytes. Order requests are a few hundred bytes.
pub const API_BODY_BYTES_MAX: usize = 64 * 1024;

/// A request carrying a valid merchant API key (`Authorization: Bearer <key>`).
pub struct Merchant;

impl FromRequestParts<App> for Merchant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Merchant, ApiError> {
        let presented = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthorized)?;
        // Every key is compared in constant time, so response timing does not reveal a
        // key's prefix, nor which key matched.
        let matches = app.config.api.merchant_api_keys.iter().fold(false, |found, key| {
            let same = aws_lc_rs::constant_time::verify_slices_are_equal(key.expose().as_bytes(), presented.as_bytes())
                .is_ok();
            found | same
        });
        if matches {
            Ok(Merchant)
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

/// The `{user_id}` of a route, valid: refused with `invalid_user_id` before the body is
/// read.
pub struct UserPath(pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<UserPath, ApiError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::invalid(ErrorCode::InvalidUserId, "the path names no user"))?;
        let text = params.iter().find(|(name, _)| *name == "user_id").map(|(_, value)| value).unwrap_or_default();
        UserId::parse(text).map(UserPath).map_err(|e| ApiError::invalid(ErrorCode::InvalidUserId, e.to_string()))
    }
}

/// A request body of at most [`API_BODY_BYTES_MAX`] bytes.
pub struct LimitedBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<LimitedBody, ApiError> {
        api_body(request.into_body()).await.map(LimitedBody)
    }
}

async fn api_body(body: Body) -> Result<Bytes, ApiError> {
    read_limited(body, API_BODY_BYTES_MAX).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BodyTooLarge,
            format!("request bodies are limited to {API_BODY_BYTES_MAX} bytes"),
        )
    })
}

/// Reads a body up to `limit` bytes; `None` when it is larger. Reading stops at the
/// limit, so an oversized body never sits in memory whole.
pub async fn read_limited(body: Body, limit: usize) -> Result<Option<Bytes>, ApiError> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(Some(collected.to_bytes())),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Ok(None),
        Err(_) => Err(ApiError::invalid(ErrorCode::InvalidRequest, "the request body could not be read")),
    }
}

/// A JSON request that creates something.
pub trait Creates: DeserializeOwned {
    /// Names the request in errors ("the body is not a valid {WHAT}").
    const WHAT: &'static str;
    /// Keys are valid within this scope, joined with the route's first path parameter
    /// (the order or user acted on), so one key can serve two resources.
    const SCOPE: &'static str;
    /// Whether a request without a key is refused (a retried gift must not be a second gift).
    const KEY_REQUIRED: bool;
}

/// A [`Creates`] request with its `Idempotency-Key`. An earlier request with the same key
/// and body is answered with its stored response, before the handler runs.
pub struct Idempotent<T> {
    pub request: T,
    pub key: Option<IdempotencyKey>,
}

impl<T: Creates + Send> FromRequest<App> for Idempotent<T> {
    type Rejection = Response;

    async fn from_request(request: Request, app: &App) -> Result<Idempotent<T>, Response> {
        let (mut parts, body) = request.into_parts();
        let params = RawPathParams::from_request_parts(&mut parts, app).await.map_err(IntoResponse::into_response)?;
        let scope = match params.iter().next() {
            Some((_, value)) => format!("{}:{value}", T::SCOPE),
            None => T::SCOPE.to_owned(),
        };
        let bytes = api_body(body).await.map_err(IntoResponse::into_response)?;
        let key = IdempotencyKey::from_request(scope, &parts.headers, &bytes).map_err(IntoResponse::into_response)?;
        match &key {
            Some(key) => {
                if let Some(replayed) = key.replay(&app.store).await.map_err(IntoResponse::into_response)? {
                    return Err(replayed);
                }
            }
            None if T::KEY_REQUIRED => {
                let message = format!("a {} needs an Idempotency-Key", T::WHAT);
                return Err(ApiError::invalid(ErrorCode::IdempotencyKeyRequired, message).into_response());
            }
            None => {}
        }
        let request = serde_json::from_slice(&bytes).map_err(|e| {
            let message = format!("the body is not a valid {}: {e}", T::WHAT);
            ApiError::invalid(ErrorCode::InvalidRequest, message).into_response()
        })?;
        Ok(Idempotent { request, key })
    }
}
