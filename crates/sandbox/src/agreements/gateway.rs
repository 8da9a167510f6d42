//! The gateway's side of agreements: `alipay.user.agreement.query`,
//! `alipay.user.agreement.unsign`, and `alipay.trade.pay` under an agreement.

use super::{stop, Notice};
use crate::faults;
use crate::notifier::{self, Message};
use crate::state::{Agreement, AgreementState, Charge, Ledger, Trade, TradeStatus};
use crate::{next_trade_no, now_ms, Paid, Sandbox};
use serde_json::{json, Value};
use std::time::Duration;
use zerodrop_domain::money::{Currency, Money};
use zerodrop_providers::alipay::agreement::{PERSONAL_PRODUCT_CODE, SIGN_PRODUCT_CODE, WITHHOLD_PRODUCT_CODE};
use zerodrop_providers::alipay::clock::format_cst;

impl Sandbox {
    /// `alipay.user.agreement.query`, for the merchant app `app_id`.
    pub(crate) fn agreement_query(&self, app_id: &str, biz: &Value) -> Value {
        let Ok(ledger) = self.shared.ledger.lock() else { return unavailable() };
        let Some(agreement) = find(&ledger, app_id, biz) else {
            return business("USER_AGREEMENT_NOT_EXIST", "用户协议不存在");
        };
        let mut answer = json!({
            "code": "10000", "msg": "Success",
            "status": agreement.status.alipay_name(),
            "external_agreement_no": agreement.external_agreement_no,
            "personal_product_code": PERSONAL_PRODUCT_CODE,
            "principal_id": agreement.user_id,
        });
        if agreement.status != AgreementState::Temp {
            answer["agreement_no"] = json!(agreement.agreement_no);
            answer["invalid_time"] = json!(format_cst(agreement.valid_until_ms));
        }
        if let Some(signed) = agreement.signed_at_ms {
            answer["sign_time"] = json!(format_cst(signed));
            answer["valid_time"] = json!(format_cst(signed));
        }
        answer
    }

    /// `alipay.user.agreement.unsign`: STOP and a `dut_user_unsign` notification; an
    /// ended agreement answers success again, without a second notification.
    pub(crate) fn agreement_unsign(&self, app_id: &str, biz: &Value) -> Value {
        let (agreement, changed) = {
            let Ok(mut ledger) = self.shared.ledger.lock() else { return unavailable() };
            let Some(key) = find(&ledger, app_id, biz).map(|a| a.external_agreement_no.clone()) else {
                return business("USER_AGREEMENT_NOT_EXIST", "用户协议不存在");
            };
            let Some(agreement) = ledger.agreements.get_mut(&key) else { return unavailable() };
            let changed = stop(agreement, now_ms());
            (agreement.clone(), changed)
        };
        if changed {
            self.notify_agreement(&agreement, Notice::Unsigned, &self.faults());
        }
        json!({"code": "10000", "msg": "Success"})
    }

    /// `alipay.trade.pay` under an agreement: paid at once, or processing (a fault knob),
    /// or declined.
    pub(crate) fn agreement_pay(&self, app_id: &str, seller_id: &str, biz: &Value, notify_url: &str) -> Value {
        let text = |name: &str| biz.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        let invalid = |what: &str| json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-parameter", "sub_msg": what});
        let agreement_no = biz.pointer("/agreement_params/agreement_no").and_then(Value::as_str).unwrap_or_default();
        let out_trade_no = text("out_trade_no");
        if !matches!(text("product_code").as_str(), WITHHOLD_PRODUCT_CODE | SIGN_PRODUCT_CODE)
            || agreement_no.is_empty()
        {
            return invalid("a charge needs product_code GENERAL_WITHHOLDING and agreement_params.agreement_no");
        }
        if out_trade_no.is_empty() || notify_url.is_empty() {
            return invalid("out_trade_no and notify_url are required");
        }
        let Ok(amount) = Money::parse_decimal(&text("total_amount"), Currency::Cny) else {
            return invalid("total_amount");
        };
        let faults = self.faults();
        let now = now_ms();
        let (answer, trade) = {
            let Ok(mut ledger) = self.shared.ledger.lock() else { return unavailable() };
            if let Some(existing) = ledger.trades.get(&out_trade_no) {
                return match existing.status {
                    TradeStatus::Success => business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付"),
                    TradeStatus::Closed => business("ACQ.TRADE_HAS_CLOSE", "交易已经关闭"),
                    TradeStatus::WaitBuyerPay if ledger.withholding_in_flight.contains(&out_trade_no) => {
                        processing(existing)
                    }
                    // An app-pay order waiting for its user is not a charge to repeat.
                    TradeStatus::WaitBuyerPay => business("ACQ.CONTEXT_INCONSISTENT", "交易信息不一致"),
                };
            }
            let by_no = json!({ "agreement_no": agreement_no });
            let Some(agreement) = find(&ledger, app_id, &by_no).cloned() else {
                return business("ACQ.AGREEMENT_NOT_EXIST", "协议不存在");
            };
            if agreement.status != AgreementState::Normal || now >= agreement.valid_until_ms {
                return business("ACQ.AGREEMENT_STATUS_NOT_NORMAL", "协议状态非正常状态");
            }
            let over_total =
                agreement.total_amount_minor.is_some_and(|total| agreement.charged_minor + amount.minor > total);
            if amount.minor <= 0 || amount.minor > agreement.single_amount_minor || over_total {
                return business("ACQ.BEYOND_PAY_RESTRICTION", "超出协议约定的扣款金额");
            }
            let declined = [agreement.agreement_no.as_str(), agreement.external_agreement_no.as_str()];
            if faults.agreement_decline_nos.iter().any(|no| declined.contains(&no.as_str())) {
                return business("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足");
            }
            let paid = Paid {
                app_id,
                seller_id,
                out_trade_no: out_trade_no.clone(),
                amount,
                subject: text("subject"),
                notify_url: notify_url.to_owned(),
                late: false,
            };
            if faults::roll(faults.agreement_charge_processing_pct) {
                let trade = waiting(&mut ledger, paid, now);
                let answer = processing(&trade);
                ledger.trades.insert(out_trade_no.clone(), trade);
                ledger.withholding_in_flight.insert(out_trade_no.clone());
                drop(ledger);
                self.settle_later(out_trade_no, agreement.external_agreement_no, faults.agreement_charge_settle_ms);
                return answer;
            }
            let (charge, trade) = paid.record(&mut ledger, now);
            ledger.trades.insert(out_trade_no, trade.clone());
            if let Some(agreement) = ledger.agreements.get_mut(&agreement.external_agreement_no) {
                agreement.charged_minor += charge.amount_minor;
            }
            (paid_answer(&trade), trade)
        };
        notifier::plan(&self.shared, &trade, Message::Paid, &faults);
        answer
    }

