//! The platform's side of external delivery: its endpoint confirms a delivery it accepted
//! (`202`) with `POST /v1/orders/{order_no}/delivery`, signed like zerodrop's requests; and
//! the merchant can replay a delivery with `POST /v1/orders/{order_no}/delivery/replay`.

use super::error::{ApiError, ErrorCode};
use super::extract::{LimitedBody, Merchant};
use super::json;
use crate::app::App;
use crate::flows::delivery::confirm::{self, ConfirmError, Signed};
use crate::flows::delivery::replay::{self, ReplayError};
use crate::flows::endpoint::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

pub async fn confirm(
    State(app): State<App>,
    headers: HeaderMap,
    Path(order_no): Path<String>,
    LimitedBody(body): LimitedBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = Signed { timestamp: header(TIMESTAMP_HEADER), signature: header(SIGNATURE_HEADER), body: &body };
    match confirm::confirm(&app.store, &app.endpoints, &order_no, signed).await {
        Ok(order) => Ok((StatusCode::OK, Json(json!({ "order": json::order(&order) })))),
        Err(e) => Err(confirm_refusal(e)),
    }
}

fn confirm_refusal(e: ConfirmError) -> ApiError {
    let message = e.to_string();
    match e {
        ConfirmError::NotFound => ApiError::not_found(ErrorCode::OrderNotFound, message),
        ConfirmError::NotExternal => ApiError::conflict(ErrorCode::NotExternal, message),
        ConfirmError::Signature(_) => ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::BadSignature, message),
        ConfirmError::Malformed(_) | ConfirmError::UnknownStatus => {
            ApiError::invalid(ErrorCode::InvalidRequest, message)
        }
        ConfirmError::Refunded => ApiError::conflict(ErrorCode::OrderRefunded, message),
        ConfirmError::OtherOrder => ApiError::invalid(ErrorCode::ConfirmationForAnotherOrder, message),
        ConfirmError::UnknownAttempt => ApiError::invalid(ErrorCode::UnknownAttempt, message),
        ConfirmError::Replayed => ApiError::conflict(ErrorCode::ConfirmationReplayed, message),
        ConfirmError::AttemptInFlight => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, message)
        }
        ConfirmError::NotAwaiting(_) => ApiError::conflict(ErrorCode::OrderNotAwaitingDelivery, message),
        ConfirmError::EndpointMissing(_) | ConfirmError::Store(_) => ApiError::internal(&e),
    }
}

pub async fn replay(
    State(app): State<App>,
    _: Merchant,
    Path(order_no): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    match replay::replay(&app.store, &order_no).await {
        Ok(replay_id) => {
            app.wake();
            Ok((StatusCode::ACCEPTED, Json(json!({ "replay_id": replay_id, "order_no": order_no }))))
        }
        Err(e) => {
            let message = e.to_string();
            Err(match e {
                ReplayError::NotFound => ApiError::not_found(ErrorCode::OrderNotFound, message),
                ReplayError::NotExternal => ApiError::conflict(ErrorCode::NotExternal, message),
                ReplayError::NotDeliverable(_) => ApiError::conflict(ErrorCode::OrderNotDeliverable, message),
                ReplayError::Store(e) => ApiError::internal(&e),
            })
        }
    }
}
