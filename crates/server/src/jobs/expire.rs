//! Expiry: close the order at the provider, ask once more, and only then mark it
//! expired. A close refused because the trade is paid, or a final query that finds a
//! payment, records it like any other. An expired order gets one late sweep later.

use super::{order_in_status, order_ref, record_found, Outcome, LATE_SWEEP};
use crate::app::App;
use serde_json::json;
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_providers::PaymentStatus;
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::jobs::{self as queue, NewJob};
use zerodrop_store::payments::PaymentSource;
use zerodrop_store::{now_ms, orders, StoreError};

/// Late sweeps retry for about an hour before a person is asked to check the provider.
const LATE_SWEEP_ATTEMPTS_MAX: i64 = 15;

pub async fn expire_order(app: &App, job: &queue::ClaimedJob) -> Outcome {
    let (order, provider) = match order_in_status(app, job, OrderStatus::AwaitingPayment).await {
        Ok(found) => found,
        Err(outcome) => return outcome,
    };
    let reference = order_ref(&order);
    // Closing twice is harmless (the second answer is "not open"), so a retry after a
    // failed query simply closes again.
    let closed = match provider.close_payment(&reference).await {
        Ok(outcome) => outcome,
        Err(e) => return Outcome::Retry(format!("close: {e}")),
    };
    let answer = match provider.query_payment(&reference).await {
        Ok(answer) => answer,
        Err(e) => return Outcome::Retry(format!("query after close: {e}")),
    };
    if let PaymentStatus::Paid { trade_no, amount, paid_at_ms } = answer {
        return record_found(app, job, &order, (trade_no, amount, paid_at_ms), PaymentSource::Close).await;
    }
    let data = json!({ "close": format!("{closed:?}"), "query": format!("{answer:?}") });
    match mark_expired(app, order.id, &format!("job:{}", job.id), data).await {
        Ok(()) => Outcome::Done,
        Err(e) => e.into(),
    }
}

async fn mark_expired(
    app: &App,
    order_id: zerodrop_domain::OrderId,
    cause: &str,
    data: serde_json::Value,
) -> Result<(), StoreError> {
    let mut tx = app.store.begin().await?;
    let now = now_ms();
    let mut order = orders::lock(&mut tx, order_id).await?;
    // A payment recorded while we were asking wins: nothing to expire.
    if order.status != OrderStatus::AwaitingPayment {
        return Ok(());
    }
    events::append(
        &mut tx,
        &mut order,
        NewEvent::new(EventKind::ProviderCloseRequested, Actor::System, cause, data),
        now,
    )
    .await?;
    events::append(&mut tx, &mut order, NewEvent::new(EventKind::Expired, Actor::System, cause, json!({})), now)
        .await?;
    let sweep = NewJob {
        kind: LATE_SWEEP,
        order_id: Some(order_id),
        payload: json!({ "order_id": order_id.to_string() }),
        run_at_ms: now + app.config.orders.late_sweep_secs * 1000,
        max_attempts: LATE_SWEEP_ATTEMPTS_MAX,
        dedupe_key: Some(format!("late_sweep:{order_id}")),
    };
    queue::enqueue(&mut tx, &sweep, now).await?;
    tx.commit().await
}
