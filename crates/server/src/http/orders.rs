//! `POST /v1/orders`, `GET /v1/orders/{order_no}` and `POST /v1/orders/{order_no}/check`.

use super::error::{ApiError, ErrorCode};
use super::extract::{Creates, Idempotent, Merchant};
use super::idempotency;
use super::json;
use super::order_view;
use super::status_text::Lang;
use crate::app::App;
use crate::flows::check;
use crate::flows::order::{self, CreateOrder, OrderError};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use zerodrop_store::now_ms;

impl Creates for CreateOrder {
    const WHAT: &'static str = "order request";
    const SCOPE: &'static str = "create_order";
    const KEY_REQUIRED: bool = false;
}

pub async fn create(
    State(app): State<App>,
    _: Merchant,
    Idempotent { request, key }: Idempotent<CreateOrder>,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let prepared = order::prepare(&app, request, now).map_err(refusal)?;
    let mut tx = app.store.begin().await?;
    let created = prepared.insert_in(&mut tx, &app.config.orders, now).await.map_err(refusal)?;
    let body = json!({ "order": json::order(&created.order), "pay": created.pay });
    let response = idempotency::commit(&app.store, key.as_ref(), tx, StatusCode::CREATED, body).await?;
    tracing::info!(order.no = %created.order.order_no, sku = %created.order.product.sku, "order created");
    Ok(response)
}

fn refusal(e: OrderError) -> ApiError {
    let message = e.to_string();
    match e {
        OrderError::InvalidUserId(_) => ApiError::invalid(ErrorCode::InvalidUserId, message),
        OrderError::UnknownSku(_) => ApiError::invalid(ErrorCode::UnknownSku, message),
        OrderError::InvalidQuantity(_) => ApiError::invalid(ErrorCode::InvalidQuantity, message),
        OrderError::Unavailable(_) => ApiError::invalid(ErrorCode::ProductUnavailable, message),
        OrderError::UnknownProvider { known, .. } => {
            ApiError::invalid(ErrorCode::UnknownProvider, message).with_details(json!({ "providers": known }))
        }
        OrderError::Provider(_) | OrderError::NumbersExhausted | OrderError::Store(_) => ApiError::internal(&e),
    }
}

pub async fn get(
    State(app): State<App>,
    _: Merchant,
    headers: HeaderMap,
    Path(order_no): Path<String>,
) -> Result<Response, ApiError> {
    let view = order_view::load(&app.store, &order_no).await?.ok_or_else(ApiError::order_not_found)?;
    Ok(Json(body(&app, &view, &headers)).into_response())
}

/// `POST /v1/orders/{order_no}/check`: the user is back from the payment sheet. Asks the
/// provider now and in a burst after (rate-limited per order), then answers like `GET`,
/// with `check` saying whether this call started the burst and whether it is under way.
/// Any body is ignored.
pub async fn check(
    State(app): State<App>,
    _: Merchant,
    headers: HeaderMap,
    Path(order_no): Path<String>,
) -> Result<Response, ApiError> {
    let checked = check::check(&app, &order_no, now_ms()).await?.ok_or_else(ApiError::order_not_found)?;
    let view = order_view::load(&app.store, &order_no).await?.ok_or_else(ApiError::order_not_found)?;
    let mut body = body(&app, &view, &headers);
    body["check"] = json!({ "started": checked.started, "under_way": checked.under_way });
    Ok(Json(body).into_response())
}

/// An order as the merchant API shows it.
fn body(app: &App, view: &order_view::OrderView, headers: &HeaderMap) -> serde_json::Value {
    let lang = Lang::pick(None, headers.get("accept-language").and_then(|v| v.to_str().ok()));
    let offset = app.config.status_pages.utc_offset_minutes;
    json!({
        "order": json::order(&view.order),
        "status_text": view.status_text(offset, lang),
        "status_text_lang": lang.code(),
        "payment": view.payment.as_ref().map(json::payment),
        "delivery": view.card_code(app.vault.as_ref()),
        "refunds": view.refunds.iter().map(json::refund).collect::<Vec<_>>(),
        "charges": view.charges.iter().map(json::charge).collect::<Vec<_>>(),
        "timeline": json::timeline(&view.timeline),
        "pending_jobs": view.pending_jobs,
    })
}
