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
        let job = ResolveParked { notification_id: id, provider: inbound.provider.clone() };
        enqueue(tx, &job, now + PARKED_FIRST_RETRY_MS, now).await?;
        tracing::warn!("notification for an unknown order parked");
        // Not acknowledged: the provider keeps resending while we keep looking.
        return Ok(AckKind::RetryLater);
    };
    if let Some(refund) = &notice.refund {
        let id = evidence::insert(tx, inbound, Verdict::Accepted, Some("refund notification"), fields(), now);
        refund_notice(tx, &mut order, refund, id, now).await?;
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
    let fact = PaymentFact { provider: inbound.provider.clone(), trade_no, amount: *amount, paid_at_ms: *paid_at_ms };
    let cause = format!("notification:{id}");
    let recorded = payment::record_locked(tx, &mut order, &fact, PaymentSource::Notification, &cause, now).await?;
    Ok(match recorded {
        Recorded::Delivered { .. } | Recorded::Waiting { .. } | Recorded::RefundDue => AckKind::Accepted,
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

/// A provider reports a refund: it settles ours (the same outcome path as the refund job's
/// query), and a refunded total beyond what zerodrop asked for goes to a person.
async fn refund_notice(
    tx: &mut Tx,
    order: &mut OrderRow,
    notice: &RefundNotice,
    notification_id: i64,
    now: i64,
) -> Result<(), StoreError> {
    let cause = format!("notification:{notification_id}");
    let data = json!({
        "request_no": notice.request_no, "refunded_total": notice.refunded_total.to_decimal(),
        "at_ms": notice.at_ms, "reason": "refund_outside_zerodrop",
    });
    if !order.status.is_paid() {
        let event = NewEvent::new(EventKind::AttentionRaised, Actor::Provider, &cause, data);
        return events::append(tx, order, event, now).await;
    }
    events::append(tx, order, NewEvent::new(EventKind::RefundNotified, Actor::Provider, &cause, data.clone()), now)
        .await?;
    let ours = refunds::for_order(tx, order.id).await?;
    if let Some(refund) = notice.request_no.as_ref().and_then(|no| ours.iter().find(|r| &r.request_no == no)) {
        settle_in(tx, order, refund, &Final::Succeeded, &cause, now).await?;
    }
    let asked: i64 = ours.iter().filter(|r| r.state != RefundState::Failed).map(|r| r.amount.minor).sum();
    if notice.refunded_total.minor > asked {
        events::append(tx, order, NewEvent::new(EventKind::AttentionRaised, Actor::System, &cause, data), now).await?;
    }
    Ok(())
}
