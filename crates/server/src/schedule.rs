//! When zerodrop asks a provider about an order it has not heard about: the cadence while
//! the order is open, the burst after the app's check call, and the late sweeps after
//! expiry. Pure functions of times in Unix milliseconds, so the promises they keep ("a
//! payment in an order's first 10 minutes is found within 60 s") are tested here, for
//! every instant, without waiting.
//!
//! Points are always strictly after `now`: a job that has just run at a point moves on to
//! the next one.

use serde::{Deserialize, Serialize};

/// One step of the open-order cadence: a query every `every_secs`, counted from the end
/// of the step before (from the order's creation for the first), until `until_secs` after
/// creation; a step without `until_secs` runs until expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryStep {
    pub every_secs: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_secs: Option<i64>,
}

/// The check call's burst: the provider is asked at once, then this long after the call,
/// in seconds. A payment sheet that returns before the provider has settled the trade is
/// still caught within seconds; a minute covers a slow bank confirmation.
pub const CHECK_BURST_SECS: [i64; 5] = [0, 5, 15, 30, 60];

const MS: i64 = 1000;

/// The next cadence point strictly after `after_ms` (milliseconds since creation).
pub fn next_cadence_ms(steps: &[QueryStep], after_ms: i64) -> Option<i64> {
    let mut start_ms = 0_i64;
    for step in steps {
        let every_ms = step.every_secs.saturating_mul(MS);
        let end_ms = step.until_secs.map(|u| u.saturating_mul(MS));
        if every_ms > 0 {
            let k = if after_ms < start_ms { 1 } else { (after_ms - start_ms) / every_ms + 1 };
            let at = start_ms.saturating_add(k.saturating_mul(every_ms));
            if end_ms.is_none_or(|end| at <= end) {
                // Steps follow each other: the first step with a point after `after` has the earliest.
                return Some(at);
            }
        }
        match end_ms {
            Some(end) => start_ms = end,
            None => return None,
        }
    }
    None
}

/// The next fixed point strictly after `after_ms`; points are seconds, in any order.
pub fn next_point_ms(points_secs: &[i64], after_ms: i64) -> Option<i64> {
    points_secs.iter().map(|s| s.saturating_mul(MS)).filter(|at| *at > after_ms).min()
}

/// An open order's next query after `now_ms`: the earlier of the cadence and the fixed
/// points, or `None` when neither has one before expiry (a point at expiry is the expiry
/// job's, which closes and queries once more).
pub fn next_open_query_at(
    steps: &[QueryStep],
    points_secs: &[i64],
    created_ms: i64,
    expires_ms: i64,
    now_ms: i64,
) -> Option<i64> {
    let after = now_ms.saturating_sub(created_ms);
    let next = match (next_cadence_ms(steps, after), next_point_ms(points_secs, after)) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    let at = created_ms.saturating_add(next);
    (at < expires_ms).then_some(at)
}

/// How many scheduled queries an order that is never paid gets while open (the expiry's
/// own close and query not counted), stopping once past `cap`.
pub fn open_queries(steps: &[QueryStep], points_secs: &[i64], ttl_secs: i64, cap: usize) -> usize {
    let expires_ms = ttl_secs.saturating_mul(MS);
    let mut now = 0;
    let mut count = 0;
    while let Some(at) = next_open_query_at(steps, points_secs, 0, expires_ms, now) {
        count += 1;
        if count > cap {
            break;
        }
        now = at;
    }
    count
}

/// The check burst's next query after `now_ms`, for a burst that began at `started_ms`.
pub fn next_check_at(started_ms: i64, now_ms: i64) -> Option<i64> {
    CHECK_BURST_SECS.iter().map(|s| started_ms.saturating_add(s * MS)).find(|at| *at > now_ms)
}

/// The next late sweep of an order that expired at `expires_ms`, strictly after `now_ms`;
/// points are seconds after expiry.
pub fn next_sweep_at(points_secs: &[i64], expires_ms: i64, now_ms: i64) -> Option<i64> {
    next_point_ms(points_secs, now_ms.saturating_sub(expires_ms)).map(|p| expires_ms.saturating_add(p))
}

