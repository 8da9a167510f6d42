//! The job workers: claim due jobs with a lease, run each with a time limit inside its
//! own span, and record the outcome: done, run again later (a poll), or failed (backoff;
//! when attempts run out, the job ends in `attention` and a person sees its order or
//! notification).

use super::check_payment::CheckPayment;
use super::deadline::Deadline;
use super::deliver_external::DeliverExternal;
use super::deliver_message::DeliverMessage;
use super::expire_order::ExpireOrder;
use super::late_sweep::LateSweep;
use super::prune_refused::PruneRefused;
use super::query_payment::QueryPayment;
use super::reconcile_daily::ReconcileDaily;
use super::refund::Refund;
use super::renewal::{LapseAgreement, RemindAgreement, RemindMembership, RenewAgreement};
use super::repair_difference::RepairDifference;
use super::resolve_parked::ResolveParked;
use super::restock::Restock;
use super::unsign::UnsignAgreement;
use super::{Job, Outcome, Run};
use crate::services::Services;
use serde_json::json;
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::Instrument;
use zerodrop_domain::order::{Actor, EventKind};
use zerodrop_domain::OrderId;
use zerodrop_store::attention::{self, NewItem};
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::jobs::{self as queue, ClaimedJob};
use zerodrop_store::{now_ms, orders, StoreError, Tx};

/// The kinds this build runs. A kind it does not know stays queued and visible for a
/// build that does; it is never claimed and dropped.
pub const HANDLED_KINDS: &[&str] = &[
    QueryPayment::KIND,
    ExpireOrder::KIND,
    LateSweep::KIND,
    ResolveParked::KIND,
    Refund::KIND,
    Deadline::KIND,
    DeliverExternal::KIND,
    Restock::KIND,
    CheckPayment::KIND,
    PruneRefused::KIND,
    RepairDifference::KIND,
    ReconcileDaily::KIND,
    RenewAgreement::KIND,
    LapseAgreement::KIND,
    RemindAgreement::KIND,
    RemindMembership::KIND,
    DeliverMessage::KIND,
    UnsignAgreement::KIND,
];

/// Time kept free between a run's limit and its lease, so a slow run is stopped before
/// another worker could take the same job over.
const LEASE_MARGIN_MS: i64 = 10_000;
/// Shortest time limit of a run, whatever the lease.
const RUN_MS_MIN: i64 = 1_000;
/// How long shutdown waits for running jobs before leaving them to lease expiry.
const SHUTDOWN_WAIT_MS: u64 = 10_000;
/// Pause after the queue itself failed (database unreachable), doubling from the first
/// up to the cap.
const CLAIM_ERROR_PAUSE_MS_FIRST: u64 = 100;
const CLAIM_ERROR_PAUSE_MS_MAX: u64 = 5_000;

