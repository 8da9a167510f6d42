//! The sandbox's trade bills: `alipay.data.dataservice.bill.downloadurl.query` hands out
//! a short-lived URL on the sandbox itself, which serves the day's bill written from the
//! sandbox's own books in Alipay's format (a zip of GBK CSVs).
//!
//! A bill lists the trades paid within the CST day (by paid time) and the refunds
//! completed within it (by completion time), for the merchant's account (its seller id).
//! Unlike Alipay, which makes a day's bill the next morning, the sandbox also serves
//! today's bill so far, so a test need not wait for midnight; a future day has none.

use crate::state::{Ledger, Trade};
use crate::{now_ms, Sandbox};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::Cursor;
use zerodrop_domain::bill::{BillHeader, BillLineKind};
use zerodrop_providers::alipay::bill::{BillRow, BillWriter};
use zerodrop_providers::alipay::clock::parse_cst;

/// How long a download URL stays valid, as at Alipay.
pub const BILL_URL_TTL_MS: i64 = 30_000;
const DAY_MS: i64 = 86_400_000;

/// A download URL handed out: whose bill, which day, until when.
#[derive(Clone, Debug)]
pub struct BillGrant {
    pub seller_id: String,
    pub from_ms: i64,
    pub expires_at_ms: i64,
}

/// The start of a CST day (`YYYY-MM-DD`), if it is one.
fn day_start(date: &str) -> Option<i64> {
    (date.len() == 10).then(|| parse_cst(&format!("{date} 00:00:00"))).flatten()
}

/// The line a bill gets, before it is written.
struct Row {
    kind: BillLineKind,
    trade_no: String,
    order_no: String,
    refund_no: String,
    amount_minor: i64,
    created_at_ms: i64,
    finished_at_ms: i64,
    subject: String,
}

fn find_trade<'a>(ledger: &'a Ledger, out_trade_no: &str, trade_no: &str) -> Option<&'a Trade> {
    ledger.extra_trades.get(trade_no).or_else(|| ledger.trades.get(out_trade_no).filter(|t| t.trade_no == trade_no))
}

impl Sandbox {
    /// The trade bill of `seller_id` for the CST day `date` (`YYYY-MM-DD`), as the zip
    /// Alipay serves. Err for a malformed or future date.
    pub fn bill_zip(&self, seller_id: &str, date: &str) -> Result<Vec<u8>, String> {
        let from_ms = day_start(date).ok_or_else(|| format!("{date:?} is not YYYY-MM-DD"))?;
        let now = now_ms();
        if from_ms > now {
            return Err(format!("{date} has not begun"));
        }
        self.bill_zip_from(seller_id, from_ms, now)
    }

    fn bill_zip_from(&self, seller_id: &str, from_ms: i64, now: i64) -> Result<Vec<u8>, String> {
        let to_ms = from_ms + DAY_MS;
        let faults = self.faults();
        let in_day = |at: i64| at >= from_ms && at < to_ms && at <= now;
        let mut rows = Vec::new();
        {
            let ledger = self.shared.ledger.lock().map_err(|_| "sandbox state poisoned".to_owned())?;
            for trade in ledger.trades.values().chain(ledger.extra_trades.values()) {
                let Some(paid) = trade.paid_at_ms.filter(|at| in_day(*at)) else { continue };
                if trade.seller_id != seller_id {
                    continue;
                }
                let delta = faults.bill_add_minor.get(&trade.trade_no).copied().unwrap_or(0);
                rows.push(Row {
                    kind: BillLineKind::Trade,
                    trade_no: trade.trade_no.clone(),
                    order_no: trade.out_trade_no.clone(),
                    refund_no: String::new(),
                    amount_minor: trade.amount.minor + delta,
                    created_at_ms: trade.created_at_ms,
                    finished_at_ms: paid,
                    subject: trade.subject.clone(),
                });
            }
            for record in &ledger.refund_records {
                let key = (record.out_trade_no.clone(), record.request_no.clone());
                let Some(done) = ledger.refunds.get(&key).map(|r| r.completes_at_ms).filter(|at| in_day(*at)) else {
                    continue;
                };
                let Some(trade) = find_trade(&ledger, &record.out_trade_no, &record.trade_no) else { continue };
                if trade.seller_id != seller_id {
                    continue;
                }
                rows.push(Row {
                    kind: BillLineKind::Refund,
                    trade_no: record.trade_no.clone(),
                    order_no: record.out_trade_no.clone(),
                    refund_no: record.request_no.clone(),
                    amount_minor: record.amount_minor,
                    created_at_ms: trade.created_at_ms,
                    finished_at_ms: done,
                    subject: trade.subject.clone(),
                });
            }
        }
        rows.retain(|row| !faults.bill_omit_trade_nos.contains(&row.trade_no));
        rows.sort_by(|a, b| {
            (a.finished_at_ms, &a.trade_no, &a.refund_no).cmp(&(b.finished_at_ms, &b.trade_no, &b.refund_no))
        });
        let header = BillHeader { account: seller_id.to_owned(), from_ms, to_ms };
        let failed = |e: std::io::Error| format!("writing the bill: {e}");
        let mut writer = BillWriter::new(Cursor::new(Vec::new()), &header).map_err(failed)?;
        for row in &rows {
            writer
                .write(&BillRow {
                    kind: row.kind,
                    trade_no: &row.trade_no,
                    order_no: &row.order_no,
                    refund_no: &row.refund_no,
                    amount_minor: row.amount_minor,
                    created_at_ms: row.created_at_ms,
                    finished_at_ms: row.finished_at_ms,
                    subject: &row.subject,
                })
                .map_err(failed)?;
        }
        let (zip, _) = writer.finish(now).map_err(failed)?;
        Ok(zip.into_inner())
    }

