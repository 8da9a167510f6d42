//! `zerodrop bench notify`: how fast zerodrop turns verified notifications into
//! committed deliveries, beside the engine's raw durable-commit rate from the same run.
//!
//! Orders are created directly in the database; notifications are signed beforehand
//! with the provider's key, so the measured path is exactly what a provider's request
//! costs: HTTP, signature verification, the payment transaction (raw notification,
//! payment, events, ledger credit) and its durable commit, then the acknowledgement.
//! Benchmarks are not tests: they print numbers, and docs/BENCHMARKS.md records them.

#![allow(clippy::float_arithmetic)] // rates and percentiles for a report, nowhere near money

use crate::stack::{self, SandboxSide, Tuning};
use anyhow::{anyhow, Context, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zerodrop_domain::{Catalog, OrderId, OrderNo, UserId};
use zerodrop_providers::keys::RsaPrivateKey;
use zerodrop_store::orders::{self, NewOrder};
use zerodrop_store::{now_ms, Store};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Notifications posted over HTTP to committed delivery, and the raw commit baseline.
    Notify(NotifyArgs),
    /// A generated bill of a million lines reconciled against a database holding the
    /// same charges: time and peak memory.
    Reconcile(crate::bench_reconcile::Args),
}

#[derive(clap::Args, Debug)]
pub struct NotifyArgs {
    /// `sqlite` (a fresh file) or a PostgreSQL server URL (a fresh database is created on it).
    #[arg(long, default_value = "sqlite")]
    pub engine: String,
    /// Notifications in the throughput run.
    #[arg(long, default_value_t = 20_000)]
    pub notifications: usize,
    /// Concurrent HTTP clients in the throughput run.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds of each fixed-rate run (half the measured throughput; half the target).
    #[arg(long, default_value_t = 10)]
    pub half_load_secs: u64,
}

/// The throughput targets on the 2-core reference machine, in deliveries per
/// second; the latency target (p99 at or under 25 ms) applies at half of these.
const TARGET_PER_SEC_POSTGRES: f64 = 1_000.0;
const TARGET_PER_SEC_SQLITE: f64 = 2_000.0;
/// Enough prepared notifications for a fixed-rate run at up to this rate per second.
const HALF_LOAD_PER_SEC_MAX: usize = 4_000;

pub async fn run(command: &Command) -> Result<()> {
    match command {
        Command::Notify(args) => notify(args).await,
        Command::Reconcile(args) => crate::bench_reconcile::run(args).await,
    }
}

pub(crate) struct Database {
    pub(crate) url: String,
    cleanup: Option<(String, String)>,
    temp: Option<std::path::PathBuf>,
}

pub(crate) async fn fresh_database(engine: &str) -> Result<Database> {
    if engine == "sqlite" {
        let dir = std::env::temp_dir().join(format!("zerodrop-bench-{}", uuid::Uuid::new_v4().simple()));
        return Ok(Database { url: format!("sqlite://{}/bench.db", dir.display()), cleanup: None, temp: Some(dir) });
    }
    if !engine.starts_with("postgres") {
        return Err(anyhow!("--engine must be sqlite or a postgres:// URL"));
    }
    let name = format!("zd_bench_{}", uuid::Uuid::new_v4().simple());
    let url = crate::pg_admin::create_postgres_database(engine, &name).await?;
    Ok(Database { url, cleanup: Some((engine.to_owned(), name)), temp: None })
}

pub(crate) async fn drop_database(db: &Database) {
    if let Some((admin_url, name)) = &db.cleanup {
        if let Err(e) = crate::pg_admin::drop_postgres_database(admin_url, name).await {
            eprintln!("could not drop the benchmark database {name}: {e}");
        }
    }
    if let Some(dir) = &db.temp {
        let _ = std::fs::remove_dir_all(dir);
    }
}

async fn notify(args: &NotifyArgs) -> Result<()> {
    let db = fresh_database(&args.engine).await?;
    let outcome = notify_on(args, &db).await;
    drop_database(&db).await;
    outcome
}

