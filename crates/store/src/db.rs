//! Connecting, pools and transactions for both engines.

use crate::{migrate, Result, StoreError};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyConnection;
use sqlx::{Any, AnyPool, Executor};
use std::ops::{Deref, DerefMut};
use std::time::Duration;

/// A connection either engine hands out; repositories take `&mut Conn`.
pub type Conn = AnyConnection;

/// Current UTC time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn from_url(url: &str) -> Result<Dialect> {
        if url.starts_with("sqlite:") {
            Ok(Dialect::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Dialect::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    /// Row lock for read-modify-write. SQLite needs none: its single writer
    /// connection already holds the database's write lock for the transaction.
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }
}

/// How long a caller waits for a database connection by default. Short on purpose: when
/// the database is down, a request should fail fast (503, and the caller retries) rather
/// than hold its client for half a minute. A few seconds still covers a pool that is
/// merely busy, and a PostgreSQL that is restarting.
pub const ACQUIRE_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// How long SQLite waits by default on a lock held by another process before giving up.
pub const SQLITE_BUSY_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Pool sizing. The defaults suit this 2-core machine; production PostgreSQL may raise them.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// PostgreSQL connections, shared by the API and the workers.
    pub postgres_connections_max: u32,
    /// SQLite read connections; writes always go through one connection.
    pub sqlite_readers_max: u32,
    /// How long a request waits for a connection before failing (and being retried by its
    /// caller). While the database is unreachable, every connection attempt ends here.
    pub acquire_timeout_ms: u64,
    /// How long SQLite waits on a lock held by another process before giving up.
    pub sqlite_busy_timeout_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            postgres_connections_max: 16,
            sqlite_readers_max: 4,
            acquire_timeout_ms: ACQUIRE_TIMEOUT_MS_DEFAULT,
            sqlite_busy_timeout_ms: SQLITE_BUSY_TIMEOUT_MS_DEFAULT,
        }
    }
}

/// The database. Cheap to clone (pools are shared handles).
#[derive(Clone, Debug)]
pub struct Store {
    write: AnyPool,
    read: AnyPool,
    dialect: Dialect,
    /// The SQLite file (`None` on PostgreSQL, and for an in-memory database), whose
    /// folder is made before the first migration.
    sqlite_file: Option<std::path::PathBuf>,
    /// How long a person has for each attention item raised through this store.
    clocks: std::sync::Arc<crate::attention::Clocks>,
}

impl Store {
    /// Connects without migrating: opens the pools and makes one connection, so a
    /// database that cannot be reached is an error here. `migrate` and the one-shot
    /// commands use it; `serve` uses [`Store::open`] and keeps trying.
    pub async fn connect(url: &str, config: &PoolConfig) -> Result<Store> {
        let store = Store::open(url, config)?;
        store.ensure_sqlite_dir()?;
        drop(store.reader().await?);
        Ok(store)
    }

