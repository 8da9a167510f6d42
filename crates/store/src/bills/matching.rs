//! Matching a stored bill against zerodrop's record, three ways: each bill line against
//! its charge or refund, each charge and refund of the bill's range against the bill, and
//! each charge against its outcome. Set-based SQL over the stored lines, so a bill of a
//! million lines is matched without holding it in memory.

use crate::{Result, Tx};
use serde::{Deserialize, Serialize};

/// What a difference is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Paid at the provider, unknown to zerodrop: recorded through the one payment path.
    UnknownToUs,
    /// Known to zerodrop, missing from the bill: asked again, then a person.
    MissingFromBill,
    /// The bill's amount is not the charge's: asked again, then a person.
    AmountDiffers,
    /// A refund in the bill that zerodrop does not hold as made: asked again and settled
    /// through the one refund path (a refund zerodrop never asked for goes to a person).
    RefundUnknownToUs,
    /// A refund zerodrop holds as made, missing from the bill: asked again, then a person.
    RefundMissingFromBill,
    /// A charge of the bill's range with no outcome past its deadline: the product's
    /// deadline policy.
    NoOutcome,
}

impl Class {
    pub const ALL: [Class; 6] = [
        Class::UnknownToUs,
        Class::MissingFromBill,
        Class::AmountDiffers,
        Class::RefundUnknownToUs,
        Class::RefundMissingFromBill,
        Class::NoOutcome,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::UnknownToUs => "unknown_to_us",
            Class::MissingFromBill => "missing_from_bill",
            Class::AmountDiffers => "amount_differs",
            Class::RefundUnknownToUs => "refund_unknown_to_us",
            Class::RefundMissingFromBill => "refund_missing_from_bill",
            Class::NoOutcome => "no_outcome",
        }
    }

    pub fn parse(text: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// A class's lines: how many, zerodrop's amount and the bill's (minor units).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassFigures {
    pub count: i64,
    pub amount_minor: i64,
    pub bill_amount_minor: i64,
}

/// What a reconciliation found when it ran.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    pub trade_lines: ClassFigures,
    pub refund_lines: ClassFigures,
    /// Trade lines whose charge has the same amount.
    pub matched: ClassFigures,
    /// Refund lines whose refund zerodrop holds as made, for the same amount.
    pub refunds_matched: ClassFigures,
    pub unknown_to_us: ClassFigures,
    pub missing_from_bill: ClassFigures,
    pub amount_differs: ClassFigures,
    pub refund_unknown_to_us: ClassFigures,
    pub refund_missing_from_bill: ClassFigures,
    pub no_outcome: ClassFigures,
    /// Differences this reconciliation recorded; the others were recorded by an earlier
    /// bill naming the same facts (each fact is repaired once).
    pub new_differences: i64,
}

impl Summary {
    pub fn class(&self, class: Class) -> ClassFigures {
        match class {
            Class::UnknownToUs => self.unknown_to_us,
            Class::MissingFromBill => self.missing_from_bill,
            Class::AmountDiffers => self.amount_differs,
            Class::RefundUnknownToUs => self.refund_unknown_to_us,
            Class::RefundMissingFromBill => self.refund_missing_from_bill,
            Class::NoOutcome => self.no_outcome,
        }
    }

    fn class_mut(&mut self, class: Class) -> &mut ClassFigures {
        match class {
            Class::UnknownToUs => &mut self.unknown_to_us,
            Class::MissingFromBill => &mut self.missing_from_bill,
            Class::AmountDiffers => &mut self.amount_differs,
            Class::RefundUnknownToUs => &mut self.refund_unknown_to_us,
            Class::RefundMissingFromBill => &mut self.refund_missing_from_bill,
            Class::NoOutcome => &mut self.no_outcome,
        }
    }

    /// Differences of every class.
    pub fn differences(&self) -> i64 {
        Class::ALL.iter().map(|c| self.class(*c).count).sum()
    }
}

/// The bill being matched.
pub struct Matching<'a> {
    pub reconciliation_id: i64,
    pub bill_id: i64,
    pub provider: &'a str,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Charges and refunds of the last minutes before the import are not counted missing
    /// from the bill (nor without an outcome): a bill of the current day (the sandbox's)
    /// was cut before them. [`MISSING_GRACE_MS`] unless configured.
    pub missing_grace_ms: i64,
}

/// The default of [`Matching::missing_grace_ms`].
pub const MISSING_GRACE_MS: i64 = 10 * 60_000;

impl Matching<'_> {
    /// The end of what the bill could show: its range's end, or the import less the grace.
    fn seen_until_ms(&self, now_ms: i64) -> i64 {
        self.to_ms.min(now_ms - self.missing_grace_ms)
    }
}

