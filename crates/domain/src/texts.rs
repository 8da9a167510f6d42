//! Sentences in the two languages zerodrop speaks, and the UTC times they cite.
//!
//! Every refusal, state and hold reason carries one `Texts`: a zh-CN and an en sentence
//! that say what happened, why, whose side it is on and what happens next, with a time.

use serde::{Deserialize, Serialize};

/// One message in both languages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Texts {
    pub zh_cn: String,
    pub en: String,
}

impl Texts {
    pub fn new(zh_cn: impl Into<String>, en: impl Into<String>) -> Texts {
        Texts { zh_cn: zh_cn.into(), en: en.into() }
    }
}

/// Milliseconds in a minute, for durations stated in messages.
pub const MINUTE_MS: i64 = 60_000;

/// A UTC time as people read it: "2026-11-29 19:03 UTC". Minutes are enough in a
/// sentence; the exact millisecond travels next to it in the machine-readable fields.
pub fn format_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", of_day / 3600, (of_day % 3600) / 60)
}

/// A duration in whole minutes, rounded up so "unlocks in N minutes" is never early.
pub fn minutes_ceil(duration_ms: i64) -> i64 {
    if duration_ms <= 0 {
        return 0;
    }
    (duration_ms + MINUTE_MS - 1) / MINUTE_MS
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian), after
/// Howard Hinnant's `civil_from_days`: integer arithmetic only, exact for any i64 day
/// count a millisecond timestamp can produce.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_read_as_calendar_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(format_utc(1_795_979_023_000), "2026-11-29 19:03 UTC");
        assert_eq!(format_utc(4_102_444_799_000), "2099-12-31 23:59 UTC");
        assert_eq!(format_utc(-1000), "1969-12-31 23:59 UTC");
    }

    #[test]
    fn minutes_round_up() {
        assert_eq!(minutes_ceil(0), 0);
        assert_eq!(minutes_ceil(1), 1);
        assert_eq!(minutes_ceil(MINUTE_MS), 1);
        assert_eq!(minutes_ceil(MINUTE_MS + 1), 2);
    }
}
