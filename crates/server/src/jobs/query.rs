//! Asking the provider about unpaid orders on a schedule (S1), and once more after
//! expiry (late payments). A payment found by a query takes the same path as a notified one.

use super::{order_in_status, order_ref, record_found, Outcome};
use crate::app::App;
use crate::config::OrderConfig;
use serde_json::json;
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_providers::PaymentStatus;
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::jobs::ClaimedJob;
use zerodrop_store::payments::PaymentSource;
use zerodrop_store::{now_ms, orders, StoreError};

/// The next scheduled query after `now`, or `None` once the schedule (or the order's
/// life) is over and the expiry job takes over.
pub fn next_query_at(config: &OrderConfig, created_ms: i64, expires_ms: i64, now_ms: i64) -> Option<i64> {
    config
        .query_schedule_secs
        .iter()
        .map(|secs| created_ms + secs * 1000)
        .filter(|at| *at > now_ms && *at < expires_ms)
        .min()
}

pub async fn query_payment(app: &App, job: &ClaimedJob) -> Outcome {
    let (order, provider) = match order_in_status(app, job, OrderStatus::AwaitingPayment).await {
        Ok(found) => found,
        Err(outcome) => return outcome,
    };
    let note = match provider.query_payment(&order_ref(&order)).await {
        Ok(PaymentStatus::Paid { trade_no, amount, paid_at_ms }) => {
            return record_found(app, job, &order, (trade_no, amount, paid_at_ms), PaymentSource::Query).await;
        }
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("error: {e}"),
    };
    if let Err(e) = note_query(app, order.id, &format!("job:{}", job.id), &note).await {
        return e.into();
    }
    match next_query_at(&app.config.orders, order.created_at_ms, order.expires_at_ms, now_ms()) {
        Some(at) => Outcome::RunAgainAt(at, Some(note)),
        None => Outcome::Done,
    }
}

/// After expiry, one more look: a payment that raced the close is late, and is
/// delivered or refunded by the product's policy, never ignored.
pub async fn late_sweep(app: &App, job: &ClaimedJob) -> Outcome {
    let (order, provider) = match order_in_status(app, job, OrderStatus::Expired).await {
        Ok(found) => found,
        Err(outcome) => return outcome,
    };
    match provider.query_payment(&order_ref(&order)).await {
        Ok(PaymentStatus::Paid { trade_no, amount, paid_at_ms }) => {
            record_found(app, job, &order, (trade_no, amount, paid_at_ms), PaymentSource::Query).await
        }
        Ok(other) => match note_query(app, order.id, &format!("job:{}", job.id), &format!("{other:?}")).await {
            Ok(()) => Outcome::Done,
            Err(e) => e.into(),
        },
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

/// Puts the provider's answer in the order's timeline, so a person can see what was asked and when.
async fn note_query(
    app: &App,
    order_id: zerodrop_domain::OrderId,
    cause: &str,
    answer: &str,
) -> Result<(), StoreError> {
    let mut tx = app.store.begin().await?;
    let mut order = orders::lock(&mut tx, order_id).await?;
    let event = NewEvent::new(EventKind::ProviderQueried, Actor::System, cause, json!({ "answer": answer }));
    events::append(&mut tx, &mut order, event, now_ms()).await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_skips_past_points_and_stops_at_expiry() {
        let config =
            OrderConfig { ttl_secs: 900, query_schedule_secs: vec![30, 60, 120, 300, 600], late_sweep_secs: 600 };
        assert_eq!(next_query_at(&config, 0, 900_000, 0), Some(30_000));
        assert_eq!(next_query_at(&config, 0, 900_000, 30_000), Some(60_000));
        assert_eq!(next_query_at(&config, 0, 900_000, 599_999), Some(600_000));
        assert_eq!(next_query_at(&config, 0, 900_000, 600_000), None);
        assert_eq!(next_query_at(&config, 0, 60_000, 30_000), None, "a point at expiry is the expiry job's");
    }
}
