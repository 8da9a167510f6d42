//! The daily reconciliation: once a day per provider (its dedupe key names the day, so
//! any number of processes run it once), yesterday's bill is fetched and reconciled. The
//! next day's run is enqueued first, so the chain holds whatever becomes of this one; a
//! start enqueues the last week's days, so days missed while nothing ran are caught up.
//!
//! A million-line bill takes longer than a job's lease: the import runs as a task of its
//! own, and the job looks again every few seconds (a poll, not a failed attempt) until the
//! day is reconciled or the task failed. A bill not ready yet, or a provider unreachable,
//! is retried with backoff for about a day; exhausted, a person is asked.

use super::{enqueue, Job, Outcome, Run};
use crate::flows::reconcile::day;
use crate::flows::reconcile::ReconcileError;
use crate::services::Services;
use serde::{Deserialize, Serialize};
use zerodrop_domain::OrderId;
use zerodrop_providers::alipay::clock::{format_cst, parse_cst};
use zerodrop_store::{now_ms, StoreError};

/// About a day of retries (backoff up to 10 minutes) before a person is asked.
const ATTEMPTS_MAX: i64 = 150;
/// How often a run looks at the import it started.
const POLL_MS: i64 = 2_000;
/// Days before yesterday a start makes sure have a run.
const BACKFILL_DAYS: i64 = 7;
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReconcileDaily {
    pub provider: String,
    /// The bill's day, `YYYY-MM-DD` in China Standard Time.
    pub bill_date: String,
}

impl Job for ReconcileDaily {
    const KIND: &'static str = "reconcile_daily";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        format!("reconcile_daily:{}:{}", self.provider, self.bill_date)
    }

    fn order_id(&self) -> Option<OrderId> {
        None
    }

    async fn run(self, services: &Services, _run: &Run) -> Outcome {
        if let Err(e) = schedule_next(services, &self.provider, &self.bill_date).await {
            return e.into();
        }
        let key = self.dedupe_key();
        match reconciled(services, &self.provider, &self.bill_date).await {
            Ok(Some(id)) => {
                tracing::info!(provider = %self.provider, bill_date = %self.bill_date, reconciliation = id, "daily reconciliation done");
                return Outcome::Done;
            }
            Ok(None) => {}
            Err(e) => return e.into(),
        }
        let mut imports = match IMPORTS.lock() {
            Ok(imports) => imports,
            Err(_) => return Outcome::Retry("import registry poisoned".into()),
        };
        match imports.get(&key) {
            Some(Import::Running) => return again(),
            Some(Import::Failed(e)) => {
                let e = e.clone();
                imports.remove(&key);
                return Outcome::Retry(e);
            }
            None => {}
        }
        imports.insert(key.clone(), Import::Running);
        drop(imports);
        let (services, job) = (services.clone(), self.clone());
        tokio::spawn(async move {
            let imported = day::fetch_and_import(&services, &job.provider, &job.bill_date, None).await;
            let mut imports = IMPORTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match imported {
                Ok(done) => {
                    tracing::info!(
                        provider = %job.provider, bill_date = %job.bill_date, reconciliation = done.reconciliation_id,
                        differences = done.summary.differences(), already = done.already, "daily reconciliation"
                    );
                    imports.remove(&key);
                    services.wake();
                }
                Err(e) => {
                    let why = match e {
                        ReconcileError::Store(e) => format!("database: {e}"),
                        other => other.to_string(),
                    };
                    imports.insert(key, Import::Failed(why));
                }
            }
        });
        again()
    }
}

/// An import this process started for a day's run.
enum Import {
    Running,
    Failed(String),
}

/// Imports under way or failed in this process, by the run's dedupe key.
static IMPORTS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, Import>>> =
    std::sync::LazyLock::new(Default::default);

fn again() -> Outcome {
    Outcome::RunAgainAt(now_ms() + POLL_MS, Some("importing the bill".into()))
}

/// The reconciliation of `provider`'s bill for `bill_date`, if there is one.
async fn reconciled(services: &Services, provider: &str, bill_date: &str) -> Result<Option<i64>, StoreError> {
    let Some(from_ms) = parse_cst(&format!("{bill_date} 00:00:00")) else { return Ok(None) };
    let mut conn = services.store.reader().await?;
    zerodrop_store::bills::of_day(&mut conn, provider, from_ms).await
}

/// The day before the day holding `at_ms`, in China Standard Time, as `YYYY-MM-DD`.
pub fn yesterday_cst(at_ms: i64) -> String {
    format_cst(at_ms - DAY_MS).chars().take(10).collect()
}

/// When the run for `bill_date` is due: the next day at the configured hour (CST).
pub fn due_at_ms(bill_date: &str, hour_cst: u32) -> Option<i64> {
    let start = parse_cst(&format!("{bill_date} 00:00:00"))?;
    Some(start + DAY_MS + i64::from(hour_cst) * HOUR_MS)
}

async fn schedule_next(services: &Services, provider: &str, bill_date: &str) -> Result<(), StoreError> {
    let Some(start) = parse_cst(&format!("{bill_date} 00:00:00")) else { return Ok(()) };
    let next: String = format_cst(start + DAY_MS).chars().take(10).collect();
    schedule(services, provider, &next).await
}

/// Enqueues the run for `bill_date` at its due time (once: the dedupe key).
pub async fn schedule(services: &Services, provider: &str, bill_date: &str) -> Result<(), StoreError> {
    let Some(due) = due_at_ms(bill_date, services.config.reconcile.daily_at_hour_cst) else { return Ok(()) };
    let mut tx = services.store.begin().await?;
    let job = ReconcileDaily { provider: provider.to_owned(), bill_date: bill_date.to_owned() };
    enqueue(&mut tx, &job, due, now_ms()).await?;
    tx.commit().await
}

/// Enqueues the run for `bill_date` due now (an operator's, or the demo's, "reconcile
/// that day now"); still once per provider and day.
pub async fn run_now(services: &Services, provider: &str, bill_date: &str) -> Result<bool, StoreError> {
    let mut tx = services.store.begin().await?;
    let job = ReconcileDaily { provider: provider.to_owned(), bill_date: bill_date.to_owned() };
    let queued = enqueue(&mut tx, &job, now_ms(), now_ms()).await?;
    tx.commit().await?;
    services.wake();
    Ok(queued)
}

/// At start: makes sure the runs of yesterday and the week before exist for every
/// provider (a chain broken by a person's hand, or days nothing ran, are mended here; a
/// day already reconciled ends at once).
pub async fn ensure_scheduled(services: &Services) {
    if !services.config.reconcile.daily {
        return;
    }
    let now = now_ms();
    for provider in services.providers.keys() {
        for back in 0..=BACKFILL_DAYS {
            let day = yesterday_cst(now - back * DAY_MS);
            if let Err(e) = schedule(services, provider, &day).await {
                tracing::warn!(provider = %provider, error = %e, "could not schedule the daily reconciliation");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yesterday_and_due_times_are_china_standard_time() {
        // 2026-11-29 01:00 CST is 2026-11-28 17:00 UTC.
        let at = parse_cst("2026-11-29 01:00:00").unwrap();
        assert_eq!(yesterday_cst(at), "2026-11-28");
        assert_eq!(due_at_ms("2026-11-28", 10), parse_cst("2026-11-29 10:00:00"));
        assert_eq!(due_at_ms("not a date", 10), None);
    }
}
