//! Creating orders: validated at the edge, stored with their follow-up jobs (the first
//! payment query and the expiry) in one transaction, idempotent under `Idempotency-Key`.

use crate::app::App;
use crate::error::ApiError;
use crate::idempotent::{self, Idempotency};
use crate::{jobs, views};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use zerodrop_domain::{OrderId, OrderNo, ProductKind, UserId};
use zerodrop_providers::OrderRef;
use zerodrop_store::jobs::NewJob;
use zerodrop_store::orders::{self, NewOrder};
use zerodrop_store::{now_ms, Tx};

/// Tries at drawing an unused order number; 60 random bits make a second try rare.
const ORDER_NO_TRIES_MAX: usize = 5;
/// Expiry jobs retry closing at the provider for hours before a person is asked.
const EXPIRE_ATTEMPTS_MAX: i64 = 30;
/// Payment queries are a schedule, not retries; a failing one moves to its next slot.
const QUERY_ATTEMPTS_MAX: i64 = 5;

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

/// Scope of order creation's idempotency keys.
pub const IDEMPOTENCY_SCOPE: &str = "create_order";

pub async fn create(
    app: &App,
    request: CreateOrder,
    idempotency: Option<Idempotency>,
) -> Result<(StatusCode, String), ApiError> {
    if let Some(answer) = match &idempotency {
        Some(idem) => idem.replay(app).await?,
        None => None,
    } {
        return Ok(answer);
    }
    let user_id = UserId::parse(&request.user_id).map_err(|e| ApiError::invalid("invalid_user_id", e.to_string()))?;
    let product = app.catalog.get(&request.sku).map_err(|e| ApiError::invalid("unknown_sku", e.to_string()))?.clone();
    let amount = product.total(request.quantity).map_err(|e| ApiError::invalid("invalid_quantity", e.to_string()))?;
    // Never take money for goods zerodrop could not deliver.
    let deliverable = match &product.kind {
        ProductKind::CardKey => app.vault.is_some(),
        ProductKind::External { endpoint, .. } => app.endpoint(endpoint).is_some(),
        ProductKind::CurrencyPack { .. } | ProductKind::Membership { .. } => true,
    };
    if !deliverable {
        return Err(ApiError::invalid(
            "product_unavailable",
            format!("{} cannot be delivered by this installation", product.sku),
        ));
    }
    let provider_name = request.provider.unwrap_or_else(|| app.config.default_provider.clone());
    let provider = app.provider(&provider_name).ok_or_else(|| {
        let known: Vec<&String> = app.providers.keys().collect();
        ApiError::invalid("unknown_provider", format!("no provider named {provider_name:?}"))
            .with_details(json!({ "providers": known }))
    })?;

    let now = now_ms();
    let expires_at_ms = now + app.config.orders.ttl_secs * 1000;
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
        let pay = provider.payment_instructions(&order_ref).map_err(ApiError::internal)?;
        let mut tx = app.store.begin().await?;
        let Some(order) = orders::insert(&mut tx, &new, "api", now).await? else {
            continue; // order number taken: draw another
        };
        enqueue_follow_ups(app, &mut tx, &order, now).await?;
        let body = json!({ "order": views::order(&order), "pay": pay }).to_string();
        let answer = idempotent::commit(app, idempotency.as_ref(), tx, StatusCode::CREATED, body).await?;
        tracing::info!(order.no = %order.order_no, sku = %order.product.sku, "order created");
        return Ok(answer);
    }
    Err(ApiError::internal("could not draw an unused order number"))
}

/// The first payment query and the expiry, stored with the order.
async fn enqueue_follow_ups(app: &App, tx: &mut Tx, order: &orders::OrderRow, now: i64) -> Result<(), ApiError> {
    if let Some(first) = jobs::query::next_query_at(&app.config.orders, order.created_at_ms, order.expires_at_ms, now) {
        let job = NewJob {
            kind: jobs::QUERY_PAYMENT,
            order_id: Some(order.id),
            payload: json!({ "order_id": order.id.to_string() }),
            run_at_ms: first,
            max_attempts: QUERY_ATTEMPTS_MAX,
            dedupe_key: Some(format!("query:{}", order.id)),
        };
        zerodrop_store::jobs::enqueue(tx, &job, now).await?;
    }
    let expire = NewJob {
        kind: jobs::EXPIRE_ORDER,
        order_id: Some(order.id),
        payload: json!({ "order_id": order.id.to_string() }),
        run_at_ms: order.expires_at_ms,
        max_attempts: EXPIRE_ATTEMPTS_MAX,
        dedupe_key: Some(format!("expire:{}", order.id)),
    };
    zerodrop_store::jobs::enqueue(tx, &expire, now).await?;
    Ok(())
}
