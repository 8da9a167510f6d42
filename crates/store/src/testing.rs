//! Test support: a fresh database per test on either engine, and `both_engines!`, which
//! runs one test body against SQLite and PostgreSQL.
//!
//! PostgreSQL tests run when `ZERODROP_TEST_PG` holds a server URL (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates its own database
//! there and drops it when it passes. Without the variable they report themselves
//! skipped; CI sets it, and sets `ZERODROP_TEST_PG_MARKER` to a file each PostgreSQL
//! test appends to, so CI can prove the suite ran.

use crate::{raw_execute, PoolConfig, Store, StoreError};
use std::io::Write;
use std::path::PathBuf;

pub const PG_URL_ENV: &str = "ZERODROP_TEST_PG";
pub const PG_MARKER_ENV: &str = "ZERODROP_TEST_PG_MARKER";
/// Test databases are named with this prefix so CI can sweep leftovers of failed runs.
pub const PG_DB_PREFIX: &str = "zd_test_";

/// Tries at copying a PostgreSQL test database whose connections are still closing
/// (250 ms apart: five seconds in all).
const COPY_TRIES_MAX: u32 = 20;

pub struct TestDb {
    pub url: String,
    pub store: Store,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    PgDatabase { admin_url: String, name: String },
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(format!("zerodrop-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let url = format!("sqlite://{}/zerodrop.db", dir.display());
        let store = Store::connect(&url, &PoolConfig::default()).await.expect("sqlite connect");
        store.migrate().await.expect("sqlite migrate");
        TestDb { url, store, cleanup: Cleanup::Dir(dir) }
    }

    /// `None` (the test is skipped) when no PostgreSQL server is configured.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(admin_url) = std::env::var(PG_URL_ENV) else {
            eprintln!("skipped: set {PG_URL_ENV} to run PostgreSQL tests");
            return None;
        };
        let name = format!("{PG_DB_PREFIX}{}", uuid::Uuid::new_v4().simple());
        as_admin(&admin_url, &format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("{PG_URL_ENV} is set but a test database could not be created: {e}"));
        let url = with_database(&admin_url, &name);
        let store = Store::connect(&url, &PoolConfig::default()).await.expect("postgres connect");
        store.migrate().await.expect("postgres migrate");
        if let Ok(marker) = std::env::var(PG_MARKER_ENV) {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(marker).expect("marker file");
            writeln!(file, "{name}").expect("marker write");
        }
        Some(TestDb { url, store, cleanup: Cleanup::PgDatabase { admin_url, name } })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.cleanup, Cleanup::PgDatabase { .. })
    }

    /// What the database takes on disk, in bytes: on SQLite its file and write-ahead log
    /// (after a checkpoint moves what it can into the file), on PostgreSQL
    /// `pg_database_size` (tables, TOAST and indexes).
    pub async fn database_bytes(&self) -> i64 {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let checkpoint = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(self.store.write_pool()).await;
                checkpoint.expect("checkpoint");
                let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
                i64::try_from(size("zerodrop.db") + size("zerodrop.db-wal")).unwrap_or(i64::MAX)
            }
            Cleanup::PgDatabase { .. } => {
                let mut conn = self.store.reader().await.expect("reader");
                sqlx::query_scalar::<_, i64>("SELECT pg_database_size(current_database())")
                    .fetch_one(&mut *conn)
                    .await
                    .expect("pg_database_size")
            }
        }
    }

    /// A fresh, independent copy of this database as it stands (already migrated), removed
    /// by its own [`TestDb::finish`]. SQLite copies with `VACUUM INTO` (a consistent copy
    /// whatever is open); PostgreSQL creates the copy from this database as a template,
    /// which nobody may be connected to: close every other pool on it first (this closes
    /// this database's own store, which is not used again before `finish`).
    pub async fn copy(&self) -> TestDb {
        match &self.cleanup {
            Cleanup::Dir(_) => {
                let dir = std::env::temp_dir().join(format!("zerodrop-test-{}", uuid::Uuid::new_v4().simple()));
                std::fs::create_dir_all(&dir).expect("temp dir");
                let path = dir.join("zerodrop.db");
                let mut conn = self.store.reader().await.expect("reader");
                // The path is ours (a uuid under the temp dir); quotes are doubled all the same.
                let quoted = path.display().to_string().replace('\'', "''");
                raw_execute(&mut conn, &format!("VACUUM INTO '{quoted}'")).await.expect("vacuum into");
                drop(conn);
                let url = format!("sqlite://{}", path.display());
                let store = Store::connect(&url, &PoolConfig::default()).await.expect("sqlite connect");
                TestDb { url, store, cleanup: Cleanup::Dir(dir) }
            }
            Cleanup::PgDatabase { admin_url, name: original } => {
                self.store.close().await;
                let name = format!("{PG_DB_PREFIX}{}", uuid::Uuid::new_v4().simple());
                // A server that just stopped may still be closing its connections to the
                // original, which PostgreSQL refuses to copy while they last: wait them out.
                let mut tries = 0;
                loop {
                    match as_admin(admin_url, &format!("CREATE DATABASE {name} TEMPLATE {original}")).await {
                        Ok(()) => break,
                        Err(e) if tries < COPY_TRIES_MAX && e.to_string().contains("being accessed by other users") => {
                            tries += 1;
                            // Idle connections of a stopped server's pool may linger: end them.
                            let _ = as_admin(
                                admin_url,
                                &format!(
                                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                                     WHERE datname = '{original}' AND pid <> pg_backend_pid()"
                                ),
                            )
                            .await;
                            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                        }
                        Err(e) => panic!("copying test database {original}: {e}"),
                    }
                }
                let url = with_database(admin_url, &name);
                let store = Store::connect(&url, &PoolConfig::default()).await.expect("postgres connect");
                TestDb { url, store, cleanup: Cleanup::PgDatabase { admin_url: admin_url.clone(), name } }
            }
        }
    }

    /// Removes the database. Called at the end of a passing test; a failing test leaves
    /// its database behind for inspection (CI sweeps them before each run).
    pub async fn finish(self) {
        self.store.close().await;
        match self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::PgDatabase { admin_url, name } => {
                // A database left behind is swept by CI's next run.
                let _ = as_admin(&admin_url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            }
        }
    }
}

/// Runs one statement on the server's admin database (names are ours: uuids).
async fn as_admin(admin_url: &str, sql: &str) -> Result<(), StoreError> {
    let config = PoolConfig { postgres_connections_max: 1, ..PoolConfig::default() };
    let admin = Store::connect(admin_url, &config).await?;
    let outcome = async {
        let mut conn = admin.reader().await?;
        raw_execute(&mut conn, sql).await
    }
    .await;
    admin.close().await;
    outcome
}

/// The server URL with the test's database in place of the admin one.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let host_end = base.find("://").map_or(0, |i| i + 3);
    let host = base[host_end..].find('/').map_or(base, |i| &base[..host_end + i]);
    match query {
        Some(q) => format!("{host}/{name}?{q}"),
        None => format!("{host}/{name}"),
    }
}

/// Runs one async test body on SQLite and on PostgreSQL, as `name::sqlite` and
/// `name::postgres`. The body sees `$db: &TestDb`.
#[macro_export]
macro_rules! both_engines {
    ($(#[$meta:meta])* async fn $name:ident($db:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let owned = $crate::testing::TestDb::sqlite().await;
                {
                    let $db = &owned;
                    $body
                }
                owned.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(owned) = $crate::testing::TestDb::postgres().await else { return };
                {
                    let $db = &owned;
                    $body
                }
                owned.finish().await;
            }
        }
    };
}
