//! Honest figures: what became of the charges of a window, with the same notion of a
//! charge's outcome as the audit ([`crate::outcome`]). Served at `GET /v1/stats`, as
//! Prometheus gauges at `/metrics`, and carried by the per-period proof.
//!
//! Rates are integers per million charges; times are whole milliseconds; percentiles are
//! nearest-rank (the value at rank ⌈n·p/100⌉ of the sorted times), read with one indexed
//! `OFFSET` each, so no float and no whole column in memory.

use crate::outcome::{self, Bounds, Outcome};
use crate::{Conn, Result};
use serde::{Deserialize, Serialize};

/// Rates are given per this many charges.
pub const PER_MILLION: i64 = 1_000_000;

/// The windows the figures are given for: name and length.
pub const WINDOWS: [(&str, i64); 3] = [("1h", 3_600_000), ("24h", 86_400_000), ("30d", 30 * 86_400_000)];

/// Upper edges of the open-attention age buckets (ms), and their names; the last bucket
/// has no upper edge.
const AGE_BUCKETS: [(&str, i64); 3] = [("lt_1h", 3_600_000), ("1h_4h", 4 * 3_600_000), ("4h_24h", 24 * 3_600_000)];
const AGE_BUCKET_LAST: &str = "gt_24h";

/// What became of the charges confirmed in `[from_ms, to_ms)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
    pub charges: i64,
    /// Charges with no outcome past their bound (and no person in time).
    pub dropped: i64,
    pub drop_rate_ppm: i64,
    /// Charges whose outcome came after their bound.
    pub late: i64,
    pub late_rate_ppm: i64,
    /// From payment to outcome, over the charges that reached one.
    pub to_outcome: Durations,
    /// Differences the bill reconciliation found in the window, by class and state.
    pub repairs: Vec<Repairs>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durations {
    pub count: i64,
    pub p50_ms: Option<i64>,
    pub p99_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repairs {
    pub class: String,
    pub state: String,
    pub count: i64,
}

/// Open attention items by how long they have been open, and how many are past due.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttentionAges {
    pub open: i64,
    pub lt_1h: i64,
    #[serde(rename = "1h_4h")]
    pub h1_4: i64,
    #[serde(rename = "4h_24h")]
    pub h4_24: i64,
    pub gt_24h: i64,
    pub overdue: i64,
}

/// The figures for each of [`WINDOWS`] ending at `now_ms`, and open attention now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    pub at_ms: i64,
    /// By window name: `1h`, `24h`, `30d`.
    pub windows: std::collections::BTreeMap<String, Window>,
    pub attention: AttentionAges,
}

/// Per million, rounded down; 0 of 0 is 0.
pub fn ppm(part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        return 0;
    }
    // i128: a count times a million cannot overflow.
    (i128::from(part) * i128::from(PER_MILLION) / i128::from(whole)) as i64
}

/// The nearest rank of percentile `p` among `n` sorted values (1-based), 0 when `n` is 0.
pub fn rank(n: i64, p: i64) -> i64 {
    if n <= 0 {
        return 0;
    }
    ((n * p + 99) / 100).clamp(1, n)
}

pub async fn figures(conn: &mut Conn, bounds: &Bounds, now_ms: i64) -> Result<Figures> {
    let mut windows = std::collections::BTreeMap::new();
    for (name, length) in WINDOWS {
        windows.insert(name.to_owned(), window(&mut *conn, bounds, now_ms - length, now_ms, now_ms).await?);
    }
    let attention = attention_ages(conn, now_ms).await?;
    Ok(Figures { at_ms: now_ms, windows, attention })
}

