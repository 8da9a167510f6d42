//! Membership plans per user, and the history of periods each order added.

use crate::{Conn, Result, Tx};
use serde::Serialize;
use zerodrop_domain::membership;
use zerodrop_domain::{OrderId, UserId};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Period {
    pub order_id: String,
    pub days: i64,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Membership {
    pub plan: String,
    pub started_at_ms: i64,
    pub ends_at_ms: i64,
    pub last_order_id: String,
    pub periods: Vec<Period>,
}

/// Extends `plan` by `days` for the order, stacking after the current end. Once per
/// order: the period's primary key is the order id, so a second call fails the transaction.
pub async fn extend(tx: &mut Tx, user: &UserId, plan: &str, days: i64, order: OrderId, now_ms: i64) -> Result<Period> {
    let sql =
        format!("SELECT ends_at_ms FROM memberships WHERE user_id = $1 AND plan = $2{}", tx.dialect().for_update());
    let current = sqlx::query_scalar::<_, i64>(&sql).bind(user.as_str()).bind(plan).fetch_optional(&mut **tx).await?;
    let (starts_at_ms, ends_at_ms) = membership::extension(current, now_ms, days);
    sqlx::query(
        "INSERT INTO membership_periods (order_id, user_id, plan, days, starts_at_ms, ends_at_ms, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(order.to_string())
    .bind(user.as_str())
    .bind(plan)
    .bind(days)
    .bind(starts_at_ms)
    .bind(ends_at_ms)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    // A lapsed membership restarts: its start moves to the new period's start.
    sqlx::query(
        "INSERT INTO memberships (user_id, plan, started_at_ms, ends_at_ms, updated_at_ms, last_order_id) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (user_id, plan) DO UPDATE SET \
             started_at_ms = CASE WHEN memberships.ends_at_ms < $7 THEN $3 ELSE memberships.started_at_ms END, \
             ends_at_ms = $4, updated_at_ms = $5, last_order_id = $6",
    )
    .bind(user.as_str())
    .bind(plan)
    .bind(starts_at_ms)
    .bind(ends_at_ms)
    .bind(now_ms)
    .bind(order.to_string())
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(Period { order_id: order.to_string(), days, starts_at_ms, ends_at_ms })
}

/// Moves a plan's end by `days` (negative: a refund takes days back; positive:
/// compensation), once per `id`. Returns the end before and after.
#[allow(clippy::too_many_arguments)]
pub async fn adjust(
    tx: &mut Tx,
    id: &str,
    user: &UserId,
    plan: &str,
    days: i64,
    order: OrderId,
    now_ms: i64,
) -> Result<(i64, i64)> {
    let sql =
        format!("SELECT ends_at_ms FROM memberships WHERE user_id = $1 AND plan = $2{}", tx.dialect().for_update());
    let before = sqlx::query_scalar::<_, i64>(&sql)
        .bind(user.as_str())
        .bind(plan)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| crate::StoreError::Invariant(format!("user has no {plan} membership to adjust")))?;
    // Extra days on a lapsed plan start now, not in the past.
    let base = if days > 0 { before.max(now_ms) } else { before };
    let after = base + days * membership::DAY_MS;
    sqlx::query(
        "INSERT INTO membership_adjustments (id, order_id, user_id, plan, days, ends_at_before, ends_at_after, at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(order.to_string())
    .bind(user.as_str())
    .bind(plan)
    .bind(days)
    .bind(before)
    .bind(after)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE memberships SET ends_at_ms = $1, updated_at_ms = $2 WHERE user_id = $3 AND plan = $4")
        .bind(after)
        .bind(now_ms)
        .bind(user.as_str())
        .bind(plan)
        .execute(&mut **tx)
        .await?;
    Ok((before, after))
}

pub async fn for_user(conn: &mut Conn, user: &UserId) -> Result<Vec<Membership>> {
    let plans = sqlx::query_as::<_, PlanRecord>(
        "SELECT plan, started_at_ms, ends_at_ms, last_order_id FROM memberships WHERE user_id = $1 ORDER BY plan",
    )
    .bind(user.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut memberships = Vec::with_capacity(plans.len());
    for plan in plans {
        let periods = sqlx::query_as::<_, PeriodRecord>(
            "SELECT order_id, days, starts_at_ms, ends_at_ms FROM membership_periods \
             WHERE user_id = $1 AND plan = $2 ORDER BY starts_at_ms",
        )
        .bind(user.as_str())
        .bind(&plan.plan)
        .fetch_all(&mut *conn)
        .await?;
        memberships.push(plan.with_periods(periods.into_iter().map(Into::into).collect()));
    }
    Ok(memberships)
}

/// A `memberships` row as [`for_user`] reads it.
#[derive(sqlx::FromRow)]
struct PlanRecord {
    plan: String,
    started_at_ms: i64,
    ends_at_ms: i64,
    last_order_id: String,
}

impl PlanRecord {
    /// The plan with its periods, which come from another table.
    fn with_periods(self, periods: Vec<Period>) -> Membership {
        Membership {
            plan: self.plan,
            started_at_ms: self.started_at_ms,
            ends_at_ms: self.ends_at_ms,
            last_order_id: self.last_order_id,
            periods,
        }
    }
}

/// A `membership_periods` row as [`for_user`] reads it. Every column is already in its
/// public form; the record keeps [`Period`] free of the database mapping.
#[derive(sqlx::FromRow)]
struct PeriodRecord {
    order_id: String,
    days: i64,
    starts_at_ms: i64,
    ends_at_ms: i64,
}

impl From<PeriodRecord> for Period {
    fn from(r: PeriodRecord) -> Period {
        Period { order_id: r.order_id, days: r.days, starts_at_ms: r.starts_at_ms, ends_at_ms: r.ends_at_ms }
    }
}
