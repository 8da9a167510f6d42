//! The sandbox payment provider.
//!
//! A real HTTP service that speaks Alipay's wire format with its own generated keys:
//! `POST /gateway.do` answers `alipay.trade.query` and `alipay.trade.close` with signed
//! responses, and paid trades produce RSA2-signed `trade_status_sync` notifications to
//! the merchant's `notify_url`. Simulated users pay with `POST /sandbox/pay`, handing
//! over the signed app-pay order string zerodrop gave them. The sandbox keeps its own
//! ledger of every charge, so tests compare both sides; its fault knobs drop, duplicate,
//! delay and reorder notifications and fail or slow the gateway.

pub mod faults;
mod notifier;
pub mod state;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use faults::Faults;
use serde::Deserialize;
use state::{Charge, Ledger, Merchant, Stats, Trade, TradeStatus};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zerodrop_domain::money::{Currency, Money};
use zerodrop_providers::alipay::clock::{format_cst, parse_cst};
use zerodrop_providers::alipay::sign::{response_key, signing_string};
use zerodrop_providers::keys::{RsaPrivateKey, RsaPublicKey};

/// Largest request the sandbox reads. Gateway requests and order strings are small.
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;
/// Time allowed for one notification send before it counts as unacknowledged.
pub const NOTIFY_TIMEOUT_MS: u64 = 5_000;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

pub(crate) struct Shared {
    pub(crate) ledger: Mutex<Ledger>,
    faults: Mutex<Faults>,
    pub(crate) key: RsaPrivateKey,
    pub(crate) client: reqwest::Client,
}

/// A handle on a sandbox; cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    shared: Arc<Shared>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayError {
    #[error("order string is malformed: {0}")]
    Malformed(String),
    #[error("unknown merchant app_id")]
    UnknownMerchant,
    #[error("order string signature does not verify")]
    BadSignature,
    #[error("the order expired at the provider")]
    Expired,
    #[error("the trade is closed")]
    Closed,
}

impl Sandbox {
    pub fn with_key(key: RsaPrivateKey, faults: Faults) -> Result<Sandbox, reqwest::Error> {
        let client =
            zerodrop_providers::http_client::client(Duration::from_millis(NOTIFY_TIMEOUT_MS))?;
        let shared = Shared {
            ledger: Mutex::new(Ledger::default()),
            faults: Mutex::new(faults),
            key,
            client,
        };
        Ok(Sandbox {
            shared: Arc::new(shared),
        })
    }

    /// The key zerodrop configures as the "Alipay public key" for this provider.
    pub fn public_key(&self) -> RsaPublicKey {
        self.shared.key.public_key()
    }

    pub fn add_merchant(&self, merchant: Merchant) {
        if let Ok(mut ledger) = self.shared.ledger.lock() {
            ledger.merchants.insert(merchant.app_id.clone(), merchant);
        }
    }

