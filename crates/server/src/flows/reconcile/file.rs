//! A bill file, from disk to an import: read and checked whole once (its totals must add
//! up, every line must parse), then read again while its lines are stored, on a blocking
//! thread that hands them over in bounded chunks. A file that fails anywhere imports
//! nothing; the same file twice (by its SHA-256) changes nothing the second time.

use super::import::{self, CheckedBill, Chunk, Imported, CHUNK_LINES};
use super::ReconcileError;
use aws_lc_rs::digest;
use std::io::Read;
use std::path::Path;
use zerodrop_domain::bill::BillHeader;
use zerodrop_providers::alipay::bill::{open_bill, BillError, BillExpect};
use zerodrop_store::Store;

/// Reports lines read so far (for a progress bar on a terminal).
pub type Progress = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// Lines between two progress reports.
const PROGRESS_EVERY_LINES: u64 = 50_000;

/// A bill covers one whole day, China Standard Time.
const DAY_MS: i64 = 86_400_000;
/// China Standard Time is UTC+8 all year.
const CST_OFFSET_MS: i64 = 8 * 3_600_000;

/// What an import is asked to take.
pub struct BillFile<'a> {
    pub provider: &'a str,
    /// The merchant account the bill must be for (the provider's seller id).
    pub account: &'a str,
    pub path: &'a Path,
    /// Where imported bills are kept (`reconcile.bill_dir`).
    pub bill_dir: &'a Path,
    /// The day the bill must cover (its start, Unix ms), when the caller asked for one.
    pub day_from_ms: Option<i64>,
    /// `reconcile.missing_grace_secs`, in ms: see [`zerodrop_store::bills::Matching`].
    pub missing_grace_ms: i64,
}

/// Imports the bill at `bill.path`. The file is first copied into the bill directory while
/// its SHA-256 is computed, and both passes read that copy, so the lines stored are the
/// bytes hashed whatever happens to the original; an imported bill's copy is kept there
/// as `<provider>-<sha256 prefix>-<name>` (the evidence each repair cites), any other is
/// removed.
pub async fn import_file(
    store: &Store,
    bill: &BillFile<'_>,
    progress: Option<Progress>,
) -> Result<Imported, ReconcileError> {
    let file_name = bill.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "bill".into());
    std::fs::create_dir_all(bill.bill_dir)
        .map_err(|e| ReconcileError::Bill(format!("{}: {e}", bill.bill_dir.display())))?;
    let copy = bill.bill_dir.join(format!(".incoming-{}", uuid::Uuid::now_v7().simple()));
    let (source, target) = (bill.path.to_path_buf(), copy.clone());
    let sha = match blocking(move || copy_hashing(&source, &target)).await {
        Ok(sha) => sha,
        Err(e) => {
            let _ = std::fs::remove_file(&copy);
            return Err(e);
        }
    };
    let outcome = import_copy(store, bill, &file_name, &copy, &sha, progress).await;
    match &outcome {
        Ok(imported) if !imported.already => {
            let kept = bill.bill_dir.join(format!("{}-{}-{file_name}", bill.provider, &sha[..16]));
            if let Err(e) = std::fs::rename(&copy, &kept) {
                tracing::warn!(error = %e, "the imported bill's copy could not be named; kept as {}", copy.display());
            }
        }
        _ => {
            let _ = std::fs::remove_file(&copy);
        }
    }
    outcome
}

async fn import_copy(
    store: &Store,
    bill: &BillFile<'_>,
    file_name: &str,
    copy: &Path,
    sha: &str,
    progress: Option<Progress>,
) -> Result<Imported, ReconcileError> {
    if let Some(done) = import::already(store, bill.provider, sha).await? {
        return Ok(done);
    }
    let expect = BillExpect { account: bill.account.to_owned() };
    let (owned, exp, name) = (copy.to_path_buf(), expect.clone(), file_name.to_owned());
    let first_progress = progress.clone();
    let started = std::time::Instant::now();
    let (header, totals) = blocking(move || check(&owned, &exp, &name, first_progress.as_deref())).await?;
    tracing::info!(file = file_name, checked_ms = started.elapsed().as_millis(), "bill read and checked");
    check_range(file_name, &header, bill.day_from_ms, zerodrop_store::now_ms())?;
    let checked = CheckedBill {
        provider: bill.provider.to_owned(),
        file_name: file_name.to_owned(),
        file_sha256: sha.to_owned(),
        header,
        currency: "CNY".into(),
        totals,
        missing_grace_ms: bill.missing_grace_ms,
    };
    let (sender, receiver) = import::channel();
    let (owned, name) = (copy.to_path_buf(), file_name.to_owned());
    let reader = tokio::task::spawn_blocking(move || stream(&owned, &name, &expect, sender));
    let imported = import::import(store, &checked, receiver, zerodrop_store::now_ms()).await;
    // The reader ends when the import stops taking chunks (its channel closes).
    let _ = reader.await;
    match imported {
        // Two processes importing the same file at once: the second finds the first's.
        Err(ReconcileError::Store(e)) => match import::already(store, bill.provider, sha).await? {
            Some(done) => Ok(done),
            None => Err(ReconcileError::Store(e)),
        },
        other => other,
    }
}