/// Matches the bill, records each difference not recorded before (state `pending`), and
/// returns what it found. In the import's transaction.
///
/// The bill's lines are read twice in all (once for trades, once for refunds, each line
/// joined to its charge or refund and counted into every class at once), the day's
/// charges and refunds once per class that looks at them; a class's differences are
/// written only when it has any.
pub async fn match_bill(tx: &mut Tx, m: &Matching<'_>, now_ms: i64) -> Result<Summary> {
    let [trade_lines, matched, unknown_to_us, amount_differs] = lines_figures(tx, m, TRADE_FIGURES).await?;
    let [refund_lines, refunds_matched, refund_unknown_to_us, _] = lines_figures(tx, m, REFUND_FIGURES).await?;
    let mut summary = Summary {
        trade_lines,
        refund_lines,
        matched,
        refunds_matched,
        unknown_to_us,
        amount_differs,
        refund_unknown_to_us,
        ..Summary::default()
    };
    for class in [Class::MissingFromBill, Class::RefundMissingFromBill, Class::NoOutcome] {
        let (select, _) = class_sql(class);
        *summary.class_mut(class) = figures(tx, m, now_ms, select).await?;
    }
    for class in Class::ALL {
        if summary.class(class).count > 0 {
            summary.new_differences += record(tx, m, class, now_ms).await?;
        }
    }
    Ok(summary)
}

/// Figures of a bill's lines of one kind, in one pass: all lines, matched, unknown to
/// zerodrop, and (trades) of another amount. Over $1 bill, $2 provider.
const TRADE_FIGURES: &str = "\
SELECT COUNT(*), 0, CAST(COALESCE(SUM(l.amount_minor), 0) AS BIGINT), \
  CAST(COALESCE(SUM(CASE WHEN c.amount_minor = l.amount_minor THEN 1 ELSE 0 END), 0) AS BIGINT), \
  CAST(COALESCE(SUM(CASE WHEN c.amount_minor = l.amount_minor THEN c.amount_minor ELSE 0 END), 0) AS BIGINT), \
  CAST(COALESCE(SUM(CASE WHEN c.amount_minor = l.amount_minor THEN l.amount_minor ELSE 0 END), 0) AS BIGINT), \
  CAST(COALESCE(SUM(CASE WHEN c.id IS NULL THEN 1 ELSE 0 END), 0) AS BIGINT), 0, \
  CAST(COALESCE(SUM(CASE WHEN c.id IS NULL THEN l.amount_minor ELSE 0 END), 0) AS BIGINT), \
  CAST(COALESCE(SUM(CASE WHEN c.amount_minor <> l.amount_minor THEN 1 ELSE 0 END), 0) AS BIGINT), \
  CAST(COALESCE(SUM(CASE WHEN c.amount_minor <> l.amount_minor THEN c.amount_minor ELSE 0 END), 0) AS BIGINT), \
  CAST(COALESCE(SUM(CASE WHEN c.amount_minor <> l.amount_minor THEN l.amount_minor ELSE 0 END), 0) AS BIGINT) \
FROM bill_lines l LEFT JOIN charges c ON c.trade_no = l.trade_no \
WHERE l.bill_id = $1 AND l.kind = 'trade' AND $2 = $2";

/// The same for refund lines: a line matches a refund zerodrop holds as made, with its
/// request number, on the same provider and trade, for the same amount.
const REFUND_FIGURES: &str = "\
SELECT COUNT(*), 0, CAST(COALESCE(SUM(l.amount_minor), 0) AS BIGINT), \
  CAST(COALESCE(SUM(CASE WHEN r.amount_minor = l.amount_minor THEN 1 ELSE 0 END), 0) AS BIGINT), \
  CAST(COALESCE(SUM(CASE WHEN r.amount_minor = l.amount_minor THEN r.amount_minor ELSE 0 END), 0) AS BIGINT), \
  CAST(COALESCE(SUM(CASE WHEN r.amount_minor = l.amount_minor THEN l.amount_minor ELSE 0 END), 0) AS BIGINT), \
  CAST(COALESCE(SUM(CASE WHEN r.amount_minor = l.amount_minor THEN 0 ELSE 1 END), 0) AS BIGINT), \
  CAST(COALESCE(SUM(CASE WHEN r.amount_minor = l.amount_minor THEN 0 ELSE COALESCE(r.amount_minor, 0) END), 0) AS BIGINT), \
  CAST(COALESCE(SUM(CASE WHEN r.amount_minor = l.amount_minor THEN 0 ELSE l.amount_minor END), 0) AS BIGINT), \
  0, 0, 0 \
FROM bill_lines l LEFT JOIN (refunds r JOIN charges c ON c.id = r.charge_id AND c.provider = $2) \
  ON r.request_no = l.refund_no AND r.state = 'succeeded' AND c.trade_no = l.trade_no \
WHERE l.bill_id = $1 AND l.kind = 'refund'";

