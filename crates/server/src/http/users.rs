//! `GET /v1/users/{user_id}/wallet`, `GET /v1/users/{user_id}/memberships` and
//! `POST /v1/users/{user_id}/wallet/spend`: the authoritative balance (with the ledger
//! position it reflects), membership periods, and spending.

use super::error::{ApiError, ErrorCode};
use super::extract::{Creates, Idempotent, Merchant, UserPath};
use super::idempotency;
use super::json::rfc3339;
use crate::app::App;
use crate::flows::wallet::{Spend, SpendError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};
use zerodrop_domain::OrderId;
use zerodrop_store::{ledger, memberships, now_ms, orders, Conn};

/// Longest memo kept, in characters.
const MEMO_CHARS_MAX: usize = 200;

async fn order_no_of(conn: &mut Conn, id: Option<&str>) -> Result<Value, ApiError> {
    let Some(id) = id.and_then(OrderId::parse) else {
        return Ok(Value::Null);
    };
    Ok(orders::get(conn, id).await?.map_or(Value::Null, |o| json!(o.order_no)))
}

pub async fn wallet(State(app): State<App>, _: Merchant, UserPath(user): UserPath) -> Result<Json<Value>, ApiError> {
    let mut conn = app.store.reader().await?;
    let balances = ledger::wallet(&mut conn, &user).await?;
    let mut out = Vec::with_capacity(balances.len());
    for b in balances {
        out.push(json!({
            "currency": b.currency,
            "balance": b.balance,
            "ledger_entry_id": b.last_entry_id,
            "last_credit_order_no": order_no_of(&mut conn, b.last_credit_order_id.as_deref()).await?,
            "last_credit_at": b.last_credit_at_ms.map(rfc3339),
        }));
    }
    Ok(Json(json!({ "user_id": user, "balances": out, "as_of": rfc3339(now_ms()) })))
}

pub async fn memberships(
    State(app): State<App>,
    _: Merchant,
    UserPath(user): UserPath,
) -> Result<Json<Value>, ApiError> {
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
                "starts_at": rfc3339(p.starts_at_ms),
                "ends_at": rfc3339(p.ends_at_ms),
            }));
        }
        out.push(json!({
            "plan": m.plan,
            "active": m.ends_at_ms > now,
            "started_at": rfc3339(m.started_at_ms),
            "ends_at": rfc3339(m.ends_at_ms),
            "periods": periods,
        }));
    }
    Ok(Json(json!({ "user_id": user, "memberships": out, "as_of": rfc3339(now) })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendRequest {
    currency: String,
    amount: i64,
    /// `creator:<id>` (a gift) or `platform` (a purchase on the platform).
    to: String,
    #[serde(default)]
    memo: String,
}

impl Creates for SpendRequest {
    const WHAT: &'static str = "spend";
    const SCOPE: &'static str = "spend";
    const KEY_REQUIRED: bool = true;
}

/// Debits the wallet and credits the recipient, once per `Idempotency-Key` (required: a
/// retried gift must not be a second gift).
pub async fn spend(
    State(app): State<App>,
    _: Merchant,
    UserPath(user): UserPath,
    Idempotent { request, key }: Idempotent<SpendRequest>,
) -> Result<Response, ApiError> {
    let spend = Spend::parse(&request.currency, request.amount, &request.to).map_err(refusal)?;
    let key_text = key.as_ref().map(|k| k.key()).unwrap_or_default();
    let mut tx = app.store.begin().await?;
    let spent = spend.apply_in(&mut tx, &user, key_text, now_ms()).await.map_err(refusal)?;
    let body = json!({
        "transfer_id": spent.transfer_id, "currency": request.currency, "amount": request.amount,
        "to": request.to, "memo": request.memo.chars().take(MEMO_CHARS_MAX).collect::<String>(), "balance": spent.balance,
    });
    idempotency::commit(&app.store, key.as_ref(), tx, StatusCode::CREATED, body).await
}

fn refusal(e: SpendError) -> ApiError {
    let message = e.to_string();
    match e {
        SpendError::Amount => ApiError::invalid(ErrorCode::InvalidAmount, message),
        SpendError::Currency => ApiError::invalid(ErrorCode::InvalidCurrency, message),
        SpendError::RecipientForm | SpendError::Recipient(_) => ApiError::invalid(ErrorCode::InvalidRecipient, message),
        SpendError::Transfer(_) => ApiError::invalid(ErrorCode::InvalidRequest, message),
        SpendError::Insufficient { balance, amount, .. } => ApiError::conflict(ErrorCode::InsufficientBalance, message)
            .with_details(json!({ "balance": balance, "amount": amount })),
        SpendError::KeyReused => ApiError::conflict(ErrorCode::IdempotencyKeyReused, message),
        SpendError::Store(e) => ApiError::internal(&e),
    }
}
