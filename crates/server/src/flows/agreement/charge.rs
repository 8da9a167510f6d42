//! Charging one period under an agreement: what the renewal job (and the sign's first
//! period) calls.
//!
//! The provider is asked about the agreement first: gone there means terminated
//! `provider_side` here, and nothing is charged. Then an ordinary membership order is
//! stored, naming its agreement, in a transaction that holds the agreement's lock and
//! checks again that it may charge (so a termination that commits first always wins: no
//! charge starts after it). Then the order is charged with `charge_agreement`, and the
//! answer goes through the one paid path (`take_answer` → `flows::payment`), so delivery
//! extends the membership. An unknown answer is never a failure: the order's own query
//! schedule (enqueued with it) finds the outcome.

use super::holds;
use crate::flows::order::enqueue_follow_ups;
use crate::jobs::order_ref;
use crate::jobs::query_payment::{take_answer, Asked};
use crate::services::Services;
use serde_json::json;
use zerodrop_domain::catalog::ProductKind;
use zerodrop_domain::renewal::may_charge_now;
use zerodrop_domain::{AgreementEvent, OrderId, OrderNo, Sku};
use zerodrop_providers::agreement::{AgreementRef, AgreementStatus};
use zerodrop_store::agreements::timeline::{self, AppendError, Kind, NewAgreementEvent};
use zerodrop_store::agreements::{self, AgreementRow};
use zerodrop_store::orders::{self, NewOrder, OrderRow};
use zerodrop_store::{StoreError, Tx};

/// Tries at drawing an unused order number (60 random bits).
const ORDER_NO_TRIES_MAX: u32 = 3;

/// What [`charge_period`] did.
#[derive(Debug)]
pub enum Charged {
    /// Nothing charged, and why (not active, on hold, a charge already in flight, the
    /// provider did not answer or says signing is unfinished).
    NotCharged(String),
    /// The provider says the agreement is gone: terminated `provider_side`.
    Ended,
    /// The agreement is past its validity at the provider (its `invalid_time`): the
    /// provider refuses charges but sends nothing, so the caller ends it (`expired`).
    PastValidity,
    /// An order was stored and charged; `paid` when the provider confirmed at once (the
    /// period is then recorded), else its query schedule finds the outcome.
    Started { order_no: String, paid: bool },
}

/// Charges the next period of agreement `agreement_id`. Store errors are errors (the
/// caller's job retries); everything the provider says is an outcome.
pub async fn charge_period(services: &Services, agreement_id: &str, now_ms: i64) -> Result<Charged, StoreError> {
    let row = {
        let mut conn = services.store.reader().await?;
        agreements::get(&mut conn, agreement_id).await?.ok_or(StoreError::NotFound)?
    };
    if !may_charge_now(holds::effective_state(&row, now_ms), row.hold.as_ref(), now_ms) {
        return Ok(Charged::NotCharged(format!("agreement is {} (or on hold)", row.state.as_str())));
    }
    if let Some(order_no) = charge_in_flight(services, &row).await? {
        return Ok(Charged::NotCharged(format!("order {order_no} is still awaiting its payment")));
    }
    let Some(provider) = services.provider(&row.provider).cloned() else {
        return Ok(Charged::NotCharged(format!("provider {} is not configured", row.provider)));
    };
    let agreement_ref = AgreementRef {
        external_agreement_no: row.external_agreement_no.clone(),
        agreement_no: row.provider_agreement_no.clone(),
    };
    let agreement_no = match provider.query_agreement(&agreement_ref).await {
        Ok(AgreementStatus::NotFound | AgreementStatus::Stopped { .. }) => {
            end_provider_side(services, agreement_id, now_ms).await?;
            return Ok(Charged::Ended);
        }
        Ok(status @ AgreementStatus::Normal { .. }) if !status.chargeable_at(now_ms) => {
            return Ok(Charged::PastValidity);
        }
        Ok(AgreementStatus::Normal { agreement_no, .. }) => agreement_no,
        Ok(AgreementStatus::Temp) => return Ok(Charged::NotCharged("signing is not finished at the provider".into())),
        Err(e) => return Ok(Charged::NotCharged(format!("the provider did not answer the agreement query: {e}"))),
    };
    let Some(order) = store_order(services, agreement_id, now_ms).await? else {
        return Ok(Charged::NotCharged("the agreement changed before the charge (terminated or held)".into()));
    };
    let cause = format!("agreement:{agreement_id}");
    let answer = provider.charge_agreement(&order_ref(&order), &agreement_no).await;
    // The paid path records the period (or refunds a charge that lost to a termination).
    let paid = match take_answer(services, &order, answer, &cause).await? {
        Asked::Found(_) => true,
        Asked::NotPaid(_) => false,
    };
    Ok(Charged::Started { order_no: order.order_no.to_string(), paid })
}

