//! Accepting a verified notification, in the caller's transaction (the committer's
//! batch): the raw request is stored with its verdict and, for a payment, recorded
//! through the one payment path; a refund notification settles the refund it names. A
//! notification for an order zerodrop does not know is parked with a job that keeps
//! trying to match it, never acknowledged and forgotten.

use super::evidence::{self, Fields, Inbound};
use crate::flows::payment::{self, PaymentFact, Recorded};
use crate::flows::refund::settle::{settle_in, Final};
use crate::jobs::enqueue;
use crate::jobs::resolve_parked::ResolveParked;
use serde_json::json;
use zerodrop_domain::order::{Actor, EventKind};
use zerodrop_providers::{AckKind, Notice, NoticeStatus, RefundNotice};
use zerodrop_store::charges::{self, ChargeClass, NewCharge};
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::notifications::{self, Verdict};
use zerodrop_store::orders::{self, OrderRow};
use zerodrop_store::payments::PaymentSource;
use zerodrop_store::refunds::{self, RefundState};
use zerodrop_store::{StoreError, Tx};

/// A parked notification is first matched again after this long.
const PARKED_FIRST_RETRY_MS: i64 = 1_000;

/// Stores a verified notification and acts on it in `tx`. Returns how to answer the
/// provider once that transaction commits.
#[tracing::instrument(name = "intake.accept", skip_all, fields(provider = %inbound.provider, order.no = %notice.order_no))]
pub async fn accept_in(tx: &mut Tx, inbound: &Inbound, notice: &Notice, now: i64) -> Result<AckKind, StoreError> {
    let fields = || Fields::of(notice);
    let Some(mut order) = orders::lock_by_no(tx, &notice.order_no).await? else {
        let id = evidence::insert(tx, inbound, Verdict::Parked, Some("unknown order"), fields(), now);
        // The money is recorded now, whatever becomes of the order: a charge of its own,
        // refunded after the park window unless its order appears first.
        if let (NoticeStatus::Paid { amount, paid_at_ms }, Some(trade_no)) = (&notice.status, &notice.trade_no) {
            let evidence = json!({ "source": "notification", "cause": format!("notification:{id}") });
            let charge = NewCharge {
                provider: &inbound.provider,
                trade_no,
                order_no: &notice.order_no,
                order_id: None,
                amount: *amount,
                paid_at_ms: *paid_at_ms,
                class: ChargeClass::UnknownOrder,
                evidence: &evidence,
            };
            if amount.minor > 0 {
                charges::record(tx, &charge, now).await?;
            }
        }
        let job = ResolveParked { notification_id: id, provider: inbound.provider.clone() };
        enqueue(tx, &job, now + PARKED_FIRST_RETRY_MS, now).await?;
        tracing::warn!("notification for an unknown order parked");
        // Not acknowledged: the provider keeps resending while we keep looking.
        return Ok(AckKind::RetryLater);
    };
    if let Some(refund) = &notice.refund {
        let id = evidence::insert(tx, inbound, Verdict::Accepted, Some("refund notification"), fields(), now);
        refund_notice(tx, &inbound.provider, &mut order, notice, refund, id, now).await?;
        return Ok(AckKind::Accepted);
    }
    let NoticeStatus::Paid { amount, paid_at_ms } = &notice.status else {
        evidence::insert(tx, inbound, Verdict::Ignored, Some("not a payment"), fields(), now);
        return Ok(AckKind::Accepted);
    };
    let Some(trade_no) = notice.trade_no.clone() else {
        evidence::insert(tx, inbound, Verdict::Rejected, Some("malformed: paid without trade_no"), fields(), now);
        return Ok(AckKind::Rejected);
    };
    let id = evidence::insert(tx, inbound, Verdict::Accepted, None, fields(), now);
    let fact = PaymentFact {
        provider: inbound.provider.clone(),
        trade_no,
        amount: *amount,
        paid_at_ms: *paid_at_ms,
        answer: None,
    };
    let cause = format!("notification:{id}");
    let recorded = payment::record_locked(tx, &mut order, &fact, PaymentSource::Notification, &cause, now).await?;
    Ok(match recorded {
        Recorded::Delivered { .. }
        | Recorded::Waiting { .. }
        | Recorded::RefundDue
        | Recorded::ChargeRefunding { .. } => AckKind::Accepted,
        Recorded::Duplicate => {
            notifications::set_verdict(tx, id, Verdict::Duplicate, Some("payment already recorded"), now).await?;
            AckKind::Accepted
        }
        Recorded::Refused { reason } => {
            notifications::set_verdict(tx, id, Verdict::Rejected, Some(reason), now).await?;
            AckKind::Rejected
        }
    })
}