/// A bill covers one whole day in China Standard Time, that has begun; and the day asked
/// for, when one was. Anything else would make "missing from the bill" cover what the
/// bill never meant to show.
fn check_range(file: &str, header: &BillHeader, day_from_ms: Option<i64>, now_ms: i64) -> Result<(), ReconcileError> {
    let whole_day = header.to_ms - header.from_ms == DAY_MS && (header.from_ms + CST_OFFSET_MS).rem_euclid(DAY_MS) == 0;
    let refuse = |why: String| Err(ReconcileError::Bill(format!("{file}: {why}; nothing was imported")));
    if !whole_day {
        return refuse("the bill's range is not one whole day (00:00 to 00:00, China Standard Time)".into());
    }
    if header.from_ms > now_ms {
        return refuse("the bill is for a day that has not begun".into());
    }
    if day_from_ms.is_some_and(|from| from != header.from_ms) {
        return refuse("the bill is for another day than the one asked for".into());
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ReconcileError> + Send + 'static,
) -> Result<T, ReconcileError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ReconcileError::Bill(format!("bill reader stopped: {e}")))?
}

/// Copies `source` to `target` (created new), returning the SHA-256 of the bytes copied.
fn copy_hashing(source: &Path, target: &Path) -> Result<String, ReconcileError> {
    use std::io::Write;
    let io = |path: &Path, e: std::io::Error| ReconcileError::Bill(format!("{}: {e}", path.display()));
    let mut from = std::fs::File::open(source).map_err(|e| io(source, e))?;
    let mut to = std::fs::OpenOptions::new().write(true).create_new(true).open(target).map_err(|e| io(target, e))?;
    let mut context = digest::Context::new(&digest::SHA256);
    let mut buffer = vec![0_u8; 256 * 1024];
    loop {
        let n = from.read(&mut buffer).map_err(|e| io(source, e))?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
        to.write_all(&buffer[..n]).map_err(|e| io(target, e))?;
    }
    to.sync_all().map_err(|e| io(target, e))?;
    Ok(hex::encode(context.finish().as_ref()))
}

/// The first pass: every line parses and the totals add up.
fn check(
    path: &Path,
    expect: &BillExpect,
    name: &str,
    progress: Option<&(dyn Fn(u64) + Send + Sync)>,
) -> Result<(BillHeader, zerodrop_domain::bill::BillTotals), ReconcileError> {
    // Errors name the file as the caller gave it, not the private copy read.
    let bill_error = |mut e: BillError| {
        e.file = name.to_owned();
        ReconcileError::Bill(e.to_string())
    };
    let mut reader = open_bill(path, expect).map_err(bill_error)?;
    let header = reader.header().clone();
    let (mut read, mut reported) = (0_u64, 0_u64);
    while reader.next_line().map_err(bill_error)?.is_some() {
        read += 1;
        if read - reported >= PROGRESS_EVERY_LINES {
            reported = read;
            if let Some(progress) = progress {
                progress(read);
            }
        }
    }
    let totals = reader.finish().map_err(bill_error)?;
    if let Some(progress) = progress {
        progress(read);
    }
    Ok((header, totals))
}

/// The second pass: the lines, in chunks, to the import. An error is sent as the last
/// chunk, which rolls the import back.
fn stream(path: &Path, name: &str, expect: &BillExpect, sender: tokio::sync::mpsc::Sender<Chunk>) {
    let named = |mut e: BillError| {
        e.file = name.to_owned();
        e.to_string()
    };
    let mut reader = match open_bill(path, expect) {
        Ok(reader) => reader,
        Err(e) => {
            let _ = sender.blocking_send(Err(named(e)));
            return;
        }
    };
    let mut chunk = Vec::with_capacity(CHUNK_LINES);
    loop {
        match reader.next_line() {
            Ok(Some(line)) => {
                chunk.push(line);
                if chunk.len() == CHUNK_LINES {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_LINES));
                    if sender.blocking_send(Ok(full)).is_err() {
                        return;
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = sender.blocking_send(Err(named(e)));
                return;
            }
        }
    }
    let last = match reader.finish() {
        Ok(_) => Ok(chunk),
        Err(e) => Err(named(e)),
    };
    let _ = sender.blocking_send(last);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(from_ms: i64, to_ms: i64) -> BillHeader {
        BillHeader { account: "2088".into(), from_ms, to_ms }
    }

    #[test]
    fn a_bill_covers_one_whole_begun_day_in_china_standard_time() {
        // A midnight in China Standard Time (16:00 UTC the day before).
        let day = 20_785 * DAY_MS - CST_OFFSET_MS;
        let now = day + 2 * DAY_MS;
        assert!(check_range("b", &header(day, day + DAY_MS), None, now).is_ok());
        assert!(check_range("b", &header(day, day + DAY_MS), Some(day), now).is_ok());
        let refused = |h: BillHeader, asked: Option<i64>| check_range("b", &h, asked, now).unwrap_err().to_string();
        assert!(refused(header(day, day + 2 * DAY_MS), None).contains("one whole day"));
        assert!(refused(header(day + 3_600_000, day + DAY_MS + 3_600_000), None).contains("one whole day"));
        assert!(refused(header(now + DAY_MS, now + 2 * DAY_MS), None).contains("not begun"));
        assert!(refused(header(day, day + DAY_MS), Some(day - DAY_MS)).contains("another day"));
    }
}
