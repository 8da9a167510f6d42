//! The paid path's hook for orders charged under an agreement.
//!
//! Whoever brings the news (the charge call's answer, a query, a notification, a late
//! sweep) reaches `flows::payment::record_locked` once per order payment; there, under
//! the order's lock, this takes the agreement's lock and decides:
//! - the agreement's termination was committed (by the user, or the provider's side) before
//!   this payment landed: the charge is refunded in full through the one refund path, and
//!   the order's product policy never delivers it;
//! - the payment landed after its order expired (a charge the provider settled late): it
//!   is refunded in full too, whatever the product's late policy, because the renewal has
//!   moved on (retried with another order, or lapsed) and nobody pays twice for a period;
//! - otherwise the period is recorded on the agreement (paid-until, periods paid), exactly
//!   once, because this runs once per order payment.
//!
//! Locks are always taken order first, then agreement (charge_period stores a new order
//! under the agreement's lock, which no one else can hold yet), so this cannot deadlock.

use serde_json::json;
use zerodrop_domain::notice::{self, RefundChannel};
use zerodrop_domain::ProductKind;
use zerodrop_store::agreements;
use zerodrop_store::agreements::timeline::{self, Kind, NewAgreementEvent};
use zerodrop_store::orders::OrderRow;
use zerodrop_store::{StoreError, Tx};

/// One day, for periods.
const DAY_MS: i64 = 86_400_000;

/// What the paid path does with an order's payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnderAgreement {
    /// Not charged under an agreement: the order's own policy decides.
    No,
    /// Under an agreement that may still charge: the period is recorded; deliver.
    PeriodRecorded,
    /// Under an agreement that was terminated first: refund in full, never deliver.
    RefundAfterTermination,
    /// Under an agreement, and late (its order expired before the payment landed):
    /// refunded in full, nothing recorded. The renewal had moved on (retried, or lapsed),
    /// so nobody pays twice for one period, whatever the product's late policy.
    LateRefund,
}

/// Decides (and records) what an agreement order's payment means, in the paid path's
/// transaction. `late`: the payment landed after the order expired.
pub async fn on_paid(tx: &mut Tx, order: &OrderRow, late: bool, now_ms: i64) -> Result<UnderAgreement, StoreError> {
    let Some(agreement_id) = agreements::agreement_of_order(tx, order.id).await? else {
        return Ok(UnderAgreement::No);
    };
    let mut row = agreements::lock(tx, &agreement_id).await?;
    let cause = format!("order:{}", order.order_no);
    if let Some(committed_at_ms) = row.termination_committed_at_ms {
        let event = NewAgreementEvent::new(
            Kind::Recorded("charge_refunded_after_termination"),
            &cause,
            json!({ "order_no": order.order_no, "amount_minor": order.amount.minor,
                    "currency": order.amount.currency.code(), "termination_committed_at_ms": committed_at_ms }),
        );
        timeline::append(tx, &mut row, event, now_ms).await?;
        tracing::warn!(agreement = %row.id, order.no = %order.order_no, "a charge landed after termination: refunding");
        // The user is told where the money goes and how long it takes, once per order.
        let body = notice::refund_arrival(order.amount, &order.provider, RefundChannel::Unknown);
        let key = format!("refund_arrival:{}", order.order_no);
        crate::flows::messages::post_stored(tx, &order.user_id, "refund_arrival", &body, &key, now_ms).await?;
        return Ok(UnderAgreement::RefundAfterTermination);
    }
    if late {
        let event = NewAgreementEvent::new(
            Kind::Recorded("late_charge_refunded"),
            &cause,
            json!({ "order_no": order.order_no, "amount_minor": order.amount.minor,
                    "currency": order.amount.currency.code() }),
        );
        timeline::append(tx, &mut row, event, now_ms).await?;
        return Ok(UnderAgreement::LateRefund);
    }
    let days = match &order.product.kind {
        ProductKind::Membership { days, .. } => *days,
        ProductKind::CurrencyPack { .. } | ProductKind::CardKey | ProductKind::External { .. } => {
            return Ok(UnderAgreement::PeriodRecorded)
        }
    };
    // Paid-until moves one period on (from now, if it had lapsed).
    let from = row.paid_until_ms.unwrap_or(now_ms).max(now_ms);
    let event = NewAgreementEvent::period_paid(
        &cause,
        from + days * DAY_MS,
        row.periods_paid + 1,
        json!({ "order_no": order.order_no }),
    );
    timeline::append(tx, &mut row, event, now_ms).await?;
    // The next period's reminder and renewal, in the transaction that paid this one.
    crate::flows::renewal::schedule_period(tx, &row, now_ms).await?;
    Ok(UnderAgreement::PeriodRecorded)
}
