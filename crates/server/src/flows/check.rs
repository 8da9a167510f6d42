//! The check call: the app says its user is back from the payment sheet, or tapped "I
//! paid". An order awaiting payment gets a burst of provider queries (at once, then
//! +5 s, +15 s, +30 s, +60 s: the `check_payment` job); any other order is answered as it
//! stands, with no query.
//!
//! Calls are rate-limited per order, so a button hammered a thousand times costs the
//! provider one burst: a call while a burst is under way starts nothing, and the burst's
//! dedupe key (order and minute) makes concurrent calls, on any process, start one.

use crate::jobs::check_payment::CheckPayment;
use crate::jobs::query_payment::take_answer;
use crate::jobs::{enqueue, order_ref, Job};
use crate::services::Services;
use std::time::Duration;
use zerodrop_domain::order::OrderStatus;
use zerodrop_domain::{OrderId, OrderNo};
use zerodrop_store::{jobs, orders, StoreError};

/// Longest wait for the call's own query. The app is waiting with a user watching; a
/// slower provider is asked again by the burst 5 s later, so the call answers with the
/// order as it stands instead of hanging for the provider's full timeout.
pub const INLINE_QUERY_MS_MAX: u64 = 3_000;

/// The cause on the events the call's own query appends (the burst's later queries are
/// the job's, `job:<id>`).
const CAUSE: &str = "api:check";

/// What a check call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    /// This call began a burst (and asked the provider before answering).
    pub started: bool,
    /// A burst's queries are still scheduled.
    pub under_way: bool,
}

/// Checks the order numbered `order_no`; `None` when there is no such order (a malformed
/// number included). The caller reads the order afterwards, to answer with its state.
pub async fn check(services: &Services, order_no: &str, now_ms: i64) -> Result<Option<Checked>, StoreError> {
    if OrderNo::parse(order_no).is_none() {
        return Ok(None);
    }
    let order = {
        let mut conn = services.store.reader().await?;
        let Some(order) = orders::get_by_no(&mut conn, order_no).await? else { return Ok(None) };
        order
    };
    if order.status != OrderStatus::AwaitingPayment {
        return Ok(Some(Checked { started: false, under_way: false }));
    }
    // Read before writing: the calls that follow a burst's start (nearly all of a
    // hammered button) cost one read, never a write transaction.
    if burst_under_way(services, order.id).await? {
        return Ok(Some(Checked { started: false, under_way: true }));
    }
    let burst = CheckPayment { order_id: order.id, started_at_ms: now_ms };
    let mut tx = services.store.begin().await?;
    let started = enqueue(&mut tx, &burst, burst.first_run_at(), now_ms).await?;
    tx.commit().await?;
    if !started {
        // Another call began this minute's burst first (or it has already ended).
        let under_way = burst_under_way(services, order.id).await?;
        return Ok(Some(Checked { started: false, under_way }));
    }
    tracing::info!(order.no = %order.order_no, "check call: payment burst started");
    // The burst's first query, now, so the answer can already say "delivered". Without
    // the provider configured (removed since the order was made) the job's run retries.
    if let Some(provider) = services.provider(&order.provider).cloned() {
        // Only the question is bounded; what is done with the answer runs to its end.
        let limit = Duration::from_millis(INLINE_QUERY_MS_MAX);
        match tokio::time::timeout(limit, provider.query_payment(&order_ref(&order))).await {
            Ok(answer) => {
                take_answer(services, &order, answer, CAUSE).await?;
            }
            Err(_) => tracing::warn!(order.no = %order.order_no, "check call: the provider did not answer in time"),
        }
    }
    Ok(Some(Checked { started: true, under_way: true }))
}

async fn burst_under_way(services: &Services, order_id: OrderId) -> Result<bool, StoreError> {
    let mut conn = services.store.reader().await?;
    let queued = jobs::for_order(&mut conn, order_id).await?;
    Ok(queued.iter().any(|(kind, state, _, _)| kind == CheckPayment::KIND && state == "queued"))
}
