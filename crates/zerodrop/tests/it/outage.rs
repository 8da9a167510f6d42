//! Database outages, with `zerodrop serve` as a child process over real HTTP: started
//! while its database is down, and losing it while it serves.
//!
//! How the database is taken away depends on the engine. PostgreSQL: zerodrop reaches
//! the server through a TCP proxy (see `support::proxy`) that the test cuts, as a restart
//! would, without touching the shared server. SQLite has no server to lose: at start its
//! file's folder cannot be made yet (a volume not mounted), and while serving another
//! process holds the write lock (reads go on beside it, as WAL allows).

use crate::support::proxy::{self, Proxy};
use crate::support::serve::Serve;
use crate::support::{calm, code};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zerodrop::stack::{self, Client, SandboxSide, Tuning};
use zerodrop_server::readiness::RETRY_PAUSE_MS_MAX;
use zerodrop_store::testing::TestDb;
use zerodrop_store::{both_engines, raw_execute, Store};

/// The connection wait (and SQLite's lock wait) these tests configure: long beside the
/// slack, so an answer that waited twice would be caught.
const WAIT_MS: u64 = 2_000;
/// Allowance on top of the wait before an answer counts as late: the tests check that
/// requests fail fast, not how fast a loaded machine is.
const SLACK_MS: u64 = 3_000;
/// A password in the database URL that must never reach the log.
const PASSWORD: &str = "pw-outage-never-logged";
/// A start attempt fails within one wait; then comes at most the longest pause.
const READY_WITHIN: Duration = Duration::from_millis(RETRY_PAUSE_MS_MAX + 2 * WAIT_MS + 10 * SLACK_MS);
/// Time for a payment to be delivered once the database is back (the sandbox retries
/// its notification 2.4 s, then 6 s, then 6 s after each refusal, at 1% of Alipay's pace).
const DELIVERED_WITHIN: Duration = Duration::from_secs(45);

/// Orders that are never queried while the test runs: a payment reaches zerodrop only
/// by the provider's notification, so the test sees that notification survive.
fn tuning() -> Tuning {
    Tuning { ttl_secs: 600, query_schedule_secs: vec![500], late_sweep_schedule_secs: vec![60], ..Tuning::default() }
}

fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("zerodrop-outage-{}", uuid::Uuid::new_v4().simple()))
}

async fn free_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

fn config(url: &str, listen: &str, sandbox: &SandboxSide) -> zerodrop_server::Config {
    let mut config = stack::config(url, listen, sandbox, &tuning());
    config.database.acquire_timeout_ms = WAIT_MS;
    config.database.sqlite_busy_timeout_ms = WAIT_MS;
    config
}

/// Runs `request`, asserts it answered within the connection wait (plus slack), returns
/// its answer.
async fn within_wait<T>(what: &str, request: impl std::future::Future<Output = T>) -> T {
    within(what, WAIT_MS, request).await
}

/// Runs `request`, asserts it answered within `wait_ms` (plus slack), returns its answer.
async fn within<T>(what: &str, wait_ms: u64, request: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let answer = request.await;
    let took = started.elapsed();
    eprintln!("{what}: answered in {took:?}");
    assert!(took <= Duration::from_millis(wait_ms + SLACK_MS), "{what} took {took:?}, over {wait_ms} ms");
    answer
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, String) {
    let response = http.get(url).send().await.expect("an answer");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

async fn create(client: &Client, user: &str) -> (u16, Value) {
    client.create_order(&json!({ "user_id": user, "sku": "diamonds_60" }), None).await.expect("an answer")
}

/// A notification for `order_no`'s payment, signed with the sandbox's key, as the
/// sandbox itself sends it.
fn notification(sandbox: &SandboxSide, order_no: &str, trade_no: &str) -> String {
    let fields = stack::payment_notification(order_no, trade_no, "6.00");
    stack::sign_notification(&sandbox.sandbox_key().expect("key"), &fields).expect("signed")
}

async fn post_notification(client: &Client, body: String) -> (u16, String) {
    let response = client
        .http
        .post(format!("{}/v1/providers/{}/notify", client.base_url, stack::PROVIDER))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("an answer");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

async fn wait_for_delivery(client: &Client, order_no: &str) -> Value {
    stack::eventually(DELIVERED_WITHIN, &format!("{order_no} to be delivered"), || async {
        let order = client.order(order_no).await?;
        Ok((order["order"]["status"] == "delivered").then_some(order))
    })
    .await
    .expect("delivered")
}

/// `zerodrop audit` on the configuration `serve` ran with.
async fn audit_passes(config: &Path) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_zerodrop"))
        .args(["audit", "--config"])
        .arg(config)
        .output()
        .await
        .expect("run zerodrop audit");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "audit failed:\n{report}\n{}", String::from_utf8_lossy(&output.stderr));
}

