//! Verifying and reading Alipay's asynchronous notifications.

use super::clock::parse_cst;
use super::form::Form;
use super::AlipayConfig;
use crate::{Notice, NoticeStatus, RefundNotice, RejectCode, Rejection};
use std::collections::HashMap;
use zerodrop_domain::money::{Currency, Money};

/// Notification types whose signed string leaves out `sign_type` (Alipay's documented
/// rule for notify_url messages). Other types sign it too.
/// The withholding agreement's notifications are signed as trade notifications are.
const TYPES_WITHOUT_SIGN_TYPE: &[&str] = &["trade_status_sync", "dut_user_sign", "dut_user_unsign"];

/// A refusal before the signature verified: anyone could have sent it.
pub(super) fn reject(code: RejectCode, detail: impl Into<String>, order_no: Option<&str>) -> Rejection {
    Rejection { code, detail: detail.into(), order_no: order_no.map(str::to_owned), signed: false }
}

/// A refusal of a message whose signature verified: the provider sent it.
pub(super) fn reject_signed(code: RejectCode, detail: impl Into<String>, order_no: Option<&str>) -> Rejection {
    Rejection { signed: true, ..reject(code, detail, order_no) }
}

/// The `charset` parameter of a `Content-Type` header, if it has one.
fn header_charset(headers: &http::HeaderMap) -> Option<&str> {
    let content_type = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    content_type.split(';').filter_map(|p| p.trim().strip_prefix("charset=")).next().map(|c| c.trim_matches('"'))
}

/// Notification types of trades, read by [`verify`].
const TRADE_TYPES: &[&str] = &["trade_status_sync"];

/// A notification whose signature verified and whose app id is this merchant's: its
/// fields, and which order it claims (for refusals).
pub(super) struct Verified {
    pub(super) fields: HashMap<String, String>,
    pub(super) notify_type: String,
    claimed_order: Option<String>,
}

impl Verified {
    /// A field that is present and not empty.
    pub(super) fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A field that must be there: a genuine message without it is malformed.
    pub(super) fn required(&self, name: &'static str) -> Result<&str, Rejection> {
        self.field(name).ok_or_else(|| {
            reject_signed(RejectCode::Malformed, format!("{name} is missing"), self.claimed_order.as_deref())
        })
    }

    /// A signed refusal of this message.
    pub(super) fn refuse(&self, code: RejectCode, detail: impl Into<String>) -> Rejection {
        reject_signed(code, detail, self.claimed_order.as_deref())
    }
}

/// Verifies the signature (over the body's bytes in its own charset, see [`Form`]),
/// then that the notification is for this merchant's app, and that its type is one of
/// `types`. Shared by trade and agreement notifications: one check, two readers.
pub(super) fn verified(
    config: &AlipayConfig,
    headers: &http::HeaderMap,
    body: &[u8],
    types: &[&str],
) -> Result<Verified, Rejection> {
    let form = Form::parse(body, header_charset(headers))
        .map_err(|e| reject(RejectCode::Malformed, format!("not a form body: {e}"), None))?;
    let mut fields: HashMap<String, String> = HashMap::with_capacity(form.fields.len());
    for (k, v) in &form.fields {
        if fields.insert(k.clone(), v.clone()).is_some() {
            return Err(reject(RejectCode::Malformed, format!("field {k} appears twice"), None));
        }
    }
    // Read only to say which order a refused message claims; trusted after the signature.
    let claimed_order = fields.get("out_trade_no").filter(|v| !v.is_empty()).cloned();
    let sign = fields
        .get("sign")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| reject(RejectCode::MissingSignature, "no sign field", claimed_order.as_deref()))?;
    if let Some(sign_type) = fields.get("sign_type") {
        if sign_type != "RSA2" {
            return Err(reject(
                RejectCode::BadSignature,
                format!("sign_type {sign_type:?} is not RSA2"),
                claimed_order.as_deref(),
            ));
        }
    }
    let notify_type = fields.get("notify_type").cloned().unwrap_or_default();
    let keep_sign_type = !TYPES_WITHOUT_SIGN_TYPE.contains(&notify_type.as_str());
    let message = form.signing_bytes(keep_sign_type);
    if !config.alipay_public_key.verify_sha256_base64(&message, sign) {
        return Err(reject(
            RejectCode::BadSignature,
            "signature does not verify under the Alipay public key",
            claimed_order.as_deref(),
        ));
    }
    let verified = Verified { fields, notify_type, claimed_order };
    if verified.required("app_id")? != config.app_id {
        return Err(verified.refuse(RejectCode::WrongApp, "app_id is not this merchant's"));
    }
    if !types.contains(&verified.notify_type.as_str()) {
        let detail = format!("notify_type {:?} is not handled here", verified.notify_type);
        return Err(verified.refuse(RejectCode::UnsupportedType, detail));
    }
    Ok(verified)
}

/// Verifies a trade notification (see [`verified`]), then that it is for this merchant's
/// seller account, then reads the payment it reports.
pub(super) fn verify(config: &AlipayConfig, headers: &http::HeaderMap, body: &[u8]) -> Result<Notice, Rejection> {
    let verified = verified(config, headers, body, TRADE_TYPES)?;
    let claimed_order = verified.claimed_order.as_deref();
    let field = |name: &str| verified.field(name);
    let required = |name: &'static str| verified.required(name);
    if required("seller_id")? != config.seller_id {
        return Err(reject_signed(RejectCode::WrongSeller, "seller_id is not this merchant's", claimed_order));
    }
    let order_no = required("out_trade_no")?;
    let status = match required("trade_status")? {
        "TRADE_SUCCESS" | "TRADE_FINISHED" => {
            let total = required("total_amount")?;
            let amount = Money::parse_decimal(total, Currency::Cny)
                .map_err(|e| reject_signed(RejectCode::BadAmount, e.to_string(), Some(order_no)))?;
            NoticeStatus::Paid { amount, paid_at_ms: field("gmt_payment").and_then(parse_cst) }
        }
        "WAIT_BUYER_PAY" => NoticeStatus::AwaitingPayment,
        "TRADE_CLOSED" => NoticeStatus::Closed,
        other => {
            return Err(reject_signed(RejectCode::Malformed, format!("unknown trade_status {other:?}"), Some(order_no)))
        }
    };
    // A refund shows as `refund_fee` (the trade's refunded total), `gmt_refund` and
    // `out_biz_no` (our refund request number) on a TRADE_SUCCESS or TRADE_CLOSED notice.
    let refund = match field("refund_fee") {
        Some(fee) => {
            let refunded_total = Money::parse_decimal(fee, Currency::Cny)
                .map_err(|e| reject_signed(RejectCode::BadAmount, format!("refund_fee: {e}"), Some(order_no)))?;
            (refunded_total.minor > 0).then(|| RefundNotice {
                request_no: field("out_biz_no").map(str::to_owned),
                refunded_total,
                at_ms: field("gmt_refund").and_then(parse_cst_fraction),
            })
        }
        None => None,
    };
    Ok(Notice {
        notify_id: field("notify_id").map(str::to_owned),
        order_no: order_no.to_owned(),
        trade_no: field("trade_no").map(str::to_owned),
        status,
        refund,
    })
}

/// `gmt_refund` carries milliseconds ("2019-08-15 15:56:24.123"); other times do not.
fn parse_cst_fraction(text: &str) -> Option<i64> {
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let millis: i64 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
    parse_cst(seconds).map(|ms| ms + millis)
}
