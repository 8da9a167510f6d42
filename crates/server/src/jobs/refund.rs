//! The refund job: asks the provider (same request number every time), then queries until
//! the refund is final.
//!
//! An answer that never comes (a timeout, a broken connection) makes the refund `unknown`,
//! never failed: the same request is asked about again. A refund still not final after
//! `refunds.unknown_after_secs` goes to a person with a clock, and is still asked about,
//! less and less often, until the provider's refund window ends. Only the provider's
//! definite answer settles it.

use super::{order_ref, Job, Outcome, Run};
use crate::flows::refund::settle::{self, Final};
use crate::services::Services;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use zerodrop_domain::OrderId;
use zerodrop_providers::{OrderRef, Provider, RefundRef, RefundStatus};
use zerodrop_store::charges::{self, ChargeRow};
use zerodrop_store::orders::{self, OrderRow};
use zerodrop_store::refunds::{self, RefundRow, RefundState};
use zerodrop_store::{now_ms, payments, StoreError};

/// Failed runs (the database, a missing provider) before a person is asked; the
/// provider's silence is not a failure (it is polled, see [`poll_ms`]).
pub const ATTEMPTS_MAX: i64 = 100;
/// How often an unsettled refund is asked about: soon at first (most settle in seconds),
/// then less often as it ages, a tenth of its age, up to the cap, so a year of polling
/// costs a few thousand queries rather than millions.
const POLL_MS_MIN: i64 = 5_000;
const POLL_MS_MAX: i64 = 3_600_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Refund {
    pub refund_id: String,
    /// The refunded order (absent in jobs stored before it was part of the payload, and
    /// for a charge that belongs to no order; the refund row names both).
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
        let (refund, target) = match load(services, &self.refund_id).await {
            Ok(Some(found)) => found,
            Ok(None) => return Outcome::Done,
            Err(outcome) => return outcome,
        };
        let Some(provider) = services.provider(&target.provider).cloned() else {
            return Outcome::Retry(format!("provider {} is not configured", target.provider));
        };
        let reference = RefundRef {
            order: target.order_ref.clone(),
            trade_no: target.trade_no.clone(),
            request_no: refund.request_no.clone(),
            amount: refund.amount,
            reason: refund.reason.clone(),
        };
        let answer = ask(provider, &reference, refund.state).await;
        let cause = run.cause();
        let age_ms = now_ms() - refund.created_at_ms;
        match answer {
            Ok(RefundStatus::Succeeded) => finish(services, &refund, target.order_id, Final::Succeeded, &cause).await,
            Ok(RefundStatus::Failed { reason }) => {
                finish(services, &refund, target.order_id, Final::Failed(reason), &cause).await
            }
            other => {
                // Not final. An error is an unknown outcome; "processing" and "not found"
                // are answers, unknown only once the bound passes.
                let (next, why) = match &other {
                    Ok(RefundStatus::Processing) => (RefundState::Processing, "processing".to_owned()),
                    Ok(_) => (RefundState::Requested, "not found at the provider yet".to_owned()),
                    Err(e) => (RefundState::Unknown, format!("no answer: {e}")),
                };
                let overdue = age_ms > services.config.refunds.unknown_after_secs * 1000;
                let result = if overdue || next == RefundState::Unknown || refund.state == RefundState::Unknown {
                    unknown(services, &refund, target.order_id, &why, overdue, &cause).await
                } else {
                    mark(services, &refund, next).await
                };
                if let Err(e) = result {
                    return e.into();
                }
                if age_ms > services.config.refunds.provider_window_days * 86_400_000 {
                    tracing::warn!(refund.request_no = %refund.request_no, "the provider's refund window ended unsettled");
                    return Outcome::Done;
                }
                Outcome::RunAgainAt(now_ms() + poll_ms(age_ms), Some(why))
            }
        }
    }
}

/// What the refund returns money for: the order (its provider and number), or a charge
/// that belongs to no order.
struct Target {
    provider: String,
    order_ref: OrderRef,
    trade_no: Option<String>,
    order_id: Option<OrderId>,
}

/// The refund and what it refunds; `None` when the refund is already final.
async fn load(services: &Services, refund_id: &str) -> Result<Option<(RefundRow, Target)>, Outcome> {
    let (refund, target) = load_any(services, refund_id).await?;
    Ok((!refund.state.is_final()).then_some((refund, target)))
}

/// Asks the provider where a refund stands, final or not, with the request it was made
/// with (same number, trade and amount): how a refund zerodrop holds as made is checked
/// against the provider when its bill lacks it. Returns the refund with the answer.
pub async fn query(
    services: &Services,
    refund_id: &str,
) -> Result<(RefundRow, Result<RefundStatus, zerodrop_providers::ProviderError>), Outcome> {
    let (refund, target) = load_any(services, refund_id).await?;
    let Some(provider) = services.provider(&target.provider).cloned() else {
        return Err(Outcome::Retry(format!("provider {} is not configured", target.provider)));
    };
    let reference = RefundRef {
        order: target.order_ref,
        trade_no: target.trade_no,
        request_no: refund.request_no.clone(),
        amount: refund.amount,
        reason: refund.reason.clone(),
    };
    let answer = provider.query_refund(&reference).await;
    Ok((refund, answer))
}

