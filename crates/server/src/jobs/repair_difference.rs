//! The repair of one difference a reconciliation found. The provider is asked first (the
//! bill may be wrong, or a day behind), then the difference is ended through the one
//! payment or refund path, or put in front of a person with the bill line as its cause.
//! A difference is repaired once: its row is locked and must still be pending.

use super::deadline::Deadline;
use super::refund::{self as refund_job, Refund};
use super::{order_ref, Job, Outcome, Run};
use crate::flows::payment::{self, PaymentFact};
use crate::flows::reconcile::repair::{self as fix, reason};
use crate::services::Services;
use serde::{Deserialize, Serialize};
use serde_json::json;
use zerodrop_domain::money::{Currency, Money};
use zerodrop_domain::order::OrderStatus;
use zerodrop_domain::{OrderId, OrderNo};
use zerodrop_providers::{OrderRef, PaymentStatus, Provider, RefundStatus};
use zerodrop_store::bills::{self, Class, DifferenceRow, DifferenceState};
use zerodrop_store::payments::PaymentSource;
use zerodrop_store::refunds::{self, RefundState};
use zerodrop_store::{now_ms, orders, StoreError};

/// Failed runs (the provider unreachable, the database) before a person is asked.
const ATTEMPTS_MAX: i64 = 20;
/// A charge missing from its day's bill is looked for again this long after the day
/// ends: the next day's bill is fetched at 10:00 CST, a day and ten hours later.
const NEXT_BILL_AFTER_MS: i64 = 36 * 3_600_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RepairDifference {
    pub difference_id: i64,
}

impl Job for RepairDifference {
    const KIND: &'static str = "repair_difference";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        format!("repair_difference:{}", self.difference_id)
    }

    fn order_id(&self) -> Option<OrderId> {
        None
    }

    async fn run(self, services: &Services, run: &Run) -> Outcome {
        let difference = {
            let mut conn = match services.store.reader().await {
                Ok(conn) => conn,
                Err(e) => return e.into(),
            };
            match bills::get_difference(&mut conn, self.difference_id).await {
                Ok(Some(d)) if d.state == DifferenceState::Pending => d,
                Ok(_) => return Outcome::Done,
                Err(e) => return e.into(),
            }
        };
        let Some(provider) = services.provider(&difference.provider).cloned() else {
            return Outcome::Retry(format!("provider {} is not configured", difference.provider));
        };
        let result = match difference.class {
            Class::UnknownToUs => unknown_to_us(services, provider.as_ref(), &difference).await,
            Class::MissingFromBill | Class::AmountDiffers => {
                charge_differs(services, provider.as_ref(), &difference).await
            }
            Class::RefundUnknownToUs => refund_unknown(services, &difference, run).await,
            Class::RefundMissingFromBill => refund_not_billed(services, &difference).await,
            Class::NoOutcome => no_outcome(services, &difference, run).await,
        };
        services.wake();
        match result {
            Ok(()) => Outcome::Done,
            // The last attempt failed: the difference goes to a person with the error,
            // never left pending behind a generic exhausted-job item.
            Err(Outcome::Retry(error)) if run.attempt >= ATTEMPTS_MAX => {
                let detail = json!({ "why": "the repair failed on every attempt", "last_error": error });
                match person(services, &difference, reason::REPAIR_FAILED, detail, 0).await {
                    Ok(()) => Outcome::Done,
                    Err(outcome) => outcome,
                }
            }
            Err(outcome) => outcome,
        }
    }
}

type Step = Result<(), Outcome>;

fn store(e: StoreError) -> Outcome {
    e.into()
}

/// Asks the provider about the order number the difference names.
async fn ask(provider: &dyn Provider, order: &OrderRef) -> Result<PaymentStatus, Outcome> {
    provider.query_payment(order).await.map_err(|e| Outcome::Retry(e.to_string()))
}

