//! Security holds: rules as data, and a hold that always states its reason and unlock time.
//!
//! A hold stops termination until it unlocks, so it must never trap the user (S19): it
//! always ends at a stated time, and while it lasts renewal charges pause too, so nobody is
//! charged because they could not terminate.

use crate::texts::{format_utc, minutes_ceil, Texts, MINUTE_MS};
use serde::{Deserialize, Serialize};

/// Failed verifications within the window that place a hold.
pub const FAILURES_MAX_DEFAULT: u32 = 5;
/// The window failures are counted in.
pub const FAILURE_WINDOW_MS_DEFAULT: i64 = 15 * MINUTE_MS;
/// How long a hold after repeated failures lasts: long enough to slow guessing (five
/// guesses per half hour against a million codes), short enough that a user who mistyped
/// can still terminate today.
pub const FAILURE_HOLD_MS_DEFAULT: i64 = 30 * MINUTE_MS;
/// Longest hold a platform's takeover signal may place: three days lets people review the
/// account; anything longer is a lock-in, which is what S19 complains about.
pub const TAKEOVER_HOLD_MS_MAX: i64 = 72 * 60 * MINUTE_MS;

/// Why an agreement is on hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HoldReason {
    /// Too many wrong verification codes in a short time.
    FailedVerifications { failures: u32, window_minutes: i64 },
    /// The platform reported signs that someone else controls the account.
    TakeoverSignal,
}

/// A security hold on an agreement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub reason: HoldReason,
    pub since_ms: i64,
    pub until_ms: i64,
}

impl Hold {
    pub fn is_held(&self, now_ms: i64) -> bool {
        now_ms < self.until_ms
    }

    pub fn unlock_at_ms(&self) -> i64 {
        self.until_ms
    }

    /// Renewal charges pause exactly as long as termination does.
    pub fn charges_paused(&self, now_ms: i64) -> bool {
        self.is_held(now_ms)
    }

    /// Two holds at once (a takeover signal during a failure hold): the later unlock
    /// stands, with its reason.
    pub fn merge(self, other: Hold) -> Hold {
        if other.until_ms > self.until_ms {
            Hold { since_ms: self.since_ms.min(other.since_ms), ..other }
        } else {
            Hold { since_ms: self.since_ms.min(other.since_ms), ..self }
        }
    }

    /// What happened, why, whose side, and what happens next, with the unlock time.
    pub fn reason_text(&self, now_ms: i64) -> Texts {
        let at = format_utc(self.until_ms);
        let minutes = minutes_ceil(self.until_ms - now_ms);
        match &self.reason {
            HoldReason::FailedVerifications { failures, window_minutes } => Texts::new(
                format!(
                    "为保护你的账户，{window_minutes} 分钟内验证码错误 {failures} 次后，解约已被暂时锁定。\
                     这是安全措施，不是你的过错。锁定期间自动续费同样暂停，不会扣款。\
                     锁定将于 {at}（约 {minutes} 分钟后）自动解除，届时可重新申请解约。"
                ),
                format!(
                    "To protect your account, ending the agreement is locked after {failures} wrong codes \
                     within {window_minutes} minutes. This is a security measure on our side, not a fault of \
                     yours. Renewal charges are paused while it lasts, so you will not be charged. The lock \
                     lifts by itself at {at} (in about {minutes} minutes); you can then request the \
                     termination again."
                ),
            ),
            HoldReason::TakeoverSignal => Texts::new(
                format!(
                    "平台发现你的账户可能被他人操作，为保护你，解约已被暂时锁定。锁定期间自动续费同样暂停，\
                     不会扣款。锁定将于 {at} 自动解除；如需尽快处理，请联系平台客服。"
                ),
                format!(
                    "The platform reported signs that someone else may be using your account, so ending the \
                     agreement is locked to protect you. Renewal charges are paused while it lasts, so you \
                     will not be charged. The lock lifts by itself at {at}; contact the platform's support \
                     to resolve it sooner."
                ),
            ),
        }
    }
}

/// The rules that place holds, as data a deployment can tune.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRules {
    pub failures_max: u32,
    pub failure_window_ms: i64,
    pub failure_hold_ms: i64,
}

