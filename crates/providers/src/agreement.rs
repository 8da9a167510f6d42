//! Withholding agreements (周期扣款): what zerodrop asks of a provider to let a user sign
//! an agreement that lets the merchant charge them on a schedule, to learn where the
//! agreement stands, to end it, and to charge under it.
//!
//! The flow, as Alipay runs it:
//! - **Sign.** [`crate::Provider::agreement_sign_instructions`] hands the client a signed
//!   `alipay.user.agreement.page.sign` request naming our `external_agreement_no`, the
//!   period rule (every N days from a first date, at most `single_amount` a charge) and
//!   where to notify. The user confirms in the provider's app; the provider sends a signed
//!   `dut_user_sign` notification (`status=NORMAL`) with its own `agreement_no`, read by
//!   [`crate::Provider::verify_agreement_notification`] into an [`AgreementNotice`].
//! - **Query.** [`crate::Provider::query_agreement`] says TEMP (signing not finished),
//!   NORMAL or STOP ([`AgreementStatus`]). An agreement past its `invalid_time` sends no
//!   notification and may still read NORMAL: the caller expires it
//!   ([`AgreementStatus::chargeable_at`]).
//! - **Unsign.** [`crate::Provider::unsign_agreement`] ends it at the provider. The user
//!   can also end it inside the provider's app at any moment; both send a signed
//!   `dut_user_unsign` notification (`status=UNSIGN`) to the sign's notify URL.
//! - **Charge.** [`crate::Provider::charge_agreement`] is `alipay.trade.pay` with the
//!   agreement number: paid at once ([`crate::PaymentStatus::Paid`]), processing
//!   ([`crate::PaymentStatus::AwaitingPayment`]: query the trade later), declined for good
//!   ([`crate::ProviderError::Refused`]: balance, agreement gone or stopped, over the
//!   limit), or unknown ([`crate::ProviderError::Unknown`]: never a failure, ask again).
//!   A paid charge is an ordinary trade: it also sends a `trade_status_sync` notification
//!   to the order's notify URL and appears in the day's bill.

use zerodrop_domain::money::Money;

/// What a provider needs to ask a user to sign an agreement.
#[derive(Clone, Debug)]
pub struct AgreementSignRef {
    /// Our agreement number, unique per agreement (Alipay: `external_agreement_no`).
    pub external_agreement_no: String,
    /// The most one charge may take (the plan's price). The provider refuses more.
    pub single_amount: Money,
    /// The most all charges together may take, when the plan caps it.
    pub total_amount: Option<Money>,
    /// Days between charges. Alipay accepts day periods of
    /// [`AGREEMENT_PERIOD_DAYS_MIN`] days or more.
    pub period_days: u32,
    /// When the first charge is planned (Unix ms; the provider keeps only its CST date).
    pub first_charge_at_ms: i64,
    /// Where the provider sends this agreement's sign and unsign notifications. None: the
    /// provider's configured notify URL, shared with trade notifications (tell them apart
    /// with [`crate::Provider::verify_agreement_notification`], which refuses trade
    /// notifications as `unsupported_type`, as the trade verifier refuses agreement ones).
    pub notify_url: Option<String>,
}

/// Alipay's shortest day period for a cycle agreement (`period_type=DAY`).
pub const AGREEMENT_PERIOD_DAYS_MIN: u32 = 7;

/// Names an agreement at the provider: ours always, theirs once the sign notification
/// (or a query) told us. The provider's number wins when both are given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgreementRef {
    pub external_agreement_no: String,
    pub agreement_no: Option<String>,
}

/// Where an agreement stands at the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgreementStatus {
    /// The provider has no agreement by these numbers (never signed, or another merchant's).
    NotFound,
    /// The user opened the sign page but has not confirmed (Alipay: TEMP).
    Temp,
    /// Signed and in force until `valid_until_ms` (Alipay: NORMAL, `invalid_time`).
    Normal { agreement_no: String, signed_at_ms: i64, valid_until_ms: i64 },
    /// Ended (Alipay: STOP). The query does not say when; `at_ms` is the time when the
    /// provider gives one.
    Stopped { at_ms: Option<i64> },
}

impl AgreementStatus {
    /// True when a charge under this agreement may be attempted at `now_ms`: signed, and
    /// not past its validity (an expired agreement sends no notification).
    pub fn chargeable_at(&self, now_ms: i64) -> bool {
        match self {
            AgreementStatus::Normal { valid_until_ms, .. } => now_ms < *valid_until_ms,
            AgreementStatus::NotFound | AgreementStatus::Temp | AgreementStatus::Stopped { .. } => false,
        }
    }
}

/// A verified agreement notification, reduced to what zerodrop acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgreementNotice {
    /// The provider's id for this notification (deduplication and evidence).
    pub notify_id: Option<String>,
    pub external_agreement_no: String,
    /// The provider's agreement number.
    pub agreement_no: String,
    pub kind: AgreementNoticeKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgreementNoticeKind {
    /// The user signed (Alipay: `dut_user_sign`, `status=NORMAL`).
    Signed { signed_at_ms: i64, valid_until_ms: i64 },
    /// The agreement ended: the user in the provider's app, or our unsign
    /// (Alipay: `dut_user_unsign`, `status=UNSIGN`).
    Unsigned { unsigned_at_ms: i64 },
}

/// The provider's answer to "end this agreement". Either way nothing can be charged
/// under it any more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnsignOutcome {
    /// Ended now, or ended before (unsigning is idempotent at the provider).
    Unsigned,
    /// The provider has no agreement by these numbers (signing never finished).
    NotFound,
}
