//! Every error is the documented JSON. Handlers return [`ApiError`]s; what they never
//! see is refused by axum before they run (a path parameter that is not UTF-8, say) with
//! a plain-text body. This layer turns any such error response into the JSON shape with
//! the code its status stands for, so a client never has to parse two formats.
//!
//! Left as they are: the provider notification routes, which answer in the provider's
//! own protocol (Alipay's `fail`), the user's HTML pages, and the operations endpoints
//! (`/healthz`, `/readyz`, `/metrics`), which load balancers and scrapers read by status.

use super::error::{ApiError, ErrorCode};
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Paths whose error responses keep their own format (see the module's comment).
const OWN_FORMAT_PREFIXES: &[&str] = &["/v1/providers/", "/pages/", "/healthz", "/readyz", "/metrics"];

pub async fn json_errors(request: Request, next: Next) -> Response {
    let own_format = OWN_FORMAT_PREFIXES.iter().any(|p| request.uri().path().starts_with(p));
    let response = next.run(request).await;
    let status = response.status();
    if own_format || !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let error = as_json(status);
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), "a plain error response was turned into JSON");
    }
    error.into_response()
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The documented error for a status nothing in zerodrop chose the code of.
fn as_json(status: StatusCode) -> ApiError {
    match status {
        StatusCode::UNAUTHORIZED => ApiError::unauthorized(),
        StatusCode::NOT_FOUND => ApiError::not_found(ErrorCode::NotFound, "no such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::new(status, ErrorCode::MethodNotAllowed, "this endpoint does not take that method")
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(status, ErrorCode::BodyTooLarge, "the request body is too large")
        }
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::invalid(ErrorCode::InvalidRequest, "the request is not valid"),
        s if s.is_server_error() => ApiError::new(
            s,
            ErrorCode::Unavailable,
            "zerodrop could not complete the request; retry it (with the same Idempotency-Key)",
        ),
        // 400 and any other refusal: the request itself could not be read.
        s => ApiError::new(
            s,
            ErrorCode::BadRequest,
            "the request could not be read (a path or query parameter that is not valid)",
        ),
    }
}
