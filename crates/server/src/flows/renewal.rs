//! Renewals, reminders and lapses of agreements (issue 11, part 3).
//!
//! When a period is paid (or the sign is confirmed), the transaction that moves the
//! agreement enqueues the next period's work ([`schedule_period`], [`schedule_first`]):
//! a reminder `remind_days_before` the end and the first charge attempt a day before it.
//! Each attempt charges through [`charge::charge_period`] (which queries the agreement
//! at the provider first) and then waits for that order's outcome: an unknown outcome is
//! never a failure, the order's own query schedule finds it. A paid order records the
//! period (which schedules the next); an order closed unpaid is a failed attempt: the
//! user is told, and the next attempt (or the lapse after the last) is enqueued in the
//! same transaction. Nothing is charged while a security hold lasts (the attempt runs
//! again at the unlock time), nor for an agreement whose termination is committed.

use super::agreement::charge::{self, Charged};
use super::messages;
use crate::jobs::renew_agreement::{LapseAgreement, RemindAgreement, RenewAgreement};
use crate::jobs::{self, Outcome, Run};
use crate::services::Services;
use serde_json::json;
use zerodrop_domain::agreement::{self, StateFacts};
use zerodrop_domain::membership::DAY_MS;
use zerodrop_domain::notice;
use zerodrop_domain::order::OrderStatus;
use zerodrop_domain::renewal::{expiry_reminder_at, lapse_event, period_end_after_lapse, renewal_schedule};
use zerodrop_domain::terms::CHARGE_LEAD_DAYS;
use zerodrop_domain::{AgreementEvent, AgreementState, OrderId, Plan, TermsVersion, Texts};
use zerodrop_store::agreements::timeline::{self, Kind, NewAgreementEvent};
use zerodrop_store::agreements::{self, unsign_job_key, AgreementRow, UNSIGN_JOB_KIND};
use zerodrop_store::jobs::NewJob;
use zerodrop_store::orders::{self, OrderRow};
use zerodrop_store::{now_ms, StoreError, Tx};

/// How often an attempt looks again at an order still awaiting its outcome. The order's
/// own query schedule and expiry settle it within its TTL; this only notices the result.
pub const ORDER_OUTCOME_POLL_MS: i64 = 30_000;

/// Attempts of the provider unsign a lapse enqueues (the unsign job's own kind decides
/// its runs; this bounds them: a week at the 10-minute backoff cap).
const UNSIGN_ATTEMPTS_MAX: i64 = 1_000;

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
/// transaction that moved it: its reminder and its first charge attempt.
pub async fn schedule_period(
    tx: &mut Tx,
    services: &Services,
    row: &AgreementRow,
    now_ms: i64,
) -> Result<(), StoreError> {
    let Some(paid_until) = row.paid_until_ms else { return Ok(()) };
    schedule_renewal(tx, services, row, paid_until, now_ms).await
}

