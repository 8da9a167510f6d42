//! The demo's simulated users: what they buy, whether they pay, when.

use crate::stack::{Client, Twist};
use rand::Rng;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Semaphore;
use zerodrop_domain::money::{Currency, Money};

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
    /// Pays, then pays the same order again (a double tap, a second device): the second
    /// trade is refunded in full.
    PayTwice,
    /// Pays another amount first (the refund follows), then the right one.
    PayWrongAmount,
    /// Pays an order number zerodrop never issued (a stale app cache), then the real
    /// order: that charge is refunded when the park window ends.
    PayUnknownOrder,
}

/// The mix, per mille: the off-path payers are rare, as in life, but there are always
/// some in a run of a few hundred orders.
fn behaviour() -> Behaviour {
    match rand::rng().random_range(0..1000) {
        0..20 => Behaviour::PayTwice,
        20..30 => Behaviour::PayWrongAmount,
        30..35 => Behaviour::PayUnknownOrder,
        35..850 => Behaviour::PayInTime,
        850..900 => Behaviour::PayLate,
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
    /// Payments off the expected path the users made (each a trade of its own).
    pub paid_twice: AtomicU64,
    pub paid_wrong_amount: AtomicU64,
    pub paid_unknown_order: AtomicU64,
    pub users_done: AtomicU64,
}

pub struct Shared<'a> {
    pub client: &'a Client,
    pub counters: &'a Counters,
    pub order_nos: &'a Mutex<Vec<String>>,
    /// The platform's own record of its orders: zerodrop's order id to its number.
    pub order_ids: &'a Mutex<HashMap<String, String>>,
    pub limiter: &'a Semaphore,
    pub ttl_secs: u64,
}

/// One user: orders (retrying with the same Idempotency-Key until answered), then pays in
/// time (maybe off the expected path first or after), pays late, or walks away.
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
        list.push(order_no.clone());
    }
    if let (Ok(mut ids), Some(id)) = (shared.order_ids.lock(), created["order"]["id"].as_str()) {
        ids.insert(id.to_owned(), order_no);
    }
    let ttl_ms = shared.ttl_secs * 1000;
    let wait_ms = match what {
        Behaviour::PayLate => ttl_ms + rand::rng().random_range(500..LATE_PAY_AFTER_EXPIRY_MS_MAX),
        Behaviour::Abandon => return,
        _ => rand::rng().random_range(1_000..(ttl_ms - ORDER_SPREAD_MS)),
    };
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    let first = match what {
        Behaviour::PayWrongAmount => Some((wrong_amount(&created), &shared.counters.paid_wrong_amount)),
        Behaviour::PayUnknownOrder => Some((never_issued(), &shared.counters.paid_unknown_order)),
        _ => None,
    };
    if let Some((twist, counter)) = first {
        pay(shared, &created, twist, counter).await;
        let pause_ms = rand::rng().random_range(1_000..SECOND_THOUGHT_MS_MAX);
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
    }
    pay(shared, &created, Twist::None, &shared.counters.payments).await;
    if what == Behaviour::PayTwice && seen_paid(shared, &created).await {
        let pause_ms = rand::rng().random_range(200..SECOND_THOUGHT_MS_MAX);
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        pay(shared, &created, Twist::SecondTrade, &shared.counters.paid_twice).await;
    }
}

/// How long a user who will pay twice watches for their order to show paid first.
const SEEN_PAID_WAIT_MS_MAX: u64 = 30_000;
const SEEN_PAID_POLL_MS: u64 = 500;

/// Whether the order showed as paid (or further) within [`SEEN_PAID_WAIT_MS_MAX`]. The
/// demo's second payments come after the first is known: a second trade that reaches
/// zerodrop before a first whose notifications were all lost would be taken as the
/// order's payment, and the first, no longer asked about, would go unseen (a known gap
/// until zerodrop reads the provider's bill).
async fn seen_paid(shared: &Shared<'_>, created: &serde_json::Value) -> bool {
    let order_no = created["order"]["order_no"].as_str().unwrap_or_default();
    for _ in 0..SEEN_PAID_WAIT_MS_MAX / SEEN_PAID_POLL_MS {
        let permit = shared.limiter.acquire().await;
        let order = shared.client.order(order_no).await;
        drop(permit);
        if order.is_ok_and(|o| o["order"]["status"] != "awaiting_payment" && o["order"]["status"] != "expired") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(SEEN_PAID_POLL_MS)).await;
    }
    false
}

/// A user who paid off the path notices (or taps again) within this long.
const SECOND_THOUGHT_MS_MAX: u64 = 5_000;

/// One payment at the sandbox, counted in `counter` when it went through.
async fn pay(shared: &Shared<'_>, created: &serde_json::Value, twist: Twist, counter: &AtomicU64) {
    let permit = shared.limiter.acquire().await;
    match shared.client.pay_with(created, twist).await {
        Ok(Ok(_)) => counter.fetch_add(1, Ordering::Relaxed),
        _ => shared.counters.pay_refused.fetch_add(1, Ordering::Relaxed),
    };
    drop(permit);
}

/// A tenth of the order's price, as typed by a user who left out a digit (never the
/// price itself, never nothing).
fn wrong_amount(created: &serde_json::Value) -> Twist {
    let price = created["order"]["amount_minor"].as_i64().unwrap_or(100);
    let wrong = if price / 10 > 0 { price / 10 } else { price + 1 };
    Twist::Amount(Money::new(wrong, Currency::Cny))
}

/// An order number zerodrop never issued, in its own format.
fn never_issued() -> Twist {
    Twist::OrderNo(zerodrop_domain::OrderNo::from_random(rand::rng().random::<u64>()).to_string())
}
