//! The user's view of one order: a plain HTML status page and a printable evidence
//! receipt (also as JSON), reached through a signed, expiring link the platform asks for
//! with `POST /v1/orders/{order_no}/status-link`. The link is an HMAC over the order number
//! and the expiry, so it shows that one order and nothing else.

use crate::api::authorize;
use crate::app::App;
use crate::detail::{self, Detail};
use crate::error::ApiError;
use crate::views::rfc3339;
use crate::words::{self, Lang};
use aws_lc_rs::hmac;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::fmt::Write;
use zerodrop_store::now_ms;

/// Headers for every page: nothing runs, nothing loads from elsewhere, nothing is cached.
const PAGE_HEADERS: [(&str, &str); 5] = [
    ("content-type", "text/html; charset=utf-8"),
    ("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

/// The link signature: hex HMAC-SHA256 over "<order_no>.<expiry>".
pub fn signature(secret: &str, order_no: &str, expires_secs: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, format!("{order_no}.{expires_secs}").as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn secret(app: &App) -> Result<&str, ApiError> {
    app.config.status_pages.secret.as_ref().map(|s| s.expose().as_str()).ok_or_else(|| {
        ApiError::new(StatusCode::CONFLICT, "status_links_unavailable", "status_pages.secret is not configured")
    })
}

/// `POST /v1/orders/{order_no}/status-link`.
pub async fn link(
    State(app): State<App>,
    headers: HeaderMap,
    Path(order_no): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers)?;
    let secret = secret(&app)?;
    detail::load(&app, &order_no)
        .await?
        .ok_or_else(|| ApiError::not_found("order_not_found", "no order with this number"))?;
    let expires = now_ms() / 1000 + app.config.status_pages.link_ttl_secs;
    let query = format!("exp={expires}&sig={}", signature(secret, &order_no, expires));
    let base = format!("{}/pages/orders/{order_no}", app.config.public_base_url.trim_end_matches('/'));
    Ok(Json(json!({
        "status_url": format!("{base}?{query}"),
        "receipt_url": format!("{base}/receipt?{query}"),
        "receipt_json_url": format!("{base}/receipt?{query}&format=json"),
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

/// Checks the link. Refusals are short pages, never details about the order.
async fn open(app: &App, order_no: &str, query: &PageQuery) -> Result<Detail, Response> {
    let refuse = |status: StatusCode, zh: &str, en: &str| {
        let body = format!("<!doctype html><meta charset=utf-8><title>zerodrop</title><p>{zh}</p><p>{en}</p>");
        (status, PAGE_HEADERS, body).into_response()
    };
    let (Some(exp), Some(sig), Some(secret)) =
        (query.exp, query.sig.as_deref(), app.config.status_pages.secret.as_ref())
    else {
        return Err(refuse(StatusCode::FORBIDDEN, "链接无效。", "This link is not valid."));
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
    let genuine = crate::external::decode_hex(sig)
        .is_some_and(|tag| hmac::verify(&key, format!("{order_no}.{exp}").as_bytes(), &tag).is_ok());
    if !genuine {
        return Err(refuse(StatusCode::FORBIDDEN, "链接无效。", "This link is not valid."));
    }
    if exp < now_ms() / 1000 {
        return Err(refuse(
            StatusCode::GONE,
            "链接已过期，请在应用内重新打开。",
            "This link has expired; open it again from the app.",
        ));
    }
    match detail::load(app, order_no).await {
        Ok(Some(detail)) => Ok(detail),
        Ok(None) => Err(refuse(StatusCode::NOT_FOUND, "找不到订单。", "No such order.")),
        // Already logged where it became an ApiError; the reader gets a plain page.
        Err(_) => Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "暂时无法显示，请稍后再试。",
            "Not available right now; try again shortly.",
        )),
    }
}

fn lang(query: &PageQuery, headers: &HeaderMap) -> Lang {
    Lang::pick(query.lang.as_deref(), headers.get("accept-language").and_then(|v| v.to_str().ok()))
}

/// `GET /pages/orders/{order_no}`: the status in words and the timeline.
pub async fn status(
    State(app): State<App>,
    headers: HeaderMap,
    Path(order_no): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    let detail = match open(&app, &order_no, &query).await {
        Ok(detail) => detail,
        Err(refusal) => return refusal,
    };
    let lang = lang(&query, &headers);
    let t = |zh: &'static str, en: &'static str| if lang == Lang::Zh { zh } else { en };
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>{}</h1><p class=status>{}</p><dl><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{} {}</dd></dl>",
        esc(&words::title(&detail.order, lang)),
        esc(&detail.status_text(&app, lang)),
        t("订单号", "Order"),
        esc(detail.order.order_no.as_str()),
        t("金额", "Amount"),
        esc(&detail.order.amount.to_decimal()),
        detail.order.amount.currency.code(),
    );
    timeline(&mut body, &detail, &app, lang);
    let receipt = format!(
        "receipt?exp={}&sig={}&lang={}",
        query.exp.unwrap_or_default(),
        esc(query.sig.as_deref().unwrap_or_default()),
        lang.code()
    );
    let other = if lang == Lang::Zh { ("en", "English") } else { ("zh-CN", "中文") };
    let _ = write!(
        body,
        "<p><a href=\"{}/{receipt}\">{}</a> · <a href=\"?exp={}&sig={}&lang={}\">{}</a></p>",
        esc(detail.order.order_no.as_str()),
        t("支付凭证", "Evidence receipt"),
        query.exp.unwrap_or_default(),
        esc(query.sig.as_deref().unwrap_or_default()),
        other.0,
        other.1
    );
    page(lang, t("订单状态", "Order status"), &body)
}

/// `GET /pages/orders/{order_no}/receipt`: everything needed to prove the payment (S8).
pub async fn receipt(
    State(app): State<App>,
    headers: HeaderMap,
    Path(order_no): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    let detail = match open(&app, &order_no, &query).await {
        Ok(detail) => detail,
        Err(refusal) => return refusal,
    };
    let lang = lang(&query, &headers);
    let data = receipt_data(&app, &detail, lang);
    if query.format.as_deref() == Some("json") {
        return ([("cache-control", "no-store")], Json(data)).into_response();
    }
    let t = |zh: &'static str, en: &'static str| if lang == Lang::Zh { zh } else { en };
    let row = |label: &str, value: &Value| {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Null => "—".to_owned(),
            other => other.to_string(),
        };
        format!("<tr><th>{}</th><td>{}</td></tr>", esc(label), esc(&text))
    };
    let mut body = format!("<h1>{}</h1><table>", t("支付凭证", "Evidence receipt"));
    for (zh, en, key) in [
        ("订单号", "Order", "order_no"),
        ("商品", "Product", "product"),
        ("金额", "Amount", "amount"),
        ("支付渠道", "Provider", "provider"),
        ("渠道交易号", "Provider trade number", "provider_trade_no"),
        ("付款时间", "Paid at", "paid_at"),
        ("当前状态", "Status", "status_text"),
        ("开具时间", "Issued at", "issued_at"),
    ] {
        body.push_str(&row(t(zh, en), &data[key]));
    }
    body.push_str("</table>");
    if let Some(refunds) = data["refunds"].as_array().filter(|r| !r.is_empty()) {
        let _ = write!(body, "<h2>{}</h2><table>", t("退款", "Refunds"));
        for r in refunds {
            let line = format!(
                "{} {} · {} · {}",
                r["amount"].as_str().unwrap_or(""),
                r["currency"].as_str().unwrap_or(""),
                r["state"].as_str().unwrap_or(""),
                r["request_no"].as_str().unwrap_or("")
            );
            body.push_str(&row(r["requested_at"].as_str().unwrap_or(""), &Value::String(line)));
        }
        body.push_str("</table>");
    }
    timeline(&mut body, &detail, &app, lang);
    page(lang, t("支付凭证", "Evidence receipt"), &body)
}

fn receipt_data(app: &App, detail: &Detail, lang: Lang) -> Value {
    let order = &detail.order;
    json!({
        "order_no": order.order_no,
        "product": words::title(order, lang),
        "amount": format!("{} {}", order.amount.to_decimal(), order.amount.currency.code()),
        "provider": order.provider,
        "provider_trade_no": detail.payment.as_ref().map(|p| p.trade_no.clone()),
        "paid_at": detail.payment.as_ref().and_then(|p| p.paid_at_ms).map(rfc3339),
        "status": order.status.as_str(),
        "status_text": detail.status_text(app, lang),
        "refunds": detail.refunds.iter().map(crate::views::refund).collect::<Vec<_>>(),
        "timeline": detail.timeline.iter().map(|e| json!({ "at": rfc3339(e.at_ms), "kind": e.kind, "actor": e.actor })).collect::<Vec<_>>(),
        "issued_at": rfc3339(now_ms()),
    })
}

fn timeline(body: &mut String, detail: &Detail, app: &App, lang: Lang) {
    let _ = write!(body, "<h2>{}</h2><ol class=timeline>", if lang == Lang::Zh { "进度" } else { "Timeline" });
    for (at, label) in detail.story(app, lang) {
        let _ = write!(body, "<li><time>{}</time> {}</li>", esc(&at), esc(label));
    }
    body.push_str("</ol>");
}

fn page(lang: Lang, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>body{{font-family:system-ui,'Noto Sans CJK SC','PingFang SC',sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}}\
         .status{{font-size:1.25rem;line-height:1.6;background:#f4f7f4;border-left:4px solid #2e7d32;padding:.75rem 1rem}}\
         dt{{color:#666}}dd{{margin:0 0 .5rem}}table{{border-collapse:collapse;width:100%}}th,td{{text-align:left;padding:.35rem;border-bottom:1px solid #ddd}}\
         .timeline time{{color:#666;margin-right:.5rem}}@media print{{a{{display:none}}}}</style></head><body>{}</body></html>",
        lang.code(),
        esc(title),
        body
    );
    (StatusCode::OK, PAGE_HEADERS, html).into_response()
}

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn html_is_escaped() {
        assert_eq!(super::esc("<script>\"x\"&'"), "&lt;script&gt;&quot;x&quot;&amp;&#39;");
    }
}