/// Runs workers until `stop` turns true.
pub async fn run(services: Services, mut stop: tokio::sync::watch::Receiver<bool>) {
    let concurrency = services.config.jobs.concurrency;
    let poll = Duration::from_millis(services.config.jobs.poll_interval_ms);
    let mut running: JoinSet<()> = JoinSet::new();
    let mut error_pause_ms = CLAIM_ERROR_PAUSE_MS_FIRST;
    // The one job nothing else enqueues: every process that runs jobs asks for it, and
    // its dedupe key keeps it to one, ever.
    if let Err(e) = super::prune_refused::schedule(&services.store).await {
        tracing::warn!(error = %e, "the prune job could not be scheduled; the next start asks again");
    }
    loop {
        if *stop.borrow() {
            break;
        }
        while running.try_join_next().is_some() {}
        let free = concurrency.saturating_sub(running.len());
        let mut claimed_all = false;
        if free > 0 {
            let lease_ms = services.config.jobs.lease_ms;
            let owner = &services.instance_id;
            match queue::claim(&services.store, HANDLED_KINDS, owner, now_ms(), lease_ms, free as i64).await {
                Ok(jobs) => {
                    error_pause_ms = CLAIM_ERROR_PAUSE_MS_FIRST;
                    claimed_all = jobs.len() == free;
                    for job in jobs {
                        running.spawn(run_one(services.clone(), job));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not claim jobs");
                    tokio::time::sleep(Duration::from_millis(error_pause_ms)).await;
                    error_pause_ms = (error_pause_ms * 2).min(CLAIM_ERROR_PAUSE_MS_MAX);
                    continue;
                }
            }
        }
        if claimed_all {
            continue; // more may be due right now
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = services.wake_workers.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    let drain = async { while running.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_millis(SHUTDOWN_WAIT_MS), drain).await.is_err() {
        tracing::warn!("jobs still running at shutdown; their leases will expire and another worker resumes them");
    }
}

async fn run_one(services: Services, job: ClaimedJob) {
    let span = tracing::info_span!(
        "job",
        job.id = job.id,
        job.kind = %job.kind,
        job.attempt = job.attempt,
        order.id = job.order_id.as_deref().unwrap_or(""),
        order.no = tracing::field::Empty,
    );
    async {
        match job.kind.as_str() {
            QueryPayment::KIND => execute::<QueryPayment>(&services, &job).await,
            ExpireOrder::KIND => execute::<ExpireOrder>(&services, &job).await,
            LateSweep::KIND => execute::<LateSweep>(&services, &job).await,
            ResolveParked::KIND => execute::<ResolveParked>(&services, &job).await,
            Refund::KIND => execute::<Refund>(&services, &job).await,
            Deadline::KIND => execute::<Deadline>(&services, &job).await,
            DeliverExternal::KIND => execute::<DeliverExternal>(&services, &job).await,
            Restock::KIND => execute::<Restock>(&services, &job).await,
            CheckPayment::KIND => execute::<CheckPayment>(&services, &job).await,
            PruneRefused::KIND => execute::<PruneRefused>(&services, &job).await,
            RepairDifference::KIND => execute::<RepairDifference>(&services, &job).await,
            ReconcileDaily::KIND => execute::<ReconcileDaily>(&services, &job).await,
            RenewAgreement::KIND => execute::<RenewAgreement>(&services, &job).await,
            LapseAgreement::KIND => execute::<LapseAgreement>(&services, &job).await,
            RemindAgreement::KIND => execute::<RemindAgreement>(&services, &job).await,
            RemindMembership::KIND => execute::<RemindMembership>(&services, &job).await,
            DeliverMessage::KIND => execute::<DeliverMessage>(&services, &job).await,
            UnsignAgreement::KIND => execute::<UnsignAgreement>(&services, &job).await,
            other => {
                let outcome = Outcome::Retry(format!("no handler for job kind {other}"));
                record(&services, &job, outcome, None).await;
            }
        }
    }
    .instrument(span)
    .await
}

/// Decodes the stored payload as `J`, runs it within the time limit, records the outcome.
async fn execute<J: Job>(services: &Services, job: &ClaimedJob) {
    let typed: Result<J, _> = serde_json::from_value(job.payload.clone());
    let (outcome, notification_id) = match typed {
        Ok(typed) => {
            let notification_id = typed.notification_id();
            let run = Run::new(job.id, job.attempt);
            let limit_ms = (services.config.jobs.lease_ms - LEASE_MARGIN_MS).max(RUN_MS_MIN) as u64;
            let outcome = match tokio::time::timeout(Duration::from_millis(limit_ms), typed.run(services, &run)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Retry(format!("timed out after {limit_ms} ms")),
            };
            (outcome, notification_id)
        }
        // Still name the notification the job was about, for the person who gets it.
        Err(e) => (
            Outcome::Retry(format!("the stored payload is not a {} job: {e}", J::KIND)),
            job.payload.get("notification_id").and_then(serde_json::Value::as_i64),
        ),
    };
    record(services, job, outcome, notification_id).await;
}

async fn record(services: &Services, job: &ClaimedJob, outcome: Outcome, notification_id: Option<i64>) {
    if let Outcome::Retry(error) = &outcome {
        tracing::warn!(error = %error, "job failed");
    }
    if let Err(e) = finish(services, job, outcome, notification_id).await {
        // The lease expires and the job runs again; runs are idempotent.
        tracing::error!(error = %e, "could not record a job's outcome");
    }
}

async fn finish(
    services: &Services,
    job: &ClaimedJob,
    outcome: Outcome,
    notification_id: Option<i64>,
) -> Result<(), StoreError> {
    let mut tx = services.store.begin().await?;
    let now = now_ms();
    match outcome {
        Outcome::Done => queue::complete(&mut tx, job, now).await?,
        Outcome::RunAgainAt(at, note) => queue::run_again_at(&mut tx, job, at, note.as_deref()).await?,
        Outcome::Retry(error) => {
            if queue::fail(&mut tx, job, &error, now).await? {
                put_in_front_of_a_person(&mut tx, job, &error, notification_id, now).await?;
            }
        }
    }
    tx.commit().await
}

/// An exhausted job never disappears: its order is flagged (an event in its timeline),
/// or, for a job without an order, an attention item names what it was working on.
async fn put_in_front_of_a_person(
    tx: &mut Tx,
    job: &ClaimedJob,
    error: &str,
    notification_id: Option<i64>,
    now: i64,
) -> Result<(), StoreError> {
    let detail = json!({ "reason": format!("{}_exhausted", job.kind), "job_id": job.id, "attempts": job.attempt, "last_error": error });
    if let Some(order_id) = job.order_id.as_deref().and_then(OrderId::parse) {
        let mut order = orders::lock(tx, order_id).await?;
        let event = NewEvent::new(EventKind::AttentionRaised, Actor::System, &format!("job:{}", job.id), detail);
        return events::append(tx, &mut order, event, now).await;
    }
    let item =
        NewItem { notification_id, job_id: Some(job.id), ..NewItem::new(&format!("{}_exhausted", job.kind), detail) };
    attention::raise(tx, item, now).await.map(|_| ())
}
