//! The external delivery job: one attempt per run, each recorded in the order's timeline;
//! retried with backoff for more than a day, while the deadline job guards the promise.

use super::{order_id_of, Outcome};
use crate::app::App;
use crate::delivery;
use crate::external::{self, Answer, Attempt};
use serde_json::json;
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_domain::ProductKind;
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::jobs::ClaimedJob;
use zerodrop_store::{now_ms, orders, StoreError};

pub async fn run(app: &App, job: &ClaimedJob) -> Outcome {
    let order_id = match order_id_of(job) {
        Ok(id) => id,
        Err(outcome) => return outcome,
    };
    let replay = job.payload.get("replay").and_then(|v| v.as_bool()).unwrap_or(false);
    let order = {
        let mut conn = match app.store.reader().await {
            Ok(conn) => conn,
            Err(e) => return e.into(),
        };
        match orders::get(&mut conn, order_id).await {
            Ok(Some(order)) => order,
            Ok(None) => return Outcome::Retry("order not found".into()),
            Err(e) => return e.into(),
        }
    };
    let wanted = order.status == OrderStatus::Paid || (replay && order.status == OrderStatus::Delivered);
    if !wanted {
        return Outcome::Done; // delivered, refunded or escalated meanwhile: stop sending
    }
    let ProductKind::External { endpoint, .. } = &order.product.kind else {
        return Outcome::Retry("not an external product".into());
    };
    let Some(endpoint) = app.endpoint(endpoint) else {
        return Outcome::Retry(format!("delivery endpoint {endpoint} is not configured"));
    };
    let attempt = external::send(&app.http, endpoint, &order, now_ms() / 1000).await;
    let retry = match &attempt.answer {
        Answer::Failed(error) => Some(error.clone()),
        Answer::Delivered | Answer::Accepted | Answer::Refused => None,
    };
    match record(app, job, order_id, &attempt, replay).await {
        Ok(()) => match retry {
            Some(error) => Outcome::Retry(format!("delivery endpoint: {error}")),
            None => Outcome::Done,
        },
        Err(e) => e.into(),
    }
}

async fn record(
    app: &App,
    job: &ClaimedJob,
    order_id: zerodrop_domain::OrderId,
    attempt: &Attempt,
    replay: bool,
) -> Result<(), StoreError> {
    let mut tx = app.store.begin().await?;
    let now = now_ms();
    let cause = format!("job:{}", job.id);
    let mut order = orders::lock(&mut tx, order_id).await?;
    let data = json!({
        "attempt": job.attempt, "http_status": attempt.status, "latency_ms": attempt.latency_ms,
        "response_excerpt": attempt.excerpt, "outcome": format!("{:?}", attempt.answer), "replay": replay,
    });
    events::append(&mut tx, &mut order, NewEvent::new(EventKind::DeliveryAttempted, Actor::System, &cause, data), now)
        .await?;
    let paid = order.status == OrderStatus::Paid;
    match &attempt.answer {
        Answer::Delivered if paid => {
            delivery::complete_later(&mut tx, &mut order, Some(json!({ "http_status": attempt.status })), now).await?;
        }
        Answer::Accepted if paid => {
            let data = json!({ "http_status": attempt.status, "awaiting": "confirmation" });
            events::append(
                &mut tx,
                &mut order,
                NewEvent::new(EventKind::DeliveryAccepted, Actor::System, &cause, data),
                now,
            )
            .await?;
        }
        Answer::Refused if paid => {
            let data = json!({ "http_status": attempt.status, "reason": attempt.excerpt });
            delivery::refused_in(&mut tx, &mut order, &cause, data, now).await?;
        }
        // Delivered while the deadline was refunding it: the user may hold both.
        Answer::Delivered
            if !replay
                && matches!(order.status, OrderStatus::RefundDue | OrderStatus::Refunding | OrderStatus::Refunded) =>
        {
            let data = json!({ "http_status": attempt.status });
            delivery::arrived_after_refund_in(&mut tx, &mut order, &cause, data, now).await?;
        }
        // A replay of a delivered order, or a refused or accepted order whose money is
        // already going back: the attempt is evidence and nothing else changes (a later
        // confirmation of an accepted one is checked when it comes).
        Answer::Delivered | Answer::Accepted | Answer::Refused | Answer::Failed(_) => {}
    }
    tx.commit().await
}
