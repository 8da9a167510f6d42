//! Job kinds. Each kind is one module here that holds its `KIND`, its attempt limit, its
//! payload (a serde struct, the only thing stored), its dedupe key and its `run`.
//!
//! This module is what flows import to enqueue a job: [`enqueue`] takes a typed [`Job`]
//! in the caller's transaction, so no flow builds a payload by hand. It imports no flow
//! and no kind; the kinds' runs import the flows they drive, and [`worker`] claims due
//! jobs and dispatches them by kind.
//!
//! Stored payloads outlive builds: a payload struct only ever gains fields with
//! `#[serde(default)]`, so a job enqueued by an older build still runs.

pub mod check_payment;
pub mod deadline;
pub mod deliver_external;
pub mod deliver_message;
pub mod expire_order;
pub mod late_sweep;
pub mod prune_refused;
pub mod query_payment;
pub mod reconcile_daily;
pub mod refund;
pub mod renew_agreement;
pub mod renewal;
pub mod repair_difference;
pub mod resolve_parked;
pub mod restock;
pub mod unsign;
pub mod worker;

use crate::services::Services;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use zerodrop_domain::order::OrderStatus;
use zerodrop_domain::OrderId;
use zerodrop_providers::{OrderRef, Provider};
use zerodrop_store::jobs::NewJob;
use zerodrop_store::orders::{self, OrderRow};
use zerodrop_store::{StoreError, Tx};

/// A kind of job: its payload is the value of the type.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind's name in the jobs table. Never renamed: stored jobs carry it.
    const KIND: &'static str;
    /// Failed runs before the job ends in `attention` (a scheduled poll is not a failure).
    const ATTEMPTS_MAX: i64;

    /// At most one job with this key is ever enqueued.
    fn dedupe_key(&self) -> String;

    /// The order the job works on, if any (stored beside the payload, for the console
    /// and for putting the order in front of a person when the job gives up).
    fn order_id(&self) -> Option<OrderId>;

    /// A notification the job works on, named when it gives up without an order.
    fn notification_id(&self) -> Option<i64> {
        None
    }

    /// One run. Idempotent: a run repeated after a crash changes nothing more.
    fn run(self, services: &Services, run: &Run) -> impl Future<Output = Outcome> + Send;
}

/// Enqueues `job` to run at `run_at_ms`, in the caller's transaction. `false` means a
/// job with the same dedupe key already exists (it is never enqueued twice).
pub async fn enqueue<J: Job>(tx: &mut Tx, job: &J, run_at_ms: i64, now_ms: i64) -> Result<bool, StoreError> {
    enqueue_bounded(tx, job, run_at_ms, J::ATTEMPTS_MAX, now_ms).await
}

/// [`enqueue`], with the attempts bounded by `max_attempts` instead of the kind's
/// constant: for a bound the platform configures (how long its own webhook may be down).
pub async fn enqueue_bounded<J: Job>(
    tx: &mut Tx,
    job: &J,
    run_at_ms: i64,
    max_attempts: i64,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let payload = serde_json::to_value(job)
        .map_err(|e| StoreError::Invariant(format!("job {} payload does not serialize: {e}", J::KIND)))?;
    let new = NewJob {
        kind: J::KIND,
        order_id: job.order_id(),
        payload,
        run_at_ms,
        max_attempts,
        dedupe_key: Some(job.dedupe_key()),
    };
    zerodrop_store::jobs::enqueue(tx, &new, now_ms).await
}

/// This run of a claimed job.
#[derive(Clone, Debug)]
pub struct Run {
    pub job_id: i64,
    /// Starting at 1.
    pub attempt: i64,
    /// The cause this run records instead of its job's, when it acts for a fact that has
    /// one of its own: a bill line's repair running the refund or deadline job's step
    /// records the bill line, not the repair job.
    pub cause: Option<String>,
}

impl Run {
    pub fn new(job_id: i64, attempt: i64) -> Run {
        Run { job_id, attempt, cause: None }
    }

    /// This run, acting for `cause`.
    pub fn for_cause(&self, cause: String) -> Run {
        Run { cause: Some(cause), ..self.clone() }
    }

    /// The cause recorded on events this run appends.
    pub fn cause(&self) -> String {
        match &self.cause {
            Some(cause) => cause.clone(),
            None => format!("job:{}", self.job_id),
        }
    }
}

/// What a run decided.
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

/// Turns a store result into the run's outcome.
pub fn done_or_retry(result: Result<(), StoreError>) -> Outcome {
    match result {
        Ok(()) => Outcome::Done,
        Err(e) => e.into(),
    }
}

