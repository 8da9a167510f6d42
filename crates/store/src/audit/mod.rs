//! `zerodrop audit`: checks the whole database against the invariants the promise rests
//! on. Each check counts its violations and keeps a few examples for the report.
//!
//! The checks are grouped by concept: [`outcomes`] (every payment and charge ends, or is
//! with a person in time), [`money`] (the ledger, and that every transfer has a cause that
//! permits it), [`evidence`] (each payment is a charge backed by what the provider said,
//! verified again), [`card_keys`] (each code is one code, sold once), and the per-order
//! pass ([`orders`]: an order's row against its events, its price, its goods, its refunds
//! and what keeps it moving).
//!
//! Checks that need what the store does not hold (a provider's public key, the card-key
//! key) ask a [`Verifier`], which the caller builds from its configuration.

mod agreements;
mod card_keys;
mod evidence;
mod facts;
mod goods;
mod money;
mod orders;
mod outcomes;
mod pending;
mod refunds;
mod timeline;

use crate::answers::AnswerRow;
use crate::{Result, Store};
use serde::Serialize;
use std::sync::Arc;

/// Examples kept per check; the count is always complete.
pub const EXAMPLES_MAX: usize = 5;

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub description: &'static str,
    pub violations: i64,
    pub examples: Vec<String>,
}

impl Check {
    pub fn new(name: &'static str, description: &'static str) -> Check {
        Check { name, description, violations: 0, examples: Vec::new() }
    }

    /// Counts one violation; `example` names the record and what is wrong, in one line.
    pub fn violation(&mut self, example: impl Into<String>) {
        self.violations += 1;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(example.into());
        }
    }
}

/// What a provider's evidence says about a trade, read once its signature verified.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evidenced {
    pub order_no: String,
    pub trade_no: Option<String>,
    /// What it says was paid, when it says a trade was paid.
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub paid_at_ms: Option<i64>,
}

/// What the audit asks of the keys the store does not hold. Each answer is `Err` with a
/// reason when the evidence does not verify (or cannot be checked here).
pub trait Verifier: Send + Sync {
    /// Verifies a stored notification again with its provider's check, and reads it.
    fn notification(&self, provider: &str, headers_json: &str, body: &[u8]) -> Result<Evidenced, String>;
    /// Verifies a stored provider answer again with its provider's public key, and reads it.
    fn answer(&self, answer: &AnswerRow) -> Result<Evidenced, String>;
    /// Opens a stored card code and returns the fingerprint its code has, to compare with
    /// the stored one (the code itself never leaves the verifier).
    fn card_key_fingerprint(&self, sku: &str, ciphertext: &[u8]) -> Result<String, String>;
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub checked_at_ms: i64,
    pub checks: Vec<Check>,
    /// Attention items open, within their clock or not (those past it are violations).
    pub attention_open: i64,
    pub attention_overdue: i64,
    /// Charges by class: (class, count, total in minor units).
    pub charges: Vec<(String, i64, i64)>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.violations == 0)
    }

    pub fn violations(&self) -> i64 {
        self.checks.iter().map(|c| c.violations).sum()
    }
}

pub struct AuditOptions {
    /// A parked notification older than this without an attention item is a violation.
    pub parked_age_ms_max: i64,
    /// A paid order may be this long past its delivery deadline while its deadline job
    /// runs (jobs are polled, and may queue behind others).
    pub deadline_grace_ms: i64,
    /// A refund may stay unsettled this long (the refund job's own bound, plus slack);
    /// past it, an unknown refund must be with a person in time.
    pub refund_unsettled_ms_max: i64,
    /// A charge for an unknown order may wait this long for its order before its refund.
    pub park_window_ms: i64,
    /// Verifies evidence again (signatures, card codes). Without one the audit still checks
    /// that every cited record exists and agrees with its stored columns, but cannot
    /// check signatures or codes.
    pub verifier: Option<Arc<dyn Verifier>>,
}

impl AuditOptions {
    /// The bounds charges' outcomes are judged by, as the proof and the figures use them.
    pub fn bounds(&self) -> crate::outcome::Bounds {
        crate::outcome::Bounds { deadline_grace_ms: self.deadline_grace_ms, park_window_ms: self.park_window_ms }
    }

    pub fn new(parked_age_ms_max: i64) -> AuditOptions {
        AuditOptions {
            parked_age_ms_max,
            deadline_grace_ms: crate::outcome::DEADLINE_GRACE_MS_DEFAULT,
            refund_unsettled_ms_max: 4 * 86_400_000,
            park_window_ms: 2_700_000,
            verifier: None,
        }
    }
}

/// Placeholders: SQLite numbers `$N` parameters in the order they first appear, so
/// every check's SQL names `$1` before `$2`.
///
/// Runs every check in one read snapshot, so checks that compare two tables (an order
/// and its events, a payment and its delivery) never see a change half made by a
/// transaction that commits while the audit runs.
pub async fn run(store: &Store, options: &AuditOptions, now_ms: i64) -> Result<Report> {
    let mut snapshot = store.snapshot().await?;
    let c = &mut *snapshot;
    let mut checks = Vec::new();
    let verifier = options.verifier.as_deref();
    checks.extend(outcomes::checks(c, options, now_ms).await?);
    checks.extend(evidence::checks(c, verifier).await?);
    checks.extend(money::checks(c).await?);
    checks.extend(card_keys::checks(c, verifier).await?);
    let mut cause = money::transfer_has_cause();
    checks.extend(orders::checks(c, &mut cause).await?);
    money::transfer_causes(c, &mut cause).await?;
    checks.push(cause);
    checks.extend(agreements::checks(c).await?);

    let attention_open = crate::attention::count_open(&mut *c).await?;
    let attention_overdue = crate::attention::count_overdue(&mut *c, now_ms).await?;
    let charges = crate::charges::count_by_class(&mut *c).await?;
    Ok(Report { checked_at_ms: now_ms, checks, attention_open, attention_overdue, charges })
}

/// Runs one SQL check: its SQL selects one text column naming each offending row (NULL
/// shows as empty).
async fn sql_check(
    conn: &mut crate::Conn,
    name: &'static str,
    description: &'static str,
    sql: &str,
    params: &[i64],
) -> Result<Check> {
    let mut query = sqlx::query_scalar::<_, Option<String>>(sql);
    for p in params {
        query = query.bind(*p);
    }
    let rows = query.fetch_all(conn).await?;
    let violations = rows.len() as i64;
    let examples = rows.into_iter().take(EXAMPLES_MAX).map(Option::unwrap_or_default).collect();
    Ok(Check { name, description, violations, examples })
}
