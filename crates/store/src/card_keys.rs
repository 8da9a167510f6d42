//! Card keys (卡密): imported per SKU, stored encrypted, allocated one per order inside
//! the payment's transaction, revoked by a refund. Never deleted.

use crate::{Conn, Dialect, Result, Tx};
use serde::Serialize;
use std::collections::HashSet;
use zerodrop_domain::OrderId;

/// Fingerprints looked up per statement when checking an import against stock.
const FINGERPRINTS_PER_QUERY_MAX: usize = 500;

pub struct NewCardKey {
    pub fingerprint: String,
    pub ciphertext: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct CardKeyRow {
    pub id: i64,
    pub ciphertext: Vec<u8>,
    pub state: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stock {
    pub available: i64,
    pub allocated: i64,
    pub revoked: i64,
}

/// Which of these fingerprints the SKU's stock already holds.
pub async fn existing(conn: &mut Conn, sku: &str, fingerprints: &[String]) -> Result<HashSet<String>> {
    let mut found = HashSet::new();
    for chunk in fingerprints.chunks(FINGERPRINTS_PER_QUERY_MAX) {
        let params: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql =
            format!("SELECT fingerprint FROM card_keys WHERE sku = $1 AND fingerprint IN ({})", params.join(", "));
        let mut query = sqlx::query_scalar::<_, String>(&sql).bind(sku);
        for f in chunk {
            query = query.bind(f.clone());
        }
        found.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(found)
}

/// Adds keys to the SKU's stock; a key whose fingerprint is already there is skipped
/// (the caller checked and reported duplicates; this keeps a race harmless). Returns how
/// many were added.
pub async fn insert(tx: &mut Tx, sku: &str, keys: &[NewCardKey], batch: &str, now_ms: i64) -> Result<u64> {
    let mut added = 0;
    for key in keys {
        added += sqlx::query(
            "INSERT INTO card_keys (sku, fingerprint, ciphertext, state, import_batch, imported_at_ms) \
             VALUES ($1, $2, $3, 'available', $4, $5) ON CONFLICT (sku, fingerprint) DO NOTHING",
        )
        .bind(sku)
        .bind(&key.fingerprint)
        .bind(key.ciphertext.clone())
        .bind(batch)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    Ok(added)
}

/// Allocates the oldest available key of the SKU to the order, or `None` when out of stock.
/// An order holds at most one key (a unique constraint).
pub async fn allocate(tx: &mut Tx, sku: &str, order: OrderId, now_ms: i64) -> Result<Option<CardKeyRow>> {
    let skip_locked = match tx.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    let sql = format!(
        "UPDATE card_keys SET state = 'allocated', order_id = $1, allocated_at_ms = $2 \
         WHERE id = (SELECT id FROM card_keys WHERE sku = $3 AND state = 'available' ORDER BY id LIMIT 1{skip_locked}) \
         RETURNING id, ciphertext, state"
    );
    let row = sqlx::query_as::<_, CardKeyRecord>(&sql)
        .bind(order.to_string())
        .bind(now_ms)
        .bind(sku)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(Into::into))
}

pub async fn for_order(conn: &mut Conn, order: OrderId) -> Result<Option<CardKeyRow>> {
    let row = sqlx::query_as::<_, CardKeyRecord>("SELECT id, ciphertext, state FROM card_keys WHERE order_id = $1")
        .bind(order.to_string())
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Into::into))
}

/// A `card_keys` row as [`allocate`] and [`for_order`] read it. Every column is already
/// in its public form; the record keeps [`CardKeyRow`] free of the database mapping.
#[derive(sqlx::FromRow)]
struct CardKeyRecord {
    id: i64,
    /// BLOB on SQLite, BYTEA on PostgreSQL.
    ciphertext: Vec<u8>,
    state: String,
}

impl From<CardKeyRecord> for CardKeyRow {
    fn from(r: CardKeyRecord) -> CardKeyRow {
        CardKeyRow { id: r.id, ciphertext: r.ciphertext, state: r.state }
    }
}

/// Marks the order's key revoked. Returns whether there was one to revoke.
pub async fn revoke(tx: &mut Tx, order: OrderId, now_ms: i64) -> Result<bool> {
    let revoked = sqlx::query(
        "UPDATE card_keys SET state = 'revoked', revoked_at_ms = $1 WHERE order_id = $2 AND state = 'allocated'",
    )
    .bind(now_ms)
    .bind(order.to_string())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(revoked == 1)
}

/// Gives a revoked key back to its order (a refund the provider refused). Returns whether
/// a key was given back.
pub async fn restore(tx: &mut Tx, order: OrderId) -> Result<bool> {
    let restored = sqlx::query(
        "UPDATE card_keys SET state = 'allocated', revoked_at_ms = NULL WHERE order_id = $1 AND state = 'revoked'",
    )
    .bind(order.to_string())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(restored == 1)
}

pub async fn stock(conn: &mut Conn, sku: &str) -> Result<Stock> {
    let rows =
        sqlx::query_as::<_, (String, i64)>("SELECT state, COUNT(*) FROM card_keys WHERE sku = $1 GROUP BY state")
            .bind(sku)
            .fetch_all(conn)
            .await?;
    let mut stock = Stock::default();
    for (state, count) in rows {
        match state.as_str() {
            "available" => stock.available = count,
            "allocated" => stock.allocated = count,
            _revoked => stock.revoked = count,
        }
    }
    Ok(stock)
}

/// Paid card-key orders of the SKU still waiting for a key, oldest payment first.
pub async fn waiting_orders(conn: &mut Conn, sku: &str, limit: i64) -> Result<Vec<OrderId>> {
    let ids = sqlx::query_scalar::<_, String>(
        "SELECT o.id FROM orders o WHERE o.sku = $1 AND o.status = 'paid' \
           AND NOT EXISTS (SELECT 1 FROM card_keys k WHERE k.order_id = o.id) \
         ORDER BY o.paid_at_ms, o.id LIMIT $2",
    )
    .bind(sku)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    ids.iter().map(|id| OrderId::parse(id).ok_or_else(|| crate::StoreError::Corrupt("order id".into()))).collect()
}