    /// Pays a processing charge after `wait_ms`, unless it was closed meanwhile. It lands
    /// whatever happened to the agreement since: a charge in flight is not recalled.
    fn settle_later(&self, out_trade_no: String, external_agreement_no: String, wait_ms: i64) {
        let sandbox = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))).await;
            let trade = {
                let Ok(mut ledger) = sandbox.shared.ledger.lock() else { return };
                let now = now_ms();
                ledger.withholding_in_flight.remove(&out_trade_no);
                let Some(trade) = ledger.trades.get_mut(&out_trade_no) else { return };
                if trade.status != TradeStatus::WaitBuyerPay {
                    return;
                }
                trade.status = TradeStatus::Success;
                trade.paid_at_ms = Some(now);
                let trade = trade.clone();
                let charge = Charge {
                    trade_no: trade.trade_no.clone(),
                    out_trade_no: trade.out_trade_no.clone(),
                    amount_minor: trade.amount.minor,
                    paid_at_ms: now,
                    late: false,
                };
                ledger.charges.push(charge);
                if let Some(agreement) = ledger.agreements.get_mut(&external_agreement_no) {
                    agreement.charged_minor += trade.amount.minor;
                }
                trade
            };
            notifier::plan(&sandbox.shared, &trade, Message::Paid, &sandbox.faults());
        });
    }
}

fn business(sub_code: &str, sub_msg: &str) -> Value {
    json!({"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg})
}

fn unavailable() -> Value {
    json!({"code": "20000", "msg": "Service Currently Unavailable"})
}

/// The merchant app's agreement a gateway call names: by the sandbox's number when
/// given (it wins, as at Alipay), else by the merchant's.
fn find<'a>(ledger: &'a Ledger, app_id: &str, biz: &Value) -> Option<&'a Agreement> {
    let named = |name: &str| biz.get(name).and_then(Value::as_str).filter(|v| !v.is_empty());
    let found = match named("agreement_no") {
        Some(no) => ledger.agreements.values().find(|a| a.agreement_no == no),
        None => ledger.agreements.get(named("external_agreement_no")?),
    };
    found.filter(|a| a.app_id == app_id)
}

/// A charge that is processing: a trade waiting for its money, with its trade number.
fn waiting(ledger: &mut Ledger, paid: Paid<'_>, now: i64) -> Trade {
    // Not booked as a charge until it settles (`settle_later`).
    Trade {
        trade_no: next_trade_no(ledger, now),
        out_trade_no: paid.out_trade_no,
        app_id: paid.app_id.to_owned(),
        seller_id: paid.seller_id.to_owned(),
        amount: paid.amount,
        subject: paid.subject,
        status: TradeStatus::WaitBuyerPay,
        created_at_ms: now,
        paid_at_ms: None,
        notify_url: paid.notify_url,
        refunded_minor: 0,
    }
}

fn processing(trade: &Trade) -> Value {
    json!({
        "code": "10003", "msg": "order success pay inprocess",
        "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
        "total_amount": trade.amount.to_decimal(),
    })
}

fn paid_answer(trade: &Trade) -> Value {
    json!({
        "code": "10000", "msg": "Success",
        "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
        "total_amount": trade.amount.to_decimal(),
        "receipt_amount": trade.amount.to_decimal(),
        "gmt_payment": format_cst(trade.paid_at_ms.unwrap_or_else(now_ms)),
        "buyer_logon_id": "use***@example.com",
    })
}
