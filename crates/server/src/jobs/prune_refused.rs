//! Pruning refused evidence: refused notifications that never verified (forged,
//! unsigned, unreadable) are deleted once past `notifications.refused_retention_days`.
//! Verified notifications are never deleted (the database refuses it). One job, ever
//! (its dedupe key), scheduled when the workers start; each run deletes a bounded number
//! of rows and schedules the next.

use super::{enqueue, Job, Outcome, Run};
use crate::services::Services;
use serde::{Deserialize, Serialize};
use zerodrop_domain::OrderId;
use zerodrop_store::{notifications, now_ms, Store, StoreError};

/// Rows deleted per transaction: short transactions, so intake never waits long.
const ROWS_PER_BATCH: i64 = 1_000;
/// Batches per run; a backlog past this is taken in the next run, a minute later.
const BATCHES_PER_RUN_MAX: u32 = 20;
/// Wait before the next run when a run stopped at its bound with rows left.
const BACKLOG_RUN_AGAIN_MS: i64 = 60_000;
/// A failing prune (the database down) is retried for hours before it needs a person.
const ATTEMPTS_MAX: i64 = 50;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PruneRefused {}

/// Schedules the job if it was never scheduled (the workers ask each time they start).
pub async fn schedule(store: &Store) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let now = now_ms();
    enqueue(&mut tx, &PruneRefused {}, now, now).await?;
    tx.commit().await
}

impl Job for PruneRefused {
    const KIND: &'static str = "prune_refused_notifications";
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        Self::KIND.to_owned()
    }

    fn order_id(&self) -> Option<OrderId> {
        None
    }

    async fn run(self, services: &Services, _run: &Run) -> Outcome {
        let settings = &services.config.notifications;
        let before = now_ms() - settings.retention_ms();
        let mut deleted = 0;
        for _ in 0..BATCHES_PER_RUN_MAX {
            let batch = async {
                let mut tx = services.store.begin().await?;
                let n = notifications::prune_refused(&mut tx, before, ROWS_PER_BATCH).await?;
                tx.commit().await.map(|()| n)
            }
            .await;
            let n = match batch {
                Ok(n) => n,
                Err(e) => return e.into(),
            };
            deleted += n;
            // A short batch: nothing past its retention is left.
            if n < ROWS_PER_BATCH.unsigned_abs() {
                if deleted > 0 {
                    tracing::info!(deleted, "refused notifications past their retention pruned");
                }
                return Outcome::RunAgainAt(now_ms() + settings.prune_interval_secs * 1000, None);
            }
        }
        tracing::info!(deleted, "refused notifications pruned; more remain");
        Outcome::RunAgainAt(now_ms() + BACKLOG_RUN_AGAIN_MS, Some("pruning a backlog".into()))
    }
}
