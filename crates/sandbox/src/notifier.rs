//! Sends Alipay-style `trade_status_sync` notifications, with the configured faults, and
//! retries unacknowledged ones on Alipay's schedule (scaled). Agreement notifications
//! ([`crate::agreements`]) are signed and sent by the same functions.

use crate::faults::{self, Faults};
use crate::state::Trade;
use crate::Shared;
use std::sync::Arc;
use std::time::Duration;
use zerodrop_domain::money::{format_minor, Money};
use zerodrop_providers::alipay::clock::format_cst;
use zerodrop_providers::alipay::form;
use zerodrop_providers::alipay::sign::signing_string;

/// What a notification says about the trade.
#[derive(Clone, Debug)]
pub(crate) enum Message {
    Paid,
    /// A stale "waiting for payment" that arrives after the payment (reordering).
    Stale,
    /// A refund went through; `refunded_total_minor` is the trade's refunded total.
    Refunded {
        request_no: String,
        refunded_total_minor: i64,
        at_ms: i64,
        closed: bool,
    },
}

/// Plans the notifications for a payment or a refund: maybe none (dropped), maybe two
/// (duplicated), and for payments maybe a stale one after the real one (reordered).
pub(crate) fn plan(shared: &Arc<Shared>, trade: &Trade, message: Message, faults: &Faults) {
    let hidden = shared.ledger.lock().map(|l| l.hidden.contains(&trade.out_trade_no)).unwrap_or(false);
    let dropped = hidden || faults::roll(faults.drop_rate_pct);
    let duplicated = !dropped && faults::roll(faults.duplicate_rate_pct);
    let stale = !dropped && matches!(message, Message::Paid) && faults::roll(faults.reorder_rate_pct);
    let first_ms = faults::delay_ms(faults);
    let mut sends: Vec<(Message, u64)> = Vec::new();
    if !dropped {
        sends.push((message.clone(), first_ms));
    }
    if duplicated {
        sends.push((message, faults::delay_ms(faults)));
    }
    if stale {
        sends.push((Message::Stale, first_ms + 1 + faults::delay_ms(faults)));
    }
    if let Ok(mut ledger) = shared.ledger.lock() {
        let stats = &mut ledger.stats;
        stats.notifications_planned += 1;
        stats.notifications_dropped += u64::from(dropped);
        stats.notifications_duplicated += u64::from(duplicated);
        stats.notifications_stale += u64::from(stale);
    }
    for (message, delay_ms) in sends {
        let shared = shared.clone();
        let trade = trade.clone();
        let faults = faults.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            deliver(&shared, &trade, &message, &faults).await;
        });
    }
}

/// One notification, retried until acknowledged with exactly `success` or the schedule ends.
async fn deliver(shared: &Arc<Shared>, trade: &Trade, message: &Message, faults: &Faults) {
    let Some(body) = signed_body(shared, trade, message, faults.notify_in_gbk) else { return };
    deliver_body(shared, &trade.notify_url, &body, faults, &trade.out_trade_no).await;
}

/// Sends a signed notification body to `url` until it is acknowledged with exactly
/// `success`, or Alipay's retry schedule ends. `about` names it in the log.
pub(crate) async fn deliver_body(shared: &Shared, url: &str, body: &str, faults: &Faults, about: &str) {
    let mut retry = 0;
    loop {
        let acknowledged = send_once(shared, url, body, faults.notify_in_gbk).await;
        if let Ok(mut ledger) = shared.ledger.lock() {
            ledger.stats.sends += 1;
            if acknowledged {
                ledger.stats.sends_acknowledged += 1;
            } else {
                ledger.stats.sends_refused += 1;
            }
        }
        if acknowledged {
            return;
        }
        let Some(wait_ms) = faults::retry_delay_ms(faults, retry) else {
            tracing::warn!(%about, "sandbox gave up notifying after Alipay's schedule");
            return;
        };
        retry += 1;
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    }
}

async fn send_once(shared: &Shared, url: &str, body: &str, gbk: bool) -> bool {
    let content_type = if gbk {
        "application/x-www-form-urlencoded; charset=GBK"
    } else {
        "application/x-www-form-urlencoded; charset=utf-8"
    };
    let response = shared.client.post(url).header("content-type", content_type).body(body.to_owned()).send().await;
    match response {
        Ok(r) => r.text().await.map(|t| t == "success").unwrap_or(false),
        Err(_) => false,
    }
}

/// The notification's form body, signed as Alipay signs it: over the signing string's
/// bytes in the body's charset (GBK when `gbk`, else UTF-8).
pub(crate) fn signed_body(shared: &Shared, trade: &Trade, message: &Message, gbk: bool) -> Option<String> {
    let now = crate::now_ms();
    let notify_id = format!("{}{:06}", trade.trade_no, rand::random::<u32>() % 1_000_000);
    let status = match message {
        Message::Paid => "TRADE_SUCCESS",
        Message::Stale => "WAIT_BUYER_PAY",
        Message::Refunded { closed: true, .. } => "TRADE_CLOSED",
        Message::Refunded { closed: false, .. } => "TRADE_SUCCESS",
    };
    let mut params: Vec<(&str, String)> = vec![
        ("notify_time", format_cst(now)),
        ("notify_type", "trade_status_sync".into()),
        ("notify_id", notify_id),
        ("app_id", trade.app_id.clone()),
        ("charset", if gbk { "GBK".into() } else { "utf-8".into() }),
        ("version", "1.0".into()),
        ("sign_type", "RSA2".into()),
        ("trade_no", trade.trade_no.clone()),
        ("out_trade_no", trade.out_trade_no.clone()),
        ("buyer_id", "2088102177846880".into()),
        ("seller_id", trade.seller_id.clone()),
        ("trade_status", status.into()),
        ("total_amount", trade.amount.to_decimal()),
        ("subject", trade.subject.clone()),
        ("gmt_create", format_cst(trade.created_at_ms)),
    ];
    if gbk {
        // A description in Chinese too, as an app's order carries it.
        params.push(("body", format!("{} · 游戏充值", trade.subject)));
    }
    if !matches!(message, Message::Stale) {
        params.push(("receipt_amount", trade.amount.to_decimal()));
        params.push(("buyer_pay_amount", trade.amount.to_decimal()));
        params.push(("gmt_payment", format_cst(trade.paid_at_ms.unwrap_or(now))));
    }
    if let Message::Refunded { request_no, refunded_total_minor, at_ms, .. } = message {
        let total = Money::new(*refunded_total_minor, trade.amount.currency);
        params.push(("refund_fee", format_minor(total.minor, total.currency.exponent())));
        params.push(("gmt_refund", format!("{}.{:03}", format_cst(*at_ms), at_ms.rem_euclid(1000))));
        params.push(("out_biz_no", request_no.clone()));
    }
    sign_form(shared, params, gbk)
}

/// Signs notification fields as Alipay signs its notifications (without `sign_type`,
/// over the signing string's bytes in the body's charset) and form-encodes them.
pub(crate) fn sign_form(shared: &Shared, mut params: Vec<(&str, String)>, gbk: bool) -> Option<String> {
    let message = signing_string(params.iter().map(|(k, v)| (*k, v.as_str())), false);
    let bytes = if gbk { encoding_rs::GBK.encode(&message).0.into_owned() } else { message.into_bytes() };
    let sign = shared.key.sign_sha256_base64(&bytes).ok()?;
    params.push(("sign", sign));
    Some(form::encode(&params, gbk))
}
