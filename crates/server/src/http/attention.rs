//! The attention queue through the merchant API: `GET /v1/attention` lists items (by
//! state, reason and age), `GET /v1/attention/{id}` shows one, and
//! `POST /v1/attention/{id}/resolve` ends one with a recorded action.

use super::error::{ApiError, ErrorCode};
use super::extract::{Creates, Idempotent, Merchant};
use super::idempotency;
use super::json;
use crate::app::App;
use crate::flows::attention::{resolve_in, Action, Resolution, ResolveError};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use zerodrop_store::attention::{self, Filter, Item};
use zerodrop_store::now_ms;

/// Items per page, at most (and by default).
const PAGE_ITEMS_MAX: i64 = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `open` (default), `resolved` or `all`.
    state: Option<String>,
    reason: Option<String>,
    /// Only items at least this old.
    older_than_secs: Option<i64>,
    /// Only open items past their due time.
    overdue: Option<bool>,
    /// Items after this id (the previous page's `next_after`).
    after: Option<i64>,
    limit: Option<i64>,
}

pub async fn list(
    State(app): State<App>,
    _: Merchant,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid(ErrorCode::InvalidRequest, e.body_text()))?;
    let now = now_ms();
    let open = match query.state.as_deref() {
        None | Some("open") => Some(true),
        Some("resolved") => Some(false),
        Some("all") => None,
        Some(_) => return Err(ApiError::invalid(ErrorCode::InvalidRequest, "state must be open, resolved or all")),
    };
    let older = query.older_than_secs.filter(|s| (0..=10 * 365 * 86_400).contains(s));
    if query.older_than_secs.is_some() && older.is_none() {
        return Err(ApiError::invalid(ErrorCode::InvalidRequest, "older_than_secs must be 0 to 315360000"));
    }
    let limit = query.limit.unwrap_or(PAGE_ITEMS_MAX);
    if !(1..=PAGE_ITEMS_MAX).contains(&limit) {
        return Err(ApiError::invalid(ErrorCode::InvalidRequest, format!("limit must be 1 to {PAGE_ITEMS_MAX}")));
    }
    let filter = Filter {
        open,
        reason: query.reason.filter(|r| !r.is_empty()).map(|r| r.chars().take(100).collect()),
        created_before_ms: older.map(|secs| now - secs * 1000),
        overdue_at_ms: query.overdue.unwrap_or(false).then_some(now),
        order_id: None,
        charge_id: None,
    };
    let mut conn = app.store.reader().await?;
    let items = attention::list(&mut conn, &filter, query.after.unwrap_or(0), limit).await?;
    let next_after = (items.len() as i64 == limit).then(|| items.last().map(|i| i.id)).flatten();
    let items: Vec<Value> = items.iter().map(|i| item_json(i, now)).collect();
    Ok(Json(json!({ "items": items, "next_after": next_after })))
}

pub async fn show(State(app): State<App>, _: Merchant, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let mut conn = app.store.reader().await?;
    let item = attention::get(&mut conn, id).await?.ok_or_else(not_found)?;
    Ok(Json(json!({ "item": item_json(&item, now_ms()) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// `deliver_by_hand`, `refund`, `compensate` or `dismiss`.
    action: String,
    /// What was delivered (`deliver_by_hand`).
    delivered: Option<String>,
    /// A decimal (`refund`; everything left when absent).
    amount: Option<String>,
    reason_code: String,
    note: String,
    /// The acting person, as the platform knows them.
    actor: String,
}

impl Creates for ResolveRequest {
    const WHAT: &'static str = "attention resolution";
    const SCOPE: &'static str = "attention_resolve";
    const KEY_REQUIRED: bool = true;
}

pub async fn resolve(
    State(app): State<App>,
    _: Merchant,
    Path(id): Path<String>,
    Idempotent { request, key }: Idempotent<ResolveRequest>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let action = Action::from_parts(&request.action, request.delivered, request.amount).map_err(refusal)?;
    let how = Resolution {
        action,
        reason_code: request.reason_code,
        note: request.note,
        actor: request.actor,
        channel: "api",
    };
    how.validate().map_err(refusal)?;
    let mut tx = app.store.begin().await?;
    let item = resolve_in(&mut tx, id, &how, now_ms()).await.map_err(refusal)?;
    let body = json!({ "item": item_json(&item, now_ms()) });
    let response = idempotency::commit(&app.store, key.as_ref(), tx, StatusCode::OK, body).await?;
    app.wake();
    Ok(response)
}

fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(not_found)
}

fn not_found() -> ApiError {
    ApiError::not_found(ErrorCode::AttentionNotFound, "no attention item with this id")
}

fn refusal(e: ResolveError) -> ApiError {
    let message = e.to_string();
    match e {
        ResolveError::NotFound => not_found(),
        ResolveError::AlreadyResolved(_) => ApiError::conflict(ErrorCode::AttentionResolved, message),
        ResolveError::MoneyAtStake(_) => ApiError::conflict(ErrorCode::MoneyAtStake, message),
        ResolveError::NotApplicable(_) => ApiError::conflict(ErrorCode::ActionNotApplicable, message),
        ResolveError::Invalid(_) => ApiError::invalid(ErrorCode::InvalidRequest, message),
        ResolveError::Refund(e) => super::refunds::refusal(e),
        ResolveError::Store(e) => ApiError::internal(&e),
    }
}

/// An item as the API shows it: its clock in RFC 3339 and as an age, and whether it is
/// overdue now.
pub fn item_json(item: &Item, now_ms: i64) -> Value {
    json!({
        "id": item.id,
        "state": if item.is_open() { "open" } else { "resolved" },
        "reason": item.reason,
        "order_id": item.order_id,
        "charge_id": item.charge_id,
        "notification_id": item.notification_id,
        "job_id": item.job_id,
        "at_stake": { "amount_minor": item.at_stake_minor, "currency": item.currency },
        "owner": item.owner,
        "raised_at": json::rfc3339(item.created_at_ms),
        "due_at": json::rfc3339(item.due_at_ms),
        "age_secs": (now_ms - item.created_at_ms).max(0) / 1000,
        "overdue": item.is_overdue(now_ms),
        "resolved_at": json::opt_time(item.resolved_at_ms),
        "resolution": item.resolution,
        "detail": item.detail,
    })
}
