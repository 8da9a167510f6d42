//! After expiry, more looks at the provider on a schedule (by default 1 h, 6 h, 24 h and
//! 72 h after expiry): a payment the provider took late (a laxer clock, a delayed bank)
//! whose notifications were lost is found, and delivered or refunded by the product's
//! policy, never ignored.
//!
//! One job per expired order walks the whole schedule, rescheduling itself after each
//! sweep; its payload and dedupe key are those of earlier builds, whose single sweep (10
//! minutes after expiry) now simply joins the schedule.

use super::query_payment::note_query;
use super::{order_in_status, order_ref, Job, Outcome, Run};
use crate::flows::payment::{self, PaymentFact};
use crate::schedule;
use crate::services::Services;
use serde::{Deserialize, Serialize};
use zerodrop_domain::order::OrderStatus;
use zerodrop_domain::OrderId;
use zerodrop_providers::PaymentStatus;
use zerodrop_store::now_ms;
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
        let answer = match provider.query_payment(&order_ref(&order)).await {
            Ok(PaymentStatus::Paid { trade_no, amount, paid_at_ms, answer }) => {
                let fact = PaymentFact { provider: order.provider.clone(), trade_no, amount, paid_at_ms, answer };
                return payment::record_found(&services.store, &order, &fact, PaymentSource::Query, &run.cause())
                    .await
                    .map_or_else(Outcome::from, |_| Outcome::Done);
            }
            Ok(other) => format!("{other:?}"),
            // Retried with backoff (the sweep is not skipped); exhausted, a person checks.
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        if let Err(e) = note_query(&services.store, order.id, &run.cause(), &answer).await {
            return e.into();
        }
        let points = services.config.orders.late_sweep_points_secs();
        match schedule::next_sweep_at(&points, order.expires_at_ms, now_ms()) {
            Some(at) => Outcome::RunAgainAt(at, Some(answer)),
            None => Outcome::Done,
        }
    }
}