    pub fn faults(&self) -> Faults {
        self.shared
            .faults
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default()
    }

    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut current) = self.shared.faults.lock() {
            *current = faults;
        }
    }

    /// Every charge made so far: the provider's side of the books.
    pub fn charges(&self) -> Vec<Charge> {
        self.shared
            .ledger
            .lock()
            .map(|l| l.charges.clone())
            .unwrap_or_default()
    }

    pub fn stats(&self) -> Stats {
        self.shared
            .ledger
            .lock()
            .map(|l| l.stats.clone())
            .unwrap_or_default()
    }

    /// A user pays with the order string the merchant gave them. Paying twice returns
    /// the first charge.
    pub fn pay(&self, order_string: &str) -> Result<Charge, PayError> {
        let faults = self.faults();
        let params: Vec<(String, String)> = serde_urlencoded::from_str(order_string)
            .map_err(|e| PayError::Malformed(e.to_string()))?;
        let fields: HashMap<&str, &str> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let field = |name: &str| {
            fields
                .get(name)
                .copied()
                .ok_or_else(|| PayError::Malformed(format!("{name} missing")))
        };
        let app_id = field("app_id")?;
        let notify_url = field("notify_url")?.to_owned();
        let biz: serde_json::Value = serde_json::from_str(field("biz_content")?)
            .map_err(|e| PayError::Malformed(e.to_string()))?;
        let biz_text = |name: &str| {
            biz.get(name)
                .and_then(|v| v.as_str())
                .ok_or_else(|| PayError::Malformed(format!("biz_content.{name} missing")))
        };
        let out_trade_no = biz_text("out_trade_no")?.to_owned();
        let amount = Money::parse_decimal(biz_text("total_amount")?, Currency::Cny)
            .map_err(|e| PayError::Malformed(e.to_string()))?;
        let expire_ms = parse_cst(biz_text("time_expire")?)
            .ok_or_else(|| PayError::Malformed("time_expire".into()))?;
        let subject = biz_text("subject")?.to_owned();

        let now = now_ms();
        let mut ledger = self
            .shared
            .ledger
            .lock()
            .map_err(|_| PayError::Malformed("sandbox state poisoned".into()))?;
        let merchant = ledger
            .merchants
            .get(app_id)
            .cloned()
            .ok_or(PayError::UnknownMerchant)?;
        let message = signing_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), true);
        if !merchant
            .app_public_key
            .verify_sha256_base64(message.as_bytes(), field("sign")?)
        {
            return Err(PayError::BadSignature);
        }
        if let Some(existing) = ledger.trades.get(&out_trade_no) {
            match existing.status {
                TradeStatus::Success => {
                    let charge = ledger
                        .charges
                        .iter()
                        .find(|c| c.out_trade_no == out_trade_no)
                        .cloned();
                    return charge.ok_or(PayError::Closed);
                }
                TradeStatus::Closed => return Err(PayError::Closed),
                TradeStatus::WaitBuyerPay => {}
            }
        }
        let late = now > expire_ms;
        if now > expire_ms + faults.late_pay_grace_ms {
            return Err(PayError::Expired);
        }
        ledger.next_trade_seq += 1;
        let trade_no = format!(
            "{}{:012}",
            format_cst(now)
                .get(..10)
                .unwrap_or("2026-01-01")
                .replace('-', ""),
            ledger.next_trade_seq
        );
        let trade = Trade {
            trade_no: trade_no.clone(),
            out_trade_no: out_trade_no.clone(),
            app_id: app_id.to_owned(),
            seller_id: merchant.seller_id.clone(),
            amount,
            subject,
            status: TradeStatus::Success,
            created_at_ms: now,
            paid_at_ms: Some(now),
            notify_url,
        };
        let charge = Charge {
            trade_no,
            out_trade_no: out_trade_no.clone(),
            amount_minor: amount.minor,
            paid_at_ms: now,
            late,
        };
        ledger.charges.push(charge.clone());
        ledger.trades.insert(out_trade_no, trade.clone());
        drop(ledger);
        notifier::plan(&self.shared, &trade, &faults);
        Ok(charge)
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/gateway.do", post(gateway))
            .route("/sandbox/pay", post(pay))
            .route("/sandbox/charges", get(charges))
            .route("/sandbox/stats", get(stats))
            .route("/sandbox/faults", get(get_faults).post(set_faults))
            .route("/sandbox/public-key", get(public_key))
            .layer(DefaultBodyLimit::max(REQUEST_BYTES_MAX))
            .with_state(self.clone())
    }

    /// Serves until `shutdown` resolves. Bind port 0 in tests.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    fn gateway_answer(&self, params: &[(String, String)]) -> Response {
        let fields: HashMap<&str, &str> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
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
            Ok(()) if faults::roll(faults.gateway_unknown_rate_pct) => {
                self.count_gateway_failure();
                serde_json::json!({"code": "20000", "msg": "Service Currently Unavailable", "sub_code": "isp.unknow-error"})
            }
            Ok(()) => self.run_method(method, &fields),
        };
        self.signed_response(method, &content)
    }

    fn count_gateway_failure(&self) {
        if let Ok(mut ledger) = self.shared.ledger.lock() {
            ledger.stats.gateway_failed += 1;
        }
    }

    fn authenticate(
        &self,
        fields: &HashMap<&str, &str>,
        params: &[(String, String)],
    ) -> Result<(), serde_json::Value> {
        let invalid = |sub_code: &str| serde_json::json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": sub_code});
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
        if !merchant
            .app_public_key
            .verify_sha256_base64(message.as_bytes(), sign)
        {
            return Err(invalid("isv.invalid-signature"));
        }
        Ok(())
    }

    fn run_method(&self, method: &str, fields: &HashMap<&str, &str>) -> serde_json::Value {
        let biz: serde_json::Value = fields
            .get("biz_content")
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or_default();
        let out_trade_no = biz
            .get("out_trade_no")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let business = |sub_code: &str, sub_msg: &str| serde_json::json!({"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg});
        let Ok(mut ledger) = self.shared.ledger.lock() else {
            return serde_json::json!({"code": "20000", "msg": "Service Currently Unavailable"});
        };
        let Some(trade) = ledger.trades.get_mut(&out_trade_no) else {
            return business("ACQ.TRADE_NOT_EXIST", "交易不存在");
        };
        match method {
            "alipay.trade.query" => {
                let mut answer = serde_json::json!({
                    "code": "10000", "msg": "Success",
                    "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
                    "trade_status": trade.status.alipay_name(),
                    "total_amount": trade.amount.to_decimal(),
                    "buyer_logon_id": "use***@example.com",
                });
                if let Some(paid) = trade.paid_at_ms {
                    answer["send_pay_date"] = serde_json::Value::String(format_cst(paid));
                }
                answer
            }
            "alipay.trade.close" => match trade.status {
                TradeStatus::WaitBuyerPay => {
                    trade.status = TradeStatus::Closed;
                    serde_json::json!({"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no})
                }
                TradeStatus::Success | TradeStatus::Closed => {
                    business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
                }
            },
            _ => {
                serde_json::json!({"code": "40004", "msg": "Business Failed", "sub_code": "isv.invalid-method"})
            }
        }
    }

    fn signed_response(&self, method: &str, content: &serde_json::Value) -> Response {
        let text = content.to_string();
        let Ok(sign) = self.shared.key.sign_sha256_base64(text.as_bytes()) else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "signing failed").into_response();
        };
        let key = response_key(if method.is_empty() {
            "alipay.error"
        } else {
            method
        });
        let body = format!(
            "{{\"{key}\":{text},\"sign\":{}}}",
            serde_json::Value::String(sign)
        );
        ([("content-type", "application/json; charset=utf-8")], body).into_response()
    }
}

async fn gateway(State(sandbox): State<Sandbox>, body: axum::body::Bytes) -> Response {
    let slow_ms = sandbox.faults().gateway_slow_ms;
    if slow_ms > 0 {
        tokio::time::sleep(Duration::from_millis(slow_ms)).await;
    }
    match serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
        Ok(params) => sandbox.gateway_answer(&params),
        Err(_) => (StatusCode::BAD_REQUEST, "malformed form body").into_response(),
    }
}

