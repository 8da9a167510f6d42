//! Append-only migrations, one set per dialect, applied in order inside transactions.

use crate::{Dialect, Result, Store, StoreError};
use sqlx::{Executor, Row};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core",
        sqlite: include_str!("../migrations/sqlite/0001_core.sql"),
        postgres: include_str!("../migrations/postgres/0001_core.sql"),
    },
    Migration {
        version: 2,
        name: "delivery_refunds",
        sqlite: include_str!("../migrations/sqlite/0002_delivery_refunds.sql"),
        postgres: include_str!("../migrations/postgres/0002_delivery_refunds.sql"),
    },
];

/// The schema version this build expects.
pub const MIGRATIONS_LATEST: i64 = 2;

/// Arbitrary constant naming zerodrop's migration lock on PostgreSQL, so two processes
/// starting together do not both apply a migration.
const PG_MIGRATION_LOCK_KEY: i64 = 0x7a65_726f_6472_6f70;

pub(crate) async fn run(store: &Store) -> Result<usize> {
    let mut conn = store.write_pool().acquire().await?;
    let dialect = store.dialect();
    if dialect == Dialect::Postgres {
        conn.execute(sqlx::query("SELECT pg_advisory_lock($1)").bind(PG_MIGRATION_LOCK_KEY)).await?;
    }
    let outcome = apply_pending(&mut conn, dialect).await;
    if dialect == Dialect::Postgres {
        conn.execute(sqlx::query("SELECT pg_advisory_unlock($1)").bind(PG_MIGRATION_LOCK_KEY)).await?;
    }
    outcome
}

async fn apply_pending(conn: &mut sqlx::AnyConnection, dialect: Dialect) -> Result<usize> {
    conn.execute(sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
             version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)",
    ))
    .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| row.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    if let Some(newest) = applied.last() {
        if *newest > MIGRATIONS_LATEST {
            return Err(StoreError::Invariant(format!(
                "database schema version {newest} is newer than this build ({MIGRATIONS_LATEST}); upgrade zerodrop"
            )));
        }
    }
    let mut count = 0;
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let sql = match dialect {
            Dialect::Sqlite => migration.sqlite,
            Dialect::Postgres => migration.postgres,
        };
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        tx.execute(sqlx::raw_sql(sql)).await?;
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)")
            .bind(migration.version)
            .bind(migration.name)
            .bind(crate::now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version = migration.version, name = migration.name, "migration applied");
        count += 1;
    }
    Ok(count)
}
