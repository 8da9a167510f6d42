//! `zerodrop serve` as a child process that a test watches from its first moment: it is
//! not waited for at start (it may be started with its database down), and its log is
//! kept in a file the test reads.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;
use zerodrop::stack;

/// How long a stopped `serve` has to finish its in-flight work and exit.
const STOP_WAIT_SECS: u64 = 20;

pub struct Serve {
    pub base_url: String,
    pub config: PathBuf,
    log: PathBuf,
    child: tokio::process::Child,
}

impl Serve {
    /// Writes `config` (see [`stack::write_config`]) under `dir` and starts `zerodrop
    /// serve` on it, logging at `info` to a file beside it.
    pub fn spawn(config: &zerodrop_server::Config, dir: &Path) -> Serve {
        let path = stack::write_config(config, dir).expect("config");
        let log = dir.join("serve.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_zerodrop"))
            .args(["serve", "--config"])
            .arg(&path)
            .env("ZERODROP_API__MERCHANT_API_KEYS", format!("[\"{}\"]", stack::API_KEY))
            .env("ZERODROP_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn zerodrop serve");
        Serve { base_url: format!("http://{}", config.listen), config: path, log, child }
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with the log) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("zerodrop serve exited ({status}); its log:\n{}", self.log());
        }
    }

    /// Waits for the process to exit by itself.
    pub async fn exited(mut self, limit: Duration) -> (ExitStatus, String) {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("serve still running after {limit:?}; its log:\n{}", self.log()))
            .expect("exit status");
        (status, self.log())
    }

    /// SIGTERM, then waits for the exit.
    pub async fn stop(mut self) -> ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        tokio::time::timeout(Duration::from_secs(STOP_WAIT_SECS), self.child.wait())
            .await
            .expect("serve stops after SIGTERM")
            .expect("exit status")
    }
}
