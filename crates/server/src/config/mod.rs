//! Configuration: one typed struct, loaded once from a TOML file plus `ZERODROP_*`
//! environment variables, and passed down. Secrets are redacted wherever it is printed.
//!
//! Environment variables name a key path with `__` between levels, upper-cased:
//! `ZERODROP_DATABASE_URL`, `ZERODROP_ORDERS__TTL_SECS`, `ZERODROP_PROVIDERS__0__APP_ID`.
//! Values are read as TOML (numbers, arrays, booleans) and fall back to plain strings.

pub use crate::schedule::QueryStep;

mod database;
mod env;
mod messages;
pub use env::ENV_PREFIX;
mod notifications;
mod reconcile;
mod redact;
mod safety;
mod seal;
mod settlement;
pub use database::DatabaseConfig;
pub use messages::{MessagesConfig, Webhook};
pub use notifications::NotificationConfig;
pub use reconcile::ReconcileConfig;
pub use redact::{redact_url, scrub, url_secrets};
pub use safety::MERCHANT_KEY_BYTES_MIN;
pub use seal::{write_new_key, SealConfig, SealKeyError};
pub use settlement::{AttentionConfig, ChargeConfig, RefundConfig};

use serde::{Deserialize, Serialize};
use std::path::Path;
use zerodrop_domain::Secret;

/// `ZERODROP_*` variables that are not configuration keys: the config file's path, the
/// log filter, and the test suite's PostgreSQL switches.
pub const ENV_NOT_CONFIG: &[&str] = &["CONFIG", "LOG", "TEST_PG", "TEST_PG_MARKER", "TEST_BROWSER"];
/// Default SQLite file, under `./data/` as the design says.
pub const DATABASE_URL_DEFAULT: &str = "sqlite://./data/zerodrop.db";

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database_url: String,
    pub listen: String,
    /// `text` (for people) or `json` (one object per line, for log collectors). The
    /// filter comes from `ZERODROP_LOG` (e.g. `info`, `zerodrop_server=debug`).
    pub log_format: LogFormat,
    /// How providers reach this server (notification URLs are built from it).
    pub public_base_url: String,
    /// Empty: the catalog that ships with zerodrop.
    pub catalog_path: String,
    /// Provider used when an order does not name one.
    pub default_provider: String,
    /// How long to wait for the database (`[database]`; the URL is `database_url`).
    pub database: DatabaseConfig,
    pub api: ApiConfig,
    pub orders: OrderConfig,
    pub jobs: JobConfig,
    pub audit: AuditConfig,
    pub providers: Vec<ProviderConfig>,
    /// The platform's own delivery endpoints, named by `external` products.
    pub delivery_endpoints: Vec<EndpointConfig>,
    pub card_keys: CardKeyConfig,
    pub status_pages: StatusPageConfig,
    pub attention: AttentionConfig,
    pub charges: ChargeConfig,
    pub refunds: RefundConfig,
    pub notifications: NotificationConfig,
    pub seal: SealConfig,
    pub reconcile: ReconcileConfig,
    /// The user-message outbox's webhook (`[messages]`).
    pub messages: MessagesConfig,
}

/// `Debug` shows what `config check` shows: the database URL's password and every secret
/// redacted (a derived `Debug` would print the URL as written).
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted_toml())
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub name: String,
    pub url: String,
    /// Signs delivery requests (and verifies the endpoint's confirmations): HMAC-SHA256
    /// over `timestamp.body`.
    pub secret: Secret<String>,
    #[serde(default = "endpoint_timeout_ms_default")]
    pub timeout_ms: u64,
}

