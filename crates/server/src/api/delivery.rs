//! The platform's side of external delivery: its endpoint confirms a delivery it accepted
//! (`202`) with `POST /v1/orders/{order_no}/delivery`, signed like zerodrop's requests; and
//! the merchant can replay a delivery with `POST /v1/orders/{order_no}/delivery/replay`.

use super::{authorize, read_body};
use crate::app::App;
use crate::delivery;
use crate::error::ApiError;
use crate::external::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::views;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use zerodrop_domain::order::OrderStatus;
use zerodrop_domain::ProductKind;
use zerodrop_store::{now_ms, orders};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Confirmation {
    /// `delivered` or `failed`.
    status: String,
    #[serde(default)]
    reason: String,
}

pub async fn confirm(
    State(app): State<App>,
    headers: HeaderMap,
    Path(order_no): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bytes = read_body(body).await?;
    let not_found = || ApiError::not_found("order_not_found", "no order with this number");
    if zerodrop_domain::OrderNo::parse(&order_no).is_none() {
        return Err(not_found());
    }
    let mut tx = app.store.begin().await?;
    let now = now_ms();
    let mut order = orders::lock_by_no(&mut tx, &order_no).await?.ok_or_else(not_found)?;
    let ProductKind::External { endpoint, .. } = &order.product.kind else {
        return Err(ApiError::new(StatusCode::CONFLICT, "not_external", "this order is not delivered by an endpoint"));
    };
    let endpoint =
        app.endpoint(endpoint).ok_or_else(|| ApiError::internal("the order's delivery endpoint is not configured"))?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    external::verify(endpoint.secret.expose(), header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER), &bytes, now / 1000)
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string()))?;
    let confirmation: Confirmation = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid("invalid_request", format!("the body is not a valid confirmation: {e}")))?;
    let cause = format!("endpoint:{}", endpoint.name);
    let data = json!({ "confirmation": confirmation.status, "reason": confirmation.reason.chars().take(200).collect::<String>() });
    match (confirmation.status.as_str(), order.status) {
        ("delivered", OrderStatus::Paid) => {
            delivery::complete_later(&mut tx, &mut order, Some(json!({ "confirmed": true })), now).await?;
        }
        // The same confirmation again (a retry, a replay within the window): same answer.
        ("delivered", OrderStatus::Delivered) => {}
        ("failed", OrderStatus::Paid) => delivery::refused_in(&mut tx, &mut order, &cause, data, now).await?,
        ("delivered", OrderStatus::RefundDue | OrderStatus::Refunding | OrderStatus::Refunded) => {
            delivery::arrived_after_refund_in(&mut tx, &mut order, &cause, data, now).await?;
            tx.commit().await?;
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "order_refunded",
                "the order is being refunded; a person will look at this delivery",
            ));
        }
        ("delivered" | "failed", _) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "order_not_awaiting_delivery",
                format!("the order is {}", order.status),
            ));
        }
        _ => return Err(ApiError::invalid("invalid_request", "status must be delivered or failed")),
    }
    tx.commit().await?;
    Ok((StatusCode::OK, Json(json!({ "order": views::order(&order) }))))
}

pub async fn replay(
    State(app): State<App>,
    headers: HeaderMap,
    Path(order_no): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&app, &headers)?;
    match delivery::replay(&app, &order_no).await {
        Ok(replay_id) => Ok((StatusCode::ACCEPTED, Json(json!({ "replay_id": replay_id, "order_no": order_no })))),
        Err(e @ delivery::ReplayError::NotFound) => Err(ApiError::not_found("order_not_found", e.to_string())),
        Err(e @ delivery::ReplayError::NotExternal) => {
            Err(ApiError::new(StatusCode::CONFLICT, "not_external", e.to_string()))
        }
        Err(e @ delivery::ReplayError::NotDeliverable(_)) => {
            Err(ApiError::new(StatusCode::CONFLICT, "order_not_deliverable", e.to_string()))
        }
        Err(delivery::ReplayError::Store(e)) => Err(ApiError::internal(e)),
    }
}
