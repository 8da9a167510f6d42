//! `POST /v1/orders` and `GET /v1/orders/{order_no}`.

use super::{authorize, read_limited, API_BODY_BYTES_MAX};
use crate::app::App;
use crate::error::ApiError;
use crate::order::{self, CreateOrder, Idempotency, IDEMPOTENCY_KEY_CHARS_MAX};
use crate::views;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use zerodrop_store::{events, jobs, orders, payments};

pub async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&app, &headers)?;
    let bytes = read_limited(body, API_BODY_BYTES_MAX)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request bodies are limited to {API_BODY_BYTES_MAX} bytes"),
            )
        })?;
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_CHARS_MAX && k.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or_else(|| {
                    ApiError::invalid("invalid_idempotency_key", format!("Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_CHARS_MAX} visible ASCII characters"))
                })?;
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
            let request_hash = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            Some(Idempotency {
                key: key.to_owned(),
                request_hash,
            })
        }
    };
    let request: CreateOrder = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid(
            "invalid_request",
            format!("the body is not a valid order request: {e}"),
        )
    })?;
    let (status, body) = order::create(&app, request, idempotency).await?;
    Ok((status, [("content-type", "application/json")], body).into_response())
}

pub async fn get(
    State(app): State<App>,
    headers: HeaderMap,
    Path(order_no): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers)?;
    let not_found = || ApiError::not_found("order_not_found", "no order with this number");
    if zerodrop_domain::OrderNo::parse(&order_no).is_none() {
        return Err(not_found());
    }
    let mut conn = app.store.reader().await?;
    let order = orders::get_by_no(&mut conn, &order_no)
        .await?
        .ok_or_else(not_found)?;
    let payment = payments::for_order(&mut conn, order.id).await?;
    let timeline = events::list(&mut conn, order.id).await?;
    let pending: Vec<_> = jobs::for_order(&mut conn, order.id)
        .await?
        .into_iter()
        .filter(|(_, state, _, _)| state == "queued")
        .map(|(kind, _, run_at_ms, attempts)| json!({ "kind": kind, "run_at": views::rfc3339(run_at_ms), "failed_attempts": attempts }))
        .collect();
    Ok(Json(json!({
        "order": views::order(&order),
        "payment": payment.as_ref().map(views::payment),
        "timeline": views::timeline(&timeline),
        "pending_jobs": pending,
    }))
    .into_response())
}
