//! Differences a reconciliation found, and what was done about each: `pending` until its
//! repair job runs, then `repaired` (the one payment or refund path ended it), `attention`
//! (a person has it, with the attention item's clock) or `resolved` (asked again, and the
//! difference was gone).

use super::matching::Class;
use crate::{Conn, Result, StoreError, Tx};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceState {
    Pending,
    Repaired,
    Attention,
    Resolved,
}

impl DifferenceState {
    pub const ALL: [DifferenceState; 4] =
        [DifferenceState::Pending, DifferenceState::Repaired, DifferenceState::Attention, DifferenceState::Resolved];

    pub fn as_str(self) -> &'static str {
        match self {
            DifferenceState::Pending => "pending",
            DifferenceState::Repaired => "repaired",
            DifferenceState::Attention => "attention",
            DifferenceState::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<DifferenceState> {
        DifferenceState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DifferenceRow {
    pub id: i64,
    pub reconciliation_id: i64,
    /// The bill the difference was found against, and its file's hash.
    pub bill_id: i64,
    pub bill_sha256: String,
    pub provider: String,
    pub fact_key: String,
    pub class: Class,
    pub bill_line_id: Option<i64>,
    /// The bill line's number in its file and the hash of its bytes, when it has a line.
    pub line_no: Option<i64>,
    pub line_sha256: Option<String>,
    pub trade_no: Option<String>,
    pub order_no: Option<String>,
    pub refund_no: Option<String>,
    pub charge_id: Option<i64>,
    pub refund_id: Option<String>,
    pub order_id: Option<String>,
    pub amount_minor: i64,
    pub bill_amount_minor: i64,
    pub state: DifferenceState,
    pub outcome: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl DifferenceRow {
    /// The cause events and actions of this difference's repair carry: the bill line
    /// (its id, its number in the file and its hash), else the difference itself.
    ///
    /// A difference with no line of its own (a charge or refund the bill lacks, a charge
    /// with no outcome in the bill's period) cites the bill (its id and the file's hash)
    /// and the difference: `bill:<bill id>:<file hash>:difference:<id>`.
    pub fn cause(&self) -> String {
        let short = |sha: &str| sha[..sha.len().min(16)].to_owned();
        match (self.bill_line_id, self.line_no, &self.line_sha256) {
            (Some(id), Some(no), Some(sha)) => format!("bill_line:{id}:{no}:{}", short(sha)),
            _ => format!("bill:{}:{}:difference:{}", self.bill_id, short(&self.bill_sha256), self.id),
        }
    }
}

const COLUMNS: &str = "d.id, d.reconciliation_id, rc.bill_id, b.file_sha256 AS bill_sha256, d.provider, d.fact_key, d.class, d.bill_line_id, l.line_no, \
     l.line_sha256, COALESCE(l.trade_no, c.trade_no) AS trade_no, COALESCE(l.order_no, c.order_no) AS order_no, \
     COALESCE(l.refund_no, r.request_no) AS refund_no, d.charge_id, d.refund_id, d.order_id, d.amount_minor, \
     d.bill_amount_minor, d.state, d.outcome, d.created_at_ms, d.updated_at_ms";
const FROM: &str = "bill_differences d JOIN reconciliations rc ON rc.id = d.reconciliation_id \
     JOIN bills b ON b.id = rc.bill_id LEFT JOIN bill_lines l ON l.id = d.bill_line_id \
     LEFT JOIN charges c ON c.id = d.charge_id LEFT JOIN refunds r ON r.id = d.refund_id";

pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<DifferenceRow>> {
    let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE d.id = $1");
    let row = sqlx::query_as::<_, Record>(&sql).bind(id).fetch_optional(conn).await?;
    row.map(TryInto::try_into).transpose()
}

/// Reads the difference holding its row lock, so two repairs of it queue.
pub async fn lock(tx: &mut Tx, id: i64) -> Result<Option<DifferenceRow>> {
    let lock = format!("SELECT id FROM bill_differences WHERE id = $1{}", tx.dialect().for_update());
    if sqlx::query_scalar::<_, i64>(&lock).bind(id).fetch_optional(&mut **tx).await?.is_none() {
        return Ok(None);
    }
    let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE d.id = $1");
    let row = sqlx::query_as::<_, Record>(&sql).bind(id).fetch_optional(&mut **tx).await?;
    row.map(TryInto::try_into).transpose()
}

/// The reconciliation's differences, in the order found, after `after_id`.
pub async fn by_reconciliation(
    conn: &mut Conn,
    reconciliation_id: i64,
    after_id: i64,
    limit: i64,
) -> Result<Vec<DifferenceRow>> {
    let sql =
        format!("SELECT {COLUMNS} FROM {FROM} WHERE d.reconciliation_id = $1 AND d.id > $2 ORDER BY d.id LIMIT $3");
    let rows =
        sqlx::query_as::<_, Record>(&sql).bind(reconciliation_id).bind(after_id).bind(limit).fetch_all(conn).await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// Ids of the reconciliation's differences still waiting for their repair.
pub async fn pending(tx: &mut Tx, reconciliation_id: i64) -> Result<Vec<i64>> {
    let ids = sqlx::query_scalar::<_, i64>(
        "SELECT id FROM bill_differences WHERE reconciliation_id = $1 AND state = 'pending' ORDER BY id",
    )
    .bind(reconciliation_id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(ids)
}

/// Ends a pending difference (or moves one a person has to resolved). Returns false when
/// it was not in a state that allows it (already settled by an earlier run).
pub async fn settle(tx: &mut Tx, id: i64, state: DifferenceState, outcome: &str, now_ms: i64) -> Result<bool> {
    if state == DifferenceState::Pending {
        return Err(StoreError::Invariant("a difference is never settled back to pending".into()));
    }
    let changed = sqlx::query(
        "UPDATE bill_differences SET state = $1, outcome = $2, updated_at_ms = $3 \
         WHERE id = $4 AND state IN ('pending', 'attention')",
    )
    .bind(state.as_str())
    .bind(outcome)
    .bind(now_ms)
    .bind(id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

/// Counts of a reconciliation's differences by class and state, as they stand now.
pub async fn counts(conn: &mut Conn, reconciliation_id: i64) -> Result<Vec<(Class, DifferenceState, i64)>> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT class, state, COUNT(*) FROM bill_differences WHERE reconciliation_id = $1 GROUP BY class, state",
    )
    .bind(reconciliation_id)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(class, state, n)| {
            let class = Class::parse(&class).ok_or_else(|| StoreError::Corrupt(format!("difference class {class}")))?;
            let state = DifferenceState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("difference state {state}")))?;
            Ok((class, state, n))
        })
        .collect()
}

#[derive(sqlx::FromRow)]
struct Record {
    id: i64,
    reconciliation_id: i64,
    bill_id: i64,
    bill_sha256: String,
    provider: String,
    fact_key: String,
    class: String,
    bill_line_id: Option<i64>,
    line_no: Option<i64>,
    line_sha256: Option<String>,
    trade_no: Option<String>,
    order_no: Option<String>,
    refund_no: Option<String>,
    charge_id: Option<i64>,
    refund_id: Option<String>,
    order_id: Option<String>,
    amount_minor: i64,
    bill_amount_minor: i64,
    state: String,
    outcome: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

impl TryFrom<Record> for DifferenceRow {
    type Error = StoreError;
    fn try_from(r: Record) -> Result<DifferenceRow> {
        Ok(DifferenceRow {
            class: Class::parse(&r.class)
                .ok_or_else(|| StoreError::Corrupt(format!("difference class {}", r.class)))?,
            state: DifferenceState::parse(&r.state)
                .ok_or_else(|| StoreError::Corrupt(format!("difference state {}", r.state)))?,
            id: r.id,
            reconciliation_id: r.reconciliation_id,
            bill_id: r.bill_id,
            bill_sha256: r.bill_sha256,
            provider: r.provider,
            fact_key: r.fact_key,
            bill_line_id: r.bill_line_id,
            line_no: r.line_no,
            line_sha256: r.line_sha256,
            trade_no: r.trade_no,
            order_no: r.order_no,
            refund_no: r.refund_no,
            charge_id: r.charge_id,
            refund_id: r.refund_id,
            order_id: r.order_id,
            amount_minor: r.amount_minor,
            bill_amount_minor: r.bill_amount_minor,
            outcome: r.outcome,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
        })
    }
}
