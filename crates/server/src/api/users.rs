//! `GET /v1/users/{user_id}/wallet` and `GET /v1/users/{user_id}/memberships`: the
//! authoritative balance (with the ledger position it reflects) and membership periods.

use super::authorize;
use crate::app::App;
use crate::error::ApiError;
use crate::views;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};
use zerodrop_domain::{OrderId, UserId};
use zerodrop_store::{ledger, memberships, now_ms, orders, Conn};

fn user(text: &str) -> Result<UserId, ApiError> {
    UserId::parse(text).map_err(|e| ApiError::invalid("invalid_user_id", e.to_string()))
}

async fn order_no_of(conn: &mut Conn, id: Option<&str>) -> Result<Value, ApiError> {
    let Some(id) = id.and_then(OrderId::parse) else {
        return Ok(Value::Null);
    };
    Ok(orders::get(conn, id)
        .await?
        .map_or(Value::Null, |o| json!(o.order_no)))
}

pub async fn wallet(
    State(app): State<App>,
    headers: HeaderMap,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers)?;
    let user = user(&user_id)?;
    let mut conn = app.store.reader().await?;
    let balances = ledger::wallet(&mut conn, &user).await?;
    let mut out = Vec::with_capacity(balances.len());
    for b in balances {
        out.push(json!({
            "currency": b.currency,
            "balance": b.balance,
            "ledger_entry_id": b.last_entry_id,
            "last_credit_order_no": order_no_of(&mut conn, b.last_credit_order_id.as_deref()).await?,
            "last_credit_at": b.last_credit_at_ms.map(views::rfc3339),
        }));
    }
    Ok(Json(
        json!({ "user_id": user, "balances": out, "as_of": views::rfc3339(now_ms()) }),
    ))
}

pub async fn memberships(
    State(app): State<App>,
    headers: HeaderMap,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers)?;
    let user = user(&user_id)?;
    let mut conn = app.store.reader().await?;
    let now = now_ms();
    let list = memberships::for_user(&mut conn, &user).await?;
    let mut out = Vec::with_capacity(list.len());
    for m in list {
        let mut periods = Vec::with_capacity(m.periods.len());
        for p in &m.periods {
            periods.push(json!({
                "order_no": order_no_of(&mut conn, Some(&p.order_id)).await?,
                "days": p.days,
                "starts_at": views::rfc3339(p.starts_at_ms),
                "ends_at": views::rfc3339(p.ends_at_ms),
            }));
        }
        out.push(json!({
            "plan": m.plan,
            "active": m.ends_at_ms > now,
            "started_at": views::rfc3339(m.started_at_ms),
            "ends_at": views::rfc3339(m.ends_at_ms),
            "periods": periods,
        }));
    }
    Ok(Json(
        json!({ "user_id": user, "memberships": out, "as_of": views::rfc3339(now) }),
    ))
}
