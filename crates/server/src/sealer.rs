//! The sealing job: every `seal.interval_secs`, fold what committed since the last
//! checkpoint into a signed checkpoint and append it to the seal log.
//!
//! It is a loop beside the job workers rather than a stored job: it has no subject to
//! retry, and a missed run loses nothing (the next one seals everything pending). Its
//! bound is the audit's `sealing_keeps_up` check: committed changes waiting longer than
//! `seal.pending_age_secs_max` fail the audit, so a sealer that stopped is seen.

use crate::config::SealConfig;
use std::path::PathBuf;
use std::time::Duration;
use zerodrop_store::seal::{checkpoint, key::SealKey, log};
use zerodrop_store::{now_ms, Store};

/// Runs until `stop` turns true, then seals and exports once more so nothing committed
/// before the stop waits for the next start.
pub async fn run(
    store: Store,
    config: SealConfig,
    key: std::sync::Arc<SealKey>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let interval = Duration::from_secs(config.interval_secs);
    let path = PathBuf::from(&config.log_path);
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(interval) => false,
            _ = stop.changed() => true,
        };
        seal_and_export(&store, &key, &path).await;
        if stopping || *stop.borrow() {
            return;
        }
    }
}

/// One run; failures are logged and retried by the next run (nothing is lost: the
/// pending heads stay until a checkpoint takes them, and export appends what the log lacks).
pub async fn seal_and_export(store: &Store, key: &SealKey, path: &std::path::Path) {
    match checkpoint::seal(store, key, now_ms()).await {
        Ok(written) => {
            let heads: i64 = written.iter().map(|c| c.heads_count).sum();
            tracing::debug!(checkpoints = written.len(), heads, "sealed");
        }
        // Another instance sealing at the same moment wins the number; ours retries later.
        Err(e) if e.is_retryable() => tracing::debug!(error = %e, "sealing raced another instance"),
        Err(e) => tracing::warn!(error = %e, "sealing failed; retrying at the next interval"),
    }
    if let Err(e) = log::export(store, path).await {
        tracing::warn!(error = %e, log = %path.display(), "exporting checkpoints to the seal log failed; retrying");
    }
}
