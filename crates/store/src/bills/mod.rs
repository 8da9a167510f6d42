//! Bills and their reconciliation: a provider's daily bill stored line by line, matched
//! against zerodrop's charges and refunds, and every difference kept with what was done
//! about it.
//!
//! An import is one transaction: the bill, its lines, the reconciliation, its differences
//! and the jobs that repair them commit together or not at all, so no bill is ever half
//! applied. The same file (by SHA-256) is imported once. A difference is keyed by the fact
//! it is about (a trade, a refund, a charge), not by the bill: a fact is repaired once,
//! however many bills name it.

mod differences;
mod matching;

pub use differences::{
    by_reconciliation, counts, get as get_difference, lock as lock_difference, pending, settle, DifferenceRow,
    DifferenceState,
};
pub use matching::{match_bill, Class, ClassFigures, Matching, Summary, MISSING_GRACE_MS};

use crate::outcome::{self, Bounds, Outcome};
use crate::{Conn, Result, StoreError, Tx};
use serde::Serialize;
use zerodrop_domain::bill::{BillHeader, BillLine, BillTotals};

/// Bill lines written per statement (ten parameters each). Measured, not guessed: binding
/// costs grow faster than the parameter count (a million lines took 49 s at 500 a
/// statement and 9 s at 50 on SQLite; 3,000 a statement was slower still), so statements
/// stay small; their count is what is left (docs/BENCHMARKS.md).
pub const LINES_PER_STATEMENT: usize = 50;

/// A bill file as imported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BillRow {
    pub id: i64,
    pub provider: String,
    pub account: String,
    pub file_name: String,
    pub file_sha256: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub currency: String,
    pub trade_count: i64,
    pub trade_total_minor: i64,
    pub refund_count: i64,
    pub refund_total_minor: i64,
    pub imported_at_ms: i64,
}

pub struct NewBill<'a> {
    pub provider: &'a str,
    pub file_name: &'a str,
    pub file_sha256: &'a str,
    pub header: &'a BillHeader,
    pub currency: &'a str,
    pub totals: &'a BillTotals,
}

/// A reconciliation of one bill, with what it found when it ran.
#[derive(Clone, Debug, Serialize)]
pub struct ReconciliationRow {
    pub id: i64,
    pub bill: BillRow,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub summary: Summary,
}

const BILL_COLUMNS: &str = "b.id, b.provider, b.account, b.file_name, b.file_sha256, b.from_ms, b.to_ms, b.currency, \
     b.trade_count, b.trade_total_minor, b.refund_count, b.refund_total_minor, b.imported_at_ms";

/// The reconciliation of the bill with this file hash, if it was imported before.
pub async fn by_file(conn: &mut Conn, provider: &str, file_sha256: &str) -> Result<Option<ReconciliationRow>> {
    let sql = format!(
        "SELECT {BILL_COLUMNS}, r.id AS rec_id, r.started_at_ms, r.finished_at_ms, r.summary \
         FROM bills b JOIN reconciliations r ON r.bill_id = b.id WHERE b.provider = $1 AND b.file_sha256 = $2"
    );
    let row = sqlx::query_as::<_, Record>(&sql).bind(provider).bind(file_sha256).fetch_optional(conn).await?;
    row.map(TryInto::try_into).transpose()
}

pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<ReconciliationRow>> {
    let sql = format!(
        "SELECT {BILL_COLUMNS}, r.id AS rec_id, r.started_at_ms, r.finished_at_ms, r.summary \
         FROM bills b JOIN reconciliations r ON r.bill_id = b.id WHERE r.id = $1"
    );
    let row = sqlx::query_as::<_, Record>(&sql).bind(id).fetch_optional(conn).await?;
    row.map(TryInto::try_into).transpose()
}

