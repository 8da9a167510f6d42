//! Sends Alipay-style `trade_status_sync` notifications, with the configured faults, and
//! retries unacknowledged ones on Alipay's schedule (scaled).

use crate::faults::{self, Faults};
use crate::state::{Trade, TradeStatus};
use crate::Shared;
use std::sync::Arc;
use std::time::Duration;
use zerodrop_providers::alipay::clock::format_cst;
use zerodrop_providers::alipay::sign::signing_string;

/// Plans the notifications for a payment: maybe none (dropped), maybe two (duplicated),
/// maybe a stale one after the real one (reordered).
pub(crate) fn plan(shared: &Arc<Shared>, trade: &Trade, faults: &Faults) {
    let dropped = faults::roll(faults.drop_rate_pct);
    let duplicated = !dropped && faults::roll(faults.duplicate_rate_pct);
    let stale = !dropped && faults::roll(faults.reorder_rate_pct);
    let first_ms = faults::delay_ms(faults);
    let mut sends: Vec<(TradeStatus, u64)> = Vec::new();
    if !dropped {
        sends.push((TradeStatus::Success, first_ms));
    }
    if duplicated {
        sends.push((TradeStatus::Success, faults::delay_ms(faults)));
    }
    if stale {
        sends.push((
            TradeStatus::WaitBuyerPay,
            first_ms + 1 + faults::delay_ms(faults),
        ));
    }
    if let Ok(mut ledger) = shared.ledger.lock() {
        let stats = &mut ledger.stats;
        stats.notifications_planned += 1;
        stats.notifications_dropped += u64::from(dropped);
        stats.notifications_duplicated += u64::from(duplicated);
        stats.notifications_stale += u64::from(stale);
    }
    for (status, delay_ms) in sends {
        let shared = shared.clone();
        let trade = trade.clone();
        let faults = faults.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            deliver(&shared, &trade, status, &faults).await;
        });
    }
}

/// One notification, retried until acknowledged with exactly `success` or the schedule ends.
async fn deliver(shared: &Arc<Shared>, trade: &Trade, status: TradeStatus, faults: &Faults) {
    let body = match signed_body(shared, trade, status) {
        Some(body) => body,
        None => return,
    };
    let mut retry = 0;
    loop {
        let acknowledged = send_once(shared, &trade.notify_url, &body).await;
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
            tracing::warn!(out_trade_no = %trade.out_trade_no, "sandbox gave up notifying after Alipay's schedule");
            return;
        };
        retry += 1;
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    }
}

async fn send_once(shared: &Shared, url: &str, body: &str) -> bool {
    let response = shared
        .client
        .post(url)
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(body.to_owned())
        .send()
        .await;
    match response {
        Ok(r) => r.text().await.map(|t| t == "success").unwrap_or(false),
        Err(_) => false,
    }
}

fn signed_body(shared: &Shared, trade: &Trade, status: TradeStatus) -> Option<String> {
    let now = crate::now_ms();
    let notify_id = format!("{}{:06}", trade.trade_no, rand::random::<u32>() % 1_000_000);
    let mut params: Vec<(&str, String)> = vec![
        ("notify_time", format_cst(now)),
        ("notify_type", "trade_status_sync".into()),
        ("notify_id", notify_id),
        ("app_id", trade.app_id.clone()),
        ("charset", "utf-8".into()),
        ("version", "1.0".into()),
        ("sign_type", "RSA2".into()),
        ("trade_no", trade.trade_no.clone()),
        ("out_trade_no", trade.out_trade_no.clone()),
        ("buyer_id", "2088102177846880".into()),
        ("seller_id", trade.seller_id.clone()),
        ("trade_status", status.alipay_name().into()),
        ("total_amount", trade.amount.to_decimal()),
        ("subject", trade.subject.clone()),
        ("gmt_create", format_cst(trade.created_at_ms)),
    ];
    if status == TradeStatus::Success {
        let paid = trade.paid_at_ms.unwrap_or(now);
        params.push(("receipt_amount", trade.amount.to_decimal()));
        params.push(("buyer_pay_amount", trade.amount.to_decimal()));
        params.push(("gmt_payment", format_cst(paid)));
    }
    let message = signing_string(params.iter().map(|(k, v)| (*k, v.as_str())), false);
    let sign = shared.key.sign_sha256_base64(message.as_bytes()).ok()?;
    params.push(("sign", sign));
    serde_urlencoded::to_string(&params).ok()
}
