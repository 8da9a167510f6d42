//! The sandbox payment provider.
//!
//! A real HTTP service that speaks Alipay's wire format with its own generated keys:
//! `POST /gateway.do` answers `alipay.trade.query`, `alipay.trade.close`, refunds and
//! `alipay.data.dataservice.bill.downloadurl.query` with signed responses (the bill
//! itself is served from the sandbox's books, [`bills`]), and paid trades produce RSA2-signed `trade_status_sync` notifications to
//! the merchant's `notify_url`. Simulated users pay with `POST /sandbox/pay`, handing
//! over the signed app-pay order string zerodrop gave them. The sandbox keeps its own
//! ledger of every charge, so tests compare both sides; its fault knobs drop, duplicate,
//! delay and reorder notifications and fail or slow the gateway. Users also sign and end
//! withholding agreements, which the merchant charges through the gateway
//! ([`agreements`]).

pub mod agreements;
pub mod bills;
pub mod faults;
mod gateway;
mod notifier;
pub mod state;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use faults::Faults;
use serde::Deserialize;
use state::{Charge, Ledger, Merchant, RefundRecord, Stats, Trade, TradeStatus};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zerodrop_domain::money::{Currency, Money};
use zerodrop_providers::alipay::clock::{format_cst, parse_cst};
use zerodrop_providers::alipay::sign::signing_string;
use zerodrop_providers::keys::{RsaPrivateKey, RsaPublicKey};

/// Largest request the sandbox reads. Gateway requests and order strings are small.
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;
/// Time allowed for one notification send before it counts as unacknowledged.
pub const NOTIFY_TIMEOUT_MS: u64 = 5_000;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
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
    pub(crate) shared: Arc<Shared>,
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
        let client = zerodrop_providers::http_client::client(Duration::from_millis(NOTIFY_TIMEOUT_MS))?;
        let shared = Shared { ledger: Mutex::new(Ledger::default()), faults: Mutex::new(faults), key, client };
        Ok(Sandbox { shared: Arc::new(shared) })
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
        self.shared.faults.lock().map(|f| f.clone()).unwrap_or_default()
    }

    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut current) = self.shared.faults.lock() {
            *current = faults;
        }
    }

    /// Every charge made so far: the provider's side of the books.
    pub fn charges(&self) -> Vec<Charge> {
        self.shared.ledger.lock().map(|l| l.charges.clone()).unwrap_or_default()
    }

    /// Every refund paid out so far.
    pub fn refunds(&self) -> Vec<RefundRecord> {
        self.shared.ledger.lock().map(|l| l.refund_records.clone()).unwrap_or_default()
    }

    /// Shows every payment hidden so far (`Faults::hide_rate_pct`) to the gateway's
    /// queries from now on (their notifications stay lost); returns how many there were.
    pub fn reveal_hidden(&self) -> usize {
        self.shared.ledger.lock().map(|mut l| l.hidden.drain().count()).unwrap_or(0)
    }

    /// Finishes every refund still processing now: the refund query reports them
    /// succeeded from here on. A refund's delay is fixed when it is asked for, so a test
    /// that kept one processing for a long time (`refund_delay_ms`) ends it with this
    /// rather than by waiting. Their notifications still go out at the original time.
    pub fn finish_refunds(&self) {
        let now = now_ms();
        if let Ok(mut ledger) = self.shared.ledger.lock() {
            for refund in ledger.refunds.values_mut() {
                refund.completes_at_ms = refund.completes_at_ms.min(now);
            }
        }
    }

    pub fn stats(&self) -> Stats {
        self.shared.ledger.lock().map(|l| l.stats.clone()).unwrap_or_default()
    }

    /// A user pays with the order string the merchant gave them. Paying twice returns
    /// the first charge.
    pub fn pay(&self, order_string: &str) -> Result<Charge, PayError> {
        self.pay_with(order_string, Twist::None)
    }

    /// A payment off the expected path, made with a real order string: the user pays
    /// again, or pays another amount, or the charge names an order number the merchant
    /// never issued. Each makes a trade of its own, charged and notified like any other.
    pub fn pay_with(&self, order_string: &str, twist: Twist) -> Result<Charge, PayError> {
        let faults = self.faults();
        let params: Vec<(String, String)> =
            serde_urlencoded::from_str(order_string).map_err(|e| PayError::Malformed(e.to_string()))?;
        let fields: HashMap<&str, &str> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let field =
            |name: &str| fields.get(name).copied().ok_or_else(|| PayError::Malformed(format!("{name} missing")));
        let app_id = field("app_id")?;
        let notify_url = field("notify_url")?.to_owned();
        let biz: serde_json::Value =
            serde_json::from_str(field("biz_content")?).map_err(|e| PayError::Malformed(e.to_string()))?;
        let biz_text = |name: &str| {
            biz.get(name)
                .and_then(|v| v.as_str())
                .ok_or_else(|| PayError::Malformed(format!("biz_content.{name} missing")))
        };
        let out_trade_no = biz_text("out_trade_no")?.to_owned();
        let amount = Money::parse_decimal(biz_text("total_amount")?, Currency::Cny)
            .map_err(|e| PayError::Malformed(e.to_string()))?;
        let expire_ms = parse_cst(biz_text("time_expire")?).ok_or_else(|| PayError::Malformed("time_expire".into()))?;
        let subject = biz_text("subject")?.to_owned();

        let now = now_ms();
        let mut ledger = self.shared.ledger.lock().map_err(|_| PayError::Malformed("sandbox state poisoned".into()))?;
        let merchant = ledger.merchants.get(app_id).cloned().ok_or(PayError::UnknownMerchant)?;
        let message = signing_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), true);
        if !merchant.app_public_key.verify_sha256_base64(message.as_bytes(), field("sign")?) {
            return Err(PayError::BadSignature);
        }
        if twist != Twist::None {
            // A trade off the expected path: its own trade number, always charged.
            let (out_trade_no, amount) = match twist {
                Twist::Amount(other) => (out_trade_no, other),
                Twist::OrderNo(other) => (other, amount),
                Twist::SecondTrade | Twist::None => (out_trade_no, amount),
            };
            let paid =
                Paid { app_id, seller_id: &merchant.seller_id, out_trade_no, amount, subject, notify_url, late: false };
            let (charge, trade) = paid.record(&mut ledger, now_ms());
            ledger.extra_trades.insert(trade.trade_no.clone(), trade.clone());
            // Notifying takes the ledger's lock: never while holding it.
            drop(ledger);
            let faults = Faults { drop_rate_pct: faults.extra_trade_drop_rate_pct, ..faults };
            notifier::plan(&self.shared, &trade, notifier::Message::Paid, &faults);
            return Ok(charge);
        }
        if let Some(existing) = ledger.trades.get(&out_trade_no) {
            match existing.status {
                TradeStatus::Success => {
                    let charge = ledger.charges.iter().find(|c| c.out_trade_no == out_trade_no).cloned();
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
        if faults::roll(faults.hide_rate_pct) {
            ledger.hidden.insert(out_trade_no.clone());
        }
        let paid = Paid { app_id, seller_id: &merchant.seller_id, out_trade_no, amount, subject, notify_url, late };
        let (charge, trade) = paid.record(&mut ledger, now);
        ledger.trades.insert(trade.out_trade_no.clone(), trade.clone());
        drop(ledger);
        notifier::plan(&self.shared, &trade, notifier::Message::Paid, &faults);
        Ok(charge)
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/gateway.do", post(gateway::handle))
            .route("/sandbox/pay", post(pay))
            .route("/sandbox/agreements", get(agreements::list))
            .route("/sandbox/agreements/sign", post(agreements::sign))
            .route("/sandbox/agreements/unsign", post(agreements::unsign))
            .route("/sandbox/charges", get(charges))
            .route("/sandbox/refunds", get(refunds))
            .route("/sandbox/stats", get(stats))
            .route("/sandbox/faults", get(get_faults).post(set_faults))
            .route("/sandbox/public-key", get(public_key))
            .route("/sandbox/bills/{file}", get(bills::download))
            .route("/sandbox/bill", get(bills::by_date))
            .layer(DefaultBodyLimit::max(REQUEST_BYTES_MAX))
            .with_state(self.clone())
    }

    /// Serves until `shutdown` resolves. Bind port 0 in tests.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await
    }
}

