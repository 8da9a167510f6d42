//! Quote and confirm, example by example, and the properties of fees and schedules.

use super::*;
use crate::agreement::{next, TerminationMode};
use crate::hold::HoldRules;
use crate::membership::DAY_MS;
use crate::money::Currency;
use crate::renewal::{renewal_schedule, StepKind};
use crate::terms::{LapsePolicy, Plans};
use crate::texts::Texts;
use proptest::prelude::*;

const NOW: i64 = 1_000 * DAY_MS;

fn terms_v2() -> TermsVersion {
    let text = r#"
[[plan]]
id = "svip_monthly"
title = "SVIP monthly"
membership = "svip"
currency = "CNY"
[[plan.terms]]
version = 2
price = "20.00"
period_days = 30
minimum_term_periods = 12
early_termination_fee = { kind = "remaining_share", percent = 50 }
termination_effective = "at_once"
how_to_terminate = { zh_cn = "点击解约", en = "Tap End agreement" }
"#;
    Plans::from_toml(text).unwrap().get("svip_monthly").unwrap().version(2).unwrap().clone()
}

fn facts() -> TerminationFacts {
    TerminationFacts {
        state: AgreementState::Active,
        signed_at_ms: NOW - 40 * DAY_MS,
        paid_until_ms: Some(NOW + 20 * DAY_MS),
        periods_paid: 2,
        hold: None,
        charge_in_flight: None,
        fee_paid: false,
        totp_enrolled: true,
        terminated_effective_at_ms: None,
    }
}

#[test]
fn a_quote_states_effective_time_fee_benefits_and_verification() {
    let terms = terms_v2();
    let q = quote(&terms, &facts(), NOW).unwrap();
    assert_eq!(q.effective_at_ms, NOW);
    assert_eq!(q.benefits_until_ms, NOW + 20 * DAY_MS);
    // 10 unpaid periods × 20.00 × 50 % = 100.00
    assert_eq!((q.remaining_minimum_periods, q.fee), (10, Money::new(10_000, Currency::Cny)));
    assert_eq!(q.verification, VerificationMethod::Totp);
    assert_eq!(q.expires_at_ms, NOW + QUOTE_VALID_MS);
    let text = q.describe();
    assert!(text.en.contains("100.00 CNY") && text.zh_cn.contains("100.00 CNY"), "{text:?}");
    assert!(text.en.contains("terms v2") && text.zh_cn.contains("第 2 版"));
    // End of paid period: the effective time is the period's end.
    let mut later = terms.clone();
    later.termination_effective = EffectiveAt::EndOfPaidPeriod;
    assert_eq!(quote(&later, &facts(), NOW).unwrap().effective_at_ms, NOW + 20 * DAY_MS);
    // Signing: nothing to wait for, and a one-time code when no TOTP is enrolled.
    let signing = TerminationFacts {
        state: AgreementState::Signing,
        paid_until_ms: None,
        periods_paid: 0,
        totp_enrolled: false,
        ..facts()
    };
    let q = quote(&later, &signing, NOW).unwrap();
    assert_eq!((q.effective_at_ms, q.benefits_until_ms), (NOW, NOW));
    assert_eq!(q.verification, VerificationMethod::OneTimeCode);
}

#[test]
fn quote_refuses_only_a_closed_or_held_agreement() {
    let terms = terms_v2();
    let ended = TerminationFacts {
        state: AgreementState::Terminating { mode: TerminationMode::ProviderSide },
        terminated_effective_at_ms: Some(NOW - 1),
        ..facts()
    };
    assert_eq!(
        quote(&terms, &ended, NOW),
        Err(Refusal::AlreadyTerminated {
            mode: TerminationMode::ProviderSide,
            effective_at_ms: Some(NOW - 1),
            confirmed: false
        })
    );
    let hold = HoldRules::default().takeover(NOW, DAY_MS);
    let held = TerminationFacts { state: AgreementState::Paused, hold: Some(hold.clone()), ..facts() };
    let refusal = quote(&terms, &held, NOW).unwrap_err();
    assert_eq!(refusal.code(), "security_hold");
    assert!(matches!(refusal, Refusal::SecurityHold { unlock_at_ms, .. } if unlock_at_ms == NOW + DAY_MS));
    // Once the unlock time passes, the paused agreement gets a quote and confirming
    // releases the hold before committing.
    let after = NOW + DAY_MS;
    let q = quote(&terms, &held, after).unwrap();
    let paid = TerminationFacts { fee_paid: true, ..held.clone() };
    let done = confirm(&terms, &q, &paid, Verification::Passed, after).unwrap();
    assert_eq!(
        done.events,
        vec![AgreementEvent::HoldReleased, AgreementEvent::TerminationCommitted { mode: TerminationMode::User }]
    );
    let state = done.events.iter().try_fold(AgreementState::Paused, |s, e| next(s, *e)).unwrap();
    assert_eq!(state, AgreementState::Terminating { mode: TerminationMode::User });
    // A short hold placed after the quote and lifted before confirming does not void it.
    let unheld = TerminationFacts { fee_paid: true, ..facts() };
    let q = quote(&terms, &unheld, NOW).unwrap();
    let brief = TerminationFacts { hold: Some(HoldRules::default().takeover(NOW + 1, 60_000)), ..unheld };
    assert!(confirm(&terms, &q, &brief, Verification::Passed, NOW + 120_000).is_ok());
    assert_eq!(confirm(&terms, &q, &brief, Verification::Passed, NOW + 30_000).unwrap_err().code(), "security_hold");
}

