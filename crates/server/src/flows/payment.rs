//! The one path by which an order becomes paid.
//!
//! A notification, a query answer, a close that found the order paid, a parked
//! notification resolved later: whoever brings the news calls [`record_in`]. In the
//! caller's transaction it locks the order, records the payment (unique per provider
//! trade and per order), delivers internal goods or marks a late payment for refund,
//! appends the events and enqueues follow-ups. Duplicates and races between sources are
//! settled by the order lock and the database's unique constraints, not by timing.

use crate::flows::delivery;
use crate::flows::refund::request::request_in;
use crate::flows::refund::{Origin, RefundError};
use serde_json::json;
use zerodrop_domain::catalog::LatePolicy;
use zerodrop_domain::money::Money;
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_domain::OrderId;
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::orders::{self, OrderRow};
use zerodrop_store::payments::{self, NewPayment, PaymentSource};
use zerodrop_store::{Store, StoreError, Tx};

/// Attempts at a payment transaction that hit a transient conflict (a serialization
/// failure, a busy database) before the error goes back to the caller, whose own retry
/// (the provider's resend, the job's backoff) takes over.
pub const RECORD_ATTEMPTS_MAX: u32 = 3;

/// What a provider says was paid.
#[derive(Clone, Debug)]
pub struct PaymentFact {
    pub provider: String,
    pub trade_no: String,
    pub amount: Money,
    pub paid_at_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Captured and delivered in the same transaction.
    Delivered { late: bool },
    /// Captured; delivery waits for stock or for the platform's endpoint, under a deadline.
    Waiting { late: bool },
    /// Captured after expiry under a refund policy: the refund is requested.
    RefundDue,
    /// Already recorded (same provider trade): nothing changed.
    Duplicate,
    /// Does not add up (amount, provider, a second trade): nothing delivered, the order
    /// is flagged for a person.
    Refused { reason: &'static str },
}

/// Records a payment a provider's answer revealed (a query, a close) in its own
/// transaction.
pub async fn record_found(
    store: &Store,
    order: &OrderRow,
    fact: &PaymentFact,
    source: PaymentSource,
    cause: &str,
) -> Result<Recorded, StoreError> {
    let recorded = record(store, order.id, fact, source, cause).await?;
    tracing::info!(?recorded, source = source.as_str(), "payment found by asking the provider");
    Ok(recorded)
}

/// Records the payment in its own transaction, retrying transient conflicts.
pub async fn record(
    store: &Store,
    order_id: OrderId,
    fact: &PaymentFact,
    source: PaymentSource,
    cause: &str,
) -> Result<Recorded, StoreError> {
    let mut attempt = 1;
    loop {
        let mut tx = store.begin().await?;
        let outcome = record_in(&mut tx, order_id, fact, source, cause, zerodrop_store::now_ms()).await;
        let outcome = match outcome {
            Ok(recorded) => tx.commit().await.map(|()| recorded),
            Err(e) => Err(e),
        };
        match outcome {
            Err(e) if e.is_retryable() && attempt < RECORD_ATTEMPTS_MAX => attempt += 1,
            other => return other,
        }
    }
}

/// Records the payment in the caller's transaction. The caller commits.
pub async fn record_in(
    tx: &mut Tx,
    order_id: OrderId,
    fact: &PaymentFact,
    source: PaymentSource,
    cause: &str,
    now_ms: i64,
) -> Result<Recorded, StoreError> {
    let mut order = orders::lock(tx, order_id).await?;
    record_locked(tx, &mut order, fact, source, cause, now_ms).await
}

/// Records the payment for an order the caller has already locked in `tx`.
#[tracing::instrument(name = "payment.record", skip_all, fields(order.no = %order.order_no, trade_no = %fact.trade_no, source = source.as_str()))]
pub async fn record_locked(
    tx: &mut Tx,
    order: &mut OrderRow,
    fact: &PaymentFact,
    source: PaymentSource,
    cause: &str,
    now_ms: i64,
) -> Result<Recorded, StoreError> {
    let late = match order.status {
        OrderStatus::AwaitingPayment => fact.paid_at_ms.is_some_and(|paid| paid > order.expires_at_ms),
        OrderStatus::Expired => true,
        // Paid statuses always come with their payment (the audit checks it): this is a
        // duplicate, or a second trade for an order already paid.
        OrderStatus::Paid
        | OrderStatus::Delivered
        | OrderStatus::RefundDue
        | OrderStatus::Refunding
        | OrderStatus::Refunded => {
            let existing = payments::for_order(tx, order.id).await?.ok_or_else(|| {
                StoreError::Invariant(format!("order {} is {} but has no payment", order.order_no, order.status))
            })?;
            if existing.provider == fact.provider && existing.trade_no == fact.trade_no {
                return Ok(Recorded::Duplicate);
            }
            let detail =
                json!({ "recorded_trade_no": existing.trade_no, "other_trade_no": fact.trade_no, "source": source });
            return refuse(tx, order, "second_trade_for_paid_order", detail, cause, now_ms).await;
        }
    };
    if fact.provider != order.provider {
        let detail = json!({ "order_provider": order.provider, "payment_provider": fact.provider, "source": source });
        return refuse(tx, order, "provider_mismatch", detail, cause, now_ms).await;
    }
    if fact.amount != order.amount {
        let detail = json!({
            "expected": order.amount.to_decimal(), "expected_currency": order.amount.currency.code(),
            "reported": fact.amount.to_decimal(), "reported_currency": fact.amount.currency.code(),
            "trade_no": fact.trade_no, "source": source,
        });
        return refuse(tx, order, "amount_mismatch", detail, cause, now_ms).await;
    }

    let payment = NewPayment {
        order_id: order.id,
        provider: &fact.provider,
        trade_no: &fact.trade_no,
        amount: fact.amount,
        paid_at_ms: fact.paid_at_ms,
        source,
        late,
    };
    if !payments::insert(tx, &payment, now_ms).await? {
        // This order has no payment (its status says so, under its lock), so the trade
        // number is already recorded for another order.
        let other = payments::by_trade(tx, &fact.provider, &fact.trade_no).await?;
        let detail =
            json!({ "trade_no": fact.trade_no, "recorded_for_order": other.map(|p| p.order_id), "source": source });
        return refuse(tx, order, "trade_already_used", detail, cause, now_ms).await;
    }
    let captured = json!({
        "trade_no": fact.trade_no, "amount": fact.amount.to_decimal(), "currency": fact.amount.currency.code(),
        "paid_at_ms": fact.paid_at_ms, "source": source, "late": late,
    });
    let captured = NewEvent::new(EventKind::PaymentCaptured, Actor::Provider, cause, captured);

    if late && order.product.late_payment == LatePolicy::Refund {
        let data = json!({ "reason": "late_payment", "policy": order.product.late_payment.as_str() });
        let due = NewEvent::new(EventKind::RefundDue, Actor::System, "late_payment_policy", data);
        events::append_all(tx, order, vec![captured, due], now_ms).await?;
        request_in(tx, order, None, Origin::LatePayment, "paid after the order expired", now_ms)
            .await
            .map_err(into_store)?;
        return Ok(Recorded::RefundDue);
    }
    match delivery::start(tx, order, vec![captured], now_ms).await? {
        delivery::Started::Delivered => Ok(Recorded::Delivered { late }),
        delivery::Started::Waiting => Ok(Recorded::Waiting { late }),
    }
}

/// Inside the payment path a refund refusal can only mean the record is inconsistent
/// (the payment was just captured), so it stops the transaction.
fn into_store(e: RefundError) -> StoreError {
    match e {
        RefundError::Store(e) => e,
        other => StoreError::Invariant(format!("late-payment refund: {other}")),
    }
}

async fn refuse(
    tx: &mut Tx,
    order: &mut OrderRow,
    reason: &'static str,
    mut detail: serde_json::Value,
    cause: &str,
    now_ms: i64,
) -> Result<Recorded, StoreError> {
    detail["reason"] = json!(reason);
    events::append(tx, order, NewEvent::new(EventKind::AttentionRaised, Actor::System, cause, detail), now_ms).await?;
    tracing::warn!(order.no = %order.order_no, reason, "payment refused; order flagged for attention");
    Ok(Recorded::Refused { reason })
}