/// The charges confirmed in `[from_ms, to_ms)`, judged at `now_ms`.
pub async fn window(conn: &mut Conn, bounds: &Bounds, from_ms: i64, to_ms: i64, now_ms: i64) -> Result<Window> {
    let [now, deliver_cut, park_cut] = outcome::params(bounds, now_ms);
    // Parameters appear in order: $1-$3 in the outcome, $4 the grace, $5-$6 the window.
    let per_charge = format!(
        "SELECT ({outcome}) AS outcome, ({reached}) AS reached_at, ({deadline}) + $4 AS bound, \
                {confirmed} AS confirmed_at \
         FROM charges c LEFT JOIN orders o ON o.id = c.order_id \
         WHERE {confirmed} >= $5 AND {confirmed} < $6",
        outcome = outcome::charge_sql(),
        reached = outcome::reached_at_sql(),
        deadline = outcome::deadline_sql(bounds.park_window_ms),
        confirmed = outcome::CONFIRMED_AT_SQL,
    );
    let binds = [now, deliver_cut, park_cut, bounds.deadline_grace_ms, from_ms, to_ms];
    let counts = format!(
        "SELECT COUNT(*), \
                CAST(COALESCE(SUM(CASE WHEN outcome = 'none' THEN 1 ELSE 0 END), 0) AS BIGINT), \
                CAST(COALESCE(SUM(CASE WHEN reached_at > bound THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM ({per_charge}) t"
    );
    let (charges, dropped, late) = three(&mut *conn, &counts, &binds).await?.unwrap_or_default();
    let reached_in =
        Outcome::ALL.iter().filter(|o| o.is_reached()).map(|o| format!("'{}'", o.as_str())).collect::<Vec<_>>();
    // Time to outcome: never negative (a provider's clock ahead of ours reads as 0).
    let durations = format!(
        "SELECT CASE WHEN reached_at > confirmed_at THEN reached_at - confirmed_at ELSE 0 END AS took \
         FROM ({per_charge}) t WHERE outcome IN ({}) AND reached_at IS NOT NULL",
        reached_in.join(", ")
    );
    let sql = format!("SELECT COUNT(*), CAST(COALESCE(MAX(took), 0) AS BIGINT), 0 FROM ({durations}) d");
    let (count, max, _) = three(&mut *conn, &sql, &binds).await?.unwrap_or_default();
    let mut at_rank = [None, None];
    for (slot, p) in at_rank.iter_mut().zip([50, 99]) {
        let r = rank(count, p);
        if r > 0 {
            let sql = format!("SELECT took, 0, 0 FROM ({durations}) d ORDER BY took LIMIT 1 OFFSET {}", r - 1);
            *slot = three(&mut *conn, &sql, &binds).await?.map(|row| row.0);
        }
    }
    let [p50_ms, p99_ms] = at_rank;
    let max_ms = (count > 0).then_some(max);
    let repairs = repairs(conn, from_ms, to_ms).await?;
    Ok(Window {
        from_ms,
        to_ms,
        charges,
        dropped,
        drop_rate_ppm: ppm(dropped, charges),
        late,
        late_rate_ppm: ppm(late, charges),
        to_outcome: Durations { count, p50_ms, p99_ms, max_ms },
        repairs,
    })
}

/// One row of three integers from `sql` with `binds`, if any.
async fn three(conn: &mut Conn, sql: &str, binds: &[i64]) -> Result<Option<(i64, i64, i64)>> {
    let mut query = sqlx::query_as::<_, (i64, i64, i64)>(sql);
    for b in binds {
        query = query.bind(*b);
    }
    Ok(query.fetch_optional(conn).await?)
}

/// Differences found by reconciliations in `[from_ms, to_ms)`, by class and state.
async fn repairs(conn: &mut Conn, from_ms: i64, to_ms: i64) -> Result<Vec<Repairs>> {
    let rows = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT class, state, COUNT(*) FROM bill_differences WHERE created_at_ms >= $1 AND created_at_ms < $2 \
         GROUP BY class, state ORDER BY class, state",
    )
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(class, state, count)| Repairs { class, state, count }).collect())
}