/// Reconciliations newest first, `before_id` exclusive (0: from the newest).
pub async fn list(conn: &mut Conn, before_id: i64, limit: i64) -> Result<Vec<ReconciliationRow>> {
    let sql = format!(
        "SELECT {BILL_COLUMNS}, r.id AS rec_id, r.started_at_ms, r.finished_at_ms, r.summary \
         FROM bills b JOIN reconciliations r ON r.bill_id = b.id WHERE ($1 = 0 OR r.id < $1) ORDER BY r.id DESC LIMIT $2"
    );
    let rows = sqlx::query_as::<_, Record>(&sql).bind(before_id).bind(limit).fetch_all(conn).await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// Bills of every provider whose range overlaps `[from, to)`, earliest first.
pub async fn overlapping(conn: &mut Conn, from_ms: i64, to_ms: i64) -> Result<Vec<BillRow>> {
    let sql =
        format!("SELECT {BILL_COLUMNS} FROM bills b WHERE b.from_ms < $2 AND b.to_ms > $1 ORDER BY b.from_ms, b.id");
    let rows = sqlx::query_as::<_, BillRecord>(&sql).bind(from_ms).bind(to_ms).fetch_all(conn).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The latest reconciliation of `provider`'s bill for the day starting at `from_ms`.
pub async fn of_day(conn: &mut Conn, provider: &str, from_ms: i64) -> Result<Option<i64>> {
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(r.id) FROM reconciliations r JOIN bills b ON b.id = r.bill_id WHERE b.provider = $1 AND b.from_ms = $2",
    )
    .bind(provider)
    .bind(from_ms)
    .fetch_one(conn)
    .await?;
    Ok(id)
}

/// Stores the bill's own row; its lines follow with [`insert_lines`].
pub async fn insert_bill(tx: &mut Tx, bill: &NewBill<'_>, now_ms: i64) -> Result<i64> {
    let (totals, header) = (bill.totals, bill.header);
    let count = |n: u64| i64::try_from(n).map_err(|_| StoreError::Invariant(format!("bill count {n} too large")));
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO bills (provider, account, file_name, file_sha256, from_ms, to_ms, currency, trade_count, \
             trade_total_minor, refund_count, refund_total_minor, imported_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(bill.provider)
    .bind(&header.account)
    .bind(bill.file_name)
    .bind(bill.file_sha256)
    .bind(header.from_ms)
    .bind(header.to_ms)
    .bind(bill.currency)
    .bind(count(totals.trade_count)?)
    .bind(totals.trade_total_minor)
    .bind(count(totals.refund_count)?)
    .bind(totals.refund_total_minor)
    .bind(now_ms)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

/// Stores a chunk of the bill's lines, [`LINES_PER_STATEMENT`] to a statement.
pub async fn insert_lines(tx: &mut Tx, bill_id: i64, lines: &[BillLine]) -> Result<()> {
    for chunk in lines.chunks(LINES_PER_STATEMENT) {
        let mut sql = String::with_capacity(64 + chunk.len() * 64);
        sql.push_str(
            "INSERT INTO bill_lines (bill_id, line_no, line_sha256, kind, trade_no, order_no, refund_no, amount_minor, \
             created_at_ms, finished_at_ms) VALUES ",
        );
        for i in 0..chunk.len() {
            let p = i * 9;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "($1, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7,
                p + 8,
                p + 9,
                p + 10
            ));
        }
        let mut query = sqlx::query(&sql).bind(bill_id);
        for line in chunk {
            let line_no = i64::try_from(line.line_no)
                .map_err(|_| StoreError::Invariant(format!("bill line number {} too large", line.line_no)))?;
            query = query
                .bind(line_no)
                .bind(&line.line_sha256)
                .bind(line.kind.as_str())
                .bind(&line.trade_no)
                .bind(&line.order_no)
                .bind(&line.refund_no)
                .bind(line.amount.minor)
                .bind(line.created_at_ms)
                .bind(line.finished_at_ms);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Starts the bill's reconciliation row (its summary is written by [`finish`]).
pub async fn start(tx: &mut Tx, bill_id: i64, now_ms: i64) -> Result<i64> {
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO reconciliations (bill_id, started_at_ms, finished_at_ms, summary) VALUES ($1, $2, $2, '{}') RETURNING id",
    )
    .bind(bill_id)
    .bind(now_ms)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

/// Writes what the reconciliation found.
pub async fn finish(tx: &mut Tx, id: i64, summary: &Summary, now_ms: i64) -> Result<()> {
    sqlx::query("UPDATE reconciliations SET summary = $1, finished_at_ms = $2 WHERE id = $3")
        .bind(serde_json::to_string(summary)?)
        .bind(now_ms)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// One line of a bill, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LineRow {
    pub id: i64,
    pub bill_id: i64,
    pub line_no: i64,
    pub line_sha256: String,
    pub kind: String,
    pub trade_no: String,
    pub order_no: String,
    pub refund_no: String,
    pub amount_minor: i64,
    pub created_at_ms: i64,
    pub finished_at_ms: i64,
}

pub async fn line(conn: &mut Conn, id: i64) -> Result<Option<LineRow>> {
    let row = sqlx::query_as::<_, LineRow>(
        "SELECT id, bill_id, line_no, line_sha256, kind, trade_no, order_no, refund_no, amount_minor, created_at_ms, \
         finished_at_ms FROM bill_lines WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// Payments of the bill's range by hour, with what became of them: the report's chart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HourFigures {
    /// Start of the hour, Unix milliseconds.
    pub from_ms: i64,
    /// Trade lines in the bill.
    pub billed: i64,
    /// zerodrop's charges paid in the hour.
    pub charges: i64,
    pub delivered: i64,
    pub refunded: i64,
    /// With no outcome yet (with a person, or waiting).
    pub open: i64,
    /// No outcome past the deadline: counted into the drop rate.
    pub dropped: i64,
}

const HOUR_MS: i64 = 3_600_000;
/// Buckets in a report's chart, at most (a bill covers one day; a day with a clock change
/// has 25 hours).
const HOURS_MAX: i64 = 48;

/// The chart's figures for `[from, to)`, hour by hour, as the database holds them now.
pub async fn hours(
    conn: &mut Conn,
    bill_id: i64,
    provider: &str,
    from_ms: i64,
    to_ms: i64,
    bounds: &Bounds,
    now_ms: i64,
) -> Result<Vec<HourFigures>> {
    let mut hours: Vec<HourFigures> = (from_ms..to_ms.min(from_ms + HOURS_MAX * HOUR_MS))
        .step_by(HOUR_MS as usize)
        .map(|from_ms| HourFigures { from_ms, ..HourFigures::default() })
        .collect();
    let billed: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT (finished_at_ms - $2) / 3600000 AS hour, COUNT(*) FROM bill_lines WHERE bill_id = $1 AND kind = 'trade' \
         GROUP BY 1",
    )
    .bind(bill_id)
    .bind(from_ms)
    .fetch_all(&mut *conn)
    .await?;
    for (hour, count) in billed {
        if let Some(h) = usize::try_from(hour).ok().and_then(|h| hours.get_mut(h)) {
            h.billed = count;
        }
    }
    // Aggregated in the database: a day of a million charges is 24 × 6 rows here. Each
    // charge's outcome as the audit judges it (`outcome`, the one definition).
    let sql = format!(
        "SELECT ({at} - $4) / 3600000 AS hour, {outcome} AS outcome, COUNT(*) \
         FROM charges c LEFT JOIN orders o ON o.id = c.order_id \
         WHERE c.provider = $6 AND {at} >= $4 AND {at} < $5 GROUP BY 1, 2",
        at = outcome::CONFIRMED_AT_SQL,
        outcome = outcome::charge_sql(),
    );
    let [now, deliver_cut, park_cut] = outcome::params(bounds, now_ms);
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(&sql)
        .bind(now)
        .bind(deliver_cut)
        .bind(park_cut)
        .bind(from_ms)
        .bind(to_ms)
        .bind(provider)
        .fetch_all(&mut *conn)
        .await?;
    for (hour, outcome, n) in rows {
        let Some(h) = usize::try_from(hour).ok().and_then(|i| hours.get_mut(i)) else { continue };
        h.charges += n;
        match Outcome::parse(&outcome) {
            Some(Outcome::Delivered) => h.delivered += n,
            // Money on its way back counts with the refunded: nobody has to act for it.
            Some(Outcome::Refunded | Outcome::Refunding) => h.refunded += n,
            Some(Outcome::None) => h.dropped += n,
            Some(Outcome::Attention | Outcome::Pending) | None => h.open += n,
        }
    }
    Ok(hours)
}

#[derive(sqlx::FromRow)]
struct BillRecord {
    id: i64,
    provider: String,
    account: String,
    file_name: String,
    file_sha256: String,
    from_ms: i64,
    to_ms: i64,
    currency: String,
    trade_count: i64,
    trade_total_minor: i64,
    refund_count: i64,
    refund_total_minor: i64,
    imported_at_ms: i64,
}

impl From<BillRecord> for BillRow {
    fn from(r: BillRecord) -> BillRow {
        BillRow {
            id: r.id,
            provider: r.provider,
            account: r.account,
            file_name: r.file_name,
            file_sha256: r.file_sha256,
            from_ms: r.from_ms,
            to_ms: r.to_ms,
            currency: r.currency,
            trade_count: r.trade_count,
            trade_total_minor: r.trade_total_minor,
            refund_count: r.refund_count,
            refund_total_minor: r.refund_total_minor,
            imported_at_ms: r.imported_at_ms,
        }
    }
}

#[derive(sqlx::FromRow)]
struct Record {
    #[sqlx(flatten)]
    bill: BillRecord,
    rec_id: i64,
    started_at_ms: i64,
    finished_at_ms: i64,
    summary: String,
}

impl TryFrom<Record> for ReconciliationRow {
    type Error = StoreError;
    fn try_from(r: Record) -> Result<ReconciliationRow> {
        Ok(ReconciliationRow {
            id: r.rec_id,
            bill: r.bill.into(),
            started_at_ms: r.started_at_ms,
            finished_at_ms: r.finished_at_ms,
            summary: serde_json::from_str(&r.summary)?,
        })
    }
}

/// The first bill of the provider that shows this trade (`refund_no` empty) or this refund
/// of the trade. One index lookup per bill of the provider (a few hundred a year).
pub async fn billed_elsewhere(conn: &mut Conn, provider: &str, trade_no: &str, refund_no: &str) -> Result<Option<i64>> {
    let kind = if refund_no.is_empty() { "trade" } else { "refund" };
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(b.id) FROM bills b WHERE b.provider = $1 AND EXISTS (SELECT 1 FROM bill_lines l \
         WHERE l.bill_id = b.id AND l.kind = $2 AND l.trade_no = $3 AND l.refund_no = $4)",
    )
    .bind(provider)
    .bind(kind)
    .bind(trade_no)
    .bind(refund_no)
    .fetch_one(conn)
    .await?;
    Ok(id)
}
