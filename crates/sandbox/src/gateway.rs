//! The sandbox's Alipay gateway: `alipay.trade.query`, `alipay.trade.close`,
//! `alipay.trade.refund`, `alipay.trade.fastpay.refund.query`,
//! `alipay.data.dataservice.bill.downloadurl.query`, and for withholding agreements
//! ([`crate::agreements`]) `alipay.user.agreement.query`, `alipay.user.agreement.unsign`
//! and `alipay.trade.pay`, with signed responses.

use crate::faults;
use crate::notifier::{self, Message};
use crate::state::{RefundRecord, SandboxRefund, Trade, TradeStatus};
use crate::{now_ms, Sandbox};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use zerodrop_domain::money::{Currency, Money};
use zerodrop_providers::alipay::clock::format_cst;
use zerodrop_providers::alipay::sign::{response_key, signing_string};

pub(crate) async fn handle(State(sandbox): State<Sandbox>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let slow_ms = sandbox.faults().gateway_slow_ms;
    if slow_ms > 0 {
        tokio::time::sleep(Duration::from_millis(slow_ms)).await;
    }
    match serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
        Ok(params) => {
            let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok());
            sandbox.gateway_answer(&params, host)
        }
        Err(_) => (StatusCode::BAD_REQUEST, "malformed form body").into_response(),
    }
}

/// The gateway method that hands out a bill's download URL ([`crate::bills`]).
const BILL_URL_METHOD: &str = "alipay.data.dataservice.bill.downloadurl.query";