/// The reminder and first attempt of the period ending at `period_end_ms`.
async fn schedule_renewal(
    tx: &mut Tx,
    services: &Services,
    row: &AgreementRow,
    period_end_ms: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    let Some((_, terms)) = plan_terms(services, row) else {
        return Err(StoreError::Invariant(format!("agreement {}: its terms are not in the catalog", row.id)));
    };
    let schedule = renewal_schedule(terms, period_end_ms, row.state.is_terminated_locally());
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

/// One charge attempt (see the module's comment).
pub async fn attempt(services: &Services, job: &RenewAgreement, run: &Run) -> Outcome {
    match try_attempt(services, job, run).await {
        Ok(outcome) => outcome,
        Err(e) => e.into(),
    }
}

async fn try_attempt(services: &Services, job: &RenewAgreement, run: &Run) -> Result<Outcome, StoreError> {
    let now = now_ms();
    let Some(row) = read(services, &job.agreement_id).await? else {
        return Ok(Outcome::Retry(format!("agreement {} not found", job.agreement_id)));
    };
    if let Some(done) = nothing_to_charge(&row, job.paid_until_ms) {
        return Ok(done);
    }
    if let Some(hold) = row.hold.as_ref().filter(|hold| hold.charges_paused(now)) {
        // Nobody is charged because they could not terminate: the attempt waits.
        let note = format!("on a security hold until {}", hold.unlock_at_ms());
        return Ok(Outcome::RunAgainAt(hold.unlock_at_ms(), Some(note)));
    }
    if row.state == AgreementState::Paused {
        release_hold(services, &row.id, run, now).await?;
    }
    match order_since(services, &row.id, job.scheduled_at_ms).await? {
        None => charge(services, &row, now).await,
        Some(order) => settle(services, job, &order, run, now).await,
    }
}

/// `Some(done)` when the attempt has nothing left to do: the agreement is ended, not yet
/// signed, or renewed since (its paid-until moved).
fn nothing_to_charge(row: &AgreementRow, paid_until_ms: Option<i64>) -> Option<Outcome> {
    match row.state {
        // A committed termination stops every charge; an unsigned one has none to make.
        AgreementState::Terminating { .. } | AgreementState::Terminated { .. } | AgreementState::Signing => {
            return Some(Outcome::Done);
        }
        AgreementState::Active | AgreementState::Paused => {}
    }
    (row.paid_until_ms != paid_until_ms).then_some(Outcome::Done)
}

async fn charge(services: &Services, row: &AgreementRow, now: i64) -> Result<Outcome, StoreError> {
    match charge::charge_period(services, &row.id, now).await? {
        Charged::NotCharged(reason) => Ok(Outcome::Retry(reason)),
        Charged::Ended => {
            // The provider says the agreement is gone: terminated provider side, no charge.
            let mut tx = services.store.begin().await?;
            let ended = agreements::lock(&mut tx, &row.id).await?;
            post_state_message(&mut tx, services, &ended, now).await?;
            tx.commit().await?;
            services.wake();
            Ok(Outcome::Done)
        }
        Charged::Started { paid: true, .. } => Ok(Outcome::Done),
        Charged::Started { paid: false, order_no } => {
            let note = format!("order {order_no} awaits its outcome");
            Ok(Outcome::RunAgainAt(now + ORDER_OUTCOME_POLL_MS, Some(note)))
        }
    }
}

/// The attempt's order has an outcome (or not yet).
async fn settle(
    services: &Services,
    job: &RenewAgreement,
    order: &OrderRow,
    run: &Run,
    now: i64,
) -> Result<Outcome, StoreError> {
    match order.status {
        OrderStatus::AwaitingPayment => {
            let note = format!("order {} awaits its outcome", order.order_no);
            Ok(Outcome::RunAgainAt(now + ORDER_OUTCOME_POLL_MS, Some(note)))
        }
        OrderStatus::Paid | OrderStatus::Delivered => {
            // Paid after the charge call returned (processing, then found by a query):
            // the period is recorded here, which schedules the next one.
            charge::record_period(services, &job.agreement_id, order, now).await?;
            Ok(Outcome::Done)
        }
        // Closed unpaid (declined, or expired at the provider), or paid and given back:
        // the attempt failed.
        OrderStatus::Expired | OrderStatus::RefundDue | OrderStatus::Refunding | OrderStatus::Refunded => {
            declined(services, job, order, run, now).await?;
            Ok(Outcome::Done)
        }
    }
}

/// A failed attempt: recorded in the agreement's timeline, the user told when the next
/// attempt and the lapse happen, and that next step enqueued, in one transaction.
async fn declined(
    services: &Services,
    job: &RenewAgreement,
    order: &OrderRow,
    run: &Run,
    now: i64,
) -> Result<(), StoreError> {
    let mut tx = services.store.begin().await?;
    let mut row = agreements::lock(&mut tx, &job.agreement_id).await?;
    if nothing_to_charge(&row, job.paid_until_ms).is_some() {
        return Ok(()); // ended or renewed meanwhile: the failure no longer decides anything
    }
    let Some((plan, terms)) = plan_terms(services, &row) else {
        return Err(StoreError::Invariant(format!("agreement {}: its terms are not in the catalog", row.id)));
    };
    let (title, terms) = (plan.title.clone(), terms.clone());
    // The first period has no membership to keep: no retry, nothing lapses.
    let (next_at, lapse_at) = match job.period_end_ms {
        Some(end) => {
            let schedule = renewal_schedule(&terms, end, false);
            let next = schedule.next_attempt(job.attempt as usize + 1);
            (next, schedule.lapse_at_ms().unwrap_or(end))
        }
        None => (None, now),
    };
    let data = json!({ "order_no": order.order_no, "attempt": job.attempt, "next_attempt_at_ms": next_at,
                       "lapse_at_ms": lapse_at, "period_end_ms": job.period_end_ms });
    timeline::append(
        &mut tx,
        &mut row,
        NewAgreementEvent::new(Kind::Recorded("charge_failed"), &run.cause(), data),
        now,
    )
    .await?;
    let body = notice::charge_failed(&terms, &title, next_at, lapse_at);
    let key = format!("charge_failed:{}:{}", row.id, order.order_no);
    messages::post(&mut tx, &services.config.messages, &row.user_id, "charge_failed", &body, &key, now).await?;
    match (job.period_end_ms, next_at) {
        (Some(_), Some(at)) => {
            let next = RenewAgreement { attempt: job.attempt + 1, scheduled_at_ms: now, ..job.clone() };
            jobs::enqueue(&mut tx, &next, at, now).await?;
        }
        (Some(period_end_ms), None) => {
            let lapse =
                LapseAgreement { agreement_id: row.id.clone(), paid_until_ms: job.paid_until_ms, period_end_ms };
            jobs::enqueue(&mut tx, &lapse, lapse_at, now).await?;
        }
        (None, _) => {}
    }
    tx.commit().await?;
    services.wake();
    Ok(())
}

/// The grace ran out: the membership lapses; the agreement stays (and the next renewal
/// is scheduled) or is terminated `expired`, by the terms' lapse policy.
pub async fn lapse(services: &Services, job: &LapseAgreement, run: &Run) -> Outcome {
    match try_lapse(services, job, run).await {
        Ok(outcome) => outcome,
        Err(e) => e.into(),
    }
}

async fn try_lapse(services: &Services, job: &LapseAgreement, run: &Run) -> Result<Outcome, StoreError> {
    let now = now_ms();
    let Some(row) = read(services, &job.agreement_id).await? else {
        return Ok(Outcome::Retry(format!("agreement {} not found", job.agreement_id)));
    };
    if nothing_to_charge(&row, job.paid_until_ms).is_some() {
        return Ok(Outcome::Done);
    }
    if let Some(order) = order_in_flight(services, &row.id).await? {
        // A late charge settles first: it may still pay the period.
        let note = format!("order {} awaits its outcome", order.order_no);
        return Ok(Outcome::RunAgainAt(now + ORDER_OUTCOME_POLL_MS, Some(note)));
    }
    let mut tx = services.store.begin().await?;
    let mut row = agreements::lock(&mut tx, &job.agreement_id).await?;
    if nothing_to_charge(&row, job.paid_until_ms).is_some() {
        return Ok(Outcome::Done);
    }
    let Some((plan, terms)) = plan_terms(services, &row) else {
        return Ok(Outcome::Retry(format!("agreement {}: its terms are not in the catalog", row.id)));
    };
    let (title, terms) = (plan.title.clone(), terms.clone());
    let lapse_at = renewal_schedule(&terms, job.period_end_ms, false).lapse_at_ms().unwrap_or(job.period_end_ms);
    let cause = run.cause();
    let next_charge_at = match lapse_event(&terms) {
        Some(event) => {
            let data = json!({ "effective_at_ms": now, "reason": "lapsed", "period_end_ms": job.period_end_ms });
            timeline::append(&mut tx, &mut row, NewAgreementEvent::state(event, &cause, data), now).await?;
            enqueue_unsign(&mut tx, &row.id, now).await?;
            None
        }
        None => {
            let next_end = period_end_after_lapse(&terms, job.period_end_ms);
            let data = json!({ "period_end_ms": job.period_end_ms, "next_period_end_ms": next_end });
            timeline::append(&mut tx, &mut row, NewAgreementEvent::new(Kind::Recorded("lapsed"), &cause, data), now)
                .await?;
            schedule_renewal(&mut tx, services, &row, next_end, now).await?;
            Some(next_end - CHARGE_LEAD_DAYS * DAY_MS)
        }
    };
    let body = notice::lapsed(&terms, &title, lapse_at, next_charge_at);
    let key = format!("lapsed:{}:{}", row.id, job.period_end_ms);
    messages::post(&mut tx, &services.config.messages, &row.user_id, "lapsed", &body, &key, now).await?;
    tx.commit().await?;
    services.wake();
    Ok(Outcome::Done)
}

/// The reminder: before a renewal charge (amount, date, terms version, the way out), or
/// before the membership ends when the agreement no longer renews.
pub async fn remind(services: &Services, job: &RemindAgreement, _run: &Run) -> Outcome {
    match try_remind(services, job).await {
        Ok(outcome) => outcome,
        Err(e) => e.into(),
    }
}

async fn try_remind(services: &Services, job: &RemindAgreement) -> Result<Outcome, StoreError> {
    let now = now_ms();
    let mut tx = services.store.begin().await?;
    let row = agreements::lock(&mut tx, &job.agreement_id).await?;
    let Some((plan, terms)) = plan_terms(services, &row) else {
        return Ok(Outcome::Retry(format!("agreement {}: its terms are not in the catalog", row.id)));
    };
    if row.paid_until_ms.is_some_and(|paid_until| paid_until > job.period_end_ms) {
        return Ok(Outcome::Done); // renewed past this period already: nothing ends or renews then
    }
    let (kind, body) = match row.state {
        AgreementState::Signing => return Ok(Outcome::Done),
        AgreementState::Active | AgreementState::Paused => {
            let charge_at = job.period_end_ms - CHARGE_LEAD_DAYS * DAY_MS;
            ("renewal_reminder", notice::renewal_reminder(terms, &plan.title, charge_at, job.period_end_ms))
        }
        AgreementState::Terminating { .. } | AgreementState::Terminated { .. } => {
            ("expiry_reminder", notice::expiry_reminder(&plan.title, job.period_end_ms))
        }
    };
    let key = format!("{kind}:{}:{}", row.id, job.period_end_ms);
    messages::post(&mut tx, &services.config.messages, &row.user_id, kind, &body, &key, now).await?;
    tx.commit().await?;
    services.wake();
    Ok(Outcome::Done)
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

fn plan_terms<'a>(services: &'a Services, row: &AgreementRow) -> Option<(&'a Plan, &'a TermsVersion)> {
    let plan = services.catalog.plans().get(&row.plan)?;
    Some((plan, plan.version(row.terms_version)?))
}

async fn read(services: &Services, id: &str) -> Result<Option<AgreementRow>, StoreError> {
    let mut conn = services.store.reader().await?;
    agreements::get(&mut conn, id).await
}

/// The agreement's newest order created after `since_ms`: the one this attempt made
/// (attempts of a period run one after another, each scheduled after the previous
/// attempt's order was settled, so an earlier order is never taken for this one's).
async fn order_since(services: &Services, agreement_id: &str, since_ms: i64) -> Result<Option<OrderRow>, StoreError> {
    let mut conn = services.store.reader().await?;
    let ids = agreements::orders_of(&mut conn, agreement_id).await?;
    for (id, _) in ids.iter().rev() {
        let Some(id) = OrderId::parse(id) else { continue };
        match orders::get(&mut conn, id).await? {
            Some(order) if order.created_at_ms > since_ms => return Ok(Some(order)),
            Some(_) => return Ok(None),
            None => {}
        }
    }
    Ok(None)
}

async fn order_in_flight(services: &Services, agreement_id: &str) -> Result<Option<OrderRow>, StoreError> {
    let mut conn = services.store.reader().await?;
    for (id, _) in agreements::orders_of(&mut conn, agreement_id).await? {
        let Some(id) = OrderId::parse(&id) else { continue };
        if let Some(order) = orders::get(&mut conn, id).await? {
            if order.status == OrderStatus::AwaitingPayment {
                return Ok(Some(order));
            }
        }
    }
    Ok(None)
}

/// The hold's unlock time passed: the agreement is active again (its timeline says so).
async fn release_hold(services: &Services, id: &str, run: &Run, now: i64) -> Result<(), StoreError> {
    let mut tx = services.store.begin().await?;
    let mut row = agreements::lock(&mut tx, id).await?;
    if row.state != AgreementState::Paused || row.hold.as_ref().is_some_and(|hold| hold.charges_paused(now)) {
        return Ok(());
    }
    let event = NewAgreementEvent::state(AgreementEvent::HoldReleased, &run.cause(), json!({ "unlocked": true }));
    timeline::append(&mut tx, &mut row, event, now).await?;
    tx.commit().await
}

/// The provider unsign of an agreement a lapse terminated: the audit holds every
/// terminating agreement to this job (queued, or in attention), once per agreement.
async fn enqueue_unsign(tx: &mut Tx, agreement_id: &str, now: i64) -> Result<bool, StoreError> {
    let new = NewJob {
        kind: UNSIGN_JOB_KIND,
        order_id: None,
        payload: json!({ "agreement_id": agreement_id }),
        run_at_ms: now,
        max_attempts: UNSIGN_ATTEMPTS_MAX,
        dedupe_key: Some(unsign_job_key(agreement_id)),
    };
    zerodrop_store::jobs::enqueue(tx, &new, now).await
}
