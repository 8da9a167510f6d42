//! The HTTP surface: the merchant API under `/v1`, provider notification routes, the
//! user's status pages and operations endpoints. Every input is validated here, at the
//! edge; handlers read their input through the [`extract`] extractors, call one flow, and
//! map its error to an [`error::ErrorCode`].
//!
//! Every request gets an `x-request-id` (the caller's, or a new UUID), echoed in the
//! response headers and in every error body, and a trace span carrying it.

mod agreements;
pub mod attention;
mod delivery;
pub mod error;
pub mod extract;
mod gate;
pub mod idempotency;
pub mod json;
mod notify;
mod ops;
pub mod order_view;
mod orders;
pub mod pages;
mod plain;
mod reconciliations;
mod refunds;
pub mod stats;
pub mod status_text;
mod termination;
mod users;
mod verification;

use crate::app::App;
use axum::extract::Request;
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use ops::OPENAPI_JSON;

/// The header that carries a request's id.
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(app: App) -> Router {
    // Routes that need the database answer 503 at once until it has been reached.
    let api = Router::new()
        .route("/v1/orders", post(orders::create))
        .route("/v1/plans/{plan}/terms", get(agreements::terms))
        .route("/v1/agreements", post(agreements::create))
        .route("/v1/agreements/{id}", get(agreements::get))
        .route("/v1/agreements/{id}/termination-quote", post(termination::quote))
        .route("/v1/agreements/{id}/terminate", post(termination::terminate))
        .route("/v1/agreements/{id}/verification-code", post(termination::verification_code))
        .route("/v1/users/{user_id}/security-signal", post(termination::security_signal))
        .route("/v1/orders/{order_no}", get(orders::get))
        .route("/v1/orders/{order_no}/check", post(orders::check))
        .route("/v1/orders/{order_no}/refunds", post(refunds::create))
        .route("/v1/orders/{order_no}/delivery", post(delivery::confirm))
        .route("/v1/orders/{order_no}/delivery/replay", post(delivery::replay))
        .route("/v1/users/{user_id}/wallet/spend", post(users::spend))
        .route("/v1/orders/{order_no}/status-link", post(pages::link))
        .route("/v1/users/{user_id}/wallet", get(users::wallet))
        .route("/v1/users/{user_id}/memberships", get(users::memberships))
        .route("/v1/users/{user_id}/totp", post(verification::enrol))
        .route("/v1/users/{user_id}/totp/confirm", post(verification::confirm))
        .route("/v1/users/{user_id}/messages", get(verification::messages))
        .route("/v1/attention", get(attention::list))
        .route("/v1/attention/{id}", get(attention::show))
        .route("/v1/attention/{id}/resolve", post(attention::resolve))
        .route("/v1/reconciliations", get(reconciliations::list))
        .route("/v1/reconciliations/{id}", get(reconciliations::show))
        .route("/v1/stats", get(stats::get))
        .route("/metrics", get(ops::metrics))
        .route_layer(middleware::from_fn_with_state(app.clone(), gate::api));
    let pages = Router::new()
        .route("/pages/orders/{order_no}", get(pages::status))
        .route("/pages/orders/{order_no}/receipt", get(pages::receipt))
        .route("/pages/orders/{order_no}/proof", get(pages::proof))
        .route_layer(middleware::from_fn_with_state(app.clone(), gate::pages));
    Router::new()
        .merge(api)
        .merge(pages)
        // Answers "not ready" in the provider's protocol itself.
        .route("/v1/providers/{provider}/notify", post(notify::notify))
        .route("/v1/providers/{provider}/agreements/notify", post(agreements::notify))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .with_state(app)
        // Layers run outside in, from the last added: the id is set first, then the
        // span opens, then error bodies learn the id, then the response carries it.
        // Innermost, a plain-text error axum made (a rejected path parameter, say)
        // becomes the documented JSON.
        .layer(middleware::from_fn(plain::json_errors))
        .layer(middleware::from_fn(request_id_scope))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
        // Failures are logged once, where they become an ApiError, not again here.
        .layer(TraceLayer::new_for_http().make_span_with(request_span).on_failure(()))
        .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeRequestUuid))
}

/// Longest request id repeated in logs and error bodies, in characters; a caller's
/// longer (or unprintable) id is still echoed in the response header as sent.
const REQUEST_ID_CHARS_MAX: usize = 128;

/// The request's id as logs and error bodies show it: printable ASCII, bounded.
fn request_id(request: &Request) -> String {
    let Some(id) = request.extensions().get::<RequestId>() else { return String::new() };
    // Bytes, not `to_str`: one byte that is not ASCII must not blank the whole id.
    id.header_value()
        .as_bytes()
        .iter()
        .filter(|b| b.is_ascii_graphic())
        .take(REQUEST_ID_CHARS_MAX)
        .map(|b| char::from(*b))
        .collect()
}

/// The request's span: method, path and id (never the query, which may hold a link's
/// signature).
fn request_span(request: &Request) -> tracing::Span {
    let id = request_id(request);
    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
}

/// Makes the request id readable by error bodies while the request is handled.
async fn request_id_scope(request: Request, next: Next) -> Response {
    let id = request_id(&request);
    error::REQUEST_ID.scope(id, next.run(request)).await
}
