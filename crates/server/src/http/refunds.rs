//! `POST /v1/orders/{order_no}/refunds`: the merchant asks for a full or partial refund.

use super::error::{ApiError, ErrorCode};
use super::extract::{Creates, Idempotent, Merchant};
use super::idempotency;
use super::json;
use crate::app::App;
use crate::flows::refund::request::merchant_in;
use crate::flows::refund::RefundError;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use zerodrop_store::now_ms;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Decimal in the order's currency; everything left when absent.
    amount: Option<String>,
    reason: String,
}

impl Creates for RefundRequest {
    const WHAT: &'static str = "refund request";
    const SCOPE: &'static str = "refund";
    const KEY_REQUIRED: bool = false;
}

/// Longest refund reason kept, in characters.
const REASON_CHARS_MAX: usize = 200;

pub async fn create(
    State(app): State<App>,
    _: Merchant,
    Path(order_no): Path<String>,
    Idempotent { request, key }: Idempotent<RefundRequest>,
) -> Result<Response, ApiError> {
    if request.reason.trim().is_empty() || request.reason.chars().count() > REASON_CHARS_MAX {
        let message = format!("reason must be 1 to {REASON_CHARS_MAX} characters");
        return Err(ApiError::invalid(ErrorCode::InvalidRequest, message));
    }
    let mut tx = app.store.begin().await?;
    let merchant = merchant_in(&mut tx, &order_no, request.amount.as_deref(), request.reason.trim(), now_ms()).await;
    let (refund, order) = merchant.map_err(refusal)?;
    let body = json!({ "refund": json::refund(&refund), "order": json::order(&order) });
    let response = idempotency::commit(&app.store, key.as_ref(), tx, StatusCode::CREATED, body).await?;
    app.wake();
    Ok(response)
}

pub(super) fn refusal(e: RefundError) -> ApiError {
    let message = e.to_string();
    match e {
        RefundError::OrderNotFound => ApiError::not_found(ErrorCode::OrderNotFound, message),
        RefundError::NotPaid => ApiError::conflict(ErrorCode::OrderNotPaid, message),
        RefundError::NothingLeft => ApiError::conflict(ErrorCode::NothingLeftToRefund, message),
        RefundError::InProgress => ApiError::conflict(ErrorCode::RefundInProgress, message),
        RefundError::PartialNotAllowed => ApiError::conflict(ErrorCode::PartialRefundNotAllowed, message),
        RefundError::Exceeds { .. } => ApiError::invalid(ErrorCode::RefundExceedsPaid, message),
        RefundError::BadAmount(_) => ApiError::invalid(ErrorCode::InvalidAmount, message),
        RefundError::Store(e) => ApiError::internal(&e),
    }
}