    /// Answers `alipay.data.dataservice.bill.downloadurl.query` for `seller_id`, with a
    /// URL on `host` (the address the merchant reached the sandbox at).
    pub(crate) fn bill_url(&self, seller_id: &str, biz: &Value, host: Option<&str>) -> Value {
        let text = |name: &str| biz.get(name).and_then(Value::as_str).unwrap_or_default();
        let invalid = json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-parameter"});
        let (Some(from_ms), "trade", Some(host)) = (day_start(text("bill_date")), text("bill_type"), host) else {
            return invalid;
        };
        let now = now_ms();
        if from_ms > now {
            return json!({"code": "40004", "msg": "Business Failed", "sub_code": "isp.bill_not_exist", "sub_msg": "账单不存在"});
        }
        let token = format!("{:032x}", rand::random::<u128>());
        let Ok(mut ledger) = self.shared.ledger.lock() else {
            return json!({"code": "20000", "msg": "Service Currently Unavailable"});
        };
        ledger.bill_grants.retain(|_, grant| grant.expires_at_ms > now);
        let grant = BillGrant { seller_id: seller_id.to_owned(), from_ms, expires_at_ms: now + BILL_URL_TTL_MS };
        ledger.bill_grants.insert(token.clone(), grant);
        json!({"code": "10000", "msg": "Success", "bill_download_url": format!("http://{host}/sandbox/bills/{token}.zip")})
    }
}

fn zip_response(bytes: Vec<u8>) -> Response {
    ([("content-type", "application/zip")], bytes).into_response()
}

/// `GET /sandbox/bills/{token}.zip`: the bill a download URL was handed out for.
pub(crate) async fn download(State(sandbox): State<Sandbox>, Path(file): Path<String>) -> Response {
    let now = now_ms();
    let token = file.strip_suffix(".zip").unwrap_or_default();
    let grant = sandbox.shared.ledger.lock().ok().and_then(|l| l.bill_grants.get(token).cloned());
    let Some(grant) = grant.filter(|g| g.expires_at_ms > now) else {
        return (StatusCode::NOT_FOUND, "no such bill, or its URL has expired").into_response();
    };
    match sandbox.bill_zip_from(&grant.seller_id, grant.from_ms, now) {
        Ok(bytes) => zip_response(bytes),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct BillQuery {
    date: String,
    /// Whose bill; may be left out when the sandbox has one merchant.
    seller_id: Option<String>,
}

/// `GET /sandbox/bill?date=YYYY-MM-DD[&seller_id=…]`: a bill without the gateway, for tests.
pub(crate) async fn by_date(State(sandbox): State<Sandbox>, Query(query): Query<BillQuery>) -> Response {
    let seller_id = match query.seller_id {
        Some(seller_id) => seller_id,
        None => {
            let sellers: Vec<String> = sandbox
                .shared
                .ledger
                .lock()
                .map(|l| l.merchants.values().map(|m| m.seller_id.clone()).collect())
                .unwrap_or_default();
            match sellers.as_slice() {
                [one] => one.clone(),
                _ => {
                    return (StatusCode::BAD_REQUEST, "name the seller_id: the sandbox has several merchants, or none")
                        .into_response()
                }
            }
        }
    };
    match sandbox.bill_zip(&seller_id, &query.date) {
        Ok(bytes) => zip_response(bytes),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}
