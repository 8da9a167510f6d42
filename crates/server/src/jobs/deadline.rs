//! The delivery deadline: fires once per order (its dedupe key), at the time the product
//! promised. A paid order still undelivered then is refunded or escalated by policy.

use super::{order_id_of, Outcome};
use crate::app::App;
use crate::delivery;
use zerodrop_domain::order::OrderStatus;
use zerodrop_store::jobs::ClaimedJob;
use zerodrop_store::{now_ms, orders, StoreError};

pub async fn run(app: &App, job: &ClaimedJob) -> Outcome {
    let order_id = match order_id_of(job) {
        Ok(id) => id,
        Err(outcome) => return outcome,
    };
    let outcome = async {
        let mut tx = app.store.begin().await?;
        let mut order = orders::lock(&mut tx, order_id).await?;
        if order.status != OrderStatus::Paid {
            return Ok::<_, StoreError>(());
        }
        delivery::miss_in(&mut tx, &mut order, &format!("job:{}", job.id), "deadline", now_ms()).await?;
        tx.commit().await
    }
    .await;
    match outcome {
        Ok(()) => {
            app.wake();
            Outcome::Done
        }
        Err(e) => e.into(),
    }
}
