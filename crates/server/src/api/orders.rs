//! `POST /v1/orders` and `GET /v1/orders/{order_no}`.

use super::{authorize, read_body};
use crate::app::App;
use crate::detail;
use crate::error::ApiError;
use crate::idempotent::Idempotency;
use crate::order::{self, CreateOrder};
use crate::views;
use crate::words::Lang;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

pub async fn create(State(app): State<App>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    authorize(&app, &headers)?;
    let bytes = read_body(body).await?;
    let idempotency = Idempotency::from_request(order::IDEMPOTENCY_SCOPE, &headers, &bytes)?;
    let request: CreateOrder = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid("invalid_request", format!("the body is not a valid order request: {e}")))?;
    let (status, body) = order::create(&app, request, idempotency).await?;
    Ok((status, [("content-type", "application/json")], body).into_response())
}

pub async fn get(
    State(app): State<App>,
    headers: HeaderMap,
    Path(order_no): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers)?;
    let detail = detail::load(&app, &order_no)
        .await?
        .ok_or_else(|| ApiError::not_found("order_not_found", "no order with this number"))?;
    let lang = Lang::pick(None, headers.get("accept-language").and_then(|v| v.to_str().ok()));
    Ok(Json(json!({
        "order": views::order(&detail.order),
        "status_text": detail.status_text(&app, lang),
        "status_text_lang": lang.code(),
        "payment": detail.payment.as_ref().map(views::payment),
        "delivery": detail.card_code(&app),
        "refunds": detail.refunds.iter().map(views::refund).collect::<Vec<_>>(),
        "timeline": views::timeline(&detail.timeline),
        "pending_jobs": detail.pending_jobs,
    }))
    .into_response())
}