fn endpoint_timeout_ms_default() -> u64 {
    10_000
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardKeyConfig {
    /// 32 bytes, base64: encrypts card codes at rest. Without it, card-key products are
    /// not sold and no codes can be imported.
    pub encryption_key: Option<Secret<String>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusPageConfig {
    /// Signs the links that show a user one order's status page and receipt. Without it,
    /// no links are issued.
    pub secret: Option<Secret<String>>,
    /// How long a link works.
    pub link_ttl_secs: i64,
    /// The time zone the pages show times in, as minutes east of UTC (480: China).
    pub utc_offset_minutes: i32,
}

impl Default for StatusPageConfig {
    fn default() -> Self {
        StatusPageConfig { secret: None, link_ttl_secs: 7 * 86_400, utc_offset_minutes: 480 }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Keys the platform's back end presents as `Authorization: Bearer <key>`.
    pub merchant_api_keys: Vec<Secret<String>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrderConfig {
    /// How long a user may take to pay.
    pub ttl_secs: i64,
    /// How often the provider is asked about an unpaid order while it is open, in steps
    /// counted from its creation (see [`QueryStep`]). The default asks every 30 s for the
    /// first 10 minutes, so a payment whose notifications are all lost is found within a
    /// minute, then every 2 minutes until expiry. Empty: only `query_schedule_secs`.
    pub query_cadence: Vec<QueryStep>,
    /// Further queries at these points, in seconds from creation, besides the cadence
    /// (the only schedule before the cadence existed; an old file's list still works).
    /// Points at or after expiry are skipped: the expiry job closes and queries once more.
    pub query_schedule_secs: Vec<i64>,
    /// After an order expires, queries this long after its expiry catch a payment the
    /// provider took late (a laxer clock, a delayed bank) whose notifications were lost.
    pub late_sweep_schedule_secs: Vec<i64>,
    /// Replaced by `late_sweep_schedule_secs`. An old file's value still counts, as one
    /// more point of that schedule, so an upgrade never sweeps less.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_sweep_secs: Option<i64>,
}

impl OrderConfig {
    /// Every late sweep point, in seconds after expiry, the old single key included.
    pub fn late_sweep_points_secs(&self) -> Vec<i64> {
        let mut points = self.late_sweep_schedule_secs.clone();
        points.extend(self.late_sweep_secs);
        points.sort_unstable();
        points.dedup();
        points
    }

    fn validate(&self) -> Result<(), String> {
        if self.ttl_secs < 10 || self.ttl_secs > 7 * 86_400 {
            return Err("orders.ttl_secs must be between 10 and 604800".into());
        }
        if self.query_schedule_secs.iter().any(|s| *s < 1) || self.query_schedule_secs.len() > 50 {
            return Err("orders.query_schedule_secs must be at most 50 positive numbers".into());
        }
        if self.query_cadence.len() > QUERY_STEPS_MAX {
            return Err(format!("orders.query_cadence has at most {QUERY_STEPS_MAX} steps"));
        }
        let mut until_before = 0;
        for (i, step) in self.query_cadence.iter().enumerate() {
            if step.every_secs < 1 {
                return Err(format!("orders.query_cadence[{i}].every_secs must be positive"));
            }
            match step.until_secs {
                Some(until) if until <= until_before => {
                    return Err(format!("orders.query_cadence[{i}].until_secs must be after the step before's"));
                }
                Some(until) => until_before = until,
                None if i + 1 < self.query_cadence.len() => {
                    return Err(format!("orders.query_cadence[{i}] runs until expiry, so it must be the last step"));
                }
                None => {}
            }
        }
        let cap = QUERIES_PER_ORDER_MAX;
        let queries = crate::schedule::open_queries(&self.query_cadence, &self.query_schedule_secs, self.ttl_secs, cap);
        if queries > cap {
            return Err(format!(
                "orders.query_cadence asks more than {cap} times per order of ttl_secs {}",
                self.ttl_secs
            ));
        }
        let sweeps = self.late_sweep_points_secs();
        if sweeps.is_empty() || sweeps.len() > LATE_SWEEPS_MAX {
            return Err(format!("orders.late_sweep_schedule_secs needs 1 to {LATE_SWEEPS_MAX} points"));
        }
        if sweeps.iter().any(|s| !(1..=LATE_SWEEP_SECS_MAX).contains(s)) {
            return Err(format!("orders.late_sweep_schedule_secs points must be between 1 and {LATE_SWEEP_SECS_MAX}"));
        }
        Ok(())
    }
}

/// Cadence steps an operator may write; two or three describe any sensible schedule.
const QUERY_STEPS_MAX: usize = 8;
/// Scheduled queries of one open order. Providers meter queries per merchant (Alipay:
/// per-app QPS limits), so a cadence that would ask thousands of times per order is a
/// mistake in the file, refused at start.
const QUERIES_PER_ORDER_MAX: usize = 1_000;
/// Late sweeps per order: each is one provider query per expired order.
const LATE_SWEEPS_MAX: usize = 20;
/// Latest late sweep, 30 days after expiry: providers keep trades queryable for longer,
/// but a payment unfound after a month is settled by a person with the provider's
/// statement, not by another query.
const LATE_SWEEP_SECS_MAX: i64 = 30 * 86_400;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobConfig {
    /// Jobs run at once by one process (mostly waiting on providers).
    pub concurrency: usize,
    /// Longest sleep between looks at the queue when idle.
    pub poll_interval_ms: u64,
    /// How long a claimed job is reserved for its worker; a killed worker's jobs are
    /// taken over after this.
    pub lease_ms: i64,
    /// Setting this false runs an API-only process (another process runs the jobs).
    pub enabled: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// A parked notification older than this must be in front of a person.
    pub parked_age_secs_max: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    /// Wire format: `alipay` (the sandbox provider speaks it too).
    pub kind: String,
    #[serde(deserialize_with = "string_or_integer")]
    pub app_id: String,
    #[serde(deserialize_with = "string_or_integer")]
    pub seller_id: String,
    pub gateway_url: String,
    /// The app's private key, PEM or bare base64; or `app_private_key_file`.
    #[serde(default)]
    pub app_private_key: Option<Secret<String>>,
    #[serde(default)]
    pub app_private_key_file: Option<String>,
    /// The provider's public key, PEM or bare base64; or `provider_public_key_file`.
    #[serde(default)]
    pub provider_public_key: Option<String>,
    #[serde(default)]
    pub provider_public_key_file: Option<String>,
    #[serde(default = "gateway_timeout_ms_default")]
    pub timeout_ms: u64,
}

/// Provider ids are long digit strings ("2088…"); written bare in TOML or in an
/// environment variable they arrive as integers, and mean the same digits.
fn string_or_integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(i64),
    }
    Ok(match Id::deserialize(deserializer)? {
        Id::Text(text) => text,
        Id::Number(n) => n.to_string(),
    })
}

fn gateway_timeout_ms_default() -> u64 {
    zerodrop_providers::alipay::GATEWAY_TIMEOUT_MS_DEFAULT
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: DATABASE_URL_DEFAULT.into(),
            listen: "127.0.0.1:8080".into(),
            log_format: LogFormat::Text,
            public_base_url: "http://127.0.0.1:8080".into(),
            catalog_path: String::new(),
            default_provider: "sandbox".into(),
            database: DatabaseConfig::default(),
            api: ApiConfig::default(),
            orders: OrderConfig::default(),
            jobs: JobConfig::default(),
            audit: AuditConfig::default(),
            providers: Vec::new(),
            delivery_endpoints: Vec::new(),
            card_keys: CardKeyConfig::default(),
            status_pages: StatusPageConfig::default(),
            attention: AttentionConfig::default(),
            charges: ChargeConfig::default(),
            refunds: RefundConfig::default(),
            notifications: NotificationConfig::default(),
            seal: SealConfig::default(),
            reconcile: ReconcileConfig::default(),
            messages: MessagesConfig::default(),
        }
    }
}