impl Default for HoldRules {
    fn default() -> HoldRules {
        HoldRules {
            failures_max: FAILURES_MAX_DEFAULT,
            failure_window_ms: FAILURE_WINDOW_MS_DEFAULT,
            failure_hold_ms: FAILURE_HOLD_MS_DEFAULT,
        }
    }
}

impl HoldRules {
    /// Failures that count now: those within the window ending at `now_ms`.
    pub fn recent_failures(&self, failures_at_ms: &[i64], now_ms: i64) -> u32 {
        let since = now_ms - self.failure_window_ms;
        let count = failures_at_ms.iter().filter(|&&at| at > since && at <= now_ms).count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// Attempts left before a hold, given the failures recorded so far.
    pub fn attempts_left(&self, failures_at_ms: &[i64], now_ms: i64) -> u32 {
        self.failures_max.saturating_sub(self.recent_failures(failures_at_ms, now_ms))
    }

    /// The hold the failures recorded so far (including one just now) place, if any.
    pub fn after_failures(&self, failures_at_ms: &[i64], now_ms: i64) -> Option<Hold> {
        let failures = self.recent_failures(failures_at_ms, now_ms);
        (failures >= self.failures_max).then(|| Hold {
            reason: HoldReason::FailedVerifications { failures, window_minutes: minutes_ceil(self.failure_window_ms) },
            since_ms: now_ms,
            until_ms: now_ms + self.failure_hold_ms,
        })
    }

    /// The hold a platform-reported takeover signal places, capped so it cannot trap.
    pub fn takeover(&self, now_ms: i64, duration_ms: i64) -> Hold {
        let duration = duration_ms.clamp(0, TAKEOVER_HOLD_MS_MAX);
        Hold { reason: HoldReason::TakeoverSignal, since_ms: now_ms, until_ms: now_ms + duration }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_in_fifteen_minutes_hold_for_thirty() {
        let rules = HoldRules::default();
        let now = 100 * MINUTE_MS;
        let four: Vec<i64> = (0..4).map(|i| now - i * MINUTE_MS).collect();
        assert_eq!(rules.after_failures(&four, now), None);
        assert_eq!(rules.attempts_left(&four, now), 1);
        let mut five = four.clone();
        five.push(now - 14 * MINUTE_MS);
        let hold = rules.after_failures(&five, now).unwrap();
        assert_eq!(hold.unlock_at_ms(), now + 30 * MINUTE_MS);
        assert!(hold.is_held(now) && hold.charges_paused(now + 29 * MINUTE_MS));
        assert!(!hold.is_held(now + 30 * MINUTE_MS) && !hold.charges_paused(now + 30 * MINUTE_MS));
        // A failure older than the window no longer counts.
        let mut old = four;
        old.push(now - 15 * MINUTE_MS);
        assert_eq!(rules.after_failures(&old, now), None);
        assert_eq!(rules.attempts_left(&five, now), 0);
    }

    #[test]
    fn takeover_holds_are_capped_and_merge_to_the_later_unlock() {
        let rules = HoldRules::default();
        let hold = rules.takeover(0, i64::MAX);
        assert_eq!(hold.until_ms, TAKEOVER_HOLD_MS_MAX);
        let short = rules.takeover(10, MINUTE_MS);
        let merged = short.clone().merge(hold.clone());
        assert_eq!((merged.since_ms, merged.until_ms), (0, TAKEOVER_HOLD_MS_MAX));
        assert_eq!(hold.clone().merge(short), merged);
    }

    #[test]
    fn reasons_state_the_unlock_time_in_both_languages() {
        let rules = HoldRules::default();
        let failures: Vec<i64> = vec![0; 5];
        let hold = rules.after_failures(&failures, 0).unwrap();
        let text = hold.reason_text(0);
        assert!(text.en.contains("1970-01-01 00:30 UTC") && text.zh_cn.contains("1970-01-01 00:30 UTC"));
        assert!(text.en.contains("30 minutes") && text.zh_cn.contains("30 分钟"));
        assert!(text.en.contains("not be charged") && text.zh_cn.contains("不会扣款"));
        let takeover = rules.takeover(0, 60 * MINUTE_MS).reason_text(0);
        assert!(takeover.en.contains("01:00 UTC") && takeover.zh_cn.contains("01:00 UTC"));
    }
}
