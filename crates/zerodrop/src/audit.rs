//! `zerodrop audit`: prints the report and exits non-zero on any violation.

use anyhow::Result;
use std::process::ExitCode;
use zerodrop_server::Config;
use zerodrop_store::audit::{self, AuditOptions, Report};
use zerodrop_store::{now_ms, Store};

pub async fn run(config: &Config, json: bool) -> Result<ExitCode> {
    let store = Store::connect(&config.database_url, &config.database.pool()).await?;
    let report = check(&store, config).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    store.close().await;
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Time beyond a refund's "unknown" bound for its job to raise the item (jobs are polled).
const UNSETTLED_SLACK_MS: i64 = 3_600_000;

pub async fn check(store: &Store, config: &Config) -> Result<Report> {
    let options = AuditOptions {
        park_window_ms: config.charges.park_window_secs * 1000,
        refund_unsettled_ms_max: config.refunds.unknown_after_secs * 1000 + UNSETTLED_SLACK_MS,
        ..AuditOptions::new(config.audit.parked_age_secs_max * 1000)
    };
    Ok(audit::run(store, &options, now_ms()).await?)
}

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for check in &report.checks {
        let mark = if check.violations == 0 { "ok  " } else { "FAIL" };
        out.push_str(&format!("{mark} {:<24} {}\n", check.name, check.description));
        if check.violations > 0 {
            out.push_str(&format!("     {} violation(s), e.g. {}\n", check.violations, check.examples.join(", ")));
        }
    }
    let charges: Vec<String> = report.charges.iter().map(|(class, n, _)| format!("{class} {n}")).collect();
    out.push_str(&format!("charges: {}\n", if charges.is_empty() { "none".into() } else { charges.join(", ") }));
    out.push_str(&format!(
        "attention: {} open, {} overdue (open items within their clock are with a person, not dropped)\n",
        report.attention_open, report.attention_overdue
    ));
    out.push_str(if report.passed() { "audit: PASSED\n" } else { "audit: FAILED\n" });
    out
}
