//! The HTTP surface: the merchant API under `/v1`, provider notification routes, and
//! operations endpoints. Every input is validated here, at the edge.

mod delivery;
pub mod ops;
mod orders;
mod refunds;
mod users;

use crate::app::App;
use crate::error::ApiError;
use crate::notify;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;

/// Largest API request body, in bytes. Order requests are a few hundred bytes.
pub const API_BODY_BYTES_MAX: usize = 64 * 1024;

pub use ops::OPENAPI_JSON;

pub fn router(app: App) -> Router {
    Router::new()
        .route("/v1/orders", post(orders::create))
        .route("/v1/orders/{order_no}", get(orders::get))
        .route("/v1/orders/{order_no}/refunds", post(refunds::create))
        .route("/v1/orders/{order_no}/delivery", post(delivery::confirm))
        .route("/v1/orders/{order_no}/delivery/replay", post(delivery::replay))
        .route("/v1/users/{user_id}/wallet/spend", post(users::spend))
        .route("/v1/orders/{order_no}/status-link", post(crate::pages::link))
        .route("/pages/orders/{order_no}", get(crate::pages::status))
        .route("/pages/orders/{order_no}/receipt", get(crate::pages::receipt))
        .route("/v1/users/{user_id}/wallet", get(users::wallet))
        .route("/v1/users/{user_id}/memberships", get(users::memberships))
        .route("/v1/providers/{provider}/notify", post(provider_notify))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .with_state(app)
}

/// Checks `Authorization: Bearer <key>` against the configured merchant keys, in
/// constant time per key so response timing does not reveal a key's prefix.
pub fn authorize(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthorized)?;
    let matches = app.config.api.merchant_api_keys.iter().fold(false, |found, key| {
        let same =
            aws_lc_rs::constant_time::verify_slices_are_equal(key.expose().as_bytes(), presented.as_bytes()).is_ok();
        found | same
    });
    if matches {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

/// Reads an API body, refusing one over [`API_BODY_BYTES_MAX`].
pub(crate) async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    read_limited(body, API_BODY_BYTES_MAX).await?.ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {API_BODY_BYTES_MAX} bytes"),
        )
    })
}

/// Reads a body up to `limit` bytes; `None` when it is larger. Reading stops at the
/// limit, so an oversized body never sits in memory whole.
pub(crate) async fn read_limited(body: Body, limit: usize) -> Result<Option<Bytes>, ApiError> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(Some(collected.to_bytes())),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Ok(None),
        Err(_) => Err(ApiError::invalid("invalid_request", "the request body could not be read")),
    }
}

async fn provider_notify(
    State(app): State<App>,
    Path(provider): Path<String>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match read_limited(body, notify::NOTIFY_BODY_BYTES_MAX).await {
        Ok(bytes) => bytes,
        Err(_) => Some(Bytes::new()),
    };
    let request =
        notify::Request { provider: &provider, remote: Some(remote), headers: &headers, body: bytes.as_deref() };
    notify::handle(&app, request).await
}