/// Open attention items by age at `now_ms`, and those past their due time.
pub async fn attention_ages(conn: &mut Conn, now_ms: i64) -> Result<AttentionAges> {
    let mut buckets = String::new();
    for (name, upper) in AGE_BUCKETS {
        buckets.push_str(&format!("WHEN $1 - created_at_ms < {upper} THEN '{name}' "));
    }
    let sql = format!(
        "SELECT bucket, COUNT(*), CAST(COALESCE(SUM(overdue), 0) AS BIGINT) FROM \
           (SELECT CASE {buckets}ELSE '{AGE_BUCKET_LAST}' END AS bucket, \
                   CASE WHEN due_at_ms < $1 THEN 1 ELSE 0 END AS overdue \
            FROM attention_items WHERE resolved_at_ms IS NULL) t GROUP BY bucket"
    );
    let rows = sqlx::query_as::<_, (String, i64, i64)>(&sql).bind(now_ms).fetch_all(conn).await?;
    let mut ages = AttentionAges::default();
    for (bucket, count, overdue) in rows {
        ages.open += count;
        ages.overdue += overdue;
        match bucket.as_str() {
            "lt_1h" => ages.lt_1h = count,
            "1h_4h" => ages.h1_4 = count,
            "4h_24h" => ages.h4_24 = count,
            _ => ages.gt_24h += count,
        }
    }
    Ok(ages)
}

/// The figures as Prometheus gauges (text exposition format 0.0.4).
pub fn prometheus(figures: &Figures) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(String, i64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let per_window = |value: &dyn Fn(&Window) -> Option<i64>| -> Vec<(String, i64)> {
        figures.windows.iter().filter_map(|(name, w)| value(w).map(|v| (format!("{{window=\"{name}\"}}"), v))).collect()
    };
    gauge("zerodrop_charges_confirmed", "Charges confirmed in the window.", &per_window(&|w| Some(w.charges)));
    gauge(
        "zerodrop_drop_rate_ppm",
        "Charges of the window with no outcome past their bound, per million.",
        &per_window(&|w| Some(w.drop_rate_ppm)),
    );
    gauge(
        "zerodrop_late_rate_ppm",
        "Charges of the window whose outcome came after their bound, per million.",
        &per_window(&|w| Some(w.late_rate_ppm)),
    );
    let mut took = Vec::new();
    for (name, w) in &figures.windows {
        for (q, value) in [("0.5", w.to_outcome.p50_ms), ("0.99", w.to_outcome.p99_ms), ("1", w.to_outcome.max_ms)] {
            if let Some(v) = value {
                took.push((format!("{{window=\"{name}\",quantile=\"{q}\"}}"), v));
            }
        }
    }
    gauge(
        "zerodrop_payment_to_outcome_ms",
        "Time from payment to outcome in the window: median, 99th percentile (nearest rank) and maximum.",
        &took,
    );
    let repairs: Vec<(String, i64)> = figures
        .windows
        .iter()
        .flat_map(|(name, w)| {
            w.repairs
                .iter()
                .map(move |r| (format!("{{window=\"{name}\",class=\"{}\",state=\"{}\"}}", r.class, r.state), r.count))
        })
        .collect();
    gauge("zerodrop_repairs", "Bill differences found in the window, by class and state.", &repairs);
    let a = &figures.attention;
    let ages: Vec<(String, i64)> = [("lt_1h", a.lt_1h), ("1h_4h", a.h1_4), ("4h_24h", a.h4_24), ("gt_24h", a.gt_24h)]
        .into_iter()
        .map(|(age, n)| (format!("{{age=\"{age}\"}}"), n))
        .collect();
    gauge("zerodrop_attention_open_by_age", "Open attention items by how long they have been open.", &ages);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_ranks_are_integers() {
        assert_eq!(ppm(0, 0), 0);
        assert_eq!(ppm(1, 3), 333_333);
        assert_eq!(ppm(3, 3), PER_MILLION);
        assert_eq!(rank(0, 50), 0);
        assert_eq!(rank(1, 99), 1);
        assert_eq!(rank(4, 50), 2);
        assert_eq!(rank(5, 50), 3);
        assert_eq!(rank(100, 99), 99);
        assert_eq!(rank(101, 99), 100);
    }
}
