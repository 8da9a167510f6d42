//! Expiry: close the order at the provider, ask once more, and only then mark it
//! expired. A close refused because the trade is paid, or a final query that finds a
//! payment, records it like any other. An expired order gets late sweeps on a schedule.

use super::late_sweep::LateSweep;
use super::{enqueue, order_in_status, order_ref, Job, Outcome, Run};
use crate::flows::payment::{self, PaymentFact};
use crate::services::Services;
use serde::{Deserialize, Serialize};
use serde_json::json;
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_domain::OrderId;
use zerodrop_providers::PaymentStatus;
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::payments::PaymentSource;
use zerodrop_store::{now_ms, orders, StoreError};

/// Expiry jobs retry closing at the provider for hours before a person is asked.
const ATTEMPTS_MAX: i64 = 30;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExpireOrder {
    pub order_id: OrderId,
}

impl Job for ExpireOrder {
    const KIND: &'static str = "expire_order";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        format!("expire:{}", self.order_id)
    }

    fn order_id(&self) -> Option<OrderId> {
        Some(self.order_id)
    }

    async fn run(self, services: &Services, run: &Run) -> Outcome {
        let (order, provider) = match order_in_status(services, self.order_id, OrderStatus::AwaitingPayment).await {
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
        if let PaymentStatus::Paid { trade_no, amount, paid_at_ms, answer } = answer {
            let fact = PaymentFact { provider: order.provider.clone(), trade_no, amount, paid_at_ms, answer };
            return payment::record_found(&services.store, &order, &fact, PaymentSource::Close, &run.cause())
                .await
                .map_or_else(Outcome::from, |_| Outcome::Done);
        }
        let data = json!({ "close": format!("{closed:?}"), "query": format!("{answer:?}") });
        super::done_or_retry(mark_expired(services, order.id, &run.cause(), data).await)
    }
}

async fn mark_expired(
    services: &Services,
    order_id: OrderId,
    cause: &str,
    data: serde_json::Value,
) -> Result<(), StoreError> {
    let mut tx = services.store.begin().await?;
    let now = now_ms();
    let mut order = orders::lock(&mut tx, order_id).await?;
    // A payment recorded while we were asking wins: nothing to expire.
    if order.status != OrderStatus::AwaitingPayment {
        return Ok(());
    }
    let close = NewEvent::new(EventKind::ProviderCloseRequested, Actor::System, cause, data);
    let expired = NewEvent::new(EventKind::Expired, Actor::System, cause, json!({}));
    events::append_all(&mut tx, &mut order, vec![close, expired], now).await?;
    let points = services.config.orders.late_sweep_points_secs();
    let sweep_at = crate::schedule::first_sweep_at(&points, order.expires_at_ms, now);
    enqueue(&mut tx, &LateSweep { order_id }, sweep_at, now).await?;
    tx.commit().await
}
