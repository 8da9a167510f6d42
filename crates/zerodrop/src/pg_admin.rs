//! Creating and dropping whole PostgreSQL databases, for the benchmark (a fresh database
//! per run).

use zerodrop_store::{raw_execute, PoolConfig, Result, Store, StoreError};

/// Creates database `name` on the server `admin_url` points at and returns its URL.
pub async fn create_postgres_database(admin_url: &str, name: &str) -> Result<String> {
    execute_as_admin(admin_url, &format!("CREATE DATABASE {}", identifier(name)?)).await?;
    Ok(replace_database(admin_url, name))
}

/// Drops database `name`, disconnecting anyone still using it.
pub async fn drop_postgres_database(admin_url: &str, name: &str) -> Result<()> {
    execute_as_admin(admin_url, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", identifier(name)?)).await
}

async fn execute_as_admin(admin_url: &str, sql: &str) -> Result<()> {
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

/// Database names are spliced into SQL, so only plain lowercase identifiers pass.
fn identifier(name: &str) -> Result<&str> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain {
        Ok(name)
    } else {
        Err(StoreError::Invariant(format!("{name:?} is not a plain database name")))
    }
}

/// Replaces the database name in a PostgreSQL URL, keeping any query string.
pub fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..i + scheme_end],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced_in_urls() {
        assert_eq!(
            replace_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(replace_database("postgres://u@h/db?sslmode=disable", "y"), "postgres://u@h/y?sslmode=disable");
        assert_eq!(replace_database("postgres://u@h", "z"), "postgres://u@h/z");
    }

    #[test]
    fn only_plain_names_reach_sql() {
        assert!(identifier("zd_test_1a2b").is_ok());
        for bad in ["", "x; DROP DATABASE postgres", "Upper", "a-b", &"x".repeat(64)] {
            assert!(identifier(bad).is_err(), "{bad:?}");
        }
    }
}
