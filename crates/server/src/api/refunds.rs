//! `POST /v1/orders/{order_no}/refunds`: the merchant asks for a full or partial refund.

use super::{authorize, read_body};
use crate::app::App;
use crate::error::ApiError;
use crate::idempotent::{self, Idempotency};
use crate::refund::{self, RefundError};
use crate::views;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use zerodrop_domain::money::Money;
use zerodrop_store::{now_ms, orders};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundRequest {
    /// Decimal in the order's currency; everything left when absent.
    amount: Option<String>,
    reason: String,
}

/// Longest refund reason kept, in characters.
const REASON_CHARS_MAX: usize = 200;

pub async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    Path(order_no): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&app, &headers)?;
    let bytes = read_body(body).await?;
    let idempotency = Idempotency::from_request(&format!("refund:{order_no}"), &headers, &bytes)?;
    if let Some(idem) = &idempotency {
        if let Some((status, body)) = idem.replay(&app).await? {
            return Ok((status, [("content-type", "application/json")], body).into_response());
        }
    }
    let request: RefundRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid("invalid_request", format!("the body is not a valid refund request: {e}")))?;
    if request.reason.trim().is_empty() || request.reason.chars().count() > REASON_CHARS_MAX {
        return Err(ApiError::invalid("invalid_request", format!("reason must be 1 to {REASON_CHARS_MAX} characters")));
    }
    let not_found = || ApiError::not_found("order_not_found", "no order with this number");
    if zerodrop_domain::OrderNo::parse(&order_no).is_none() {
        return Err(not_found());
    }
    let mut tx = app.store.begin().await?;
    let mut order = orders::lock_by_no(&mut tx, &order_no).await?.ok_or_else(not_found)?;
    let amount = match &request.amount {
        Some(text) => {
            Some(Money::parse_decimal(text, order.amount.currency).ok().filter(|m| m.minor > 0).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_amount",
                    format!("amount must be a positive decimal in {}", order.amount.currency),
                )
            })?)
        }
        None => None,
    };
    let refund =
        refund::request_in(&mut tx, &mut order, amount, refund::Origin::Merchant, request.reason.trim(), now_ms())
            .await
            .map_err(refusal)?;
    let body = json!({ "refund": views::refund(&refund), "order": views::order(&order) }).to_string();
    let (status, body) = idempotent::commit(&app, idempotency.as_ref(), tx, StatusCode::CREATED, body).await?;
    app.wake();
    Ok((status, [("content-type", "application/json")], body).into_response())
}

fn refusal(e: RefundError) -> ApiError {
    let conflict = |code, e: &RefundError| ApiError::new(StatusCode::CONFLICT, code, e.to_string());
    match e {
        RefundError::NotPaid => conflict("order_not_paid", &e),
        RefundError::NothingLeft => conflict("nothing_left_to_refund", &e),
        RefundError::InProgress => conflict("refund_in_progress", &e),
        RefundError::PartialNotAllowed => conflict("partial_refund_not_allowed", &e),
        RefundError::Exceeds { .. } => ApiError::invalid("refund_exceeds_paid", e.to_string()),
        RefundError::BadAmount => ApiError::invalid("invalid_amount", e.to_string()),
        RefundError::Store(e) => ApiError::internal(e),
    }
}