async fn notify_on(args: &NotifyArgs, db: &Database) -> Result<()> {
    let sandbox = SandboxSide::start(zerodrop_sandbox::faults::Faults::none()).await?;
    let tuning = Tuning { concurrency: 1, ..Tuning::default() };
    let server = stack::InProcess::start(|listen| {
        let mut config = stack::config(&db.url, listen, &sandbox, &tuning);
        // The benchmark measures the notification path alone; no background jobs.
        config.jobs.enabled = false;
        config
    })
    .await?;
    let store = server.app.store.clone();
    let engine = store.dialect().name();
    println!("zerodrop bench notify on {engine} ({})", machine());

    let key = Arc::new(sandbox.sandbox_key().ok_or_else(|| anyhow!("sandbox key"))?);
    let target_rate = match store.dialect() {
        zerodrop_store::Dialect::Sqlite => TARGET_PER_SEC_SQLITE,
        zerodrop_store::Dialect::Postgres => TARGET_PER_SEC_POSTGRES,
    } / 2.0;
    let half_n = (args.half_load_secs as usize).saturating_mul(HALF_LOAD_PER_SEC_MAX).max(1_000);
    let target_n = (target_rate as usize).saturating_mul(args.half_load_secs as usize).max(1);
    eprintln!("preparing {} orders and signed notifications…", args.notifications + half_n + target_n);
    let batch_a = prepare(&store, &key, args.notifications).await?;
    let batch_b = prepare(&store, &key, half_n).await?;
    let batch_c = prepare(&store, &key, target_n).await?;
    let url = format!("{}/v1/providers/{}/notify", server.base_url, stack::PROVIDER);
    let client = zerodrop_providers::http_client::client(Duration::from_secs(30))?;

    eprintln!("baseline: single-row durable commits over the same pool…");
    let baseline = baseline(&store, args.clients, Duration::from_secs(5)).await?;

    eprintln!("throughput: {} notifications from {} clients…", args.notifications, args.clients);
    let started = Instant::now();
    let latencies = closed_loop(&client, &url, batch_a, args.clients).await?;
    let elapsed = started.elapsed();
    let rate = args.notifications as f64 / elapsed.as_secs_f64();
    let delivered = delivered_count(&store).await?;
    if delivered != args.notifications as i64 {
        return Err(anyhow!("expected {} deliveries, found {delivered}", args.notifications));
    }

    let half_rate = (rate / 2.0).max(1.0);
    let half_count = ((half_rate * args.half_load_secs as f64) as usize).min(half_n);
    eprintln!("latency: {half_count} notifications at a fixed {half_rate:.0}/s (half the throughput)…");
    let half = open_loop(&client, &url, batch_b.into_iter().take(half_count).collect(), half_rate).await?;
    eprintln!("latency: {target_n} notifications at a fixed {target_rate:.0}/s (half the target)…");
    let at_target = open_loop(&client, &url, batch_c, target_rate).await?;
    let expected = args.notifications + half_count + target_n;
    let delivered = delivered_count(&store).await?;
    if delivered != expected as i64 {
        return Err(anyhow!("expected {expected} deliveries after the latency runs, found {delivered}"));
    }

    let (p50, p99) = percentiles(latencies);
    let (h50, h99) = percentiles(half);
    let (t50, t99) = percentiles(at_target);
    println!();
    println!(
        "| engine | raw durable commits/s | deliveries/s | p50 ms at max | p99 ms at max \
         | half measured | p50 ms | p99 ms | half target | p50 ms | p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {engine} | {baseline:.0} | {rate:.0} | {p50:.1} | {p99:.1} \
         | {half_rate:.0}/s | {h50:.1} | {h99:.1} | {target_rate:.0}/s | {t50:.1} | {t99:.1} |"
    );
    println!();
    println!(
        "{} notifications from {} clients, then {half_count} and {target_n} at fixed rates: \
         all {delivered} delivered exactly once (checked).",
        args.notifications, args.clients
    );
    server.stop().await?;
    sandbox.stop().await;
    Ok(())
}

struct Prepared {
    body: String,
}

/// Creates orders directly and signs one payment notification for each.
async fn prepare(store: &Store, key: &Arc<RsaPrivateKey>, count: usize) -> Result<Vec<Prepared>> {
    let product = Catalog::default_catalog().get("diamonds_60").map_err(|e| anyhow!("{e}"))?.clone();
    let amount = product.total(1).map_err(|e| anyhow!("{e}"))?;
    let now = now_ms();
    let mut order_nos = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        let mut tx = store.begin().await?;
        for i in chunk {
            let order = NewOrder {
                id: OrderId::new(),
                order_no: OrderNo::from_random(rand::random::<u64>()),
                user_id: UserId::parse(&format!("bench-{}", i % 1000)).map_err(|e| anyhow!("{e}"))?,
                product: product.clone(),
                quantity: 1,
                amount,
                provider: stack::PROVIDER.into(),
                expires_at_ms: now + 3_600_000,
            };
            let row = orders::insert(&mut tx, &order, "bench", now).await?.context("order number collision")?;
            order_nos.push(row.order_no.to_string());
        }
        tx.commit().await?;
    }
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let per = order_nos.len().div_ceil(workers).max(1);
    let mut handles = Vec::new();
    for (w, chunk) in order_nos.chunks(per).enumerate() {
        let chunk = chunk.to_vec();
        let key = key.clone();
        handles.push(tokio::task::spawn_blocking(move || {
            chunk
                .iter()
                .enumerate()
                .map(|(i, no)| sign(&key, no, w * 1_000_000 + i, amount.to_decimal()))
                .collect::<Result<Vec<_>>>()
        }));
    }
    let mut out = Vec::with_capacity(count);
    for h in handles {
        out.extend(h.await??);
    }
    Ok(out)
}

