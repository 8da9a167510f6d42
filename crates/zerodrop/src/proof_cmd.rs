//! `zerodrop proof`: writes the per-period proof, and `zerodrop proof verify` holds one to
//! the database and the seal log again (exit 1 with one line per finding).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use zerodrop_server::Config;
use zerodrop_store::proof::{verify, write};
use zerodrop_store::{now_ms, Store};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ProofArgs {
    #[command(subcommand)]
    command: Option<ProofCommand>,
    /// The period's start: RFC 3339 (2026-11-01T00:00:00Z) or a UTC date (2026-11-01).
    #[arg(long)]
    from: Option<String>,
    /// The period's end, exclusive: RFC 3339, or a UTC date (that whole day included).
    #[arg(long)]
    to: Option<String>,
    /// Where to write the report (default: standard output).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The report's format (JSON is the only one).
    #[arg(long, default_value = "json")]
    format: String,
}

#[derive(Subcommand)]
enum ProofCommand {
    /// Re-check a proof against the database (and the seal log); exit 1 on any finding.
    Verify {
        file: PathBuf,
        /// Also hold its checkpoints to this exported seal log.
        #[arg(long, value_name = "FILE")]
        seal_log: Option<PathBuf>,
        /// A seal public key to trust (base64), besides the configured ones; repeatable.
        #[arg(long, value_name = "KEY")]
        seal_public_key: Vec<String>,
    },
}

pub async fn run(config: &Config, args: &ProofArgs) -> Result<ExitCode> {
    match &args.command {
        Some(ProofCommand::Verify { file, seal_log, seal_public_key }) => {
            verify_file(config, file, seal_log.as_deref(), seal_public_key).await
        }
        None => {
            let (Some(from), Some(to)) = (&args.from, &args.to) else {
                bail!("give the period: zerodrop proof --from <time or date> --to <time or date>");
            };
            if args.format != "json" {
                bail!("--format {}: the proof is written as json", args.format);
            }
            let (from_ms, to_ms) = (parse_time(from, false)?, parse_time(to, true)?);
            if to_ms <= from_ms {
                bail!("--to ({to}) must be after --from ({from})");
            }
            generate(config, from_ms, to_ms, args.out.as_deref()).await
        }
    }
}

/// Milliseconds of an RFC 3339 time, or of a UTC date's start (its end, for `--to`).
pub fn parse_time(text: &str, end_of_day: bool) -> Result<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, format)
        .with_context(|| format!("{text:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"))?;
    let date = if end_of_day { date.next_day().context("date out of range")? } else { date };
    Ok(date.midnight().assume_utc().unix_timestamp() * 1000)
}

async fn generate(config: &Config, from_ms: i64, to_ms: i64, out: Option<&Path>) -> Result<ExitCode> {
    let store = Store::connect(&config.database_url, &config.database.pool()).await?;
    // Seal what is committed first, when this host holds the seal key, so the proof's
    // records are in its checkpoints (as the server's sealing job would at its next run).
    if config.seal.enabled {
        if let Ok(key) = config.seal.read_key() {
            zerodrop_server::sealer::seal_and_export(&store, &key, Path::new(&config.seal.log_path)).await;
        }
    }
    let options =
        write::Options { from_ms, to_ms, bounds: zerodrop_server::http::stats::bounds(config), now_ms: now_ms() };
    let stdout_temp;
    let target = match out {
        Some(path) => path,
        None => {
            stdout_temp = std::env::temp_dir().join(format!("zerodrop-proof-{}.json", uuid::Uuid::new_v4().simple()));
            &stdout_temp
        }
    };
    let summary = write::write(&store, &options, target).await;
    store.close().await;
    let summary = summary?;
    if out.is_none() {
        let copied = std::fs::File::open(target).and_then(|mut f| std::io::copy(&mut f, &mut std::io::stdout()));
        let _ = std::fs::remove_file(target);
        copied.context("writing the proof to standard output")?;
    }
    let dropped: i64 = summary
        .totals
        .by_outcome
        .iter()
        .filter(|t| t.outcome == zerodrop_store::outcome::Outcome::None)
        .map(|t| t.count)
        .sum();
    eprintln!(
        "proof: {} charge(s), {dropped} with no outcome (drop rate {} ppm), {} late; {} checkpoint(s), {} record(s) \
         not yet sealed; {} bill(s); body sha256 {}{}",
        summary.totals.charges,
        summary.totals.drop_rate_ppm,
        summary.totals.late,
        summary.checkpoints,
        summary.unsealed,
        summary.bills,
        summary.header.body_sha256,
        out.map(|p| format!("; written to {}", p.display())).unwrap_or_default(),
    );
    Ok(ExitCode::SUCCESS)
}

async fn verify_file(config: &Config, file: &Path, seal_log: Option<&Path>, keys: &[String]) -> Result<ExitCode> {
    let proof = verify::read(file)?;
    let log = match seal_log {
        Some(path) => Some(zerodrop_store::seal::log::read(path)?),
        None => None,
    };
    let mut trusted = config.seal.trusted_keys();
    trusted.extend(keys.iter().cloned());
    let store = Store::connect(&config.database_url, &config.database.pool()).await?;
    let inputs = verify::Inputs { trusted_keys: &trusted, log: log.as_deref() };
    let findings = verify::verify(&store, &proof, &inputs).await;
    store.close().await;
    let findings = findings?;
    for finding in &findings {
        println!("FAIL {finding}");
    }
    let records: usize = proof.body.charges.iter().map(|e| e.records().len()).sum();
    if findings.is_empty() {
        println!(
            "proof verified: {} charge(s), {records} sealed record(s), {} checkpoint(s) unchanged",
            proof.body.charges.len(),
            proof.body.checkpoints.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("proof FAILED: {} finding(s)", findings.len());
        Ok(ExitCode::FAILURE)
    }
}
