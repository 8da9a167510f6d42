//! The seal log: the checkpoints, one JSON line each, appended to a file outside the
//! database. Whoever rewrites the database cannot rewrite the copies of this file already
//! shipped elsewhere (or a write-once bucket, or a colleague's inbox), and the audit checks
//! the database against them.
//!
//! Export is idempotent: it appends every stored checkpoint after the file's last one, so
//! a crash between the checkpoint's commit and its export loses nothing, and several
//! instances exporting to their own files each get every checkpoint.

use super::checkpoint::{self, Checkpoint};
use crate::{Result, Store, StoreError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Bytes read from the end of the file to find its last line (a line is ~500 bytes).
const TAIL_BYTES_MAX: u64 = 64 * 1024;
/// Checkpoints exported per read of the database.
const EXPORT_PAGE: i64 = 500;
/// A line longer than this is not a checkpoint (the file is not a seal log).
const LINE_BYTES_MAX: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("seal log {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("seal log {path}, line {line}: not a checkpoint ({reason})")]
    Malformed { path: String, line: usize, reason: String },
}

/// Appends every stored checkpoint the file does not have yet; returns how many.
pub async fn export(store: &Store, path: &Path) -> Result<usize> {
    let last = last_id(path).map_err(|e| StoreError::Invariant(e.to_string()))?;
    let mut conn = store.reader().await?;
    let mut after = last.unwrap_or(0);
    let mut appended = 0;
    loop {
        let page = checkpoint::list(&mut conn, after, EXPORT_PAGE).await?;
        let Some(tail) = page.last() else { break };
        after = tail.id;
        append(path, &page).map_err(|e| StoreError::Invariant(e.to_string()))?;
        appended += page.len();
    }
    Ok(appended)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.display().to_string(), source }
}

fn append(path: &Path, checkpoints: &[Checkpoint]) -> Result<(), LogError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(path))?;
    }
    let mut text = String::new();
    for checkpoint in checkpoints {
        // Serialising a struct of strings and integers cannot fail.
        text.push_str(&serde_json::to_string(checkpoint).unwrap_or_default());
        text.push('\n');
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io(path))?;
    file.write_all(text.as_bytes()).map_err(io(path))?;
    // Durable before the next export reads the file's end as done.
    file.sync_all().map_err(io(path))?;
    Ok(())
}

/// The last checkpoint number in the file, if any (read from its tail only).
pub fn last_id(path: &Path) -> Result<Option<i64>, LogError> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let len = file.metadata().map_err(io(path))?.len();
    let start = len.saturating_sub(TAIL_BYTES_MAX);
    file.seek(SeekFrom::Start(start)).map_err(io(path))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(io(path))?;
    let text = String::from_utf8_lossy(&tail);
    let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) else { return Ok(None) };
    let checkpoint: Checkpoint = serde_json::from_str(line).map_err(|e| LogError::Malformed {
        path: path.display().to_string(),
        line: 0,
        reason: format!("its last line: {e}"),
    })?;
    Ok(Some(checkpoint.id))
}

/// Every checkpoint in the file, in file order.
pub fn read(path: &Path) -> Result<Vec<Checkpoint>, LogError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut checkpoints = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |reason: String| LogError::Malformed { path: path.display().to_string(), line: i + 1, reason };
        if line.len() > LINE_BYTES_MAX {
            return Err(malformed(format!("longer than {LINE_BYTES_MAX} bytes")));
        }
        checkpoints.push(serde_json::from_str(line).map_err(|e| malformed(e.to_string()))?);
    }
    Ok(checkpoints)
}
