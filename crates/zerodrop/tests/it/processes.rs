//! zerodrop as real child processes: two `serve` processes sharing one database, and the
//! crash test (SIGKILL under load, restart, settle, audit), on both engines.

use crate::support::calm;
use rand::Rng;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use zerodrop::stack::{self, Client, SandboxSide, Tuning};
use zerodrop_sandbox::faults::Faults;
use zerodrop_store::testing::TestDb;
use zerodrop_store::{both_engines, orders, payments};

/// Starts of one `zerodrop serve` before the test gives up.
const SPAWN_TRIES_MAX: usize = 5;

/// A `zerodrop serve` child process on a fixed port (so providers can reach it again
/// after a restart).
struct Server {
    config: PathBuf,
    listen: String,
    child: Option<tokio::process::Child>,
}

impl Server {
    async fn start(db: &TestDb, sandbox: &SandboxSide, tuning: &Tuning, dir: &std::path::Path) -> Server {
        let listen = free_port().await;
        let config = stack::config(&db.url, &listen, sandbox, tuning);
        let path = stack::write_config(&config, dir).expect("config");
        let mut server = Server { config: path, listen, child: None };
        server.spawn().await;
        server
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// Starts `zerodrop serve` and waits until it is ready. While it was down, a client's
    /// outgoing connection may have been given its port for a moment, so a start that
    /// exits (the port is taken) is tried again, a few times, on the same port.
    async fn spawn(&mut self) {
        for _ in 0..SPAWN_TRIES_MAX {
            let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_zerodrop"))
                .args(["serve", "--config"])
                .arg(&self.config)
                .env("ZERODROP_API__MERCHANT_API_KEYS", format!("[\"{}\"]", stack::API_KEY))
                .env("ZERODROP_LOG", "error")
                .kill_on_drop(true)
                .spawn()
                .expect("spawn zerodrop serve");
            self.child = Some(child);
            if self.ready().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("zerodrop serve exited during start {SPAWN_TRIES_MAX} times");
    }

    /// Waits for `/readyz`; false when the process exited first.
    async fn ready(&mut self) -> bool {
        let http = reqwest::Client::new();
        let url = format!("{}/readyz", self.base_url());
        for _ in 0..600 {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                eprintln!("zerodrop serve exited during start: {status}");
                self.child = None;
                return false;
            }
            if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("zerodrop serve was not ready after 30 s");
    }

    /// SIGKILL: no shutdown, no flush, no goodbye.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("kill");
            let _ = child.wait().await;
        }
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
            }
            let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
        }
    }
}

async fn free_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("zerodrop-proc-{}", uuid::Uuid::new_v4().simple()))
}

