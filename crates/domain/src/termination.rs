//! Termination, quote then confirm: one step that says exactly what will happen.
//!
//! A request at any time gets a quote (or a refusal that says when it will): there is no
//! window to miss. The quote states the effective time, the fee, how long paid benefits
//! last and which verification is needed; confirming re-derives it from the facts, so a
//! quote made stale by a renewal or a fee payment is refused rather than honoured wrongly.

use crate::agreement::{AgreementEvent, AgreementState, TerminationMode};
use crate::hold::Hold;
use crate::money::Money;
use crate::refusal::{Refusal, VerificationMethod};
use crate::terms::{EffectiveAt, FeeRule, TermsVersion};
use crate::texts::{format_utc, Texts, MINUTE_MS};
use serde::{Deserialize, Serialize};

/// How long a quote may be confirmed: long enough to read it and type a code, short
/// enough that the facts it states (paid period, fee) cannot drift far.
pub const QUOTE_VALID_MS: i64 = 10 * MINUTE_MS;

/// What a charge in flight is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargePurpose {
    /// A renewal: if it lands after termination commits, it is refunded automatically.
    Renewal,
    /// The early-termination fee.
    Fee,
}

/// A charge created but not yet settled by the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeInFlight {
    pub purpose: ChargePurpose,
    pub amount: Money,
    /// When the provider will have said yes or no (the order's expiry).
    pub settle_by_ms: i64,
}

/// What zerodrop knows about an agreement when a quote is asked for or confirmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminationFacts {
    pub state: AgreementState,
    pub signed_at_ms: i64,
    /// End of the period paid for; `None` before the first payment.
    pub paid_until_ms: Option<i64>,
    /// Periods paid since signing (the first one included).
    pub periods_paid: i64,
    pub hold: Option<Hold>,
    pub charge_in_flight: Option<ChargeInFlight>,
    pub fee_paid: bool,
    pub totp_enrolled: bool,
    /// For an agreement already terminating or terminated: when that takes effect.
    pub terminated_effective_at_ms: Option<i64>,
}

/// A renewal in flight that will be refunded automatically if it lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlightRefund {
    pub amount: Money,
    pub settle_by_ms: i64,
}

/// Exactly what a termination confirmed now would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    pub plan: String,
    pub terms_version: u32,
    pub quoted_at_ms: i64,
    pub expires_at_ms: i64,
    pub effective_at_ms: i64,
    pub benefits_until_ms: i64,
    pub fee: Money,
    pub fee_rule: FeeRule,
    pub remaining_minimum_periods: i64,
    pub fee_paid: bool,
    pub verification: VerificationMethod,
    pub in_flight_refund: Option<InFlightRefund>,
}

/// How the request's verification went (the caller checks the code and counts attempts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Verification {
    NotProvided,
    Failed { attempts_left: u32 },
    Passed,
}

/// A confirmed termination: the events to record, in order, and what they mean.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Termination {
    pub events: Vec<AgreementEvent>,
    pub effective_at_ms: i64,
    pub benefits_until_ms: i64,
    pub fee: Money,
    /// A renewal in flight now must be refunded automatically when it lands.
    pub refund_in_flight_renewal: bool,
}

/// Minimum-term periods not yet paid for.
pub fn remaining_minimum_periods(terms: &TermsVersion, periods_paid: i64) -> i64 {
    (terms.minimum_term_periods - periods_paid.max(0)).max(0)
}

/// The early-termination fee: never negative, never above the price of the minimum-term
/// periods not yet paid (so a fixed fee shrinks as the term runs out), zero without one.
pub fn fee(terms: &TermsVersion, periods_paid: i64) -> Money {
    let remaining = terms.price_of_periods(remaining_minimum_periods(terms, periods_paid));
    let minor = match &terms.early_termination_fee {
        FeeRule::None => 0,
        FeeRule::Fixed { amount } => amount.minor.min(remaining.minor),
        // Bounded: remaining ≤ 36 × AMOUNT_MINOR_MAX and percent ≤ 100, far inside i64.
        FeeRule::RemainingShare { percent } => remaining.minor.saturating_mul(*percent) / 100,
    };
    Money::new(minor.max(0), terms.price.currency)
}

