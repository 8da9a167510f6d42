//! Headless Chromium for the tests that render a page: the DOM a browser builds, and a
//! screenshot kept in test-artifacts/.

use std::path::{Path, PathBuf};

/// Debian's Chromium, when installed.
pub fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// Where screenshots are kept.
pub fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Renders `url`: returns the DOM the browser built, and writes a screenshot of
/// `window` (`W,H`) to `shot`, returning its size in bytes (0: none) and the browser's
/// complaints.
pub async fn render(browser: &Path, url: &str, shot: &Path, window: &str) -> (String, u64, String) {
    let profile = std::env::temp_dir().join(format!("zd-chromium-{}", uuid::Uuid::new_v4().simple()));
    let dom = tokio::process::Command::new(browser)
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_file(shot);
    let run = tokio::process::Command::new(browser)
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("--window-size={window}"))
        .arg(url)
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    let size = std::fs::metadata(shot).map(|m| m.len()).unwrap_or(0);
    (String::from_utf8_lossy(&dom.stdout).into_owned(), size, String::from_utf8_lossy(&run.stderr).into_owned())
}
