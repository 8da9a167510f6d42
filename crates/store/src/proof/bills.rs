//! Ties a proof's charges to the provider's bills imported for its period: each bill
//! overlapping the period with what it states, its reconciliation's summary, and whether
//! zerodrop's charges and refunds over the bill's own range add up to it.

use crate::{Conn, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillsTie {
    /// "no bills were imported for this period", or how many were.
    pub statement: String,
    pub bills: Vec<BillTie>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillTie {
    pub id: i64,
    pub provider: String,
    pub account: String,
    pub file_name: String,
    pub file_sha256: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub currency: String,
    /// What the bill states.
    pub stated: Sums,
    /// What zerodrop holds for the bill's provider and range: charges confirmed in it, and
    /// refunds that succeeded in it.
    pub ours: Sums,
    pub adds_up: bool,
    /// One line per difference, when it does not add up.
    pub differences: Vec<String>,
    /// The reconciliation's summary (JSON as stored), if the bill was reconciled.
    pub reconciliation: Option<serde_json::Value>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sums {
    pub trade_count: i64,
    pub trade_total_minor: i64,
    pub refund_count: i64,
    pub refund_total_minor: i64,
}

/// The bills whose range overlaps `[from_ms, to_ms)`, each tied to zerodrop's records.
pub async fn tie(conn: &mut Conn, from_ms: i64, to_ms: i64) -> Result<BillsTie> {
    let rows = crate::bills::overlapping(&mut *conn, from_ms, to_ms).await?;
    let mut bills = Vec::with_capacity(rows.len());
    for b in rows {
        let (trade_count, trade_total_minor) = sqlx::query_as::<_, (i64, i64)>(
            "SELECT COUNT(*), CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM charges \
             WHERE provider = $1 AND COALESCE(paid_at_ms, recorded_at_ms) >= $2 \
               AND COALESCE(paid_at_ms, recorded_at_ms) < $3",
        )
        .bind(&b.provider)
        .bind(b.from_ms)
        .bind(b.to_ms)
        .fetch_one(&mut *conn)
        .await?;
        let (refund_count, refund_total_minor) = sqlx::query_as::<_, (i64, i64)>(
            "SELECT COUNT(*), CAST(COALESCE(SUM(r.amount_minor), 0) AS BIGINT) FROM refunds r \
             JOIN charges c ON c.id = r.charge_id \
             WHERE c.provider = $1 AND r.state = 'succeeded' AND r.finished_at_ms >= $2 AND r.finished_at_ms < $3",
        )
        .bind(&b.provider)
        .bind(b.from_ms)
        .bind(b.to_ms)
        .fetch_one(&mut *conn)
        .await?;
        let reconciliation = sqlx::query_scalar::<_, String>("SELECT summary FROM reconciliations WHERE bill_id = $1")
            .bind(b.id)
            .fetch_optional(&mut *conn)
            .await?
            .map(|text| serde_json::from_str(&text))
            .transpose()?;
        let stated = Sums {
            trade_count: b.trade_count,
            trade_total_minor: b.trade_total_minor,
            refund_count: b.refund_count,
            refund_total_minor: b.refund_total_minor,
        };
        let ours = Sums { trade_count, trade_total_minor, refund_count, refund_total_minor };
        let differences = differences(&stated, &ours);
        bills.push(BillTie {
            id: b.id,
            provider: b.provider,
            account: b.account,
            file_name: b.file_name,
            file_sha256: b.file_sha256,
            from_ms: b.from_ms,
            to_ms: b.to_ms,
            currency: b.currency,
            stated,
            ours,
            adds_up: differences.is_empty(),
            differences,
            reconciliation,
        });
    }
    let statement = match bills.len() {
        0 => "no bills were imported for this period".to_owned(),
        n => {
            let short = bills.iter().filter(|b| !b.adds_up).count();
            format!("{n} bill(s) overlap this period; {} add up to zerodrop's records, {short} do not", n - short)
        }
    };
    Ok(BillsTie { statement, bills })
}

fn differences(stated: &Sums, ours: &Sums) -> Vec<String> {
    let mut out = Vec::new();
    let mut compare = |what: &str, bill: i64, zerodrop: i64| {
        if bill != zerodrop {
            out.push(format!("{what}: the bill says {bill}, zerodrop has {zerodrop} (difference {})", zerodrop - bill));
        }
    };
    compare("trade count", stated.trade_count, ours.trade_count);
    compare("trade total (minor units)", stated.trade_total_minor, ours.trade_total_minor);
    compare("refund count", stated.refund_count, ours.refund_count);
    compare("refund total (minor units)", stated.refund_total_minor, ours.refund_total_minor);
    out
}
