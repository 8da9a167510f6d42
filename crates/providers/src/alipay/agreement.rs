//! Alipay's withholding agreements (周期扣款, product `CYCLE_PAY_AUTH`): the sign request,
//! the `dut_user_sign` / `dut_user_unsign` notifications, `alipay.user.agreement.query`,
//! `alipay.user.agreement.unsign`, and charges with `alipay.trade.pay` under an
//! agreement. See [`crate::agreement`] for the flow.

use super::clock::{format_cst, parse_cst};
use super::gateway::{self, Answer};
use super::notify;
use super::AlipayConfig;
use crate::agreement::AGREEMENT_PERIOD_DAYS_MIN;
use crate::{
    AgreementNotice, AgreementNoticeKind, AgreementRef, AgreementSignRef, AgreementStatus, OrderRef, PaymentStatus,
    ProviderError, RejectCode, Rejection, SignedAnswer, UnsignOutcome,
};
use serde_json::{json, Map, Value};
use zerodrop_domain::money::{Currency, Money};

pub(super) const SIGN_METHOD: &str = "alipay.user.agreement.page.sign";
const QUERY_METHOD: &str = "alipay.user.agreement.query";
const UNSIGN_METHOD: &str = "alipay.user.agreement.unsign";
/// The charge: an ordinary trade, paid from the agreement.
pub(crate) const PAY_METHOD: &str = "alipay.trade.pay";

/// The user's side of a cycle agreement (what query and unsign name with our number).
pub const PERSONAL_PRODUCT_CODE: &str = "CYCLE_PAY_AUTH_P";
/// The merchant's side of a cycle agreement.
pub const SIGN_PRODUCT_CODE: &str = "CYCLE_PAY_AUTH";
/// The scene the merchant's agreement template is registered under (digital memberships).
pub const SIGN_SCENE: &str = "INDUSTRY|DIGITAL_MEDIA";
/// Signing happens on the Alipay app's page.
const SIGN_CHANNEL: &str = "ALIPAYAPP";
/// The product code of a charge under an agreement.
pub const WITHHOLD_PRODUCT_CODE: &str = "GENERAL_WITHHOLDING";

/// The notification types read here; a trade's `trade_status_sync` is refused.
const AGREEMENT_TYPES: &[&str] = &["dut_user_sign", "dut_user_unsign"];

/// Query and unsign answer this when the provider has no such agreement.
const AGREEMENT_NOT_EXIST: &str = "USER_AGREEMENT_NOT_EXIST";
/// `alipay.trade.pay` answers this for an order number already paid: the charge went
/// through before (a retry), and the trade query says with what.
const TRADE_HAS_SUCCESS: &str = "ACQ.TRADE_HAS_SUCCESS";
/// `alipay.trade.pay`'s "processing" code: the outcome comes later; query the trade.
const CODE_PROCESSING: &str = "10003";

pub(super) fn sign_instructions(config: &AlipayConfig, sign: &AgreementSignRef) -> Result<Value, ProviderError> {
    if sign.period_days < AGREEMENT_PERIOD_DAYS_MIN {
        return Err(ProviderError::Config(format!(
            "an agreement period of {} days is shorter than Alipay's {AGREEMENT_PERIOD_DAYS_MIN}",
            sign.period_days
        )));
    }
    let positive_cny = |money: &Money| money.minor > 0 && money.currency == Currency::Cny;
    if !positive_cny(&sign.single_amount) || !sign.total_amount.as_ref().is_none_or(positive_cny) {
        return Err(ProviderError::Config("agreement amounts must be positive CNY".into()));
    }
    let execute_date = format_cst(sign.first_charge_at_ms).get(..10).map(str::to_owned).unwrap_or_default();
    let mut period_rule = json!({
        "period_type": "DAY",
        "period": sign.period_days,
        "execute_time": execute_date,
        "single_amount": sign.single_amount.to_decimal(),
    });
    if let Some(total) = &sign.total_amount {
        period_rule["total_amount"] = Value::String(total.to_decimal());
    }
    let biz = json!({
        "personal_product_code": PERSONAL_PRODUCT_CODE,
        "product_code": SIGN_PRODUCT_CODE,
        "sign_scene": SIGN_SCENE,
        "external_agreement_no": sign.external_agreement_no,
        "access_params": { "channel": SIGN_CHANNEL },
        "period_rule_params": period_rule,
    });
    let notify_url = sign.notify_url.as_deref().unwrap_or(&config.notify_url);
    let sign_request = gateway::signed_params(config, SIGN_METHOD, &biz, Some(notify_url))?;
    Ok(json!({
        "method": SIGN_METHOD,
        "sign_request": sign_request,
        "sign_url": format!("{}?{sign_request}", config.gateway_url),
    }))
}

