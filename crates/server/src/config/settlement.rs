//! The settlement sections of the configuration: how long a person has for an attention
//! item, how long a payment for an unknown order waits for its order, and how long a
//! refund may stay unsettled before it is unknown and a person's.

use serde::{Deserialize, Serialize};

/// The clocks of attention items: how long a person has before the audit counts the item
/// against us.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttentionConfig {
    /// When a user's money is at stake.
    pub money_due_secs: i64,
    /// When nothing is at stake (a flag to look at).
    pub none_due_secs: i64,
    /// Overrides by reason, e.g. `refund_unknown = 14400`.
    pub due_secs_by_reason: std::collections::BTreeMap<String, i64>,
}

impl Default for AttentionConfig {
    fn default() -> Self {
        AttentionConfig {
            money_due_secs: zerodrop_store::attention::DUE_MS_MONEY_DEFAULT / 1000,
            none_due_secs: zerodrop_store::attention::DUE_MS_NONE_DEFAULT / 1000,
            due_secs_by_reason: Default::default(),
        }
    }
}

impl AttentionConfig {
    pub fn clocks(&self) -> zerodrop_store::attention::Clocks {
        zerodrop_store::attention::Clocks {
            money_ms: self.money_due_secs * 1000,
            none_ms: self.none_due_secs * 1000,
            by_reason_ms: self.due_secs_by_reason.iter().map(|(k, v)| (k.clone(), v * 1000)).collect(),
        }
    }
}

/// Charges that fit no order.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChargeConfig {
    /// A payment for an order zerodrop does not know waits this long for its order to
    /// appear (a restore, a create that lost a race) before it is refunded in full.
    pub park_window_secs: i64,
}

impl Default for ChargeConfig {
    fn default() -> Self {
        ChargeConfig { park_window_secs: 2_700 }
    }
}

/// Refunds whose outcome the provider has not given.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefundConfig {
    /// A refund still not final after this long is `unknown` and goes to a person; it
    /// keeps being asked about.
    pub unknown_after_secs: i64,
    /// How long the provider accepts questions about a refund; asking stops after it.
    pub provider_window_days: i64,
}

impl Default for RefundConfig {
    fn default() -> Self {
        RefundConfig { unknown_after_secs: 3 * 86_400, provider_window_days: 365 }
    }
}

impl AttentionConfig {
    pub fn validate(&self) -> Result<(), String> {
        let clocks = [self.money_due_secs, self.none_due_secs];
        if clocks.into_iter().chain(self.due_secs_by_reason.values().copied()).any(|s| !(1..=90 * 86_400).contains(&s))
        {
            return Err("attention clocks (*_due_secs) must be between 1 and 7776000 seconds".into());
        }
        Ok(())
    }
}

impl ChargeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=30 * 86_400).contains(&self.park_window_secs) {
            return Err("charges.park_window_secs must be between 1 and 2592000".into());
        }
        Ok(())
    }
}

impl RefundConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=90 * 86_400).contains(&self.unknown_after_secs) {
            return Err("refunds.unknown_after_secs must be between 1 and 7776000".into());
        }
        if !(1..=3_650).contains(&self.provider_window_days) {
            return Err("refunds.provider_window_days must be between 1 and 3650".into());
        }
        if self.provider_window_days * 86_400 <= self.unknown_after_secs {
            // Otherwise asking would stop before an unsettled refund ever reached a person.
            return Err("refunds.provider_window_days must outlast refunds.unknown_after_secs".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let dir = std::env::temp_dir().join(format!("zd-settle-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let path = dir.join("c.toml");
        std::fs::write(&path, toml).map_err(|e| e.to_string())?;
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        Config::load(Some(&path), env).map_err(|e| e.to_string())
    }

    #[test]
    fn the_clocks_windows_and_bounds_load_and_are_checked() {
        let config = load(
            "[attention]\nmoney_due_secs = 600\ndue_secs_by_reason = { refund_unknown = 60 }\n[charges]\npark_window_secs = 30\n",
            &[("ZERODROP_REFUNDS__UNKNOWN_AFTER_SECS", "7200")],
        )
        .unwrap();
        let clocks = config.attention.clocks();
        assert_eq!((clocks.due_in_ms("x", 1), clocks.due_in_ms("x", 0)), (600_000, 86_400_000));
        assert_eq!(clocks.due_in_ms("refund_unknown", 1), 60_000);
        assert_eq!((config.charges.park_window_secs, config.refunds.unknown_after_secs), (30, 7_200));
        for (bad, says) in [
            ("[attention]\nnone_due_secs = 0\n", "attention clocks"),
            ("[charges]\npark_window_secs = 0\n", "park_window_secs"),
            ("[refunds]\nunknown_after_secs = 864000\nprovider_window_days = 5\n", "outlast"),
            ("[refunds]\nwhenever = 1\n", "unknown field"),
        ] {
            let error = load(bad, &[]).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
