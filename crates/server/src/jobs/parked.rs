//! Parked notifications: verified, but about an order zerodrop did not know when they
//! arrived (lost in a fault, restored later, or created a moment after). The job keeps
//! matching; when the order appears, the payment takes the one payment path. When the
//! attempts run out, a person gets an attention item naming the notification.

use super::Outcome;
use crate::app::App;
use crate::notify::reverify;
use crate::payment::{self, PaymentFact};
use zerodrop_providers::NoticeStatus;
use zerodrop_store::jobs::ClaimedJob;
use zerodrop_store::notifications::{self, Verdict};
use zerodrop_store::payments::PaymentSource;
use zerodrop_store::{now_ms, orders};

pub async fn resolve(app: &App, job: &ClaimedJob) -> Outcome {
    let Some(id) = job.payload.get("notification_id").and_then(|v| v.as_i64()) else {
        return Outcome::Retry("job has no notification id".into());
    };
    let stored = {
        let mut conn = match app.store.reader().await {
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
    let Some(provider) = app.provider(&stored.provider).cloned() else {
        return Outcome::Retry(format!("provider {} is not configured", stored.provider));
    };
    let notice = match reverify(provider.as_ref(), &stored.headers, &stored.body) {
        Ok(notice) => notice,
        Err(rejection) => return Outcome::Retry(format!("stored notification no longer verifies: {rejection}")),
    };
    let mut tx = match app.store.begin().await {
        Ok(tx) => tx,
        Err(e) => return e.into(),
    };
    let now = now_ms();
    let order = match orders::get_by_no(&mut tx, &notice.order_no).await {
        Ok(Some(order)) => order,
        Ok(None) => return Outcome::Retry(format!("order {} is still unknown", notice.order_no)),
        Err(e) => return e.into(),
    };
    let verdict = match (&notice.status, &notice.trade_no) {
        (NoticeStatus::Paid { amount, paid_at_ms }, Some(trade_no)) => {
            let fact = PaymentFact {
                provider: stored.provider.clone(),
                trade_no: trade_no.clone(),
                amount: *amount,
                paid_at_ms: *paid_at_ms,
            };
            match payment::record_in(
                &mut tx,
                order.id,
                &fact,
                PaymentSource::Parked,
                &format!("notification:{id}"),
                now,
            )
            .await
            {
                Ok(_) => Verdict::Resolved,
                Err(e) => return e.into(),
            }
        }
        _ => Verdict::Resolved,
    };
    if let Err(e) = notifications::set_verdict(&mut tx, id, verdict, Some("matched its order later"), now).await {
        return e.into();
    }
    match tx.commit().await {
        Ok(()) => Outcome::Done,
        Err(e) => e.into(),
    }
}
