//! The signed gateway: requests signed with the app's private key, responses verified
//! with the Alipay public key over their raw JSON text.

use super::clock::{format_cst, parse_cst};
use super::sign::{signing_string, split_response};
use super::{AlipayConfig, GATEWAY_RESPONSE_BYTES_MAX};
use crate::{CloseOutcome, OrderRef, PaymentStatus, ProviderError, RefundRef, RefundStatus, SignedAnswer};
use serde_json::{Map, Value};
use zerodrop_domain::money::{Currency, Money};

/// Common parameters plus `biz_content`, signed. `as_query` returns them URL-encoded
/// (the app-pay order string); otherwise the caller posts them as a form.
pub(super) fn signed_params(
    config: &AlipayConfig,
    method: &str,
    biz: &Value,
    notify_url: Option<&str>,
) -> Result<String, ProviderError> {
    let params = signed_pairs(config, method, biz, notify_url)?;
    serde_urlencoded::to_string(&params).map_err(|e| ProviderError::Config(e.to_string()))
}

fn signed_pairs(
    config: &AlipayConfig,
    method: &str,
    biz: &Value,
    notify_url: Option<&str>,
) -> Result<Vec<(String, String)>, ProviderError> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let mut params: Vec<(String, String)> = vec![
        ("app_id".into(), config.app_id.clone()),
        ("method".into(), method.into()),
        ("format".into(), "JSON".into()),
        ("charset".into(), "utf-8".into()),
        ("sign_type".into(), "RSA2".into()),
        ("timestamp".into(), format_cst(now_ms)),
        ("version".into(), "1.0".into()),
        ("biz_content".into(), biz.to_string()),
    ];
    if let Some(url) = notify_url {
        params.push(("notify_url".into(), url.to_owned()));
    }
    // Requests sign `sign_type` too.
    let message = signing_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), true);
    let sign = config
        .app_private_key
        .sign_sha256_base64(message.as_bytes())
        .map_err(|e| ProviderError::Config(e.to_string()))?;
    params.push(("sign".into(), sign));
    Ok(params)
}

/// The method whose answers back payments (and are kept as their evidence).
const QUERY_METHOD: &str = "alipay.trade.query";

/// What a verified gateway answer said.
pub(super) enum Answer {
    /// Its fields, and the signed text they were read from.
    Success(Map<String, Value>, SignedAnswer),
    Failure {
        code: String,
        sub_code: String,
        message: String,
    },
}

async fn call(
    client: &reqwest::Client,
    config: &AlipayConfig,
    method: &str,
    biz: Value,
) -> Result<Answer, ProviderError> {
    call_notifying(client, config, method, biz, None).await
}

/// [`call`] with a `notify_url`: for methods that make a trade the provider notifies.
pub(super) async fn call_notifying(
    client: &reqwest::Client,
    config: &AlipayConfig,
    method: &str,
    biz: Value,
    notify_url: Option<&str>,
) -> Result<Answer, ProviderError> {
    let params = signed_pairs(config, method, &biz, notify_url)?;
    let response = client
        .post(&config.gateway_url)
        .form(&params)
        .send()
        .await
        .map_err(|e| ProviderError::Transport(without_url(&e)))?;
    let status = response.status();
    let body = read_limited(response).await?;
    if !status.is_success() {
        return Err(ProviderError::Transport(format!("gateway answered HTTP {}", status.as_u16())));
    }
    let text = std::str::from_utf8(&body).map_err(|_| ProviderError::BadResponse("response is not UTF-8".into()))?;
    let raw = split_response(text, method).map_err(ProviderError::BadResponse)?;
    let Some(content) = raw.content else {
        // Unsigned `error_response`: the gateway refused the request itself (bad app id,
        // bad request signature). Nothing it says about the trade can be trusted.
        let detail = raw.error.map(|e| e.chars().take(300).collect::<String>()).unwrap_or_default();
        return Err(ProviderError::Refused { code: "error_response".into(), sub_code: String::new(), message: detail });
    };
    let sign = raw.sign.ok_or_else(|| ProviderError::BadResponse("response is not signed".into()))?;
    let signed = SignedAnswer { method: method.to_owned(), content: content.to_owned(), sign };
    let fields = verified_fields(config, &signed)?;
    let text_of = |name: &str| fields.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let code = text_of("code");
    let sub_code = text_of("sub_code");
    match (code.as_str(), sub_code.as_str()) {
        ("10000", _) => Ok(Answer::Success(fields, signed)),
        // 20000 (service unavailable) and ACQ.SYSTEM_ERROR mean the outcome is unknown.
        ("20000", _) | (_, "ACQ.SYSTEM_ERROR") => Err(ProviderError::Unknown(format!("{code} {sub_code}"))),
        _ => Ok(Answer::Failure { code, sub_code, message: text_of("sub_msg") }),
    }
}