#[test]
fn confirm_walks_through_every_refusal_before_committing() {
    let terms = terms_v2();
    let f = facts();
    let q = quote(&terms, &f, NOW).unwrap();
    let at = NOW + 60_000;
    let code = |r: Result<Termination, Refusal>| r.unwrap_err().code();
    assert_eq!(code(confirm(&terms, &q, &f, Verification::NotProvided, at)), "verification_required");
    let failed = confirm(&terms, &q, &f, Verification::Failed { attempts_left: 3 }, at).unwrap_err();
    assert_eq!(failed, Refusal::VerificationFailed { method: VerificationMethod::Totp, attempts_left: 3 });
    assert_eq!(code(confirm(&terms, &q, &f, Verification::Passed, at)), "fee_unpaid");
    let fee_in_flight = TerminationFacts {
        charge_in_flight: Some(ChargeInFlight {
            purpose: ChargePurpose::Fee,
            amount: q.fee,
            settle_by_ms: NOW + 900_000,
        }),
        ..f.clone()
    };
    assert_eq!(
        confirm(&terms, &q, &fee_in_flight, Verification::Passed, at),
        Err(Refusal::ChargeInProgress { settled_by_ms: NOW + 900_000 })
    );
    let expired = confirm(&terms, &q, &f, Verification::Passed, NOW + QUOTE_VALID_MS);
    assert_eq!(expired, Err(Refusal::QuoteExpired { expired_at_ms: NOW + QUOTE_VALID_MS }));
    // A renewal landed after the quote: the quote no longer tells the truth.
    let renewed = TerminationFacts { paid_until_ms: Some(NOW + 50 * DAY_MS), periods_paid: 3, ..f.clone() };
    assert_eq!(code(confirm(&terms, &q, &renewed, Verification::Passed, at)), "quote_expired");
    let paid = TerminationFacts { fee_paid: true, ..f.clone() };
    let done = confirm(&terms, &q, &paid, Verification::Passed, at).unwrap();
    assert_eq!(done.events, vec![AgreementEvent::TerminationCommitted { mode: TerminationMode::User }]);
    // "At once" confirmed a minute after the quote is effective at the commit, not before.
    assert_eq!(done.effective_at_ms, at);
    assert_eq!(done.fee, Money::new(10_000, Currency::Cny));
    assert!(!done.refund_in_flight_renewal);
}

#[test]
fn a_renewal_in_flight_never_blocks_termination_and_is_refunded() {
    let mut terms = terms_v2();
    terms.minimum_term_periods = 0;
    terms.early_termination_fee = FeeRule::None;
    let renewal = ChargeInFlight { purpose: ChargePurpose::Renewal, amount: terms.price, settle_by_ms: NOW + 900_000 };
    let f = TerminationFacts { charge_in_flight: Some(renewal), ..facts() };
    let q = quote(&terms, &f, NOW).unwrap();
    assert_eq!(q.in_flight_refund, Some(InFlightRefund { amount: terms.price, settle_by_ms: NOW + 900_000 }));
    let Texts { zh_cn, en } = q.describe();
    assert!(en.contains("refunded in full") && zh_cn.contains("自动全额退回"));
    let done = confirm(&terms, &q, &f, Verification::Passed, NOW).unwrap();
    assert!(done.refund_in_flight_renewal);
    assert_eq!(done.fee.minor, 0);
}

#[test]
fn fees_follow_the_rule_and_shrink_with_the_term() {
    let mut terms = terms_v2();
    assert_eq!(fee(&terms, 0).minor, 12 * 2000 / 2);
    assert_eq!(fee(&terms, 12).minor, 0);
    assert_eq!(fee(&terms, 40).minor, 0);
    terms.early_termination_fee = FeeRule::RemainingShare { percent: 33 };
    // 1 period × 2000 × 33 % = 660 exactly; 11 × 2000 × 33 / 100 = 7260.
    assert_eq!((fee(&terms, 11).minor, fee(&terms, 1).minor), (660, 7260));
    terms.price = Money::new(999, Currency::Cny);
    // 999 × 33 / 100 = 329.67, rounded down to 329 in the user's favour.
    assert_eq!(fee(&terms, 11).minor, 329);
    terms.early_termination_fee = FeeRule::Fixed { amount: Money::new(5000, Currency::Cny) };
    assert_eq!(fee(&terms, 0).minor, 5000);
    assert_eq!(fee(&terms, 10).minor, 2 * 999, "a fixed fee is capped at what remains");
}

