//! The runs of the renewal's job kinds (payloads in [`super::renewal`]).
//!
//! Each attempt charges through [`charge::charge_period`] (which queries the agreement at
//! the provider first) and then waits for that order's outcome: an unknown outcome is
//! never a failure, the order's own query schedule finds it. A paid order records the
//! period (which schedules the next); an order closed unpaid is a failed attempt: the user
//! is told, and the next attempt (or the lapse after the last) is enqueued in the same
//! transaction. Nothing is charged while a security hold lasts (the attempt runs again at
//! the unlock time), nor for an agreement whose termination is committed. Each kind is
//! enqueued in the transaction that decided it, so none is lost and none runs twice for
//! the same fact.

use super::renewal::{LapseAgreement, RemindAgreement, RemindMembership, RenewAgreement};
use super::{Job, Outcome, Run};
use crate::flows::agreement::charge::{self, Charged};
use crate::flows::messages;
use crate::flows::renewal::{plan_terms, post_state_message, schedule_renewal};
use crate::services::Services;
use serde_json::json;
use zerodrop_domain::membership::DAY_MS;
use zerodrop_domain::notice;
use zerodrop_domain::order::OrderStatus;
use zerodrop_domain::renewal::{lapse_event, period_end_after_lapse, renewal_schedule};
use zerodrop_domain::terms::CHARGE_LEAD_DAYS;
use zerodrop_domain::{AgreementEvent, AgreementState, OrderId};
use zerodrop_store::agreements::timeline::{self, Kind, NewAgreementEvent};
use zerodrop_store::agreements::{self, AgreementRow};
use zerodrop_store::orders::{self, OrderRow};
use zerodrop_store::{now_ms, StoreError};

/// A run that fails (the database, a provider that does not answer the agreement query)
/// is retried with backoff; 200 attempts with backoff capped at 10 minutes span more than
/// a day, longer than any grace, after which a person sees the agreement.
pub const ATTEMPTS_MAX: i64 = 200;

/// How often an attempt looks again at an order still awaiting its outcome. The order's
/// own query schedule and expiry settle it within its TTL; this only notices the result.
pub const ORDER_OUTCOME_POLL_MS: i64 = 30_000;

impl Job for RenewAgreement {
    const KIND: &'static str = "renew_agreement";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        let period = self.period_end_ms.map_or_else(|| "first".to_owned(), |ms| ms.to_string());
        format!("renew_agreement:{}:{period}:{}", self.agreement_id, self.attempt)
    }

    fn order_id(&self) -> Option<OrderId> {
        None
    }

    async fn run(self, services: &Services, run: &Run) -> Outcome {
        attempt(services, &self, run).await
    }
}

impl Job for LapseAgreement {
    const KIND: &'static str = "lapse_agreement";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        format!("lapse_agreement:{}:{}", self.agreement_id, self.period_end_ms)
    }

    fn order_id(&self) -> Option<OrderId> {
        None
    }

    async fn run(self, services: &Services, run: &Run) -> Outcome {
        lapse(services, &self, run).await
    }
}

impl Job for RemindAgreement {
    const KIND: &'static str = "remind_agreement";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        format!("remind_agreement:{}:{}", self.agreement_id, self.period_end_ms)
    }

    fn order_id(&self) -> Option<OrderId> {
        None
    }

    async fn run(self, services: &Services, run: &Run) -> Outcome {
        remind(services, &self, run).await
    }
}

impl Job for RemindMembership {
    const KIND: &'static str = "remind_membership";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        format!("remind_membership:{}:{}:{}", self.user_id, self.plan, self.ends_at_ms)
    }

    fn order_id(&self) -> Option<OrderId> {
        None
    }

    async fn run(self, services: &Services, _run: &Run) -> Outcome {
        match remind_membership(services, &self).await {
            Ok(()) => Outcome::Done,
            Err(e) => e.into(),
        }
    }
}

