//! zerodrop's storage seam.
//!
//! One API over SQLite (the embedded default) and PostgreSQL. Queries are written once in
//! the SQL both engines share (`$1` placeholders, `ON CONFLICT`, `RETURNING`); the few
//! places where the dialects differ (row locks, job claiming, key generation in the
//! migrations) are decided here and nowhere else. Money and units are BIGINT, times are
//! UTC milliseconds, ids are text.

pub mod agreements;
pub mod answers;
pub mod attention;
pub mod audit;
pub mod bills;
pub mod card_keys;
pub mod charges;
pub mod confirmations;
mod db;
pub mod events;
pub mod idempotency;
pub mod jobs;
pub mod ledger;
pub mod memberships;
mod migrate;
pub mod notifications;
pub mod orders;
pub mod outcome;
pub mod payments;
pub mod proof;
pub mod refunds;
pub mod seal;
pub mod stats;
#[cfg(feature = "test-util")]
pub mod testing;

pub use db::{
    now_ms, raw_execute, Conn, Dialect, PoolConfig, Store, Tx, ACQUIRE_TIMEOUT_MS_DEFAULT,
    SQLITE_BUSY_TIMEOUT_MS_DEFAULT,
};
pub use migrate::{checksum as migration_checksum, MIGRATIONS_LATEST};

use zerodrop_domain::order::TransitionError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("not found")]
    NotFound,
    #[error("transition refused: {0}")]
    Transition(#[from] TransitionError),
    #[error("invariant broken: {0}")]
    Invariant(String),
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    #[error("stored JSON is not readable: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported database url (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
}

impl StoreError {
    /// True when the error is a transient conflict that a retry of the whole
    /// transaction may resolve (a serialization failure, a busy SQLite file, a
    /// unique race between two writers).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => {
                let code = e.code().map(|c| c.into_owned()).unwrap_or_default();
                // PostgreSQL: serialization_failure, deadlock_detected, unique_violation.
                // SQLite: SQLITE_BUSY (5), SQLITE_LOCKED (6).
                matches!(code.as_str(), "40001" | "40P01" | "23505" | "5" | "6" | "517")
            }
            StoreError::Db(sqlx::Error::PoolTimedOut) | StoreError::Db(sqlx::Error::Io(_)) => true,
            StoreError::Db(_)
            | StoreError::NotFound
            | StoreError::Transition(_)
            | StoreError::Invariant(_)
            | StoreError::Corrupt(_)
            | StoreError::Json(_)
            | StoreError::UnsupportedUrl => false,
        }
    }

    /// True when the database could not be reached at all: no connection within the
    /// wait, a connection that broke, a server shutting down or starting up, a SQLite
    /// file that cannot be opened. Such a failure already took the whole connection wait
    /// (or ended a connection), so trying again at once only makes the caller wait
    /// longer: callers answer "retry later" instead, and nothing was written.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Db(
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            StoreError::Db(sqlx::Error::Database(e)) => {
                let code = e.code().map(|c| c.into_owned()).unwrap_or_default();
                // PostgreSQL: class 08 (connection exception), too_many_connections,
                // admin_shutdown, crash_shutdown, cannot_connect_now. SQLite:
                // SQLITE_CANTOPEN (14). (SQLITE_BUSY is not here: it also comes at once,
                // without any wait, for a conflict that a retry fixes.)
                code.starts_with("08") || matches!(code.as_str(), "53300" | "57P01" | "57P02" | "57P03" | "14")
            }
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
