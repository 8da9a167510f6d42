//! Parked notifications: verified, but about an order zerodrop did not know when they
//! arrived (lost in a fault, restored later, or created a moment after). The job keeps
//! matching; when the order appears, the payment takes the one payment path. When the
//! attempts run out, a person gets an attention item naming the notification.

use super::{Job, Outcome, Run};
use crate::flows::payment::{self, PaymentFact};
use crate::services::Services;
use serde::{Deserialize, Serialize};
use zerodrop_domain::OrderId;
use zerodrop_providers::NoticeStatus;
use zerodrop_store::notifications::{self, Verdict};
use zerodrop_store::payments::PaymentSource;
use zerodrop_store::{now_ms, orders};

/// A parked notification is retried for about 45 minutes before a person is asked.
pub const ATTEMPTS_MAX: i64 = 12;

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

    async fn run(self, services: &Services, _run: &Run) -> Outcome {
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
            Ok(None) => return Outcome::Retry(format!("order {} is still unknown", notice.order_no)),
            Err(e) => return e.into(),
        };
        tracing::Span::current().record("order.no", order.order_no.as_str());
        if let (NoticeStatus::Paid { amount, paid_at_ms }, Some(trade_no)) = (&notice.status, &notice.trade_no) {
            let fact = PaymentFact {
                provider: stored.provider.clone(),
                trade_no: trade_no.clone(),
                amount: *amount,
                paid_at_ms: *paid_at_ms,
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