/// Paid at the provider, unknown to zerodrop: the provider's signed answer is recorded
/// through the one payment path (delivered, or refunded by policy), with the bill line as
/// the cause; for an order zerodrop never issued, recorded and refunded in full.
async fn unknown_to_us(services: &Services, provider: &dyn Provider, d: &DifferenceRow) -> Step {
    let trade_no = d.trade_no.clone().unwrap_or_default();
    let order = match d.order_id.as_deref().and_then(OrderId::parse) {
        Some(id) => {
            let mut conn = services.store.reader().await.map_err(store)?;
            orders::get(&mut conn, id).await.map_err(store)?
        }
        None => None,
    };
    let order_no = d.order_no.clone().unwrap_or_default();
    if order.is_none() && OrderNo::parse(&order_no).is_none() {
        // Not an order number zerodrop issues: another system's payment on the same
        // merchant account. Counted, left alone: refunding it would take a stranger's sale.
        return resolved(
            services,
            d,
            "not an order number zerodrop issues (another system on this account): left alone",
        )
        .await;
    }
    let reference = match &order {
        Some(order) => OrderRef { trade_no: Some(trade_no.clone()), ..order_ref(order) },
        None => OrderRef {
            order_no: d.order_no.clone().unwrap_or_default(),
            amount: Money::new(d.bill_amount_minor, Currency::Cny),
            subject: String::new(),
            expires_at_ms: 0,
            trade_no: Some(trade_no.clone()),
        },
    };
    let status = ask(provider, &reference).await?;
    let PaymentStatus::Paid { trade_no: answered, amount, paid_at_ms, answer } = status else {
        return person(services, d, reason::TRADE_UNCONFIRMED, json!({ "provider_says": format!("{status:?}") }), 0)
            .await;
    };
    if answered != trade_no {
        let detail = json!({ "provider_says": "another trade", "provider_trade_no": answered });
        return person(services, d, reason::TRADE_UNCONFIRMED, detail, 0).await;
    }
    let fact = PaymentFact { provider: provider.name().to_owned(), trade_no, amount, paid_at_ms, answer };
    let cause = d.cause();
    let mut tx = services.store.begin().await.map_err(store)?;
    let outcome = match &order {
        Some(order) => {
            let Some(locked) = bills::lock_difference(&mut tx, d.id).await.map_err(store)? else {
                return Ok(());
            };
            if locked.state != DifferenceState::Pending {
                return Ok(());
            }
            let recorded = payment::record_in(&mut tx, order.id, &fact, PaymentSource::Query, &cause, now_ms())
                .await
                .map_err(store)?;
            let outcome = format!("recorded through the payment path: {recorded:?}");
            bills::settle(&mut tx, d.id, DifferenceState::Repaired, &outcome, now_ms()).await.map_err(store)?;
            outcome
        }
        None => {
            let refunded =
                fix::unknown_order_in(&mut tx, d, &reference.order_no, &fact, now_ms()).await.map_err(store)?;
            format!("unknown order, refund {refunded:?}")
        }
    };
    tx.commit().await.map_err(store)?;
    tracing::info!(difference = d.id, %outcome, "bill difference repaired");
    Ok(())
}

/// Known to zerodrop but missing from the bill, or billed for another amount: the
/// provider is asked again; a charge another bill shows after all is resolved, anything
/// else stays different and goes to a person.
async fn charge_differs(services: &Services, provider: &dyn Provider, d: &DifferenceRow) -> Step {
    let trade_no = d.trade_no.clone().unwrap_or_default();
    if d.class == Class::MissingFromBill {
        let mut conn = services.store.reader().await.map_err(store)?;
        if let Some(other) = bills::billed_elsewhere(&mut conn, &d.provider, &trade_no, "").await.map_err(store)? {
            drop(conn);
            return resolved(services, d, &format!("billed in bill {other}")).await;
        }
        // A charge near midnight may be in the next day's bill: look again once that bill
        // is due before asking a person.
        let bill_to_ms = bills::get(&mut conn, d.reconciliation_id).await.map_err(store)?.map(|r| r.bill.to_ms);
        if let Some(next_bill_ms) = bill_to_ms.map(|to| to + NEXT_BILL_AFTER_MS) {
            if now_ms() < next_bill_ms {
                return Err(Outcome::RunAgainAt(next_bill_ms, Some("waiting for the next day's bill".into())));
            }
        }
    }
    let order_no = d.order_no.clone().unwrap_or_default();
    let reference = OrderRef {
        order_no,
        amount: Money::new(d.amount_minor, Currency::Cny),
        subject: String::new(),
        expires_at_ms: 0,
        trade_no: Some(trade_no.clone()),
    };
    let status = ask(provider, &reference).await?;
    let provider_says = match &status {
        PaymentStatus::Paid { trade_no: t, amount, .. } => {
            json!({ "status": "paid", "trade_no": t, "amount_minor": amount.minor })
        }
        other => json!({ "status": format!("{other:?}") }),
    };
    let why = if d.class == Class::AmountDiffers { reason::AMOUNT_DIFFERS } else { reason::CHARGE_NOT_BILLED };
    person(services, d, why, json!({ "provider_says": provider_says }), 0).await
}

