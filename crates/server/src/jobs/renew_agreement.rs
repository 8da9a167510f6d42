//! The renewal of an agreement's paid period, as three job kinds (the work is in
//! [`crate::flows::renewal`]):
//!
//! - [`RenewAgreement`]: one charge attempt of one period (the first charge, then each
//!   retry at the terms' offsets), keyed by agreement, period and attempt;
//! - [`LapseAgreement`]: the grace ran out after the last attempt, keyed by agreement and
//!   period;
//! - [`RemindAgreement`]: the reminder before a renewal charge or a membership's end,
//!   keyed by agreement and period.
//!
//! Each is enqueued in the transaction that decided it, so none is lost and none runs
//! twice for the same fact.

use super::{Job, Outcome, Run};
use crate::flows::renewal;
use crate::services::Services;
use serde::{Deserialize, Serialize};
use zerodrop_domain::OrderId;

/// A run that fails (the database, a provider that does not answer the agreement query)
/// is retried with backoff; 200 attempts with backoff capped at 10 minutes span more than
/// a day, longer than any grace, after which a person sees the agreement.
pub const ATTEMPTS_MAX: i64 = 200;

/// One charge attempt of one period.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RenewAgreement {
    pub agreement_id: String,
    /// The agreement's paid-until when this was scheduled (`None`: the first period). A
    /// row whose paid-until moved since has been renewed: nothing to do.
    pub paid_until_ms: Option<i64>,
    /// The end of the period this renews, which the terms' schedule counts from (`None`:
    /// the first period, charged when the sign is confirmed). Equal to `paid_until_ms`
    /// except after a lapse under `keep_agreement`.
    pub period_end_ms: Option<i64>,
    /// 0 is the first charge; 1.. are the retries.
    pub attempt: u32,
    /// When this attempt was scheduled: the order it creates is the agreement's first one
    /// created since.
    pub scheduled_at_ms: i64,
}

impl Job for RenewAgreement {
    const KIND: &'static str = "renew_agreement";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        let period = self.period_end_ms.map_or_else(|| "first".to_owned(), |ms| ms.to_string());
        format!("renew_agreement:{}:{period}:{}", self.agreement_id, self.attempt)
    }

    fn order_id(&self) -> Option<OrderId> {
        None
    }

    async fn run(self, services: &Services, run: &Run) -> Outcome {
        renewal::attempt(services, &self, run).await
    }
}

/// The grace of one period ran out without a payment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LapseAgreement {
    pub agreement_id: String,
    pub paid_until_ms: Option<i64>,
    pub period_end_ms: i64,
}

impl Job for LapseAgreement {
    const KIND: &'static str = "lapse_agreement";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        format!("lapse_agreement:{}:{}", self.agreement_id, self.period_end_ms)
    }

    fn order_id(&self) -> Option<OrderId> {
        None
    }

    async fn run(self, services: &Services, run: &Run) -> Outcome {
        renewal::lapse(services, &self, run).await
    }
}

/// The reminder before the period ending at `period_end_ms` ends or renews.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemindAgreement {
    pub agreement_id: String,
    pub period_end_ms: i64,
}

impl Job for RemindAgreement {
    const KIND: &'static str = "remind_agreement";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        format!("remind_agreement:{}:{}", self.agreement_id, self.period_end_ms)
    }

    fn order_id(&self) -> Option<OrderId> {
        None
    }

    async fn run(self, services: &Services, run: &Run) -> Outcome {
        renewal::remind(services, &self, run).await
    }
}