/// How a payment leaves the expected path ([`Sandbox::pay_with`]).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Twist {
    /// The expected path: the order's one trade.
    None,
    /// The user pays an order again: a second trade for the same merchant order number.
    SecondTrade,
    /// The charge is for another amount than the order string's.
    Amount(Money),
    /// The charge names this merchant order number instead.
    OrderNo(String),
}

/// A payment the sandbox takes: a paid trade and the charge in its books.
struct Paid<'a> {
    app_id: &'a str,
    seller_id: &'a str,
    out_trade_no: String,
    amount: Money,
    subject: String,
    notify_url: String,
    late: bool,
}

impl Paid<'_> {
    /// Charges it in the ledger's books; the caller files the trade and notifies it once
    /// the ledger's lock is released.
    fn record(self, ledger: &mut Ledger, now: i64) -> (Charge, Trade) {
        let trade_no = next_trade_no(ledger, now);
        let trade = Trade {
            trade_no: trade_no.clone(),
            out_trade_no: self.out_trade_no.clone(),
            app_id: self.app_id.to_owned(),
            seller_id: self.seller_id.to_owned(),
            amount: self.amount,
            subject: self.subject,
            status: TradeStatus::Success,
            created_at_ms: now,
            paid_at_ms: Some(now),
            notify_url: self.notify_url,
            refunded_minor: 0,
        };
        let charge = Charge {
            trade_no,
            out_trade_no: self.out_trade_no,
            amount_minor: self.amount.minor,
            paid_at_ms: now,
            late: self.late,
        };
        ledger.charges.push(charge.clone());
        (charge, trade)
    }
}

fn next_trade_no(ledger: &mut Ledger, now: i64) -> String {
    ledger.next_trade_seq += 1;
    format!("{}{:012}", format_cst(now).get(..10).unwrap_or("2026-01-01").replace('-', ""), ledger.next_trade_seq)
}

#[derive(Deserialize)]
struct PayRequest {
    order_string: String,
    #[serde(default)]
    twist: Option<Twist>,
}

async fn pay(State(sandbox): State<Sandbox>, Json(request): Json<PayRequest>) -> Response {
    match sandbox.pay_with(&request.order_string, request.twist.unwrap_or(Twist::None)) {
        Ok(charge) => Json(charge).into_response(),
        Err(e) => {
            let status = match e {
                PayError::Expired | PayError::Closed => StatusCode::CONFLICT,
                PayError::Malformed(_) | PayError::UnknownMerchant | PayError::BadSignature => StatusCode::BAD_REQUEST,
            };
            (status, Json(serde_json::json!({"error": e.to_string()}))).into_response()
        }
    }
}

async fn refunds(State(sandbox): State<Sandbox>) -> Json<Vec<RefundRecord>> {
    Json(sandbox.refunds())
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
