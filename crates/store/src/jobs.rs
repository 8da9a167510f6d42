//! The durable job queue.
//!
//! A job is enqueued in the same transaction as the change that needs it. Workers claim
//! due jobs with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several processes
//! share the work; SQLite's single writer serialises claims). A process killed mid-job
//! leaves its lease to expire and another run takes over; handlers are idempotent, so a
//! second run changes nothing. Attempts are counted at claim time, so even a job that
//! crashes its process every time is bounded. An exhausted job ends in `attention`.

use crate::{Dialect, Result, Store, StoreError, Tx};
use rand::Rng;
use serde::Serialize;
use zerodrop_domain::OrderId;

/// First retry delay after a failure.
pub const BACKOFF_MS_BASE: i64 = 1_000;
/// Longest delay between retries: a provider outage of hours is retried every 10 minutes.
pub const BACKOFF_MS_MAX: i64 = 600_000;
/// Longest error text kept per job; provider error pages can be large.
pub const LAST_ERROR_CHARS_MAX: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Done,
    Attention,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Done => "done",
            JobState::Attention => "attention",
        }
    }
}

pub struct NewJob {
    pub kind: &'static str,
    pub order_id: Option<OrderId>,
    pub payload: serde_json::Value,
    pub run_at_ms: i64,
    pub max_attempts: i64,
    /// A job with the same key is enqueued at most once, ever.
    pub dedupe_key: Option<String>,
}

