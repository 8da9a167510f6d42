//! The one path by which an order becomes paid.
//!
//! A notification, a query answer, a close that found the order paid, a parked
//! notification resolved later: whoever brings the news calls [`record_in`]. In the
//! caller's transaction it locks the order, records the payment (unique per provider
//! trade and per order), delivers internal goods or marks a late payment for refund,
//! appends the events and enqueues follow-ups. Duplicates and races between sources are
//! settled by the order lock and the database's unique constraints, not by timing.

use crate::flows::agreement::paid::{self as agreement_paid, UnderAgreement};
use crate::flows::delivery;
use crate::flows::refund::charge;
use crate::flows::refund::request::request_in;
use crate::flows::refund::{Origin, RefundError};
use serde_json::json;
use zerodrop_domain::catalog::LatePolicy;
use zerodrop_domain::money::Money;
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_domain::OrderId;
use zerodrop_providers::SignedAnswer;
use zerodrop_store::answers::{self, NewAnswer};
use zerodrop_store::charges::{self, ChargeClass, ChargeRow, NewCharge};
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
    /// The provider's signed answer that said so, when zerodrop asked (a query, a close);
    /// a notification is stored raw by intake instead, and named by the cause.
    pub answer: Option<SignedAnswer>,
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
    /// Recorded as a charge that is not the order's payment (a second trade, a wrong
    /// amount or provider): its full refund is requested; nothing is delivered.
    ChargeRefunding { class: ChargeClass },
    /// The trade is already recorded for another order: nothing new was paid, and the
    /// order is flagged for a person.
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
            // A conflict is worth another try; an unreachable database is not (the next
            // try would wait the whole connection wait again).
            Err(e) if e.is_retryable() && !e.is_unavailable() && attempt < RECORD_ATTEMPTS_MAX => attempt += 1,
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
///
/// Every trade becomes a charge once (unique per provider and trade). Its class decides
/// what ends it: the order's payment is delivered (or refunded by the late policy); any
/// other charge on the order is refunded in full at once. A charge parked for an unknown
/// order is claimed by its order here, unless its refund has already begun.
#[tracing::instrument(name = "payment.record", skip_all, fields(order.no = %order.order_no, trade_no = %fact.trade_no, source = source.as_str()))]
pub async fn record_locked(
    tx: &mut Tx,
    order: &mut OrderRow,
    fact: &PaymentFact,
    source: PaymentSource,
    cause: &str,
    now_ms: i64,
) -> Result<Recorded, StoreError> {
    let class = classify(tx, order, fact).await?;
    let late = class == ChargeClass::Late;
    let answer_id = match &fact.answer {
        Some(answer) => Some(keep_answer(tx, order, fact, answer, now_ms).await?),
        None => None,
    };
    let evidence = evidence(source, cause, answer_id);
    let new = NewCharge {
        provider: &fact.provider,
        trade_no: &fact.trade_no,
        order_no: order.order_no.as_str(),
        order_id: Some(order.id),
        amount: fact.amount,
        paid_at_ms: fact.paid_at_ms,
        class,
        evidence: &evidence,
    };
    // One statement in the common case (a new trade); a trade already recorded is read
    // back and decided on below.
    let charge = match charges::insert_new(tx, &new, now_ms).await? {
        Some(charge) => charge,
        None => {
            let known = charges::by_trade(tx, &fact.provider, &fact.trade_no)
                .await?
                .ok_or_else(|| StoreError::Invariant(format!("trade {} vanished", fact.trade_no)))?;
            match known.order_id() {
                Some(id) if id == order.id => return Ok(Recorded::Duplicate),
                Some(other) => {
                    let detail = json!({
                        "trade_no": fact.trade_no, "recorded_for_order": other, "source": source, "at_stake_minor": 0,
                    });
                    return refuse(tx, order, "trade_already_used", detail, cause, now_ms).await;
                }
                // Parked for an unknown order, and this is its order: claim it, unless its
                // refund has begun (then the money is on its way back; the order stays unpaid).
                None => {
                    if !charges::claim(tx, known.id, order.id, class, now_ms).await? {
                        let data = json!({
                            "charge_id": known.id, "trade_no": known.trade_no, "class": known.class.as_str(),
                            "amount": known.amount.to_decimal(),
                            "note": "already being refunded: it reached no order in time",
                        });
                        let event = NewEvent::new(EventKind::ChargeRecorded, Actor::Provider, cause, data);
                        events::append(tx, order, event, now_ms).await?;
                        return Ok(Recorded::ChargeRefunding { class: known.class });
                    }
                    charges::get(tx, known.id).await?.ok_or(StoreError::NotFound)?
                }
            }
        }
    };
    if !class.is_order_payment() {
        return refund_charge(tx, order, &charge, source, cause, now_ms).await;
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
        // The charge is new and the order unpaid (under its lock): nothing else can hold
        // this payment's place.
        return Err(StoreError::Invariant(format!("order {} refused its payment row", order.order_no)));
    }
    let captured = json!({
        "trade_no": fact.trade_no, "amount": fact.amount.to_decimal(), "currency": fact.amount.currency.code(),
        "paid_at_ms": fact.paid_at_ms, "source": source, "late": late, "charge_id": charge.id,
    });
    let captured = NewEvent::new(EventKind::PaymentCaptured, Actor::Provider, cause, captured);

    // An order charged under an agreement: a termination committed first refunds it in
    // full (its product policy never delivers it), as does a late payment (the renewal
    // moved on); otherwise its period is recorded.
    let under_agreement = agreement_paid::on_paid(tx, order, late, now_ms).await?;
    let late_refund =
        (late && order.product.late_payment == LatePolicy::Refund) || under_agreement == UnderAgreement::LateRefund;
    match under_agreement {
        UnderAgreement::RefundAfterTermination => {
            let data = json!({ "reason": "agreement_terminated" });
            let due = NewEvent::new(EventKind::RefundDue, Actor::System, "agreement_terminated", data);
            events::append_all(tx, order, vec![captured, due], now_ms).await?;
            let reason = "charged under an agreement after its termination was committed";
            request_in(tx, order, None, Origin::AgreementTerminated, reason, now_ms).await.map_err(into_store)?;
            return Ok(Recorded::RefundDue);
        }
        UnderAgreement::No | UnderAgreement::PeriodRecorded | UnderAgreement::LateRefund => {}
    }
    if late_refund {
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

/// Which policy ends this trade on this order.
async fn classify(tx: &mut Tx, order: &OrderRow, fact: &PaymentFact) -> Result<ChargeClass, StoreError> {
    let late = match order.status {
        OrderStatus::AwaitingPayment => fact.paid_at_ms.is_some_and(|paid| paid > order.expires_at_ms),
        OrderStatus::Expired => true,
        // Paid statuses always come with their payment (the audit checks it), and the same
        // trade would have been found above: this is a second trade, the user paid twice.
        OrderStatus::Paid
        | OrderStatus::Delivered
        | OrderStatus::RefundDue
        | OrderStatus::Refunding
        | OrderStatus::Refunded => {
            payments::for_order(tx, order.id).await?.ok_or_else(|| {
                StoreError::Invariant(format!("order {} is {} but has no payment", order.order_no, order.status))
            })?;
            return Ok(ChargeClass::DuplicateTrade);
        }
    };
    Ok(if fact.provider != order.provider {
        ChargeClass::ProviderMismatch
    } else if fact.amount != order.amount {
        ChargeClass::AmountMismatch
    } else if late {
        ChargeClass::Late
    } else {
        ChargeClass::Matched
    })
}

/// What reported the trade, kept with the charge: a notification is stored raw by intake
/// (the cause names it, `notification:<id>`); a provider's answer is stored raw here
/// (`answer_id`), beside the job or call that asked (the cause). The audit verifies
/// either again with the provider's public key.
fn evidence(source: PaymentSource, cause: &str, answer_id: Option<i64>) -> serde_json::Value {
    match answer_id {
        Some(id) => json!({ "source": source, "cause": cause, "answer_id": id }),
        None => json!({ "source": source, "cause": cause }),
    }
}

/// Stores the provider's signed answer behind this payment, in `tx`; returns its id.
async fn keep_answer(
    tx: &mut Tx,
    order: &OrderRow,
    fact: &PaymentFact,
    answer: &SignedAnswer,
    now_ms: i64,
) -> Result<i64, StoreError> {
    let row = NewAnswer {
        provider: &fact.provider,
        method: &answer.method,
        order_no: order.order_no.as_str(),
        trade_no: Some(&fact.trade_no),
        content: &answer.content,
        sign: &answer.sign,
    };
    answers::insert(tx, &row, now_ms).await
}

/// A charge on this order that is not its payment: recorded on the timeline, refunded in
/// full, and (for a wrong amount or provider) the order flagged for a person to look at.
async fn refund_charge(
    tx: &mut Tx,
    order: &mut OrderRow,
    charge: &ChargeRow,
    source: PaymentSource,
    cause: &str,
    now_ms: i64,
) -> Result<Recorded, StoreError> {
    let mut data = json!({
        "charge_id": charge.id, "class": charge.class.as_str(), "trade_no": charge.trade_no,
        "amount": charge.amount.to_decimal(), "currency": charge.amount.currency.code(),
        "order_amount": order.amount.to_decimal(), "provider": charge.provider, "source": source,
    });
    let mut pending = vec![NewEvent::new(EventKind::ChargeRecorded, Actor::Provider, cause, data.clone())];
    if matches!(charge.class, ChargeClass::AmountMismatch | ChargeClass::ProviderMismatch) {
        // The money goes back by itself; the flag is for a person to see why it came.
        data["reason"] = json!(charge.class.as_str());
        data["at_stake_minor"] = json!(0);
        pending.push(NewEvent::new(EventKind::AttentionRaised, Actor::System, cause, data));
    }
    events::append_all(tx, order, pending, now_ms).await?;
    let reason = match charge.class {
        ChargeClass::DuplicateTrade => "the order was already paid: a second payment goes back",
        ChargeClass::AmountMismatch => "paid amount differs from the order",
        ChargeClass::ProviderMismatch => "paid through another provider than the order's",
        ChargeClass::UnknownOrder | ChargeClass::Matched | ChargeClass::Late => "charge refund",
    };
    charge::refund_in(tx, charge, Some(order), reason, cause, now_ms).await?;
    tracing::warn!(order.no = %order.order_no, class = charge.class.as_str(), "charge off the order's path: refunding");
    Ok(Recorded::ChargeRefunding { class: charge.class })
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