fn live_hold(facts: &TerminationFacts, now_ms: i64) -> Option<&Hold> {
    facts.hold.as_ref().filter(|hold| hold.is_held(now_ms))
}

fn refuse_if_closed(facts: &TerminationFacts, now_ms: i64) -> Result<(), Refusal> {
    match facts.state {
        AgreementState::Terminating { mode } | AgreementState::Terminated { mode } => {
            let confirmed = matches!(facts.state, AgreementState::Terminated { .. });
            return Err(Refusal::AlreadyTerminated {
                mode,
                effective_at_ms: facts.terminated_effective_at_ms,
                confirmed,
            });
        }
        AgreementState::Signing | AgreementState::Active | AgreementState::Paused => {}
    }
    if let Some(hold) = live_hold(facts, now_ms) {
        return Err(Refusal::SecurityHold { reason: hold.reason.clone(), unlock_at_ms: hold.until_ms });
    }
    Ok(())
}

/// The quote for terminating now, or why not (already terminated, or on hold until a
/// stated time). Nothing else refuses: any other moment gets a quote.
pub fn quote(terms: &TermsVersion, facts: &TerminationFacts, now_ms: i64) -> Result<Quote, Refusal> {
    refuse_if_closed(facts, now_ms)?;
    Ok(compute_quote(terms, facts, now_ms))
}

/// The quote the facts give at `now_ms`, whatever the state (the callers check it).
fn compute_quote(terms: &TermsVersion, facts: &TerminationFacts, now_ms: i64) -> Quote {
    // Benefits already paid for are kept; during a grace they end when the agreement does.
    let paid_until = facts.paid_until_ms.unwrap_or(now_ms).max(now_ms);
    let effective_at_ms = match (facts.state, terms.termination_effective) {
        // Nothing was signed or paid: there is no period to wait for.
        (AgreementState::Signing, _) | (_, EffectiveAt::AtOnce) => now_ms,
        (_, EffectiveAt::EndOfPaidPeriod) => paid_until,
    };
    let in_flight_refund = facts.charge_in_flight.and_then(|charge| match charge.purpose {
        ChargePurpose::Renewal => Some(InFlightRefund { amount: charge.amount, settle_by_ms: charge.settle_by_ms }),
        ChargePurpose::Fee => None,
    });
    Quote {
        plan: terms.plan.clone(),
        terms_version: terms.version,
        quoted_at_ms: now_ms,
        expires_at_ms: now_ms + QUOTE_VALID_MS,
        effective_at_ms,
        benefits_until_ms: paid_until,
        fee: fee(terms, facts.periods_paid),
        fee_rule: terms.early_termination_fee.clone(),
        remaining_minimum_periods: remaining_minimum_periods(terms, facts.periods_paid),
        fee_paid: facts.fee_paid,
        verification: if facts.totp_enrolled { VerificationMethod::Totp } else { VerificationMethod::OneTimeCode },
        in_flight_refund,
    }
}

