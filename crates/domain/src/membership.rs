//! Membership period maths: purchases stack after the current end, never overlap.

/// Milliseconds in a day. Membership days are fixed 24-hour days in UTC.
pub const DAY_MS: i64 = 86_400_000;

/// The period a purchase of `days` adds, given the plan's current end (if any) and now.
/// A membership that already lapsed restarts now; a live one is extended from its end.
pub fn extension(current_end_ms: Option<i64>, now_ms: i64, days: i64) -> (i64, i64) {
    let start_ms = match current_end_ms {
        Some(end) if end > now_ms => end,
        Some(_) | None => now_ms,
    };
    (start_ms, start_ms + days * DAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purchases_stack_after_the_current_end() {
        assert_eq!(extension(None, 1_000, 30), (1_000, 1_000 + 30 * DAY_MS));
        let end = 1_000 + 30 * DAY_MS;
        assert_eq!(extension(Some(end), 2_000, 90), (end, end + 90 * DAY_MS));
        // A lapsed membership restarts now rather than backdating.
        assert_eq!(extension(Some(500), 2_000, 1), (2_000, 2_000 + DAY_MS));
    }
}
