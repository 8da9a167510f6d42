//! Fetching a provider's bill file: streamed to disk, bounded, never half written.

use crate::ProviderError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest bill file downloaded, in bytes. A day of a million trades is a zip of a few
/// tens of MB (about 300 MB of CSV); anything far larger is not a bill.
pub const BILL_DOWNLOAD_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// Time allowed for one whole download, body included: a bill is far larger than a
/// gateway answer, so the gateway's timeout would cut it short.
pub const BILL_DOWNLOAD_TIMEOUT_MS: u64 = 300_000;

/// A client for [`download_bill`], with [`BILL_DOWNLOAD_TIMEOUT_MS`].
pub fn download_client() -> Result<reqwest::Client, ProviderError> {
    crate::http_client::client(Duration::from_millis(BILL_DOWNLOAD_TIMEOUT_MS))
        .map_err(|e| ProviderError::Config(format!("http client: {e}")))
}

/// Downloads `url` (from [`crate::Provider::bill_download_url`]) to `dest`, streaming the
/// body, and returns its size. The body goes to `dest` plus `.part` first and is renamed
/// into place only once whole, so `dest` never holds half a bill. More than `max_bytes`
/// is refused. Errors never name the URL: its query is a credential for the file.
pub async fn download_bill(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
    max_bytes: u64,
) -> Result<u64, ProviderError> {
    let part = part_path(dest);
    let result = fetch(client, url, &part, max_bytes).await;
    let result = result.and_then(|size| {
        std::fs::rename(&part, dest)
            .map_err(|e| ProviderError::Config(format!("cannot move the bill into place: {}", e.kind())))?;
        Ok(size)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

async fn fetch(client: &reqwest::Client, url: &str, part: &Path, max_bytes: u64) -> Result<u64, ProviderError> {
    let transport = |e: reqwest::Error| {
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "connection failed"
        } else if e.is_builder() {
            "the URL is not usable"
        } else {
            "failed"
        };
        ProviderError::Transport(format!("bill download {kind}"))
    };
    let mut response = client.get(url).send().await.map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(ProviderError::Transport(format!("bill download answered HTTP {}", status.as_u16())));
    }
    if response.content_length().is_some_and(|n| n > max_bytes) {
        return Err(ProviderError::BadResponse(format!("the bill is larger than {max_bytes} bytes")));
    }
    let disk = |e: std::io::Error| ProviderError::Config(format!("cannot write the bill: {}", e.kind()));
    // Plain file writes: each chunk is a few KiB into the page cache, and the download
    // runs in a background job, not on a request's path.
    let mut file = std::io::BufWriter::new(std::fs::File::create(part).map_err(disk)?);
    let mut size: u64 = 0;
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        size += chunk.len() as u64;
        if size > max_bytes {
            return Err(ProviderError::BadResponse(format!("the bill is larger than {max_bytes} bytes")));
        }
        file.write_all(&chunk).map_err(disk)?;
    }
    let file = file.into_inner().map_err(|e| disk(e.into_error()))?;
    file.sync_all().map_err(disk)?;
    Ok(size)
}
