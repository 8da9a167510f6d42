//! The demo's simulated users: what they buy, whether they pay, when.

use crate::stack::Client;
use rand::Rng;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Orders are placed over this long, so they are not all the same age.
pub const ORDER_SPREAD_MS: u64 = 20_000;
/// Late payers pay up to this long after expiry; the sandbox accepts a little longer.
pub const LATE_PAY_AFTER_EXPIRY_MS_MAX: u64 = 20_000;

/// What a simulated user does after ordering.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    PayInTime,
    PayLate,
    Abandon,
}

fn behaviour() -> Behaviour {
    match rand::rng().random_range(0..100) {
        0..=84 => Behaviour::PayInTime,
        85..=89 => Behaviour::PayLate,
        _ => Behaviour::Abandon,
    }
}

/// The mix: mostly diamonds and SVIP, then game cards (stock runs out) and game gold
/// delivered by the platform's own endpoint (which goes down for a while).
fn sku() -> &'static str {
    const SKUS: [&str; 20] = [
        "diamonds_60",
        "diamonds_60",
        "diamonds_60",
        "diamonds_300",
        "diamonds_300",
        "diamonds_980",
        "diamonds_1980",
        "diamonds_3280",
        "diamonds_6480",
        "svip_30d",
        "svip_30d",
        "svip_365d",
        "game_card_50",
        "game_card_50",
        "game_card_50",
        "game_gold_100",
        "game_gold_100",
        "game_gold_100",
        "game_gold_vip",
        "diamonds_60",
    ];
    SKUS[rand::rng().random_range(0..SKUS.len())]
}

#[derive(Default)]
pub struct Counters {
    pub created: AtomicU64,
    pub create_failed: AtomicU64,
    pub payments: AtomicU64,
    pub pay_refused: AtomicU64,
    pub users_done: AtomicU64,
}

pub struct Shared<'a> {
    pub client: &'a Client,
    pub counters: &'a Counters,
    pub order_nos: &'a Mutex<Vec<String>>,
    pub limiter: &'a Semaphore,
    pub ttl_secs: u64,
}

/// One user: orders (retrying with the same Idempotency-Key until answered), then pays in
/// time, pays late, or walks away.
pub async fn simulate(shared: &Shared<'_>, user: &str, n: u32) {
    let spread = rand::rng().random_range(0..ORDER_SPREAD_MS);
    tokio::time::sleep(Duration::from_millis(spread)).await;
    let what = behaviour();
    let body = json!({ "user_id": user, "sku": sku() });
    let key = format!("demo-{n}");
    let created = loop {
        let permit = shared.limiter.acquire().await;
        let result = shared.client.create_order(&body, Some(&key)).await;
        drop(permit);
        match result {
            Ok((201, created)) => break created,
            Ok((status, _)) if (400..500).contains(&status) => {
                shared.counters.create_failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    shared.counters.created.fetch_add(1, Ordering::Relaxed);
    let order_no = created["order"]["order_no"].as_str().unwrap_or_default().to_owned();
    if let Ok(mut list) = shared.order_nos.lock() {
        list.push(order_no);
    }
    let ttl_ms = shared.ttl_secs * 1000;
    let wait_ms = match what {
        Behaviour::PayInTime => rand::rng().random_range(1_000..(ttl_ms - ORDER_SPREAD_MS)),
        Behaviour::PayLate => ttl_ms + rand::rng().random_range(500..LATE_PAY_AFTER_EXPIRY_MS_MAX),
        Behaviour::Abandon => return,
    };
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    let permit = shared.limiter.acquire().await;
    match shared.client.pay(&created).await {
        Ok(Ok(_)) => shared.counters.payments.fetch_add(1, Ordering::Relaxed),
        _ => shared.counters.pay_refused.fetch_add(1, Ordering::Relaxed),
    };
    drop(permit);
}