async fn lines_figures(tx: &mut Tx, m: &Matching<'_>, sql: &str) -> Result<[ClassFigures; 4]> {
    let row: (i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64) =
        sqlx::query_as(sql).bind(m.bill_id).bind(m.provider).fetch_one(&mut **tx).await?;
    let f = |count, amount_minor, bill_amount_minor| ClassFigures { count, amount_minor, bill_amount_minor };
    Ok([f(row.0, row.1, row.2), f(row.3, row.4, row.5), f(row.6, row.7, row.8), f(row.9, row.10, row.11)])
}

// A bill covers a merchant account, which several configured providers (apps) may share:
// a trade is matched by its number whichever of them recorded it, never taken for one
// zerodrop lacks.
//
// Each class is one SELECT over $1 reconciliation, $2 bill, $3 provider, $4 from, $5 to,
// $6 now, returning: fact key, bill line, charge, refund, order, zerodrop's amount, the
// bill's amount. `figures` sums it; `record` inserts it as differences.

/// The class's SELECT and its fact key's prefix.
fn class_sql(class: Class) -> (&'static str, &'static str) {
    match class {
        Class::UnknownToUs => (
            "SELECT 'trade:' || l.trade_no AS fact_key, l.id AS bill_line_id, CAST(NULL AS BIGINT) AS charge_id, CAST(NULL AS TEXT) AS refund_id, \
             (SELECT o.id FROM orders o WHERE o.order_no = l.order_no) AS order_id, 0 AS amount_minor, \
             l.amount_minor AS bill_amount_minor \
             FROM bill_lines l WHERE l.bill_id = $2 AND l.kind = 'trade' \
             AND NOT EXISTS (SELECT 1 FROM charges c WHERE c.trade_no = l.trade_no) \
             AND $1 = $1 AND $3 = $3 AND $4 = $4 AND $5 = $5 AND $6 = $6",
            "trade",
        ),
        Class::AmountDiffers => (
            "SELECT 'amount:' || l.trade_no AS fact_key, l.id AS bill_line_id, c.id AS charge_id, CAST(NULL AS TEXT) AS refund_id, \
             c.order_id AS order_id, c.amount_minor AS amount_minor, l.amount_minor AS bill_amount_minor \
             FROM bill_lines l JOIN charges c ON c.trade_no = l.trade_no \
             WHERE l.bill_id = $2 AND l.kind = 'trade' AND c.amount_minor <> l.amount_minor \
             AND $1 = $1 AND $3 = $3 AND $4 = $4 AND $5 = $5 AND $6 = $6",
            "amount",
        ),
        Class::MissingFromBill => (
            "SELECT 'missing:' || c.trade_no AS fact_key, CAST(NULL AS BIGINT) AS bill_line_id, c.id AS charge_id, CAST(NULL AS TEXT) AS refund_id, \
             c.order_id AS order_id, c.amount_minor AS amount_minor, 0 AS bill_amount_minor \
             FROM charges c WHERE c.provider = $3 \
             AND COALESCE(c.paid_at_ms, c.recorded_at_ms) >= $4 AND COALESCE(c.paid_at_ms, c.recorded_at_ms) < $5 \
             AND NOT EXISTS (SELECT 1 FROM bill_lines l WHERE l.bill_id = $2 AND l.kind = 'trade' AND l.trade_no = c.trade_no) \
             AND $1 = $1 AND $6 = $6",
            "missing",
        ),
        Class::RefundUnknownToUs => (
            "SELECT 'refund:' || l.trade_no || ':' || l.refund_no AS fact_key, l.id AS bill_line_id, \
             (SELECT c.id FROM charges c WHERE c.provider = $3 AND c.trade_no = l.trade_no) AS charge_id, \
             (SELECT r.id FROM refunds r JOIN charges c ON c.id = r.charge_id \
              WHERE r.request_no = l.refund_no AND c.provider = $3 AND c.trade_no = l.trade_no) AS refund_id, \
             (SELECT c.order_id FROM charges c WHERE c.provider = $3 AND c.trade_no = l.trade_no) AS order_id, \
             COALESCE((SELECT r.amount_minor FROM refunds r JOIN charges c ON c.id = r.charge_id \
                       WHERE r.request_no = l.refund_no AND c.provider = $3 AND c.trade_no = l.trade_no \
                       AND r.state = 'succeeded'), 0) AS amount_minor, l.amount_minor AS bill_amount_minor \
             FROM bill_lines l WHERE l.bill_id = $2 AND l.kind = 'refund' \
             AND NOT EXISTS (SELECT 1 FROM refunds r JOIN charges c ON c.id = r.charge_id \
                             WHERE r.request_no = l.refund_no AND c.provider = $3 AND c.trade_no = l.trade_no \
                             AND r.state = 'succeeded' AND r.amount_minor = l.amount_minor) \
             AND $1 = $1 AND $4 = $4 AND $5 = $5 AND $6 = $6",
            "refund",
        ),
        Class::RefundMissingFromBill => (
            "SELECT 'refund_missing:' || r.request_no AS fact_key, CAST(NULL AS BIGINT) AS bill_line_id, c.id AS charge_id, \
             r.id AS refund_id, r.order_id AS order_id, r.amount_minor AS amount_minor, 0 AS bill_amount_minor \
             FROM refunds r JOIN charges c ON c.id = r.charge_id \
             WHERE c.provider = $3 AND r.state = 'succeeded' AND r.finished_at_ms >= $4 AND r.finished_at_ms < $5 \
             AND NOT EXISTS (SELECT 1 FROM bill_lines l WHERE l.bill_id = $2 AND l.kind = 'refund' \
                             AND l.trade_no = c.trade_no AND l.refund_no = r.request_no) \
             AND $1 = $1 AND $6 = $6",
            "refund_missing",
        ),
        Class::NoOutcome => (
            "SELECT 'outcome:' || c.id AS fact_key, CAST(NULL AS BIGINT) AS bill_line_id, c.id AS charge_id, CAST(NULL AS TEXT) AS refund_id, \
             o.id AS order_id, c.amount_minor AS amount_minor, 0 AS bill_amount_minor \
             FROM charges c JOIN orders o ON o.id = c.order_id \
             WHERE c.provider = $3 AND c.class IN ('matched', 'late') \
             AND COALESCE(c.paid_at_ms, c.recorded_at_ms) >= $4 AND COALESCE(c.paid_at_ms, c.recorded_at_ms) < $5 \
             AND o.status = 'paid' AND o.deliver_by_ms IS NOT NULL AND o.deliver_by_ms < $6 \
             AND NOT EXISTS (SELECT 1 FROM attention_items a WHERE a.order_id = o.id AND a.resolved_at_ms IS NULL \
                             AND (a.due_at_ms IS NULL OR a.due_at_ms >= $6)) \
             AND $1 = $1 AND $2 = $2",
            "outcome",
        ),
    }
}

