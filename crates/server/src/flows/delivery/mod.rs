//! Delivery, in the caller's transaction.
//!
//! Internal goods (a wallet credit, membership days) are delivered in the payment's own
//! transaction. A card key is allocated there too when one is in stock; otherwise the
//! order waits, visibly, for a restock. External goods are handed to a delivery job. Every
//! order that does not deliver at once gets a deadline job, stored in the same
//! transaction, so no paid order can wait unbounded.
//!
//! [`complete`] finishes a delivery (now or after waiting), [`miss`] applies the product's
//! policy when delivery cannot happen in time, [`confirm`] takes the platform endpoint's
//! signed confirmation, [`replay`] sends a delivery again for an operator, [`attempt`]
//! records each call to the endpoint, and [`settle`] learns what an unknown or unconfirmed
//! call did before the deadline's policy acts.

pub mod attempt;
pub mod complete;
pub mod confirm;
pub mod miss;
pub mod replay;
pub mod settle;

use crate::jobs::deadline::Deadline;
use crate::jobs::deliver_external::DeliverExternal;
use crate::jobs::enqueue;
use complete::complete;
use serde_json::json;
use zerodrop_domain::catalog::ProductKind;
use zerodrop_domain::order::{Actor, EventKind};
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::orders::OrderRow;
use zerodrop_store::{card_keys, StoreError, Tx};

/// How delivery started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    Delivered,
    /// Waiting for stock or for the platform's endpoint, with a deadline job stored.
    Waiting,
}

/// Starts delivery of a freshly captured order, appending `pending` events (the capture)
/// first.
#[tracing::instrument(name = "delivery.start", skip_all, fields(order.no = %order.order_no))]
pub async fn start(
    tx: &mut Tx,
    order: &mut OrderRow,
    mut pending: Vec<NewEvent>,
    now_ms: i64,
) -> Result<Started, StoreError> {
    match order.product.kind.clone() {
        ProductKind::CurrencyPack { .. } | ProductKind::Membership { .. } => {
            complete(tx, order, pending, None, now_ms).await?;
            Ok(Started::Delivered)
        }
        ProductKind::CardKey => match card_keys::allocate(tx, order.product.sku.as_str(), order.id, now_ms).await? {
            Some(key) => {
                complete(tx, order, pending, Some(json!({ "card_key_id": key.id })), now_ms).await?;
                Ok(Started::Delivered)
            }
            None => {
                let data = json!({ "sku": order.product.sku, "reason": "out of stock" });
                pending.push(NewEvent::new(EventKind::AwaitingStock, Actor::System, "card_key_stock", data));
                events::append_all(tx, order, pending, now_ms).await?;
                enqueue_deadline(tx, order, now_ms).await?;
                Ok(Started::Waiting)
            }
        },
        ProductKind::External { .. } => {
            events::append_all(tx, order, pending, now_ms).await?;
            enqueue(tx, &DeliverExternal::first(order.id), now_ms, now_ms).await?;
            enqueue_deadline(tx, order, now_ms).await?;
            Ok(Started::Waiting)
        }
    }
}

/// Stores the delivery deadline: once per order, ever.
async fn enqueue_deadline(tx: &mut Tx, order: &OrderRow, now_ms: i64) -> Result<(), StoreError> {
    let deadline = order.deliver_by_ms.unwrap_or(now_ms);
    enqueue(tx, &Deadline { order_id: order.id }, deadline, now_ms).await.map(|_| ())
}