/// Announces a membership's end, unless it was extended since (that extension scheduled
/// its own reminder) or an agreement still renews it (its renewal reminder says more).
async fn remind_membership(services: &Services, job: &RemindMembership) -> Result<(), StoreError> {
    let now = now_ms();
    let mut tx = services.store.begin().await?;
    let current = zerodrop_store::memberships::for_user(&mut tx, &job.user_id).await?;
    if !current.iter().any(|m| m.plan == job.plan && m.ends_at_ms == job.ends_at_ms) {
        return Ok(());
    }
    let renewing = agreements::list_for_user(&mut tx, &job.user_id).await?.into_iter().any(|a| {
        let membership = services.catalog.plans().get(&a.plan).map(|p| p.membership.as_str());
        membership == Some(job.plan.as_str()) && matches!(a.state, AgreementState::Active | AgreementState::Paused)
    });
    if renewing {
        return Ok(());
    }
    let body = notice::expiry_reminder(&job.title, job.ends_at_ms);
    let key = format!("expiry_reminder:{}:{}:{}", job.user_id, job.plan, job.ends_at_ms);
    messages::post(&mut tx, &services.config.messages, &job.user_id, "expiry_reminder", &body, &key, now).await?;
    tx.commit().await?;
    services.wake();
    Ok(())
}

/// One charge attempt (see the module's comment).
async fn attempt(services: &Services, job: &RenewAgreement, run: &Run) -> Outcome {
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
        Charged::PastValidity => {
            expire_past_validity(services, &row.id, now).await?;
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

/// The agreement outlived its validity at the provider, which now refuses its charges:
/// terminated `expired` here (the provider unsign follows, harmlessly), and the user told.
async fn expire_past_validity(services: &Services, id: &str, now: i64) -> Result<(), StoreError> {
    let mut tx = services.store.begin().await?;
    let mut row = agreements::lock(&mut tx, id).await?;
    if row.state.is_terminated_locally() {
        return Ok(());
    }
    let event = AgreementEvent::TerminationCommitted { mode: zerodrop_domain::TerminationMode::Expired };
    let data = json!({ "effective_at_ms": now, "reason": "past_validity_at_provider" });
    timeline::append(&mut tx, &mut row, NewAgreementEvent::state(event, &format!("agreement:{id}"), data), now).await?;
    crate::flows::agreement::terminate::enqueue_unsign(&mut tx, id, now).await?;
    post_state_message(&mut tx, services, &row, now).await?;
    tx.commit().await
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
        // The paid path recorded the period (and scheduled the next) in the payment's
        // transaction, or refunded a charge that lost to a termination.
        OrderStatus::Paid | OrderStatus::Delivered => Ok(Outcome::Done),
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
            super::enqueue(&mut tx, &next, at, now).await?;
        }
        (Some(period_end_ms), None) => {
            let lapse =
                LapseAgreement { agreement_id: row.id.clone(), paid_until_ms: job.paid_until_ms, period_end_ms };
            super::enqueue(&mut tx, &lapse, lapse_at, now).await?;
        }
        (None, _) => {}
    }
    tx.commit().await?;
    services.wake();
    Ok(())
}

/// The grace ran out: the membership lapses; the agreement stays (and the next renewal
/// is scheduled) or is terminated `expired`, by the terms' lapse policy.
async fn lapse(services: &Services, job: &LapseAgreement, run: &Run) -> Outcome {
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
            crate::flows::agreement::terminate::enqueue_unsign(&mut tx, &row.id, now).await?;
            None
        }
        None => {
            let next_end = period_end_after_lapse(&terms, job.period_end_ms);
            let data = json!({ "period_end_ms": job.period_end_ms, "next_period_end_ms": next_end });
            timeline::append(&mut tx, &mut row, NewAgreementEvent::new(Kind::Recorded("lapsed"), &cause, data), now)
                .await?;
            schedule_renewal(&mut tx, &row, next_end, now).await?;
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

/// The reminder before a renewal charge (amount, date, terms version, the way out). An
/// agreement that no longer renews says nothing here: its membership's end is announced
/// by the membership's own reminder (`RemindMembership`).
async fn remind(services: &Services, job: &RemindAgreement, _run: &Run) -> Outcome {
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
    let body = match row.state {
        AgreementState::Active | AgreementState::Paused => {
            let charge_at = job.period_end_ms - CHARGE_LEAD_DAYS * DAY_MS;
            notice::renewal_reminder(terms, &plan.title, charge_at, job.period_end_ms)
        }
        // Not signed, or no longer renewing: the membership's own reminder (scheduled when
        // its period was delivered) announces its end, once.
        AgreementState::Signing | AgreementState::Terminating { .. } | AgreementState::Terminated { .. } => {
            return Ok(Outcome::Done);
        }
    };
    let kind = "renewal_reminder";
    let key = format!("{kind}:{}:{}", row.id, job.period_end_ms);
    messages::post(&mut tx, &services.config.messages, &row.user_id, kind, &body, &key, now).await?;
    tx.commit().await?;
    services.wake();
    Ok(Outcome::Done)
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
