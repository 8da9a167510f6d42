//! A bill file, from disk to an import: read and checked whole once (its totals must add
//! up, every line must parse), then read again while its lines are stored, on a blocking
//! thread that hands them over in bounded chunks. A file that fails anywhere imports
//! nothing; the same file twice (by its SHA-256) changes nothing the second time.

use super::import::{self, CheckedBill, Chunk, Imported, CHUNK_LINES};
use super::ReconcileError;
use aws_lc_rs::digest;
use std::io::Read;
use std::path::{Path, PathBuf};
use zerodrop_providers::alipay::bill::{open_bill, BillExpect};
use zerodrop_store::Store;

/// Reports lines read so far (for a progress bar on a terminal).
pub type Progress = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// Lines between two progress reports.
const PROGRESS_EVERY_LINES: u64 = 50_000;

/// Imports the bill at `path` for `provider`, whose merchant account is `account`.
pub async fn import_file(
    store: &Store,
    provider: &str,
    account: &str,
    path: &Path,
    progress: Option<Progress>,
) -> Result<Imported, ReconcileError> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "bill".into());
    let expect = BillExpect { account: account.to_owned() };
    let owned = path.to_path_buf();
    let sha = blocking(move || sha256_file(&owned)).await?;
    if let Some(done) = import::already(store, provider, &sha).await? {
        return Ok(done);
    }
    let (owned, exp, name) = (path.to_path_buf(), expect.clone(), file_name.clone());
    let first_progress = progress.clone();
    let (header, totals) = blocking(move || check(&owned, &exp, &name, first_progress.as_deref())).await?;
    let bill = CheckedBill {
        provider: provider.to_owned(),
        file_name,
        file_sha256: sha,
        header,
        currency: "CNY".into(),
        totals,
    };
    let (sender, receiver) = import::channel();
    let owned = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || stream(&owned, &expect, sender));
    let imported = import::import(store, &bill, receiver, zerodrop_store::now_ms()).await;
    // The reader ends when the import stops taking chunks (its channel closes).
    let _ = reader.await;
    match imported {
        // Two processes importing the same file at once: the second finds the first's.
        Err(ReconcileError::Store(e)) if e.is_retryable() => {
            import::already(store, provider, &bill.file_sha256).await?.ok_or(ReconcileError::Store(e))
        }
        other => other,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ReconcileError> + Send + 'static,
) -> Result<T, ReconcileError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ReconcileError::Bill(format!("bill reader stopped: {e}")))?
}

fn sha256_file(path: &PathBuf) -> Result<String, ReconcileError> {
    let mut file = std::fs::File::open(path).map_err(|e| ReconcileError::Bill(format!("{}: {e}", path.display())))?;
    let mut context = digest::Context::new(&digest::SHA256);
    let mut buffer = vec![0_u8; 256 * 1024];
    loop {
        let n = file.read(&mut buffer).map_err(|e| ReconcileError::Bill(format!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
    }
    Ok(hex::encode(context.finish().as_ref()))
}

/// The first pass: every line parses and the totals add up.
fn check(
    path: &Path,
    expect: &BillExpect,
    _name: &str,
    progress: Option<&(dyn Fn(u64) + Send + Sync)>,
) -> Result<(zerodrop_domain::bill::BillHeader, zerodrop_domain::bill::BillTotals), ReconcileError> {
    let bill_error = |e: zerodrop_providers::alipay::bill::BillError| ReconcileError::Bill(e.to_string());
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
fn stream(path: &Path, expect: &BillExpect, sender: tokio::sync::mpsc::Sender<Chunk>) {
    let mut reader = match open_bill(path, expect) {
        Ok(reader) => reader,
        Err(e) => {
            let _ = sender.blocking_send(Err(e.to_string()));
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
                let _ = sender.blocking_send(Err(e.to_string()));
                return;
            }
        }
    }
    let last = match reader.finish() {
        Ok(_) => Ok(chunk),
        Err(e) => Err(e.to_string()),
    };
    let _ = sender.blocking_send(last);
}
