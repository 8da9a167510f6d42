//! Payment providers behind one trait.
//!
//! zerodrop asks three things of a provider: is this notification genuine and what does
//! it say; what is the state of this order's payment; close this unpaid order. Each
//! adapter speaks its provider's wire format. The sandbox provider is not an adapter: it
//! is a separate HTTP service speaking Alipay's format, reached through the Alipay adapter.
//!
//! Memberships that renew themselves go through withholding agreements: a user signs
//! once, and the merchant charges under the agreement on a schedule until either side
//! ends it. See [`agreement`] for the flow and the types.

pub mod agreement;
pub mod alipay;
pub mod bill_download;
pub mod http_client;
pub mod keys;

pub use agreement::{
    AgreementNotice, AgreementNoticeKind, AgreementRef, AgreementSignRef, AgreementStatus, UnsignOutcome,
};
use std::future::Future;
use std::pin::Pin;
use zerodrop_domain::money::Money;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a provider needs to know about an order.
#[derive(Clone, Debug)]
pub struct OrderRef {
    /// Our order number, sent to the provider as its merchant order id (`out_trade_no`).
    pub order_no: String,
    pub amount: Money,
    pub subject: String,
    pub expires_at_ms: i64,
    /// The provider's trade to ask about, when zerodrop knows it (a bill line naming a
    /// second trade for the order): the query names it, so the answer is about that
    /// trade rather than the order's first.
    pub trade_no: Option<String>,
}

/// A verified notification, reduced to what zerodrop acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The provider's id for this notification (deduplication and evidence).
    pub notify_id: Option<String>,
    pub order_no: String,
    pub trade_no: Option<String>,
    pub status: NoticeStatus,
    /// Present when the notification reports a refund on the trade.
    pub refund: Option<RefundNotice>,
}

/// A refund the provider reports having made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundNotice {
    /// Our refund request number, when the provider echoes it (Alipay: `out_biz_no`).
    pub request_no: Option<String>,
    /// Everything refunded on the trade so far.
    pub refunded_total: Money,
    pub at_ms: Option<i64>,
}

/// What a provider needs to know about a refund. The request number is stable: sending
/// the same one again is the same refund, never a second.
#[derive(Clone, Debug)]
pub struct RefundRef {
    pub order: OrderRef,
    /// The provider's trade being refunded. Named whenever zerodrop knows it: it picks the
    /// trade when an order number has several (a user who paid twice), and an answer
    /// about another trade is refused.
    pub trade_no: Option<String>,
    pub request_no: String,
    pub amount: Money,
    pub reason: String,
}

/// Where a refund stands at the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundStatus {
    /// The money went back.
    Succeeded,
    /// Accepted, not finished: ask again later.
    Processing,
    /// The provider will not refund this (a definitive business refusal).
    Failed { reason: String },
    /// The provider has no refund with this request number (not received yet).
    NotFound,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoticeStatus {
    /// The provider says the order is paid.
    Paid { amount: Money, paid_at_ms: Option<i64> },
    /// Created but not paid yet; nothing to do.
    AwaitingPayment,
    /// Closed (unpaid, or fully refunded).
    Closed,
}

/// Why a notification was refused. The code is stable and stored with the notification.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct Rejection {
    pub code: RejectCode,
    pub detail: String,
    /// The order the notification claims to be about, when it could be read, so the
    /// order can be flagged for a person.
    pub order_no: Option<String>,
    /// True when the signature verified: a genuine message from the provider that does
    /// not add up (another merchant's ids, an unsupported type), kept whole as evidence.
    /// False for anything anyone could have sent (forged, unsigned, unreadable), which is
    /// kept only in part and pruned after its retention.
    pub signed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectCode {
    Malformed,
    MissingSignature,
    BadSignature,
    WrongApp,
    WrongSeller,
    UnsupportedType,
    BadAmount,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::Malformed => "malformed",
            RejectCode::MissingSignature => "missing_signature",
            RejectCode::BadSignature => "bad_signature",
            RejectCode::WrongApp => "wrong_app_id",
            RejectCode::WrongSeller => "wrong_seller_id",
            RejectCode::UnsupportedType => "unsupported_type",
            RejectCode::BadAmount => "bad_amount",
        }
    }

    /// Rejections of a genuinely signed message that does not add up (another merchant's
    /// app or seller id, an unreadable amount) flag the order it names: a person should
    /// look. Forged or unsigned messages do not: anyone can send those, and letting them
    /// flag real orders would let anyone bury the console in noise.
    pub fn flags_order(self) -> bool {
        match self {
            RejectCode::WrongApp | RejectCode::WrongSeller | RejectCode::BadAmount => true,
            RejectCode::BadSignature
            | RejectCode::Malformed
            | RejectCode::MissingSignature
            | RejectCode::UnsupportedType => false,
        }
    }
}

impl std::fmt::Display for RejectCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The provider's answer to "is this order paid?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    /// No trade exists yet: the user never opened the cashier.
    NotFound,
    AwaitingPayment,
    Paid {
        trade_no: String,
        amount: Money,
        paid_at_ms: Option<i64>,
        /// The provider's signed answer as it came, kept as the payment's evidence.
        answer: Option<SignedAnswer>,
    },
    Closed,
}

/// A provider's signed answer exactly as it came: what its signature covers and the
/// signature. Stored with the payment it reveals, so the audit can verify it again with
/// the provider's public key ([`Provider::verify_answer`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedAnswer {
    /// The gateway method it answers (`alipay.trade.query`).
    pub method: String,
    /// The exact text the signature covers.
    pub content: String,
    pub sign: String,
}

