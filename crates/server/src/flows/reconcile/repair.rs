//! What a difference's repair does in its transaction: put it in front of a person with
//! the bill line as the cause, or record a trade paid for an order zerodrop never issued
//! and refund it at once. The provider is asked by the repair job before either
//! (`jobs::repair_difference`); payments of known orders go through the one payment path.

use crate::flows::payment::PaymentFact;
use crate::flows::refund::charge;
use serde_json::{json, Value};
use zerodrop_domain::order::{Actor, EventKind};
use zerodrop_domain::OrderId;
use zerodrop_store::answers::{self, NewAnswer};
use zerodrop_store::attention::{self, NewItem};
use zerodrop_store::bills::{self, DifferenceRow, DifferenceState};
use zerodrop_store::charges::{self, ChargeClass, NewCharge};
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::orders;
use zerodrop_store::{StoreError, Tx};

/// Attention reasons a reconciliation raises, by what stays different.
pub mod reason {
    /// The bill shows a trade paid that the provider's own query does not confirm.
    pub const TRADE_UNCONFIRMED: &str = "bill_trade_unconfirmed";
    /// zerodrop holds a charge no bill shows.
    pub const CHARGE_NOT_BILLED: &str = "bill_charge_missing";
    /// The bill's amount is not the charge's.
    pub const AMOUNT_DIFFERS: &str = "bill_amount_differs";
    /// The bill shows a refund zerodrop never asked for, or one it holds as not made.
    pub const REFUND_UNKNOWN: &str = "bill_refund_unknown";
    /// zerodrop holds a refund as made that no bill shows.
    pub const REFUND_NOT_BILLED: &str = "bill_refund_missing";
    /// The repair itself failed on every attempt (the provider or the database).
    pub const REPAIR_FAILED: &str = "bill_repair_failed";
}

/// Puts the difference in front of a person: an attention item (raised by an event in
/// its order's timeline when it has an order, so the order shows it), caused by the bill
/// line, and the difference marked `attention`. `at_stake_minor` is the user's money the
/// item decides (0 when the record is whole and only the bill differs).
pub async fn to_person_in(
    tx: &mut Tx,
    difference: &DifferenceRow,
    reason: &str,
    mut detail: Value,
    at_stake_minor: i64,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let Some(locked) = bills::lock_difference(tx, difference.id).await? else {
        return Err(StoreError::NotFound);
    };
    if locked.state != DifferenceState::Pending {
        return Ok(false);
    }
    let cause = difference.cause();
    if let Value::Object(map) = &mut detail {
        map.insert("reason".into(), json!(reason));
        map.insert("difference_id".into(), json!(difference.id));
        map.insert("class".into(), json!(difference.class.as_str()));
        map.insert("trade_no".into(), json!(difference.trade_no));
        map.insert("bill_amount_minor".into(), json!(difference.bill_amount_minor));
        map.insert("amount_minor".into(), json!(difference.amount_minor));
        map.insert("at_stake_minor".into(), json!(at_stake_minor));
    }
    match difference.order_id.as_deref().and_then(OrderId::parse) {
        Some(order_id) => {
            let mut order = orders::lock(tx, order_id).await?;
            let event = NewEvent::new(EventKind::AttentionRaised, Actor::System, &cause, detail);
            events::append(tx, &mut order, event, now_ms).await?;
        }
        None => {
            let item = NewItem {
                charge_id: difference.charge_id,
                at_stake_minor,
                currency: Some("CNY".into()),
                ..NewItem::new(reason, json!({ "cause": cause, "detail": detail }))
            };
            attention::raise(tx, item, now_ms).await?;
        }
    }
    bills::settle(tx, difference.id, DifferenceState::Attention, &format!("with a person ({reason})"), now_ms).await
}

/// Records a trade that the bill and the provider's signed answer show paid for an order
/// zerodrop never issued as an `unknown_order` charge (its evidence: the answer, kept in
/// the same transaction) and requests its full refund at once: a day after the payment,
/// no order will appear for it. Returns the refund's request number.
pub async fn unknown_order_in(
    tx: &mut Tx,
    difference: &DifferenceRow,
    order_no: &str,
    fact: &PaymentFact,
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    let Some(locked) = bills::lock_difference(tx, difference.id).await? else {
        return Err(StoreError::NotFound);
    };
    if locked.state != DifferenceState::Pending {
        return Ok(None);
    }
    let cause = difference.cause();
    let answer_id = match &fact.answer {
        Some(answer) => {
            let row = NewAnswer {
                provider: &fact.provider,
                method: &answer.method,
                order_no,
                trade_no: Some(&fact.trade_no),
                content: &answer.content,
                sign: &answer.sign,
            };
            Some(answers::insert(tx, &row, now_ms).await?)
        }
        None => None,
    };
    let evidence = json!({ "source": "query", "cause": cause, "answer_id": answer_id });
    let new = NewCharge {
        provider: &fact.provider,
        trade_no: &fact.trade_no,
        order_no,
        order_id: None,
        amount: fact.amount,
        paid_at_ms: fact.paid_at_ms,
        class: ChargeClass::UnknownOrder,
        evidence: &evidence,
    };
    let (charge, _) = charges::record(tx, &new, now_ms).await?;
    let refund = if charge.class.is_order_payment() {
        // Claimed by an order after all (it appeared since): its payment path ends it.
        None
    } else {
        Some(
            charge::refund_in(tx, &charge, None, "paid for an order zerodrop never issued (bill)", &cause, now_ms)
                .await?,
        )
    };
    let outcome = match &refund {
        Some(refund) => format!("recorded as charge {} and refunded in full ({})", charge.id, refund.request_no),
        None => format!("recorded as charge {} of its order", charge.id),
    };
    bills::settle(tx, difference.id, DifferenceState::Repaired, &outcome, now_ms).await?;
    Ok(refund.map(|r| r.request_no))
}
