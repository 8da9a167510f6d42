//! `zerodrop demo`: on a fresh database, simulated users buy diamonds, SVIP, game cards
//! and game gold through the sandbox provider while the world misbehaves: the provider
//! drops, duplicates, delays and reorders notifications and its gateway goes down for 30
//! seconds; game cards run out of stock and are restocked later; the platform's delivery
//! endpoint is down for 40 seconds; the platform refunds some orders; a few users pay
//! twice, pay a wrong amount or pay an order number zerodrop never issued. The demo waits
//! for every order and charge to settle, then a support person ends the open attention
//! items through the API; once their refunds settle it compares the provider's books
//! (charges and refunds) with zerodrop's, runs the audit, and prints the table. Exit
//! status 0 only if nothing was dropped (no charge without an outcome, no overdue item),
//! the books match and the audit passed.

mod charges;
mod reconcile;
mod report;
mod support;
mod users;

use crate::endpoint::{Endpoint, Mode};
use crate::stack::{self, Client, InProcess, SandboxSide, Tuning};
use anyhow::Result;
use serde_json::json;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zerodrop_sandbox::faults::Faults;
use zerodrop_store::now_ms;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Orders the simulated users place.
    #[arg(long, default_value_t = 2000)]
    pub orders: u32,
    /// Distinct users.
    #[arg(long, default_value_t = 300)]
    pub users: u32,
    /// Minutes to wait for everything to settle before giving up.
    #[arg(long, default_value_t = 10)]
    pub settle_minutes_max: u64,
    /// Database URL; default: a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Percent of notifications the sandbox drops entirely (at least 20 for the story).
    #[arg(long, default_value_t = 20)]
    pub drop_pct: u32,
    #[arg(long, default_value_t = 10)]
    pub duplicate_pct: u32,
    #[arg(long, default_value_t = 10)]
    pub reorder_pct: u32,
    /// Length of the payment gateway's outage.
    #[arg(long, default_value_t = 30)]
    pub outage_secs: u64,
    /// Length of the platform delivery endpoint's outage.
    #[arg(long, default_value_t = 40)]
    pub endpoint_down_secs: u64,
    /// Percent of payments the provider hides (no notification, its queries say "no such
    /// trade") until the day's bill is reconciled at the end: lost on purpose.
    #[arg(long, default_value_t = 2)]
    pub lose_pct: u32,
}

/// The demo compresses an order's life so it ends in minutes: users pay within ~40 s of
/// ordering, an order expires after 60 s, and the query at +30 s finds a payment whose notification was lost.
const DEMO_TTL_SECS: i64 = 60;
const DEMO_LATE_SWEEP_SECS: i64 = 30;
const SANDBOX_LATE_GRACE_MS: i64 = 25_000;
/// Requests a simulated platform keeps in flight at once.
const CLIENT_CONCURRENCY: usize = 64;
/// When things happen, in seconds from the start.
const GATEWAY_OUTAGE_AT_SECS: u64 = 20;
const ENDPOINT_DOWN_AT_SECS: u64 = 5;
const RESTOCK_AT_SECS: u64 = 40;
const MERCHANT_REFUNDS_AT_SECS: u64 = 70;
/// Share of delivered diamond orders the platform refunds (half of them partly).
const MERCHANT_REFUND_PER_MILLE: usize = 20;
/// A payment for an unknown order waits this long for its order before its refund (45
/// minutes in production): short enough that those refunds land within the run.
const DEMO_PARK_WINDOW_SECS: i64 = 15;
/// How long the support person's refunds get to settle before the final table.
const SUPPORT_SETTLE_SECS_MAX: u64 = 60;
/// Rounds of the support person: a refund they ask for could itself come back to them.
const SUPPORT_ROUNDS_MAX: usize = 3;

/// The shipped catalog's products, with delivery deadlines short enough to watch.
const DEMO_CATALOG: &str = include_str!("../../../../catalog/demo.toml");

