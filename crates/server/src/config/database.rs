//! `[database]`: how long zerodrop waits for the database before answering "retry later".
//! (The URL itself is the top-level `database_url`, older than this section.)

use serde::{Deserialize, Serialize};
use zerodrop_store::PoolConfig;

/// Shortest wait an operator may set: below this even a healthy pool that is briefly
/// busy would turn requests away.
const WAIT_MS_MIN: u64 = 100;
/// Longest wait an operator may set: providers and the platform's back end give up on a
/// request after some seconds, so a longer wait only holds connections nobody awaits.
const WAIT_MS_MAX: u64 = 60_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// How long a request (or a job) waits for a database connection. While the database
    /// is down every request fails after this wait: the merchant API with 503
    /// `unavailable`, a provider's notification with its retryable answer.
    pub acquire_timeout_ms: u64,
    /// SQLite only: how long a write waits on a lock held by another process (a backup,
    /// a second `serve`) before it fails the same way.
    pub sqlite_busy_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            acquire_timeout_ms: zerodrop_store::ACQUIRE_TIMEOUT_MS_DEFAULT,
            sqlite_busy_timeout_ms: zerodrop_store::SQLITE_BUSY_TIMEOUT_MS_DEFAULT,
        }
    }
}

impl DatabaseConfig {
    /// The pools' settings: these waits, and the default sizes.
    pub fn pool(&self) -> PoolConfig {
        PoolConfig {
            acquire_timeout_ms: self.acquire_timeout_ms,
            sqlite_busy_timeout_ms: self.sqlite_busy_timeout_ms,
            ..PoolConfig::default()
        }
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        for (key, value) in
            [("acquire_timeout_ms", self.acquire_timeout_ms), ("sqlite_busy_timeout_ms", self.sqlite_busy_timeout_ms)]
        {
            if !(WAIT_MS_MIN..=WAIT_MS_MAX).contains(&value) {
                return Err(format!("database.{key} must be between {WAIT_MS_MIN} and {WAIT_MS_MAX}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let env = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(None, env).map_err(|e| e.to_string())
    }

    #[test]
    fn the_connection_wait_is_a_few_seconds_unless_set() {
        let config = load(&[]).unwrap();
        assert_eq!(config.database.acquire_timeout_ms, 5_000);
        assert_eq!(config.database.pool().acquire_timeout_ms, 5_000);
        let config = load(&[("ZERODROP_DATABASE__ACQUIRE_TIMEOUT_MS", "1500")]).unwrap();
        assert_eq!(config.database.pool().acquire_timeout_ms, 1_500);
        let config = load(&[("ZERODROP_DATABASE__SQLITE_BUSY_TIMEOUT_MS", "2000")]).unwrap();
        assert_eq!(config.database.pool().sqlite_busy_timeout_ms, 2_000);
        // The URL keeps its old top-level key beside the new section.
        let config = load(&[("ZERODROP_DATABASE_URL", "postgres://db/zd")]).unwrap();
        assert_eq!(config.database_url, "postgres://db/zd");
    }

    #[test]
    fn a_wait_that_cannot_work_is_refused_with_the_key_named() {
        for (key, value) in [
            ("ZERODROP_DATABASE__ACQUIRE_TIMEOUT_MS", "0"),
            ("ZERODROP_DATABASE__ACQUIRE_TIMEOUT_MS", "600000"),
            ("ZERODROP_DATABASE__SQLITE_BUSY_TIMEOUT_MS", "10"),
        ] {
            let err = load(&[(key, value)]).unwrap_err();
            let name = key.trim_start_matches("ZERODROP_DATABASE__").to_ascii_lowercase();
            assert!(err.contains(&format!("database.{name}")), "{err}");
        }
        let err = load(&[("ZERODROP_DATABASE__CONNECT_MS", "5")]).unwrap_err();
        assert!(err.contains("connect_ms"), "unknown keys are refused: {err}");
    }
}
