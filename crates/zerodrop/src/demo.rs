//! `zerodrop demo`: on a fresh database, simulated users buy diamonds and SVIP through
//! the sandbox provider while it drops, duplicates, delays and reorders notifications
//! and its gateway goes down for 30 seconds. The demo waits for every order to settle,
//! compares the provider's charges with zerodrop's payments, runs the audit, and prints
//! the table. Exit status 0 only if nothing was dropped and the audit passed.

use crate::stack::{self, Client, InProcess, SandboxSide, Tuning};
use anyhow::Result;
use rand::Rng;
use serde_json::json;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zerodrop_sandbox::faults::Faults;
use zerodrop_sandbox::state::Charge;
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
    /// Length of the gateway outage.
    #[arg(long, default_value_t = 30)]
    pub outage_secs: i64,
}

/// The demo compresses an order's life so it ends in minutes: users pay within ~40 s of
/// ordering, an order expires after 60 s, and the query at +30 s is the S21 story.
const DEMO_TTL_SECS: i64 = 60;
const DEMO_LATE_SWEEP_SECS: i64 = 30;
/// Late payers pay up to this long after expiry; the sandbox accepts a little longer.
const LATE_PAY_AFTER_EXPIRY_MS_MAX: u64 = 20_000;
const SANDBOX_LATE_GRACE_MS: i64 = 25_000;
/// Requests a simulated platform keeps in flight at once.
const CLIENT_CONCURRENCY: usize = 64;
/// Orders are placed over this long, so they are not all the same age.
const ORDER_SPREAD_MS: u64 = 20_000;

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

fn sku() -> &'static str {
    const SKUS: [&str; 9] = [
        "diamonds_60",
        "diamonds_60",
        "diamonds_300",
        "diamonds_980",
        "diamonds_1980",
        "diamonds_3280",
        "diamonds_6480",
        "svip_30d",
        "svip_365d",
    ];
    SKUS[rand::rng().random_range(0..SKUS.len())]
}

