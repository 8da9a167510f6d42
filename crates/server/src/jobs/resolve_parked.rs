//! Parked notifications: verified, but about an order zerodrop did not know when they
//! arrived (lost in a fault, restored later, or created a moment after). Their money is
//! already a charge of class `unknown_order`. The job keeps matching through the park
//! window; when the order appears, the payment takes the one payment path (which claims
//! the charge). When the window ends with no order, the charge is refunded in full
//! through the one refund path.

use super::{Job, Outcome, Run};
use crate::flows::payment::{self, PaymentFact};
use crate::flows::refund;
use crate::services::Services;
use serde::{Deserialize, Serialize};
use zerodrop_domain::OrderId;
use zerodrop_providers::{Notice, NoticeStatus};
use zerodrop_store::charges;
use zerodrop_store::notifications::{self, Verdict};
use zerodrop_store::payments::PaymentSource;
use zerodrop_store::{now_ms, orders, StoreError, Tx};

/// Failed runs (the database, a missing provider) before a person is asked. Waiting for
/// the order is not a failure: it is polled through the park window.
pub const ATTEMPTS_MAX: i64 = 12;
/// Looks for the order come often at first (it usually appears within seconds), then
/// every few minutes.
const LOOK_MS_MIN: i64 = 1_000;
const LOOK_MS_MAX: i64 = 300_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResolveParked {
    pub notification_id: i64,
    pub provider: String,
}

impl Job for ResolveParked {
    const KIND: &'static str = "resolve_parked";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        format!("parked:{}", self.notification_id)
    }

    fn order_id(&self) -> Option<OrderId> {
        None
    }

    fn notification_id(&self) -> Option<i64> {
        Some(self.notification_id)
    }

    async fn run(self, services: &Services, run: &Run) -> Outcome {
        let id = self.notification_id;
        let stored = {
            let mut conn = match services.store.reader().await {
                Ok(conn) => conn,
                Err(e) => return e.into(),
            };
            match notifications::get(&mut conn, id).await {
                Ok(n) => n,
                Err(e) => return e.into(),
            }
        };
        if stored.verdict != Verdict::Parked.as_str() {
            return Outcome::Done;
        }
        let Some(provider) = services.provider(&stored.provider).cloned() else {
            return Outcome::Retry(format!("provider {} is not configured", stored.provider));
        };
        let notice = match zerodrop_providers::verify_stored(provider.as_ref(), &stored.headers, &stored.body) {
            Ok(notice) => notice,
            Err(rejection) => return Outcome::Retry(format!("stored notification no longer verifies: {rejection}")),
        };
        let mut tx = match services.store.begin().await {
            Ok(tx) => tx,
            Err(e) => return e.into(),
        };
        let now = now_ms();
        let order = match orders::get_by_no(&mut tx, &notice.order_no).await {
            Ok(Some(order)) => order,
            Ok(None) => {
                let window_ends_ms = stored.received_at_ms + services.config.charges.park_window_secs * 1000;
                if now < window_ends_ms {
                    let wait = ((now - stored.received_at_ms) / 4).clamp(LOOK_MS_MIN, LOOK_MS_MAX);
                    let note = format!("order {} is still unknown", notice.order_no);
                    return Outcome::RunAgainAt((now + wait).min(window_ends_ms), Some(note));
                }
                let ended = window_ended(&mut tx, &stored.provider, &notice, id, &run.cause(), now).await;
                if let Err(e) = ended {
                    return e.into();
                }
                return super::done_or_retry(tx.commit().await);
            }
            Err(e) => return e.into(),
        };
        if let (NoticeStatus::Paid { amount, paid_at_ms }, Some(trade_no)) = (&notice.status, &notice.trade_no) {
            let fact = PaymentFact {
                provider: stored.provider.clone(),
                trade_no: trade_no.clone(),
                amount: *amount,
                paid_at_ms: *paid_at_ms,
                answer: None,
            };
            let cause = format!("notification:{id}");
            if let Err(e) = payment::record_in(&mut tx, order.id, &fact, PaymentSource::Parked, &cause, now).await {
                return e.into();
            }
        }
        let resolved =
            notifications::set_verdict(&mut tx, id, Verdict::Resolved, Some("matched its order later"), now).await;
        if let Err(e) = resolved {
            return e.into();
        }
        super::done_or_retry(tx.commit().await)
    }
}

/// No order appeared within the park window: a payment's charge is refunded in full (the
/// one refund path, a stable request number); anything else is kept and closed.
async fn window_ended(
    tx: &mut Tx,
    provider: &str,
    notice: &Notice,
    notification_id: i64,
    cause: &str,
    now: i64,
) -> Result<(), StoreError> {
    let charge = match &notice.trade_no {
        Some(trade_no) => charges::by_trade(tx, provider, trade_no).await?,
        None => None,
    };
    let reason = match charge {
        Some(charge) if charge.order_id.is_none() => {
            let charge = charges::lock(tx, charge.id).await?;
            // One automatic refund per charge: if it was refused, its item is a person's
            // (another copy of the notification must not ask again by itself).
            if !zerodrop_store::refunds::for_charge(tx, charge.id).await?.is_empty() {
                return notifications::set_verdict(
                    tx,
                    notification_id,
                    Verdict::Resolved,
                    Some("its charge's refund was already requested"),
                    now,
                )
                .await;
            }
            let why = "paid for an order zerodrop does not know; nothing was delivered";
            refund::charge::refund_in(tx, &charge, None, why, cause, now).await?;
            "no order appeared within the park window: its charge is refunded"
        }
        // Claimed by its order meanwhile (through another copy of this notification).
        Some(_) => "its charge reached its order",
        None => "no order appeared within the park window; not a payment",
    };
    notifications::set_verdict(tx, notification_id, Verdict::Resolved, Some(reason), now).await
}
