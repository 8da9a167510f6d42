//! An unknown answer is not a failure. A call to the platform's endpoint that timed out,
//! broke off, or is still out, and a `202` whose confirmation never came, may each have
//! delivered the goods. Refunding such an order at its deadline could leave the user with
//! the goods and the money, so before the deadline's policy acts the order is settled:
//! the same request is sent again with the same idempotency key, and the endpoint answers
//! with what it did the first time. Only a definite answer decides (a 2xx delivers, a
//! refusal lets the policy act); an answer that stays unknown, a bounded number of times
//! within a bounded window, puts the order in front of a person, never refunded.

use super::attempt::{self, Purpose};
use crate::flows::endpoint;
use crate::jobs::deliver_external::DeliverExternal;
use crate::jobs::Job;
use crate::services::Services;
use serde_json::json;
use zerodrop_domain::catalog::ProductKind;
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_store::events::{self, EventRow, NewEvent};
use zerodrop_store::orders::{self, OrderRow};
use zerodrop_store::{jobs, now_ms, Conn, StoreError};

/// Sends the deadline makes to settle one order. Each waits up to the endpoint's timeout;
/// three answers that stay unknown say the endpoint cannot tell us now, and a person can
/// ask it another way.
pub const SETTLE_SENDS_MAX: usize = 3;
/// No send starts that could end later than this after the deadline: half the audit's
/// grace for a paid order past its deadline (120 s), so the order is with a person, or
/// decided, well before the audit would call it dropped.
pub const SETTLE_WINDOW_MS: i64 = 60_000;
/// Shortest wait between sends: an endpoint that just failed to answer gets a breath.
const SPACING_MS_MIN: i64 = 1_000;
/// Longest wait between sends, so the bounded sends fit in the window.
const SPACING_MS_MAX: i64 = 10_000;
// The bounded sends, spaced at most this far apart, fit in the window.
const _: () = assert!(SETTLE_SENDS_MAX as i64 * SPACING_MS_MAX <= SETTLE_WINDOW_MS);
/// The attention reason of an order whose delivery stays unknown.
pub const REASON: &str = "delivery_unknown";

/// What the deadline does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing is in doubt: the deadline's policy may act now.
    Proceed,
    /// A definite answer decided the order (delivered, or refused and the policy applied).
    Decided,
    /// Sent again and still unknown: look again at this time.
    Again(i64),
    /// Still unknown within the bounds: the order is with a person, not refunded.
    WithAPerson,
}

/// True when a call may have delivered and no definite answer has come since: an unknown
/// attempt, or an accepted one not yet confirmed. A delivery or a refusal (an attempt's or
/// a confirmation's) answers every call before it, since they share one idempotency key.
pub fn in_doubt(events: &[EventRow]) -> bool {
    let mut doubt = false;
    for event in events {
        match EventKind::parse(&event.kind) {
            Some(EventKind::DeliveryUnknown | EventKind::DeliveryAccepted) => doubt = true,
            Some(EventKind::Delivered | EventKind::DeliveryFailed) => doubt = false,
            _other => {}
        }
    }
    doubt
}

/// The order's timeline when a call to its endpoint is in doubt now (see [`in_doubt`]),
/// or out with no answer yet; `None` when nothing is. Read through `conn`: a reader, or
/// the deadline's own transaction holding the order's lock, which looks once more just
/// before its policy acts.
pub async fn doubt(conn: &mut Conn, order: &OrderRow, now_ms: i64) -> Result<Option<Vec<EventRow>>, StoreError> {
    if !matches!(order.product.kind, ProductKind::External { .. }) {
        return Ok(None);
    }
    let history = events::list(conn, order.id).await?;
    // A delivery request that is out right now has no answer yet: it is in doubt too.
    let running = jobs::running_for_order(conn, order.id, DeliverExternal::KIND, now_ms).await?;
    Ok((in_doubt(&history) || running).then_some(history))
}

/// Sends made to settle so far (the bound counts them in the timeline, so it holds across
/// runs and restarts).
fn sends_so_far(events: &[EventRow]) -> usize {
    events.iter().filter(|e| e.kind == EventKind::DeliveryAttempted.as_str() && e.data["purpose"] == "settle").count()
}