fn sign(key: &RsaPrivateKey, order_no: &str, seq: usize, amount: String) -> Result<Prepared> {
    let trade_no = format!("2026BENCH{:012}{seq}", rand::random::<u32>());
    let fields = stack::payment_notification(order_no, &trade_no, &amount);
    Ok(Prepared { body: stack::sign_notification(key, &fields)? })
}

async fn post(client: &reqwest::Client, url: &str, body: String) -> Result<()> {
    let response =
        client.post(url).header("content-type", "application/x-www-form-urlencoded").body(body).send().await?;
    let text = response.text().await?;
    if text != "success" {
        return Err(anyhow!("notification not acknowledged: {text}"));
    }
    Ok(())
}

async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    work: Vec<Prepared>,
    clients: usize,
) -> Result<Vec<Duration>> {
    let queue = Arc::new(std::sync::Mutex::new(work));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, url, queue) = (client.clone(), url.to_owned(), queue.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(item) = next else { break };
                let start = Instant::now();
                post(&client, &url, item.body).await?;
                latencies.push(start.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(result) = tasks.join_next().await {
        all.extend(result??);
    }
    Ok(all)
}

/// Sends at a fixed rate, timing each request from when it was due, so a stall shows
/// up in the latencies instead of silently lowering the rate.
async fn open_loop(client: &reqwest::Client, url: &str, work: Vec<Prepared>, rate: f64) -> Result<Vec<Duration>> {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, item) in work.into_iter().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (client, url) = (client.clone(), url.to_owned());
        tasks.spawn(async move {
            post(&client, &url, item.body).await?;
            Ok::<_, anyhow::Error>(due.elapsed())
        });
    }
    let mut all = Vec::new();
    while let Some(result) = tasks.join_next().await {
        all.push(result??);
    }
    Ok(all)
}

fn percentiles(mut latencies: Vec<Duration>) -> (f64, f64) {
    if latencies.is_empty() {
        return (0.0, 0.0);
    }
    latencies.sort_unstable();
    let at = |p: usize| latencies[(latencies.len() - 1) * p / 100].as_secs_f64() * 1000.0;
    (at(50), at(99))
}

/// Single-row durable commits per second from `clients` concurrent tasks over the
/// store's own write pool: the ceiling any transactional work on this engine shares.
async fn baseline(store: &Store, clients: usize, duration: Duration) -> Result<f64> {
    {
        let mut tx = store.begin().await?;
        zerodrop_store::raw_execute(
            &mut tx,
            "CREATE TABLE bench_baseline (id TEXT PRIMARY KEY, at_ms BIGINT NOT NULL)",
        )
        .await?;
        tx.commit().await?;
    }
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let store = store.clone();
        tasks.spawn(async move {
            let mut commits = 0_u64;
            while Instant::now() < deadline {
                let mut tx = store.begin().await?;
                // Values are a fresh uuid and a number: nothing to escape.
                let row =
                    format!("INSERT INTO bench_baseline (id, at_ms) VALUES ('{}', {})", uuid::Uuid::new_v4(), now_ms());
                zerodrop_store::raw_execute(&mut tx, &row).await?;
                tx.commit().await?;
                commits += 1;
            }
            Ok::<_, anyhow::Error>(commits)
        });
    }
    let started = Instant::now();
    let mut total = 0;
    while let Some(result) = tasks.join_next().await {
        total += result??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64().max(duration.as_secs_f64()))
}

async fn delivered_count(store: &Store) -> Result<i64> {
    let mut conn = store.reader().await?;
    Ok(zerodrop_store::payments::delivered_at_by_order_no(&mut conn).await?.len() as i64)
}

pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} cores, {model}")
}
