//! The refund job: asks the provider (same request number every time), then queries until
//! the refund is final. A refund the provider refuses for good puts the order in front
//! of a person; one that stays "processing" too long does too (its bound).

use super::{order_ref, read_order, Job, Outcome, Run};
use crate::flows::refund::settle::{self, Final};
use crate::services::Services;
use serde::{Deserialize, Serialize};
use zerodrop_domain::OrderId;
use zerodrop_providers::{RefundRef, RefundStatus};
use zerodrop_store::refunds::{self, RefundRow, RefundState};
use zerodrop_store::{now_ms, orders, StoreError};

/// Refund jobs retry for a long time (money is owed); backoff caps at 10 minutes.
pub const ATTEMPTS_MAX: i64 = 100;
/// How often a processing refund is asked about: soon at first (most settle in seconds),
/// then less often as it ages, a tenth of its age, up to the cap, so three days of
/// polling cost a few hundred queries rather than fifty thousand.
const POLL_MS_MIN: i64 = 5_000;
const POLL_MS_MAX: i64 = 600_000;
/// A refund still processing after this long is a person's problem (the provider's own
/// refunds finish within hours).
pub const PROCESSING_MS_MAX: i64 = 3 * 86_400_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Refund {
    pub refund_id: String,
    /// The refunded order (absent in jobs stored before it was part of the payload; the
    /// refund row names it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
}

impl Job for Refund {
    const KIND: &'static str = "refund";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        format!("refund:{}", self.refund_id)
    }

    fn order_id(&self) -> Option<OrderId> {
        self.order_id
    }

    async fn run(self, services: &Services, run: &Run) -> Outcome {
        let refund = {
            let mut conn = match services.store.reader().await {
                Ok(conn) => conn,
                Err(e) => return e.into(),
            };
            match refunds::get(&mut conn, &self.refund_id).await {
                Ok(Some(refund)) => refund,
                Ok(None) => return Outcome::Retry("refund not found".into()),
                Err(e) => return e.into(),
            }
        };
        if refund.state.is_final() {
            return Outcome::Done;
        }
        let Some(order_id) = OrderId::parse(&refund.order_id) else {
            return Outcome::Retry("the refund names no valid order".into());
        };
        let order = match read_order(services, order_id).await {
            Ok(order) => order,
            Err(outcome) => return outcome,
        };
        let Some(provider) = services.provider(&order.provider).cloned() else {
            return Outcome::Retry(format!("provider {} is not configured", order.provider));
        };
        let reference = RefundRef {
            order: order_ref(&order),
            request_no: refund.request_no.clone(),
            amount: refund.amount,
            reason: refund.reason.clone(),
        };
        let answer = match refund.state {
            RefundState::Requested => provider.refund(&reference).await,
            RefundState::Processing | RefundState::Succeeded | RefundState::Failed => {
                provider.query_refund(&reference).await
            }
        };
        let cause = run.cause();
        match answer {
            Err(e) => Outcome::Retry(format!("refund {}: {e}", refund.request_no)),
            Ok(RefundStatus::Succeeded) => settle(services, order_id, &refund, Final::Succeeded, &cause).await,
            Ok(RefundStatus::Failed { reason }) => {
                settle(services, order_id, &refund, Final::Failed(reason), &cause).await
            }
            Ok(status @ (RefundStatus::Processing | RefundStatus::NotFound)) => {
                if now_ms() - refund.created_at_ms > PROCESSING_MS_MAX {
                    let reason = format!("still not final after {} hours", PROCESSING_MS_MAX / 3_600_000);
                    return settle(services, order_id, &refund, Final::Failed(reason), &cause).await;
                }
                // Processing: ask about it later. Not found after a request: send the same
                // request again (same number: the same refund).
                let next =
                    if status == RefundStatus::Processing { RefundState::Processing } else { RefundState::Requested };
                match mark(services, &refund, next).await {
                    Ok(()) => Outcome::RunAgainAt(
                        now_ms() + poll_ms(now_ms() - refund.created_at_ms),
                        Some(format!("{status:?}")),
                    ),
                    Err(e) => e.into(),
                }
            }
        }
    }
}

/// The wait before asking again about a refund this old.
fn poll_ms(age_ms: i64) -> i64 {
    (age_ms / 10).clamp(POLL_MS_MIN, POLL_MS_MAX)
}

async fn mark(services: &Services, refund: &RefundRow, state: RefundState) -> Result<(), StoreError> {
    if state == refund.state {
        return Ok(());
    }
    let mut tx = services.store.begin().await?;
    refunds::set_state(&mut tx, &refund.id, state, None, now_ms()).await?;
    tx.commit().await
}

async fn settle(services: &Services, order_id: OrderId, refund: &RefundRow, outcome: Final, cause: &str) -> Outcome {
    let result = async {
        let mut tx = services.store.begin().await?;
        let mut order = orders::lock(&mut tx, order_id).await?;
        settle::settle_in(&mut tx, &mut order, refund, &outcome, cause, now_ms()).await?;
        tx.commit().await
    }
    .await;
    super::done_or_retry(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_grow_with_age_within_their_bounds() {
        assert_eq!(poll_ms(0), POLL_MS_MIN);
        assert_eq!(poll_ms(-1), POLL_MS_MIN, "a clock step back still waits the minimum");
        assert_eq!(poll_ms(600_000), 60_000);
        assert_eq!(poll_ms(PROCESSING_MS_MAX), POLL_MS_MAX);
        // Three days of polling stay in the hundreds.
        let (mut age, mut polls) = (0, 0);
        while age < PROCESSING_MS_MAX {
            age += poll_ms(age);
            polls += 1;
        }
        assert!((400..1_000).contains(&polls), "{polls} polls");
    }
}
