//! Configuration: one typed struct, loaded once from a TOML file plus `ZERODROP_*`
//! environment variables, and passed down. Secrets are redacted wherever it is printed.
//!
//! Environment variables name a key path with `__` between levels, upper-cased:
//! `ZERODROP_DATABASE_URL`, `ZERODROP_ORDERS__TTL_SECS`, `ZERODROP_PROVIDERS__0__APP_ID`.
//! Values are read as TOML (numbers, arrays, booleans) and fall back to plain strings.

pub use crate::schedule::QueryStep;

mod database;
mod seal;
mod settlement;
pub use database::DatabaseConfig;
pub use seal::{write_new_key, SealConfig, SealKeyError};
pub use settlement::{AttentionConfig, ChargeConfig, RefundConfig};

use serde::{Deserialize, Serialize};
use std::path::Path;
use zerodrop_domain::Secret;

pub const ENV_PREFIX: &str = "ZERODROP_";
/// `ZERODROP_*` variables that are not configuration keys: the config file's path, the
/// log filter, and the test suite's PostgreSQL switches.
pub const ENV_NOT_CONFIG: &[&str] = &["CONFIG", "LOG", "TEST_PG", "TEST_PG_MARKER", "TEST_BROWSER"];
/// Default SQLite file, under `./data/` as the design says.
pub const DATABASE_URL_DEFAULT: &str = "sqlite://./data/zerodrop.db";

#[derive(Clone, Debug, Serialize, Deserialize)]
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
    pub seal: SealConfig,
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
            seal: SealConfig::default(),
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
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Toml(describe(&e, &text)))?;
        for (name, value) in env {
            if let Some(key) = name.strip_prefix(ENV_PREFIX).filter(|k| !ENV_NOT_CONFIG.contains(k)) {
                apply_env(&mut table, key, &value)?;
            }
        }
        let config: Config = toml::Value::Table(table).try_into().map_err(|e| ConfigError::Toml(describe(&e, "")))?;
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
        self.seal.validate().map_err(ConfigError::Invalid)?;
        if self.jobs.concurrency == 0 || self.jobs.concurrency > 256 {
            return invalid("jobs.concurrency must be 1..=256".into());
        }
        if self.jobs.lease_ms < 5_000 {
            return invalid("jobs.lease_ms must be at least 5000".into());
        }
        for e in &self.delivery_endpoints {
            if zerodrop_domain::Sku::parse(&e.name).is_err()
                || !(e.url.starts_with("http://") || e.url.starts_with("https://"))
            {
                return invalid(format!(
                    "delivery endpoint {:?}: a short name and an http(s) url are required",
                    e.name
                ));
            }
            if e.secret.expose().len() < 16 {
                return invalid(format!("delivery endpoint {}: the secret must be at least 16 characters", e.name));
            }
        }
        if let Some(secret) = &self.status_pages.secret {
            if secret.expose().len() < 16 {
                return invalid("status_pages.secret must be at least 16 characters".into());
            }
        }
        if !(60..=90 * 86_400).contains(&self.status_pages.link_ttl_secs) {
            return invalid("status_pages.link_ttl_secs must be between 60 and 7776000".into());
        }
        for p in &self.providers {
            if p.kind != "alipay" {
                return invalid(format!("provider {}: kind {:?} is not supported (alipay)", p.name, p.kind));
            }
            if zerodrop_domain::Sku::parse(&p.name).is_err() {
                return invalid(format!("provider name {:?} must be a short identifier", p.name));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML, with every secret replaced by `[redacted]`
    /// (and the database URL's password).
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = redact_url(&self.database_url);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render configuration: {e}"))
    }
}

