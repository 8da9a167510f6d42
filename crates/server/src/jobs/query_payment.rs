//! Asking the provider about an unpaid order on a schedule, so a payment whose
//! notifications were lost is still found. A payment found by a query takes the same path
//! as a notified one.

use super::{order_in_status, order_ref, Job, Outcome, Run};
use crate::config::OrderConfig;
use crate::flows::payment::{self, PaymentFact};
use crate::services::Services;
use serde::{Deserialize, Serialize};
use serde_json::json;
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_domain::OrderId;
use zerodrop_providers::PaymentStatus;
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::payments::PaymentSource;
use zerodrop_store::{now_ms, orders, Store, StoreError};

/// Payment queries are a schedule, not retries; a failing one moves to its next slot.
const ATTEMPTS_MAX: i64 = 5;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueryPayment {
    pub order_id: OrderId,
}

impl Job for QueryPayment {
    const KIND: &'static str = "query_payment";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        format!("query:{}", self.order_id)
    }

    fn order_id(&self) -> Option<OrderId> {
        Some(self.order_id)
    }

    async fn run(self, services: &Services, run: &Run) -> Outcome {
        let (order, provider) = match order_in_status(services, self.order_id, OrderStatus::AwaitingPayment).await {
            Ok(found) => found,
            Err(outcome) => return outcome,
        };
        let note = match provider.query_payment(&order_ref(&order)).await {
            Ok(PaymentStatus::Paid { trade_no, amount, paid_at_ms }) => {
                let fact = PaymentFact { provider: order.provider.clone(), trade_no, amount, paid_at_ms };
                return payment::record_found(&services.store, &order, &fact, PaymentSource::Query, &run.cause())
                    .await
                    .map_or_else(Outcome::from, |_| Outcome::Done);
            }
            Ok(other) => format!("{other:?}"),
            Err(e) => format!("error: {e}"),
        };
        if let Err(e) = note_query(&services.store, order.id, &run.cause(), &note).await {
            return e.into();
        }
        match next_query_at(&services.config.orders, order.created_at_ms, order.expires_at_ms, now_ms()) {
            Some(at) => Outcome::RunAgainAt(at, Some(note)),
            None => Outcome::Done,
        }
    }
}

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

/// Puts the provider's answer in the order's timeline, so a person can see what was
/// asked and when.
pub async fn note_query(store: &Store, order_id: OrderId, cause: &str, answer: &str) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
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
