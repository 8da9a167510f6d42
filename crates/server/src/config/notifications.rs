//! The `[notifications]` section: how refused notifications are kept. Verified ones are
//! kept whole, forever; these settings bound what anyone else can make zerodrop store.

use serde::{Deserialize, Serialize};
use zerodrop_store::notifications::REFUSED_RETENTION_MS_MIN;

/// Days in a millisecond count.
const DAY_MS: i64 = 86_400_000;
/// Longest retention accepted: ten years, beyond any complaint or court's horizon.
const RETENTION_DAYS_MAX: i64 = 3_650;
/// Highest limit accepted, per minute: far above any honest source of refusals.
const PER_MINUTE_MAX: u32 = 100_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationConfig {
    /// Refused, unverified notifications (forged, unsigned, unreadable) are deleted this
    /// many days after they arrived. At least 7: the database refuses younger deletes.
    pub refused_retention_days: i64,
    /// Refused notifications stored per source address (an IPv4 address, an IPv6 /64)
    /// per minute; past it they are answered the same but not stored, only counted.
    pub refused_per_source_per_minute: u32,
    /// Refused notifications stored per minute from all sources together.
    pub refused_per_minute: u32,
    /// How often the prune job looks for refused evidence past its retention.
    pub prune_interval_secs: i64,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        NotificationConfig {
            refused_retention_days: 90,
            // A misconfigured provider test may send dozens; a flood gets 60 a minute
            // (under 1 MB: 8 KiB kept of each).
            refused_per_source_per_minute: 60,
            // All sources together: at most 600 a minute, about 5 MB of evidence.
            refused_per_minute: 600,
            prune_interval_secs: 3_600,
        }
    }
}

impl NotificationConfig {
    pub fn retention_ms(&self) -> i64 {
        self.refused_retention_days.saturating_mul(DAY_MS)
    }

    pub fn validate(&self) -> Result<(), String> {
        let min_days = REFUSED_RETENTION_MS_MIN / DAY_MS;
        if !(min_days..=RETENTION_DAYS_MAX).contains(&self.refused_retention_days) {
            return Err(format!(
                "notifications.refused_retention_days must be between {min_days} and {RETENTION_DAYS_MAX}"
            ));
        }
        if self.refused_per_source_per_minute > PER_MINUTE_MAX || self.refused_per_minute > PER_MINUTE_MAX {
            return Err(format!("notifications.refused_per_*minute must be at most {PER_MINUTE_MAX}"));
        }
        if !(60..=86_400).contains(&self.prune_interval_secs) {
            return Err("notifications.prune_interval_secs must be between 60 and 86400".into());
        }
        Ok(())
    }
}