/// A URL with its password (the user-info after `:`, and any `password=` parameter)
/// replaced by `[redacted]`, for printing.
pub fn redact_url(url: &str) -> String {
    let mut shown = url.to_owned();
    if let Some(scheme) = shown.find("://") {
        let authority_end = shown[scheme + 3..].find('/').map_or(shown.len(), |i| scheme + 3 + i);
        if let Some(at) = shown[..authority_end].rfind('@') {
            if let Some(colon) = shown[scheme + 3..at].find(':') {
                shown.replace_range(scheme + 3 + colon + 1..at, "[redacted]");
            }
        }
    }
    if let Some(start) = shown.find("password=") {
        let value = start + "password=".len();
        let end = shown[value..].find('&').map_or(shown.len(), |i| value + i);
        shown.replace_range(value..end, "[redacted]");
    }
    shown
}

/// A TOML error in words without the text it quotes: its message with every quoted value
/// blanked, and where it is when the file's text is known.
fn describe(e: &toml::de::Error, text: &str) -> String {
    let mut message = String::new();
    let mut quoted = false;
    for c in e.message().chars() {
        if c == '"' {
            if !quoted {
                message.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            message.push(c);
        }
    }
    match e.span().filter(|_| !text.is_empty()) {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

fn apply_env(table: &mut toml::Table, key: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = key.split("__").map(|s| s.to_ascii_lowercase()).collect();
    let parsed = parse_env_value(value);
    set_path(&mut toml::Value::Table(std::mem::take(table)), &path, parsed)
        .map(|root| {
            if let toml::Value::Table(t) = root {
                *table = t;
            }
        })
        .map_err(|m| ConfigError::Invalid(format!("{ENV_PREFIX}{key}: {m}")))
}

fn parse_env_value(value: &str) -> toml::Value {
    // `x = <value>` parses numbers, booleans and arrays; anything else is a string.
    match toml::from_str::<toml::Table>(&format!("x = {value}")) {
        Ok(mut t) => t.remove("x").unwrap_or_else(|| toml::Value::String(value.into())),
        Err(_) => toml::Value::String(value.into()),
    }
}

fn set_path(root: &mut toml::Value, path: &[String], value: toml::Value) -> Result<toml::Value, String> {
    let mut node = &mut *root;
    for (i, segment) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        node = match node {
            toml::Value::Table(t) => {
                if last {
                    t.insert(segment.clone(), value);
                    return Ok(std::mem::replace(root, toml::Value::Boolean(false)));
                }
                let next_is_index = path[i + 1].parse::<usize>().is_ok();
                t.entry(segment.clone()).or_insert_with(|| {
                    if next_is_index {
                        toml::Value::Array(Vec::new())
                    } else {
                        toml::Value::Table(toml::Table::new())
                    }
                })
            }
            toml::Value::Array(items) => {
                let index: usize = segment.parse().map_err(|_| format!("{segment} is not an index"))?;
                if index > items.len() {
                    return Err(format!("index {index} skips entries"));
                }
                if index == items.len() {
                    items.push(toml::Value::Table(toml::Table::new()));
                }
                if last {
                    items[index] = value;
                    return Ok(std::mem::replace(root, toml::Value::Boolean(false)));
                }
                &mut items[index]
            }
            _ => return Err(format!("{segment} is not a table")),
        };
    }
    Err("empty key".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn log_format_is_text_by_default_json_on_request_and_nothing_else() {
        assert_eq!(Config::load(None, env(&[])).unwrap().log_format, LogFormat::Text);
        let json = Config::load(None, env(&[("ZERODROP_LOG_FORMAT", "json")])).unwrap();
        assert_eq!(json.log_format, LogFormat::Json);
        let wrong = Config::load(None, env(&[("ZERODROP_LOG_FORMAT", "yaml")])).unwrap_err();
        assert!(wrong.to_string().contains("yaml"), "{wrong}");
    }

    #[test]
    fn environment_overrides_file_values_at_any_depth() {
        let dir = std::env::temp_dir().join(format!("zd-config-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("zerodrop.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:1\"\n[orders]\nttl_secs = 60\n").unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("ZERODROP_ORDERS__TTL_SECS", "120"),
                ("ZERODROP_DATABASE_URL", "postgres://zd:hunter2@db.example:5432/zd"),
                ("ZERODROP_ORDERS__QUERY_SCHEDULE_SECS", "[5, 10]"),
                ("ZERODROP_API__MERCHANT_API_KEYS", "[\"k1\"]"),
                ("ZERODROP_PROVIDERS__0__NAME", "sandbox"),
                ("ZERODROP_PROVIDERS__0__KIND", "alipay"),
                ("ZERODROP_PROVIDERS__0__APP_ID", "2021"),
                ("ZERODROP_PROVIDERS__0__SELLER_ID", "2088"),
                ("ZERODROP_PROVIDERS__0__GATEWAY_URL", "http://127.0.0.1:9/gateway.do"),
                ("ZERODROP_PROVIDERS__0__APP_PRIVATE_KEY", "very-secret-key"),
                ("HOME", "/ignored"),
                ("ZERODROP_LOG", "debug"),
                ("ZERODROP_CONFIG", "/etc/zerodrop.toml"),
                ("ZERODROP_TEST_PG", "postgres://x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:1");
        assert_eq!(config.orders.ttl_secs, 120);
        assert_eq!(config.orders.query_schedule_secs, vec![5, 10]);
        assert_eq!(config.providers[0].app_id, "2021", "a numeric-looking id stays as written");
        let printed = config.redacted_toml();
        assert!(!printed.contains("hunter2"), "the database password is never printed: {printed}");
        assert!(!printed.contains("very-secret-key") && !printed.contains("k1"), "{printed}");
        assert!(printed.contains("[redacted]"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn files_written_before_the_cadence_still_load_and_never_ask_less() {
        let dir = std::env::temp_dir().join(format!("zd-config-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("zerodrop.toml");
        let old = "[orders]\nttl_secs = 900\nquery_schedule_secs = [30, 60, 120, 300, 600]\nlate_sweep_secs = 600\n";
        std::fs::write(&file, old).unwrap();
        let config = Config::load(Some(&file), env(&[])).unwrap();
        assert_eq!(config.orders.query_schedule_secs, [30, 60, 120, 300, 600]);
        assert_eq!(config.orders.query_cadence, OrderConfig::default().query_cadence, "the cadence still runs");
        assert_eq!(config.orders.late_sweep_points_secs(), [600, 3_600, 21_600, 86_400, 259_200]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_cadence_and_sweeps_are_set_from_a_file_or_the_environment() {
        let cadence = "[{ every_secs = 10, until_secs = 60 }, { every_secs = 45 }]";
        let config = Config::load(
            None,
            env(&[
                ("ZERODROP_ORDERS__QUERY_CADENCE", cadence),
                ("ZERODROP_ORDERS__LATE_SWEEP_SCHEDULE_SECS", "[60, 7200]"),
            ]),
        )
        .unwrap();
        let steps = &config.orders.query_cadence;
        assert_eq!(
            steps,
            &[QueryStep { every_secs: 10, until_secs: Some(60) }, QueryStep { every_secs: 45, until_secs: None }]
        );
        assert_eq!(config.orders.late_sweep_points_secs(), [60, 7_200]);
        // The effective configuration, written out and read back, is the same (a child
        // `serve` reads what the stack writes).
        let text = toml::to_string_pretty(&config).unwrap();
        let again: Config = toml::from_str(&text).unwrap();
        assert_eq!(again.orders.query_cadence, config.orders.query_cadence, "{text}");
        assert_eq!(again.orders.late_sweep_points_secs(), [60, 7_200], "{text}");
        assert!(!text.contains("late_sweep_secs"), "the replaced key is not written: {text}");
    }

    #[test]
    fn a_cadence_or_sweep_schedule_that_cannot_work_is_refused_with_the_key_named() {
        let refused = |key: &str, value: &str| Config::load(None, env(&[(key, value)])).unwrap_err().to_string();
        let cadence = "ZERODROP_ORDERS__QUERY_CADENCE";
        let err = refused(cadence, "[{ every_secs = 0 }]");
        assert!(err.contains("query_cadence[0].every_secs"), "{err}");
        let err = refused(cadence, "[{ every_secs = 10 }, { every_secs = 20, until_secs = 60 }]");
        assert!(err.contains("must be the last step"), "{err}");
        let err = refused(cadence, "[{ every_secs = 10, until_secs = 60 }, { every_secs = 20, until_secs = 30 }]");
        assert!(err.contains("query_cadence[1].until_secs"), "{err}");
        let hour_at_every_second = env(&[(cadence, "[{ every_secs = 1 }]"), ("ZERODROP_ORDERS__TTL_SECS", "3600")]);
        let err = Config::load(None, hour_at_every_second).unwrap_err().to_string();
        assert!(err.contains("more than 1000 times"), "{err}");
        let err = refused(cadence, "[{ every_secs = 30, until = 60 }]");
        assert!(err.contains("until"), "{err}");
        let err = refused("ZERODROP_ORDERS__LATE_SWEEP_SCHEDULE_SECS", "[]");
        assert!(err.contains("late_sweep_schedule_secs"), "no sweep at all is refused: {err}");
        let err = refused("ZERODROP_ORDERS__LATE_SWEEP_SCHEDULE_SECS", "[3600, 0]");
        assert!(err.contains("late_sweep_schedule_secs"), "{err}");
        let err = refused("ZERODROP_ORDERS__LATE_SWEEP_SECS", "-5");
        assert!(err.contains("late_sweep_schedule_secs"), "the old key is checked as a point of the new: {err}");
    }

    #[test]
    fn bad_configuration_is_refused_with_the_key_named() {
        let err = Config::load(None, env(&[("ZERODROP_ORDERS__TTL_SECS", "1")])).unwrap_err().to_string();
        assert!(err.contains("ttl_secs"), "{err}");
        let err = Config::load(None, env(&[("ZERODROP_SURPRISE", "1")])).unwrap_err().to_string();
        assert!(err.contains("surprise"), "{err}");
    }

    #[test]
    fn urls_lose_their_passwords_when_printed() {
        assert_eq!(redact_url("postgres://zd:hunter2@db:5432/zd"), "postgres://zd:[redacted]@db:5432/zd");
        assert_eq!(redact_url("postgres://zd@db/zd"), "postgres://zd@db/zd", "no password, nothing to hide");
        assert_eq!(
            redact_url("postgres://db/zd?user=zd&password=hunter2&x=1"),
            "postgres://db/zd?user=zd&password=[redacted]&x=1"
        );
        assert_eq!(redact_url("sqlite://./data/zerodrop.db"), "sqlite://./data/zerodrop.db");
        assert_eq!(
            redact_url("postgres://a:p@ss@db/zd"),
            "postgres://a:[redacted]@db/zd",
            "the last @ ends the user-info"
        );
    }

    #[test]
    fn configuration_errors_never_quote_the_text_they_refuse() {
        let dir = std::env::temp_dir().join(format!("zd-cfg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        // A syntax error on the line that holds a private key.
        std::fs::write(&file, "listen = \"127.0.0.1:1\"\n[[providers]]\napp_private_key = \"MIIEsecretkey\n").unwrap();
        let error = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(!error.contains("MIIEsecretkey"), "{error}");
        assert!(error.contains("line 3"), "says where: {error}");
        // A secret from the environment that does not fit its key's type.
        let error = Config::load(None, env(&[("ZERODROP_API__MERCHANT_API_KEYS", "zd_live_topsecret")]))
            .unwrap_err()
            .to_string();
        assert!(!error.contains("topsecret"), "{error}");
    }
}
