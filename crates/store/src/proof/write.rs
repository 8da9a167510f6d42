//! Writes a period's proof to a file, a page of charges at a time: memory stays bounded
//! by the page, whatever the period holds. The body goes to a temporary file while its
//! SHA-256 is computed; the header (with that hash) and the body then go to a second
//! temporary file renamed over the target, so a reader never sees half a proof.

use super::{bills, cover, entry, Header, PeriodFigures, Totals, KIND, SCHEMA_VERSION};
use crate::outcome::Bounds;
use crate::seal::checkpoint;
use crate::{Result, Store, StoreError};
use aws_lc_rs::digest;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Charges read per page (each is a handful of small queries more).
const PAGE_CHARGES: i64 = 500;
/// Checkpoints read per page.
const PAGE_CHECKPOINTS: i64 = 500;

pub struct Options {
    /// The period, `[from_ms, to_ms)`, by the provider's paid time (else the recorded time).
    pub from_ms: i64,
    pub to_ms: i64,
    pub bounds: Bounds,
    pub now_ms: i64,
}

/// What was written, for the command's summary line.
#[derive(Clone, Debug)]
pub struct Summary {
    pub header: Header,
    pub totals: Totals,
    pub checkpoints: i64,
    pub unsealed: i64,
    pub bills: usize,
}

/// A writer that hashes what passes through it.
struct Hashing<W: Write> {
    inner: W,
    digest: digest::Context,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Invariant(format!("proof file {}: {e}", path.display()))
}

fn sibling(path: &Path, what: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "proof".into());
    path.with_file_name(format!(".{name}.{what}-{}", uuid::Uuid::new_v4().simple()))
}

/// Writes the proof of `options`' period to `out`.
pub async fn write(store: &Store, options: &Options, out: &Path) -> Result<Summary> {
    if options.to_ms <= options.from_ms {
        return Err(StoreError::Invariant("the period's end must be after its start".into()));
    }
    let body_path = sibling(out, "body");
    let result = write_body(store, options, &body_path).await;
    let finished = match result {
        Ok((summary, sha)) => assemble(out, &body_path, options, sha).map(|header| Summary { header, ..summary }),
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&body_path);
    finished
}

async fn write_body(store: &Store, options: &Options, path: &Path) -> Result<(Summary, String)> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(path))?;
    }
    let file = std::fs::File::create(path).map_err(io(path))?;
    let mut w = Hashing { inner: BufWriter::new(file), digest: digest::Context::new(&digest::SHA256) };
    // One read snapshot: the charges, totals, bills and checkpoints agree with each other.
    let mut snapshot = store.snapshot().await?;
    let c = &mut *snapshot;
    let pending = cover::pending_heads(&mut *c).await?;
    let mut unsealed = cover::Unsealed::default();
    let mut totals = Totals::default();
    let (mut t_min, mut t_max) = (i64::MAX, i64::MIN);
    write!(w, "{{\"from_ms\":{},\"to_ms\":{},\"charges\":[", options.from_ms, options.to_ms).map_err(io(path))?;
    let mut after = 0_i64;
    let mut first = true;
    loop {
        let period = (options.from_ms, options.to_ms);
        let lines = entry::page(&mut *c, &options.bounds, options.now_ms, period, after, PAGE_CHARGES).await?;
        let Some(last) = lines.last() else { break };
        after = last.id;
        for line in lines {
            let entry = entry::entry(&mut *c, &options.bounds, line).await?;
            for (stream, seq, _, at_ms) in entry.records() {
                t_min = t_min.min(at_ms);
                t_max = t_max.max(at_ms);
                if pending.is_empty() {
                    continue;
                }
                // Waiting for the sealing job: its batch's head (or, before batches, its
                // stream's) is among the pending ones.
                let batched = crate::seal::batch::of_record(&mut *c, &stream, seq).await?;
                let waiting = match batched {
                    Some(id) => pending.contains_key(&crate::seal::batch::stream(&id)),
                    None => pending.get(&stream).is_some_and(|head| *head >= seq),
                };
                if waiting {
                    unsealed.add(&stream, seq);
                }
            }
            totals.add(&entry);
            w.write_all(if first { b"\n" } else { b",\n" }).map_err(io(path))?;
            first = false;
            serde_json::to_writer(&mut w, &entry)?;
        }
    }
    let window = crate::stats::window(&mut *c, &options.bounds, options.from_ms, options.to_ms, options.now_ms).await?;
    let attention = crate::stats::attention_ages(&mut *c, options.now_ms).await?;
    let bills = bills::tie(&mut *c, options.from_ms, options.to_ms).await?;
    write!(w, "\n],\"totals\":").map_err(io(path))?;
    serde_json::to_writer(&mut w, &totals)?;
    w.write_all(b",\"figures\":").map_err(io(path))?;
    serde_json::to_writer(&mut w, &PeriodFigures { window, attention })?;
    w.write_all(b",\"bills\":").map_err(io(path))?;
    serde_json::to_writer(&mut w, &bills)?;
    w.write_all(b",\"checkpoints\":[").map_err(io(path))?;
    let mut checkpoints = 0_i64;
    if t_min <= t_max {
        if let Some((from_id, to_id)) = cover::range(&mut *c, t_min, t_max).await? {
            let mut after = from_id - 1;
            while after < to_id {
                let page = checkpoint::list(&mut *c, after, PAGE_CHECKPOINTS.min(to_id - after)).await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                for cp in &page {
                    w.write_all(if checkpoints == 0 { b"\n" } else { b",\n" }).map_err(io(path))?;
                    serde_json::to_writer(&mut w, cp)?;
                    checkpoints += 1;
                }
            }
        }
    }
    w.write_all(b"\n],\"unsealed\":").map_err(io(path))?;
    serde_json::to_writer(&mut w, &unsealed)?;
    w.write_all(b"}").map_err(io(path))?;
    drop(snapshot);
    let Hashing { inner, digest } = w;
    let file = inner.into_inner().map_err(|e| io(path)(e.into_error()))?;
    file.sync_all().map_err(io(path))?;
    let sha = hex::encode(digest.finish().as_ref());
    let header = Header {
        kind: KIND.to_owned(),
        schema_version: SCHEMA_VERSION,
        from_ms: options.from_ms,
        to_ms: options.to_ms,
        generated_at_ms: options.now_ms,
        body_sha256: sha.clone(),
    };
    let summary = Summary { header, totals, checkpoints, unsealed: unsealed.count, bills: bills.bills.len() };
    Ok((summary, sha))
}

/// Writes header and body to a temporary file beside `out`, then renames it over `out`.
fn assemble(out: &Path, body_path: &Path, options: &Options, sha: String) -> Result<Header> {
    let header = Header {
        kind: KIND.to_owned(),
        schema_version: SCHEMA_VERSION,
        from_ms: options.from_ms,
        to_ms: options.to_ms,
        generated_at_ms: options.now_ms,
        body_sha256: sha,
    };
    let temp = sibling(out, "partial");
    let written = (|| -> std::io::Result<()> {
        let mut w = BufWriter::new(std::fs::File::create(&temp)?);
        w.write_all(b"{\"header\":")?;
        serde_json::to_writer(&mut w, &header).map_err(std::io::Error::other)?;
        w.write_all(b",\n\"body\":")?;
        std::io::copy(&mut std::fs::File::open(body_path)?, &mut w)?;
        w.write_all(b"}\n")?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&temp, out)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io(out)(e));
    }
    Ok(header)
}
