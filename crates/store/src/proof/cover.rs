//! Which signed checkpoints seal the records a proof names, and which records no
//! checkpoint seals yet.
//!
//! A checkpoint records the last position of every stream the transactions it folds moved;
//! a head vouches for every earlier row of its stream through the chain. A record is
//! sealed by the first checkpoint holding a head of its stream at or after its place.
//! Checkpoints are found by time first (a record written at `t` commits, and is taken by a
//! sealing run, at about `t`; writers' and sealer's clocks and commit delays are covered
//! by [`SEAL_CLOCK_SLACK_MS`]), then, for one order's proof, by their heads exactly.

use crate::seal::batch;
use crate::seal::checkpoint::{self, Checkpoint};
use crate::seal::Head;
use crate::{Conn, Result, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How far a record's time and the checkpoint that seals it may disagree: clocks of
/// several instances, a commit that waited, a sealing run that read its pending rows late.
pub const SEAL_CLOCK_SLACK_MS: i64 = 300_000;
/// Records named one by one in `unsealed`; the count is always complete.
pub const UNSEALED_NAMED_MAX: usize = 1_000;
/// Checkpoints whose heads one order's proof reads at most per record group (a request
/// path: bounded whatever the history).
const SCAN_CHECKPOINTS_MAX: i64 = 200;
/// How far before a record's time one order's proof starts reading heads: less than
/// [`SEAL_CLOCK_SLACK_MS`], so that at the shortest sealing interval (1 s) the scan still
/// reaches past the record. A record sealed earlier still (clocks further apart) is
/// reported unsealed, never the other way round.
const SCAN_SLACK_MS: i64 = 60_000;

/// The records a proof names that no checkpoint sealed when it was made (the sealing job
/// has not run since they were written).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsealed {
    pub count: i64,
    /// `stream #place`, the first [`UNSEALED_NAMED_MAX`].
    pub records: Vec<String>,
}

impl Unsealed {
    pub fn add(&mut self, stream: &str, seq: i64) {
        self.count += 1;
        if self.records.len() < UNSEALED_NAMED_MAX {
            self.records.push(format!("{stream} #{seq}"));
        }
    }
}

/// The heads committed transactions moved that no checkpoint took yet: stream → the
/// furthest place. A record at or before such a place may be unsealed.
pub async fn pending_heads(conn: &mut Conn) -> Result<HashMap<String, i64>> {
    let rows = sqlx::query_scalar::<_, String>("SELECT heads FROM seal_pending").fetch_all(conn).await?;
    let mut furthest = HashMap::new();
    for text in rows {
        let heads: Vec<Head> = serde_json::from_str(&text).map_err(StoreError::Json)?;
        for Head(stream, seq, _) in heads {
            let slot = furthest.entry(stream).or_insert(seq);
            *slot = (*slot).max(seq);
        }
    }
    Ok(furthest)
}

/// The first checkpoint at or after `at_ms`, if any.
async fn first_from(conn: &mut Conn, at_ms: i64) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar::<_, Option<i64>>("SELECT MIN(id) FROM seal_checkpoints WHERE at_ms >= $1")
        .bind(at_ms)
        .fetch_one(conn)
        .await?)
}

/// The ids of the checkpoints that cover records written in `[t_min, t_max]`: from the
/// first one written at or after `t_min` less the slack, to the first one written after
/// `t_max` plus the slack (or the last there is). `None` when there are none.
pub async fn range(conn: &mut Conn, t_min: i64, t_max: i64) -> Result<Option<(i64, i64)>> {
    let Some(first) = first_from(&mut *conn, t_min - SEAL_CLOCK_SLACK_MS).await? else { return Ok(None) };
    let last = match first_from(&mut *conn, t_max + SEAL_CLOCK_SLACK_MS + 1).await? {
        Some(id) => id,
        None => sqlx::query_scalar::<_, i64>("SELECT MAX(id) FROM seal_checkpoints").fetch_one(&mut *conn).await?,
    };
    Ok(Some((first, last.max(first))))
}

/// The checkpoint by which every one of `records` (stream, place, time) is sealed,
/// read from the heads themselves, and the records no checkpoint seals yet.
pub async fn covering(conn: &mut Conn, records: &[(String, i64, i64)]) -> Result<(Option<Checkpoint>, Vec<String>)> {
    // A record written in a batch (migration 0008) is checkpointed under its batch's head;
    // any other under its own stream's.
    let mut keyed: Vec<(String, i64, i64, String)> = Vec::with_capacity(records.len());
    for (stream, seq, at_ms) in records {
        let key = match batch::of_record(&mut *conn, stream, *seq).await? {
            Some(id) => batch::stream(&id),
            None => stream.clone(),
        };
        keyed.push((stream.clone(), *seq, *at_ms, key));
    }
    let mut open: Vec<&(String, i64, i64, String)> = keyed.iter().collect();
    open.sort_by_key(|r| r.2);
    let mut latest: Option<i64> = None;
    while let Some(&(_, _, at_ms, _)) = open.first().copied() {
        let Some(start) = first_from(&mut *conn, at_ms - SCAN_SLACK_MS).await? else { break };
        let before = open.len();
        let page = checkpoint::list(&mut *conn, start - 1, SCAN_CHECKPOINTS_MAX).await?;
        for cp in &page {
            let heads = checkpoint::heads(&mut *conn, cp.id).await?;
            let by_stream: HashMap<&str, i64> = heads.iter().map(|Head(s, seq, _)| (s.as_str(), *seq)).collect();
            open.retain(|(_, seq, _, key)| {
                // A batch's head names the whole batch; a stream's, every place up to it.
                let sealed = by_stream.get(key.as_str()).is_some_and(|head| batch::id_of(key).is_some() || head >= seq);
                if sealed {
                    latest = Some(latest.map_or(cp.id, |l: i64| l.max(cp.id)));
                }
                !sealed
            });
            if open.is_empty() || open.first().is_some_and(|r| r.2 > cp.at_ms + SEAL_CLOCK_SLACK_MS) {
                break;
            }
        }
        if open.len() == before {
            // Nothing more is sealed within the scan: the rest wait for the sealing job.
            break;
        }
    }
    let checkpoint = match latest {
        Some(id) => checkpoint::list(&mut *conn, id - 1, 1).await?.into_iter().next(),
        None => None,
    };
    Ok((checkpoint, open.into_iter().map(|(s, seq, _, _)| format!("{s} #{seq}")).collect()))
}
