//! `zerodrop reconcile --provider NAME (--bill FILE | --date YYYY-MM-DD)`: imports a bill
//! (a file as the provider ships it, or the day's bill fetched from the provider), matches
//! it, and prints its classes; `--out DIR` writes the report as JSON, CSV and HTML. The
//! repairs are jobs, run by `zerodrop serve`'s workers (or `--repair` here).

use anyhow::Result;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use zerodrop_server::flows::reconcile::{day, file, import::Imported, ReconcileError};
use zerodrop_server::report;
use zerodrop_server::services::Services;
use zerodrop_store::bills::Class;
use zerodrop_store::now_ms;

/// How often `--repair` looks whether the repairs are done.
const REPAIR_POLL_MS: u64 = 250;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The provider whose bill it is (a configured provider's name).
    #[arg(long)]
    pub provider: String,
    /// The bill file: Alipay's zip of GBK CSVs, or the trade-detail CSV unzipped.
    #[arg(long, value_name = "FILE", required_unless_present = "date", conflicts_with = "date")]
    pub bill: Option<PathBuf>,
    /// Fetch the provider's bill for this day (China Standard Time) instead.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<String>,
    /// Write the report as reconciliation-<id>.json, .csv and .html into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Run the repairs in this process (the job workers) for up to this many seconds,
    /// instead of leaving them to `zerodrop serve`.
    #[arg(long, value_name = "SECS")]
    pub repair: Option<u64>,
}

pub async fn run(services: &Services, args: &Args) -> Result<ExitCode> {
    let progress: Option<file::Progress> =
        std::io::stderr().is_terminal().then(|| Arc::new(|n: u64| eprint!("\rread {n} lines")) as file::Progress);
    let imported = match (&args.bill, &args.date) {
        (Some(path), _) => {
            let account = day::account(services, &args.provider);
            let bill_dir = PathBuf::from(&services.config.reconcile.bill_dir);
            match account {
                Ok(account) => {
                    let bill = file::BillFile {
                        provider: &args.provider,
                        account: &account,
                        path,
                        bill_dir: &bill_dir,
                        day_from_ms: None,
                        missing_grace_ms: services.config.reconcile.missing_grace_secs * 1000,
                    };
                    file::import_file(&services.store, &bill, progress).await
                }
                Err(e) => Err(e),
            }
        }
        (None, Some(date)) => day::fetch_and_import(services, &args.provider, date, progress).await,
        (None, None) => Err(ReconcileError::Bill("give --bill FILE or --date YYYY-MM-DD".into())),
    };
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let imported = match imported {
        Ok(imported) => imported,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("nothing was imported");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(secs) = args.repair {
        repair(services, &imported, secs).await?;
    }
    let mut conn = services.store.reader().await?;
    let Some(report) = report::build(
        &mut conn,
        imported.reconciliation_id,
        0,
        &zerodrop_server::http::stats::bounds(&services.config),
        now_ms(),
    )
    .await?
    else {
        anyhow::bail!("reconciliation {} vanished", imported.reconciliation_id);
    };
    drop(conn);
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)?;
        let base = dir.join(format!("reconciliation-{}", report.reconciliation.id));
        std::fs::write(base.with_extension("json"), serde_json::to_vec_pretty(&report)?)?;
        std::fs::write(base.with_extension("csv"), report::csv::render(&report))?;
        std::fs::write(base.with_extension("html"), report::html::render(&report))?;
        eprintln!("report written to {}.{{json,csv,html}}", base.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report, imported.already);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the job workers here until none of the reconciliation's differences is pending
/// (or `secs` pass).
async fn repair(services: &Services, imported: &Imported, secs: u64) -> Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn(zerodrop_server::jobs::worker::run(services.clone(), stop_rx));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let mut conn = services.store.reader().await?;
        let counts = zerodrop_store::bills::counts(&mut conn, imported.reconciliation_id).await?;
        drop(conn);
        let pending: i64 = counts
            .iter()
            .filter(|(_, state, _)| *state == zerodrop_store::bills::DifferenceState::Pending)
            .map(|(_, _, n)| n)
            .sum();
        if pending == 0 || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(REPAIR_POLL_MS)).await;
    }
    let _ = stop_tx.send(true);
    let _ = workers.await;
    Ok(())
}

fn print_table(report: &report::Report, already: bool) {
    let bill = &report.reconciliation.bill;
    let s = report.summary();
    if already {
        println!("this bill was imported before (reconciliation {}): nothing changed", report.reconciliation.id);
    }
    println!(
        "reconciliation {} of {} ({}): {} trade line(s) {} CNY, {} refund line(s) {} CNY",
        report.reconciliation.id,
        bill.file_name,
        bill.provider,
        s.trade_lines.count,
        report.amount(s.trade_lines.bill_amount_minor),
        s.refund_lines.count,
        report.amount(s.refund_lines.bill_amount_minor)
    );
    println!("  {:<26} {:>8} {:>14} {:>14}", "class", "lines", "bill CNY", "zerodrop CNY");
    for (name, f) in [("matched", s.matched), ("refunds_matched", s.refunds_matched)] {
        println!(
            "  {:<26} {:>8} {:>14} {:>14}",
            name,
            f.count,
            report.amount(f.bill_amount_minor),
            report.amount(f.amount_minor)
        );
    }
    for class in Class::ALL {
        let f = s.class(class);
        let now = report.classes.iter().find(|c| c.class == class.as_str());
        let states = now
            .map(|c| {
                format!(
                    "repaired {} · with a person {} · resolved {} · pending {}",
                    c.repaired, c.attention, c.resolved, c.pending
                )
            })
            .unwrap_or_default();
        println!(
            "  {:<26} {:>8} {:>14} {:>14}   {}",
            class.as_str(),
            f.count,
            report.amount(f.bill_amount_minor),
            report.amount(f.amount_minor),
            states
        );
    }
    println!("  repaired {} · drop rate {} ppm", report.repaired, report.drop_rate_ppm);
}
