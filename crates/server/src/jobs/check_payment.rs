//! The check call's burst: after the app says the user is back from the payment sheet
//! (`POST /v1/orders/{order_no}/check`), the provider is asked at once and then at +5 s,
//! +15 s, +30 s and +60 s ([`schedule::CHECK_BURST_SECS`]), so a payment whose
//! notifications are lost is found within seconds, not at the next scheduled query.
//!
//! One job is one burst: it reschedules itself through the burst's points and ends when
//! the order is no longer awaiting payment or the last point has passed. Its dedupe key
//! names the order and the minute the burst began, so concurrent calls, on any number of
//! processes, start one burst; a burst under way also keeps later calls from starting
//! another (see `flows::check`).

use super::query_payment::ask_while_unpaid;
use super::{Job, Outcome, Run};
use crate::schedule;
use crate::services::Services;
use serde::{Deserialize, Serialize};
use zerodrop_domain::OrderId;
use zerodrop_store::now_ms;

/// Only database failures count (a provider error moves on to the burst's next point);
/// the open-order cadence still runs if a burst gives up, so a person is not needed
/// soon, but a database that fails three times in a row is worth one's attention.
const ATTEMPTS_MAX: i64 = 3;

/// At most one burst per order begins in each window of this length. As long as the
/// burst itself, so a user who taps "I paid" again after a burst has ended gets a new one,
/// and calls straddling a window's end while another process starts a burst make at
/// most two.
pub const BURST_WINDOW_MS: i64 = 60_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckPayment {
    pub order_id: OrderId,
    /// When the burst began (its first query), Unix ms; its points count from here.
    pub started_at_ms: i64,
}

impl CheckPayment {
    /// When the job first runs: the first query after the one the call makes itself.
    pub fn first_run_at(&self) -> i64 {
        schedule::next_check_at(self.started_at_ms, self.started_at_ms).unwrap_or(self.started_at_ms)
    }
}

impl Job for CheckPayment {
    const KIND: &'static str = "check_payment";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        format!("check:{}:{}", self.order_id, self.started_at_ms.div_euclid(BURST_WINDOW_MS))
    }

    fn order_id(&self) -> Option<OrderId> {
        Some(self.order_id)
    }

    async fn run(self, services: &Services, run: &Run) -> Outcome {
        let (order, note) = match ask_while_unpaid(services, self.order_id, run).await {
            Ok(unpaid) => unpaid,
            Err(outcome) => return outcome,
        };
        match schedule::next_check_at(self.started_at_ms, now_ms()).filter(|at| *at < order.expires_at_ms) {
            Some(at) => Outcome::RunAgainAt(at, Some(note)),
            None => Outcome::Done,
        }
    }
}
