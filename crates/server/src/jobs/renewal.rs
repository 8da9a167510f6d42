//! The payloads of the renewal's job kinds (the runs are in [`super::renew_agreement`]):
//!
//! - [`RenewAgreement`]: one charge attempt of one period (the first charge, then each
//!   retry at the terms' offsets), keyed by agreement, period and attempt;
//! - [`LapseAgreement`]: the grace ran out after the last attempt, keyed by agreement and
//!   period;
//! - [`RemindAgreement`]: the reminder before a renewal charge or a membership's end,
//!   keyed by agreement and period;
//! - [`RemindMembership`]: the reminder before any membership's end (bought once or
//!   renewing), keyed by user, membership and end.
//!
//! The payloads stand apart from their runs because the runs charge through a flow that
//! schedules the next period: that flow names these payloads, and the runs name it.

use serde::{Deserialize, Serialize};
use zerodrop_domain::UserId;

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

/// The grace of one period ran out without a payment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LapseAgreement {
    pub agreement_id: String,
    pub paid_until_ms: Option<i64>,
    pub period_end_ms: i64,
}

/// The reminder before the period ending at `period_end_ms` ends or renews.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemindAgreement {
    pub agreement_id: String,
    pub period_end_ms: i64,
}

/// The reminder before the membership `plan` of `user_id` ends at `ends_at_ms`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemindMembership {
    pub user_id: UserId,
    pub plan: String,
    /// The product's title as the order had it, for the message.
    pub title: String,
    pub ends_at_ms: i64,
}
