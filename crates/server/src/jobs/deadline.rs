//! The delivery deadline: fires once per order (its dedupe key), at the time the product
//! promised. A paid order still undelivered then is refunded or escalated by policy.

use super::{done_or_retry, Job, Outcome, Run};
use crate::flows::delivery::miss;
use crate::services::Services;
use serde::{Deserialize, Serialize};
use zerodrop_domain::order::OrderStatus;
use zerodrop_domain::OrderId;
use zerodrop_store::{now_ms, orders, StoreError};

/// The deadline must fire; a failure to record it is retried this often.
const ATTEMPTS_MAX: i64 = 30;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deadline {
    pub order_id: OrderId,
}

impl Job for Deadline {
    const KIND: &'static str = "deadline";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        format!("deadline:{}", self.order_id)
    }

    fn order_id(&self) -> Option<OrderId> {
        Some(self.order_id)
    }

    async fn run(self, services: &Services, run: &Run) -> Outcome {
        let outcome = async {
            let mut tx = services.store.begin().await?;
            let mut order = orders::lock(&mut tx, self.order_id).await?;
            tracing::Span::current().record("order.no", order.order_no.as_str());
            if order.status != OrderStatus::Paid {
                return Ok::<_, StoreError>(());
            }
            miss::miss_in(&mut tx, &mut order, &run.cause(), miss::Why::Deadline, now_ms()).await?;
            tx.commit().await
        }
        .await;
        // A refund may have been enqueued: workers look at once.
        services.wake();
        done_or_retry(outcome)
    }
}
