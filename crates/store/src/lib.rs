//! zerodrop's storage seam.
//!
//! One API over SQLite (the embedded default) and PostgreSQL. Queries are written once in
//! the SQL both engines share (`$1` placeholders, `ON CONFLICT`, `RETURNING`); the few
//! places where the dialects differ (row locks, job claiming, key generation in the
//! migrations) are decided here and nowhere else. Money and units are BIGINT, times are
//! UTC milliseconds, ids are text.

pub mod attention;
pub mod audit;
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
pub mod payments;
pub mod refunds;
#[cfg(feature = "test-util")]
pub mod testing;

pub use db::{now_ms, raw_execute, Conn, Dialect, PoolConfig, Store, Tx};
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
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
