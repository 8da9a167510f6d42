//! When an agreement reminds, charges, retries and lapses.
//!
//! All times derive from the end of the paid period and the terms version the agreement
//! was signed under. A committed termination stops every future charge at once, so a
//! terminated agreement has nothing scheduled.

use crate::agreement::{AgreementEvent, AgreementState, TerminationMode};
use crate::hold::Hold;
use crate::membership::DAY_MS;
use crate::terms::{LapsePolicy, TermsVersion, CHARGE_LEAD_DAYS};
use serde::{Deserialize, Serialize};

/// What a scheduled moment is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepKind {
    /// Tell the user the amount, the date, the terms version and how to end it.
    Remind,
    /// Query the agreement at the provider, then create the renewal order.
    Charge,
    /// Charge again after a failure (`attempt` counts from 1).
    Retry { attempt: u32 },
    /// The grace ran out without a payment: the membership lapses, and the agreement
    /// stays or is terminated by the terms' lapse policy.
    Lapse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub kind: StepKind,
    pub at_ms: i64,
}

/// The renewal of one paid period, in time order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalSchedule {
    pub steps: Vec<Step>,
}

impl RenewalSchedule {
    /// The charge attempts in order: the first charge, then the retries.
    pub fn charge_attempts(&self) -> Vec<i64> {
        self.steps
            .iter()
            .filter(|step| matches!(step.kind, StepKind::Charge | StepKind::Retry { .. }))
            .map(|step| step.at_ms)
            .collect()
    }

    /// When the attempt after `failed` failures is due, or `None` when none is left.
    pub fn next_attempt(&self, failed: usize) -> Option<i64> {
        self.charge_attempts().get(failed).copied()
    }

    pub fn lapse_at_ms(&self) -> Option<i64> {
        self.steps.iter().find(|step| step.kind == StepKind::Lapse).map(|step| step.at_ms)
    }
}

/// The schedule for renewing the period that ends at `paid_until_ms`. With a termination
/// committed (`terminated` true), nothing is scheduled: no reminder of a renewal that will
/// not happen, no charge, no retry, no lapse of an agreement already ended.
pub fn renewal_schedule(terms: &TermsVersion, paid_until_ms: i64, terminated: bool) -> RenewalSchedule {
    if terminated {
        return RenewalSchedule::default();
    }
    let charge_at = paid_until_ms - CHARGE_LEAD_DAYS * DAY_MS;
    let mut steps = vec![
        Step { kind: StepKind::Remind, at_ms: paid_until_ms - terms.remind_days_before * DAY_MS },
        Step { kind: StepKind::Charge, at_ms: charge_at },
    ];
    for (attempt, offset) in (1_u32..).zip(&terms.retry_offsets_days) {
        steps.push(Step { kind: StepKind::Retry { attempt }, at_ms: charge_at + offset * DAY_MS });
    }
    steps.push(Step { kind: StepKind::Lapse, at_ms: paid_until_ms + terms.grace_days * DAY_MS });
    RenewalSchedule { steps }
}

/// When to remind a user that a membership ends (renewing or not), or `None` if that
/// moment already passed: a late reminder would announce the past.
pub fn expiry_reminder_at(paid_until_ms: i64, remind_days_before: i64, now_ms: i64) -> Option<i64> {
    let at = paid_until_ms - remind_days_before * DAY_MS;
    (at >= now_ms).then_some(at)
}

/// What the grace running out does to the agreement, by the terms' lapse policy: the
/// event to record, or `None` when the agreement stays (see `period_end_after_lapse`).
pub fn lapse_event(terms: &TermsVersion) -> Option<AgreementEvent> {
    match terms.lapse_policy {
        LapsePolicy::Terminate => Some(AgreementEvent::TerminationCommitted { mode: TerminationMode::Expired }),
        LapsePolicy::KeepAgreement => None,
    }
}

/// Under `keep_agreement`, the next renewal is scheduled as if the lapsed period had been
/// followed by one unpaid period: the schedule of the period ending here comes next.
pub fn period_end_after_lapse(terms: &TermsVersion, lapsed_paid_until_ms: i64) -> i64 {
    lapsed_paid_until_ms + terms.period_days * DAY_MS
}

/// Whether a renewal charge may be created now: only an active agreement, and never while
/// a security hold lasts (nobody is charged because they could not terminate).
pub fn may_charge_now(state: AgreementState, hold: Option<&Hold>, now_ms: i64) -> bool {
    state.may_charge() && !hold.is_some_and(|hold| hold.charges_paused(now_ms))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::agreement::TerminationMode;
    use crate::hold::HoldRules;
    use crate::terms::Plans;

    pub(crate) fn terms() -> TermsVersion {
        let text = r#"
[[plan]]
id = "svip_monthly"
title = "SVIP monthly"
membership = "svip"
currency = "CNY"
[[plan.terms]]
version = 1
price = "25.00"
period_days = 30
how_to_terminate = { zh_cn = "点击解约", en = "Tap End agreement" }
"#;
        Plans::from_toml(text).unwrap().get("svip_monthly").unwrap().version(1).unwrap().clone()
    }

    #[test]
    fn the_default_schedule_reminds_charges_retries_and_lapses() {
        let paid_until = 100 * DAY_MS;
        let schedule = renewal_schedule(&terms(), paid_until, false);
        let kinds: Vec<(StepKind, i64)> = schedule.steps.iter().map(|s| (s.kind, s.at_ms / DAY_MS)).collect();
        assert_eq!(
            kinds,
            vec![
                (StepKind::Remind, 97),
                (StepKind::Charge, 99),
                (StepKind::Retry { attempt: 1 }, 100),
                (StepKind::Retry { attempt: 2 }, 102),
                (StepKind::Lapse, 103),
            ]
        );
        assert_eq!(schedule.next_attempt(0), Some(99 * DAY_MS));
        assert_eq!(schedule.next_attempt(2), Some(102 * DAY_MS));
        assert_eq!(schedule.next_attempt(3), None);
        assert_eq!(schedule.lapse_at_ms(), Some(103 * DAY_MS));
        assert_eq!(renewal_schedule(&terms(), paid_until, true), RenewalSchedule::default());
    }

    #[test]
    fn lapse_follows_the_policy() {
        let mut t = terms();
        let event = lapse_event(&t);
        assert_eq!(event, Some(AgreementEvent::TerminationCommitted { mode: TerminationMode::Expired }));
        t.lapse_policy = LapsePolicy::KeepAgreement;
        assert_eq!(lapse_event(&t), None);
        assert_eq!(period_end_after_lapse(&t, 10 * DAY_MS), 40 * DAY_MS);
    }

    #[test]
    fn expiry_reminders_are_never_late() {
        assert_eq!(expiry_reminder_at(10 * DAY_MS, 3, 0), Some(7 * DAY_MS));
        assert_eq!(expiry_reminder_at(10 * DAY_MS, 3, 8 * DAY_MS), None);
    }

    #[test]
    fn charges_pause_under_a_hold_and_stop_after_termination() {
        let hold = HoldRules::default().takeover(0, DAY_MS);
        assert!(may_charge_now(AgreementState::Active, None, 0));
        assert!(!may_charge_now(AgreementState::Active, Some(&hold), DAY_MS - 1));
        assert!(may_charge_now(AgreementState::Active, Some(&hold), DAY_MS));
        assert!(!may_charge_now(AgreementState::Paused, None, 0));
        let ended = AgreementState::Terminating { mode: TerminationMode::ProviderSide };
        assert!(!may_charge_now(ended, None, 0));
    }
}
