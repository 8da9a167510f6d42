//! Operations endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document.

use super::error::{ApiError, ErrorCode};
use crate::app::App;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use zerodrop_store::{attention, jobs, notifications, orders};

/// The OpenAPI document, kept in docs/ and checked against the router by a test.
/// (Read at build time from the repository's docs/ folder.)
pub const OPENAPI_JSON: &str = include_str!("../../../../docs/openapi.json");

pub async fn openapi() -> Response {
    ([("content-type", "application/json")], OPENAPI_JSON).into_response()
}

pub async fn healthz() -> &'static str {
    "ok"
}

/// 200 `ready` when the database answers now; 503 while it has not been reached and
/// migrated since start (`starting`), or does not answer within the connection wait.
pub async fn readyz(State(app): State<App>) -> Response {
    if !app.readiness.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting: database not reached yet").into_response();
    }
    let ready = async {
        let mut conn = app.store.reader().await?;
        sqlx_ping(&mut conn).await
    };
    match ready.await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

async fn sqlx_ping(conn: &mut zerodrop_store::Conn) -> Result<(), zerodrop_store::StoreError> {
    jobs::next_due_ms(conn).await.map(|_| ())
}

pub async fn not_found() -> ApiError {
    ApiError::not_found(ErrorCode::NotFound, "no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method",
    )
}

/// Prometheus text format, read from the database at scrape time so every process
/// reports the same truth.
pub async fn metrics(State(app): State<App>) -> Result<Response, ApiError> {
    let mut conn = app.store.reader().await?;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP zerodrop_orders Orders by status.\n# TYPE zerodrop_orders gauge");
    let mut attention_orders = 0;
    for (status, count, attention) in orders::count_by_status(&mut conn).await? {
        let _ = writeln!(out, "zerodrop_orders{{status=\"{status}\"}} {count}");
        attention_orders += attention;
    }
    let _ = writeln!(
        out,
        "# HELP zerodrop_orders_attention Orders flagged for a person.\n# TYPE zerodrop_orders_attention gauge"
    );
    let _ = writeln!(out, "zerodrop_orders_attention {attention_orders}");
    let _ = writeln!(
        out,
        "# HELP zerodrop_attention_items_open Open attention items.\n# TYPE zerodrop_attention_items_open gauge"
    );
    let _ = writeln!(out, "zerodrop_attention_items_open {}", attention::count_open(&mut conn).await?);
    let _ = writeln!(
        out,
        "# HELP zerodrop_attention_items_overdue Open attention items past their clock.\n# TYPE zerodrop_attention_items_overdue gauge"
    );
    let overdue = attention::count_overdue(&mut conn, zerodrop_store::now_ms()).await?;
    let _ = writeln!(out, "zerodrop_attention_items_overdue {overdue}");
    let _ = writeln!(out, "# HELP zerodrop_charges Charges by class.\n# TYPE zerodrop_charges gauge");
    for (class, count, _) in zerodrop_store::charges::count_by_class(&mut conn).await? {
        let _ = writeln!(out, "zerodrop_charges{{class=\"{class}\"}} {count}");
    }
    let _ = writeln!(out, "# HELP zerodrop_jobs Jobs by kind and state.\n# TYPE zerodrop_jobs gauge");
    for c in jobs::counts(&mut conn).await? {
        let _ = writeln!(out, "zerodrop_jobs{{kind=\"{}\",state=\"{}\"}} {}", c.kind, c.state, c.count);
    }
    let _ = writeln!(
        out,
        "# HELP zerodrop_notifications Stored notifications by verdict.\n# TYPE zerodrop_notifications gauge"
    );
    for (verdict, count) in notifications::count_by_verdict(&mut conn).await? {
        let _ = writeln!(out, "zerodrop_notifications{{verdict=\"{verdict}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "# HELP zerodrop_notifications_refused_unstored_total Refused notifications over the per-source or total limit, answered but not stored (this process, since it started).\n# TYPE zerodrop_notifications_refused_unstored_total counter"
    );
    let _ = writeln!(out, "zerodrop_notifications_refused_unstored_total {}", app.refusals.unstored());
    drop(conn);
    out.push_str(&zerodrop_store::stats::prometheus(&super::stats::figures(&app).await?));
    Ok(([("content-type", "text/plain; version=0.0.4")], out).into_response())
}