fn arb_terms() -> impl Strategy<Value = TermsVersion> {
    (7_i64..=366, 0_i64..=36, 0_u8..3, 1_i64..=100, 1_i64..=100_000, 0_i64..=30, any::<bool>())
        .prop_flat_map(|(period, min_term, fee_kind, percent, price, grace, at_once)| {
            let retries = proptest::sample::subsequence((1..=grace).collect::<Vec<i64>>(), 0..=grace.min(5) as usize);
            let remind = 2_i64..=14.min(period - 1);
            (Just((period, min_term, fee_kind, percent, price, grace, at_once)), retries, remind)
        })
        .prop_map(|((period, min_term, fee_kind, percent, price, grace, at_once), retries, remind)| {
            let mut terms = terms_v2();
            terms.period_days = period;
            terms.minimum_term_periods = min_term;
            terms.price = Money::new(price, Currency::Cny);
            terms.early_termination_fee = match (fee_kind, min_term) {
                (_, 0) | (0, _) => FeeRule::None,
                (1, _) => FeeRule::Fixed { amount: Money::new(percent * 997, Currency::Cny) },
                _ => FeeRule::RemainingShare { percent },
            };
            terms.termination_effective = if at_once { EffectiveAt::AtOnce } else { EffectiveAt::EndOfPaidPeriod };
            terms.grace_days = grace;
            terms.retry_offsets_days = retries;
            terms.remind_days_before = remind;
            terms.lapse_policy = LapsePolicy::Terminate;
            terms
        })
}

proptest! {
    #[test]
    fn fees_are_never_negative_nor_above_the_remaining_minimum_term(
        terms in arb_terms(), periods_paid in -2_i64..50
    ) {
        let fee = fee(&terms, periods_paid);
        let remaining = terms.price_of_periods(remaining_minimum_periods(&terms, periods_paid));
        prop_assert!(fee.minor >= 0 && fee.minor <= remaining.minor);
        prop_assert_eq!(fee.currency, terms.price.currency);
        if terms.early_termination_fee == FeeRule::None || periods_paid >= terms.minimum_term_periods {
            prop_assert_eq!(fee.minor, 0);
        }
    }

    #[test]
    fn retries_stay_in_the_grace_and_nothing_follows_a_termination(
        terms in arb_terms(),
        paid_until_days in 10_i64..2000,
        commit_offset_ms in -40 * DAY_MS..40 * DAY_MS,
        periods_paid in 1_i64..40,
    ) {
        let paid_until = paid_until_days * DAY_MS;
        let schedule = renewal_schedule(&terms, paid_until, false);
        let charge_at = paid_until - DAY_MS;
        let lapse_at = paid_until + terms.grace_days * DAY_MS;
        let attempts = schedule.charge_attempts();
        prop_assert_eq!(attempts.len(), 1 + terms.retry_offsets_days.len());
        prop_assert_eq!(attempts[0], charge_at);
        for pair in attempts.windows(2) {
            prop_assert!(pair[0] < pair[1]);
        }
        for &at in &attempts[1..] {
            prop_assert!(at > charge_at && at < lapse_at, "retry {} outside the grace", at);
        }
        let remind = schedule.steps[0];
        prop_assert!(remind.kind == StepKind::Remind && remind.at_ms < charge_at);
        prop_assert_eq!(schedule.lapse_at_ms(), Some(lapse_at));

        // A termination committed at any moment: what ran before it plus what is scheduled
        // after it never reaches past the termination's effective time.
        let commit = paid_until + commit_offset_ms;
        let f = TerminationFacts { paid_until_ms: Some(paid_until), periods_paid, fee_paid: true, ..facts() };
        let q = quote(&terms, &f, commit).unwrap();
        let done = confirm(&terms, &q, &f, Verification::Passed, commit).unwrap();
        prop_assert!(done.effective_at_ms >= commit && done.benefits_until_ms >= commit);
        let ran = schedule.steps.iter().filter(|step| step.at_ms < commit);
        let after = renewal_schedule(&terms, paid_until, true);
        prop_assert!(after.steps.is_empty());
        for step in ran.chain(after.steps.iter()) {
            prop_assert!(step.at_ms <= done.effective_at_ms, "{:?} after {}", step, done.effective_at_ms);
        }
        prop_assert!(q.fee.minor >= 0);
    }
}