/// The first late sweep, as the order is marked expired at `now_ms`. An expiry that ran
/// after every point (a provider outage held it for days) still gets one sweep, the
/// shortest interval after now, as before schedules existed: every expired order is
/// swept at least once.
pub fn first_sweep_at(points_secs: &[i64], expires_ms: i64, now_ms: i64) -> i64 {
    next_sweep_at(points_secs, expires_ms, now_ms).unwrap_or_else(|| {
        let shortest = points_secs.iter().copied().filter(|s| *s > 0).min().unwrap_or(0);
        now_ms.saturating_add(shortest.saturating_mul(MS))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn the_default_cadence_finds_a_payment_in_the_first_ten_minutes_within_60_s() {
        let config = crate::config::OrderConfig::default();
        let expires = config.ttl_secs * MS;
        // Every 100 ms of the first 10 minutes: the next query after a payment at that
        // instant comes within 60 s (in fact within 30 s).
        for paid in (0..10 * MIN).step_by(100) {
            let next = next_open_query_at(&config.query_cadence, &config.query_schedule_secs, 0, expires, paid)
                .unwrap_or(expires);
            assert!(next > paid && next - paid <= 30_000, "paid at {paid} ms, next query at {next} ms");
        }
        // After that, until expiry (where the expiry job closes and queries once more),
        // never more than 2 minutes.
        for paid in (10 * MIN..expires).step_by(100) {
            let next = next_open_query_at(&config.query_cadence, &config.query_schedule_secs, 0, expires, paid)
                .unwrap_or(expires);
            assert!(next > paid && next - paid <= 2 * MIN, "paid at {paid} ms, next query at {next} ms");
        }
    }

    #[test]
    fn the_default_cadence_costs_22_queries_for_a_15_minute_order() {
        // 20 in the first 10 minutes (30 s … 600 s), then 720 s and 840 s; 900 s is expiry.
        let config = crate::config::OrderConfig::default();
        assert_eq!(open_queries(&config.query_cadence, &config.query_schedule_secs, config.ttl_secs, 1000), 22);
        assert_eq!(next_open_query_at(&config.query_cadence, &[], 0, 900_000, 600_000), Some(720_000));
        assert_eq!(next_open_query_at(&config.query_cadence, &[], 0, 900_000, 840_000), None, "900 s is expiry's");
    }

    #[test]
    fn cadence_steps_follow_each_other_and_fixed_points_are_added() {
        let steps =
            [QueryStep { every_secs: 10, until_secs: Some(30) }, QueryStep { every_secs: 25, until_secs: None }];
        let points: Vec<i64> = (0..6)
            .scan(0, |now, _| {
                *now = next_cadence_ms(&steps, *now)?;
                Some(*now / MS)
            })
            .collect();
        assert_eq!(points, [10, 20, 30, 55, 80, 105]);
        // A step that ends: nothing after it.
        let bounded = [QueryStep { every_secs: 10, until_secs: Some(25) }];
        assert_eq!(next_cadence_ms(&bounded, 20_000), None, "30 s is past the step's end");
        assert_eq!(next_cadence_ms(&[], 0), None);
        // The old fixed points still count, together with the cadence.
        assert_eq!(next_open_query_at(&steps, &[5, 60], 1_000, 1_000_000, 1_000), Some(6_000));
        assert_eq!(next_open_query_at(&steps, &[5, 60], 1_000, 1_000_000, 56_000), Some(61_000));
        assert_eq!(next_open_query_at(&[], &[30, 60, 120, 300, 600], 0, 900_000, 600_000), None);
        assert_eq!(
            next_open_query_at(&[], &[30, 60], 0, 60_000, 30_000),
            None,
            "a point at expiry is the expiry job's"
        );
    }

    #[test]
    fn a_check_burst_asks_at_once_then_at_5_15_30_and_60_s() {
        let started = 1_000_000;
        assert_eq!(next_check_at(started, started - 1), Some(started));
        let after: Vec<i64> = [0, 4_999, 5_000, 20_000, 30_000, 59_999]
            .iter()
            .map(|d| next_check_at(started, started + d).unwrap() - started)
            .collect();
        assert_eq!(after, [5_000, 5_000, 15_000, 30_000, 60_000, 60_000]);
        assert_eq!(next_check_at(started, started + 60_000), None, "the burst is over");
    }

    #[test]
    fn late_sweeps_follow_the_schedule_from_expiry() {
        let points = crate::config::OrderConfig::default().late_sweep_points_secs();
        assert_eq!(points, [3_600, 21_600, 86_400, 259_200]);
        let expired = 5_000_000;
        let hour = 3_600_000;
        assert_eq!(first_sweep_at(&points, expired, expired + 10), expired + hour);
        assert_eq!(next_sweep_at(&points, expired, expired + hour), Some(expired + 6 * hour));
        assert_eq!(next_sweep_at(&points, expired, expired + 6 * hour), Some(expired + 24 * hour));
        assert_eq!(next_sweep_at(&points, expired, expired + 24 * hour), Some(expired + 72 * hour));
        assert_eq!(next_sweep_at(&points, expired, expired + 72 * hour), None, "the last sweep was the last");
        // An expiry held up past every point still sweeps once, the shortest interval later.
        assert_eq!(first_sweep_at(&points, expired, expired + 80 * hour), expired + 81 * hour);
        // A sweep stored by an earlier build (10 minutes after expiry) joins the schedule.
        assert_eq!(next_sweep_at(&points, expired, expired + 600_000), Some(expired + hour));
    }
}
