//! The job workers: claim due jobs with a lease, run each with a time limit, and record
//! the outcome: done, run again later (a poll), or failed (backoff; when attempts run
//! out, the job ends in `attention` and a person sees its order or notification).

pub mod deadline;
pub mod expire;
pub mod external;
pub mod parked;
pub mod query;
pub mod refund;
pub mod restock;

use crate::app::App;
use crate::payment::{self, PaymentFact};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_domain::OrderId;
use zerodrop_providers::Provider;
use zerodrop_store::attention::{self, NewItem};
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::jobs::{self as queue, ClaimedJob};
use zerodrop_store::payments::PaymentSource;
use zerodrop_store::{now_ms, orders, StoreError, Tx};

pub const QUERY_PAYMENT: &str = "query_payment";
pub const EXPIRE_ORDER: &str = "expire_order";
pub const LATE_SWEEP: &str = "late_sweep";
pub const RESOLVE_PARKED: &str = "resolve_parked";
pub const REFUND: &str = "refund";
pub const DEADLINE: &str = "deadline";
pub const DELIVER_EXTERNAL: &str = "deliver_external";
pub const RESTOCK: &str = "restock";

/// The kinds this build runs. A kind it does not know stays queued and visible for a
/// build that does; it is never claimed and dropped.
pub const HANDLED_KINDS: &[&str] =
    &[QUERY_PAYMENT, EXPIRE_ORDER, LATE_SWEEP, RESOLVE_PARKED, REFUND, DEADLINE, DELIVER_EXTERNAL, RESTOCK];

/// Time kept free between a handler's limit and its lease, so a slow handler is stopped
/// before another worker could take the same job over.
const LEASE_MARGIN_MS: i64 = 10_000;
/// How long shutdown waits for running jobs before leaving them to lease expiry.
const SHUTDOWN_WAIT_MS: u64 = 10_000;
/// Pause after the queue itself failed (database unreachable), growing to this cap.
const CLAIM_ERROR_PAUSE_MS_MAX: u64 = 5_000;

/// What a handler decided.
#[derive(Debug)]
pub enum Outcome {
    Done,
    /// Succeeded, and must run again at this time (a scheduled poll).
    RunAgainAt(i64, Option<String>),
    /// Failed; retry with backoff while attempts remain.
    Retry(String),
}

impl From<StoreError> for Outcome {
    fn from(e: StoreError) -> Outcome {
        Outcome::Retry(format!("database: {e}"))
    }
}

