//! `zerodrop bench reconcile`: a bill of a million lines (Alipay's zip of GBK CSVs, as
//! the sandbox writes it) reconciled against a database holding the same charges, on
//! either engine: how long the import and match take, and the process's peak memory
//! while they run. One line in a thousand is left out of the database, so the differences
//! path runs too. Benchmarks are not tests: they print numbers.

#![allow(clippy::float_arithmetic)] // rates for a report, nowhere near money

use crate::bench::{drop_database, fresh_database, machine};
use crate::stack::{PROVIDER, SELLER_ID};
use anyhow::{Context, Result};
use std::time::Instant;
use zerodrop_domain::bill::{BillHeader, BillLineKind};
use zerodrop_providers::alipay::bill::{BillRow, BillWriter};
use zerodrop_providers::alipay::clock::parse_cst;
use zerodrop_server::flows::reconcile::file::{import_file, BillFile};
use zerodrop_store::{PoolConfig, Store};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// `sqlite` (a fresh file) or a PostgreSQL server URL (a fresh database is created on it).
    #[arg(long, default_value = "sqlite")]
    pub engine: String,
    /// Lines in the bill (and charges in the database, less one in a thousand).
    #[arg(long, default_value_t = 1_000_000)]
    pub lines: u64,
}

/// Charges written per statement while setting up (setup is not measured).
const SETUP_ROWS_PER_STATEMENT: u64 = 1_000;
/// One line in this many has no charge: the differences path runs too.
const MISSING_EVERY: u64 = 1_000;
const DAY: &str = "2026-11-28";

fn trade_no(i: u64) -> String {
    format!("2026112822{i:018}")
}

fn amount_minor(i: u64) -> i64 {
    100 + i64::try_from(i % 9_900).unwrap_or(0)
}

pub async fn run(args: &Args) -> Result<()> {
    let db = fresh_database(&args.engine).await?;
    let outcome = run_on(args, &db.url).await;
    drop_database(&db).await;
    outcome
}

async fn run_on(args: &Args, url: &str) -> Result<()> {
    let store = Store::connect(url, &PoolConfig::default()).await?;
    store.migrate().await?;
    println!("zerodrop bench reconcile on {} ({}), {} lines", store.dialect().name(), machine(), args.lines);
    let from_ms = parse_cst(&format!("{DAY} 00:00:00")).context("day")?;
    let step_ms = (86_400_000 / args.lines.max(1)).max(1);
    let paid_at = |i: u64| from_ms + i64::try_from(i * step_ms).unwrap_or(0);

    eprintln!("setting up {} charges…", args.lines - args.lines / MISSING_EVERY);
    let started = Instant::now();
    let mut i = 0;
    while i < args.lines {
        let end = (i + SETUP_ROWS_PER_STATEMENT).min(args.lines);
        let mut sql = String::from(
            "INSERT INTO charges (provider, trade_no, order_no, amount_minor, currency, paid_at_ms, class, evidence, \
             recorded_at_ms, classified_at_ms) VALUES ",
        );
        let mut first = true;
        for n in i..end {
            if n % MISSING_EVERY == 0 {
                continue;
            }
            if !first {
                sql.push(',');
            }
            first = false;
            // Generated digits and constants only: nothing here comes from outside.
            sql.push_str(&format!(
                "('{PROVIDER}', '{}', 'ZDB{n}', {}, 'CNY', {}, 'unknown_order', '{{}}', {}, {})",
                trade_no(n),
                amount_minor(n),
                paid_at(n),
                paid_at(n),
                paid_at(n)
            ));
        }
        if !first {
            let mut tx = store.begin().await?;
            zerodrop_store::raw_execute(&mut tx, &sql).await?;
            tx.commit().await?;
        }
        i = end;
    }
    eprintln!("charges ready in {:.1?}; writing the bill…", started.elapsed());

    let dir = std::env::temp_dir().join(format!("zerodrop-bench-bill-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("20880000000000010156_{}.zip", DAY.replace('-', "")));
    let header = BillHeader { account: SELLER_ID.into(), from_ms, to_ms: from_ms + 86_400_000 };
    let mut writer = BillWriter::new(std::fs::File::create(&path)?, &header)?;
    for n in 0..args.lines {
        let trade = trade_no(n);
        let order = format!("ZDB{n}");
        let row = BillRow {
            kind: BillLineKind::Trade,
            trade_no: &trade,
            order_no: &order,
            refund_no: "",
            amount_minor: amount_minor(n),
            created_at_ms: paid_at(n),
            finished_at_ms: paid_at(n),
            subject: "钻石 diamonds",
        };
        writer.write(&row)?;
    }
    writer.finish(from_ms + 86_400_000 + 3_600_000)?;
    let bytes = std::fs::metadata(&path)?.len();
    eprintln!("bill written: {} ({} MB); reconciling…", path.display(), bytes / 1_000_000);

    reset_peak_memory();
    let started = Instant::now();
    let bill = BillFile {
        provider: PROVIDER,
        account: SELLER_ID,
        path: &path,
        bill_dir: &dir.join("kept"),
        day_from_ms: None,
        missing_grace_ms: zerodrop_store::bills::MISSING_GRACE_MS,
    };
    let imported = import_file(&store, &bill, None).await?;
    let elapsed = started.elapsed();
    let peak_mb = peak_memory_kb().map(|kb| kb / 1024);
    let s = &imported.summary;
    println!(
        "reconciled {} lines in {:.1} s ({:.0} lines/s): matched {}, unknown to zerodrop {}, peak memory {} MB",
        s.trade_lines.count,
        elapsed.as_secs_f64(),
        s.trade_lines.count as f64 / elapsed.as_secs_f64().max(0.001),
        s.matched.count,
        s.unknown_to_us.count,
        peak_mb.map_or_else(|| "unknown".into(), |mb| mb.to_string())
    );
    anyhow::ensure!(s.trade_lines.count == i64::try_from(args.lines)?, "every line imported");
    anyhow::ensure!(
        s.unknown_to_us.count == i64::try_from(args.lines.div_ceil(MISSING_EVERY))?,
        "the missing lines found"
    );
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Resets the kernel's record of this process's peak resident memory (Linux), so the
/// figure covers the reconciliation alone, not the setup.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory since the last reset, in KiB (Linux `VmHWM`).
fn peak_memory_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
