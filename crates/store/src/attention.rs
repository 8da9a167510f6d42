//! Things a person must look at: orders flagged by their events, parked notifications
//! nobody could match, jobs that exhausted their attempts. Nothing gives up silently;
//! it lands here.

use crate::{Conn, Result, Tx};
use serde::Serialize;
use sqlx::Row;
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
    let row = sqlx::query(
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
    Ok(row.try_get(0)?)
}

pub async fn list_open(conn: &mut Conn, limit: i64) -> Result<Vec<Item>> {
    let rows = sqlx::query(
        "SELECT id, order_id, notification_id, job_id, reason, detail, created_at_ms FROM attention_items \
         WHERE resolved_at_ms IS NULL ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Item {
                id: r.try_get(0)?,
                order_id: r.try_get(1)?,
                notification_id: r.try_get(2)?,
                job_id: r.try_get(3)?,
                reason: r.try_get(4)?,
                detail: r.try_get(5)?,
                created_at_ms: r.try_get(6)?,
            })
        })
        .collect()
}

pub async fn count_open(conn: &mut Conn) -> Result<i64> {
    let row = sqlx::query("SELECT COUNT(*) FROM attention_items WHERE resolved_at_ms IS NULL").fetch_one(conn).await?;
    Ok(row.try_get(0)?)
}
