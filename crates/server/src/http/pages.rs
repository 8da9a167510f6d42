//! The user's view of one order: a plain HTML status page and a printable evidence
//! receipt (also as JSON), reached through a signed, expiring link the platform asks for
//! with `POST /v1/orders/{order_no}/status-link`. The link is an HMAC over the order number
//! and the expiry, so it shows that one order and nothing else. Pages are maud templates,
//! which escape every value they are given.

use super::error::{ApiError, ErrorCode};
use super::extract::Merchant;
use super::json::{self, rfc3339};
use super::order_view::{self, OrderView};
use super::status_text::{self, Lang};
use crate::app::App;
use aws_lc_rs::hmac;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;
use serde_json::{json, Value};
use zerodrop_store::now_ms;

/// Headers for every page: nothing runs, nothing loads from elsewhere, nothing is cached.
pub(crate) const PAGE_HEADERS: [(&str, &str); 5] = [
    ("content-type", "text/html; charset=utf-8"),
    ("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

/// The pages' one stylesheet (a constant, never built from input).
const STYLE: &str = "body{font-family:system-ui,'Noto Sans CJK SC','PingFang SC',sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}\
    .status{font-size:1.25rem;line-height:1.6;background:#f4f7f4;border-left:4px solid #2e7d32;padding:.75rem 1rem}\
    dt{color:#666}dd{margin:0 0 .5rem}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem;border-bottom:1px solid #ddd}\
    .timeline time{color:#666;margin-right:.5rem}@media print{a{display:none}}";

/// The link signature: hex HMAC-SHA256 over "<order_no>.<expiry>".
pub fn signature(secret: &str, order_no: &str, expires_secs: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hex::encode(hmac::sign(&key, format!("{order_no}.{expires_secs}").as_bytes()).as_ref())
}

/// `POST /v1/orders/{order_no}/status-link`.
pub async fn link(State(app): State<App>, _: Merchant, Path(order_no): Path<String>) -> Result<Json<Value>, ApiError> {
    let secret = app.config.status_pages.secret.as_ref().map(|s| s.expose().as_str()).ok_or_else(|| {
        ApiError::conflict(ErrorCode::StatusLinksUnavailable, "status_pages.secret is not configured")
    })?;
    order_view::load(&app.store, &order_no).await?.ok_or_else(ApiError::order_not_found)?;
    let expires = now_ms() / 1000 + app.config.status_pages.link_ttl_secs;
    let query = format!("exp={expires}&sig={}", signature(secret, &order_no, expires));
    let base = format!("{}/pages/orders/{order_no}", app.config.public_base_url.trim_end_matches('/'));
    Ok(Json(json!({
        "status_url": format!("{base}?{query}"),
        "receipt_url": format!("{base}/receipt?{query}"),
        "receipt_json_url": format!("{base}/receipt?{query}&format=json"),
        "proof_url": format!("{base}/proof?{query}"),
        "expires_at": rfc3339(expires * 1000),
    })))
}

#[derive(Deserialize)]
pub struct PageQuery {
    exp: Option<i64>,
    sig: Option<String>,
    lang: Option<String>,
    format: Option<String>,
}

/// A short page in both languages; refusals say nothing about the order, only the
/// request id to quote.
fn refusal(status: StatusCode, zh: &str, en: &str) -> Response {
    let page = html! {
        (DOCTYPE) meta charset="utf-8"; title { "zerodrop" } p { (zh) } p { (en) }
        p { small { "request id: " (ApiError::request_id()) } }
    };
    (status, PAGE_HEADERS, page.into_string()).into_response()
}

/// Checks the link and reads the order.
async fn open(app: &App, order_no: &str, query: &PageQuery) -> Result<OrderView, Response> {
    let (Some(exp), Some(sig), Some(secret)) =
        (query.exp, query.sig.as_deref(), app.config.status_pages.secret.as_ref())
    else {
        return Err(refusal(StatusCode::FORBIDDEN, "链接无效。", "This link is not valid."));
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
    let genuine =
        hex::decode(sig).is_ok_and(|tag| hmac::verify(&key, format!("{order_no}.{exp}").as_bytes(), &tag).is_ok());
    if !genuine {
        return Err(refusal(StatusCode::FORBIDDEN, "链接无效。", "This link is not valid."));
    }
    if exp < now_ms() / 1000 {
        return Err(refusal(
            StatusCode::GONE,
            "链接已过期，请在应用内重新打开。",
            "This link has expired; open it again from the app.",
        ));
    }
    match order_view::load(&app.store, order_no).await {
        Ok(Some(view)) => Ok(view),
        Ok(None) => Err(refusal(StatusCode::NOT_FOUND, "找不到订单。", "No such order.")),
        Err(e) => {
            tracing::error!(error = %e, "a status page could not be read");
            Err(unavailable())
        }
    }
}

/// 503: the page cannot be read now (the database is unreachable, or not reached yet).
pub(super) fn unavailable() -> Response {
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "暂时无法显示，请稍后再试。",
        "Not available right now; try again shortly.",
    )
}

/// A page request whose link is genuine and current, with its order read and the
/// reader's language picked (`?lang=`, then `Accept-Language`).
pub struct SignedPage {
    view: OrderView,
    lang: Lang,
    query: PageQuery,
}

impl FromRequestParts<App> for SignedPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<SignedPage, Response> {
        let Path(order_no) =
            Path::<String>::from_request_parts(parts, app).await.map_err(IntoResponse::into_response)?;
        let Query(query) = Query::<PageQuery>::from_request_parts(parts, app)
            .await
            .map_err(|_| refusal(StatusCode::BAD_REQUEST, "链接无效。", "This link is not valid."))?;
        let view = open(app, &order_no, &query).await?;
        let accept_language = parts.headers.get("accept-language").and_then(|v| v.to_str().ok());
        let lang = Lang::pick(query.lang.as_deref(), accept_language);
        Ok(SignedPage { view, lang, query })
    }
}

/// Picks the zh-CN or the en text.
fn pick(lang: Lang, zh: &'static str, en: &'static str) -> &'static str {
    if lang == Lang::Zh {
        zh
    } else {
        en
    }
}