async fn figures(tx: &mut Tx, m: &Matching<'_>, now_ms: i64, select: &str) -> Result<ClassFigures> {
    let sql = format!(
        "SELECT COUNT(*), CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT), CAST(COALESCE(SUM(bill_amount_minor), 0) AS BIGINT) \
         FROM ({select}) AS d"
    );
    let (count, amount_minor, bill_amount_minor): (i64, i64, i64) = sqlx::query_as(&sql)
        .bind(m.reconciliation_id)
        .bind(m.bill_id)
        .bind(m.provider)
        .bind(m.from_ms)
        .bind(m.seen_until_ms(now_ms))
        .bind(now_ms)
        .fetch_one(&mut **tx)
        .await?;
    Ok(ClassFigures { count, amount_minor, bill_amount_minor })
}

/// Inserts the class's differences not recorded before; returns how many it inserted.
async fn record(tx: &mut Tx, m: &Matching<'_>, class: Class, now_ms: i64) -> Result<i64> {
    let (select, _) = class_sql(class);
    let sql = format!(
        "INSERT INTO bill_differences (reconciliation_id, provider, fact_key, class, bill_line_id, charge_id, refund_id, \
             order_id, amount_minor, bill_amount_minor, state, outcome, created_at_ms, updated_at_ms) \
         SELECT $1, $3, d.fact_key, '{}', d.bill_line_id, d.charge_id, d.refund_id, d.order_id, d.amount_minor, \
             d.bill_amount_minor, 'pending', NULL, $6, $6 FROM ({select}) AS d WHERE true \
         ON CONFLICT (provider, fact_key) DO NOTHING",
        class.as_str()
    );
    let inserted = sqlx::query(&sql)
        .bind(m.reconciliation_id)
        .bind(m.bill_id)
        .bind(m.provider)
        .bind(m.from_ms)
        .bind(m.seen_until_ms(now_ms))
        .bind(now_ms)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(i64::try_from(inserted).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_trip_and_fact_keys_are_distinct() {
        let mut prefixes = std::collections::HashSet::new();
        for class in Class::ALL {
            assert_eq!(Class::parse(class.as_str()), Some(class));
            assert!(prefixes.insert(class_sql(class).1), "{class:?} shares a fact key prefix");
        }
        assert_eq!(Class::parse("matched"), None);
    }
}
