//! Reconciliation reports through the merchant API: `GET /v1/reconciliations` lists them
//! newest first; `GET /v1/reconciliations/{id}` gives one report as JSON, or with
//! `?format=html` as the self-contained page, or `?format=csv`.

use super::error::{ApiError, ErrorCode};
use super::extract::Merchant;
use crate::app::App;
use crate::report;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use zerodrop_store::{bills, now_ms};

/// Reconciliations per page, at most (and by default).
const PAGE_MAX: i64 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Reconciliations older than this id (the previous page's `next_before`).
    before: Option<i64>,
    limit: Option<i64>,
}

pub async fn list(
    State(app): State<App>,
    _: Merchant,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid(ErrorCode::InvalidRequest, e.body_text()))?;
    let limit = query.limit.unwrap_or(PAGE_MAX);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::invalid(ErrorCode::InvalidRequest, format!("limit must be 1 to {PAGE_MAX}")));
    }
    let before = query.before.unwrap_or(0);
    if before < 0 {
        return Err(ApiError::invalid(ErrorCode::InvalidRequest, "before must be a reconciliation id"));
    }
    let mut conn = app.store.reader().await?;
    let rows = bills::list(&mut conn, before, limit).await?;
    let next_before = (rows.len() as i64 == limit).then(|| rows.last().map(|r| r.id)).flatten();
    Ok(Json(json!({ "reconciliations": rows, "next_before": next_before })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    /// `json` (default), `html` or `csv`.
    format: Option<String>,
    /// Differences after this id (the previous page's last).
    after: Option<i64>,
}

pub async fn show(
    State(app): State<App>,
    _: Merchant,
    Path(id): Path<String>,
    query: Result<Query<ShowQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid(ErrorCode::InvalidRequest, e.body_text()))?;
    let id = id.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(not_found)?;
    let after = query.after.unwrap_or(0).max(0);
    let format = query.format.unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "html" | "csv") {
        return Err(ApiError::invalid(ErrorCode::InvalidRequest, "format must be json, html or csv"));
    }
    let mut conn = app.store.reader().await?;
    let report = report::build(&mut conn, id, after, &super::stats::bounds(&app.config), now_ms())
        .await?
        .ok_or_else(not_found)?;
    Ok(match format.as_str() {
        // The page's own headers: no script, nothing from outside, never cached.
        "html" => (super::pages::PAGE_HEADERS, report::html::render(&report)).into_response(),
        "csv" => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], report::csv::render(&report)).into_response(),
        _ => Json(json!({ "report": report })).into_response(),
    })
}

fn not_found() -> ApiError {
    ApiError::not_found(ErrorCode::ReconciliationNotFound, "no reconciliation with this id")
}
