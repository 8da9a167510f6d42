//! Creating orders: validated, and stored with their follow-up jobs (the first payment
//! query and the expiry) in the caller's transaction, which the HTTP layer commits with
//! the idempotency record.

use crate::jobs::enqueue;
use crate::jobs::expire_order::ExpireOrder;
use crate::jobs::query_payment::{next_query_at, QueryPayment};
use crate::services::Services;
use serde::Deserialize;
use zerodrop_domain::catalog::CatalogError;
use zerodrop_domain::ids::IdError;
use zerodrop_domain::{OrderId, OrderNo, ProductKind, UserId};
use zerodrop_providers::{OrderRef, ProviderError};
use zerodrop_store::orders::{self, NewOrder, OrderRow};
use zerodrop_store::{StoreError, Tx};

/// Tries at drawing an unused order number; 60 random bits make a second try rare.
const ORDER_NO_TRIES_MAX: usize = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    pub user_id: String,
    pub sku: String,
    #[serde(default = "one")]
    pub quantity: i64,
    pub provider: Option<String>,
}

fn one() -> i64 {
    1
}

/// A stored order and what the client needs to pay it.
pub struct Created {
    pub order: OrderRow,
    pub pay: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("{0}")]
    InvalidUserId(#[source] IdError),
    #[error("{0}")]
    UnknownSku(#[source] CatalogError),
    #[error("{0}")]
    InvalidQuantity(#[source] CatalogError),
    #[error("{0} cannot be delivered by this installation")]
    Unavailable(String),
    #[error("no provider named {name:?}")]
    UnknownProvider { name: String, known: Vec<String> },
    #[error("the provider could not prepare the payment")]
    Provider(#[source] ProviderError),
    #[error("could not draw an unused order number in {ORDER_NO_TRIES_MAX} tries")]
    NumbersExhausted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Validates `request` and stores the order with its jobs in `tx`. The caller commits.
#[tracing::instrument(name = "order.create", skip_all, fields(sku = %request.sku, order.no = tracing::field::Empty))]
pub async fn create_in(
    tx: &mut Tx,
    services: &Services,
    request: CreateOrder,
    now_ms: i64,
) -> Result<Created, OrderError> {
    let user_id = UserId::parse(&request.user_id).map_err(OrderError::InvalidUserId)?;
    let product = services.catalog.get(&request.sku).map_err(OrderError::UnknownSku)?.clone();
    let amount = product.total(request.quantity).map_err(OrderError::InvalidQuantity)?;
    // Never take money for goods zerodrop could not deliver.
    let deliverable = match &product.kind {
        ProductKind::CardKey => services.vault.is_some(),
        ProductKind::External { endpoint, .. } => services.endpoint(endpoint).is_some(),
        ProductKind::CurrencyPack { .. } | ProductKind::Membership { .. } => true,
    };
    if !deliverable {
        return Err(OrderError::Unavailable(product.sku.to_string()));
    }
    let provider_name = request.provider.unwrap_or_else(|| services.config.default_provider.clone());
    let provider = services.provider(&provider_name).ok_or_else(|| OrderError::UnknownProvider {
        name: provider_name.clone(),
        known: services.providers.keys().cloned().collect(),
    })?;
    let expires_at_ms = now_ms + services.config.orders.ttl_secs * 1000;
    for _ in 0..ORDER_NO_TRIES_MAX {
        let new = NewOrder {
            id: OrderId::new(),
            order_no: OrderNo::from_random(rand::random::<u64>()),
            user_id: user_id.clone(),
            product: product.clone(),
            quantity: request.quantity,
            amount,
            provider: provider_name.clone(),
            expires_at_ms,
        };
        let order_ref =
            OrderRef { order_no: new.order_no.to_string(), amount, subject: product.title.clone(), expires_at_ms };
        let pay = provider.payment_instructions(&order_ref).map_err(OrderError::Provider)?;
        // A taken number inserts nothing and leaves the transaction usable: draw another.
        let Some(order) = orders::insert(tx, &new, "api", now_ms).await? else { continue };
        tracing::Span::current().record("order.no", order.order_no.as_str());
        enqueue_follow_ups(tx, services, &order, now_ms).await?;
        return Ok(Created { order, pay });
    }
    Err(OrderError::NumbersExhausted)
}

/// The first payment query and the expiry, stored with the order.
async fn enqueue_follow_ups(tx: &mut Tx, services: &Services, order: &OrderRow, now: i64) -> Result<(), StoreError> {
    let orders = &services.config.orders;
    if let Some(first) = next_query_at(orders, order.created_at_ms, order.expires_at_ms, now) {
        enqueue(tx, &QueryPayment { order_id: order.id }, first, now).await?;
    }
    enqueue(tx, &ExpireOrder { order_id: order.id }, order.expires_at_ms, now).await?;
    Ok(())
}
