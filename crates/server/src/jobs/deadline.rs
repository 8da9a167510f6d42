//! The delivery deadline: fires once per order (its dedupe key), at the time the product
//! promised. A paid order still undelivered then is refunded or escalated by policy; but
//! an external order whose endpoint may have delivered (an unknown answer, a request still
//! out, a `202` never confirmed) is settled first (see `flows::delivery::settle`): the
//! job runs again while it asks, and the policy acts only when nothing is in doubt.

use super::{read_order, Job, Outcome, Run};
use crate::flows::delivery::miss;
use crate::flows::delivery::settle::{self, Step};
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
        let order = match read_order(services, self.order_id).await {
            Ok(order) => order,
            Err(outcome) => return outcome,
        };
        if order.status != OrderStatus::Paid {
            return Outcome::Done;
        }
        let step = settle::step(services, &order, &run.cause()).await;
        // A settling answer may have enqueued a refund: workers look at once.
        services.wake();
        match step {
            Ok(Step::Proceed) => {}
            Ok(Step::Decided | Step::WithAPerson) => return Outcome::Done,
            Ok(Step::Again(at)) => return Outcome::RunAgainAt(at, Some("settling an unknown delivery".into())),
            Err(e) => return e.into(),
        }
        let outcome = async {
            let mut tx = services.store.begin().await?;
            let mut order = orders::lock(&mut tx, self.order_id).await?;
            if order.status != OrderStatus::Paid {
                return Ok::<_, StoreError>(true);
            }
            // A delivery attempt may have gone out and come back unknown since the look
            // above; under the order's lock, this look is the last.
            let now = now_ms();
            if settle::doubt(&mut tx, &order, now).await?.is_some() {
                return Ok(false);
            }
            miss::miss_in(&mut tx, &mut order, &run.cause(), miss::Why::Deadline, now).await?;
            tx.commit().await.map(|()| true)
        }
        .await;
        // A refund may have been enqueued: workers look at once.
        services.wake();
        match outcome {
            Ok(true) => Outcome::Done,
            Ok(false) => Outcome::RunAgainAt(now_ms(), Some("a delivery answer came in doubt".into())),
            Err(e) => e.into(),
        }
    }
}