impl Default for OrderConfig {
    fn default() -> Self {
        OrderConfig {
            ttl_secs: 900,
            query_cadence: vec![
                QueryStep { every_secs: 30, until_secs: Some(600) },
                QueryStep { every_secs: 120, until_secs: None },
            ],
            query_schedule_secs: Vec::new(),
            // An hour, six hours, a day and three days after expiry.
            late_sweep_schedule_secs: vec![3_600, 21_600, 86_400, 259_200],
            late_sweep_secs: None,
        }
    }
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig { concurrency: 16, poll_interval_ms: 250, lease_ms: 60_000, enabled: true }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { parked_age_secs_max: 7_200 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// A TOML or type error, described without the offending text: the line may hold a
    /// private key, and a value from the environment may be a secret.
    #[error("configuration is not valid: {0}")]
    Toml(String),
    #[error("configuration is not valid: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads `path` (if given) and applies `ZERODROP_*` variables from `env`.
    pub fn load<I>(path: Option<&Path>, env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let text = match path {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|source| ConfigError::Read { path: p.display().to_string(), source })?,
            None => String::new(),
        };
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| ConfigError::Toml(redact::describe_syntax(&e, &text)))?;
        let mut overrides = Vec::new();
        for (name, value) in env {
            if let Some(key) = name.strip_prefix(ENV_PREFIX).filter(|k| !ENV_NOT_CONFIG.contains(k)) {
                overrides.push(env::apply(&mut table, key, &value).map_err(ConfigError::Invalid)?);
            }
        }
        let config: Config =
            toml::Value::Table(table).try_into().map_err(|e| ConfigError::Toml(env::describe(&e, &overrides)))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        self.database.validate().map_err(ConfigError::Invalid)?;
        self.orders.validate().map_err(ConfigError::Invalid)?;
        self.attention.validate().map_err(ConfigError::Invalid)?;
        self.charges.validate().map_err(ConfigError::Invalid)?;
        self.refunds.validate().map_err(ConfigError::Invalid)?;
        self.notifications.validate().map_err(ConfigError::Invalid)?;
        self.seal.validate().map_err(ConfigError::Invalid)?;
        self.reconcile.validate().map_err(ConfigError::Invalid)?;
        self.messages.validate().map_err(ConfigError::Invalid)?;
        if self.jobs.concurrency == 0 || self.jobs.concurrency > 256 {
            return invalid("jobs.concurrency must be 1..=256".into());
        }
        if self.jobs.lease_ms < 5_000 {
            return invalid("jobs.lease_ms must be at least 5000".into());
        }
        for (i, key) in self.api.merchant_api_keys.iter().enumerate() {
            safety::key_long_enough(&format!("api.merchant_api_keys[{i}]"), key.expose())
                .map_err(ConfigError::Invalid)?;
        }
        for (i, e) in self.delivery_endpoints.iter().enumerate() {
            if zerodrop_domain::Sku::parse(&e.name).is_err() {
                return invalid(format!("delivery_endpoints[{i}].name must be a short identifier"));
            }
            let key = |field: &str| format!("delivery_endpoints[{i}].{field} (endpoint {})", e.name);
            safety::https_or_loopback(&key("url"), &e.url).map_err(ConfigError::Invalid)?;
            safety::key_long_enough(&key("secret"), e.secret.expose()).map_err(ConfigError::Invalid)?;
        }
        if let Some(secret) = &self.status_pages.secret {
            safety::key_long_enough("status_pages.secret", secret.expose()).map_err(ConfigError::Invalid)?;
        }
        if !(60..=90 * 86_400).contains(&self.status_pages.link_ttl_secs) {
            return invalid("status_pages.link_ttl_secs must be between 60 and 7776000".into());
        }
        for (i, p) in self.providers.iter().enumerate() {
            if p.kind != "alipay" {
                return invalid(format!("provider {}: kind {:?} is not supported (alipay)", p.name, p.kind));
            }
            if zerodrop_domain::Sku::parse(&p.name).is_err() {
                return invalid(format!("provider name {:?} must be a short identifier", p.name));
            }
            let key = format!("providers[{i}].gateway_url (provider {})", p.name);
            safety::https_or_loopback(&key, &p.gateway_url).map_err(ConfigError::Invalid)?;
        }
        Ok(())
    }

    /// Every secret the configuration holds (keys, passwords, the database URL's password
    /// and parameters), for [`scrub`] to keep out of anything printed.
    pub fn secrets(&self) -> Vec<String> {
        let mut found = redact::url_secrets(&self.database_url);
        found.extend(self.api.merchant_api_keys.iter().map(|k| k.expose().clone()));
        found.extend(self.delivery_endpoints.iter().map(|e| e.secret.expose().clone()));
        found.extend(self.status_pages.secret.iter().map(|s| s.expose().clone()));
        found.extend(self.card_keys.encryption_key.iter().map(|s| s.expose().clone()));
        for p in &self.providers {
            found.extend(p.app_private_key.iter().map(|k| k.expose().clone()));
            found.extend(redact::url_secrets(&p.gateway_url));
        }
        for e in &self.delivery_endpoints {
            found.extend(redact::url_secrets(&e.url));
        }
        found.extend(self.messages.webhook_secret.iter().map(|s| s.expose().clone()));
        found.extend(self.messages.webhook_url.iter().flat_map(|url| redact::url_secrets(url)));
        found
    }

    /// The effective configuration as TOML, with every secret replaced by `[redacted]`
    /// (and the database URL's password).
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = redact_url(&self.database_url);
        for p in &mut shown.providers {
            p.gateway_url = redact_url(&p.gateway_url);
        }
        for e in &mut shown.delivery_endpoints {
            e.url = redact_url(&e.url);
        }
        shown.messages.webhook_url = self.messages.webhook_url.as_deref().map(redact_url);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render configuration: {e}"))
    }
}

#[cfg(test)]
mod tests;