/// `GET /pages/orders/{order_no}`: the status in words and the timeline.
pub async fn status(State(app): State<App>, SignedPage { view, lang, query }: SignedPage) -> Response {
    let offset = app.config.status_pages.utc_offset_minutes;
    let t = |zh, en| pick(lang, zh, en);
    let link = |page: &str, lang: Lang| {
        format!(
            "{page}?exp={}&sig={}&lang={}",
            query.exp.unwrap_or_default(),
            query.sig.as_deref().unwrap_or_default(),
            lang.code()
        )
    };
    let (other, other_name) = if lang == Lang::Zh { (Lang::En, "English") } else { (Lang::Zh, "中文") };
    let body = html! {
        h1 { (status_text::title(&view.order, lang)) }
        p class="status" { (view.status_text(offset, lang)) }
        dl {
            dt { (t("订单号", "Order")) } dd { (view.order.order_no.as_str()) }
            dt { (t("金额", "Amount")) } dd { (view.order.amount.to_decimal()) " " (view.order.amount.currency.code()) }
        }
        (timeline(&view, offset, lang))
        p {
            a href=(link(&format!("{}/receipt", view.order.order_no.as_str()), lang)) { (t("支付凭证", "Evidence receipt")) }
            " · "
            a href=(link("", other)) { (other_name) }
        }
    };
    page(lang, t("订单状态", "Order status"), body)
}

/// `GET /pages/orders/{order_no}/receipt`: everything needed to prove the payment.
pub async fn receipt(State(app): State<App>, SignedPage { view, lang, query }: SignedPage) -> Response {
    let offset = app.config.status_pages.utc_offset_minutes;
    let mut data = receipt_data(&view, offset, lang);
    let proof_link = format!(
        "/pages/orders/{}/proof?exp={}&sig={}",
        view.order.order_no.as_str(),
        query.exp.unwrap_or_default(),
        query.sig.as_deref().unwrap_or_default()
    );
    data["proof_url"] = json!(proof_link);
    if query.format.as_deref() == Some("json") {
        return ([("cache-control", "no-store")], Json(data)).into_response();
    }
    let t = |zh, en| pick(lang, zh, en);
    let text = |value: &Value| match value {
        Value::String(s) => s.clone(),
        Value::Null => "—".to_owned(),
        other => other.to_string(),
    };
    let rows = [
        ("订单号", "Order", "order_no"),
        ("商品", "Product", "product"),
        ("金额", "Amount", "amount"),
        ("支付渠道", "Provider", "provider"),
        ("渠道交易号", "Provider trade number", "provider_trade_no"),
        ("付款时间", "Paid at", "paid_at"),
        ("当前状态", "Status", "status_text"),
        ("开具时间", "Issued at", "issued_at"),
    ];
    let refunds = data["refunds"].as_array().cloned().unwrap_or_default();
    let body = html! {
        h1 { (t("支付凭证", "Evidence receipt")) }
        table {
            @for (zh, en, key) in rows {
                tr { th { (t(zh, en)) } td { (text(&data[key])) } }
            }
        }
        @if !refunds.is_empty() {
            h2 { (t("退款", "Refunds")) }
            table {
                @for r in &refunds {
                    tr {
                        th { (r["requested_at"].as_str().unwrap_or("")) }
                        td {
                            (r["amount"].as_str().unwrap_or("")) " " (r["currency"].as_str().unwrap_or(""))
                            " · " (r["state"].as_str().unwrap_or("")) " · " (r["request_no"].as_str().unwrap_or(""))
                        }
                    }
                }
            }
        }
        (timeline(&view, offset, lang))
        p {
            a href=(proof_link) { (t("可核验的记录证明（JSON）", "Verifiable proof of the record (JSON)")) }
        }
    };
    page(lang, t("支付凭证", "Evidence receipt"), body)
}

