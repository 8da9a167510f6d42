//! Restock: after an import, orders waiting for a key of the SKU get one, oldest payment
//! first, each in its own transaction, until the stock or the waiting orders run out.

use super::Outcome;
use crate::app::App;
use crate::delivery;
use serde_json::json;
use zerodrop_domain::order::OrderStatus;
use zerodrop_store::jobs::ClaimedJob;
use zerodrop_store::{card_keys, now_ms, orders, StoreError};

/// Orders served per run before the job yields (and runs again at once).
const ORDERS_PER_RUN_MAX: i64 = 200;

pub async fn run(app: &App, job: &ClaimedJob) -> Outcome {
    let Some(sku) = job.payload.get("sku").and_then(|v| v.as_str()).map(str::to_owned) else {
        return Outcome::Retry("job has no sku".into());
    };
    let waiting = {
        let mut conn = match app.store.reader().await {
            Ok(conn) => conn,
            Err(e) => return e.into(),
        };
        match card_keys::waiting_orders(&mut conn, &sku, ORDERS_PER_RUN_MAX).await {
            Ok(waiting) => waiting,
            Err(e) => return e.into(),
        }
    };
    let full_page = waiting.len() as i64 == ORDERS_PER_RUN_MAX;
    for order_id in waiting {
        match serve_one(app, &sku, order_id).await {
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

/// Delivers a key to one waiting order. `false` when the stock ran out.
async fn serve_one(app: &App, sku: &str, order_id: zerodrop_domain::OrderId) -> Result<bool, StoreError> {
    let mut tx = app.store.begin().await?;
    let now = now_ms();
    let mut order = orders::lock(&mut tx, order_id).await?;
    // Refunded or delivered meanwhile: nothing to do for this one.
    if order.status != OrderStatus::Paid {
        return Ok(true);
    }
    let Some(key) = card_keys::allocate(&mut tx, sku, order.id, now).await? else {
        return Ok(false);
    };
    delivery::complete_later(&mut tx, &mut order, Some(json!({ "card_key_id": key.id, "restocked": true })), now)
        .await?;
    tx.commit().await?;
    Ok(true)
}