/// What the test took away, and gives back.
enum Down {
    Proxy(Proxy),
    /// A file where the SQLite database's folder must go.
    Folder(PathBuf),
}

impl Down {
    async fn restore(&self) {
        match self {
            Down::Proxy(proxy) => proxy.restore().await,
            Down::Folder(blocker) => std::fs::remove_file(blocker).expect("unblock the folder"),
        }
    }
}

/// The database URL zerodrop gets, and the outage it starts in.
async fn down_from_the_start(db: &TestDb, dir: &Path) -> (String, Down) {
    if db.is_postgres() {
        let proxy = Proxy::down(proxy::postgres_addr(&db.url).await).await;
        (proxy::postgres_url_through(&db.url, proxy.addr(), PASSWORD), Down::Proxy(proxy))
    } else {
        // A fresh file under a folder that cannot be made yet: the first start migrates it.
        let blocker = dir.join("volume");
        std::fs::write(&blocker, "not a folder").unwrap();
        (format!("sqlite://{}/zerodrop.db", blocker.display()), Down::Folder(blocker))
    }
}

both_engines! {
    /// `serve` started with its database down binds its port, answers `/healthz`, says
    /// 503 everywhere the database is needed (at once, not after a wait), keeps trying with
    /// a logged line per attempt, and becomes ready when the database returns: no restart.
    async fn serve_started_with_the_database_down_becomes_ready_when_it_returns(db) {
        let dir = temp_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let sandbox = SandboxSide::start(calm()).await.unwrap();
        let (url, down) = down_from_the_start(db, &dir).await;
        let mut serve = Serve::spawn(&config(&url, &free_port().await, &sandbox), &dir.join("serve"));
        let client = Client::new(&serve.base_url, &sandbox.url).unwrap();
        let http = client.http.clone();

        let health = format!("{}/healthz", serve.base_url);
        stack::eventually(Duration::from_secs(30), "/healthz to answer", || async {
            Ok(http.get(&health).send().await.ok().filter(|r| r.status() == 200))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", serve.log()));
        let (status, body) = get(&http, &format!("{}/readyz", serve.base_url)).await;
        assert_eq!(status, 503, "{body}");
        let (status, body) = within_wait("creating an order", create(&client, "u1")).await;
        assert_eq!((status, code(&body)), (503, "unavailable"), "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("starting"), "answered before any wait: {body}");
        let (status, body) = within_wait("reading an order", client.get("/v1/orders/ZD0000")).await.unwrap();
        assert_eq!((status, code(&body)), (503, "unavailable"), "{body}");
        let (status, _) = get(&http, &format!("{}/metrics", serve.base_url)).await;
        assert_eq!(status, 503);
        // The provider is told to send again, in its own protocol.
        let answer = within_wait("a notification", post_notification(&client, notification(&sandbox, "ZD1", "T1"))).await;
        assert_eq!(answer, (503, "fail".to_owned()));

        // It keeps trying, a line per attempt, and never shows the password.
        stack::eventually(Duration::from_secs(30), "two logged attempts", || async {
            Ok((serve.log().matches("database not reachable").count() >= 2).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", serve.log()));
        serve.assert_running();

        down.restore().await;
        let ready = format!("{}/readyz", serve.base_url);
        stack::eventually(READY_WITHIN, "/readyz to say ready", || async {
            Ok(http.get(&ready).send().await.ok().filter(|r| r.status() == 200))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", serve.log()));

        // Serving for real, jobs included: an order is created, paid and delivered.
        let (status, created) = create(&client, "u1").await;
        assert_eq!(status, 201, "{created}");
        let order_no = created["order"]["order_no"].as_str().unwrap().to_owned();
        client.pay(&created).await.unwrap().expect("paid at the sandbox");
        wait_for_delivery(&client, &order_no).await;

        let log = serve.log();
        assert!(log.contains("database reached and migrated; ready"), "{log}");
        assert!(!log.contains(PASSWORD), "the password reached the log:\n{log}");
        if db.is_postgres() {
            assert!(log.contains("[redacted]"), "the URL is logged, redacted:\n{log}");
        }
        audit_passes(&serve.config).await;
        let exit = serve.stop().await;
        assert!(exit.success(), "serve exits cleanly after SIGTERM: {exit}");
        sandbox.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// What the test takes away while zerodrop serves.
enum Cut {
    Proxy(Proxy),
    /// Another process's write transaction on the SQLite file, held until released.
    Lock(Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>),
}

impl Cut {
    async fn start(&mut self, db: &TestDb) {
        match self {
            Cut::Proxy(proxy) => proxy.cut(),
            Cut::Lock(held) => *held = Some(hold_write_lock(db.store.clone()).await),
        }
    }

    async fn end(&mut self) {
        match self {
            Cut::Proxy(proxy) => proxy.restore().await,
            Cut::Lock(held) => {
                if let Some((release, task)) = held.take() {
                    let _ = release.send(());
                    task.await.expect("lock released");
                }
            }
        }
    }
}

/// Takes SQLite's write lock (as a backup tool or a stray `sqlite3` shell would) and keeps
/// it until the sender fires.
async fn hold_write_lock(store: Store) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (locked, is_locked) = tokio::sync::oneshot::channel();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut conn = store.reader().await.expect("a connection");
        raw_execute(&mut conn, "BEGIN IMMEDIATE").await.expect("the write lock");
        let _ = locked.send(());
        let _ = released.await;
        raw_execute(&mut conn, "ROLLBACK").await.expect("unlock");
    });
    is_locked.await.expect("locked");
    (release, task)
}

both_engines! {
    /// The database goes away under a serving zerodrop: requests that need it answer 503
    /// within the configured wait (the merchant API `unavailable`, the provider `fail`),
    /// and nothing is lost: once it is back, the provider's retried notification is
    /// processed, the order delivered once, and `zerodrop audit` passes.
    async fn a_database_lost_while_serving_answers_503_within_the_wait_and_loses_nothing(db) {
        let dir = temp_dir();
        let sandbox = SandboxSide::start(calm()).await.unwrap();
        let (url, mut cut) = if db.is_postgres() {
            let proxy = Proxy::up(proxy::postgres_addr(&db.url).await).await;
            (proxy::postgres_url_through(&db.url, proxy.addr(), PASSWORD), Cut::Proxy(proxy))
        } else {
            (db.url.clone(), Cut::Lock(None))
        };
        let mut serve = Serve::spawn(&config(&url, &free_port().await, &sandbox), &dir);
        let client = Client::new(&serve.base_url, &sandbox.url).unwrap();
        let ready = format!("{}/readyz", serve.base_url);
        stack::eventually(Duration::from_secs(30), "/readyz to say ready", || async {
            Ok(client.http.get(&ready).send().await.ok().filter(|r| r.status() == 200))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", serve.log()));
        let (status, created) = create(&client, "u1").await;
        assert_eq!(status, 201, "{created}");
        let order_no = created["order"]["order_no"].as_str().unwrap().to_owned();

        cut.start(db).await;
        // On SQLite a write may wait for the one write connection (a job claim may hold it,
        // itself waiting on the lock), then on the lock: two waits, as docs/API.md says.
        let write_wait_ms = if db.is_postgres() { WAIT_MS } else { 2 * WAIT_MS };
        let (status, body) = within("creating an order", write_wait_ms, create(&client, "u2")).await;
        assert_eq!((status, code(&body)), (503, "unavailable"), "{body}");
        let (status, body) = within_wait("reading an order", client.get(&format!("/v1/orders/{order_no}"))).await.unwrap();
        let (readyz, _) = within_wait("/readyz", get(&client.http, &ready)).await;
        if db.is_postgres() {
            assert_eq!((status, code(&body)), (503, "unavailable"), "{body}");
            assert_eq!(readyz, 503);
        } else {
            // Another process's write lock leaves reads alone (WAL).
            assert_eq!(status, 200, "{body}");
        }
        // The user pays meanwhile: the provider's notification is refused, to be sent again.
        let charge = client.pay(&created).await.unwrap().expect("paid at the sandbox");
        let same = notification(&sandbox, &order_no, &charge.trade_no);
        let answer = if db.is_postgres() {
            within_wait("a notification", post_notification(&client, same)).await
        } else {
            // On SQLite a notification retries a busy lock a few times before it gives up.
            post_notification(&client, same).await
        };
        assert_eq!(answer, (503, "fail".to_owned()));
        stack::eventually(Duration::from_secs(30), "the sandbox's notification to be refused", || async {
            Ok((sandbox.sandbox.stats().sends_refused >= 1).then_some(()))
        })
        .await
        .unwrap();
        serve.assert_running();

        cut.end().await;
        let order = wait_for_delivery(&client, &order_no).await;
        assert_eq!(crate::support::count(&order, "delivered"), 1, "{order}");
        assert_eq!(crate::support::count(&order, "payment_captured"), 1, "{order}");
        // The provider's retried notification is acknowledged (processed, or a duplicate
        // of the one the test sent itself), so it stops sending.
        stack::eventually(DELIVERED_WITHIN, "the provider's retry to be acknowledged", || async {
            Ok((sandbox.sandbox.stats().sends_acknowledged >= 1).then_some(()))
        })
        .await
        .unwrap();
        // Serving again without a restart.
        let (status, body) = create(&client, "u2").await;
        assert_eq!(status, 201, "{body}");
        audit_passes(&serve.config).await;
        let exit = serve.stop().await;
        assert!(exit.success(), "serve exits cleanly after SIGTERM: {exit}");
        sandbox.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}

both_engines! {
    /// While it waits for its database, `serve` stops cleanly on SIGTERM. A database it
    /// must not use (a schema newer than this build) is no outage: it stops the process
    /// with an error at once, as before, for the supervisor and the operator to see.
    async fn serve_waiting_for_its_database_stops_on_sigterm_and_on_a_database_it_must_not_use(db) {
        let dir = temp_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let sandbox = SandboxSide::start(calm()).await.unwrap();
        let (url, _down) = down_from_the_start(db, &dir).await;
        let waiting = Serve::spawn(&config(&url, &free_port().await, &sandbox), &dir.join("waiting"));
        stack::eventually(Duration::from_secs(30), "a logged attempt", || async {
            Ok(waiting.log().contains("database not reachable").then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", waiting.log()));
        let exit = waiting.stop().await;
        assert!(exit.success(), "stopped while waiting: {exit}");

        let mut conn = db.store.reader().await.unwrap();
        let future = "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (9999, 'from_the_future', 0)";
        raw_execute(&mut conn, future).await.unwrap();
        drop(conn);
        let refused = Serve::spawn(&config(&db.url, &free_port().await, &sandbox), &dir.join("refused"));
        let (exit, log) = refused.exited(Duration::from_secs(30)).await;
        assert!(!exit.success(), "{log}");
        assert!(log.contains("database refused for good") && log.contains("newer than this build"), "{log}");
        sandbox.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