/// A platform that keeps retrying (same Idempotency-Key) while zerodrop is down, and
/// users who pay what they ordered.
async fn buy(client: &Client, user: &str, key: &str, pay_after_ms: u64) -> Option<String> {
    let body = json!({ "user_id": user, "sku": "diamonds_300" });
    let created = loop {
        match client.create_order(&body, Some(key)).await {
            Ok((201, created)) => break created,
            Ok((status, body)) if (400..500).contains(&status) => {
                panic!("refused: {status} {body}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    tokio::time::sleep(Duration::from_millis(pay_after_ms)).await;
    client.pay(&created).await.ok()?.ok()?;
    created["order"]["order_no"].as_str().map(str::to_owned)
}

/// Every provider charge matched one to one by a zerodrop payment with its trade number,
/// each delivered; and the audit passes.
async fn assert_books_match(db: &TestDb, sandbox: &SandboxSide) {
    let charges = sandbox.sandbox.charges();
    let mut conn = db.store.reader().await.unwrap();
    let recorded = payments::list_after(&mut conn, 0, i64::MAX).await.unwrap();
    let states: HashMap<String, String> =
        orders::summaries(&mut conn).await.unwrap().into_iter().map(|o| (o.order_no, o.status)).collect();
    assert_eq!(recorded.len(), charges.len(), "one payment per charge");
    let by_trade: HashMap<&str, &payments::PaymentRow> = recorded.iter().map(|p| (p.trade_no.as_str(), p)).collect();
    for charge in &charges {
        let payment = by_trade
            .get(charge.trade_no.as_str())
            .unwrap_or_else(|| panic!("charge {} never recorded (dropped)", charge.trade_no));
        assert_eq!(payment.amount.minor, charge.amount_minor);
        assert_eq!(states.get(&charge.out_trade_no).map(String::as_str), Some("delivered"), "{}", charge.out_trade_no);
    }
    let options = zerodrop_store::audit::AuditOptions::new(3_600_000);
    let report = zerodrop_store::audit::run(&db.store, &options, zerodrop_store::now_ms()).await.unwrap();
    assert!(report.passed(), "{}", zerodrop::audit::render(&report));
}

async fn wait_for_outcomes(db: &TestDb, sandbox: &SandboxSide, limit: Duration) {
    stack::eventually(limit, "every charge to be delivered", || async {
        let mut conn = db.store.reader().await?;
        let delivered = payments::delivered_at_by_order_no(&mut conn).await?;
        let charges = sandbox.sandbox.charges();
        Ok(charges.iter().all(|c| delivered.contains_key(&c.out_trade_no)).then_some(()))
    })
    .await
    .expect("all charges delivered");
}

fn tuning() -> Tuning {
    Tuning {
        ttl_secs: 30,
        query_schedule_secs: vec![2, 4, 8, 16],
        query_cadence: Vec::new(),
        late_sweep_schedule_secs: vec![5],
        poll_interval_ms: 100,
        concurrency: 16,
        catalog_toml: None,
        endpoint_url: None,
        endpoint_timeout_ms: 2_000,
    }
}

both_engines! {
    /// Two `serve` processes on one database share the jobs (leases, SKIP LOCKED on
    /// PostgreSQL) without ever delivering twice.
    async fn two_servers_share_the_work_safely(db) {
        let dir = temp_dir();
        // Every notification lost: all the work is done by the jobs of both processes.
        let sandbox = SandboxSide::start(Faults { drop_rate_pct: 100, ..calm() }).await.unwrap();
        // Two jobs at a time each: neither process can take every job before the other looks.
        let narrow = Tuning { concurrency: 2, ..tuning() };
        let mut a = Server::start(db, &sandbox, &narrow, &dir.join("a")).await;
        let mut b = Server::start(db, &sandbox, &narrow, &dir.join("b")).await;
        let clients = [Client::new(&a.base_url(), &sandbox.url).unwrap(), Client::new(&b.base_url(), &sandbox.url).unwrap()];
        let mut buyers = tokio::task::JoinSet::new();
        for n in 0..80 {
            let client = clients[n % 2].clone();
            buyers.spawn(async move { buy(&client, &format!("u{}", n % 7), &format!("two-{n}"), 100).await });
        }
        while let Some(bought) = buyers.join_next().await {
            assert!(bought.unwrap().is_some());
        }
        wait_for_outcomes(db, &sandbox, Duration::from_secs(60)).await;
        let mut conn = db.store.reader().await.unwrap();
        let owners = zerodrop_store::jobs::finished_by_owner(&mut conn).await.unwrap();
        assert!(owners.len() >= 2, "both processes ran jobs: {owners:?}");
        drop(conn);
        assert_books_match(db, &sandbox).await;
        a.stop().await;
        b.stop().await;
        sandbox.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}

both_engines! {
    /// The crash test: zerodrop is SIGKILLed at random moments under load, at least five
    /// times, and restarted. Afterwards nothing is dropped, nothing delivered twice, the
    /// audit passes, and the provider's charges match zerodrop's payments one to one.
    async fn crash_test_sigkill_under_load_loses_nothing(db) {
        let dir = temp_dir();
        let faults = Faults { drop_rate_pct: 30, duplicate_rate_pct: 20, delay_ms_max: 400, ..calm() };
        let sandbox = SandboxSide::start(faults).await.unwrap();
        let mut server = Server::start(db, &sandbox, &tuning(), &dir).await;
        let client = Client::new(&server.base_url(), &sandbox.url).unwrap();

        let orders_total = 240;
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut buyers = tokio::task::JoinSet::new();
        for n in 0..orders_total {
            let client = client.clone();
            buyers.spawn(async move {
                let (start_ms, pay_after_ms) = (rand::rng().random_range(0..12_000), rand::rng().random_range(0..1_500));
                tokio::time::sleep(Duration::from_millis(start_ms)).await;
                buy(&client, &format!("u{}", n % 17), &format!("crash-{n}"), pay_after_ms).await
            });
        }
        let killer = {
            let done = done.clone();
            async move {
                let mut kills = 0;
                while kills < 6 || !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let (wait, down) = (rand::rng().random_range(800..2_500), rand::rng().random_range(50..500));
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    server.kill().await;
                    kills += 1;
                    tokio::time::sleep(Duration::from_millis(down)).await;
                    server.spawn().await;
                    if kills >= 12 {
                        break;
                    }
                }
                (server, kills)
            }
        };
        let killer = tokio::spawn(killer);
        let mut paid = 0;
        while let Some(bought) = buyers.join_next().await {
            paid += usize::from(bought.unwrap().is_some());
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut server, kills) = killer.await.unwrap();
        assert!(kills >= 5, "killed {kills} times");
        assert_eq!(paid, orders_total, "every user could pay");

        wait_for_outcomes(db, &sandbox, Duration::from_secs(120)).await;
        assert_books_match(db, &sandbox).await;
        server.stop().await;
        sandbox.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