/// A provider reports a refund on a trade. It settles ours when it names our request
/// number, our order (the lock above) and the refund's own trade: a genuine notice about
/// another refund settles nothing. A refunded total on the trade beyond what zerodrop
/// asked of it, or a refund on an order never paid, goes to a person.
async fn refund_notice(
    tx: &mut Tx,
    provider: &str,
    order: &mut OrderRow,
    whole: &Notice,
    notice: &RefundNotice,
    notification_id: i64,
    now: i64,
) -> Result<(), StoreError> {
    let cause = format!("notification:{notification_id}");
    let trade_no = &whole.trade_no;
    // A refund notice about a trade still paid is also news that it was paid: a trade
    // zerodrop never heard of becomes a charge here, through the one payment path.
    if let (NoticeStatus::Paid { amount, paid_at_ms }, Some(trade)) = (&whole.status, trade_no) {
        if charges::by_trade(tx, provider, trade).await?.is_none() {
            let fact = PaymentFact {
                provider: provider.to_owned(),
                trade_no: trade.clone(),
                amount: *amount,
                paid_at_ms: *paid_at_ms,
                answer: None,
            };
            payment::record_locked(tx, order, &fact, PaymentSource::Notification, &cause, now).await?;
        }
    }
    let data = json!({
        "request_no": notice.request_no, "trade_no": trade_no, "refunded_total": notice.refunded_total.to_decimal(),
        "at_ms": notice.at_ms, "reason": "refund_outside_zerodrop", "at_stake_minor": 0,
    });
    let charge = match trade_no {
        Some(trade_no) => charges::by_trade(tx, provider, trade_no).await?,
        None => None,
    };
    let charge = charge.filter(|c| c.order_id() == Some(order.id));
    let Some(charge) = charge else {
        // A trade zerodrop never recorded for this order: nobody here asked for this.
        let event = NewEvent::new(EventKind::AttentionRaised, Actor::Provider, &cause, data);
        return events::append(tx, order, event, now).await;
    };
    if order.status.is_paid() {
        let event = NewEvent::new(EventKind::RefundNotified, Actor::Provider, &cause, data.clone());
        events::append(tx, order, event, now).await?;
    }
    let mut ours = refunds::for_charge(tx, charge.id).await?;
    if charge.class.is_order_payment() {
        // Refunds stored before charges existed name only their order.
        let legacy = refunds::for_order(tx, order.id).await?.into_iter().filter(|r| r.charge_id.is_none());
        ours.extend(legacy);
    }
    if let Some(refund) = notice.request_no.as_ref().and_then(|no| ours.iter().find(|r| &r.request_no == no)) {
        settle_in(tx, Some(order), refund, &Final::Succeeded, &cause, now).await?;
    }
    let asked: i64 = ours.iter().filter(|r| r.state != RefundState::Failed).map(|r| r.amount.minor).sum();
    if notice.refunded_total.minor > asked {
        events::append(tx, order, NewEvent::new(EventKind::AttentionRaised, Actor::System, &cause, data), now).await?;
    }
    Ok(())
}
