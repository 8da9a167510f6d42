//! A database that cannot be reached: opening never waits for it, and every use fails
//! within the connection wait with an error that says so (`is_unavailable`), which is
//! what lets `serve` start anyway and answer "retry later" instead of hanging.

use std::time::{Duration, Instant};
use zerodrop_store::{both_engines, PoolConfig, Store};

/// The wait these tests set; the answer must come within it plus this slack (the tests
/// check that the wait is honoured, not how fast a loaded machine is).
const WAIT_MS: u64 = 500;
const SLACK_MS: u64 = 3_000;

/// A URL of the test's engine that names a database nobody can reach: on PostgreSQL a
/// loopback port nothing listens on, on SQLite a file under a "folder" that is a file.
async fn unreachable_url(postgres: bool, dir: &std::path::Path) -> String {
    if postgres {
        let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        format!("postgres://postgres@{addr}/nothing_here")
    } else {
        std::fs::create_dir_all(dir).unwrap();
        let blocker = dir.join("not_a_folder");
        std::fs::write(&blocker, "").unwrap();
        format!("sqlite://{}/zerodrop.db", blocker.display())
    }
}

both_engines! {
    async fn an_unreachable_database_is_opened_at_once_and_fails_within_the_wait(db) {
        let dir = std::env::temp_dir().join(format!("zd-unreachable-{}", uuid::Uuid::new_v4().simple()));
        let url = unreachable_url(db.is_postgres(), &dir).await;
        let config = PoolConfig { acquire_timeout_ms: WAIT_MS, ..PoolConfig::default() };
        let store = Store::open(&url, &config).expect("opening never connects");
        for (what, outcome) in [
            ("migrate", timed(store.migrate()).await.map(|(r, t)| (r.map(|_| ()), t))),
            ("reader", timed(store.reader()).await.map(|(r, t)| (r.map(|_| ()), t))),
            ("begin", timed(store.begin()).await.map(|(r, t)| (r.map(|_| ()), t))),
        ] {
            let (result, took) = outcome.unwrap_or_else(|| panic!("{what} still waiting after the slack"));
            let error = result.expect_err(what);
            assert!(error.is_unavailable(), "{what}: {error} says the database is unavailable");
            assert!(!error.to_string().is_empty());
            assert!(took <= Duration::from_millis(WAIT_MS + SLACK_MS), "{what} took {took:?}");
        }
        assert!(Store::connect(&url, &config).await.expect_err("connect reaches the database").is_unavailable());
        // A conflict worth retrying is not an outage, nor is a broken invariant.
        assert!(!zerodrop_store::StoreError::NotFound.is_unavailable());
        assert!(!zerodrop_store::StoreError::Invariant("schema newer".into()).is_unavailable());
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The outcome of `future` and how long it took; `None` when it is still running after
/// the wait and the slack.
async fn timed<T>(future: impl std::future::Future<Output = T>) -> Option<(T, Duration)> {
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_millis(WAIT_MS + 2 * SLACK_MS), future).await.ok()?;
    Some((outcome, started.elapsed()))
}
