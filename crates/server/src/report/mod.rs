//! A reconciliation's report: its totals, each class with its lines, and the day's
//! payments hour by hour with their outcomes and the drop rate. One value, written as
//! JSON, as CSV (one row per difference) and as a self-contained HTML page (`html`), by
//! the CLI and by `GET /v1/reconciliations/{id}`.

pub mod csv;
pub mod html;

use serde::Serialize;
use zerodrop_domain::money::format_minor;
use zerodrop_store::bills::{self, Class, DifferenceRow, DifferenceState, HourFigures, ReconciliationRow, Summary};
use zerodrop_store::outcome::Bounds;
use zerodrop_store::{Conn, Result};

/// Differences listed per report, at most; the totals count them all, and the API pages
/// through the rest (`GET /v1/reconciliations/{id}?after=`).
pub const LINES_MAX: i64 = 1_000;

/// One per million: the drop rate's unit.
const PPM: i64 = 1_000_000;

/// A class's figures now: how many differences of it stand in each state.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClassNow {
    pub class: String,
    /// As found: lines, zerodrop's amount and the bill's.
    pub count: i64,
    pub amount_minor: i64,
    pub bill_amount_minor: i64,
    pub pending: i64,
    pub repaired: i64,
    pub attention: i64,
    pub resolved: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub reconciliation: ReconciliationRow,
    /// Totals and classes as found, with where each class's differences stand now.
    pub classes: Vec<ClassNow>,
    /// Differences repaired so far (every class).
    pub repaired: i64,
    /// The differences, in the order found (at most [`LINES_MAX`]; `lines_more` says if
    /// there are more).
    pub lines: Vec<DifferenceRow>,
    pub lines_more: bool,
    /// The bill's range hour by hour.
    pub hours: Vec<HourFigures>,
    /// Charges of the range with no outcome past their deadline, per million charges.
    pub drop_rate_ppm: i64,
    pub generated_at_ms: i64,
}

impl Report {
    pub fn summary(&self) -> &Summary {
        &self.reconciliation.summary
    }

    /// The amount in the bill's currency, for people (`12.34`).
    pub fn amount(&self, minor: i64) -> String {
        format_minor(minor, 2)
    }
}

/// Drop rate in charges per million: integers only.
pub fn per_million(part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        return 0;
    }
    i64::try_from(i128::from(part) * i128::from(PPM) / i128::from(whole)).unwrap_or(i64::MAX)
}

/// Builds the report of reconciliation `id` as the database holds it now; `None` when
/// there is no such reconciliation.
pub async fn build(conn: &mut Conn, id: i64, after_id: i64, bounds: &Bounds, now_ms: i64) -> Result<Option<Report>> {
    let Some(reconciliation) = bills::get(conn, id).await? else {
        return Ok(None);
    };
    let counts = bills::counts(conn, id).await?;
    let classes: Vec<ClassNow> = Class::ALL
        .iter()
        .map(|class| {
            let found = reconciliation.summary.class(*class);
            let mut now = ClassNow {
                class: class.as_str().to_owned(),
                count: found.count,
                amount_minor: found.amount_minor,
                bill_amount_minor: found.bill_amount_minor,
                ..ClassNow::default()
            };
            for (c, state, n) in &counts {
                if c != class {
                    continue;
                }
                match state {
                    DifferenceState::Pending => now.pending += n,
                    DifferenceState::Repaired => now.repaired += n,
                    DifferenceState::Attention => now.attention += n,
                    DifferenceState::Resolved => now.resolved += n,
                }
            }
            now
        })
        .collect();
    let repaired = classes.iter().map(|c| c.repaired).sum();
    let mut lines = bills::by_reconciliation(conn, id, after_id, LINES_MAX + 1).await?;
    let lines_more = lines.len() as i64 > LINES_MAX;
    lines.truncate(LINES_MAX as usize);
    let bill = &reconciliation.bill;
    let hours = bills::hours(conn, bill.id, &bill.provider, bill.from_ms, bill.to_ms, bounds, now_ms).await?;
    let charges: i64 = hours.iter().map(|h| h.charges).sum();
    let dropped: i64 = hours.iter().map(|h| h.dropped).sum();
    Ok(Some(Report {
        reconciliation,
        classes,
        repaired,
        lines,
        lines_more,
        hours,
        drop_rate_ppm: per_million(dropped, charges),
        generated_at_ms: now_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::per_million;

    #[test]
    fn per_million_is_exact_and_never_divides_by_zero() {
        assert_eq!(per_million(0, 0), 0);
        assert_eq!(per_million(1, 3), 333_333);
        assert_eq!(per_million(3, 3), 1_000_000);
        assert_eq!(per_million(i64::MAX, 1), i64::MAX);
    }
}
