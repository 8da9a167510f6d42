//! What routes that need the database answer before it has been reached (see
//! [`crate::readiness`]): 503 at once, in each audience's own form, instead of waiting
//! for a database that is known to be missing. `/healthz` and the OpenAPI document need
//! no database and are never gated; `/readyz` and the provider notification route say
//! "not ready" in their own way.

use super::error::{ApiError, ErrorCode};
use crate::app::App;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The merchant API and `/metrics`: the documented `unavailable` JSON.
pub async fn api(State(app): State<App>, request: Request, next: Next) -> Response {
    if app.readiness.is_ready() {
        return next.run(request).await;
    }
    not_ready().into_response()
}

/// The user's status pages: the pages' own "not available right now".
pub async fn pages(State(app): State<App>, request: Request, next: Next) -> Response {
    if app.readiness.is_ready() {
        return next.run(request).await;
    }
    super::pages::unavailable()
}

/// 503 `unavailable` while the database has not been reached since start.
pub fn not_ready() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        "zerodrop is starting and cannot reach its database yet; retry shortly (with the same Idempotency-Key)",
    )
}