fn business(sub_code: &str, sub_msg: &str) -> Value {
    json!({"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg})
}

impl Sandbox {
    fn gateway_answer(&self, params: &[(String, String)], host: Option<&str>) -> Response {
        let fields: HashMap<&str, &str> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let method = fields.get("method").copied().unwrap_or_default();
        let faults = self.faults();
        if let Ok(mut ledger) = self.shared.ledger.lock() {
            ledger.stats.gateway_calls += 1;
        }
        if now_ms() < faults.gateway_down_until_ms {
            self.count_gateway_failure();
            return (StatusCode::SERVICE_UNAVAILABLE, "gateway down").into_response();
        }
        let content = match self.authenticate(&fields, params) {
            Err(content) => content,
            Ok(_) if faults::roll(faults.gateway_unknown_rate_pct) => {
                self.count_gateway_failure();
                json!({"code": "20000", "msg": "Service Currently Unavailable", "sub_code": "isp.unknow-error"})
            }
            Ok(seller_id) if method == BILL_URL_METHOD => {
                let biz: Value =
                    fields.get("biz_content").and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default();
                self.bill_url(&seller_id, &biz, host)
            }
            Ok(seller_id) => {
                let biz: Value =
                    fields.get("biz_content").and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default();
                let field = |name: &str| fields.get(name).copied().unwrap_or_default();
                match method {
                    "alipay.trade.refund" => self.refund(&biz),
                    "alipay.trade.pay" => self.agreement_pay(field("app_id"), &seller_id, &biz, field("notify_url")),
                    "alipay.user.agreement.query" => self.agreement_query(field("app_id"), &biz),
                    "alipay.user.agreement.unsign" => self.agreement_unsign(field("app_id"), &biz),
                    _ => self.trade_method(method, &biz),
                }
            }
        };
        self.signed_response(method, &content)
    }

    fn count_gateway_failure(&self) {
        if let Ok(mut ledger) = self.shared.ledger.lock() {
            ledger.stats.gateway_failed += 1;
        }
    }

    /// Checks the request's app and signature; Ok: the merchant's seller id.
    fn authenticate(&self, fields: &HashMap<&str, &str>, params: &[(String, String)]) -> Result<String, Value> {
        let invalid = |sub_code: &str| json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": sub_code});
        let app_id = fields.get("app_id").copied().unwrap_or_default();
        let merchant = self
            .shared
            .ledger
            .lock()
            .ok()
            .and_then(|l| l.merchants.get(app_id).cloned())
            .ok_or_else(|| invalid("isv.invalid-app-id"))?;
        let message = signing_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), true);
        let sign = fields.get("sign").copied().unwrap_or_default();
        if !merchant.app_public_key.verify_sha256_base64(message.as_bytes(), sign) {
            return Err(invalid("isv.invalid-signature"));
        }
        Ok(merchant.seller_id)
    }

    fn trade_method(&self, method: &str, biz: &Value) -> Value {
        let text = |name: &str| biz.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        let out_trade_no = text("out_trade_no");
        let Ok(mut ledger) = self.shared.ledger.lock() else {
            return json!({"code": "20000", "msg": "Service Currently Unavailable"});
        };
        let now = now_ms();
        let refund_state = ledger.refunds.get(&(out_trade_no.clone(), text("out_request_no"))).cloned();
        let hidden = ledger.hidden.contains(&out_trade_no);
        let Some(trade) = ledger.trade_mut(&out_trade_no, &text("trade_no")) else {
            return business("ACQ.TRADE_NOT_EXIST", "交易不存在");
        };
        if hidden && matches!(method, "alipay.trade.query" | "alipay.trade.close") {
            return business("ACQ.TRADE_NOT_EXIST", "交易不存在");
        }
        match method {
            "alipay.trade.query" => {
                let mut answer = json!({
                    "code": "10000", "msg": "Success",
                    "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
                    "trade_status": trade.status.alipay_name(),
                    "total_amount": trade.amount.to_decimal(),
                    "buyer_logon_id": "use***@example.com",
                });
                if let Some(paid) = trade.paid_at_ms {
                    answer["send_pay_date"] = Value::String(format_cst(paid));
                }
                answer
            }
            "alipay.trade.close" => match trade.status {
                TradeStatus::WaitBuyerPay => {
                    trade.status = TradeStatus::Closed;
                    json!({"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no})
                }
                TradeStatus::Success | TradeStatus::Closed => business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"),
            },
            "alipay.trade.fastpay.refund.query" => {
                let mut answer = json!({
                    "code": "10000", "msg": "Success", "trade_no": trade.trade_no,
                    "out_trade_no": trade.out_trade_no, "out_request_no": text("out_request_no"),
                    "total_amount": trade.amount.to_decimal(),
                });
                // Alipay returns refund data only once the refund succeeded.
                if let Some(refund) = refund_state.filter(|r| r.completes_at_ms <= now) {
                    let amount = Money::new(refund.amount_minor, trade.amount.currency);
                    answer["refund_status"] = json!("REFUND_SUCCESS");
                    answer["refund_amount"] = json!(amount.to_decimal());
                }
                answer
            }
            _ => json!({"code": "40004", "msg": "Business Failed", "sub_code": "isv.invalid-method"}),
        }
    }

    /// A refund: idempotent in (trade, request number), never more than what was paid.
    fn refund(&self, biz: &Value) -> Value {
        let text = |name: &str| biz.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (out_trade_no, request_no) = (text("out_trade_no"), text("out_request_no"));
        let Ok(amount) = Money::parse_decimal(&text("refund_amount"), Currency::Cny) else {
            return json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-parameter"});
        };
        let faults = self.faults();
        let now = now_ms();
        let (answer, follow_up) = {
            let Ok(mut ledger) = self.shared.ledger.lock() else {
                return json!({"code": "20000", "msg": "Service Currently Unavailable"});
            };
            let key = (out_trade_no.clone(), request_no.clone());
            if let Some(existing) = ledger.refunds.get(&key) {
                // The same request again: the same refund. A different amount is an error.
                if existing.amount_minor != amount.minor {
                    return business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额与原请求不一致");
                }
                return json!({"code": "10000", "msg": "Success", "fund_change": "N", "out_trade_no": out_trade_no});
            }
            if faults.refund_refused {
                return business("ACQ.TRADE_NOT_ALLOW_REFUND", "当前交易不允许退款");
            }
            let Some(trade) = ledger.trade_mut(&out_trade_no, &text("trade_no")) else {
                return business("ACQ.TRADE_NOT_EXIST", "交易不存在");
            };
            if trade.status != TradeStatus::Success || amount.minor <= 0 {
                return business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法");
            }
            if trade.refunded_minor + amount.minor > trade.amount.minor {
                return business("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额超限");
            }
            trade.refunded_minor += amount.minor;
            let closed = trade.refunded_minor == trade.amount.minor;
            if closed {
                trade.status = TradeStatus::Closed;
            }
            let trade = trade.clone();
            let completes_at_ms = now + faults.refund_delay_ms.max(0);
            ledger.refunds.insert(key, SandboxRefund { amount_minor: amount.minor, completes_at_ms, notified: false });
            ledger.refund_records.push(RefundRecord {
                trade_no: trade.trade_no.clone(),
                out_trade_no: out_trade_no.clone(),
                request_no: request_no.clone(),
                amount_minor: amount.minor,
                requested_at_ms: now,
            });
            let immediate = faults.refund_delay_ms <= 0;
            let fund_change = if immediate { "Y" } else { "N" };
            let answer = json!({
                "code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": out_trade_no,
                "fund_change": fund_change, "refund_fee": Money::new(trade.refunded_minor, trade.amount.currency).to_decimal(),
            });
            (answer, (trade, closed, completes_at_ms))
        };
        let (trade, closed, completes_at_ms) = follow_up;
        let sandbox = self.clone();
        tokio::spawn(async move {
            let wait = u64::try_from(completes_at_ms - now_ms()).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            sandbox.notify_refund(&trade, &request_no, closed, completes_at_ms);
        });
        answer
    }

    fn notify_refund(&self, trade: &Trade, request_no: &str, closed: bool, at_ms: i64) {
        let refunded_total_minor = {
            let Ok(mut ledger) = self.shared.ledger.lock() else { return };
            if let Some(refund) = ledger.refunds.get_mut(&(trade.out_trade_no.clone(), request_no.to_owned())) {
                refund.notified = true;
            }
            let out_trade_no = trade.out_trade_no.clone();
            ledger.trade_mut(&out_trade_no, &trade.trade_no).map_or(0, |t| t.refunded_minor)
        };
        let message = Message::Refunded { request_no: request_no.to_owned(), refunded_total_minor, at_ms, closed };
        notifier::plan(&self.shared, trade, message, &self.faults());
    }

    fn signed_response(&self, method: &str, content: &Value) -> Response {
        let text = content.to_string();
        let Ok(sign) = self.shared.key.sign_sha256_base64(text.as_bytes()) else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "signing failed").into_response();
        };
        let key = response_key(if method.is_empty() { "alipay.error" } else { method });
        let body = format!("{{\"{key}\":{text},\"sign\":{}}}", Value::String(sign));
        ([("content-type", "application/json; charset=utf-8")], body).into_response()
    }
}
