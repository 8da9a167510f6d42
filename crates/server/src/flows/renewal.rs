//! Renewals of agreements (issue 11, part 3): what is scheduled when, and what the user
//! is told.
//!
//! When a period is paid (or the sign is confirmed), the transaction that moves the
//! agreement enqueues the next period's work ([`schedule_period`], [`schedule_first`]):
//! a reminder `remind_days_before` the end and the first charge attempt a day before it.
//! The attempts, the lapse and the reminder run as jobs (`jobs::renew_agreement`).

use super::messages;
use crate::jobs;
use crate::jobs::renewal::{RemindAgreement, RenewAgreement};
use crate::services::Services;
use zerodrop_domain::agreement::{self, StateFacts};
use zerodrop_domain::notice;
use zerodrop_domain::renewal::{expiry_reminder_at, renewal_schedule};
use zerodrop_domain::{AgreementState, Plan, TermsVersion, Texts};
use zerodrop_store::agreements::AgreementRow;
use zerodrop_store::{StoreError, Tx};

/// Enqueues the first period's charge, due now, in the transaction that confirmed the
/// sign (the caller wakes the workers after its commit).
pub async fn schedule_first(tx: &mut Tx, row: &AgreementRow, now_ms: i64) -> Result<(), StoreError> {
    let job = RenewAgreement {
        agreement_id: row.id.clone(),
        paid_until_ms: row.paid_until_ms,
        period_end_ms: None,
        attempt: 0,
        scheduled_at_ms: now_ms,
    };
    jobs::enqueue(tx, &job, now_ms, now_ms).await.map(|_| ())
}

/// Enqueues the renewal of the period ending at the agreement's paid-until, in the
/// transaction that moved it (the paid path's): its reminder and its first charge
/// attempt. The schedule comes from the terms as published and consented to (stored), so
/// the paid path needs nothing but its transaction.
pub async fn schedule_period(tx: &mut Tx, row: &AgreementRow, now_ms: i64) -> Result<(), StoreError> {
    let Some(paid_until) = row.paid_until_ms else { return Ok(()) };
    schedule_renewal(tx, row, paid_until, now_ms).await
}

/// The reminder and first attempt of the period ending at `period_end_ms`.
pub async fn schedule_renewal(
    tx: &mut Tx,
    row: &AgreementRow,
    period_end_ms: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    let terms = consented_terms(tx, row).await?;
    let schedule = renewal_schedule(&terms, period_end_ms, row.state.is_terminated_locally());
    if let Some(at) = expiry_reminder_at(period_end_ms, terms.remind_days_before, now_ms) {
        let remind = RemindAgreement { agreement_id: row.id.clone(), period_end_ms };
        jobs::enqueue(tx, &remind, at, now_ms).await?;
    }
    if let Some(at) = schedule.next_attempt(0) {
        let job = RenewAgreement {
            agreement_id: row.id.clone(),
            paid_until_ms: row.paid_until_ms,
            period_end_ms: Some(period_end_ms),
            attempt: 0,
            // Taken now, not from the caller: the order that paid the period may have been
            // created in the caller's same millisecond, and it is not this attempt's.
            scheduled_at_ms: now_ms.max(zerodrop_store::now_ms()),
        };
        jobs::enqueue(tx, &job, at, now_ms).await?;
    }
    Ok(())
}

/// The terms version the agreement cites, as published (what the user consented to).
async fn consented_terms(tx: &mut Tx, row: &AgreementRow) -> Result<TermsVersion, StoreError> {
    let published = zerodrop_store::agreements::terms::get(tx, &row.plan, row.terms_version)
        .await?
        .ok_or_else(|| StoreError::Invariant(format!("agreement {}: its terms are not published", row.id)))?;
    Ok(serde_json::from_str(&published.canonical_json)?)
}

/// Tells the user what the agreement's state now is (a termination committed or
/// confirmed), once per agreement and state, in the caller's transaction.
pub async fn post_state_message(
    tx: &mut Tx,
    services: &Services,
    row: &AgreementRow,
    now_ms: i64,
) -> Result<(), StoreError> {
    let kind = match row.state {
        AgreementState::Terminating { .. } => "termination_committed",
        AgreementState::Terminated { .. } => "agreement_terminated",
        AgreementState::Signing | AgreementState::Active | AgreementState::Paused => return Ok(()),
    };
    let body = state_sentence(services, row);
    let key = format!("{kind}:{}", row.id);
    messages::post(tx, &services.config.messages, &row.user_id, kind, &body, &key, now_ms).await.map(|_| ())
}

/// Tells the user where the refund of a charge that landed after termination goes and
/// how long the provider's channel takes (never more than it can keep), once per refund,
/// in the transaction that starts or completes it.
#[allow(clippy::too_many_arguments)] // each fact is the message's; a struct would only rename them
pub async fn post_refund_message(
    tx: &mut Tx,
    services: &Services,
    user_id: &zerodrop_domain::UserId,
    refund_id: &str,
    amount: zerodrop_domain::Money,
    provider_title: &str,
    channel: notice::RefundChannel,
    now_ms: i64,
) -> Result<(), StoreError> {
    let body = notice::refund_arrival(amount, provider_title, channel);
    let key = format!("refund_arrival:{refund_id}");
    messages::post(tx, &services.config.messages, user_id, "refund_arrival", &body, &key, now_ms).await.map(|_| ())
}

/// The agreement's state in a sentence, in both languages.
pub fn state_sentence(services: &Services, row: &AgreementRow) -> Texts {
    let found = plan_terms(services, row);
    let facts = StateFacts {
        plan_title: found.map_or_else(|| row.plan.clone(), |(plan, _)| plan.title.clone()),
        terms_version: row.terms_version,
        price: found.map(|(_, terms)| terms.price),
        next_charge_at_ms: row.paid_until_ms,
        paid_until_ms: row.paid_until_ms,
        hold_until_ms: row.hold.as_ref().map(|h| h.until_ms),
        effective_at_ms: row.termination_effective_at_ms,
        signing_expires_at_ms: None,
    };
    agreement::describe(row.state, &facts)
}

pub fn plan_terms<'a>(services: &'a Services, row: &AgreementRow) -> Option<(&'a Plan, &'a TermsVersion)> {
    let plan = services.catalog.plans().get(&row.plan)?;
    Some((plan, plan.version(row.terms_version)?))
}
