//! Shared by the black-box tests: a sandbox provider and a zerodrop server on random
//! loopback ports, over the test's own database (SQLite or PostgreSQL).

pub mod browser;
pub mod proxy;
pub mod serve;

use serde_json::{json, Value};
use std::time::Duration;
use zerodrop::stack::{self, Client, InProcess, SandboxSide, Tuning};
use zerodrop_sandbox::faults::Faults;
use zerodrop_store::testing::TestDb;

pub struct Harness {
    pub sandbox: SandboxSide,
    pub server: InProcess,
    pub client: Client,
}

/// Order lives compressed to seconds so tests see queries, expiry and late sweeps quickly.
/// Queries at fixed points only (no cadence), so a test that moves them knows when
/// the provider is asked.
pub fn fast() -> Tuning {
    Tuning {
        ttl_secs: 6,
        query_schedule_secs: vec![1, 2, 4],
        query_cadence: Vec::new(),
        late_sweep_schedule_secs: vec![2],
        poll_interval_ms: 50,
        concurrency: 16,
        catalog_toml: None,
        endpoint_url: None,
        endpoint_timeout_ms: 2_000,
    }
}

/// Orders that live long and are never queried while a test runs: payments are learned
/// only from notifications (or from what the test does itself).
pub fn notifications_only() -> Tuning {
    Tuning { ttl_secs: 600, query_schedule_secs: vec![500], ..fast() }
}

/// No faults, and notifications arrive at once; retries of unacknowledged ones are fast.
pub fn calm() -> Faults {
    Faults { retry_scale_pct: 1, ..Faults::none() }
}

impl Harness {
    pub async fn start(db: &TestDb, faults: Faults, tuning: Tuning) -> Harness {
        Harness::start_with(db, faults, tuning, |_| {}).await
    }

    /// Starts with `edit` applied to the configuration the tuning makes.
    pub async fn start_with(
        db: &TestDb,
        faults: Faults,
        tuning: Tuning,
        edit: impl Fn(&mut zerodrop_server::Config),
    ) -> Harness {
        let sandbox = SandboxSide::start(faults).await.expect("sandbox");
        let server = InProcess::start(|listen| {
            let mut config = stack::config(&db.url, listen, &sandbox, &tuning);
            edit(&mut config);
            config
        })
        .await
        .expect("zerodrop");
        let client = Client::new(&server.base_url, &sandbox.url).expect("client");
        Harness { sandbox, server, client }
    }

    pub async fn stop(self) {
        self.server.stop().await.expect("clean stop");
        self.sandbox.stop().await;
    }

    pub async fn order(&self, user: &str, sku: &str) -> Value {
        let (status, body) =
            self.client.create_order(&json!({ "user_id": user, "sku": sku }), None).await.expect("create");
        assert_eq!(status, 201, "{body}");
        body
    }

    pub async fn wait_for_status(&self, order_no: &str, status: &str, limit: Duration) -> Value {
        stack::eventually(limit, &format!("{order_no} to be {status}"), || async {
            let order = self.client.order(order_no).await?;
            Ok((order["order"]["status"] == status).then_some(order))
        })
        .await
        .expect("status reached")
    }

