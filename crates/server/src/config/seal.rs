//! The `[seal]` section: where the seal key and the seal log live, and how often the
//! sealing job writes a checkpoint.

use serde::{Deserialize, Serialize};
use std::path::Path;
use zerodrop_store::seal::key::SealKey;

/// Shortest checkpoint interval: each checkpoint is a signed line in the seal log; more
/// than one a second only grows the log.
const INTERVAL_SECS_MIN: u64 = 1;
/// Longest: anything committed since the last checkpoint can still be rewritten
/// undetected, so the window stays short.
const INTERVAL_SECS_MAX: u64 = 3_600;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SealConfig {
    /// Whether this process runs the sealing job (with the job workers).
    pub enabled: bool,
    /// The Ed25519 seal key (base64 PKCS#8). `serve` creates it on first start if it is
    /// missing; keep it readable by zerodrop only, and away from database administrators.
    pub key_file: String,
    /// The seal log: checkpoints appended one JSON line each. Ship copies off the host.
    pub log_path: String,
    /// How often a checkpoint is written.
    pub interval_secs: u64,
    /// More public keys the audit trusts (base64), e.g. those of keys rotated out. The
    /// key file's own public key is always trusted.
    pub trusted_public_keys: Vec<String>,
    /// The audit fails when committed changes wait longer than this for a checkpoint
    /// (the sealing job is not running).
    pub pending_age_secs_max: i64,
}

impl Default for SealConfig {
    fn default() -> Self {
        SealConfig {
            enabled: true,
            key_file: "./data/seal.key".into(),
            log_path: "./data/seal.log".into(),
            interval_secs: 60,
            trusted_public_keys: Vec::new(),
            pending_age_secs_max: 900,
        }
    }
}

/// Why the seal key could not be had. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum SealKeyError {
    #[error("seal key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("seal key file {path}: {source}")]
    Key { path: String, source: zerodrop_store::seal::key::KeyError },
    #[error("seal key file {path} already exists; refusing to replace a key that signed checkpoints")]
    Exists { path: String },
}

impl SealConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(INTERVAL_SECS_MIN..=INTERVAL_SECS_MAX).contains(&self.interval_secs) {
            return Err(format!("seal.interval_secs must be {INTERVAL_SECS_MIN}..={INTERVAL_SECS_MAX}"));
        }
        if self.enabled && (self.key_file.trim().is_empty() || self.log_path.trim().is_empty()) {
            return Err("seal.key_file and seal.log_path are required while seal.enabled".into());
        }
        if self.pending_age_secs_max < 2 * self.interval_secs as i64 {
            return Err("seal.pending_age_secs_max must be at least twice seal.interval_secs".into());
        }
        for (i, key) in self.trusted_public_keys.iter().enumerate() {
            if !zerodrop_store::seal::key::is_public_key(key) {
                return Err(format!("seal.trusted_public_keys[{i}] is not a base64 Ed25519 public key"));
            }
        }
        Ok(())
    }

    /// Reads the key file.
    pub fn read_key(&self) -> Result<SealKey, SealKeyError> {
        let path = self.key_file.clone();
        let text = std::fs::read_to_string(&self.key_file)
            .map_err(|source| SealKeyError::Io { path: path.clone(), source })?;
        SealKey::from_text(&text).map_err(|source| SealKeyError::Key { path, source })
    }

    /// Reads the key file, creating a new key there first if there is none (the first
    /// start of `serve`). Returns the key and whether it was created.
    pub fn read_or_create_key(&self) -> Result<(SealKey, bool), SealKeyError> {
        if Path::new(&self.key_file).exists() {
            return Ok((self.read_key()?, false));
        }
        match write_new_key(Path::new(&self.key_file)) {
            Ok(key) => Ok((key, true)),
            // Another process starting at the same moment made it first: use theirs.
            Err(SealKeyError::Exists { .. }) => Ok((self.read_key()?, false)),
            Err(e) => Err(e),
        }
    }

    /// The public keys the audit trusts: the key file's (when readable) and the listed ones.
    pub fn trusted_keys(&self) -> Vec<String> {
        let mut keys = self.trusted_public_keys.clone();
        if let Ok(key) = self.read_key() {
            keys.push(key.public_base64());
        }
        keys
    }
}

/// Writes a new key to `path`, which must not exist, readable by its owner only.
pub fn write_new_key(path: &Path) -> Result<SealKey, SealKeyError> {
    let shown = path.display().to_string();
    let io = |source| SealKeyError::Io { path: shown.clone(), source };
    if path.exists() {
        return Err(SealKeyError::Exists { path: shown });
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let (key, text) = SealKey::generate().map_err(|source| SealKeyError::Key { path: shown.clone(), source })?;
    // Written whole to a private temporary file, then linked into place: a reader never
    // sees half a key, and a key that appeared meanwhile is never replaced.
    let temp = path.with_extension(format!("new-{}", uuid::Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temp).and_then(|mut file| {
        std::io::Write::write_all(&mut file, format!("{text}\n").as_bytes())?;
        file.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&temp, path));
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(SealKeyError::Exists { path: shown }),
        Err(e) => Err(io(e)),
    }
}
