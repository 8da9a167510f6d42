//! Restock: after an import, orders waiting for a key of the SKU get one, oldest payment
//! first, each in its own transaction, until the stock or the waiting orders run out.

use super::{Job, Outcome, Run};
use crate::flows::delivery::complete::complete_later;
use crate::services::Services;
use serde::{Deserialize, Serialize};
use serde_json::json;
use zerodrop_domain::order::OrderStatus;
use zerodrop_domain::OrderId;
use zerodrop_store::{card_keys, now_ms, orders, StoreError};

/// Restocks retry for about an hour; the codes stay in stock either way, and the next
/// import or a deadline serves the waiting orders.
const ATTEMPTS_MAX: i64 = 20;
/// Orders served per run before the job yields (and runs again at once).
const ORDERS_PER_RUN_MAX: i64 = 200;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Restock {
    pub sku: String,
    /// The import that brought the stock.
    pub batch: String,
}

impl Job for Restock {
    const KIND: &'static str = "restock";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        format!("restock:{}", self.batch)
    }

    fn order_id(&self) -> Option<OrderId> {
        None
    }

    async fn run(self, services: &Services, _run: &Run) -> Outcome {
        let waiting = {
            let mut conn = match services.store.reader().await {
                Ok(conn) => conn,
                Err(e) => return e.into(),
            };
            match card_keys::waiting_orders(&mut conn, &self.sku, ORDERS_PER_RUN_MAX).await {
                Ok(waiting) => waiting,
                Err(e) => return e.into(),
            }
        };
        let full_page = waiting.len() as i64 == ORDERS_PER_RUN_MAX;
        for order_id in waiting {
            match serve_one(services, &self.sku, order_id).await {
                Ok(true) => {}
                Ok(false) => return Outcome::Done, // out of stock again
                Err(e) => return e.into(),
            }
        }
        if full_page {
            Outcome::RunAgainAt(now_ms(), None)
        } else {
            Outcome::Done
        }
    }
}

/// Delivers a key to one waiting order. `false` when the stock ran out.
async fn serve_one(services: &Services, sku: &str, order_id: OrderId) -> Result<bool, StoreError> {
    let mut tx = services.store.begin().await?;
    let now = now_ms();
    let mut order = orders::lock(&mut tx, order_id).await?;
    // Refunded or delivered meanwhile: nothing to do for this one.
    if order.status != OrderStatus::Paid {
        return Ok(true);
    }
    let Some(key) = card_keys::allocate(&mut tx, sku, order.id, now).await? else {
        return Ok(false);
    };
    complete_later(&mut tx, &mut order, Some(json!({ "card_key_id": key.id, "restocked": true })), now).await?;
    tx.commit().await?;
    Ok(true)
}
