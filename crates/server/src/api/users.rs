//! `GET /v1/users/{user_id}/wallet` and `GET /v1/users/{user_id}/memberships`: the
//! authoritative balance (with the ledger position it reflects) and membership periods.

use super::authorize;
use crate::app::App;
use crate::error::ApiError;
use crate::idempotent::{self, Idempotency};
use crate::views;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use zerodrop_domain::ledger::{AccountId, AccountKind, Transfer};
use zerodrop_domain::{OrderId, UserId};
use zerodrop_store::ledger::TransferRefused;
use zerodrop_store::{ledger, memberships, now_ms, orders, Conn};

fn user(text: &str) -> Result<UserId, ApiError> {
    UserId::parse(text).map_err(|e| ApiError::invalid("invalid_user_id", e.to_string()))
}

async fn order_no_of(conn: &mut Conn, id: Option<&str>) -> Result<Value, ApiError> {
    let Some(id) = id.and_then(OrderId::parse) else {
        return Ok(Value::Null);
    };
    Ok(orders::get(conn, id).await?.map_or(Value::Null, |o| json!(o.order_no)))
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
    Ok(Json(json!({ "user_id": user, "balances": out, "as_of": views::rfc3339(now_ms()) })))
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
    Ok(Json(json!({ "user_id": user, "memberships": out, "as_of": views::rfc3339(now) })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SpendRequest {
    currency: String,
    amount: i64,
    /// `creator:<id>` (a gift) or `platform` (a purchase on the platform).
    to: String,
    #[serde(default)]
    memo: String,
}

/// Most units one spend may move.
const SPEND_UNITS_MAX: i64 = 100_000_000;

/// `POST /v1/users/{user_id}/wallet/spend`: debits the wallet and credits the recipient,
/// once per `Idempotency-Key` (required: a retried gift must not be a second gift).
pub async fn spend(
    State(app): State<App>,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    body: axum::body::Body,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    authorize(&app, &headers)?;
    let user = user(&user_id)?;
    let bytes = super::read_body(body).await?;
    let idempotency = Idempotency::from_request(&format!("spend:{user}"), &headers, &bytes)?
        .ok_or_else(|| ApiError::invalid("idempotency_key_required", "a spend needs an Idempotency-Key"))?;
    if let Some((status, body)) = idempotency.replay(&app).await? {
        return Ok((status, [("content-type", "application/json")], body).into_response());
    }
    let request: SpendRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid("invalid_request", format!("the body is not a valid spend: {e}")))?;
    if !(1..=SPEND_UNITS_MAX).contains(&request.amount) {
        return Err(ApiError::invalid("invalid_amount", format!("amount must be 1..={SPEND_UNITS_MAX} units")));
    }
    let currency_ok = !request.currency.is_empty()
        && request.currency.len() <= 16
        && request.currency.bytes().all(|b| b.is_ascii_uppercase());
    if !currency_ok {
        return Err(ApiError::invalid("invalid_currency", "currency must be 1-16 uppercase letters"));
    }
    let to = match request.to.split_once(':') {
        Some(("creator", id)) => {
            let creator = UserId::parse(id).map_err(|e| ApiError::invalid("invalid_recipient", e.to_string()))?;
            (AccountId::creator(&creator, &request.currency), AccountKind::Creator)
        }
        None if request.to == "platform" => (AccountId::platform(&request.currency), AccountKind::Platform),
        _ => return Err(ApiError::invalid("invalid_recipient", "to must be creator:<id> or platform")),
    };
    let transfer =
        Transfer::spend(&format!("{user}:{}", idempotency.key()), &user, &request.currency, request.amount, to)
            .map_err(|e| ApiError::invalid("invalid_request", e.to_string()))?;
    let mut tx = app.store.begin().await?;
    match ledger::apply(&mut tx, &transfer, None, now_ms()).await? {
        Ok(_) => {}
        Err(TransferRefused::Insufficient { balance, amount, .. }) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "insufficient_balance",
                format!("the wallet holds {balance} {}, the spend needs {amount}", request.currency),
            )
            .with_details(json!({ "balance": balance, "amount": amount })));
        }
        Err(TransferRefused::IdReused(_)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                "this Idempotency-Key was used for another spend",
            ));
        }
    }
    let balance = ledger::balance(&mut tx, &AccountId::wallet(&user, &request.currency)).await?;
    let body = json!({
        "transfer_id": transfer.id, "currency": request.currency, "amount": request.amount,
        "to": request.to, "memo": request.memo.chars().take(200).collect::<String>(), "balance": balance,
    })
    .to_string();
    let (status, body) = idempotent::commit(&app, Some(&idempotency), tx, StatusCode::CREATED, body).await?;
    Ok((status, [("content-type", "application/json")], body).into_response())
}
