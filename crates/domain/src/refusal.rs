//! Why a termination request was not carried out, in words that tell the truth.
//!
//! Each refusal has a stable machine code, a message in zh-CN and en that says what
//! happened, why, whose side it is on and what happens next (with a time), and a stable
//! `next_step` a client can act on.

use crate::agreement::TerminationMode;
use crate::hold::{Hold, HoldReason, HoldRules};
use crate::money::Money;
use crate::texts::{format_utc, Texts};
use serde::{Deserialize, Serialize};

/// How the user proves it is them before an agreement ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationMethod {
    /// A code from the authenticator app enrolled through the API.
    Totp,
    /// A code zerodrop sends through the user's notification channel.
    OneTimeCode,
}

impl VerificationMethod {
    fn zh(self) -> &'static str {
        match self {
            VerificationMethod::Totp => "身份验证器应用中的 6 位动态码",
            VerificationMethod::OneTimeCode => "我们发送给你的 6 位一次性验证码",
        }
    }

    fn en(self) -> &'static str {
        match self {
            VerificationMethod::Totp => "the 6-digit code from your authenticator app",
            VerificationMethod::OneTimeCode => "the 6-digit one-time code we send you",
        }
    }
}

/// A refused termination request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    /// The request carried no verification code.
    VerificationRequired { method: VerificationMethod },
    /// The code was wrong (or already used); `attempts_left` before a security hold.
    VerificationFailed { method: VerificationMethod, attempts_left: u32 },
    /// A security hold stops termination (and renewal charges) until `unlock_at_ms`.
    SecurityHold { reason: HoldReason, unlock_at_ms: i64 },
    /// The quote is older than its validity, or the facts changed since it was made.
    QuoteExpired { expired_at_ms: i64 },
    /// A termination is already committed; `confirmed` says whether the provider agrees.
    AlreadyTerminated { mode: TerminationMode, effective_at_ms: Option<i64>, confirmed: bool },
    /// The early-termination fee payment is still being settled by the provider.
    ChargeInProgress { settled_by_ms: i64 },
    /// The quote's early-termination fee has not been paid.
    FeeUnpaid { fee: Money },
}

/// The JSON body of a refusal as an API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefusalBody {
    pub code: &'static str,
    pub message: Texts,
    pub next_step: &'static str,
    pub details: Refusal,
}

