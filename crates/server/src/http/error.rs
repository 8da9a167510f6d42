//! The HTTP API's one error type. Every error a client can see has a stable snake_case
//! [`ErrorCode`] (each listed in docs/API.md, which a test checks both ways), the right
//! status, a message that never carries internals, and the request's id. Internal
//! causes are logged once, here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

tokio::task_local! {
    /// The `x-request-id` of the request being handled (set by the router's middleware).
    pub static REQUEST_ID: String;
}

/// Declares [`ErrorCode`] with its wire names and the list of all codes, from one table.
macro_rules! error_codes {
    ($($variant:ident => $code:literal,)*) => {
        /// Every error code a client can see. The wire name is stable: clients match on it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }
        }
    };
}

error_codes! {
    Unauthorized => "unauthorized",
    BadSignature => "bad_signature",
    OrderNotFound => "order_not_found",
    NotFound => "not_found",
    MethodNotAllowed => "method_not_allowed",
    IdempotencyKeyReused => "idempotency_key_reused",
    OrderNotPaid => "order_not_paid",
    NothingLeftToRefund => "nothing_left_to_refund",
    RefundInProgress => "refund_in_progress",
    PartialRefundNotAllowed => "partial_refund_not_allowed",
    InsufficientBalance => "insufficient_balance",
    NotExternal => "not_external",
    OrderRefunded => "order_refunded",
    OrderNotAwaitingDelivery => "order_not_awaiting_delivery",
    OrderNotDeliverable => "order_not_deliverable",
    StatusLinksUnavailable => "status_links_unavailable",
    BodyTooLarge => "body_too_large",
    InvalidRequest => "invalid_request",
    InvalidUserId => "invalid_user_id",
    UnknownSku => "unknown_sku",
    InvalidQuantity => "invalid_quantity",
    UnknownProvider => "unknown_provider",
    ProductUnavailable => "product_unavailable",
    RefundExceedsPaid => "refund_exceeds_paid",
    InvalidAmount => "invalid_amount",
    IdempotencyKeyRequired => "idempotency_key_required",
    InvalidCurrency => "invalid_currency",
    InvalidRecipient => "invalid_recipient",
    InvalidIdempotencyKey => "invalid_idempotency_key",
    Unavailable => "unavailable",
    AttentionNotFound => "attention_not_found",
    AttentionResolved => "attention_resolved",
    MoneyAtStake => "money_at_stake",
    ActionNotApplicable => "action_not_applicable",
    ConfirmationForAnotherOrder => "confirmation_for_another_order",
    BadRequest => "bad_request",
    UnknownAttempt => "unknown_attempt",
    ConfirmationReplayed => "confirmation_replayed",
    ReconciliationNotFound => "reconciliation_not_found",
    UnknownPlan => "unknown_plan",
    AgreementNotFound => "agreement_not_found",
    TotpAlreadyEnrolled => "totp_already_enrolled",
    TotpNotEnrolled => "totp_not_enrolled",
    VerificationFailed => "verification_failed",
    VerificationRequired => "verification_required",
    SecurityHold => "security_hold",
    QuoteExpired => "quote_expired",
    QuoteNotFound => "quote_not_found",
    AlreadyTerminated => "already_terminated",
    ChargeInProgress => "charge_in_progress",
    FeeUnpaid => "fee_unpaid",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub details: serde_json::Value,
    /// For a refusal that speaks to the user: `message` becomes `{zh_cn, en}` and the
    /// error carries a stable `next_step`.
    pub texts: Option<Box<(zerodrop_domain::Texts, &'static str)>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: serde_json::Value::Null, texts: None }
    }

    /// The message in both languages (replacing the English one) and the next step.
    pub fn with_texts(mut self, texts: zerodrop_domain::Texts, next_step: &'static str) -> ApiError {
        self.texts = Some(Box::new((texts, next_step)));
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> ApiError {
        self.details = details;
        self
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "a valid merchant API key is required (Authorization: Bearer <key>)",
        )
    }

    /// 422: the request is well-formed HTTP but its content is not acceptable.
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 409: the request conflicts with the state of what it names.
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn order_not_found() -> ApiError {
        ApiError::not_found(ErrorCode::OrderNotFound, "no order with this number")
    }

    /// The current request's id (empty outside a request).
    pub fn request_id() -> String {
        REQUEST_ID.try_with(String::clone).unwrap_or_default()
    }

    /// A fault inside zerodrop. The cause (with its sources) is logged; the client sees
    /// only that it may retry.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> ApiError {
        tracing::error!(error = %Chain(cause), "request failed inside zerodrop");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "zerodrop could not complete the request; retry it (with the same Idempotency-Key)",
        )
    }
}

/// An error with its sources, for the log: "a: b: c".
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl From<zerodrop_store::StoreError> for ApiError {
    fn from(e: zerodrop_store::StoreError) -> ApiError {
        ApiError::internal(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(boxed) = self.texts {
            let (texts, next_step) = *boxed;
            error["message"] = serde_json::json!(texts);
            error["next_step"] = serde_json::Value::String(next_step.to_owned());
        }
        if !self.details.is_null() {
            error["details"] = self.details;
        }
        if let Ok(id) = REQUEST_ID.try_with(String::clone) {
            error["request_id"] = serde_json::Value::String(id);
        }
        (self.status, Json(serde_json::json!({ "error": error }))).into_response()
    }
}
