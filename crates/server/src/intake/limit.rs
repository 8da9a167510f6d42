//! Refused notifications, rate-limited per source address. Anyone can post a forged or
//! unreadable notification, and each refused one is stored as evidence; without a limit
//! a flood of them would fill the disk. Past the limit a refusal gets the same answer
//! but is not stored: it is counted ([`RefusalLimiter::unstored`], in `/metrics`) and
//! logged once per source and window. Verified notifications are never limited.
//!
//! Windows are fixed minutes, counted in this process's memory: several processes behind
//! one address each allow the limit (bounded by the process count), and a restart starts
//! a new window. Behind a reverse proxy every request has the proxy's address, so the
//! per-source limit is shared by all; the limit over all sources bounds the total either
//! way.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// One window, in milliseconds.
const WINDOW_MS: i64 = 60_000;
/// Sources tracked in one window. Past it, refusals from sources not yet seen in the
/// window are not stored: memory stays bounded whatever the number of addresses.
const SOURCES_TRACKED_MAX: usize = 10_000;

/// The limits, per window of one minute.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub per_source: u32,
    pub total: u32,
}

/// A source: an IPv4 address, or an IPv6 /64 (one host is usually given a whole /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
    Unknown,
}

impl Source {
    fn of(remote: Option<SocketAddr>) -> Source {
        match remote.map(|a| a.ip()) {
            Some(IpAddr::V4(ip)) => Source::V4(ip.octets()),
            Some(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let mut prefix = [0; 8];
                    prefix.copy_from_slice(&ip.octets()[..8]);
                    Source::V6(prefix)
                }
            },
            None => Source::Unknown,
        }
    }
}

#[derive(Default)]
struct Window {
    started_ms: i64,
    total: u32,
    by_source: HashMap<Source, u32>,
}

pub struct RefusalLimiter {
    limits: Limits,
    window: Mutex<Window>,
    unstored: AtomicU64,
}

impl RefusalLimiter {
    pub fn new(limits: Limits) -> RefusalLimiter {
        RefusalLimiter { limits, window: Mutex::new(Window::default()), unstored: AtomicU64::new(0) }
    }

    /// Counts one refusal from `remote`; true when it may be stored.
    pub fn allow(&self, remote: Option<SocketAddr>, now_ms: i64) -> bool {
        let source = Source::of(remote);
        let allowed = match self.window.lock() {
            Ok(mut window) => {
                if now_ms - window.started_ms >= WINDOW_MS || now_ms < window.started_ms {
                    *window = Window { started_ms: now_ms, ..Window::default() };
                }
                let full = window.by_source.len() >= SOURCES_TRACKED_MAX;
                let seen = window.by_source.get(&source).copied();
                let allowed = match seen {
                    None if full => false,
                    seen => seen.unwrap_or(0) < self.limits.per_source && window.total < self.limits.total,
                };
                if !full || seen.is_some() {
                    let count = window.by_source.entry(source).or_default();
                    *count = count.saturating_add(1);
                    // Logged once per source and window, not once per refusal.
                    if !allowed && *count == self.limits.per_source.saturating_add(1) {
                        tracing::warn!(source = ?source, "refused notifications over the limit: not stored");
                    }
                }
                if allowed {
                    window.total += 1;
                }
                allowed
            }
            // A poisoned lock (a panic elsewhere): store nothing rather than everything.
            Err(_) => false,
        };
        if !allowed {
            self.unstored.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }

    /// Refusals not stored because they were over a limit, since this process started.
    pub fn unstored(&self) -> u64 {
        self.unstored.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 4000))
    }

    #[test]
    fn each_source_gets_its_limit_per_minute_and_all_share_the_total() {
        let limiter = RefusalLimiter::new(Limits { per_source: 3, total: 5 });
        let allowed = |ip: &str, at: i64| limiter.allow(from(ip), at);
        assert!((0..3).all(|_| allowed("203.0.113.1", 1_000)));
        assert!(!allowed("203.0.113.1", 1_000), "the fourth in a minute is not stored");
        assert!(allowed("203.0.113.2", 1_000) && allowed("203.0.113.3", 1_000));
        assert!(!allowed("203.0.113.4", 1_000), "the total is spent");
        assert_eq!(limiter.unstored(), 2);
        assert!(allowed("203.0.113.1", 61_000), "a new minute");
        // An IPv6 host's /64 is one source.
        assert!((0..3).all(|i| allowed(&format!("2001:db8:1:2::{i}"), 61_000)));
        assert!(!allowed("2001:db8:1:2:ffff::9", 61_000));
        assert!(allowed("2001:db8:1:3::1", 61_000), "another /64");
    }
}
