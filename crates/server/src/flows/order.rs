//! Creating orders: validated and prepared first ([`prepare`], no transaction open), then
//! stored with their follow-up jobs (the first payment query and the expiry) in the
//! caller's transaction ([`Prepared::insert_in`]), which the HTTP layer commits with the
//! idempotency record.

use crate::config::OrderConfig;
use crate::jobs::enqueue;
use crate::jobs::expire_order::ExpireOrder;
use crate::jobs::query_payment::{next_query_at, QueryPayment};
use crate::services::Services;
use serde::Deserialize;
use std::sync::Arc;
use zerodrop_domain::catalog::CatalogError;
use zerodrop_domain::ids::IdError;
use zerodrop_domain::{OrderId, OrderNo, ProductKind, UserId};
use zerodrop_providers::{OrderRef, Provider, ProviderError};
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
    #[error(transparent)]
    InvalidUserId(IdError),
    #[error(transparent)]
    UnknownSku(CatalogError),
    #[error(transparent)]
    InvalidQuantity(CatalogError),
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

/// A valid order, numbered and with its payment instructions signed, not yet stored.
/// Everything that can refuse the request or take time (the provider's signature) happens
/// here, before any transaction is opened.
pub struct Prepared {
    new: NewOrder,
    pay: serde_json::Value,
    provider: Arc<dyn Provider>,
}

/// Validates `request` and prepares the order: its number, its expiry and what the client
/// needs to pay it.
#[tracing::instrument(name = "order.prepare", skip_all, fields(sku = %request.sku))]
pub fn prepare(services: &Services, request: CreateOrder, now_ms: i64) -> Result<Prepared, OrderError> {
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
    let provider = services.provider(&provider_name).cloned().ok_or_else(|| OrderError::UnknownProvider {
        name: provider_name.clone(),
        known: services.providers.keys().cloned().collect(),
    })?;
    let new = NewOrder {
        id: OrderId::new(),
        order_no: OrderNo::from_random(rand::random::<u64>()),
        user_id,
        product,
        quantity: request.quantity,
        amount,
        provider: provider_name,
        expires_at_ms: now_ms + services.config.orders.ttl_secs * 1000,
    };
    let pay = instructions(provider.as_ref(), &new)?;
    Ok(Prepared { new, pay, provider })
}

fn instructions(provider: &dyn Provider, new: &NewOrder) -> Result<serde_json::Value, OrderError> {
    let order_ref = OrderRef {
        order_no: new.order_no.to_string(),
        amount: new.amount,
        subject: new.product.title.clone(),
        expires_at_ms: new.expires_at_ms,
        trade_no: None,
    };
    provider.payment_instructions(&order_ref).map_err(OrderError::Provider)
}

impl Prepared {
    /// Stores the order with its jobs in `tx`; the caller commits. A taken order number
    /// (60 random bits: rare) inserts nothing and leaves the transaction usable, so
    /// another is drawn.
    #[tracing::instrument(name = "order.create", skip_all, fields(order.no = tracing::field::Empty))]
    pub async fn insert_in(
        mut self,
        tx: &mut Tx,
        orders_config: &OrderConfig,
        now_ms: i64,
    ) -> Result<Created, OrderError> {
        for _ in 0..ORDER_NO_TRIES_MAX {
            if let Some(order) = orders::insert(tx, &self.new, "api", now_ms).await? {
                tracing::Span::current().record("order.no", order.order_no.as_str());
                enqueue_follow_ups(tx, orders_config, &order, now_ms).await?;
                return Ok(Created { order, pay: self.pay });
            }
            self.new.order_no = OrderNo::from_random(rand::random::<u64>());
            self.pay = instructions(self.provider.as_ref(), &self.new)?;
        }
        Err(OrderError::NumbersExhausted)
    }
}

/// The first payment query and the expiry, stored with the order.
pub(crate) async fn enqueue_follow_ups(
    tx: &mut Tx,
    orders: &OrderConfig,
    order: &OrderRow,
    now: i64,
) -> Result<(), StoreError> {
    if let Some(first) = next_query_at(orders, order.created_at_ms, order.expires_at_ms, now) {
        enqueue(tx, &QueryPayment { order_id: order.id }, first, now).await?;
    }
    enqueue(tx, &ExpireOrder { order_id: order.id }, order.expires_at_ms, now).await?;
    Ok(())
}
