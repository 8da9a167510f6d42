//! Things a person must look at: orders flagged by their events, charges nobody could end
//! automatically, parked notifications, jobs that exhausted their attempts. Nothing gives
//! up silently; it lands here, and every item has a clock.
//!
//! An item carries the money at stake, an owner (unassigned at first) and a due time from
//! its reason's clock. It ends only through a recorded action ([`resolve`]); the audit
//! counts an open item past its due time as a violation.

use crate::{Conn, Result, StoreError, Tx};
use serde::Serialize;
use std::collections::BTreeMap;
use zerodrop_domain::OrderId;

/// Default clock of an item with money at stake: a user is out of pocket.
pub const DUE_MS_MONEY_DEFAULT: i64 = 4 * 3_600_000;
/// Default clock of an item with nothing at stake (a flag to look at).
pub const DUE_MS_NONE_DEFAULT: i64 = 24 * 3_600_000;

/// How long a person has for an item, by reason; the configuration sets them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clocks {
    pub money_ms: i64,
    pub none_ms: i64,
    /// Overrides by reason (e.g. `refund_unknown`).
    pub by_reason_ms: BTreeMap<String, i64>,
}

impl Default for Clocks {
    fn default() -> Clocks {
        Clocks { money_ms: DUE_MS_MONEY_DEFAULT, none_ms: DUE_MS_NONE_DEFAULT, by_reason_ms: BTreeMap::new() }
    }
}

impl Clocks {
    /// The time a person has for an item with this reason and money at stake.
    pub fn due_in_ms(&self, reason: &str, at_stake_minor: i64) -> i64 {
        self.by_reason_ms.get(reason).copied().unwrap_or(if at_stake_minor > 0 { self.money_ms } else { self.none_ms })
    }
}

pub struct NewItem {
    pub order_id: Option<OrderId>,
    pub charge_id: Option<i64>,
    pub notification_id: Option<i64>,
    pub job_id: Option<i64>,
    pub reason: String,
    /// The user's money this item decides, in minor units of `currency` (0: none).
    pub at_stake_minor: i64,
    pub currency: Option<String>,
    pub detail: serde_json::Value,
}

