//! The `[reconcile]` section: the daily reconciliation against each provider's bill.

use serde::{Deserialize, Serialize};

/// Largest bill file downloaded: a day of a busy merchant is a few hundred MB of zip; a
/// bigger answer is not a bill, and the disk is not the provider's to fill.
pub const BILL_BYTES_MAX_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;

/// See [`ReconcileConfig::missing_grace_secs`]: ten minutes.
pub const MISSING_GRACE_SECS_DEFAULT: i64 = zerodrop_store::bills::MISSING_GRACE_MS / 1000;
/// A grace of a day would hide a whole day's bill.
const MISSING_GRACE_SECS_MAX: i64 = 86_400;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// Whether this process schedules the daily reconciliation (with the job workers).
    /// Several processes may: the job for a day runs once (its dedupe key).
    pub daily: bool,
    /// Hour of the day, China Standard Time, when yesterday's bill is fetched. Alipay's
    /// bills are ready from about 09:00 the next day.
    pub daily_at_hour_cst: u32,
    /// Where downloaded bills are kept (they are the evidence behind each repair).
    pub bill_dir: String,
    pub bill_bytes_max: u64,
    /// Charges and refunds of the last this-many seconds before an import are not counted
    /// missing from the bill, nor without an outcome: a bill fetched for the current day was
    /// cut before them, and a payment just made is still inside its bounds.
    pub missing_grace_secs: i64,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            daily: true,
            daily_at_hour_cst: 10,
            bill_dir: "./data/bills".into(),
            bill_bytes_max: BILL_BYTES_MAX_DEFAULT,
            missing_grace_secs: MISSING_GRACE_SECS_DEFAULT,
        }
    }
}

impl ReconcileConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.daily_at_hour_cst > 23 {
            return Err("reconcile.daily_at_hour_cst must be 0..=23".into());
        }
        if self.bill_dir.trim().is_empty() {
            return Err("reconcile.bill_dir is required".into());
        }
        if !(0..=MISSING_GRACE_SECS_MAX).contains(&self.missing_grace_secs) {
            return Err(format!("reconcile.missing_grace_secs must be 0..={MISSING_GRACE_SECS_MAX}"));
        }
        if self.bill_bytes_max < 1024 {
            return Err("reconcile.bill_bytes_max must be at least 1024".into());
        }
        Ok(())
    }
}