/// The refund and what it refunds, whatever its state.
async fn load_any(services: &Services, refund_id: &str) -> Result<(RefundRow, Target), Outcome> {
    let mut conn = services.store.reader().await?;
    let refund = refunds::get(&mut conn, refund_id).await?.ok_or_else(|| Outcome::Retry("refund not found".into()))?;
    let charge: Option<ChargeRow> = match refund.charge_id {
        Some(id) => charges::get(&mut conn, id).await?,
        None => None,
    };
    let order: Option<OrderRow> = match refund.order_id.as_deref() {
        Some(id) => {
            let id = OrderId::parse(id).ok_or_else(|| Outcome::Retry("the refund names no valid order".into()))?;
            Some(orders::get(&mut conn, id).await?.ok_or_else(|| Outcome::Retry("order not found".into()))?)
        }
        None => None,
    };
    if let Some(order) = &order {
        tracing::Span::current().record("order.no", order.order_no.as_str());
    }
    let target = match (charge, order) {
        (Some(charge), None) => charge_target(charge, None),
        // A charge that is not the order's payment: its own trade, number and provider.
        (Some(charge), Some(order)) if !charge.class.is_order_payment() => charge_target(charge, Some(order)),
        (charge, Some(order)) => {
            let trade_no = match charge {
                Some(charge) => Some(charge.trade_no),
                None => payments::for_order(&mut conn, order.id).await?.map(|p| p.trade_no),
            };
            Target {
                provider: order.provider.clone(),
                order_ref: order_ref(&order),
                trade_no,
                order_id: Some(order.id),
            }
        }
        (None, None) => return Err(Outcome::Retry("the refund names neither order nor charge".into())),
    };
    Ok((refund, target))
}

fn charge_target(charge: ChargeRow, order: Option<OrderRow>) -> Target {
    Target {
        provider: charge.provider.clone(),
        order_ref: OrderRef {
            order_no: charge.order_no.clone(),
            amount: charge.amount,
            subject: order.as_ref().map(|o| o.product.title.clone()).unwrap_or_default(),
            expires_at_ms: order.as_ref().map_or(0, |o| o.expires_at_ms),
            trade_no: Some(charge.trade_no.clone()),
        },
        trade_no: Some(charge.trade_no),
        order_id: order.map(|o| o.id),
    }
}

/// Asks the provider about the refund: sends it while it has not been accepted, queries
/// it once it has. An unknown refund is queried, and sent again (same number: the same
/// refund) when the provider has no record of it.
async fn ask(
    provider: Arc<dyn Provider>,
    reference: &RefundRef,
    state: RefundState,
) -> Result<RefundStatus, zerodrop_providers::ProviderError> {
    match state {
        RefundState::Requested => provider.refund(reference).await,
        RefundState::Processing | RefundState::Succeeded | RefundState::Failed => {
            provider.query_refund(reference).await
        }
        RefundState::Unknown => match provider.query_refund(reference).await? {
            RefundStatus::NotFound => provider.refund(reference).await,
            known => Ok(known),
        },
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

async fn unknown(
    services: &Services,
    refund: &RefundRow,
    order_id: Option<OrderId>,
    why: &str,
    raise: bool,
    cause: &str,
) -> Result<(), StoreError> {
    let mut tx = services.store.begin().await?;
    let mut order = match order_id {
        Some(id) => Some(orders::lock(&mut tx, id).await?),
        None => None,
    };
    settle::mark_unknown_in(&mut tx, order.as_mut(), refund, why, raise, cause, now_ms()).await?;
    tx.commit().await
}

async fn finish(
    services: &Services,
    refund: &RefundRow,
    order_id: Option<OrderId>,
    outcome: Final,
    cause: &str,
) -> Outcome {
    let result = async {
        let mut tx = services.store.begin().await?;
        let mut order = match order_id {
            Some(id) => Some(orders::lock(&mut tx, id).await?),
            None => None,
        };
        settle::settle_in(&mut tx, order.as_mut(), refund, &outcome, cause, now_ms()).await?;
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
        assert_eq!(poll_ms(365 * 86_400_000), POLL_MS_MAX);
        // Three days of polling stay in the hundreds; a year in the low thousands.
        let polls_until = |bound: i64| {
            let (mut age, mut polls) = (0, 0);
            while age < bound {
                age += poll_ms(age);
                polls += 1;
            }
            polls
        };
        assert!((100..1_000).contains(&polls_until(3 * 86_400_000)), "{}", polls_until(3 * 86_400_000));
        assert!(polls_until(365 * 86_400_000) < 10_000, "{}", polls_until(365 * 86_400_000));
    }
}
