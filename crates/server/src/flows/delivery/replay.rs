//! Sending an external order's delivery request to the platform's endpoint again, for an
//! operator or the merchant API: its own job, which runs even for a delivered order.

use crate::jobs::deliver_external::DeliverExternal;
use crate::jobs::enqueue;
use zerodrop_domain::catalog::ProductKind;
use zerodrop_domain::order::OrderStatus;
use zerodrop_domain::OrderNo;
use zerodrop_store::{now_ms, orders, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no order with this number")]
    NotFound,
    #[error("this order is not delivered by an endpoint")]
    NotExternal,
    #[error("the order is {0}: nothing to deliver")]
    NotDeliverable(OrderStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Queues the replay and returns its id. The caller wakes the workers.
#[tracing::instrument(name = "delivery.replay", skip(store))]
pub async fn replay(store: &Store, order_no: &str) -> Result<String, ReplayError> {
    if OrderNo::parse(order_no).is_none() {
        return Err(ReplayError::NotFound);
    }
    let mut tx = store.begin().await?;
    let order = orders::lock_by_no(&mut tx, order_no).await?.ok_or(ReplayError::NotFound)?;
    if !matches!(order.product.kind, ProductKind::External { .. }) {
        return Err(ReplayError::NotExternal);
    }
    if !matches!(order.status, OrderStatus::Paid | OrderStatus::Delivered) {
        return Err(ReplayError::NotDeliverable(order.status));
    }
    let replay_id = uuid::Uuid::now_v7().to_string();
    let now = now_ms();
    enqueue(&mut tx, &DeliverExternal::replay(order.id, replay_id.clone()), now, now).await?;
    tx.commit().await?;
    Ok(replay_id)
}