/// One step of settling a paid external order at its deadline. `cause` names the run.
#[tracing::instrument(name = "delivery.settle", skip_all, fields(order.no = %order.order_no))]
pub async fn step(services: &Services, order: &OrderRow, cause: &str) -> Result<Step, StoreError> {
    let ProductKind::External { endpoint: name, .. } = &order.product.kind else {
        return Ok(Step::Proceed);
    };
    let now = now_ms();
    let history = {
        let mut conn = services.store.reader().await?;
        match doubt(&mut conn, order, now).await? {
            Some(history) => history,
            None => return Ok(Step::Proceed),
        }
    };
    let sends = sends_so_far(&history);
    let Some(endpoint) = services.endpoint(name) else {
        return raise(services, order, cause, sends, "the delivery endpoint is not configured").await;
    };
    let timeout_ms = i64::try_from(endpoint.timeout_ms).unwrap_or(i64::MAX);
    let deadline = order.deliver_by_ms.unwrap_or(now);
    if sends >= SETTLE_SENDS_MAX {
        return raise(services, order, cause, sends, "the endpoint's answer stayed unknown").await;
    }
    if now.saturating_add(timeout_ms) > deadline + SETTLE_WINDOW_MS {
        return raise(services, order, cause, sends, "no time left to ask the endpoint again").await;
    }
    let sent = endpoint::send(&services.http, endpoint, order, now / 1000).await;
    let number = i64::try_from(sends + 1).unwrap_or(i64::MAX);
    attempt::record(&services.store, order.id, &sent, cause, number, Purpose::Settle).await?;
    if sent.answer.is_definite() {
        return Ok(Step::Decided);
    }
    Ok(Step::Again(now_ms() + timeout_ms.clamp(SPACING_MS_MIN, SPACING_MS_MAX)))
}

/// Puts the order in front of a person with reason [`REASON`]: its money stays, its goods
/// may have arrived, and only someone who can ask the platform knows which.
async fn raise(
    services: &Services,
    order: &OrderRow,
    cause: &str,
    sends: usize,
    why: &str,
) -> Result<Step, StoreError> {
    let mut tx = services.store.begin().await?;
    let mut order = orders::lock(&mut tx, order.id).await?;
    // Raised once: a run repeated after a crash finds it already there.
    if order.status == OrderStatus::Paid && order.attention_reason.as_deref() != Some(REASON) {
        let data = json!({ "reason": REASON, "why": why, "settle_sends": sends, "deliver_by_ms": order.deliver_by_ms });
        let event = NewEvent::new(EventKind::AttentionRaised, Actor::System, cause, data);
        events::append(&mut tx, &mut order, event, now_ms()).await?;
    }
    tx.commit().await?;
    Ok(Step::WithAPerson)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, data: serde_json::Value) -> EventRow {
        EventRow { seq: 0, at_ms: 0, kind: kind.as_str().into(), actor: "system".into(), cause: "t".into(), data }
    }

    #[test]
    fn doubt_lasts_until_a_definite_answer() {
        let attempted = event(EventKind::DeliveryAttempted, json!({ "purpose": "deliver" }));
        let unknown = event(EventKind::DeliveryUnknown, json!({}));
        let accepted = event(EventKind::DeliveryAccepted, json!({}));
        assert!(!in_doubt(std::slice::from_ref(&attempted)), "a plain failure leaves no doubt");
        assert!(in_doubt(&[attempted.clone(), unknown.clone()]));
        // A later failure (a 503, a refused connection) does not answer the unknown call.
        assert!(in_doubt(&[unknown.clone(), attempted.clone()]));
        assert!(in_doubt(std::slice::from_ref(&accepted)), "a 202 waits for its confirmation");
        assert!(!in_doubt(&[unknown.clone(), event(EventKind::Delivered, json!({}))]));
        assert!(!in_doubt(&[accepted, event(EventKind::DeliveryFailed, json!({}))]));
        assert!(in_doubt(&[event(EventKind::DeliveryFailed, json!({})), unknown]), "doubt after a refusal counts");
    }

    #[test]
    fn only_settling_sends_count_against_the_bound() {
        let settle = event(EventKind::DeliveryAttempted, json!({ "purpose": "settle" }));
        let deliver = event(EventKind::DeliveryAttempted, json!({ "purpose": "deliver" }));
        assert_eq!(sends_so_far(&[deliver.clone(), settle.clone(), deliver, settle]), 2);
    }
}
