//! Asking the provider about an unpaid order on a schedule, so a payment whose
//! notifications were lost is still found. A payment found by a query takes the same path
//! as a notified one.

use super::{order_in_status, order_ref, Job, Outcome, Run};
use crate::config::OrderConfig;
use crate::flows::payment::{self, PaymentFact, Recorded};
use crate::schedule;
use crate::services::Services;
use serde::{Deserialize, Serialize};
use serde_json::json;
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_domain::OrderId;
use zerodrop_providers::{PaymentStatus, Provider, ProviderError};
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::orders::OrderRow;
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
        let (order, note) = match ask_while_unpaid(services, self.order_id, run).await {
            Ok(unpaid) => unpaid,
            Err(outcome) => return outcome,
        };
        match next_query_at(&services.config.orders, order.created_at_ms, order.expires_at_ms, now_ms()) {
            Some(at) => Outcome::RunAgainAt(at, Some(note)),
            None => Outcome::Done,
        }
    }
}

/// The next scheduled query after `now`, or `None` once the schedule (or the order's
/// life) is over and the expiry job takes over.
pub fn next_query_at(config: &OrderConfig, created_ms: i64, expires_ms: i64, now_ms: i64) -> Option<i64> {
    schedule::next_open_query_at(&config.query_cadence, &config.query_schedule_secs, created_ms, expires_ms, now_ms)
}

/// What one question to the provider came to.
#[derive(Debug)]
pub enum Asked {
    /// Paid: recorded through the one payment path.
    Found(Recorded),
    /// Anything else, as noted in the order's timeline (an error too: the schedule asks again).
    NotPaid(String),
}

/// Asks the provider once about an unpaid order, and acts on the answer ([`take_answer`]).
/// Shared by the scheduled queries and the check call's burst, so both treat an answer alike.
/// One scheduled look at an order that should still be unpaid: the order and the
/// provider's answer in words when it is; `Err` is the run's outcome otherwise (moved on,
/// found paid and recorded, or a failure to retry). Shared by the cadence and the check
/// call's burst, which differ only in when they ask next.
pub async fn ask_while_unpaid(
    services: &Services,
    order_id: OrderId,
    run: &Run,
) -> Result<(OrderRow, String), Outcome> {
    let (order, provider) = order_in_status(services, order_id, OrderStatus::AwaitingPayment).await?;
    match ask(services, &order, provider.as_ref(), &run.cause()).await {
        Ok(Asked::Found(_)) => Err(Outcome::Done),
        Ok(Asked::NotPaid(note)) => Ok((order, note)),
        Err(e) => Err(e.into()),
    }
}

pub async fn ask(
    services: &Services,
    order: &OrderRow,
    provider: &dyn Provider,
    cause: &str,
) -> Result<Asked, StoreError> {
    let answer = provider.query_payment(&order_ref(order)).await;
    take_answer(services, order, answer, cause).await
}

/// A payment found is recorded through the one payment path; any other answer (an error
/// too) goes in the order's timeline.
pub async fn take_answer(
    services: &Services,
    order: &OrderRow,
    answer: Result<PaymentStatus, ProviderError>,
    cause: &str,
) -> Result<Asked, StoreError> {
    let note = match answer {
        Ok(PaymentStatus::Paid { trade_no, amount, paid_at_ms, answer }) => {
            let fact = PaymentFact { provider: order.provider.clone(), trade_no, amount, paid_at_ms, answer };
            let recorded = payment::record_found(&services.store, order, &fact, PaymentSource::Query, cause).await?;
            return Ok(Asked::Found(recorded));
        }
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("error: {e}"),
    };
    note_query(&services.store, order.id, cause, &note).await?;
    Ok(Asked::NotPaid(note))
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
    use crate::schedule::QueryStep;

    #[test]
    fn the_schedule_skips_past_points_and_stops_at_expiry() {
        let config = OrderConfig {
            query_cadence: Vec::new(),
            query_schedule_secs: vec![30, 60, 120, 300, 600],
            ..OrderConfig::default()
        };
        assert_eq!(next_query_at(&config, 0, 900_000, 0), Some(30_000));
        assert_eq!(next_query_at(&config, 0, 900_000, 30_000), Some(60_000));
        assert_eq!(next_query_at(&config, 0, 900_000, 599_999), Some(600_000));
        assert_eq!(next_query_at(&config, 0, 900_000, 600_000), None);
        assert_eq!(next_query_at(&config, 0, 60_000, 30_000), None, "a point at expiry is the expiry job's");
    }

    #[test]
    fn the_cadence_and_the_old_points_make_one_schedule() {
        let config = OrderConfig {
            query_cadence: vec![QueryStep { every_secs: 100, until_secs: None }],
            query_schedule_secs: vec![30],
            ..OrderConfig::default()
        };
        let created = 1_000_000;
        assert_eq!(next_query_at(&config, created, created + 900_000, created), Some(created + 30_000));
        assert_eq!(next_query_at(&config, created, created + 900_000, created + 30_000), Some(created + 100_000));
        assert_eq!(next_query_at(&config, created, created + 900_000, created + 800_000), None, "900 s is expiry");
    }
}