/// The fields of a signed answer, once its signature verifies under the provider's key.
fn verified_fields(config: &AlipayConfig, answer: &SignedAnswer) -> Result<Map<String, Value>, ProviderError> {
    if !config.alipay_public_key.verify_sha256_base64(answer.content.as_bytes(), &answer.sign) {
        return Err(ProviderError::BadResponse("response signature does not verify".into()));
    }
    serde_json::from_str(&answer.content).map_err(|e| ProviderError::BadResponse(format!("response content: {e}")))
}

/// Verifies a stored `alipay.trade.query` answer again and reads it: the order it is
/// about and the trade it reports.
pub(super) fn verify_answer(
    config: &AlipayConfig,
    answer: &SignedAnswer,
) -> Result<(String, PaymentStatus), ProviderError> {
    let pay = answer.method == super::agreement::PAY_METHOD;
    if answer.method != QUERY_METHOD && !pay {
        return Err(ProviderError::BadResponse(format!("{:?} is not a trade query answer", answer.method)));
    }
    let fields = verified_fields(config, answer)?;
    if fields.get("code").and_then(Value::as_str) != Some("10000") {
        return Err(ProviderError::BadResponse("the answer is not a success".into()));
    }
    let order_no = fields
        .get("out_trade_no")
        .and_then(Value::as_str)
        .filter(|no| !no.is_empty())
        .ok_or_else(|| ProviderError::BadResponse("the answer names no order".into()))?
        .to_owned();
    let status =
        if pay { super::agreement::read_pay(&fields, &order_no, None)? } else { read_trade(&fields, &order_no, None)? };
    Ok((order_no, status))
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| ProviderError::Transport(without_url(&e)))? {
        if body.len() + chunk.len() > GATEWAY_RESPONSE_BYTES_MAX {
            return Err(ProviderError::BadResponse(format!("response larger than {GATEWAY_RESPONSE_BYTES_MAX} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's errors name the URL; ours are stored and shown, so keep only the kind.
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "response body failed"
    } else {
        "request failed"
    };
    format!("gateway {kind}")
}

pub(super) async fn query(
    client: &reqwest::Client,
    config: &AlipayConfig,
    order: &OrderRef,
) -> Result<PaymentStatus, ProviderError> {
    let mut biz = serde_json::json!({ "out_trade_no": order.order_no });
    if let Some(trade_no) = &order.trade_no {
        biz["trade_no"] = serde_json::Value::String(trade_no.clone());
    }
    match call(client, config, QUERY_METHOD, biz).await? {
        Answer::Success(fields, signed) => read_trade(&fields, &order.order_no, Some(signed)),
        Answer::Failure { sub_code, .. } if sub_code == "ACQ.TRADE_NOT_EXIST" => Ok(PaymentStatus::NotFound),
        Answer::Failure { code, sub_code, message } => Err(ProviderError::Refused { code, sub_code, message }),
    }
}

/// What a trade query answer about `order_no` says; a paid trade keeps `signed` as its
/// evidence.
pub(super) fn read_trade(
    fields: &Map<String, Value>,
    order_no: &str,
    signed: Option<SignedAnswer>,
) -> Result<PaymentStatus, ProviderError> {
    let text = |name: &str| fields.get(name).and_then(Value::as_str).filter(|v| !v.is_empty());
    if text("out_trade_no").is_some_and(|no| no != order_no) {
        return Err(ProviderError::BadResponse("answer is about another order".into()));
    }
    match text("trade_status").unwrap_or_default() {
        "TRADE_SUCCESS" | "TRADE_FINISHED" => {
            let trade_no =
                text("trade_no").ok_or_else(|| ProviderError::BadResponse("paid trade without trade_no".into()))?;
            let total = text("total_amount")
                .ok_or_else(|| ProviderError::BadResponse("paid trade without total_amount".into()))?;
            let amount =
                Money::parse_decimal(total, Currency::Cny).map_err(|e| ProviderError::BadResponse(e.to_string()))?;
            Ok(PaymentStatus::Paid {
                trade_no: trade_no.to_owned(),
                amount,
                paid_at_ms: text("send_pay_date").and_then(parse_cst),
                answer: signed,
            })
        }
        "WAIT_BUYER_PAY" => Ok(PaymentStatus::AwaitingPayment),
        "TRADE_CLOSED" => Ok(PaymentStatus::Closed),
        other => Err(ProviderError::BadResponse(format!("unknown trade_status {other:?}"))),
    }
}

pub(super) async fn close(
    client: &reqwest::Client,
    config: &AlipayConfig,
    order: &OrderRef,
) -> Result<CloseOutcome, ProviderError> {
    let biz = serde_json::json!({ "out_trade_no": order.order_no });
    match call(client, config, "alipay.trade.close", biz).await? {
        Answer::Success(..) => Ok(CloseOutcome::Closed),
        Answer::Failure { sub_code, .. } if sub_code == "ACQ.TRADE_NOT_EXIST" => Ok(CloseOutcome::NotFound),
        Answer::Failure { sub_code, .. } if sub_code == "ACQ.TRADE_STATUS_ERROR" => Ok(CloseOutcome::NotOpen),
        Answer::Failure { code, sub_code, message } => Err(ProviderError::Refused { code, sub_code, message }),
    }
}

/// Checks that a signed refund answer is about this refund: its order, its trade and its
/// request number, wherever the answer names them. A genuine answer about another refund
/// settles nothing.
fn answers(refund: &RefundRef, fields: &Map<String, Value>) -> Result<(), ProviderError> {
    let named = |name: &str| fields.get(name).and_then(Value::as_str).filter(|v| !v.is_empty());
    let mismatch = |what: &str| {
        Err(ProviderError::BadResponse(format!(
            "the refund answer names another {what} than refund {}",
            refund.request_no
        )))
    };
    if named("out_trade_no").is_some_and(|no| no != refund.order.order_no) {
        return mismatch("order");
    }
    if let (Some(theirs), Some(ours)) = (named("trade_no"), refund.trade_no.as_deref()) {
        if theirs != ours {
            return mismatch("trade");
        }
    }
    if named("out_request_no").is_some_and(|no| no != refund.request_no) {
        return mismatch("request number");
    }
    Ok(())
}

/// Refusals after which no retry can succeed: the refund has failed.
const REFUND_FINAL_REFUSALS: &[&str] = &[
    "ACQ.TRADE_NOT_EXIST",
    "ACQ.TRADE_STATUS_ERROR",
    "ACQ.TRADE_NOT_ALLOW_REFUND",
    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
    "ACQ.REASON_TRADE_REFUND_FEE_ERR",
    "ACQ.REFUND_FEE_ERROR",
    "ACQ.TRADE_HAS_FINISHED",
];

pub(super) async fn refund(
    client: &reqwest::Client,
    config: &AlipayConfig,
    refund: &RefundRef,
) -> Result<RefundStatus, ProviderError> {
    let mut biz = serde_json::json!({
        "out_trade_no": refund.order.order_no,
        "refund_amount": refund.amount.to_decimal(),
        "out_request_no": refund.request_no,
        "refund_reason": refund.reason,
    });
    if let Some(trade_no) = &refund.trade_no {
        biz["trade_no"] = Value::String(trade_no.clone());
    }
    match call(client, config, "alipay.trade.refund", biz).await? {
        // fund_change=Y: the money moved now. N: it is the same request again (already
        // refunded), or still under way; the refund query settles which.
        Answer::Success(fields, _) => {
            answers(refund, &fields)?;
            match fields.get("fund_change").and_then(Value::as_str) {
                Some("Y") => Ok(RefundStatus::Succeeded),
                _ => Ok(RefundStatus::Processing),
            }
        }
        Answer::Failure { sub_code, message, .. } if REFUND_FINAL_REFUSALS.contains(&sub_code.as_str()) => {
            Ok(RefundStatus::Failed { reason: format!("{sub_code}: {message}") })
        }
        Answer::Failure { code, sub_code, message } => Err(ProviderError::Refused { code, sub_code, message }),
    }
}

pub(super) async fn query_refund(
    client: &reqwest::Client,
    config: &AlipayConfig,
    refund: &RefundRef,
) -> Result<RefundStatus, ProviderError> {
    let mut biz = serde_json::json!({ "out_trade_no": refund.order.order_no, "out_request_no": refund.request_no });
    if let Some(trade_no) = &refund.trade_no {
        biz["trade_no"] = Value::String(trade_no.clone());
    }
    match call(client, config, "alipay.trade.fastpay.refund.query", biz).await? {
        Answer::Success(fields, _) => {
            answers(refund, &fields)?;
            let status = fields.get("refund_status").and_then(Value::as_str).unwrap_or_default();
            let amount = fields.get("refund_amount").and_then(Value::as_str);
            match (status, amount) {
                ("REFUND_SUCCESS", Some(amount)) => {
                    let refunded = Money::parse_decimal(amount, Currency::Cny)
                        .map_err(|e| ProviderError::BadResponse(format!("refund_amount: {e}")))?;
                    if refunded != refund.amount {
                        return Err(ProviderError::BadResponse(format!(
                            "refund {} reported {} refunded, expected {}",
                            refund.request_no,
                            refunded.to_decimal(),
                            refund.amount.to_decimal()
                        )));
                    }
                    Ok(RefundStatus::Succeeded)
                }
                ("REFUND_SUCCESS", None) => {
                    Err(ProviderError::BadResponse("refund succeeded without an amount".into()))
                }
                // No refund data: the request has not reached the provider (or is not done).
                _ => Ok(RefundStatus::NotFound),
            }
        }
        Answer::Failure { sub_code, .. } if sub_code == "ACQ.TRADE_NOT_EXIST" => Ok(RefundStatus::NotFound),
        Answer::Failure { code, sub_code, message } => Err(ProviderError::Refused { code, sub_code, message }),
    }
}

/// The gateway method that hands out a bill's download URL.
const BILL_URL_METHOD: &str = "alipay.data.dataservice.bill.downloadurl.query";

/// The download URL of the trade bill (业务明细) of `bill_date` (`YYYY-MM-DD`, CST).
pub(super) async fn bill_download_url(
    client: &reqwest::Client,
    config: &AlipayConfig,
    bill_date: &str,
) -> Result<String, ProviderError> {
    if bill_date.len() != 10 || parse_cst(&format!("{bill_date} 00:00:00")).is_none() {
        return Err(ProviderError::Config(format!(
            "bill date {:?} is not YYYY-MM-DD",
            bill_date.chars().take(32).collect::<String>()
        )));
    }
    let biz = serde_json::json!({ "bill_type": "trade", "bill_date": bill_date });
    match call(client, config, BILL_URL_METHOD, biz).await? {
        Answer::Success(fields, _) => fields
            .get("bill_download_url")
            .and_then(Value::as_str)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| ProviderError::BadResponse("the answer has no bill_download_url".into())),
        // isp.bill_not_exist: no bill for that day (not yet made, or too old).
        Answer::Failure { code, sub_code, message } => Err(ProviderError::Refused { code, sub_code, message }),
    }
}
