//! The demo's end: the provider shows the payments it hid, and the daily reconciliation
//! (the job itself, for each China Standard Time day the run touched) fetches the bill,
//! repairs every payment zerodrop lacks, and its classes are printed.

use crate::stack::PROVIDER;
use anyhow::{Context, Result};
use std::time::Duration;
use zerodrop_providers::alipay::clock::format_cst;
use zerodrop_server::jobs::reconcile_daily;
use zerodrop_server::report;
use zerodrop_store::bills::{self, Class};
use zerodrop_store::now_ms;

/// How long the demo waits for a day's reconciliation job to import its bill.
const RECONCILE_WAIT_SECS: u64 = 120;
const DAY_MS: i64 = 86_400_000;

/// The CST days from `from_ms` to now, `YYYY-MM-DD`.
fn days_since(from_ms: i64) -> Vec<String> {
    let mut days: Vec<String> = Vec::new();
    let mut at = from_ms;
    loop {
        let day: String = format_cst(at).chars().take(10).collect();
        if days.last() != Some(&day) {
            days.push(day);
        }
        if at >= now_ms() {
            break;
        }
        at = (at + DAY_MS).min(now_ms());
    }
    days
}

/// Reveals the hidden payments, runs the daily reconciliation for each day of the run,
/// and returns the reconciliations' ids once each day's bill is imported.
pub async fn daily(
    app: &zerodrop_server::App,
    sandbox: &zerodrop_sandbox::Sandbox,
    started_ms: i64,
) -> Result<Vec<i64>> {
    let hidden = sandbox.reveal_hidden();
    eprintln!("\nthe provider shows the {hidden} payment(s) it hid; the daily reconciliation runs");
    let days = days_since(started_ms);
    for day in &days {
        reconcile_daily::run_now(app, PROVIDER, day).await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(RECONCILE_WAIT_SECS);
    loop {
        let mut conn = app.store.reader().await?;
        let rows = bills::list(&mut conn, 0, 100).await?;
        drop(conn);
        if rows.len() >= days.len() {
            return Ok(rows.iter().map(|r| r.id).collect());
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the daily reconciliation did not import a bill");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Prints each reconciliation's classes; returns how many differences were repaired.
pub async fn print(app: &zerodrop_server::App, ids: &[i64]) -> Result<i64> {
    let mut repaired = 0;
    for id in ids {
        let mut conn = app.store.reader().await?;
        let report = report::build(&mut conn, *id, 0, &zerodrop_server::http::stats::bounds(&app.config), now_ms())
            .await?
            .context("reconciliation vanished")?;
        let s = report.summary();
        println!(
            "daily reconciliation {} ({}): {} bill line(s), {} matched, {} refund line(s), {} matched",
            id,
            report.reconciliation.bill.file_name,
            s.trade_lines.count,
            s.matched.count,
            s.refund_lines.count,
            s.refunds_matched.count
        );
        for class in Class::ALL {
            let found = s.class(class);
            let now = report.classes.iter().find(|c| c.class == class.as_str());
            if found.count == 0 {
                continue;
            }
            let (r, a, v) = now.map_or((0, 0, 0), |c| (c.repaired, c.attention, c.resolved));
            println!(
                "  {:<26} {:>5}  repaired {r}, with a person {a}, resolved {v} ({} CNY in the bill)",
                class.as_str(),
                found.count,
                report.amount(found.bill_amount_minor)
            );
        }
        println!("  repaired {} · drop rate {} ppm", report.repaired, report.drop_rate_ppm);
        repaired += report.repaired;
    }
    Ok(repaired)
}