#[derive(Deserialize)]
struct PayRequest {
    order_string: String,
}

async fn pay(State(sandbox): State<Sandbox>, Json(request): Json<PayRequest>) -> Response {
    match sandbox.pay(&request.order_string) {
        Ok(charge) => Json(charge).into_response(),
        Err(e) => {
            let status = match e {
                PayError::Expired | PayError::Closed => StatusCode::CONFLICT,
                PayError::Malformed(_) | PayError::UnknownMerchant | PayError::BadSignature => {
                    StatusCode::BAD_REQUEST
                }
            };
            (status, Json(serde_json::json!({"error": e.to_string()}))).into_response()
        }
    }
}

async fn charges(State(sandbox): State<Sandbox>) -> Json<Vec<Charge>> {
    Json(sandbox.charges())
}

async fn stats(State(sandbox): State<Sandbox>) -> Json<Stats> {
    Json(sandbox.stats())
}

async fn get_faults(State(sandbox): State<Sandbox>) -> Json<Faults> {
    Json(sandbox.faults())
}

async fn set_faults(State(sandbox): State<Sandbox>, Json(faults): Json<Faults>) -> Json<Faults> {
    sandbox.set_faults(faults);
    Json(sandbox.faults())
}

async fn public_key(State(sandbox): State<Sandbox>) -> String {
    sandbox.public_key().to_pem()
}
