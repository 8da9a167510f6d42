//! The one path for refunds.
//!
//! The merchant API, a missed deadline, a failed delivery and a late payment all call
//! [`request::request_in`]. Under the order's lock it checks that refunds never exceed
//! what was paid, stores the refund with a request number the provider will see on every
//! retry (so a retry is never a second refund), takes back what the refund covers,
//! appends the events and enqueues the refund job, all in the caller's transaction. The
//! job asks the provider and queries until the refund is final; [`settle::settle_in`]
//! records the outcome, whoever learns it (the job, or the provider's refund
//! notification).

pub mod charge;
pub mod request;
pub mod settle;

use zerodrop_domain::money::Money;
use zerodrop_store::StoreError;

/// Why zerodrop is refunding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The platform asked, through the merchant API.
    Merchant,
    /// Delivery missed its deadline under a refund policy.
    Deadline,
    /// The platform's endpoint refused the delivery for good.
    DeliveryFailed,
    /// The payment landed after the order expired, under a refund policy.
    LatePayment,
    /// A person resolving an attention item.
    Operator,
    /// Charged under an agreement after its termination was committed.
    AgreementTerminated,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Merchant => "merchant",
            Origin::Deadline => "deadline",
            Origin::DeliveryFailed => "delivery_failed",
            Origin::LatePayment => "late_payment",
            Origin::Operator => "operator",
            Origin::AgreementTerminated => "agreement_terminated",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error("no order with this number")]
    OrderNotFound,
    #[error("the order has no captured payment to refund")]
    NotPaid,
    #[error("everything paid for this order is already refunded or being refunded")]
    NothingLeft,
    #[error("the refund ({asked}) is larger than what is left to refund ({left})")]
    Exceeds { asked: Money, left: Money },
    #[error("a partial refund needs a delivered order; refund the whole order instead")]
    PartialNotAllowed,
    #[error("a full refund of this order is already under way")]
    InProgress,
    #[error("amount must be a positive decimal in {0}")]
    BadAmount(zerodrop_domain::Currency),
    #[error(transparent)]
    Store(#[from] StoreError),
}