/// The order, read outside any transaction. `Err` is the outcome to return.
pub async fn read_order(services: &Services, order_id: OrderId) -> Result<OrderRow, Outcome> {
    let mut conn = services.store.reader().await?;
    let order = orders::get(&mut conn, order_id).await?.ok_or_else(|| Outcome::Retry("order not found".into()))?;
    tracing::Span::current().record("order.no", order.order_no.as_str());
    Ok(order)
}

/// The order with its provider, if the order is still in `status`. `Err` is the outcome
/// to return: done when the order has moved on, a retry when something is missing.
pub async fn order_in_status(
    services: &Services,
    order_id: OrderId,
    status: OrderStatus,
) -> Result<(OrderRow, Arc<dyn Provider>), Outcome> {
    let order = read_order(services, order_id).await?;
    if order.status != status {
        return Err(Outcome::Done);
    }
    let provider = services
        .provider(&order.provider)
        .cloned()
        .ok_or_else(|| Outcome::Retry(format!("provider {} is not configured", order.provider)))?;
    Ok((order, provider))
}

/// What a provider needs to know about a stored order.
pub fn order_ref(order: &OrderRow) -> OrderRef {
    OrderRef {
        order_no: order.order_no.to_string(),
        amount: order.amount,
        subject: order.product.title.clone(),
        expires_at_ms: order.expires_at_ms,
        trade_no: None,
    }
}

#[cfg(test)]
mod tests {
    use super::check_payment::CheckPayment;
    use super::deadline::Deadline;
    use super::deliver_external::DeliverExternal;
    use super::expire_order::ExpireOrder;
    use super::late_sweep::LateSweep;
    use super::query_payment::QueryPayment;
    use super::refund::Refund;
    use super::resolve_parked::ResolveParked;
    use super::restock::Restock;
    use super::Job;
    use serde_json::{json, Value};

    const ORDER: &str = "0192c9d8-6f00-7a00-8000-000000000001";

    /// Decodes a payload exactly as an earlier build stored it, and checks what the
    /// typed payload makes of it.
    fn legacy<J: Job>(payload: Value) -> J {
        serde_json::from_value(payload.clone()).unwrap_or_else(|e| panic!("{} {payload}: {e}", J::KIND))
    }

    #[test]
    fn payloads_stored_by_earlier_builds_still_decode() {
        let order = json!({ "order_id": ORDER });
        assert_eq!(legacy::<QueryPayment>(order.clone()).order_id.to_string(), ORDER);
        assert_eq!(legacy::<ExpireOrder>(order.clone()).order_id.to_string(), ORDER);
        assert_eq!(legacy::<LateSweep>(order.clone()).order_id.to_string(), ORDER);
        assert_eq!(legacy::<Deadline>(order).order_id.to_string(), ORDER);
        let first = legacy::<DeliverExternal>(json!({ "order_id": ORDER, "replay": false }));
        assert!(!first.replay && first.replay_id.is_none());
        let replay = legacy::<DeliverExternal>(json!({ "order_id": ORDER, "replay": true }));
        assert!(replay.replay, "an old replay still runs for a delivered order");
        let refund = legacy::<Refund>(json!({ "refund_id": "r-1" }));
        assert_eq!((refund.refund_id.as_str(), refund.order_id), ("r-1", None));
        let parked = legacy::<ResolveParked>(json!({ "notification_id": 42, "provider": "sandbox" }));
        assert_eq!((parked.notification_id, parked.provider.as_str()), (42, "sandbox"));
        let restock = legacy::<Restock>(json!({ "sku": "card_50", "batch": "b-1" }));
        assert_eq!((restock.sku.as_str(), restock.batch.as_str()), ("card_50", "b-1"));
    }

    #[test]
    fn a_late_sweep_stored_by_an_earlier_build_decodes_with_its_key_and_joins_the_schedule() {
        // Earlier builds stored one sweep per expired order, 10 minutes after expiry.
        let sweep = legacy::<LateSweep>(json!({ "order_id": ORDER }));
        assert_eq!(sweep.dedupe_key(), format!("late_sweep:{ORDER}"));
        assert_eq!(
            serde_json::to_value(&sweep).unwrap(),
            json!({ "order_id": ORDER }),
            "the stored shape is unchanged"
        );
        let points = crate::config::OrderConfig::default().late_sweep_points_secs();
        let expired = 1_000_000;
        let after_old_sweep = crate::schedule::next_sweep_at(&points, expired, expired + 600_000);
        assert_eq!(after_old_sweep, Some(expired + 3_600_000), "the next sweep is the schedule's first");
    }

