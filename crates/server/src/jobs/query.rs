//! Asking the provider about unpaid orders on a schedule (S1), and once more after
//! expiry (late payments). A payment found by a query takes the same path as a notified one.

use super::{order_id_of, order_ref, Outcome};
use crate::app::App;
use crate::config::OrderConfig;
use crate::payment::{self, PaymentFact};
use serde_json::json;
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_providers::PaymentStatus;
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::jobs::ClaimedJob;
use zerodrop_store::payments::PaymentSource;
use zerodrop_store::{now_ms, orders, StoreError};

/// The next scheduled query after `now`, or `None` once the schedule (or the order's
/// life) is over and the expiry job takes over.
pub fn next_query_at(
    config: &OrderConfig,
    created_ms: i64,
    expires_ms: i64,
    now_ms: i64,
) -> Option<i64> {
    config
        .query_schedule_secs
        .iter()
        .map(|secs| created_ms + secs * 1000)
        .filter(|at| *at > now_ms && *at < expires_ms)
        .min()
}

pub async fn query_payment(app: &App, job: &ClaimedJob) -> Outcome {
    let order_id = match order_id_of(job) {
        Ok(id) => id,
        Err(outcome) => return outcome,
    };
    let order = match load(app, order_id).await {
        Ok(order) => order,
        Err(e) => return e.into(),
    };
    if order.status != OrderStatus::AwaitingPayment {
        return Outcome::Done;
    }
    let Some(provider) = app.provider(&order.provider).cloned() else {
        return Outcome::Retry(format!("provider {} is not configured", order.provider));
    };
    let answer = provider.query_payment(&order_ref(&order)).await;
    let cause = format!("job:{}", job.id);
    let note = match answer {
        Ok(PaymentStatus::Paid {
            trade_no,
            amount,
            paid_at_ms,
        }) => {
            let fact = PaymentFact {
                provider: order.provider.clone(),
                trade_no,
                amount,
                paid_at_ms,
            };
            return match payment::record(app, order.id, &fact, PaymentSource::Query, &cause).await {
                Ok(recorded) => {
                    tracing::info!(order.no = %order.order_no, ?recorded, "payment found by query");
                    Outcome::Done
                }
                Err(e) => e.into(),
            };
        }
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("error: {e}"),
    };
    if let Err(e) = note_query(app, order.id, &cause, &note).await {
        return e.into();
    }
    match next_query_at(
        &app.config.orders,
        order.created_at_ms,
        order.expires_at_ms,
        now_ms(),
    ) {
        Some(at) => Outcome::RunAgainAt(at, Some(note)),
        None => Outcome::Done,
    }
}

/// After expiry, one more look: a payment that raced the close is late, and is
/// delivered or refunded by the product's policy, never ignored.
pub async fn late_sweep(app: &App, job: &ClaimedJob) -> Outcome {
    let order_id = match order_id_of(job) {
        Ok(id) => id,
        Err(outcome) => return outcome,
    };
    let order = match load(app, order_id).await {
        Ok(order) => order,
        Err(e) => return e.into(),
    };
    if order.status != OrderStatus::Expired {
        return Outcome::Done;
    }
    let Some(provider) = app.provider(&order.provider).cloned() else {
        return Outcome::Retry(format!("provider {} is not configured", order.provider));
    };
    let cause = format!("job:{}", job.id);
    match provider.query_payment(&order_ref(&order)).await {
        Ok(PaymentStatus::Paid {
            trade_no,
            amount,
            paid_at_ms,
        }) => {
            let fact = PaymentFact {
                provider: order.provider.clone(),
                trade_no,
                amount,
                paid_at_ms,
            };
            match payment::record(app, order.id, &fact, PaymentSource::Query, &cause).await {
                Ok(recorded) => {
                    tracing::info!(order.no = %order.order_no, ?recorded, "late payment found by the sweep");
                    Outcome::Done
                }
                Err(e) => e.into(),
            }
        }
        Ok(other) => match note_query(app, order.id, &cause, &format!("{other:?}")).await {
            Ok(()) => Outcome::Done,
            Err(e) => e.into(),
        },
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

async fn load(
    app: &App,
    order_id: zerodrop_domain::OrderId,
) -> Result<orders::OrderRow, StoreError> {
    let mut conn = app.store.reader().await?;
    orders::get(&mut conn, order_id)
        .await?
        .ok_or(StoreError::NotFound)
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
    let event = NewEvent::new(
        EventKind::ProviderQueried,
        Actor::System,
        cause,
        json!({ "answer": answer }),
    );
    events::append(&mut tx, &mut order, event, now_ms()).await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_skips_past_points_and_stops_at_expiry() {
        let config = OrderConfig {
            ttl_secs: 900,
            query_schedule_secs: vec![30, 60, 120, 300, 600],
            late_sweep_secs: 600,
        };
        assert_eq!(next_query_at(&config, 0, 900_000, 0), Some(30_000));
        assert_eq!(next_query_at(&config, 0, 900_000, 30_000), Some(60_000));
        assert_eq!(next_query_at(&config, 0, 900_000, 599_999), Some(600_000));
        assert_eq!(next_query_at(&config, 0, 900_000, 600_000), None);
        assert_eq!(
            next_query_at(&config, 0, 60_000, 30_000),
            None,
            "a point at expiry is the expiry job's"
        );
    }
}
