//! Importing a bill: one transaction holds the bill, its lines, the reconciliation, the
//! differences it found and a repair job per new difference. An import that fails on any
//! line rolls back whole: no bill is ever half applied. The same file (by its SHA-256) is
//! imported once; importing it again finds the first reconciliation and changes nothing.
//!
//! The lines arrive in chunks through a bounded channel from the reader (a blocking
//! thread that parses the file), so memory stays bounded whatever the bill's size.

use super::ReconcileError;
use crate::jobs::enqueue;
use crate::jobs::repair_difference::RepairDifference;
use tokio::sync::mpsc;
use zerodrop_domain::bill::{BillHeader, BillLine, BillTotals};
use zerodrop_store::bills::{self, Matching, NewBill, Summary};
use zerodrop_store::Store;

/// Lines per chunk sent from the reader to the import.
pub const CHUNK_LINES: usize = 2_000;
/// Chunks in flight between the reader and the import: with [`CHUNK_LINES`], at most
/// this many times 2,000 lines are held in memory at once.
pub const CHUNKS_IN_FLIGHT: usize = 4;

/// A bill read and checked whole once (its totals add up), ready to be stored.
#[derive(Clone, Debug)]
pub struct CheckedBill {
    pub provider: String,
    pub file_name: String,
    pub file_sha256: String,
    pub header: BillHeader,
    pub currency: String,
    pub totals: BillTotals,
    /// See [`zerodrop_store::bills::Matching::missing_grace_ms`].
    pub missing_grace_ms: i64,
}

/// What an import did.
#[derive(Clone, Debug)]
pub struct Imported {
    pub reconciliation_id: i64,
    pub summary: Summary,
    /// True when this file had been imported before: nothing changed.
    pub already: bool,
}

/// A chunk of lines, or the reader's error (which rolls the import back).
pub type Chunk = Result<Vec<BillLine>, String>;

/// The channel the reader sends chunks on.
pub fn channel() -> (mpsc::Sender<Chunk>, mpsc::Receiver<Chunk>) {
    mpsc::channel(CHUNKS_IN_FLIGHT)
}

/// The reconciliation of this file if it was imported before.
pub async fn already(store: &Store, provider: &str, file_sha256: &str) -> Result<Option<Imported>, ReconcileError> {
    let mut conn = store.reader().await?;
    Ok(bills::by_file(&mut conn, provider, file_sha256).await?.map(|r| Imported {
        reconciliation_id: r.id,
        summary: r.summary,
        already: true,
    }))
}

/// Stores the bill and its reconciliation from the lines on `lines`, in one transaction.
pub async fn import(
    store: &Store,
    bill: &CheckedBill,
    mut lines: mpsc::Receiver<Chunk>,
    now_ms: i64,
) -> Result<Imported, ReconcileError> {
    if let Some(done) = already(store, &bill.provider, &bill.file_sha256).await? {
        return Ok(done);
    }
    let started = std::time::Instant::now();
    let mut tx = store.begin().await?;
    let new = NewBill {
        provider: &bill.provider,
        file_name: &bill.file_name,
        file_sha256: &bill.file_sha256,
        header: &bill.header,
        currency: &bill.currency,
        totals: &bill.totals,
    };
    let bill_id = bills::insert_bill(&mut tx, &new, now_ms).await?;
    let mut stored = BillTotals::default();
    while let Some(chunk) = lines.recv().await {
        let chunk = chunk.map_err(ReconcileError::Bill)?;
        for line in &chunk {
            match line.kind {
                zerodrop_domain::bill::BillLineKind::Trade => {
                    stored.trade_count += 1;
                    stored.trade_total_minor += line.amount.minor;
                }
                zerodrop_domain::bill::BillLineKind::Refund => {
                    stored.refund_count += 1;
                    stored.refund_total_minor += line.amount.minor;
                }
            }
        }
        bills::insert_lines(&mut tx, bill_id, &chunk).await?;
    }
    // The reader checked the totals on its first pass; the lines stored on this one must
    // add up to the same, or the file changed in between.
    if stored != bill.totals {
        return Err(ReconcileError::Bill(format!(
            "{}: the lines read while storing ({stored:?}) are not the lines checked ({:?}); was the file changed?",
            bill.file_name, bill.totals
        )));
    }
    let stored_ms = started.elapsed().as_millis();
    let reconciliation_id = bills::start(&mut tx, bill_id, now_ms).await?;
    let matching = Matching {
        reconciliation_id,
        bill_id,
        provider: &bill.provider,
        from_ms: bill.header.from_ms,
        to_ms: bill.header.to_ms,
        missing_grace_ms: bill.missing_grace_ms,
    };
    let summary = bills::match_bill(&mut tx, &matching, now_ms).await?;
    let matched_ms = started.elapsed().as_millis();
    for id in bills::pending(&mut tx, reconciliation_id).await? {
        enqueue(&mut tx, &RepairDifference { difference_id: id }, now_ms, now_ms).await?;
    }
    bills::finish(&mut tx, reconciliation_id, &summary, zerodrop_store::now_ms()).await?;
    tx.commit().await?;
    tracing::info!(
        reconciliation_id,
        differences = summary.differences(),
        stored_ms,
        matched_ms,
        committed_ms = started.elapsed().as_millis(),
        "bill reconciled"
    );
    Ok(Imported { reconciliation_id, summary, already: false })
}