/// A refund the bill shows that zerodrop does not hold as made: one zerodrop asked for is
/// asked about again and settled through the one refund path (its own job's run); one
/// zerodrop never asked for, or that stays different, goes to a person.
async fn refund_unknown(services: &Services, d: &DifferenceRow, run: &Run) -> Step {
    let Some(refund_id) = d.refund_id.clone() else {
        let detail = json!({ "refund_no": d.refund_no, "why": "a refund zerodrop never asked for" });
        return person(services, d, reason::REFUND_UNKNOWN, detail, 0).await;
    };
    let order_id = d.order_id.as_deref().and_then(OrderId::parse);
    // The refund job's own step, recording the bill line as its cause.
    let settling = Refund { refund_id: refund_id.clone(), order_id }.run(services, &run.for_cause(d.cause())).await;
    let mut conn = services.store.reader().await.map_err(store)?;
    let refund = refunds::get(&mut conn, &refund_id).await.map_err(store)?.ok_or(Outcome::Done)?;
    drop(conn);
    match refund.state {
        RefundState::Succeeded if refund.amount.minor == d.bill_amount_minor => {
            repaired(services, d, &format!("refund {} settled as made", refund.request_no)).await
        }
        RefundState::Requested | RefundState::Processing | RefundState::Unknown => match settling {
            // Still unsettled at the provider: ask again when its job would.
            Outcome::RunAgainAt(at, note) => Err(Outcome::RunAgainAt(at, note)),
            Outcome::Retry(e) => Err(Outcome::Retry(e)),
            // The refund's own job has given up asking: a person settles it.
            Outcome::Done => {
                let detail = json!({ "refund_id": refund.id, "why": "the provider never settled the refund" });
                person(services, d, reason::REFUND_UNKNOWN, detail, 0).await
            }
        },
        state => {
            let detail = json!({ "refund_id": refund.id, "refund_state": state.as_str(), "refund_amount_minor": refund.amount.minor });
            person(services, d, reason::REFUND_UNKNOWN, detail, 0).await
        }
    }
}

/// A refund zerodrop holds as made that the bill lacks: another bill may show it;
/// otherwise the provider is asked about it again (same request number). Its confirmation
/// ends the difference (the bill is behind, as near midnight); any other answer, or none
/// on the last attempt, goes to a person.
async fn refund_not_billed(services: &Services, d: &DifferenceRow) -> Step {
    let key = d.refund_no.clone().unwrap_or_default();
    let trade_no = d.trade_no.clone().unwrap_or_default();
    let mut conn = services.store.reader().await.map_err(store)?;
    if let Some(other) = bills::billed_elsewhere(&mut conn, &d.provider, &trade_no, &key).await.map_err(store)? {
        drop(conn);
        return resolved(services, d, &format!("billed in bill {other}")).await;
    }
    drop(conn);
    let Some(refund_id) = d.refund_id.clone() else {
        return person(services, d, reason::REFUND_NOT_BILLED, json!({ "refund_no": key }), 0).await;
    };
    let (refund, answer) = refund_job::query(services, &refund_id).await?;
    match answer {
        Ok(RefundStatus::Succeeded) => {
            resolved(services, d, &format!("the provider confirms refund {} succeeded", refund.request_no)).await
        }
        Ok(other) => {
            let detail = json!({ "refund_no": key, "provider_says": format!("{other:?}") });
            person(services, d, reason::REFUND_NOT_BILLED, detail, refund.amount.minor).await
        }
        Err(e) => Err(Outcome::Retry(format!("refund query: {e}"))),
    }
}

/// A charge of the bill's range with no outcome past its deadline: the product's deadline
/// policy, exactly as the deadline job applies it (refund, or a person).
async fn no_outcome(services: &Services, d: &DifferenceRow, run: &Run) -> Step {
    let Some(order_id) = d.order_id.as_deref().and_then(OrderId::parse) else {
        return resolved(services, d, "no order").await;
    };
    // The deadline job's own step, recording the bill line as its cause.
    let decided = Deadline { order_id }.run(services, &run.for_cause(d.cause())).await;
    if let Outcome::RunAgainAt(at, note) = decided {
        return Err(Outcome::RunAgainAt(at, note));
    }
    if let Outcome::Retry(e) = decided {
        return Err(Outcome::Retry(e));
    }
    let mut conn = services.store.reader().await.map_err(store)?;
    let order = orders::get(&mut conn, order_id).await.map_err(store)?.ok_or(Outcome::Done)?;
    drop(conn);
    let outcome = match order.status {
        OrderStatus::Paid => "deadline policy applied: with a person".to_owned(),
        status => format!("deadline policy applied: {}", status.as_str()),
    };
    repaired(services, d, &outcome).await
}

async fn person(services: &Services, d: &DifferenceRow, why: &str, detail: serde_json::Value, at_stake: i64) -> Step {
    let mut tx = services.store.begin().await.map_err(store)?;
    fix::to_person_in(&mut tx, d, why, detail, at_stake, now_ms()).await.map_err(store)?;
    tx.commit().await.map_err(store)
}

async fn settle(services: &Services, d: &DifferenceRow, state: DifferenceState, outcome: &str) -> Step {
    let mut tx = services.store.begin().await.map_err(store)?;
    bills::settle(&mut tx, d.id, state, outcome, now_ms()).await.map_err(store)?;
    tx.commit().await.map_err(store)
}

async fn repaired(services: &Services, d: &DifferenceRow, outcome: &str) -> Step {
    settle(services, d, DifferenceState::Repaired, outcome).await
}

async fn resolved(services: &Services, d: &DifferenceRow, outcome: &str) -> Step {
    settle(services, d, DifferenceState::Resolved, outcome).await
}
