//! Append-only migrations, one set per dialect, applied in order inside transactions.
//!
//! Each applied migration is recorded with a SHA-256 checksum of the SQL that ran. A
//! migration whose text changed after it was applied is refused at start, naming it, so
//! an edited migration can never leave two databases with different schemas under the
//! same version. (Databases migrated before checksums were kept get the current text's
//! checksum recorded the first time, and are checked from then on.) This is the
//! existing runner with checksums added rather than `sqlx::migrate!`: sqlx's migrator
//! keeps its own table, so switching would need a hand-made conversion of every
//! deployed database's history, and the two dialects would still need two migrators.

use crate::{Dialect, Result, Store, StoreError};
use sqlx::Executor;

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

impl Migration {
    fn sql(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => self.sqlite,
            Dialect::Postgres => self.postgres,
        }
    }
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
    Migration {
        version: 3,
        name: "charges_attention",
        sqlite: include_str!("../migrations/sqlite/0003_charges_attention.sql"),
        postgres: include_str!("../migrations/postgres/0003_charges_attention.sql"),
    },
    Migration {
        version: 4,
        name: "sealed_record",
        sqlite: include_str!("../migrations/sqlite/0004_sealed_record.sql"),
        postgres: include_str!("../migrations/postgres/0004_sealed_record.sql"),
    },
    Migration {
        version: 5,
        name: "holes",
        sqlite: include_str!("../migrations/sqlite/0005_holes.sql"),
        postgres: include_str!("../migrations/postgres/0005_holes.sql"),
    },
    Migration {
        version: 6,
        name: "provider_answers",
        sqlite: include_str!("../migrations/sqlite/0006_provider_answers.sql"),
        postgres: include_str!("../migrations/postgres/0006_provider_answers.sql"),
    },
    Migration {
        version: 7,
        name: "reconciliation",
        sqlite: include_str!("../migrations/sqlite/0007_reconciliation.sql"),
        postgres: include_str!("../migrations/postgres/0007_reconciliation.sql"),
    },
    Migration {
        version: 8,
        name: "seal_batches",
        sqlite: include_str!("../migrations/sqlite/0008_seal_batches.sql"),
        postgres: include_str!("../migrations/postgres/0008_seal_batches.sql"),
    },
    Migration {
        version: 9,
        name: "shared_account_heads",
        sqlite: include_str!("../migrations/sqlite/0009_shared_account_heads.sql"),
        postgres: include_str!("../migrations/postgres/0009_shared_account_heads.sql"),
    },
    Migration {
        version: 10,
        name: "agreements",
        sqlite: include_str!("../migrations/sqlite/0010_agreements.sql"),
        postgres: include_str!("../migrations/postgres/0010_agreements.sql"),
    },
    Migration {
        version: 11,
        name: "message_outbox",
        sqlite: include_str!("../migrations/sqlite/0011_message_outbox.sql"),
        postgres: include_str!("../migrations/postgres/0011_message_outbox.sql"),
    },
];

/// The schema version this build expects.
pub const MIGRATIONS_LATEST: i64 = 11;

/// Arbitrary constant naming zerodrop's migration lock on PostgreSQL, so two processes
/// starting together do not both apply a migration.
const PG_MIGRATION_LOCK_KEY: i64 = 0x7a65_726f_6472_6f70;

/// Hex SHA-256 of a migration's text, line endings normalised (a checkout that turned
/// `\n` into `\r\n` has not edited the migration).
pub fn checksum(sql: &str) -> String {
    let text = sql.replace("\r\n", "\n");
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref())
}

/// Whether `schema_migrations` has the `checksum` column (tables made before checksums
/// were kept lack it). Asked of the catalog, so no error is ever read as "missing".
async fn has_checksum_column(conn: &mut sqlx::AnyConnection, dialect: Dialect) -> Result<bool> {
    let sql = match dialect {
        Dialect::Sqlite => "SELECT COUNT(*) FROM pragma_table_info('schema_migrations') WHERE name = 'checksum'",
        Dialect::Postgres => {
            "SELECT COUNT(*) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'schema_migrations' AND column_name = 'checksum'"
        }
    };
    Ok(sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut *conn).await? > 0)
}

/// Adds the `checksum` column to a table made before checksums were kept. Two SQLite
/// processes may race here (SQLite has no migration lock): the loser finds the column.
async fn add_checksum_column(conn: &mut sqlx::AnyConnection, dialect: Dialect) -> Result<()> {
    if has_checksum_column(conn, dialect).await? {
        return Ok(());
    }
    let sql = match dialect {
        Dialect::Sqlite => "ALTER TABLE schema_migrations ADD COLUMN checksum TEXT",
        Dialect::Postgres => "ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum TEXT",
    };
    match conn.execute(sqlx::raw_sql(sql)).await {
        Ok(_) => Ok(()),
        Err(_) if has_checksum_column(conn, dialect).await? => Ok(()),
        Err(e) => Err(e.into()),
    }
}

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
             version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL, checksum TEXT)",
    ))
    .await?;
    add_checksum_column(conn, dialect).await?;
    let applied: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT version, checksum FROM schema_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
    if let Some((newest, _)) = applied.last() {
        if *newest > MIGRATIONS_LATEST {
            return Err(StoreError::Invariant(format!(
                "database schema version {newest} is newer than this build ({MIGRATIONS_LATEST}); upgrade zerodrop"
            )));
        }
    }
    for (version, stored) in &applied {
        let Some(migration) = MIGRATIONS.iter().find(|m| m.version == *version) else { continue };
        let expected = checksum(migration.sql(dialect));
        match stored {
            Some(stored) if *stored == expected => {}
            Some(stored) => {
                return Err(StoreError::Invariant(format!(
                    "migration {version} ({}) was edited after it was applied: the database ran text with checksum \
                     {stored}, this build has {expected}; restore the migration and add a new one instead",
                    migration.name
                )));
            }
            None => {
                sqlx::query("UPDATE schema_migrations SET checksum = $1 WHERE version = $2")
                    .bind(&expected)
                    .bind(version)
                    .execute(&mut *conn)
                    .await?;
                tracing::info!(version, name = migration.name, "migration checksum recorded");
            }
        }
    }
    let mut count = 0;
    for migration in MIGRATIONS.iter().filter(|m| !applied.iter().any(|(v, _)| *v == m.version)) {
        let sql = migration.sql(dialect);
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        tx.execute(sqlx::raw_sql(sql)).await?;
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at_ms, checksum) VALUES ($1, $2, $3, $4)")
            .bind(migration.version)
            .bind(migration.name)
            .bind(crate::now_ms())
            .bind(checksum(sql))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version = migration.version, name = migration.name, "migration applied");
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_see_text_not_line_endings() {
        assert_eq!(checksum("CREATE TABLE a (x INT);\r\n"), checksum("CREATE TABLE a (x INT);\n"));
        assert_ne!(checksum("CREATE TABLE a (x INT);\n"), checksum("CREATE TABLE a (x BIGINT);\n"));
        assert_eq!(checksum("").len(), 64);
    }

    #[test]
    fn every_migration_is_listed_once_in_order() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        assert_eq!(versions.last(), Some(&MIGRATIONS_LATEST));
    }
}
