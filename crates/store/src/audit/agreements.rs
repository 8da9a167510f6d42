//! Agreements (issue 11): no charge under an agreement created or captured after its
//! termination was committed unless it is refunded (or being refunded); no charge created
//! while the agreement was on hold; every terminating agreement has its unsign job queued
//! or with a person; and every agreement's state is the fold of its timeline.

use super::{sql_check, Check};
use crate::agreements::timeline::{self, AgreementEventRow};
use crate::agreements::{self, UNSIGN_JOB_KIND};
use crate::{Conn, Result};

/// Agreements read per page by the per-agreement checks.
const PAGE_ROWS: i64 = 500;

pub(super) async fn checks(c: &mut Conn) -> Result<Vec<Check>> {
    // Statuses in which the money is back with the user, or on its way back, or never
    // came (an order created after the commit that expired unpaid took nothing).
    let after_termination = sql_check(
        c,
        "agreement_no_charge_after_termination",
        "no order under an agreement was created or paid after its termination was committed, unless it is \
         refunded or being refunded (or expired unpaid)",
        "SELECT o.order_no FROM orders o JOIN agreements a ON a.id = o.agreement_id \
         WHERE a.termination_committed_at_ms IS NOT NULL AND ( \
             (o.created_at_ms >= a.termination_committed_at_ms \
                 AND o.status NOT IN ('expired', 'refund_due', 'refunding', 'refunded')) \
          OR (o.paid_at_ms IS NOT NULL AND o.paid_at_ms >= a.termination_committed_at_ms \
                 AND o.status NOT IN ('refund_due', 'refunding', 'refunded')))",
        &[],
    )
    .await?;
    let unsign = sql_check(
        c,
        "agreement_terminating_has_unsign_job",
        "every terminating agreement has its unsign job queued, or ended in attention (with a person)",
        &format!(
            "SELECT a.id FROM agreements a WHERE a.state = 'terminating' AND NOT EXISTS ( \
                 SELECT 1 FROM jobs j WHERE j.dedupe_key = '{UNSIGN_JOB_KIND}:' || a.id \
                     AND j.state IN ('queued', 'attention'))"
        ),
        &[],
    )
    .await?;
    let mut held = Check::new(
        "agreement_no_charge_while_held",
        "no order under an agreement was created while the agreement was on a security hold",
    );
    let mut fold = Check::new(
        "agreement_state_is_fold",
        "every agreement's state, and its termination time, are the fold of its timeline",
    );
    let mut after = String::new();
    loop {
        let page = agreement_ids(c, &after).await?;
        let Some(last) = page.last() else { break };
        after = last.clone();
        for id in page {
            let Some(row) = agreements::get(c, &id).await? else { continue };
            let events = timeline::list(c, &id).await?;
            match timeline::fold(&events) {
                Ok(Some(state)) if state == row.state => {}
                Ok(state) => {
                    fold.violation(format!("agreement {id}: stored {:?}, timeline folds to {state:?}", row.state))
                }
                Err(e) => fold.violation(format!("agreement {id}: {e}")),
            }
            // The termination time the checks above (and the paid path) trust is the
            // sealed timeline's, so nulling or moving the column is caught here.
            let committed = events
                .iter()
                .find(|e| matches!(e.kind.as_str(), "termination_committed" | "unsign_confirmed" | "provider_unsigned"))
                .map(|e| e.at_ms);
            if committed != row.termination_committed_at_ms {
                fold.violation(format!(
                    "agreement {id}: termination committed at {:?}, its timeline says {committed:?}",
                    row.termination_committed_at_ms
                ));
            }
            let holds = hold_intervals(&events);
            if holds.is_empty() {
                continue;
            }
            for (order_no, created_at_ms) in orders_of(c, &id).await? {
                if holds.iter().any(|(from, until)| (*from..*until).contains(&created_at_ms)) {
                    held.violation(format!("order {order_no}: created while agreement {id} was on hold"));
                }
            }
        }
    }
    Ok(vec![after_termination, unsign, held, fold])
}

/// The times the agreement was on hold: from each `hold_placed` to the earlier of its
/// hold's unlock time and the next `hold_released` (or the end of the agreement's
/// charges, a termination).
fn hold_intervals(events: &[AgreementEventRow]) -> Vec<(i64, i64)> {
    let mut intervals = Vec::new();
    for (i, e) in events.iter().enumerate().filter(|(_, e)| e.kind == "hold_placed") {
        let until = e.data.pointer("/hold/until_ms").and_then(|v| v.as_i64()).unwrap_or(i64::MAX);
        let released = events[i + 1..]
            .iter()
            .find(|later| matches!(later.kind.as_str(), "hold_released" | "unsign_confirmed" | "provider_unsigned"))
            .map_or(i64::MAX, |later| later.at_ms);
        intervals.push((e.at_ms, until.min(released)));
    }
    intervals
}

async fn agreement_ids(c: &mut Conn, after: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar::<_, String>("SELECT id FROM agreements WHERE id > $1 ORDER BY id LIMIT $2")
        .bind(after)
        .bind(PAGE_ROWS)
        .fetch_all(c)
        .await?)
}

async fn orders_of(c: &mut Conn, agreement_id: &str) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as::<_, (String, i64)>("SELECT order_no, created_at_ms FROM orders WHERE agreement_id = $1")
        .bind(agreement_id)
        .fetch_all(c)
        .await?)
}