    #[test]
    fn a_check_burst_is_one_job_per_order_and_minute() {
        let order_id = zerodrop_domain::OrderId::parse(ORDER).unwrap();
        let at = |started_at_ms| CheckPayment { order_id, started_at_ms };
        assert_eq!(at(120_000).dedupe_key(), format!("check:{ORDER}:2"));
        assert_eq!(at(120_000).dedupe_key(), at(179_999).dedupe_key(), "calls within a minute share a burst");
        assert_ne!(at(179_999).dedupe_key(), at(180_000).dedupe_key());
        assert_eq!(at(120_000).first_run_at(), 125_000, "the call asks at once itself; the job follows at +5 s");
        let decoded = legacy::<CheckPayment>(json!({ "order_id": ORDER, "started_at_ms": 120_000 }));
        assert_eq!(decoded.started_at_ms, 120_000);
    }

    #[test]
    fn dedupe_keys_are_those_earlier_builds_used() {
        let order_id = zerodrop_domain::OrderId::parse(ORDER).unwrap();
        assert_eq!(QueryPayment { order_id }.dedupe_key(), format!("query:{ORDER}"));
        assert_eq!(ExpireOrder { order_id }.dedupe_key(), format!("expire:{ORDER}"));
        assert_eq!(LateSweep { order_id }.dedupe_key(), format!("late_sweep:{ORDER}"));
        assert_eq!(Deadline { order_id }.dedupe_key(), format!("deadline:{ORDER}"));
        assert_eq!(DeliverExternal::first(order_id).dedupe_key(), format!("deliver_external:{ORDER}"));
        assert_eq!(
            DeliverExternal::replay(order_id, "x".into()).dedupe_key(),
            format!("deliver_external:{ORDER}:replay:x")
        );
        assert_eq!(Refund { refund_id: "r".into(), order_id: None }.dedupe_key(), "refund:r");
        let unsign = super::unsign::UnsignAgreement { agreement_id: "agr_1".into(), late_sign: false };
        assert_eq!(unsign.dedupe_key(), zerodrop_store::agreements::unsign_job_key("agr_1"));
        assert_eq!(legacy::<super::unsign::UnsignAgreement>(json!({ "agreement_id": "agr_1" })).agreement_id, "agr_1");
        assert_eq!(ResolveParked { notification_id: 7, provider: "s".into() }.dedupe_key(), "parked:7");
        assert_eq!(Restock { sku: "s".into(), batch: "b".into() }.dedupe_key(), "restock:b");
    }

    #[test]
    fn renewal_keys_name_the_agreement_the_period_and_the_attempt() {
        use super::deliver_message::DeliverMessage;
        use super::renewal::{LapseAgreement, RemindAgreement, RemindMembership, RenewAgreement};
        let attempt = |period_end_ms, attempt| RenewAgreement {
            agreement_id: "agr_1".into(),
            paid_until_ms: period_end_ms,
            period_end_ms,
            attempt,
            scheduled_at_ms: 5,
        };
        assert_eq!(attempt(None, 0).dedupe_key(), "renew_agreement:agr_1:first:0");
        assert_eq!(attempt(Some(9), 2).dedupe_key(), "renew_agreement:agr_1:9:2");
        let lapse = LapseAgreement { agreement_id: "agr_1".into(), paid_until_ms: Some(9), period_end_ms: 9 };
        assert_eq!(lapse.dedupe_key(), "lapse_agreement:agr_1:9");
        assert_eq!(
            RemindAgreement { agreement_id: "agr_1".into(), period_end_ms: 9 }.dedupe_key(),
            "remind_agreement:agr_1:9"
        );
        let user = zerodrop_domain::UserId::parse("u-1").unwrap();
        let membership = RemindMembership { user_id: user, plan: "svip".into(), title: "SVIP".into(), ends_at_ms: 9 };
        assert_eq!(membership.dedupe_key(), "remind_membership:u-1:svip:9");
        assert_eq!(DeliverMessage { message_id: 7 }.dedupe_key(), "deliver_message:7");
        let stored = legacy::<RenewAgreement>(json!({ "agreement_id": "agr_1", "paid_until_ms": null,
            "period_end_ms": null, "attempt": 0, "scheduled_at_ms": 5 }));
        assert_eq!(stored.dedupe_key(), "renew_agreement:agr_1:first:0");
    }

    #[test]
    fn a_payload_of_the_wrong_shape_is_refused_not_guessed() {
        assert!(serde_json::from_value::<Deadline>(json!({ "order": ORDER })).is_err());
        assert!(serde_json::from_value::<Deadline>(json!({ "order_id": "not-an-id" })).is_err());
        assert!(serde_json::from_value::<Refund>(json!({})).is_err());
    }
}
