//! Group commit for notifications.
//!
//! Verified notifications queue here; one task takes everything queued (up to
//! [`BATCH_MAX`]), records it all in one transaction, commits once, and only then
//! answers each request. The durable commit is the expensive part of a notification
//! (an fsync, and on PostgreSQL the lock on a currency's issuance account), so sharing
//! it is what lets throughput grow with load. Nothing is acknowledged before its commit.
//! If a batch fails, its items are retried one transaction each, so one bad item never
//! fails the others; unless the database is unreachable: then the batch, and everything
//! queued behind it while it waited, is answered "retry later" at once, so no provider
//! waits for more than about one connection wait.

use super::accept::accept_in;
use super::evidence::Inbound;
use tokio::sync::{mpsc, oneshot};
use zerodrop_providers::{AckKind, Notice};
use zerodrop_store::{now_ms, Store, StoreError};

/// Most notifications committed together. Bounds a batch's transaction (and the time
/// the first of them waits for the last).
pub const BATCH_MAX: usize = 64;
/// Notifications waiting for the committer before new ones wait to be queued. Providers
/// time out after seconds, so a longer queue would only answer requests nobody awaits.
pub const QUEUE_MAX: usize = 4_096;
/// Attempts for one notification's own transaction after a failed batch.
const SINGLE_ATTEMPTS_MAX: u32 = 3;
/// Committers on PostgreSQL, each with its own connection, so round trips overlap.
/// Notifications are routed by order number: copies of one notification always meet in
/// the same committer, and ledger accounts are locked in one global order at commit
/// (see `zerodrop_store::ledger`), so committers never deadlock each other.
pub const COMMITTERS_POSTGRES: usize = 4;
/// SQLite has one writer; more committers would only queue for it.
pub const COMMITTERS_SQLITE: usize = 1;

struct Work {
    inbound: Inbound,
    notice: Notice,
    reply: oneshot::Sender<Result<AckKind, SubmitError>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the committer has stopped")]
    Stopped,
    #[error("the committer dropped the request")]
    Dropped,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database could not be reached for this notification's batch (the cause is
    /// logged once for the batch).
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

impl SubmitError {
    /// True when nothing could be stored because the database is unreachable.
    pub fn is_unavailable(&self) -> bool {
        match self {
            SubmitError::Unavailable(_) => true,
            SubmitError::Store(e) => e.is_unavailable(),
            SubmitError::Stopped | SubmitError::Dropped => false,
        }
    }
}

#[derive(Clone)]
pub struct Committer {
    queues: Vec<mpsc::Sender<Work>>,
}

impl Committer {
    /// Starts the committer tasks. They end when the last handle is dropped.
    pub fn start(store: Store) -> Committer {
        let count = match store.dialect() {
            zerodrop_store::Dialect::Sqlite => COMMITTERS_SQLITE,
            zerodrop_store::Dialect::Postgres => COMMITTERS_POSTGRES,
        };
        let queues = (0..count)
            .map(|_| {
                let (queue, receiver) = mpsc::channel(QUEUE_MAX / count);
                tokio::spawn(run(store.clone(), receiver));
                queue
            })
            .collect();
        Committer { queues }
    }

    /// Records the notification; returns once its outcome is durable (or failed).
    pub async fn submit(&self, inbound: Inbound, notice: Notice) -> Result<AckKind, SubmitError> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        notice.order_no.hash(&mut hasher);
        let queue = &self.queues[(hasher.finish() % self.queues.len() as u64) as usize];
        let (reply, answer) = oneshot::channel();
        queue.send(Work { inbound, notice, reply }).await.map_err(|_| SubmitError::Stopped)?;
        answer.await.map_err(|_| SubmitError::Dropped)?
    }
}

async fn run(store: Store, mut receiver: mpsc::Receiver<Work>) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match receiver.try_recv() {
                Ok(work) => batch.push(work),
                Err(_) => break,
            }
        }
        if let Err(e) = commit(&store, batch).await {
            // Whatever queued while the batch waited for the database would wait as long
            // again for the same answer: it gets it now.
            let mut waiting = 0;
            while let Ok(work) = receiver.try_recv() {
                let _ = work.reply.send(Err(SubmitError::Unavailable(e.clone())));
                waiting += 1;
            }
            tracing::warn!(error = %e, waiting, "database unavailable; notifications answered retry-later");
        }
    }
}

/// Records a batch and answers each item. Returns the cause when the database was
/// unreachable (every item was answered with it).
async fn commit(store: &Store, batch: Vec<Work>) -> Result<(), String> {
    if batch.len() > 1 {
        match together(store, &batch).await {
            Ok(acks) => {
                for (work, ack) in batch.into_iter().zip(acks) {
                    let _ = work.reply.send(Ok(ack));
                }
                return Ok(());
            }
            Err(e) if e.is_unavailable() => return Err(fail_all(batch, &e)),
            Err(e) => {
                tracing::warn!(error = %e, size = batch.len(), "batch failed; recording its notifications one by one")
            }
        }
    }
    let mut batch = batch.into_iter();
    while let Some(work) = batch.next() {
        match alone(store, &work).await {
            Err(e) if e.is_unavailable() => {
                let _ = work.reply.send(Err(SubmitError::Unavailable(e.to_string())));
                return Err(fail_all(batch.collect(), &e));
            }
            outcome => {
                let _ = work.reply.send(outcome.map_err(SubmitError::Store));
            }
        }
    }
    Ok(())
}

fn fail_all(batch: Vec<Work>, e: &StoreError) -> String {
    let cause = e.to_string();
    for work in batch {
        let _ = work.reply.send(Err(SubmitError::Unavailable(cause.clone())));
    }
    cause
}

async fn together(store: &Store, batch: &[Work]) -> Result<Vec<AckKind>, StoreError> {
    let mut tx = store.begin().await?;
    let now = now_ms();
    let mut acks = Vec::with_capacity(batch.len());
    for work in batch {
        acks.push(accept_in(&mut tx, &work.inbound, &work.notice, now).await?);
    }
    tx.commit().await?;
    Ok(acks)
}

async fn alone(store: &Store, work: &Work) -> Result<AckKind, StoreError> {
    let mut attempt = 1;
    loop {
        let outcome: Result<AckKind, StoreError> = async {
            let mut tx = store.begin().await?;
            let ack = accept_in(&mut tx, &work.inbound, &work.notice, now_ms()).await?;
            tx.commit().await?;
            Ok(ack)
        }
        .await;
        match outcome {
            // An unreachable database already took the whole connection wait.
            Err(e) if e.is_retryable() && !e.is_unavailable() && attempt < SINGLE_ATTEMPTS_MAX => attempt += 1,
            other => return other,
        }
    }
}
