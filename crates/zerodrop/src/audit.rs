//! `zerodrop audit`: prints the report and exits non-zero on any violation.
//!
//! The store checks the database against itself; evidence that needs a key the database
//! does not hold is verified here, with the configuration's: each provider's public key
//! (stored notifications and signed answers) and the card-key key (stored codes).

use anyhow::Result;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use zerodrop_providers::{NoticeStatus, PaymentStatus, Provider, SignedAnswer};
use zerodrop_server::card_vault::Vault;
use zerodrop_server::Config;
use zerodrop_store::answers::AnswerRow;
use zerodrop_store::audit::{self, AuditOptions, Evidenced, Report, Verifier};
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
        verifier: Some(Arc::new(ConfigVerifier::new(config)?)),
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

/// Verifies evidence with the keys the configuration names.
struct ConfigVerifier {
    providers: HashMap<String, Arc<dyn Provider>>,
    /// `None` when no card-key key is configured: stored codes cannot be opened here.
    vault: Option<Vault>,
}

impl ConfigVerifier {
    fn new(config: &Config) -> Result<ConfigVerifier> {
        let providers = zerodrop_server::app::build_providers(config)?;
        let providers = providers.into_iter().map(|p| (p.name().to_owned(), p)).collect();
        let vault = match &config.card_keys.encryption_key {
            Some(key) => Some(Vault::from_config(key)?),
            None => None,
        };
        Ok(ConfigVerifier { providers, vault })
    }

    fn provider(&self, name: &str) -> Result<&dyn Provider, String> {
        self.providers.get(name).map(|p| p.as_ref()).ok_or_else(|| format!("provider {name} is not configured"))
    }
}

impl Verifier for ConfigVerifier {
    fn notification(&self, provider: &str, headers_json: &str, body: &[u8]) -> Result<Evidenced, String> {
        let notice = zerodrop_providers::verify_stored(self.provider(provider)?, headers_json, body)
            .map_err(|rejection| rejection.to_string())?;
        let (amount, paid_at_ms) = match notice.status {
            NoticeStatus::Paid { amount, paid_at_ms } => (Some(amount), paid_at_ms),
            NoticeStatus::AwaitingPayment | NoticeStatus::Closed => (None, None),
        };
        Ok(Evidenced {
            order_no: notice.order_no,
            trade_no: notice.trade_no,
            amount_minor: amount.map(|a| a.minor),
            currency: amount.map(|a| a.currency.code().to_owned()),
            paid_at_ms,
        })
    }

    fn answer(&self, answer: &AnswerRow) -> Result<Evidenced, String> {
        let signed =
            SignedAnswer { method: answer.method.clone(), content: answer.content.clone(), sign: answer.sign.clone() };
        let (order_no, status) = self.provider(&answer.provider)?.verify_answer(&signed).map_err(|e| e.to_string())?;
        Ok(match status {
            PaymentStatus::Paid { trade_no, amount, paid_at_ms, .. } => Evidenced {
                order_no,
                trade_no: Some(trade_no),
                amount_minor: Some(amount.minor),
                currency: Some(amount.currency.code().to_owned()),
                paid_at_ms,
            },
            PaymentStatus::NotFound | PaymentStatus::AwaitingPayment | PaymentStatus::Closed => {
                Evidenced { order_no, ..Evidenced::default() }
            }
        })
    }

    fn card_key_fingerprint(&self, sku: &str, ciphertext: &[u8]) -> Result<String, String> {
        let vault = self.vault.as_ref().ok_or("no card_keys.encryption_key is configured to open it")?;
        let code = vault.open(sku, ciphertext).map_err(|e| e.to_string())?;
        Ok(vault.fingerprint(sku, code.expose()))
    }
}

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for check in &report.checks {
        let mark = if check.violations == 0 { "ok  " } else { "FAIL" };
        out.push_str(&format!("{mark} {:<24} {}\n", check.name, check.description));
        // One line per failure, naming the check and the record.
        for example in &check.examples {
            out.push_str(&format!("     {}: {example}\n", check.name));
        }
        let unshown = check.violations - check.examples.len() as i64;
        if unshown > 0 {
            out.push_str(&format!("     {}: … and {unshown} more\n", check.name));
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