/// An order under the agreement still awaiting its payment (its outcome comes first).
async fn charge_in_flight(services: &Services, row: &AgreementRow) -> Result<Option<String>, StoreError> {
    let mut conn = services.store.reader().await?;
    agreements::order_awaiting_payment(&mut conn, &row.id).await
}

async fn end_provider_side(services: &Services, agreement_id: &str, now_ms: i64) -> Result<(), StoreError> {
    let mut tx = services.store.begin().await?;
    let mut row = agreements::lock(&mut tx, agreement_id).await?;
    let event =
        NewAgreementEvent::state(AgreementEvent::ProviderUnsigned, "agreement_query", json!({ "before": "charge" }));
    match timeline::try_append(&mut tx, &mut row, event, now_ms).await {
        Ok(()) => tx.commit().await,
        // Already ended (a notification came first): nothing to change.
        Err(AppendError::Refused(_)) => Ok(()),
        Err(AppendError::Store(e)) => Err(e),
    }
}

/// Stores the period's order under the agreement's lock, after checking again that the
/// agreement may charge. `None` when it may not any more.
async fn store_order(services: &Services, agreement_id: &str, now_ms: i64) -> Result<Option<OrderRow>, StoreError> {
    let mut tx = services.store.begin().await?;
    let mut row = agreements::lock(&mut tx, agreement_id).await?;
    // A hold ends by itself at its unlock time: recorded here, under the lock.
    holds::release_if_expired(&mut tx, &mut row, now_ms).await?;
    if !may_charge_now(row.state, row.hold.as_ref(), now_ms) {
        return Ok(None);
    }
    // Checked again under the lock: two charges of one period (two jobs, or one retried
    // after an error) never both start.
    if agreements::order_awaiting_payment(&mut tx, agreement_id).await?.is_some() {
        return Ok(None);
    }
    let Some(new) = period_order(services, &row, now_ms)? else { return Ok(None) };
    let Some(order) = insert_order(&mut tx, new, now_ms).await? else { return Ok(None) };
    agreements::attach_order(&mut tx, order.id, agreement_id).await?;
    enqueue_follow_ups(&mut tx, &services.config.orders, &order, now_ms).await?;
    let started = NewAgreementEvent::new(
        Kind::Recorded("charge_started"),
        &format!("agreement:{agreement_id}"),
        json!({ "order_no": order.order_no, "amount_minor": order.amount.minor, "currency": order.amount.currency.code() }),
    );
    timeline::append(&mut tx, &mut row, started, now_ms).await?;
    tx.commit().await?;
    Ok(Some(order))
}

async fn insert_order(tx: &mut Tx, mut new: NewOrder, now_ms: i64) -> Result<Option<OrderRow>, StoreError> {
    for _ in 0..ORDER_NO_TRIES_MAX {
        if let Some(order) = orders::insert(tx, &new, "agreement", now_ms).await? {
            return Ok(Some(order));
        }
        new.order_no = OrderNo::from_random(rand::random::<u64>());
    }
    Ok(None)
}

/// A membership order for one period at the price of the terms the agreement cites. The
/// product is the catalog's membership product for the plan's membership, with the terms'
/// price and period (the order keeps this snapshot).
fn period_order(services: &Services, row: &AgreementRow, now_ms: i64) -> Result<Option<NewOrder>, StoreError> {
    let Some(plan) = services.catalog.plans().get(&row.plan) else { return Ok(None) };
    let Some(terms) = plan.version(row.terms_version) else { return Ok(None) };
    let template = services.catalog.products().find(
        |p| matches!(&p.kind, ProductKind::Membership { plan: membership, .. } if *membership == plan.membership),
    );
    let Some(template) = template else { return Ok(None) };
    let sku = Sku::parse(&format!("{}_v{}", plan.id, terms.version))
        .map_err(|e| StoreError::Invariant(format!("plan {}: no SKU for its terms: {e}", plan.id)))?;
    let mut product = template.clone();
    product.sku = sku;
    product.title = plan.title.clone();
    product.price = terms.price;
    product.kind = ProductKind::Membership { plan: plan.membership.clone(), days: terms.period_days };
    product.quantity_max = 1;
    Ok(Some(NewOrder {
        id: OrderId::new(),
        order_no: OrderNo::from_random(rand::random::<u64>()),
        user_id: row.user_id.clone(),
        amount: terms.price,
        product,
        quantity: 1,
        provider: row.provider.clone(),
        expires_at_ms: now_ms + services.config.orders.ttl_secs * 1000,
    }))
}
