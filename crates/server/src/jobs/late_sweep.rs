//! After expiry, one more look at the provider: a payment that raced the close is late,
//! and is delivered or refunded by the product's policy, never ignored.

use super::query_payment::note_query;
use super::{order_in_status, order_ref, Job, Outcome, Run};
use crate::flows::payment::{self, PaymentFact};
use crate::services::Services;
use serde::{Deserialize, Serialize};
use zerodrop_domain::order::OrderStatus;
use zerodrop_domain::OrderId;
use zerodrop_providers::PaymentStatus;
use zerodrop_store::payments::PaymentSource;

/// Late sweeps retry for about an hour before a person is asked to check the provider.
const ATTEMPTS_MAX: i64 = 15;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LateSweep {
    pub order_id: OrderId,
}

impl Job for LateSweep {
    const KIND: &'static str = "late_sweep";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        format!("late_sweep:{}", self.order_id)
    }

    fn order_id(&self) -> Option<OrderId> {
        Some(self.order_id)
    }

    async fn run(self, services: &Services, run: &Run) -> Outcome {
        let (order, provider) = match order_in_status(services, self.order_id, OrderStatus::Expired).await {
            Ok(found) => found,
            Err(outcome) => return outcome,
        };
        match provider.query_payment(&order_ref(&order)).await {
            Ok(PaymentStatus::Paid { trade_no, amount, paid_at_ms }) => {
                let fact = PaymentFact { provider: order.provider.clone(), trade_no, amount, paid_at_ms };
                payment::record_found(&services.store, &order, &fact, PaymentSource::Query, &run.cause())
                    .await
                    .map_or_else(Outcome::from, |_| Outcome::Done)
            }
            Ok(other) => match note_query(&services.store, order.id, &run.cause(), &format!("{other:?}")).await {
                Ok(()) => Outcome::Done,
                Err(e) => e.into(),
            },
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}