    /// Opens the pools without connecting: no connection is made until one is first
    /// needed, and each need waits at most `acquire_timeout_ms`. Fails only on a URL that
    /// cannot be used at all (an unknown scheme, a malformed URL), which no wait would fix.
    pub fn open(url: &str, config: &PoolConfig) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(url)?;
        let acquire = Duration::from_millis(config.acquire_timeout_ms);
        match dialect {
            Dialect::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(config.postgres_connections_max)
                    .min_connections(0)
                    .acquire_timeout(acquire)
                    .connect_lazy(url)?;
                Ok(Store { write: pool.clone(), read: pool, dialect, sqlite_file: None, clocks: Default::default() })
            }
            Dialect::Sqlite => {
                let busy_ms = config.sqlite_busy_timeout_ms;
                // SQLite allows one writer at a time. One write connection makes that
                // explicit: writers queue in the pool instead of failing with SQLITE_BUSY.
                let write = sqlite_pool(url, 1, acquire, busy_ms)?;
                let read = sqlite_pool(url, config.sqlite_readers_max, acquire, busy_ms)?;
                let sqlite_file = sqlite_file(url);
                Ok(Store { write, read, dialect, sqlite_file, clocks: Default::default() })
            }
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The store with these attention clocks (the configuration's); every item raised
    /// through it gets its due time from them.
    pub fn with_attention_clocks(mut self, clocks: crate::attention::Clocks) -> Store {
        self.clocks = std::sync::Arc::new(clocks);
        self
    }

    pub fn attention_clocks(&self) -> &crate::attention::Clocks {
        &self.clocks
    }

    /// Applies every pending migration. Safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<usize> {
        self.ensure_sqlite_dir()?;
        migrate::run(self).await
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx> {
        let inner = self.write.begin().await?;
        Ok(Tx {
            inner,
            dialect: self.dialect,
            ledger: crate::ledger::Pending::default(),
            notifications: Vec::new(),
            deliveries: Vec::new(),
            seals: Default::default(),
            clocks: self.clocks.clone(),
        })
    }

    /// A read-only view in which several queries see one consistent state (an order and
    /// its refunds, say): a read transaction, repeatable-read on PostgreSQL. Dropping it
    /// ends it.
    pub async fn snapshot(&self) -> Result<sqlx::Transaction<'static, Any>> {
        let mut tx = self.read.begin().await?;
        if self.dialect == Dialect::Postgres {
            tx.execute(sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")).await?;
        }
        Ok(tx)
    }

    /// A connection for reads outside any transaction.
    pub async fn reader(&self) -> Result<sqlx::pool::PoolConnection<Any>> {
        Ok(self.read.acquire().await?)
    }

    pub(crate) fn write_pool(&self) -> &AnyPool {
        &self.write
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

fn sqlite_pool(url: &str, max: u32, acquire: Duration, busy_ms: u64) -> Result<AnyPool> {
    let url = if url.contains('?') { url.to_owned() } else { format!("{url}?mode=rwc") };
    let pool = AnyPoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(acquire)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                // WAL lets readers run beside the writer; synchronous=FULL makes every
                // commit durable before it returns, which the acknowledgement relies on.
                let pragmas = format!(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {busy_ms};"
                );
                conn.execute(sqlx::raw_sql(&pragmas)).await?;
                Ok(())
            })
        })
        .connect_lazy(&url)?;
    Ok(pool)
}

/// The file a SQLite URL names; `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:").split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

impl Store {
    /// Makes the SQLite file's folder (SQLite makes the file, not its folders). Asked
    /// again at every start attempt: the folder may be on a volume not mounted yet.
    fn ensure_sqlite_dir(&self) -> Result<()> {
        let Some(parent) = self.sqlite_file.as_deref().and_then(std::path::Path::parent) else { return Ok(()) };
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        }
        Ok(())
    }
}

/// A write transaction that knows its dialect. Dropping it without `commit` rolls back.
///
/// It also carries the ledger movements deferred to commit (see [`crate::ledger`]):
/// `commit` applies them, each account once and in one global lock order, then commits.
pub struct Tx {
    inner: sqlx::Transaction<'static, Any>,
    dialect: Dialect,
    pub(crate) ledger: crate::ledger::Pending,
    /// Rows written at commit, many per statement: a batch's raw notifications and
    /// deliveries (nothing in the transaction reads them back).
    pub(crate) notifications: Vec<crate::notifications::Pending>,
    pub(crate) deliveries: Vec<crate::payments::PendingDelivery>,
    /// Stream heads this transaction's sealed rows moved (see [`crate::seal`]).
    pub(crate) seals: crate::seal::Pending,
    pub(crate) clocks: std::sync::Arc<crate::attention::Clocks>,
}

impl Tx {
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub async fn commit(mut self) -> Result<()> {
        crate::notifications::flush(&mut self).await?;
        crate::payments::flush_deliveries(&mut self).await?;
        // Writes the pending seal row itself, before the shared accounts are locked (see
        // there); nothing after it names the batch.
        crate::ledger::flush(&mut self).await?;
        // A no-op after the ledger's; kept so that no head could ever be left unwritten.
        crate::seal::flush(&mut self).await?;
        self.inner.commit().await?;
        Ok(())
    }
}

impl Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.inner
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }
}

/// Runs one statement without parameters: administration (creating a database, the
/// benchmark's baseline table). Never for data: data goes through the repositories.
pub async fn raw_execute(conn: &mut Conn, sql: &str) -> Result<()> {
    conn.execute(sqlx::raw_sql(sql)).await?;
    Ok(())
}