/// Enqueues in the caller's transaction. `false` means a job with the same dedupe key exists.
pub async fn enqueue(tx: &mut Tx, job: &NewJob, now_ms: i64) -> Result<bool> {
    if job.max_attempts < 1 {
        return Err(StoreError::Invariant(format!("job {} needs at least one attempt", job.kind)));
    }
    let inserted = sqlx::query(
        "INSERT INTO jobs (kind, order_id, payload, state, run_at_ms, attempts, max_attempts, dedupe_key, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(job.kind)
    .bind(job.order_id.map(|id| id.to_string()))
    .bind(job.payload.to_string())
    .bind(JobState::Queued.as_str())
    .bind(job.run_at_ms)
    .bind(job.max_attempts)
    .bind(&job.dedupe_key)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

#[derive(Clone, Debug)]
pub struct ClaimedJob {
    pub id: i64,
    pub kind: String,
    pub order_id: Option<String>,
    pub payload: serde_json::Value,
    /// This run's attempt number, starting at 1.
    pub attempt: i64,
    pub max_attempts: i64,
    pub owner: String,
}

/// Claims up to `limit` due jobs of the given kinds for `owner` until `now + lease_ms`.
/// Kinds this build does not handle stay queued, visible, for a build that does.
pub async fn claim(
    store: &Store,
    kinds: &[&str],
    owner: &str,
    now_ms: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<ClaimedJob>> {
    if kinds.is_empty() || limit < 1 {
        return Ok(Vec::new());
    }
    let skip_locked = match store.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    let kind_params: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 5)).collect();
    let sql = format!(
        "UPDATE jobs SET lease_until_ms = $1, lease_owner = $2, attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND run_at_ms <= $3 \
                      AND (lease_until_ms IS NULL OR lease_until_ms < $3) AND kind IN ({}) \
                      ORDER BY run_at_ms LIMIT $4{skip_locked}) \
         RETURNING id, kind, order_id, payload, attempts, max_attempts",
        kind_params.join(", ")
    );
    let mut query = sqlx::query_as::<_, JobRecord>(&sql).bind(now_ms + lease_ms).bind(owner).bind(now_ms).bind(limit);
    for kind in kinds {
        query = query.bind(*kind);
    }
    let mut tx = store.begin().await?;
    let rows = query.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    rows.into_iter().map(|r| r.claimed_by(owner)).collect()
}

/// A `jobs` row as [`claim`] returns it.
#[derive(sqlx::FromRow)]
struct JobRecord {
    id: i64,
    kind: String,
    order_id: Option<String>,
    /// The job's payload, as JSON text.
    payload: String,
    /// Attempts so far, this one included.
    attempts: i64,
    max_attempts: i64,
}

impl JobRecord {
    /// The claim's view of the row. Not a `TryFrom`: the owner is the claimer's, not a column.
    fn claimed_by(self, owner: &str) -> Result<ClaimedJob> {
        Ok(ClaimedJob {
            id: self.id,
            kind: self.kind,
            order_id: self.order_id,
            payload: serde_json::from_str(&self.payload).map_err(StoreError::Json)?,
            attempt: self.attempts,
            max_attempts: self.max_attempts,
            owner: owner.to_owned(),
        })
    }
}

/// Marks the job done. Call it in the transaction that made the job's effect durable
/// when there is one, so "effect happened" and "job finished" cannot disagree.
pub async fn complete(tx: &mut Tx, job: &ClaimedJob, now_ms: i64) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET state = 'done', finished_at_ms = $1, lease_until_ms = NULL, last_error = NULL \
         WHERE id = $2 AND state = 'queued'",
    )
    .bind(now_ms)
    .bind(job.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A successful run that must run again later (a poll). Attempts reset: only failures count.
pub async fn run_again_at(tx: &mut Tx, job: &ClaimedJob, run_at_ms: i64, note: Option<&str>) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET run_at_ms = $1, attempts = 0, lease_until_ms = NULL, lease_owner = NULL, last_error = $2 \
         WHERE id = $3 AND state = 'queued'",
    )
    .bind(run_at_ms)
    .bind(note.map(truncate))
    .bind(job.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A failed run. Retries with backoff while attempts remain; otherwise the job ends in
/// `attention` and returns true: the caller then puts it in front of a person (flags its
/// order, or raises an attention item) in the same transaction.
pub async fn fail(tx: &mut Tx, job: &ClaimedJob, error: &str, now_ms: i64) -> Result<bool> {
    let error = truncate(error);
    if job.attempt >= job.max_attempts {
        sqlx::query(
            "UPDATE jobs SET state = 'attention', last_error = $1, finished_at_ms = $2, lease_until_ms = NULL \
             WHERE id = $3 AND state = 'queued'",
        )
        .bind(&error)
        .bind(now_ms)
        .bind(job.id)
        .execute(&mut **tx)
        .await?;
        return Ok(true);
    }
    let run_at_ms = now_ms + backoff_ms(job.attempt);
    sqlx::query(
        "UPDATE jobs SET run_at_ms = $1, last_error = $2, lease_until_ms = NULL, lease_owner = NULL \
         WHERE id = $3 AND state = 'queued'",
    )
    .bind(run_at_ms)
    .bind(&error)
    .bind(job.id)
    .execute(&mut **tx)
    .await?;
    Ok(false)
}

/// Exponential backoff with full jitter on the upper half: attempt 1 waits 0.5–1 s,
/// attempt 2 waits 1–2 s, … capped at [`BACKOFF_MS_MAX`]. Jitter spreads out retries
/// of jobs that failed together (a provider outage), so they do not return together.
pub fn backoff_ms(attempt: i64) -> i64 {
    let exponent = attempt.clamp(1, 30) - 1;
    let ceiling = BACKOFF_MS_BASE.saturating_mul(1_i64 << exponent.min(20)).min(BACKOFF_MS_MAX);
    rand::rng().random_range(ceiling / 2..=ceiling)
}

fn truncate(text: &str) -> String {
    text.chars().take(LAST_ERROR_CHARS_MAX).collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct JobCount {
    pub kind: String,
    pub state: String,
    pub count: i64,
}

pub async fn counts(conn: &mut crate::Conn) -> Result<Vec<JobCount>> {
    let rows = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state ORDER BY kind, state",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(kind, state, count)| JobCount { kind, state, count }).collect())
}

/// Queued jobs, due or not, for one order (the console and tests read these).
pub async fn for_order(conn: &mut crate::Conn, order_id: OrderId) -> Result<Vec<(String, String, i64, i64)>> {
    let rows = sqlx::query_as::<_, (String, String, i64, i64)>(
        "SELECT kind, state, run_at_ms, attempts FROM jobs WHERE order_id = $1 ORDER BY id",
    )
    .bind(order_id.to_string())
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// True when a job of `kind` for this order is running now: claimed, and its lease not yet
/// expired (a finished run clears its lease). The deadline asks this of the delivery job,
/// whose request may be out at the endpoint with its answer not yet known.
pub async fn running_for_order(conn: &mut crate::Conn, order_id: OrderId, kind: &str, now_ms: i64) -> Result<bool> {
    let running = sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM jobs WHERE order_id = $1 AND kind = $2 AND state = 'queued' AND lease_until_ms > $3",
    )
    .bind(order_id.to_string())
    .bind(kind)
    .bind(now_ms)
    .fetch_one(conn)
    .await?;
    Ok(running > 0)
}

/// Which workers finished jobs, with how many each (to see that processes shared work).
pub async fn finished_by_owner(conn: &mut crate::Conn) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query_as::<_, (String, i64)>(
        "SELECT lease_owner, COUNT(*) FROM jobs WHERE state = 'done' AND lease_owner IS NOT NULL GROUP BY lease_owner ORDER BY lease_owner",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// When the next queued job is due, so an idle worker can sleep until then.
pub async fn next_due_ms(conn: &mut crate::Conn) -> Result<Option<i64>> {
    // MIN over no rows is NULL: one row always comes back, its value absent when nothing is queued.
    let next = sqlx::query_scalar::<_, Option<i64>>("SELECT MIN(run_at_ms) FROM jobs WHERE state = 'queued'")
        .fetch_one(conn)
        .await?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_doubles_and_caps_with_jitter() {
        for attempt in 1..40 {
            let ceiling = (BACKOFF_MS_BASE << (attempt - 1).min(20)).min(BACKOFF_MS_MAX);
            let wait = backoff_ms(attempt);
            assert!((ceiling / 2..=ceiling).contains(&wait), "attempt {attempt}: {wait}");
        }
        // The shortest possible schedule of 300 attempts still spans more than a day.
        let shortest: i64 = (1..300).map(|a| (BACKOFF_MS_BASE << (a - 1).min(20)).min(BACKOFF_MS_MAX) / 2).sum();
        assert!(shortest > 24 * 3_600_000, "{shortest}");
    }
}
