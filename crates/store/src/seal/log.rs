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

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(id: i64) -> Checkpoint {
        Checkpoint {
            id,
            at_ms: 1_000 * id,
            prev_hash: "0".repeat(64),
            heads_root: "1".repeat(64),
            heads_count: 0,
            hash: format!("{id:064}"),
            public_key: "pk".into(),
            signature: "sig".into(),
        }
    }

    fn temp_log() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("zerodrop-seal-log-{}", uuid::Uuid::new_v4().simple())).join("seal.log")
    }

    #[test]
    fn appends_and_reads_back_in_order_and_finds_the_last_from_the_tail() {
        let path = temp_log();
        assert_eq!(last_id(&path).unwrap(), None, "a missing log has no last checkpoint");
        append(&path, &[checkpoint(1), checkpoint(2)]).unwrap();
        append(&path, &[checkpoint(3)]).unwrap();
        assert_eq!(read(&path).unwrap(), vec![checkpoint(1), checkpoint(2), checkpoint(3)]);
        assert_eq!(last_id(&path).unwrap(), Some(3));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_malformed_or_oversized_line_is_refused_naming_its_line() {
        let path = temp_log();
        append(&path, &[checkpoint(1)]).unwrap();
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut file, b"{\"id\": \"not a checkpoint\"}\n").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let long = temp_log();
        std::fs::create_dir_all(long.parent().unwrap()).unwrap();
        std::fs::write(&long, format!("{}\n", "x".repeat(LINE_BYTES_MAX + 1))).unwrap();
        let err = read(&long).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("longer than"), "{err}");
        assert!(last_id(&long).is_err(), "a log whose tail is not a checkpoint is not exported onto");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
        let _ = std::fs::remove_dir_all(long.parent().unwrap());
    }
}