/// Verifies an agreement notification (signature and app id as for trades) and reads it.
pub(super) fn verify_notification(
    config: &AlipayConfig,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<AgreementNotice, Rejection> {
    let verified = notify::verified(config, headers, body, AGREEMENT_TYPES)?;
    let time = |name: &'static str| -> Result<i64, Rejection> {
        let text = verified.required(name)?;
        parse_cst(text).ok_or_else(|| verified.refuse(RejectCode::Malformed, format!("{name} is not a CST time")))
    };
    let expect_status = |expected: &str| -> Result<(), Rejection> {
        match verified.required("status")? {
            status if status == expected => Ok(()),
            other => Err(verified.refuse(
                RejectCode::Malformed,
                format!("status {other:?} does not go with notify_type {:?}", verified.notify_type),
            )),
        }
    };
    let kind = match verified.notify_type.as_str() {
        "dut_user_sign" => {
            expect_status("NORMAL")?;
            AgreementNoticeKind::Signed { signed_at_ms: time("sign_time")?, valid_until_ms: time("invalid_time")? }
        }
        "dut_user_unsign" => {
            expect_status("UNSIGN")?;
            AgreementNoticeKind::Unsigned { unsigned_at_ms: time("unsign_time")? }
        }
        other => {
            // `verified` admits only AGREEMENT_TYPES; kept exhaustive for a type added there.
            return Err(verified.refuse(RejectCode::UnsupportedType, format!("notify_type {other:?} is not handled")));
        }
    };
    Ok(AgreementNotice {
        notify_id: verified.field("notify_id").map(str::to_owned),
        external_agreement_no: verified.required("external_agreement_no")?.to_owned(),
        agreement_no: verified.required("agreement_no")?.to_owned(),
        kind,
    })
}

/// How query and unsign name an agreement: the provider's number when known, else ours
/// with the product and scene it was signed under (Alipay needs all three).
fn naming(agreement: &AgreementRef) -> Value {
    let mut biz = json!({
        "personal_product_code": PERSONAL_PRODUCT_CODE,
        "sign_scene": SIGN_SCENE,
        "external_agreement_no": agreement.external_agreement_no,
    });
    if let Some(no) = &agreement.agreement_no {
        biz["agreement_no"] = Value::String(no.clone());
    }
    biz
}

/// A genuine answer about another agreement settles nothing.
fn check_names(agreement: &AgreementRef, fields: &Map<String, Value>) -> Result<(), ProviderError> {
    let named = |name: &str| fields.get(name).and_then(Value::as_str).filter(|v| !v.is_empty());
    let external_differs = named("external_agreement_no").is_some_and(|no| no != agreement.external_agreement_no);
    let theirs_differs =
        matches!((named("agreement_no"), agreement.agreement_no.as_deref()), (Some(a), Some(b)) if a != b);
    if external_differs || theirs_differs {
        return Err(ProviderError::BadResponse(format!(
            "the answer is about another agreement than {}",
            agreement.external_agreement_no
        )));
    }
    Ok(())
}

pub(super) async fn query(
    client: &reqwest::Client,
    config: &AlipayConfig,
    agreement: &AgreementRef,
) -> Result<AgreementStatus, ProviderError> {
    let fields = match gateway::call_notifying(client, config, QUERY_METHOD, naming(agreement), None).await? {
        Answer::Success(fields, _) => fields,
        Answer::Failure { sub_code, .. } if sub_code == AGREEMENT_NOT_EXIST => return Ok(AgreementStatus::NotFound),
        Answer::Failure { code, sub_code, message } => return Err(ProviderError::Refused { code, sub_code, message }),
    };
    check_names(agreement, &fields)?;
    read_agreement(&fields)
}

fn read_agreement(fields: &Map<String, Value>) -> Result<AgreementStatus, ProviderError> {
    let text = |name: &str| fields.get(name).and_then(Value::as_str).filter(|v| !v.is_empty());
    let time = |name: &str| {
        text(name)
            .and_then(parse_cst)
            .ok_or_else(|| ProviderError::BadResponse(format!("a signed agreement without a readable {name}")))
    };
    match text("status").unwrap_or_default() {
        "TEMP" => Ok(AgreementStatus::Temp),
        "NORMAL" => Ok(AgreementStatus::Normal {
            agreement_no: text("agreement_no")
                .ok_or_else(|| ProviderError::BadResponse("a signed agreement without agreement_no".into()))?
                .to_owned(),
            signed_at_ms: time("sign_time")?,
            valid_until_ms: time("invalid_time")?,
        }),
        // The query does not say when it stopped; a provider that adds `unsign_time` is read.
        "STOP" => Ok(AgreementStatus::Stopped { at_ms: text("unsign_time").and_then(parse_cst) }),
        other => Err(ProviderError::BadResponse(format!("unknown agreement status {other:?}"))),
    }
}

pub(super) async fn unsign(
    client: &reqwest::Client,
    config: &AlipayConfig,
    agreement: &AgreementRef,
) -> Result<UnsignOutcome, ProviderError> {
    match gateway::call_notifying(client, config, UNSIGN_METHOD, naming(agreement), None).await? {
        Answer::Success(fields, _) => {
            check_names(agreement, &fields)?;
            Ok(UnsignOutcome::Unsigned)
        }
        Answer::Failure { sub_code, .. } if sub_code == AGREEMENT_NOT_EXIST => Ok(UnsignOutcome::NotFound),
        Answer::Failure { code, sub_code, message } => Err(ProviderError::Refused { code, sub_code, message }),
    }
}