    pub async fn post_notification(&self, provider: &str, body: Vec<u8>) -> (u16, String) {
        let response = self
            .client
            .http
            .post(format!("{}/v1/providers/{provider}/notify", self.server.base_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("post");
        (response.status().as_u16(), response.text().await.unwrap_or_default())
    }

    /// A signed payment notification for `order_no`, after `change` edits its fields.
    pub fn notification(
        &self,
        order_no: &str,
        trade_no: &str,
        amount: &str,
        change: impl FnOnce(&mut Vec<(String, String)>),
    ) -> Vec<u8> {
        let mut fields = stack::payment_notification(order_no, trade_no, amount);
        change(&mut fields);
        let key = self.sandbox.sandbox_key().expect("key");
        stack::sign_notification(&key, &fields).expect("sign").into_bytes()
    }

    /// Makes every queued job of `kind` due now (instead of waiting for its schedule).
    pub async fn make_due(&self, kind: &str) {
        let mut tx = self.server.app.store.begin().await.expect("begin");
        let sql = format!("UPDATE jobs SET run_at_ms = 0 WHERE kind = '{kind}' AND state = 'queued'");
        zerodrop_store::raw_execute(&mut tx, &sql).await.expect("make due");
        tx.commit().await.expect("commit");
        self.server.app.wake();
    }

    /// Puts the queued jobs of `kind` a day off: what they would do is left to what the
    /// test exercises instead (each run still does it when it comes).
    pub async fn postpone(&self, kind: &str) {
        let mut tx = self.server.app.store.begin().await.expect("begin");
        let at_ms = zerodrop_store::now_ms() + 86_400_000;
        let sql = format!("UPDATE jobs SET run_at_ms = {at_ms} WHERE kind = '{kind}' AND state = 'queued'");
        zerodrop_store::raw_execute(&mut tx, &sql).await.expect("postpone");
        tx.commit().await.expect("commit");
    }

    pub async fn audit_passes(&self) {
        let report = zerodrop::audit::check(&self.server.app.store, &self.server.app.config).await.expect("audit");
        assert!(report.passed(), "{}", zerodrop::audit::render(&report));
    }

    pub async fn wallet(&self, user: &str) -> Value {
        let (status, body) = self.client.get(&format!("/v1/users/{user}/wallet")).await.expect("wallet");
        assert_eq!(status, 200, "{body}");
        body
    }
}

pub fn set(fields: &mut [(String, String)], name: &str, value: &str) {
    if let Some(field) = fields.iter_mut().find(|(k, _)| k == name) {
        field.1 = value.to_owned();
    }
}

pub fn kinds(order: &Value) -> Vec<String> {
    order["timeline"]
        .as_array()
        .map(|events| events.iter().map(|e| e["kind"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

/// The goods stack: the test catalog (deadlines of 10 s; every product kind), orders that
/// stay open long enough not to expire under the test, and optionally the platform's
/// delivery endpoint.
pub fn goods(endpoint_url: Option<String>) -> Tuning {
    Tuning { ttl_secs: 120, catalog_toml: Some(zerodrop::stack::TEST_CATALOG.to_owned()), endpoint_url, ..fast() }
}

impl Harness {
    /// Creates an order, pays it at the sandbox, and waits until zerodrop has captured it.
    pub async fn paid(&self, user: &str, sku: &str) -> String {
        let created = self.order(user, sku).await;
        let order_no = created["order"]["order_no"].as_str().expect("order_no").to_owned();
        self.client.pay(&created).await.expect("pay").expect("paid at the sandbox");
        zerodrop::stack::eventually(Duration::from_secs(15), "the payment to be captured", || async {
            let order = self.client.order(&order_no).await?;
            Ok((order["order"]["status"] != "awaiting_payment").then_some(()))
        })
        .await
        .expect("captured");
        order_no
    }

    /// POSTs JSON to zerodrop with the merchant key.
    pub async fn post(&self, path: &str, body: &Value, idempotency_key: Option<&str>) -> (u16, Value) {
        let mut request = self
            .client
            .http
            .post(format!("{}{path}", self.server.base_url))
            .bearer_auth(zerodrop::stack::API_KEY)
            .json(body);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.expect("post");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn import_keys(&self, sku: &str, codes: &[&str]) -> zerodrop_server::flows::card_keys::ImportReport {
        let text = codes.join("\n");
        zerodrop_server::flows::card_keys::import(&self.server.app, sku, &text, false).await.expect("import")
    }
}

pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no code>")
}

pub fn count(order: &Value, kind: &str) -> usize {
    kinds(order).iter().filter(|k| *k == kind).count()
}