pub async fn run(args: &Args) -> Result<ExitCode> {
    let temp = std::env::temp_dir().join(format!("zerodrop-demo-{}", uuid::Uuid::new_v4().simple()));
    let database_url = args.database_url.clone().unwrap_or_else(|| format!("sqlite://{}/zerodrop.db", temp.display()));
    let faults = Faults {
        drop_rate_pct: args.drop_pct,
        duplicate_rate_pct: args.duplicate_pct,
        reorder_rate_pct: args.reorder_pct,
        delay_ms_min: 0,
        delay_ms_max: 2_000,
        late_pay_grace_ms: SANDBOX_LATE_GRACE_MS,
        // Unacknowledged notifications come back on Alipay's schedule, 100× faster.
        retry_scale_pct: 1,
        // Extra trades (a second payment, a wrong amount, an order number never issued)
        // whose notifications are all lost are found by the day's bill.
        extra_trade_drop_rate_pct: args.drop_pct,
        hide_rate_pct: args.lose_pct,
        ..Faults::none()
    };
    println!("zerodrop demo: {} orders by {} users on {}", args.orders, args.users, report::redact_url(&database_url));
    println!(
        "faults: {}% of notifications dropped, {}% duplicated, {}% followed by a stale one, delays up to 2 s, a {} s gateway \
         outage; game cards run out until a restock; the game's delivery endpoint is down for {} s; the platform refunds \
         some orders; some users pay twice, pay a wrong amount or pay an order number never issued; {}% of payments \
         are hidden by the provider (no notification, queries say no such trade) until the day's bill is reconciled",
        args.drop_pct, args.duplicate_pct, args.reorder_pct, args.outage_secs, args.endpoint_down_secs, args.lose_pct
    );
    let sandbox = SandboxSide::start(faults.clone()).await?;
    let game = Endpoint::start(Mode::Up).await?;
    let tuning = Tuning {
        ttl_secs: DEMO_TTL_SECS,
        late_sweep_schedule_secs: vec![DEMO_LATE_SWEEP_SECS],
        catalog_toml: Some(DEMO_CATALOG.to_owned()),
        endpoint_url: Some(game.url.clone()),
        ..Tuning::default()
    };
    let server = InProcess::start(|listen| {
        let mut config = stack::config(&database_url, listen, &sandbox, &tuning);
        config.charges.park_window_secs = DEMO_PARK_WINDOW_SECS;
        config
    })
    .await?;
    let client = Client::new(&server.base_url, &sandbox.url)?;
    let started = Instant::now();
    restock(&server.app, 0, (args.orders / 40).max(1)).await?;

    let counters = Arc::new(users::Counters::default());
    let order_nos = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let order_ids = Arc::new(std::sync::Mutex::new(HashMap::<String, String>::new()));
    let limiter = Arc::new(tokio::sync::Semaphore::new(CLIENT_CONCURRENCY));
    let mut simulated = tokio::task::JoinSet::new();
    for n in 0..args.orders {
        let (client, counters, order_nos, order_ids, limiter) =
            (client.clone(), counters.clone(), order_nos.clone(), order_ids.clone(), limiter.clone());
        let user = format!("user-{}", n % args.users.max(1));
        simulated.spawn(async move {
            let shared = users::Shared {
                client: &client,
                counters: &counters,
                order_nos: &order_nos,
                order_ids: &order_ids,
                limiter: &limiter,
                ttl_secs: DEMO_TTL_SECS as u64,
            };
            users::simulate(&shared, &user, n).await;
            counters.users_done.fetch_add(1, Ordering::Relaxed);
        });
    }
    let reconciled = Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let world = tokio::spawn(world(
        args.clone(),
        sandbox.sandbox.clone(),
        faults,
        game.clone(),
        server.app.clone(),
        client.clone(),
        order_nos.clone(),
        (counters.clone(), reconciled.clone()),
    ));

    let deadline = Instant::now() + Duration::from_secs(args.settle_minutes_max * 60);
    let total = u64::from(args.orders);
    let mut settled_at = None;
    while Instant::now() < deadline {
        let order_list = order_nos.lock().map(|v| v.clone()).unwrap_or_default();
        let progress = report::settlement(&server, &sandbox.sandbox.charges(), &order_list).await?;
        let users_done = counters.users_done.load(Ordering::Relaxed);
        report::draw(users_done, total, &progress, started.elapsed());
        let quiet = progress.unsettled == 0 && progress.charges_without_outcome == 0 && progress.refunds_in_flight == 0;
        if users_done == total && world.is_finished() && quiet {
            settled_at = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!();
    while simulated.join_next().await.is_some() {}
    let world_errors = world.await.map_err(anyhow::Error::from).and_then(|r| r).err();

    // What is left is in front of a person: they end it through the API, as support would.
    let order_nos = order_nos.lock().map(|v| v.clone()).unwrap_or_default();
    let before = report::summarise(&server, &sandbox.sandbox.charges(), &sandbox.sandbox.refunds(), &order_nos).await?;
    println!(
        "\nsettled: {} open attention items within their clock, {} overdue, {} charges without an outcome; support \
         ends the open items through the API:",
        before.attention_in_clock,
        before.attention_overdue,
        before.charges.ended(charges::Outcome::Nothing)
    );
    let ids = order_ids.lock().map(|m| m.clone()).unwrap_or_default();
    let mut done = support::Done::default();
    for _ in 0..SUPPORT_ROUNDS_MAX {
        let round = support::resolve_all(&client, &ids, &game).await?;
        done.dismissed += round.dismissed;
        done.refunded += round.refunded;
        done.delivered_by_hand += round.delivered_by_hand;
        // An item refused in one round is asked again in the next: count where it ends.
        done.refused = round.refused;
        let settle_by = Instant::now() + Duration::from_secs(SUPPORT_SETTLE_SECS_MAX);
        while Instant::now() < settle_by {
            let progress = report::settlement(&server, &sandbox.sandbox.charges(), &order_nos).await?;
            if progress.refunds_in_flight == 0 && progress.charges_without_outcome == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if round.acted() == 0 || support::open_items(&client).await?.is_empty() {
            break;
        }
    }
    println!(
        "support: {} dismissed, {} refunded, {} delivered by hand, {} refused and left open",
        done.dismissed, done.refunded, done.delivered_by_hand, done.refused
    );

    let charges = sandbox.sandbox.charges();
    let table = report::summarise(&server, &charges, &sandbox.sandbox.refunds(), &order_nos).await?;
    let stats = sandbox.sandbox.stats();
    println!();
    println!("{:<46} {:>10}", "orders placed", counters.created.load(Ordering::Relaxed));
    println!("{:<46} {:>10}", "charges at the provider", charges.len());
    println!("{:<46} {:>10}", "  users who paid twice", counters.paid_twice.load(Ordering::Relaxed));
    println!("{:<46} {:>10}", "  users who paid a wrong amount", counters.paid_wrong_amount.load(Ordering::Relaxed));
    println!(
        "{:<46} {:>10}",
        "  payments for orders never issued",
        counters.paid_unknown_order.load(Ordering::Relaxed)
    );
    report::print(&table);
    let reconciliations = reconciled.lock().map(|v| v.clone()).unwrap_or_default();
    let repaired = reconcile::print(&server.app, &reconciliations).await?;
    println!(
        "notifications: {} planned, {} dropped, {} duplicated, {} stale; {} sends, {} refused; gateway calls {} ({} failed)",
        stats.notifications_planned, stats.notifications_dropped, stats.notifications_duplicated, stats.notifications_stale,
        stats.sends, stats.sends_refused, stats.gateway_calls, stats.gateway_failed
    );
    if let Some(e) = &world_errors {
        println!("the demo's own script failed: {e:#}");
    }
    match settled_at {
        Some(t) => println!("everything settled after {:.0?}, before support", t),
        None => println!("NOT everything settled within {} minutes", args.settle_minutes_max),
    }
    // The audit runs after the stop, whose last sealing run checkpoints everything, and
    // holds the database to the seal log the server exported.
    let config = server.app.config.clone();
    server.stop().await?;
    let audit = sealed_audit(&config).await?;
    print!("{}", crate::audit::render(&audit));
    sandbox.stop().await;
    game.stop();
    if args.database_url.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    let ok = audit.passed()
        && table.dropped == 0
        && table.refund_books_match
        && table.charge_books_match
        && settled_at.is_some()
        && world_errors.is_none()
        && (args.lose_pct == 0 || repaired > 0);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn sealed_audit(config: &zerodrop_server::Config) -> Result<zerodrop_store::audit::Report> {
    let store = zerodrop_store::Store::connect(&config.database_url, &Default::default()).await?;
    let log = std::path::PathBuf::from(&config.seal.log_path);
    let checkpoints = zerodrop_store::seal::log::read(&log)?;
    let heads: i64 = checkpoints.iter().map(|c| c.heads_count).sum();
    println!("sealed: {} signed checkpoint(s) of {heads} heads in the seal log", checkpoints.len());
    let inputs = crate::audit::SealInputs { log: Some(log), public_keys: Vec::new() };
    let report = crate::audit::check_with(&store, config, &inputs).await;
    store.close().await;
    report
}

/// Imports `count` game-card codes (restocking also serves orders waiting for stock).
async fn restock(app: &zerodrop_server::App, batch: u32, count: u32) -> Result<()> {
    let codes: Vec<String> =
        (0..count).map(|i| format!("DEMO-{batch}-{i:06}-{}", uuid::Uuid::new_v4().simple())).collect();
    zerodrop_server::flows::card_keys::import(app, "game_card_50", &codes.join("\n"), false).await?;
    Ok(())
}

/// Everything that happens to the shop while users buy.
#[allow(clippy::too_many_arguments)]
async fn world(
    args: Args,
    sandbox: zerodrop_sandbox::Sandbox,
    faults: Faults,
    game: Endpoint,
    app: zerodrop_server::App,
    client: Client,
    order_nos: Arc<std::sync::Mutex<Vec<String>>>,
    (counters, reconciled): (Arc<users::Counters>, Arc<std::sync::Mutex<Vec<i64>>>),
) -> Result<()> {
    let started = Instant::now();
    let started_ms = now_ms();
    let at = |secs: u64| async move {
        let due = Duration::from_secs(secs);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    };
    at(ENDPOINT_DOWN_AT_SECS).await;
    game.set_mode(Mode::Down);
    at(GATEWAY_OUTAGE_AT_SECS).await;
    let outage_ms = i64::try_from(args.outage_secs * 1000).unwrap_or(i64::MAX);
    sandbox.set_faults(Faults { gateway_down_until_ms: now_ms() + outage_ms, ..faults });
    at(RESTOCK_AT_SECS).await;
    restock(&app, 1, (args.orders / 5).max(1)).await?;
    at(ENDPOINT_DOWN_AT_SECS + args.endpoint_down_secs).await;
    game.set_mode(Mode::Up);
    at(MERCHANT_REFUNDS_AT_SECS).await;
    merchant_refunds(&client, &order_nos).await?;
    // Every order's own schedule (queries, expiry, late sweeps) is over: only the bill
    // can show the hidden payments now.
    let total = u64::from(args.orders);
    while counters.users_done.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let schedule_secs = u64::try_from(DEMO_TTL_SECS + DEMO_LATE_SWEEP_SECS).unwrap_or(90) + 10;
    tokio::time::sleep(Duration::from_secs(schedule_secs)).await;
    let ids = reconcile::daily(&app, &sandbox, started_ms).await?;
    if let Ok(mut slot) = reconciled.lock() {
        *slot = ids;
    }
    Ok(())
}

/// The platform refunds a few delivered diamond orders: half of them in full, half in part.
async fn merchant_refunds(client: &Client, order_nos: &std::sync::Mutex<Vec<String>>) -> Result<()> {
    let list = order_nos.lock().map(|v| v.clone()).unwrap_or_default();
    let wanted = list.len() * MERCHANT_REFUND_PER_MILLE / 1000;
    let mut done = 0;
    for order_no in list {
        if done >= wanted {
            break;
        }
        let order = client.order(&order_no).await?;
        let sku = order["order"]["sku"].as_str().unwrap_or_default();
        if order["order"]["status"] != "delivered" || !sku.starts_with("diamonds_") {
            continue;
        }
        let body = if done % 2 == 0 {
            json!({ "reason": "customer asked for a refund" })
        } else {
            let half = order["order"]["amount_minor"].as_i64().unwrap_or(0) / 2;
            json!({ "amount": zerodrop_domain::money::format_minor(half, 2), "reason": "half refunded as a goodwill gesture" })
        };
        let (status, answer) = client
            .post(&format!("/v1/orders/{order_no}/refunds"), &body, Some(&format!("demo-refund-{order_no}")))
            .await?;
        anyhow::ensure!(status == 201, "refund of {order_no} refused: {status} {answer}");
        done += 1;
    }
    Ok(())
}