impl NewItem {
    pub fn new(reason: &str, detail: serde_json::Value) -> NewItem {
        NewItem {
            order_id: None,
            charge_id: None,
            notification_id: None,
            job_id: None,
            reason: reason.to_owned(),
            at_stake_minor: 0,
            currency: None,
            detail,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Item {
    pub id: i64,
    pub order_id: Option<String>,
    pub charge_id: Option<i64>,
    pub notification_id: Option<i64>,
    pub job_id: Option<i64>,
    pub reason: String,
    pub at_stake_minor: i64,
    pub currency: Option<String>,
    pub owner: Option<String>,
    pub detail: serde_json::Value,
    pub created_at_ms: i64,
    pub due_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
    /// The action that ended it (JSON), once resolved.
    pub resolution: Option<serde_json::Value>,
}

impl Item {
    pub fn is_open(&self) -> bool {
        self.resolved_at_ms.is_none()
    }

    pub fn is_overdue(&self, now_ms: i64) -> bool {
        self.is_open() && now_ms > self.due_at_ms
    }
}

/// Raises an item; its due time comes from the transaction's clocks.
pub async fn raise(tx: &mut Tx, item: NewItem, now_ms: i64) -> Result<i64> {
    let at_stake = item.at_stake_minor.max(0);
    let due_at_ms = now_ms.saturating_add(tx.clocks.due_in_ms(&item.reason, at_stake));
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO attention_items (order_id, charge_id, notification_id, job_id, reason, detail, created_at_ms, \
             at_stake_minor, currency, due_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(item.order_id.map(|id| id.to_string()))
    .bind(item.charge_id)
    .bind(item.notification_id)
    .bind(item.job_id)
    .bind(item.reason.chars().take(100).collect::<String>())
    .bind(item.detail.to_string())
    .bind(now_ms)
    .bind(at_stake)
    .bind(&item.currency)
    .bind(due_at_ms)
    .fetch_one(&mut **tx)
    .await?;
    tracing::warn!(reason = %item.reason, at_stake, order.id = ?item.order_id.map(|id| id.to_string()), "attention raised");
    Ok(id)
}

const COLUMNS: &str = "id, order_id, charge_id, notification_id, job_id, reason, at_stake_minor, currency, owner, \
     detail, created_at_ms, due_at_ms, resolved_at_ms, resolution";

/// Which items to list.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// `Some(true)`: open only; `Some(false)`: resolved only.
    pub open: Option<bool>,
    pub reason: Option<String>,
    /// Only items raised at or before this time (older than an age).
    pub created_before_ms: Option<i64>,
    /// Only open items past their due time at this instant.
    pub overdue_at_ms: Option<i64>,
    pub order_id: Option<OrderId>,
    pub charge_id: Option<i64>,
}

/// Items matching `filter`, oldest first, after `after_id`.
pub async fn list(conn: &mut Conn, filter: &Filter, after_id: i64, limit: i64) -> Result<Vec<Item>> {
    let mut sql = format!("SELECT {COLUMNS} FROM attention_items WHERE id > $1");
    let mut n = 1;
    let mut next = |sql: &mut String, clause: &str| {
        n += 1;
        sql.push_str(&clause.replace('?', &format!("${n}")));
    };
    match filter.open {
        Some(true) => sql.push_str(" AND resolved_at_ms IS NULL"),
        Some(false) => sql.push_str(" AND resolved_at_ms IS NOT NULL"),
        None => {}
    }
    if filter.reason.is_some() {
        next(&mut sql, " AND reason = ?");
    }
    if filter.created_before_ms.is_some() {
        next(&mut sql, " AND created_at_ms <= ?");
    }
    if filter.overdue_at_ms.is_some() {
        next(&mut sql, " AND resolved_at_ms IS NULL AND due_at_ms < ?");
    }
    if filter.order_id.is_some() {
        next(&mut sql, " AND order_id = ?");
    }
    if filter.charge_id.is_some() {
        next(&mut sql, " AND charge_id = ?");
    }
    next(&mut sql, " ORDER BY id LIMIT ?");
    let mut query = sqlx::query_as::<_, ItemRecord>(&sql).bind(after_id);
    if let Some(reason) = &filter.reason {
        query = query.bind(reason.clone());
    }
    if let Some(before) = filter.created_before_ms {
        query = query.bind(before);
    }
    if let Some(at) = filter.overdue_at_ms {
        query = query.bind(at);
    }
    if let Some(order_id) = filter.order_id {
        query = query.bind(order_id.to_string());
    }
    if let Some(charge_id) = filter.charge_id {
        query = query.bind(charge_id);
    }
    let rows = query.bind(limit).fetch_all(conn).await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

pub async fn list_open(conn: &mut Conn, limit: i64) -> Result<Vec<Item>> {
    list(conn, &Filter { open: Some(true), ..Filter::default() }, 0, limit).await
}

pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<Item>> {
    let sql = format!("SELECT {COLUMNS} FROM attention_items WHERE id = $1");
    let row = sqlx::query_as::<_, ItemRecord>(&sql).bind(id).fetch_optional(conn).await?;
    row.map(TryInto::try_into).transpose()
}

/// The item, locked for the rest of `tx`.
pub async fn lock(tx: &mut Tx, id: i64) -> Result<Option<Item>> {
    let sql = format!("SELECT {COLUMNS} FROM attention_items WHERE id = $1{}", tx.dialect().for_update());
    let row = sqlx::query_as::<_, ItemRecord>(&sql).bind(id).fetch_optional(&mut **tx).await?;
    row.map(TryInto::try_into).transpose()
}

/// Open items on one order.
pub async fn open_for_order(conn: &mut Conn, order_id: OrderId) -> Result<Vec<Item>> {
    let filter = Filter { open: Some(true), order_id: Some(order_id), ..Filter::default() };
    list(conn, &filter, 0, ITEMS_PER_ORDER_MAX).await
}

/// More open items than this on one order is a loop raising them, not a story.
const ITEMS_PER_ORDER_MAX: i64 = 1_000;

pub async fn count_open(conn: &mut Conn) -> Result<i64> {
    let open = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM attention_items WHERE resolved_at_ms IS NULL")
        .fetch_one(conn)
        .await?;
    Ok(open)
}

/// Open items past their due time at `now_ms`.
pub async fn count_overdue(conn: &mut Conn, now_ms: i64) -> Result<i64> {
    let overdue = sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM attention_items WHERE resolved_at_ms IS NULL AND due_at_ms < $1",
    )
    .bind(now_ms)
    .fetch_one(conn)
    .await?;
    Ok(overdue)
}

/// One recorded action of a person (or of zerodrop, settling what a person was asked).
pub struct NewAction<'a> {
    pub item_id: Option<i64>,
    pub order_id: Option<OrderId>,
    pub charge_id: Option<i64>,
    pub action: &'a str,
    pub reason_code: &'a str,
    pub note: &'a str,
    pub actor: &'a str,
    /// `api`, `cli` or `system`.
    pub channel: &'a str,
    pub detail: &'a serde_json::Value,
}

/// Ends the item with `action`, recording the action in the append-only log, in `tx`.
/// Returns false (and records nothing) when the item was already resolved.
pub async fn resolve(tx: &mut Tx, item_id: i64, action: &NewAction<'_>, now_ms: i64) -> Result<bool> {
    let resolution = serde_json::json!({
        "action": action.action, "reason_code": action.reason_code, "actor": action.actor,
        "channel": action.channel, "at_ms": now_ms,
    });
    let resolved = sqlx::query(
        "UPDATE attention_items SET resolved_at_ms = $1, resolution = $2, owner = COALESCE(owner, $3) \
         WHERE id = $4 AND resolved_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(resolution.to_string())
    .bind(action.actor)
    .bind(item_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if resolved != 1 {
        return Ok(false);
    }
    record_action(tx, action, now_ms).await?;
    Ok(true)
}

/// Appends an action to the log.
///
/// Actions are chained per attention item (see [`crate::seal`]); the unique position in
/// the chain makes two racing actions on one item fail one of their transactions rather
/// than fork the chain.
pub async fn record_action(tx: &mut Tx, action: &NewAction<'_>, now_ms: i64) -> Result<i64> {
    let order_id = action.order_id.map(|id| id.to_string());
    let stream = crate::seal::stream::actions(action.item_id, order_id.as_deref(), action.charge_id);
    let last = sqlx::query_as::<_, (i64, String)>(
        "SELECT seal_seq, seal FROM operator_actions WHERE seal_stream = $1 ORDER BY seal_seq DESC LIMIT 1",
    )
    .bind(&stream)
    .fetch_optional(&mut **tx)
    .await?;
    let (seq, prev) = match last {
        Some((seq, seal)) => (seq + 1, seal),
        None => (1, crate::seal::GENESIS.to_owned()),
    };
    let detail = action.detail.to_string();
    let seal = crate::seal::content::action(
        &prev,
        &crate::seal::content::ActionFacts {
            stream: &stream,
            seq,
            item_id: action.item_id,
            order_id: order_id.as_deref(),
            charge_id: action.charge_id,
            action: action.action,
            reason_code: action.reason_code,
            note: action.note,
            actor: action.actor,
            channel: action.channel,
            detail: &detail,
            at_ms: now_ms,
        },
    );
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO operator_actions (item_id, order_id, charge_id, action, reason_code, note, actor, channel, \
             detail, at_ms, seal_stream, seal_seq, seal) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         RETURNING id",
    )
    .bind(action.item_id)
    .bind(&order_id)
    .bind(action.charge_id)
    .bind(action.action)
    .bind(action.reason_code)
    .bind(action.note)
    .bind(action.actor)
    .bind(action.channel)
    .bind(&detail)
    .bind(now_ms)
    .bind(&stream)
    .bind(seq)
    .bind(&seal)
    .fetch_one(&mut **tx)
    .await?;
    tx.sealed(stream, seq, seal);
    Ok(id)
}

/// Gives an open item an owner (recorded as an `assign` action).
pub async fn assign(tx: &mut Tx, item_id: i64, action: &NewAction<'_>, now_ms: i64) -> Result<bool> {
    let assigned = sqlx::query("UPDATE attention_items SET owner = $1 WHERE id = $2 AND resolved_at_ms IS NULL")
        .bind(action.actor)
        .bind(item_id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if assigned != 1 {
        return Ok(false);
    }
    record_action(tx, action, now_ms).await?;
    Ok(true)
}

/// An `attention_items` row as stored ([`COLUMNS`]).
#[derive(sqlx::FromRow)]
struct ItemRecord {
    id: i64,
    order_id: Option<String>,
    charge_id: Option<i64>,
    notification_id: Option<i64>,
    job_id: Option<i64>,
    reason: String,
    at_stake_minor: i64,
    currency: Option<String>,
    owner: Option<String>,
    /// JSON text.
    detail: String,
    created_at_ms: i64,
    due_at_ms: Option<i64>,
    resolved_at_ms: Option<i64>,
    /// JSON text.
    resolution: Option<String>,
}

impl TryFrom<ItemRecord> for Item {
    type Error = StoreError;

    fn try_from(r: ItemRecord) -> Result<Item> {
        Ok(Item {
            id: r.id,
            order_id: r.order_id,
            charge_id: r.charge_id,
            notification_id: r.notification_id,
            job_id: r.job_id,
            reason: r.reason,
            at_stake_minor: r.at_stake_minor,
            currency: r.currency,
            owner: r.owner,
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::String(r.detail)),
            created_at_ms: r.created_at_ms,
            // Every item gets a due time at raise (older ones by the migration).
            due_at_ms: r.due_at_ms.unwrap_or(r.created_at_ms),
            resolved_at_ms: r.resolved_at_ms,
            resolution: r.resolution.as_deref().map(serde_json::from_str).transpose()?,
        })
    }
}
