//! Alipay's timestamps: "yyyy-MM-dd HH:mm:ss" in China Standard Time (UTC+8, no DST).

use time::macros::{format_description, offset};
use time::{OffsetDateTime, PrimitiveDateTime};

pub fn format_cst(ms: i64) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map(|t| t.to_offset(offset!(+8)))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

pub fn parse_cst(text: &str) -> Option<i64> {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let local = PrimitiveDateTime::parse(text, &format).ok()?;
    let utc = local.assume_offset(offset!(+8));
    i64::try_from(utc.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_time_round_trips() {
        // 2019-08-15 15:56:24 +08:00 is 07:56:24 UTC.
        let ms = parse_cst("2019-08-15 15:56:24").unwrap();
        assert_eq!(ms, 1_565_855_784_000);
        assert_eq!(format_cst(ms), "2019-08-15 15:56:24");
        assert_eq!(parse_cst("2019-08-15T15:56:24"), None);
        assert_eq!(parse_cst(""), None);
    }
}