pub async fn run(app: App, mut stop: tokio::sync::watch::Receiver<bool>) {
    let concurrency = app.config.jobs.concurrency;
    let poll = Duration::from_millis(app.config.jobs.poll_interval_ms);
    let mut running: JoinSet<()> = JoinSet::new();
    let mut error_pause_ms = 100;
    loop {
        if *stop.borrow() {
            break;
        }
        while running.try_join_next().is_some() {}
        let free = concurrency.saturating_sub(running.len());
        let mut claimed_all = false;
        if free > 0 {
            let lease_ms = app.config.jobs.lease_ms;
            match queue::claim(&app.store, HANDLED_KINDS, &app.instance_id, now_ms(), lease_ms, free as i64).await {
                Ok(jobs) => {
                    error_pause_ms = 100;
                    claimed_all = jobs.len() == free;
                    for job in jobs {
                        running.spawn(run_one(app.clone(), job));
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
            _ = app.wake_workers.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    let drain = async { while running.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_millis(SHUTDOWN_WAIT_MS), drain).await.is_err() {
        tracing::warn!("jobs still running at shutdown; their leases will expire and another worker resumes them");
    }
}

async fn run_one(app: App, job: ClaimedJob) {
    let limit_ms = (app.config.jobs.lease_ms - LEASE_MARGIN_MS).max(1_000) as u64;
    let outcome = match tokio::time::timeout(Duration::from_millis(limit_ms), dispatch(&app, &job)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Retry(format!("timed out after {limit_ms} ms")),
    };
    if let Outcome::Retry(error) = &outcome {
        tracing::warn!(job.id = job.id, job.kind = %job.kind, attempt = job.attempt, error = %error, "job failed");
    }
    if let Err(e) = finish(&app, &job, outcome).await {
        // The lease expires and the job runs again; handlers are idempotent.
        tracing::error!(job.id = job.id, error = %e, "could not record a job's outcome");
    }
}

async fn dispatch(app: &App, job: &ClaimedJob) -> Outcome {
    match job.kind.as_str() {
        QUERY_PAYMENT => query::query_payment(app, job).await,
        LATE_SWEEP => query::late_sweep(app, job).await,
        EXPIRE_ORDER => expire::expire_order(app, job).await,
        RESOLVE_PARKED => parked::resolve(app, job).await,
        REFUND => refund::run(app, job).await,
        DEADLINE => deadline::run(app, job).await,
        DELIVER_EXTERNAL => external::run(app, job).await,
        RESTOCK => restock::run(app, job).await,
        other => Outcome::Retry(format!("no handler for job kind {other}")),
    }
}

async fn finish(app: &App, job: &ClaimedJob, outcome: Outcome) -> Result<(), StoreError> {
    let mut tx = app.store.begin().await?;
    let now = now_ms();
    match outcome {
        Outcome::Done => queue::complete(&mut tx, job, now).await?,
        Outcome::RunAgainAt(at, note) => queue::run_again_at(&mut tx, job, at, note.as_deref()).await?,
        Outcome::Retry(error) => {
            if queue::fail(&mut tx, job, &error, now).await? {
                put_in_front_of_a_person(&mut tx, job, &error, now).await?;
            }
        }
    }
    tx.commit().await
}

/// An exhausted job never disappears: its order is flagged (an event in its timeline),
/// or, for a job without an order, an attention item names what it was working on.
async fn put_in_front_of_a_person(tx: &mut Tx, job: &ClaimedJob, error: &str, now: i64) -> Result<(), StoreError> {
    let detail = json!({ "reason": format!("{}_exhausted", job.kind), "job_id": job.id, "attempts": job.attempt, "last_error": error });
    if let Some(order_id) = job.order_id.as_deref().and_then(OrderId::parse) {
        let mut order = orders::lock(tx, order_id).await?;
        let event = NewEvent::new(EventKind::AttentionRaised, Actor::System, &format!("job:{}", job.id), detail);
        return events::append(tx, &mut order, event, now).await;
    }
    let item = NewItem {
        order_id: None,
        notification_id: job.payload.get("notification_id").and_then(|v| v.as_i64()),
        job_id: Some(job.id),
        reason: format!("job {} exhausted its attempts", job.kind),
        detail,
    };
    attention::raise(tx, item, now).await.map(|_| ())
}

/// The job's order id.
pub(crate) fn order_id_of(job: &ClaimedJob) -> Result<OrderId, Outcome> {
    job.order_id.as_deref().and_then(OrderId::parse).ok_or_else(|| Outcome::Retry("job has no valid order id".into()))
}

/// The job's order with its provider, if the order is still in `status`. `Err` is the
/// outcome to return: done when the order has moved on, a retry when something is missing.
pub(crate) async fn order_in_status(
    app: &App,
    job: &ClaimedJob,
    status: OrderStatus,
) -> Result<(orders::OrderRow, Arc<dyn Provider>), Outcome> {
    let order_id = job
        .order_id
        .as_deref()
        .and_then(OrderId::parse)
        .ok_or_else(|| Outcome::Retry("job has no valid order id".into()))?;
    let mut conn = app.store.reader().await.map_err(Outcome::from)?;
    let order = orders::get(&mut conn, order_id)
        .await
        .map_err(Outcome::from)?
        .ok_or_else(|| Outcome::Retry("order not found".into()))?;
    if order.status != status {
        return Err(Outcome::Done);
    }
    let provider = app
        .provider(&order.provider)
        .cloned()
        .ok_or_else(|| Outcome::Retry(format!("provider {} is not configured", order.provider)))?;
    Ok((order, provider))
}

/// A payment a provider's answer revealed, recorded through the one payment path.
pub(crate) async fn record_found(
    app: &App,
    job: &ClaimedJob,
    order: &orders::OrderRow,
    found: (String, zerodrop_domain::Money, Option<i64>),
    source: PaymentSource,
) -> Outcome {
    let (trade_no, amount, paid_at_ms) = found;
    let fact = PaymentFact { provider: order.provider.clone(), trade_no, amount, paid_at_ms };
    match payment::record(app, order.id, &fact, source, &format!("job:{}", job.id)).await {
        Ok(recorded) => {
            tracing::info!(order.no = %order.order_no, ?recorded, source = source.as_str(), "payment found by asking the provider");
            Outcome::Done
        }
        Err(e) => e.into(),
    }
}

/// What a provider needs to know about a stored order.
pub(crate) fn order_ref(order: &orders::OrderRow) -> zerodrop_providers::OrderRef {
    zerodrop_providers::OrderRef {
        order_no: order.order_no.to_string(),
        amount: order.amount,
        subject: order.product.title.clone(),
        expires_at_ms: order.expires_at_ms,
    }
}