#[derive(Default)]
struct Counters {
    created: AtomicU64,
    create_failed: AtomicU64,
    payments: AtomicU64,
    pay_refused: AtomicU64,
    users_done: AtomicU64,
}

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
        ..Faults::none()
    };
    println!("zerodrop demo: {} orders by {} users on {}", args.orders, args.users, redact_url(&database_url));
    println!(
        "faults: {}% of notifications dropped, {}% duplicated, {}% followed by a stale one, delays up to 2 s, a {} s gateway outage",
        args.drop_pct, args.duplicate_pct, args.reorder_pct, args.outage_secs
    );
    let sandbox = SandboxSide::start(faults.clone()).await?;
    let tuning = Tuning { ttl_secs: DEMO_TTL_SECS, late_sweep_secs: DEMO_LATE_SWEEP_SECS, ..Tuning::default() };
    let server = InProcess::start(|listen| stack::config(&database_url, listen, &sandbox, &tuning)).await?;
    let client = Client::new(&server.base_url, &sandbox.url)?;
    let started = Instant::now();

    let counters = Arc::new(Counters::default());
    let order_nos = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let limiter = Arc::new(tokio::sync::Semaphore::new(CLIENT_CONCURRENCY));
    let mut users = tokio::task::JoinSet::new();
    for n in 0..args.orders {
        let (client, counters, order_nos, limiter) =
            (client.clone(), counters.clone(), order_nos.clone(), limiter.clone());
        let user = format!("user-{}", n % args.users.max(1));
        users.spawn(async move {
            simulated_user(&client, &user, n, &counters, &order_nos, &limiter).await;
            counters.users_done.fetch_add(1, Ordering::Relaxed);
        });
    }
    // The outage starts while the first payment queries are due.
    let outage = {
        let sandbox = sandbox.sandbox.clone();
        let faults = faults.clone();
        let outage_ms = args.outage_secs * 1000;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(20)).await;
            sandbox.set_faults(Faults { gateway_down_until_ms: now_ms() + outage_ms, ..faults });
        })
    };

    let deadline = Instant::now() + Duration::from_secs(args.settle_minutes_max * 60);
    let total = u64::from(args.orders);
    let mut settled_at = None;
    while Instant::now() < deadline {
        let progress =
            settlement(&server, &sandbox.sandbox.charges(), &order_nos.lock().map(|v| v.clone()).unwrap_or_default())
                .await?;
        let users_done = counters.users_done.load(Ordering::Relaxed);
        draw(users_done, total, &progress, started.elapsed());
        if users_done == total && progress.unsettled == 0 && progress.charges_without_outcome == 0 {
            settled_at = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!();
    while users.join_next().await.is_some() {}
    let _ = outage.await;

    let order_nos = order_nos.lock().map(|v| v.clone()).unwrap_or_default();
    let charges = sandbox.sandbox.charges();
    let table = summarise(&server, &charges, &order_nos).await?;
    let report = crate::audit::check(&server.app.store, &server.app.config).await?;
    let stats = sandbox.sandbox.stats();
    println!();
    println!("{:<42} {:>10}", "orders placed", counters.created.load(Ordering::Relaxed));
    println!(
        "{:<42} {:>10}",
        "orders refused by zerodrop (client errors)",
        counters.create_failed.load(Ordering::Relaxed)
    );
    println!("{:<42} {:>10}", "paid (charges at the provider)", charges.len());
    println!("{:<42} {:>10}", "  recorded by zerodrop", table.payments);
    println!("{:<42} {:>10}", "delivered", table.delivered);
    println!("{:<42} {:>10}", "late payments", table.late);
    println!("{:<42} {:>10}", "  delivered late (policy: deliver)", table.late_delivered);
    println!("{:<42} {:>10}", "  refund due (policy: refund)", table.refund_due);
    println!("{:<42} {:>10}", "expired unpaid", table.expired);
    println!("{:<42} {:>10}", "attention (in front of a person)", table.attention);
    println!("{:<42} {:>10}", "DROPPED (must be 0)", table.dropped);
    println!("{:<42} {:>10}", "payment → delivery p50", format!("{} ms", table.p50_ms));
    println!("{:<42} {:>10}", "payment → delivery p99", format!("{} ms", table.p99_ms));
    println!("{:<42} {:>10}", "payment → delivery max", format!("{} ms", table.max_ms));
    println!(
        "notifications: {} planned, {} dropped, {} duplicated, {} stale; {} sends, {} refused; gateway calls {} ({} failed)",
        stats.notifications_planned, stats.notifications_dropped, stats.notifications_duplicated, stats.notifications_stale,
        stats.sends, stats.sends_refused, stats.gateway_calls, stats.gateway_failed
    );
    match settled_at {
        Some(t) => println!("everything settled after {:.0?}", t),
        None => println!("NOT everything settled within {} minutes", args.settle_minutes_max),
    }
    print!("{}", crate::audit::render(&report));
    server.stop().await?;
    sandbox.stop().await;
    if args.database_url.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    let ok = report.passed() && table.dropped == 0 && settled_at.is_some();
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn simulated_user(
    client: &Client,
    user: &str,
    n: u32,
    counters: &Counters,
    order_nos: &std::sync::Mutex<Vec<String>>,
    limiter: &tokio::sync::Semaphore,
) {
    let spread = rand::rng().random_range(0..ORDER_SPREAD_MS);
    tokio::time::sleep(Duration::from_millis(spread)).await;
    let what = behaviour();
    let body = json!({ "user_id": user, "sku": sku() });
    let key = format!("demo-{n}");
    // The platform retries with the same Idempotency-Key until it gets an answer.
    let created = loop {
        let permit = limiter.acquire().await;
        let result = client.create_order(&body, Some(&key)).await;
        drop(permit);
        match result {
            Ok((201, created)) => break created,
            Ok((status, _)) if (400..500).contains(&status) => {
                counters.create_failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    counters.created.fetch_add(1, Ordering::Relaxed);
    let order_no = created["order"]["order_no"].as_str().unwrap_or_default().to_owned();
    if let Ok(mut list) = order_nos.lock() {
        list.push(order_no);
    }
    let wait_ms = match what {
        Behaviour::PayInTime => rand::rng().random_range(1_000..(DEMO_TTL_SECS as u64 * 1000 - ORDER_SPREAD_MS)),
        Behaviour::PayLate => DEMO_TTL_SECS as u64 * 1000 + rand::rng().random_range(500..LATE_PAY_AFTER_EXPIRY_MS_MAX),
        Behaviour::Abandon => return,
    };
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    let permit = limiter.acquire().await;
    match client.pay(&created).await {
        Ok(Ok(_)) => counters.payments.fetch_add(1, Ordering::Relaxed),
        _ => counters.pay_refused.fetch_add(1, Ordering::Relaxed),
    };
    drop(permit);
}

type OrderStates = HashMap<String, (String, bool, Option<i64>)>;

/// A charge has an outcome when its order is delivered, due for refund, or in front of a
/// person. A charge without one, once everything settled, is a dropped order.
fn has_outcome(states: &OrderStates, charge: &Charge) -> bool {
    states
        .get(&charge.out_trade_no)
        .is_some_and(|(status, attention, _)| *attention || matches!(status.as_str(), "delivered" | "refund_due"))
}

struct Progress {
    settled: u64,
    unsettled: u64,
    charges_without_outcome: u64,
}

/// Reads zerodrop's view of the demo's orders.
async fn order_states(server: &InProcess) -> Result<OrderStates> {
    let mut conn = server.app.store.reader().await?;
    let rows = zerodrop_store::orders::summaries(&mut conn).await?;
    Ok(rows.into_iter().map(|o| (o.order_no, (o.status, o.attention, o.settled_at_ms))).collect())
}

async fn settlement(server: &InProcess, charges: &[Charge], order_nos: &[String]) -> Result<Progress> {
    let states = order_states(server).await?;
    let settled_state = |no: &str| {
        states.get(no).is_some_and(|(status, attention, _)| {
            *attention || matches!(status.as_str(), "delivered" | "expired" | "refund_due")
        })
    };
    let settled = order_nos.iter().filter(|no| settled_state(no)).count() as u64;
    let charges_without_outcome = charges.iter().filter(|c| !has_outcome(&states, c)).count() as u64;
    Ok(Progress { settled, unsettled: order_nos.len() as u64 - settled, charges_without_outcome })
}

/// Redraws the bar in place on a terminal; elsewhere (CI logs) prints a line every
/// [`PLAIN_PROGRESS_EVERY_SECS`] so the log stays readable.
fn draw(users_done: u64, total: u64, progress: &Progress, elapsed: Duration) {
    const WIDTH: u64 = 40;
    let terminal = std::io::stderr().is_terminal();
    if !terminal && elapsed.as_millis() % (u128::from(PLAIN_PROGRESS_EVERY_SECS) * 1000) >= 500 {
        return;
    }
    let filled = (progress.settled * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let bar: String = (0..WIDTH).map(|i| if i < filled { '#' } else { '.' }).collect();
    let line = format!(
        "[{bar}] {:>5}/{total} settled  users done {:>5}  paid awaiting outcome {:>4}  {:>4}s",
        progress.settled,
        users_done,
        progress.charges_without_outcome,
        elapsed.as_secs()
    );
    if terminal {
        eprint!("\r{line} ");
    } else {
        eprintln!("{line}");
    }
    let _ = std::io::stderr().flush();
}

const PLAIN_PROGRESS_EVERY_SECS: u64 = 10;

struct Table {
    payments: u64,
    delivered: u64,
    late: u64,
    late_delivered: u64,
    refund_due: u64,
    expired: u64,
    attention: u64,
    dropped: u64,
    p50_ms: i64,
    p99_ms: i64,
    max_ms: i64,
}

async fn summarise(server: &InProcess, charges: &[Charge], order_nos: &[String]) -> Result<Table> {
    let states = order_states(server).await?;
    let mut conn = server.app.store.reader().await?;
    let payments = zerodrop_store::payments::list_after(&mut conn, 0, i64::MAX).await?;
    let late = payments.iter().filter(|p| p.late).count() as u64;
    let count = |status: &str| {
        order_nos.iter().filter(|no| states.get(*no).is_some_and(|(s, _, _)| s == status)).count() as u64
    };
    let attention = order_nos.iter().filter(|no| states.get(*no).is_some_and(|(_, a, _)| *a)).count() as u64;
    // Dropped: the provider charged, and zerodrop has no outcome for it (not delivered,
    // not due for refund, not in front of a person).
    let dropped = charges.iter().filter(|c| !has_outcome(&states, c)).count() as u64;
    let late_orders: std::collections::HashSet<&str> =
        payments.iter().filter(|p| p.late).map(|p| p.order_id.as_str()).collect();
    let delivered_at = zerodrop_store::payments::delivered_at_by_order_no(&mut conn).await?;
    let mut latencies: Vec<i64> =
        charges.iter().filter_map(|c| delivered_at.get(&c.out_trade_no).map(|(_, at)| at - c.paid_at_ms)).collect();
    let late_delivered = delivered_at.values().filter(|(id, _)| late_orders.contains(id.as_str())).count() as u64;
    latencies.sort_unstable();
    let pick = |per_mille: usize| -> i64 {
        if latencies.is_empty() {
            return 0;
        }
        latencies[((latencies.len() - 1) * per_mille) / 1000]
    };
    Ok(Table {
        payments: payments.len() as u64,
        delivered: count("delivered"),
        late,
        late_delivered,
        refund_due: count("refund_due"),
        expired: count("expired"),
        attention,
        dropped,
        p50_ms: pick(500),
        p99_ms: pick(990),
        max_ms: latencies.last().copied().unwrap_or(0),
    })
}

fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…{}", &url[..scheme], &url[at..]),
        _ => url.to_owned(),
    }
}
