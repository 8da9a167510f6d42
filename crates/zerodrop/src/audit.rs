//! `zerodrop audit`: prints the report and exits non-zero on any violation.

use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;
use zerodrop_server::Config;
use zerodrop_store::audit::{self, AuditOptions, Report};
use zerodrop_store::seal::verify::VerifyOptions;
use zerodrop_store::{now_ms, Store};

/// What the sealed record is checked against, beyond the database itself.
#[derive(Clone, Debug, Default)]
pub struct SealInputs {
    /// An exported seal log to hold the database to.
    pub log: Option<PathBuf>,
    /// Public keys to trust besides the configured ones.
    pub public_keys: Vec<String>,
}

pub async fn run(config: &Config, json: bool, seal: &SealInputs) -> Result<ExitCode> {
    let store = Store::connect(&config.database_url, &config.database.pool()).await?;
    let report = check_with(&store, config, seal).await?;
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

/// The audit with the configured seal keys and no seal log.
pub async fn check(store: &Store, config: &Config) -> Result<Report> {
    check_with(store, config, &SealInputs::default()).await
}

pub async fn check_with(store: &Store, config: &Config, seal: &SealInputs) -> Result<Report> {
    let now = now_ms();
    let options = AuditOptions {
        park_window_ms: config.charges.park_window_secs * 1000,
        refund_unsettled_ms_max: config.refunds.unknown_after_secs * 1000 + UNSETTLED_SLACK_MS,
        ..AuditOptions::new(config.audit.parked_age_secs_max * 1000)
    };
    let mut report = audit::run(store, &options, now).await?;
    let log = match &seal.log {
        Some(path) => Some(zerodrop_store::seal::log::read(path)?),
        None => None,
    };
    let mut trusted = config.seal.trusted_keys();
    trusted.extend(seal.public_keys.iter().cloned());
    let verify = VerifyOptions {
        trusted_keys: &trusted,
        log: log.as_deref(),
        pending_age_ms_max: config.seal.pending_age_secs_max * 1000,
        now_ms: now,
    };
    report.checks.extend(zerodrop_store::seal::verify::run(store, &verify).await?);
    Ok(report)
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