/// The provider's answer to "close this unpaid order". Whatever it says, the caller
/// queries once more: a close that fails because the trade is paid is a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseOutcome {
    Closed,
    /// There was no trade to close; with the expiry sent at creation, none can start now.
    NotFound,
    /// The provider refused because the trade is not awaiting payment: it is paid, or
    /// was closed before.
    NotOpen,
}

/// How a notification was handled, for the provider-protocol reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckKind {
    /// Stored and acted on (or a duplicate of something already acted on): stop sending.
    Accepted,
    /// Refused (forged, malformed, not ours): the provider may send it again, and we will
    /// refuse it again.
    Rejected,
    /// Not processed because of a fault on our side, or parked: please send it again.
    RetryLater,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("provider unreachable: {0}")]
    Transport(String),
    #[error("provider answered that the outcome is unknown ({0}); ask again")]
    Unknown(String),
    #[error("provider answer could not be trusted: {0}")]
    BadResponse(String),
    #[error("provider refused: {code} {sub_code}: {message}")]
    Refused { code: String, sub_code: String, message: String },
    #[error("provider configuration: {0}")]
    Config(String),
}

/// How to answer the provider after handling a notification, in its own protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

pub trait Provider: Send + Sync {
    /// The name orders and routes use (`/v1/providers/{name}/notify`).
    fn name(&self) -> &str;

    /// Verifies a notification's signature and merchant identity, and reads it. Pure:
    /// no IO, so it can run before anything is stored and again when replaying evidence.
    fn verify_notification(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<Notice, Rejection>;

    /// What the client needs to pay this order at the provider.
    fn payment_instructions(&self, order: &OrderRef) -> Result<serde_json::Value, ProviderError>;

    fn query_payment<'a>(&'a self, order: &'a OrderRef) -> BoxFuture<'a, Result<PaymentStatus, ProviderError>>;

    /// Verifies a stored answer to [`Provider::query_payment`] again (its signature, with
    /// the provider's public key) and reads it: the order number it is about, and what it
    /// says. Pure, like [`Provider::verify_notification`], so the audit can replay evidence.
    fn verify_answer(&self, answer: &SignedAnswer) -> Result<(String, PaymentStatus), ProviderError>;

    fn close_payment<'a>(&'a self, order: &'a OrderRef) -> BoxFuture<'a, Result<CloseOutcome, ProviderError>>;

    /// Asks for a refund. Idempotent in the request number.
    fn refund<'a>(&'a self, refund: &'a RefundRef) -> BoxFuture<'a, Result<RefundStatus, ProviderError>>;

    fn query_refund<'a>(&'a self, refund: &'a RefundRef) -> BoxFuture<'a, Result<RefundStatus, ProviderError>>;

    /// Where to download the provider's trade bill for `bill_date` (`YYYY-MM-DD`, the
    /// provider's own day: China Standard Time for Alipay). The URL is valid briefly
    /// (Alipay: 30 seconds); fetch it with [`bill_download::download_bill`].
    fn bill_download_url<'a>(&'a self, bill_date: &'a str) -> BoxFuture<'a, Result<String, ProviderError>>;

    /// The reply in the provider's own protocol.
    fn ack(&self, kind: AckKind) -> Ack;

    /// What the client needs to sign a withholding agreement at the provider.
    fn agreement_sign_instructions(&self, agreement: &AgreementSignRef) -> Result<serde_json::Value, ProviderError>;

    /// Verifies an agreement notification (signed, unsigned) and reads it. Pure, like
    /// [`Provider::verify_notification`]; a trade notification is refused
    /// `unsupported_type` here, as an agreement notification is there.
    fn verify_agreement_notification(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<AgreementNotice, Rejection>;

    fn query_agreement<'a>(
        &'a self,
        agreement: &'a AgreementRef,
    ) -> BoxFuture<'a, Result<AgreementStatus, ProviderError>>;

    /// Ends the agreement at the provider. Idempotent.
    fn unsign_agreement<'a>(
        &'a self,
        agreement: &'a AgreementRef,
    ) -> BoxFuture<'a, Result<UnsignOutcome, ProviderError>>;

    /// Charges `order` under the agreement `agreement_no` (the provider's number). Paid at
    /// once: `Paid`; still processing: `AwaitingPayment` (query the order later); declined
    /// for good: `ProviderError::Refused`; unknown: `ProviderError::Unknown` (ask again,
    /// never treat it as failed). Charging an order number again is the same charge.
    fn charge_agreement<'a>(
        &'a self,
        order: &'a OrderRef,
        agreement_no: &'a str,
    ) -> BoxFuture<'a, Result<PaymentStatus, ProviderError>>;
}

/// Verifies a notification that was stored earlier (its headers as the JSON object they
/// were stored as, its body as received) with the provider's own check. Stored evidence
/// is verified again before anything acts on it later, exactly as when it arrived.
pub fn verify_stored(provider: &dyn Provider, headers_json: &str, body: &[u8]) -> Result<Notice, Rejection> {
    provider.verify_notification(&stored_headers(headers_json), body)
}

/// [`verify_stored`] for a stored agreement notification.
pub fn verify_stored_agreement(
    provider: &dyn Provider,
    headers_json: &str,
    body: &[u8],
) -> Result<AgreementNotice, Rejection> {
    provider.verify_agreement_notification(&stored_headers(headers_json), body)
}

/// Headers stored as a JSON object of strings; anything else is left out.
fn stored_headers(headers_json: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(headers_json) {
        for (name, value) in map {
            let (Ok(name), Some(Ok(value))) =
                (http::HeaderName::from_bytes(name.as_bytes()), value.as_str().map(http::HeaderValue::from_str))
            else {
                continue;
            };
            headers.insert(name, value);
        }
    }
    headers
}