impl Refusal {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::VerificationRequired { .. } => "verification_required",
            Refusal::VerificationFailed { .. } => "verification_failed",
            Refusal::SecurityHold { .. } => "security_hold",
            Refusal::QuoteExpired { .. } => "quote_expired",
            Refusal::AlreadyTerminated { .. } => "already_terminated",
            Refusal::ChargeInProgress { .. } => "charge_in_progress",
            Refusal::FeeUnpaid { .. } => "fee_unpaid",
        }
    }

    /// What the client does next, as a stable word.
    pub fn next_step(&self) -> &'static str {
        match self {
            Refusal::VerificationRequired { .. } => "verify_and_confirm",
            Refusal::VerificationFailed { attempts_left: 0, .. } => "wait_for_unlock",
            Refusal::VerificationFailed { .. } => "retry_verification",
            Refusal::SecurityHold { .. } => "wait_for_unlock",
            Refusal::QuoteExpired { .. } => "request_new_quote",
            Refusal::AlreadyTerminated { .. } => "nothing_to_do",
            Refusal::ChargeInProgress { .. } => "wait_for_settlement",
            Refusal::FeeUnpaid { .. } => "pay_fee_and_confirm",
        }
    }

    /// The sentence in both languages: what happened, why, whose side, what happens next.
    pub fn message(&self, now_ms: i64) -> Texts {
        match self {
            Refusal::VerificationRequired { method } => Texts::new(
                format!("解约尚未执行：为确认是你本人操作，需要先验证身份。请输入{}，然后用同一报价确认解约。在此之前不会扣任何费用。", method.zh()),
                format!("The termination was not carried out yet: we need to confirm it is you. Enter {}, then confirm with the same quote. Nothing is charged meanwhile.", method.en()),
            ),
            Refusal::VerificationFailed { method, attempts_left: 0 } => Texts::new(
                format!("验证码不正确，解约未执行。错误次数已达上限，为保护你的账户将暂时锁定，锁定期间自动续费同样暂停。请按锁定提示的时间后重试（{}）。", method.zh()),
                format!("The code was not correct, so the termination was not carried out. That was the last attempt: your account is locked for a short time to protect it, and renewal charges pause too. Try again after the unlock time we show ({}).", method.en()),
            ),
            Refusal::VerificationFailed { method, attempts_left } => Texts::new(
                format!("验证码不正确或已使用过，解约未执行。请重新输入{}；还可尝试 {attempts_left} 次，之后将暂时锁定以保护你的账户。", method.zh()),
                format!("The code was wrong or already used, so the termination was not carried out. Enter {} again; {attempts_left} attempts are left before a short security lock protects your account.", method.en()),
            ),
            Refusal::SecurityHold { reason, unlock_at_ms } => {
                let hold = Hold { reason: reason.clone(), since_ms: now_ms, until_ms: *unlock_at_ms };
                hold.reason_text(now_ms)
            }
            Refusal::QuoteExpired { expired_at_ms } => {
                let at = format_utc(*expired_at_ms);
                Texts::new(
                    format!("这份解约报价已于 {at} 失效（报价有效期有限，或此后续费、费用等情况已变化），解约未执行，也未扣费。请重新获取报价，新报价会立即给出，没有时间窗口限制。"),
                    format!("This termination quote stopped being valid at {at} (quotes are short-lived, and the renewal or fee facts may have changed since). Nothing was terminated or charged. Request a new quote; it is given at once, at any time."),
                )
            }
            Refusal::AlreadyTerminated { mode: _, effective_at_ms, confirmed } => {
                let at = effective_at_ms.map(format_utc);
                let (zh_at, en_at) = match &at {
                    Some(at) => (format!("于 {at} 生效"), format!("takes effect at {at}")),
                    None => ("已生效".to_owned(), "is in effect".to_owned()),
                };
                let (zh_next, en_next) = if *confirmed {
                    ("支付平台已确认解除。", "The payment provider has confirmed it.")
                } else {
                    ("我们正在通知支付平台解除协议，并会自动重试直到其确认；在此期间不会扣款。", "We are telling the payment provider and retry until it confirms; nothing is charged meanwhile.")
                };
                Texts::new(
                    format!("该自动续费协议已经解约，{zh_at}，不会再扣款，无需再次操作。{zh_next}"),
                    format!("This auto-renewal agreement is already terminated; the termination {en_at} and nothing more will be charged. There is nothing more to do. {en_next}"),
                )
            }
            Refusal::ChargeInProgress { settled_by_ms } => {
                let at = format_utc(*settled_by_ms);
                Texts::new(
                    format!("你的提前解约费正在由支付平台处理，最迟于 {at} 有结果，解约暂未执行。结果出来后请用新的报价再次确认；费用不会重复收取。"),
                    format!("Your early-termination fee payment is still being settled by the payment provider, by {at} at the latest, so the termination is not carried out yet. Once it is settled, confirm again with a new quote; the fee is never charged twice."),
                )
            }
            Refusal::FeeUnpaid { fee } => Texts::new(
                format!("按你签约时同意的条款（最低期限内提前解约），解约需先支付提前解约费 {fee}，该费用已在报价中列明。支付后用同一报价确认即可解约；未支付前协议和续费保持不变。"),
                format!("Under the terms you signed (ending within the minimum term), this termination needs the early-termination fee of {fee}, as stated in the quote. Pay it, then confirm with the same quote; until then the agreement and its renewals stay as they are."),
            ),
        }
    }

    /// The refusal for a wrong code, given every failure recorded so far (this one
    /// included): `security_hold` once the rules place a hold (the caller records it and
    /// pauses charges), `verification_failed` with the attempts left before that.
    pub fn after_failed_verification(
        rules: &HoldRules,
        failures_at_ms: &[i64],
        method: VerificationMethod,
        now_ms: i64,
    ) -> (Refusal, Option<Hold>) {
        match rules.after_failures(failures_at_ms, now_ms) {
            Some(hold) => {
                let refusal = Refusal::SecurityHold { reason: hold.reason.clone(), unlock_at_ms: hold.until_ms };
                (refusal, Some(hold))
            }
            None => {
                let attempts_left = rules.attempts_left(failures_at_ms, now_ms);
                (Refusal::VerificationFailed { method, attempts_left }, None)
            }
        }
    }

    pub fn body(&self, now_ms: i64) -> RefusalBody {
        RefusalBody {
            code: self.code(),
            message: self.message(now_ms),
            next_step: self.next_step(),
            details: self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    pub(crate) fn every_refusal() -> Vec<Refusal> {
        vec![
            Refusal::VerificationRequired { method: VerificationMethod::Totp },
            Refusal::VerificationFailed { method: VerificationMethod::OneTimeCode, attempts_left: 2 },
            Refusal::VerificationFailed { method: VerificationMethod::Totp, attempts_left: 0 },
            Refusal::SecurityHold {
                reason: HoldReason::FailedVerifications { failures: 5, window_minutes: 15 },
                unlock_at_ms: 1_800_000,
            },
            Refusal::SecurityHold { reason: HoldReason::TakeoverSignal, unlock_at_ms: 3_600_000 },
            Refusal::QuoteExpired { expired_at_ms: 600_000 },
            Refusal::AlreadyTerminated {
                mode: TerminationMode::User,
                effective_at_ms: Some(86_400_000),
                confirmed: false,
            },
            Refusal::AlreadyTerminated { mode: TerminationMode::ProviderSide, effective_at_ms: None, confirmed: true },
            Refusal::ChargeInProgress { settled_by_ms: 7_200_000 },
            Refusal::FeeUnpaid { fee: Money::new(12_000, Currency::Cny) },
        ]
    }

    #[test]
    fn every_code_has_both_languages_a_next_step_and_its_time() {
        let codes: Vec<&str> = every_refusal().iter().map(Refusal::code).collect();
        for code in [
            "verification_required",
            "verification_failed",
            "security_hold",
            "quote_expired",
            "already_terminated",
            "charge_in_progress",
            "fee_unpaid",
        ] {
            assert!(codes.contains(&code), "{code} is covered");
        }
        for refusal in every_refusal() {
            let body = refusal.body(0);
            assert!(!body.message.zh_cn.is_empty() && !body.message.en.is_empty());
            assert!(body.message.zh_cn.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "{body:?}");
            assert!(body.next_step.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            let json = serde_json::to_value(&body).unwrap();
            assert_eq!(json["code"], json["details"]["code"]);
        }
        let timed: [(Refusal, &str); 5] = [
            (every_refusal()[3].clone(), "00:30 UTC"),
            (every_refusal()[4].clone(), "01:00 UTC"),
            (every_refusal()[5].clone(), "00:10 UTC"),
            (every_refusal()[6].clone(), "1970-01-02 00:00 UTC"),
            (every_refusal()[8].clone(), "02:00 UTC"),
        ];
        for (refusal, time) in timed {
            let text = refusal.message(0);
            assert!(text.zh_cn.contains(time) && text.en.contains(time), "{text:?} should cite {time}");
        }
        assert!(every_refusal()[9].message(0).en.contains("120.00 CNY"));
        assert!(every_refusal()[9].message(0).zh_cn.contains("120.00 CNY"));
        assert_eq!(every_refusal()[2].next_step(), "wait_for_unlock");
    }

    #[test]
    fn the_fifth_wrong_code_places_a_hold_instead_of_another_attempt() {
        let rules = HoldRules::default();
        let method = VerificationMethod::OneTimeCode;
        let (refusal, hold) = Refusal::after_failed_verification(&rules, &[0; 4], method, 0);
        assert_eq!((refusal, hold), (Refusal::VerificationFailed { method, attempts_left: 1 }, None));
        let (refusal, hold) = Refusal::after_failed_verification(&rules, &[0; 5], method, 0);
        assert_eq!(refusal.code(), "security_hold");
        assert_eq!(hold.map(|h| h.until_ms), Some(rules.failure_hold_ms));
    }
}
