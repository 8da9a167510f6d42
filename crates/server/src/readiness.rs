//! Readiness: whether the database has been reached and migrated since this process
//! started, and the loop that gets it there.
//!
//! `serve` starts without the database: it binds its port, answers `/healthz`, answers
//! `/readyz` and the API with 503, and tries the database again and again with a growing
//! pause until it can migrate. Then it is ready for good (a later outage is met request
//! by request: each fails after the connection wait, and `/readyz` says so), and the job
//! workers start. A failure that no wait can fix (a migration edited after it ran, a
//! schema newer than this build, a password refused) ends the process instead, as it did
//! before, so the supervisor and the operator see it.

use crate::config::redact_url;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use zerodrop_domain::Plans;
use zerodrop_store::{Store, StoreError};

/// Pause after the first failed attempt; each later pause doubles, up to the cap.
pub const RETRY_PAUSE_MS_FIRST: u64 = 250;
/// Longest pause between attempts: a database that comes back is noticed within this
/// (plus one connection wait), and an unreachable one costs one log line per pause.
pub const RETRY_PAUSE_MS_MAX: u64 = 10_000;
/// Up to this share (in percent) of a pause is added at random, so processes that lost
/// the database together do not all knock at once when it returns.
const RETRY_JITTER_PCT: u64 = 20;

/// Shared flag: false until the first successful migration of this process. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<watch::Sender<bool>>);

impl Readiness {
    /// For a store already migrated (tests, the one-shot commands).
    pub fn ready() -> Readiness {
        Readiness(Arc::new(watch::Sender::new(true)))
    }

    /// For a store not reached yet: [`bring_up`] makes it ready.
    pub fn waiting() -> Readiness {
        Readiness(Arc::new(watch::Sender::new(false)))
    }

    pub fn is_ready(&self) -> bool {
        *self.0.borrow()
    }

    fn set_ready(&self) {
        self.0.send_replace(true);
    }

    /// Resolves once ready (at once if it is already).
    pub async fn wait(&self) {
        let mut ready = self.0.subscribe();
        // The sender lives as long as `self`, so this cannot fail while it is awaited.
        let _ = ready.wait_for(|ready| *ready).await;
    }
}

/// Migrates `store` once and publishes the catalog's plan terms (a stored terms version
/// whose content changed is an error naming it: a version never changes); on success the
/// process is ready. For starts that must fail at once when the database is down (the
/// one-shot commands, the tests' in-process server).
pub async fn migrate_once(store: &Store, plans: &Plans, readiness: &Readiness) -> Result<usize, StoreError> {
    let applied = store.migrate().await?;
    let mut tx = store.begin().await?;
    let published = zerodrop_store::agreements::terms::publish(&mut tx, plans, zerodrop_store::now_ms()).await?;
    tx.commit().await?;
    if published > 0 {
        tracing::info!(published, "plan terms versions published");
    }
    readiness.set_ready();
    Ok(applied)
}

/// Tries to reach and migrate the database until it works, logging every attempt; then
/// marks the process ready. Returns the error that no retry can fix, if one comes.
pub async fn bring_up(
    store: &Store,
    plans: &Plans,
    readiness: &Readiness,
    database_url: &str,
) -> Result<(), StoreError> {
    let database = redact_url(database_url);
    let mut attempt: u32 = 1;
    let mut pause_ms = RETRY_PAUSE_MS_FIRST;
    // An unreachable database answers only after the connection wait: say what is
    // being waited for before the first attempt's verdict.
    tracing::info!(%database, "reaching the database");
    loop {
        match migrate_once(store, plans, readiness).await {
            Ok(applied) => {
                tracing::info!(attempt, %database, migrations_applied = applied, "database reached and migrated; ready");
                return Ok(());
            }
            Err(e) if e.is_unavailable() => {
                let retry_in_ms = with_jitter(pause_ms);
                tracing::warn!(
                    attempt, %database, error = %e, retry_in_ms,
                    "database not reachable; answering 503 until it is, and trying again"
                );
                tokio::time::sleep(Duration::from_millis(retry_in_ms)).await;
                pause_ms = next_pause_ms(pause_ms);
                attempt = attempt.saturating_add(1);
            }
            Err(e) => {
                tracing::error!(attempt, %database, error = %e, "database refused for good; stopping");
                return Err(e);
            }
        }
    }
}

/// [`bring_up`] running in its own task (none when already ready). Dropping it stops the
/// attempts.
pub struct BringUp {
    task: Option<tokio::task::JoinHandle<()>>,
    failed: Option<tokio::sync::oneshot::Receiver<StoreError>>,
}

impl BringUp {
    pub fn start(store: &Store, plans: &Plans, readiness: &Readiness, database_url: &str) -> BringUp {
        if readiness.is_ready() {
            return BringUp { task: None, failed: None };
        }
        let (tell, failed) = tokio::sync::oneshot::channel();
        let (store, readiness, url) = (store.clone(), readiness.clone(), database_url.to_owned());
        let plans = plans.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = bring_up(&store, &plans, &readiness, &url).await {
                let _ = tell.send(e);
            }
        });
        BringUp { task: Some(task), failed: Some(failed) }
    }

    /// Resolves with the error that stopped the attempts; never, if there is none.
    pub async fn failed(&mut self) -> StoreError {
        if let Some(failed) = self.failed.as_mut() {
            if let Ok(e) = failed.await {
                return e;
            }
            self.failed = None;
        }
        std::future::pending().await
    }
}

impl Drop for BringUp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `pause_ms` plus up to [`RETRY_JITTER_PCT`] of it, at random.
fn with_jitter(pause_ms: u64) -> u64 {
    pause_ms + rand::rng().random_range(0..=pause_ms * RETRY_JITTER_PCT / 100)
}

/// The pause after `pause_ms`: twice as long, up to the cap.
fn next_pause_ms(pause_ms: u64) -> u64 {
    (pause_ms * 2).min(RETRY_PAUSE_MS_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_is_waited_for_and_told_once() {
        let readiness = Readiness::waiting();
        assert!(!readiness.is_ready());
        let waiter = tokio::spawn({
            let readiness = readiness.clone();
            async move { readiness.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "nobody is ready before the database is");
        readiness.set_ready();
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").expect("joined");
        assert!(readiness.is_ready());
        Readiness::ready().wait().await;
    }

    #[test]
    fn the_pauses_grow_to_a_bounded_cap() {
        let mut pause = RETRY_PAUSE_MS_FIRST;
        let mut pauses = Vec::new();
        for _ in 0..10 {
            pauses.push(pause);
            pause = next_pause_ms(pause);
        }
        assert_eq!(pauses[..4], [250, 500, 1_000, 2_000]);
        assert_eq!(*pauses.last().unwrap(), RETRY_PAUSE_MS_MAX);
        for pause in pauses {
            let waited = with_jitter(pause);
            assert!((pause..=pause * 6 / 5).contains(&waited), "{pause} ms became {waited} ms");
        }
    }
}
