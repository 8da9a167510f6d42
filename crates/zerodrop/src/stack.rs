//! A local stack: the sandbox provider, a merchant key pair registered with it, and a
//! zerodrop configuration that talks to it through the Alipay adapter over HTTP. The
//! demo, the benchmark and the black-box tests all start from here; zerodrop itself can
//! run in this process or as a child `zerodrop serve` reading the written config.

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zerodrop_providers::keys::RsaPrivateKey;
use zerodrop_sandbox::faults::Faults;
use zerodrop_sandbox::state::{Charge, Merchant};
use zerodrop_sandbox::Sandbox;
pub use zerodrop_sandbox::Twist;
use zerodrop_server::config::{Config, ProviderConfig, QueryStep};
use zerodrop_server::App;

pub const API_KEY: &str = "zd_local_merchant_key_for_tests_and_demo";
pub const PROVIDER: &str = "sandbox";
pub const APP_ID: &str = "2021000000000001";
pub const SELLER_ID: &str = "2088000000000001";
/// Time allowed for one request from a simulated client.
const CLIENT_TIMEOUT_MS: u64 = 15_000;

/// A running sandbox with a merchant registered, and the keys to configure zerodrop.
pub struct SandboxSide {
    pub sandbox: Sandbox,
    pub url: String,
    app_key_pem: String,
    sandbox_key_pem: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl SandboxSide {
    pub async fn start(faults: Faults) -> Result<SandboxSide> {
        let sandbox_key = RsaPrivateKey::generate().map_err(|e| anyhow!("sandbox key: {e}"))?;
        let sandbox_key_pem = sandbox_key.to_pkcs8_pem().map_err(|e| anyhow!("sandbox key: {e}"))?;
        let sandbox = Sandbox::with_key(sandbox_key, faults)?;
        let app_key = RsaPrivateKey::generate().map_err(|e| anyhow!("app key: {e}"))?;
        sandbox.add_merchant(Merchant {
            app_id: APP_ID.into(),
            seller_id: SELLER_ID.into(),
            app_public_key: app_key.public_key(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = sandbox.clone();
        let task = tokio::spawn(async move {
            let _ = server
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await;
        });
        let app_key_pem = app_key.to_pkcs8_pem().map_err(|e| anyhow!("app key: {e}"))?;
        Ok(SandboxSide { sandbox, url, app_key_pem, sandbox_key_pem, stop: Some(stop), task })
    }

    /// The sandbox's own signing key, for benchmarks that sign notifications ahead of time.
    pub fn sandbox_key(&self) -> Option<RsaPrivateKey> {
        RsaPrivateKey::parse(&self.sandbox_key_pem, "sandbox key").ok()
    }

    /// zerodrop's provider entry for this sandbox.
    pub fn provider_config(&self) -> ProviderConfig {
        ProviderConfig {
            name: PROVIDER.into(),
            kind: "alipay".into(),
            app_id: APP_ID.into(),
            seller_id: SELLER_ID.into(),
            gateway_url: format!("{}/gateway.do", self.url),
            app_private_key: Some(zerodrop_domain::Secret::new(self.app_key_pem.clone())),
            app_private_key_file: None,
            provider_public_key: Some(self.sandbox.public_key().to_pem()),
            provider_public_key_file: None,
            timeout_ms: 5_000,
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

/// The knobs a stack's zerodrop is started with.
#[derive(Clone, Debug)]
pub struct Tuning {
    pub ttl_secs: i64,
    /// Fixed query points, in seconds from an order's creation.
    pub query_schedule_secs: Vec<i64>,
    /// The open-order cadence; empty: only the fixed points.
    pub query_cadence: Vec<QueryStep>,
    /// Late sweeps, in seconds after expiry.
    pub late_sweep_schedule_secs: Vec<i64>,
    pub poll_interval_ms: u64,
    pub concurrency: usize,
    /// A catalog instead of the shipped one (TOML text).
    pub catalog_toml: Option<String>,
    /// The platform's delivery endpoint, configured as `game`.
    pub endpoint_url: Option<String>,
    /// How long zerodrop waits for that endpoint's answer.
    pub endpoint_timeout_ms: u64,
}

/// A catalog with deadlines short enough to watch: every kind, both miss policies.
pub const TEST_CATALOG: &str = include_str!("../../../catalog/test.toml");

impl Default for Tuning {
    fn default() -> Self {
        let orders = zerodrop_server::config::OrderConfig::default();
        Tuning {
            ttl_secs: orders.ttl_secs,
            late_sweep_schedule_secs: orders.late_sweep_points_secs(),
            query_schedule_secs: orders.query_schedule_secs,
            query_cadence: orders.query_cadence,
            poll_interval_ms: 250,
            concurrency: 16,
            catalog_toml: None,
            endpoint_url: None,
            endpoint_timeout_ms: 2_000,
        }
    }
}

pub fn config(database_url: &str, listen: &str, sandbox: &SandboxSide, tuning: &Tuning) -> Config {
    let mut config = Config {
        database_url: database_url.into(),
        listen: listen.into(),
        public_base_url: format!("http://{listen}"),
        default_provider: PROVIDER.into(),
        providers: vec![sandbox.provider_config()],
        ..Config::default()
    };
    config.api.merchant_api_keys = vec![zerodrop_domain::Secret::new(API_KEY.into())];
    config.orders.ttl_secs = tuning.ttl_secs;
    config.orders.query_schedule_secs = tuning.query_schedule_secs.clone();
    config.orders.query_cadence = tuning.query_cadence.clone();
    config.orders.late_sweep_schedule_secs = tuning.late_sweep_schedule_secs.clone();
    config.jobs.poll_interval_ms = tuning.poll_interval_ms;
    config.jobs.concurrency = tuning.concurrency;
    // A stack without a card-key key simply sells no card keys.
    config.card_keys.encryption_key =
        zerodrop_server::card_vault::Vault::generate_key().ok().map(zerodrop_domain::Secret::new);
    config.status_pages.secret =
        Some(zerodrop_domain::Secret::new(format!("zd_status_{}", uuid::Uuid::new_v4().simple())));
    if let Some(url) = &tuning.endpoint_url {
        config.delivery_endpoints = vec![zerodrop_server::config::EndpointConfig {
            name: crate::endpoint::NAME.into(),
            url: url.clone(),
            secret: zerodrop_domain::Secret::new(crate::endpoint::SECRET.into()),
            timeout_ms: tuning.endpoint_timeout_ms,
        }];
    }
    // The seal key and log of this stack, beside nothing else's.
    let seal_dir = std::env::temp_dir().join(format!("zerodrop-seal-{}", uuid::Uuid::new_v4().simple()));
    config.seal.key_file = seal_dir.join("seal.key").display().to_string();
    config.seal.log_path = seal_dir.join("seal.log").display().to_string();
    // Reconciliation runs when a test or the demo asks for it, into a directory of its own.
    config.reconcile.daily = false;
    config.reconcile.bill_dir = seal_dir.join("bills").display().to_string();
    if let Some(catalog) = &tuning.catalog_toml {
        let dir = std::env::temp_dir().join(format!("zerodrop-catalog-{}", uuid::Uuid::new_v4().simple()));
        let path = dir.join("catalog.toml");
        if std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, catalog)).is_ok() {
            config.catalog_path = path.display().to_string();
        }
    }
    config
}

/// Writes a config a child `zerodrop serve --config` can read; secrets go in files
/// beside it, readable by the owner only.
pub fn write_config(config: &Config, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut config = config.clone();
    let keys = [("app_private_key.pem", 0), ("provider_public_key.pem", 1)];
    for provider in &mut config.providers {
        let private = provider.app_private_key.take().map(|s| s.expose().clone()).unwrap_or_default();
        let public = provider.provider_public_key.take().unwrap_or_default();
        for (file, which) in keys {
            let path = dir.join(format!("{}_{file}", provider.name));
            std::fs::write(&path, if which == 0 { &private } else { &public })?;
            restrict(&path)?;
            let path = path.display().to_string();
            if which == 0 {
                provider.app_private_key_file = Some(path);
            } else {
                provider.provider_public_key_file = Some(path);
            }
        }
    }
    // The API keys are secrets too: they travel as an environment variable instead. The
    // child processes this writes for sell no card keys and use no delivery endpoints.
    config.api.merchant_api_keys.clear();
    config.card_keys.encryption_key = None;
    config.status_pages.secret = None;
    config.delivery_endpoints.clear();
    let path = dir.join("zerodrop.toml");
    std::fs::write(&path, toml::to_string_pretty(&config)?)?;
    Ok(path)
}

#[cfg(unix)]
fn restrict(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_path: &Path) -> Result<()> {
    Ok(())
}

/// zerodrop served from this process.
pub struct InProcess {
    pub app: App,
    pub base_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl InProcess {
    pub async fn start(config_for: impl FnOnce(&str) -> Config) -> Result<InProcess> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let listen = listener.local_addr()?.to_string();
        let config = config_for(&listen);
        let app = App::start(config).await.context("starting zerodrop")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(zerodrop_server::serve(app.clone(), listener, async move {
            let _ = stopped.await;
        }));
        Ok(InProcess { app, base_url: format!("http://{listen}"), stop: Some(stop), task })
    }

    pub async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await??;
        Ok(())
    }
}

/// A platform back end and its users, as HTTP clients.
#[derive(Clone)]
pub struct Client {
    pub base_url: String,
    pub sandbox_url: String,
    pub http: reqwest::Client,
}

impl Client {
    pub fn new(base_url: &str, sandbox_url: &str) -> Result<Client> {
        let http = zerodrop_providers::http_client::client(Duration::from_millis(CLIENT_TIMEOUT_MS))?;
        Ok(Client { base_url: base_url.into(), sandbox_url: sandbox_url.into(), http })
    }

    /// Creates an order; returns (HTTP status, body).
    pub async fn create_order(&self, body: &Value, idempotency_key: Option<&str>) -> Result<(u16, Value)> {
        let mut request = self.http.post(format!("{}/v1/orders", self.base_url)).bearer_auth(API_KEY).json(body);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// POSTs JSON with the merchant key.
    pub async fn post(&self, path: &str, body: &Value, idempotency_key: Option<&str>) -> Result<(u16, Value)> {
        let mut request = self.http.post(format!("{}{path}", self.base_url)).bearer_auth(API_KEY).json(body);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let response = self.http.get(format!("{}{path}", self.base_url)).bearer_auth(API_KEY).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    pub async fn order(&self, order_no: &str) -> Result<Value> {
        let (status, body) = self.get(&format!("/v1/orders/{order_no}")).await?;
        if status != 200 {
            return Err(anyhow!("GET order {order_no}: HTTP {status} {body}"));
        }
        Ok(body)
    }

    /// The user pays at the sandbox with the order string zerodrop handed out.
    pub async fn pay(&self, created: &Value) -> Result<std::result::Result<Charge, String>> {
        self.pay_with(created, Twist::None).await
    }

    /// Pays off the expected path (a second trade, another amount, an order number the
    /// merchant never issued): see [`Twist`].
    pub async fn pay_with(&self, created: &Value, twist: Twist) -> Result<std::result::Result<Charge, String>> {
        let order_string =
            created["pay"]["order_string"].as_str().ok_or_else(|| anyhow!("no order string in {created}"))?;
        let twist = match twist {
            Twist::None => Value::Null,
            Twist::SecondTrade => serde_json::json!("second_trade"),
            Twist::Amount(amount) => serde_json::json!({ "amount": amount }),
            Twist::OrderNo(order_no) => serde_json::json!({ "order_no": order_no }),
        };
        let response = self
            .http
            .post(format!("{}/sandbox/pay", self.sandbox_url))
            .json(&serde_json::json!({ "order_string": order_string, "twist": twist }))
            .send()
            .await?;
        if response.status().is_success() {
            Ok(Ok(response.json().await?))
        } else {
            Ok(Err(response.text().await.unwrap_or_default()))
        }
    }
}

/// Polls `check` until it returns `Some`, or fails after `limit`. An error from `check`
/// (a request that timed out on a loaded machine, a busy database) counts as "not yet":
/// only the limit ends the wait, and the last error is reported with it.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if tokio::time::Instant::now() > deadline {
            let last = last_error.map(|e| format!(" (last error: {e:#})")).unwrap_or_default();
            return Err(anyhow!("timed out after {limit:?} waiting for {what}{last}"));
        }
        tokio::time::sleep(Duration::from_millis(EVENTUALLY_POLL_MS)).await;
    }
}

/// How often [`eventually`] asks again.
const EVENTUALLY_POLL_MS: u64 = 50;

/// The fields of an Alipay `trade_status_sync` payment notification from this stack's
/// sandbox merchant; callers may change any field before signing it.
pub fn payment_notification(order_no: &str, trade_no: &str, amount: &str) -> Vec<(String, String)> {
    let now = zerodrop_providers::alipay::clock::format_cst(zerodrop_store::now_ms());
    [
        ("notify_time", now.clone()),
        ("notify_type", "trade_status_sync".into()),
        ("notify_id", format!("n{}", uuid::Uuid::new_v4().simple())),
        ("app_id", APP_ID.into()),
        ("charset", "utf-8".into()),
        ("version", "1.0".into()),
        ("sign_type", "RSA2".into()),
        ("trade_no", trade_no.into()),
        ("out_trade_no", order_no.into()),
        ("seller_id", SELLER_ID.into()),
        ("trade_status", "TRADE_SUCCESS".into()),
        ("total_amount", amount.into()),
        ("gmt_payment", now),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Signs notification fields the way Alipay does and form-encodes them.
pub fn sign_notification(key: &RsaPrivateKey, fields: &[(String, String)]) -> Result<String> {
    let message =
        zerodrop_providers::alipay::sign::signing_string(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())), false);
    let sign = key.sign_sha256_base64(message.as_bytes()).map_err(|e| anyhow!("{e}"))?;
    let mut all = fields.to_vec();
    all.push(("sign".into(), sign));
    Ok(serde_urlencoded::to_string(&all)?)
}