/// `GET /pages/orders/{order_no}/proof`: the order's entry of the per-period proof, JSON.
/// Its charges with their one outcome each, the sealed records that show it (events,
/// delivery, refunds, ledger entries, each with its seal), and the latest signed
/// checkpoint that seals them, so the user can hold zerodrop to it later.
pub async fn proof(State(app): State<App>, SignedPage { view, .. }: SignedPage) -> Response {
    match order_proof(&app, &view).await {
        Ok(data) => ([("cache-control", "no-store")], Json(data)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "an order's proof could not be read");
            unavailable()
        }
    }
}

async fn order_proof(app: &App, view: &OrderView) -> Result<Value, zerodrop_store::StoreError> {
    use zerodrop_store::proof::{cover, entry};
    let now = now_ms();
    let mut snapshot = app.store.snapshot().await?;
    let bounds = super::stats::bounds(&app.config);
    let entries = entry::for_order(&mut snapshot, &bounds, now, &view.order.id.to_string()).await?;
    let records: Vec<(String, i64, i64)> =
        entries.iter().flat_map(|e| e.records().into_iter().map(|(stream, seq, _, at)| (stream, seq, at))).collect();
    let (checkpoint, unsealed) = cover::covering(&mut snapshot, &records).await?;
    Ok(json!({
        "kind": "zerodrop-order-proof",
        "schema_version": zerodrop_store::proof::SCHEMA_VERSION,
        "order_no": view.order.order_no,
        "generated_at": rfc3339(now),
        "generated_at_ms": now,
        "charges": entries,
        "checkpoint": checkpoint,
        "unsealed": unsealed,
    }))
}

fn receipt_data(view: &OrderView, offset: i32, lang: Lang) -> Value {
    let order = &view.order;
    json!({
        "order_no": order.order_no,
        "product": status_text::title(order, lang),
        "amount": format!("{} {}", order.amount.to_decimal(), order.amount.currency.code()),
        "provider": order.provider,
        "provider_trade_no": view.payment.as_ref().map(|p| p.trade_no.clone()),
        "paid_at": view.payment.as_ref().and_then(|p| p.paid_at_ms).map(rfc3339),
        "status": order.status.as_str(),
        "status_text": view.status_text(offset, lang),
        "refunds": view.refunds.iter().map(json::refund).collect::<Vec<_>>(),
        "charges": view.charges.iter().map(json::charge).collect::<Vec<_>>(),
        "timeline": view.timeline.iter().map(|e| json!({ "at": rfc3339(e.at_ms), "kind": e.kind, "actor": e.actor })).collect::<Vec<_>>(),
        "issued_at": rfc3339(now_ms()),
    })
}

fn timeline(view: &OrderView, offset: i32, lang: Lang) -> Markup {
    html! {
        h2 { (pick(lang, "进度", "Timeline")) }
        ol class="timeline" {
            @for (at, label) in view.story(offset, lang) {
                li { time { (at) } " " (label) }
            }
        }
    }
}

fn page(lang: Lang, title: &str, body: Markup) -> Response {
    let html = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    };
    (StatusCode::OK, PAGE_HEADERS, html.into_string()).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_escaped() {
        let markup = maud::html! { p title=("\"x\"") { ("<script>&'") } };
        assert_eq!(markup.into_string(), "<p title=\"&quot;x&quot;\">&lt;script&gt;&amp;'</p>");
    }
}