pub(super) async fn charge(
    client: &reqwest::Client,
    config: &AlipayConfig,
    order: &OrderRef,
    agreement_no: &str,
) -> Result<PaymentStatus, ProviderError> {
    if agreement_no.is_empty() {
        return Err(ProviderError::Config("a charge under an agreement needs its agreement_no".into()));
    }
    let biz = json!({
        "out_trade_no": order.order_no,
        "total_amount": order.amount.to_decimal(),
        "subject": order.subject,
        "product_code": WITHHOLD_PRODUCT_CODE,
        "agreement_params": { "agreement_no": agreement_no },
        "time_expire": format_cst(order.expires_at_ms),
    });
    // The paid trade's `trade_status_sync` goes where every trade's does.
    match gateway::call_notifying(client, config, PAY_METHOD, biz, Some(&config.notify_url)).await? {
        Answer::Success(fields, signed) => read_pay(&fields, &order.order_no, Some(signed)),
        Answer::Failure { code, .. } if code == CODE_PROCESSING => Ok(PaymentStatus::AwaitingPayment),
        Answer::Failure { sub_code, .. } if sub_code == TRADE_HAS_SUCCESS => {
            gateway::query(client, config, order).await
        }
        Answer::Failure { code, sub_code, message } => Err(ProviderError::Refused { code, sub_code, message }),
    }
}

/// What a successful `alipay.trade.pay` answer about `order_no` says. Code 10000 is a
/// paid trade; its `trade_status`, when given, must agree.
pub(crate) fn read_pay(
    fields: &Map<String, Value>,
    order_no: &str,
    signed: Option<SignedAnswer>,
) -> Result<PaymentStatus, ProviderError> {
    let text = |name: &str| fields.get(name).and_then(Value::as_str).filter(|v| !v.is_empty());
    if text("out_trade_no").is_some_and(|no| no != order_no) {
        return Err(ProviderError::BadResponse("answer is about another order".into()));
    }
    match text("trade_status") {
        None | Some("TRADE_SUCCESS") | Some("TRADE_FINISHED") => {}
        Some("WAIT_BUYER_PAY") => return Ok(PaymentStatus::AwaitingPayment),
        Some(other) => return Err(ProviderError::BadResponse(format!("a charge answered trade_status {other:?}"))),
    }
    let trade_no = text("trade_no").ok_or_else(|| ProviderError::BadResponse("paid charge without trade_no".into()))?;
    let total =
        text("total_amount").ok_or_else(|| ProviderError::BadResponse("paid charge without total_amount".into()))?;
    let amount = Money::parse_decimal(total, Currency::Cny).map_err(|e| ProviderError::BadResponse(e.to_string()))?;
    Ok(PaymentStatus::Paid {
        trade_no: trade_no.to_owned(),
        amount,
        paid_at_ms: text("gmt_payment").and_then(parse_cst),
        answer: signed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn a_paid_charge_reads_exact_fen() {
        let answer = fields(json!({
            "code": "10000", "out_trade_no": "N1", "trade_no": "T1",
            "total_amount": "25.01", "gmt_payment": "2019-08-15 15:56:24",
        }));
        let status = read_pay(&answer, "N1", None).unwrap();
        assert_eq!(
            status,
            PaymentStatus::Paid {
                trade_no: "T1".into(),
                amount: Money::new(2501, Currency::Cny),
                paid_at_ms: Some(1_565_855_784_000),
                answer: None
            }
        );
        assert!(matches!(read_pay(&answer, "N2", None), Err(ProviderError::BadResponse(_))));
        let odd = fields(json!({"out_trade_no": "N1", "trade_no": "T1", "total_amount": "25.011"}));
        assert!(matches!(read_pay(&odd, "N1", None), Err(ProviderError::BadResponse(_))), "no fraction of a fen");
    }

    #[test]
    fn agreement_statuses_read() {
        let normal = fields(json!({
            "status": "NORMAL", "agreement_no": "A1",
            "sign_time": "2019-08-15 15:56:24", "invalid_time": "2115-02-01 00:00:00",
        }));
        let AgreementStatus::Normal { agreement_no, signed_at_ms, valid_until_ms } = read_agreement(&normal).unwrap()
        else {
            panic!("not normal")
        };
        assert_eq!((agreement_no.as_str(), signed_at_ms), ("A1", 1_565_855_784_000));
        assert!(valid_until_ms > signed_at_ms);
        assert_eq!(read_agreement(&fields(json!({"status": "TEMP"}))).unwrap(), AgreementStatus::Temp);
        assert_eq!(
            read_agreement(&fields(json!({"status": "STOP"}))).unwrap(),
            AgreementStatus::Stopped { at_ms: None }
        );
        assert!(read_agreement(&fields(json!({"status": "NORMAL", "agreement_no": "A1"}))).is_err());
        assert!(read_agreement(&fields(json!({"status": "PAUSED"}))).is_err());
    }
}