/// Confirms a quote: the termination to commit, or the refusal. Checks, in order: already
/// terminated, security hold, quote expired or stale, verification, fee.
pub fn confirm(
    terms: &TermsVersion,
    given: &Quote,
    facts: &TerminationFacts,
    verification: Verification,
    now_ms: i64,
) -> Result<Termination, Refusal> {
    refuse_if_closed(facts, now_ms)?;
    let expired = Refusal::QuoteExpired { expired_at_ms: given.expires_at_ms.min(now_ms) };
    if now_ms >= given.expires_at_ms || given.plan != terms.plan || given.terms_version != terms.version {
        return Err(expired);
    }
    // The quote must still be what the facts say now (a renewal may have landed since).
    // (Holds are judged now, above: one placed and lifted since the quote does not matter.)
    let fresh = compute_quote(terms, facts, given.quoted_at_ms);
    let same = fresh.effective_at_ms == given.effective_at_ms
        && fresh.benefits_until_ms == given.benefits_until_ms
        && fresh.fee == given.fee
        && fresh.verification == given.verification;
    if !same {
        return Err(expired);
    }
    match verification {
        Verification::NotProvided => return Err(Refusal::VerificationRequired { method: given.verification }),
        Verification::Failed { attempts_left } => {
            return Err(Refusal::VerificationFailed { method: given.verification, attempts_left })
        }
        Verification::Passed => {}
    }
    if given.fee.minor > 0 && !facts.fee_paid {
        return Err(match facts.charge_in_flight {
            Some(ChargeInFlight { purpose: ChargePurpose::Fee, settle_by_ms, .. }) => {
                Refusal::ChargeInProgress { settled_by_ms: settle_by_ms }
            }
            Some(ChargeInFlight { purpose: ChargePurpose::Renewal, .. }) | None => {
                Refusal::FeeUnpaid { fee: given.fee }
            }
        });
    }
    let mut events = Vec::new();
    // A hold whose unlock time passed is released first, so the state machine agrees.
    if facts.state == AgreementState::Paused {
        events.push(AgreementEvent::HoldReleased);
    }
    events.push(AgreementEvent::TerminationCommitted { mode: TerminationMode::User });
    // The quoted times, but never before the commit: "at once" confirmed a few minutes
    // after the quote means now, so no time passes between the effective time and the
    // moment charges stop.
    Ok(Termination {
        events,
        effective_at_ms: given.effective_at_ms.max(now_ms),
        benefits_until_ms: given.benefits_until_ms.max(now_ms),
        fee: given.fee,
        refund_in_flight_renewal: matches!(
            facts.charge_in_flight,
            Some(ChargeInFlight { purpose: ChargePurpose::Renewal, .. })
        ),
    })
}

impl Quote {
    /// The quote in words: effective time, fee, benefits, verification, in-flight refund.
    pub fn describe(&self) -> Texts {
        let effective = format_utc(self.effective_at_ms);
        let benefits = format_utc(self.benefits_until_ms);
        let expires = format_utc(self.expires_at_ms);
        let (fee_zh, fee_en) = if self.fee.minor == 0 {
            ("无需支付任何解约费用".to_owned(), "there is no fee".to_owned())
        } else {
            (
                format!("需支付提前解约费 {}（最低期限还剩 {} 期未付）", self.fee, self.remaining_minimum_periods),
                format!(
                    "an early-termination fee of {} applies ({} minimum-term periods remain unpaid)",
                    self.fee, self.remaining_minimum_periods
                ),
            )
        };
        let (method_zh, method_en) = match self.verification {
            VerificationMethod::Totp => ("身份验证器动态码", "a code from your authenticator app"),
            VerificationMethod::OneTimeCode => ("我们发送的一次性验证码", "the one-time code we send you"),
        };
        let (refund_zh, refund_en) = match self.in_flight_refund {
            Some(refund) => (
                format!("正在处理中的续费 {} 如果扣款成功，将自动全额退回原支付渠道。", refund.amount),
                format!(
                    " The renewal of {} now in progress is refunded in full to where it came from if it goes through.",
                    refund.amount
                ),
            ),
            None => (String::new(), String::new()),
        };
        Texts::new(
            format!(
                "确认后立即停止自动续费，解约于 {effective} 生效；{fee_zh}；已付费的会员权益保留至 {benefits}。确认时需要{method_zh}。\
                 {refund_zh}本报价依据条款第 {} 版，{expires} 前有效。",
                self.terms_version
            ),
            format!(
                "Once you confirm, auto-renewal stops at once and the termination takes effect at {effective}; {fee_en}; \
                 membership you paid for lasts until {benefits}. Confirming needs {method_en}.{refund_en} This quote \
                 follows terms v{} and is valid until {expires}.",
                self.terms_version
            ),
        )
    }
}

#[cfg(test)]
#[path = "termination_tests.rs"]
mod tests;
