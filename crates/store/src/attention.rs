//! Things a person must look at: orders flagged by their events, parked notifications
//! nobody could match, jobs that exhausted their attempts. Nothing gives up silently;
//! it lands here.

use crate::{Conn, Result, Tx};
use serde::Serialize;
use zerodrop_domain::OrderId;

pub struct NewItem {
    pub order_id: Option<OrderId>,
    pub notification_id: Option<i64>,
    pub job_id: Option<i64>,
    pub reason: String,
    pub detail: serde_json::Value,
}

impl NewItem {
    pub fn for_order(order_id: OrderId, reason: &str, detail: serde_json::Value) -> NewItem {
        NewItem { order_id: Some(order_id), notification_id: None, job_id: None, reason: reason.to_owned(), detail }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Item {
    pub id: i64,
    pub order_id: Option<String>,
    pub notification_id: Option<i64>,
    pub job_id: Option<i64>,
    pub reason: String,
    pub detail: String,
    pub created_at_ms: i64,
}

pub async fn raise(tx: &mut Tx, item: NewItem, now_ms: i64) -> Result<i64> {
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO attention_items (order_id, notification_id, job_id, reason, detail, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(item.order_id.map(|id| id.to_string()))
    .bind(item.notification_id)
    .bind(item.job_id)
    .bind(&item.reason)
    .bind(item.detail.to_string())
    .bind(now_ms)
    .fetch_one(&mut **tx)
    .await?;
    tracing::warn!(reason = %item.reason, order.id = ?item.order_id.map(|id| id.to_string()), "attention raised");
    Ok(id)
}

pub async fn list_open(conn: &mut Conn, limit: i64) -> Result<Vec<Item>> {
    let rows = sqlx::query_as::<_, ItemRecord>(
        "SELECT id, order_id, notification_id, job_id, reason, detail, created_at_ms FROM attention_items \
         WHERE resolved_at_ms IS NULL ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn count_open(conn: &mut Conn) -> Result<i64> {
    let open = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM attention_items WHERE resolved_at_ms IS NULL")
        .fetch_one(conn)
        .await?;
    Ok(open)
}

/// An `attention_items` row as [`list_open`] reads it. Every column is already in its
/// public form; the record keeps [`Item`] free of the database mapping.
#[derive(sqlx::FromRow)]
struct ItemRecord {
    id: i64,
    order_id: Option<String>,
    notification_id: Option<i64>,
    job_id: Option<i64>,
    reason: String,
    /// JSON text, passed on as stored.
    detail: String,
    created_at_ms: i64,
}

impl From<ItemRecord> for Item {
    fn from(r: ItemRecord) -> Item {
        Item {
            id: r.id,
            order_id: r.order_id,
            notification_id: r.notification_id,
            job_id: r.job_id,
            reason: r.reason,
            detail: r.detail,
            created_at_ms: r.created_at_ms,
        }
    }
}
