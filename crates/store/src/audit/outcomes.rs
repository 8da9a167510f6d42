//! Outcomes: every captured payment and every charge reaches its outcome (delivered, or
//! its money going or gone back), or is with a person whose clock has not run out.

use super::{sql_check, AuditOptions, Check};
use crate::{outcome, Conn, Result};

pub(super) async fn checks(c: &mut Conn, options: &AuditOptions, now_ms: i64) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    // The outcome of a charge is defined once (`crate::outcome`); these checks find the
    // payments and charges that have none.
    checks.push(
        sql_check(
            &mut *c,
            "payment_has_outcome",
            "every captured payment is delivered, or its money owed, going or gone back, or still within its \
             delivery deadline, or with a person whose clock has not run out",
            &format!(
                "SELECT o.order_no FROM payments p JOIN orders o ON o.id = p.order_id WHERE ({}) = 'none'",
                outcome::order_payment_sql("$1", "$2")
            ),
            &[now_ms, now_ms - options.deadline_grace_ms],
        )
        .await?,
    );
    checks.push(
        sql_check(
            &mut *c,
            "charge_has_outcome",
            "every charge that is not an order's payment is going or gone back in full, or with a person whose \
             clock has not run out, or (for an unknown order) still inside its park window",
            &format!(
                "SELECT c.class || ' ' || c.trade_no FROM charges c WHERE c.class NOT IN ('matched', 'late') \
                   AND ({}) = 'none'",
                outcome::charge_refund_sql("$1", "$2")
            ),
            &[now_ms, now_ms - options.park_window_ms - options.deadline_grace_ms],
        )
        .await?,
    );
    checks.push(
        sql_check(
            &mut *c,
            "attention_ended_by_action",
            "every resolved attention item was ended by a recorded action in the append-only log",
            "SELECT CAST(a.id AS TEXT) || ' ' || a.reason FROM attention_items a WHERE a.resolved_at_ms IS NOT NULL \
               AND NOT EXISTS (SELECT 1 FROM operator_actions x WHERE x.item_id = a.id AND x.action <> 'assign')",
            &[],
        )
        .await?,
    );
    checks.push(
        sql_check(
            &mut *c,
            "attention_in_time",
            "no attention item is still open past its due time",
            "SELECT CAST(id AS TEXT) || ' ' || reason || ' overdue by ' || CAST(($1 - due_at_ms) / 60000 AS TEXT) \
                 || ' min' FROM attention_items WHERE resolved_at_ms IS NULL AND due_at_ms < $1",
            &[now_ms],
        )
        .await?,
    );
    checks.push(
        sql_check(
            &mut *c,
            "outcome_has_payment",
            "every paid, delivered or refunded order has exactly one captured payment",
            "SELECT o.order_no FROM orders o LEFT JOIN payments p ON p.order_id = o.id \
             WHERE o.status IN ('paid', 'delivered', 'refund_due', 'refunding', 'refunded') AND p.id IS NULL",
            &[],
        )
        .await?,
    );
    checks.push(
        sql_check(
            &mut *c,
            "delivered_exactly_once",
            "a delivered order has one delivery; an order with a delivery is delivered or being refunded",
            "SELECT o.order_no FROM orders o LEFT JOIN deliveries d ON d.order_id = o.id \
             WHERE (o.status = 'delivered' AND d.order_id IS NULL) \
                OR (d.order_id IS NOT NULL AND o.status NOT IN ('delivered', 'refund_due', 'refunding', 'refunded'))",
            &[],
        )
        .await?,
    );
    checks.push(
        sql_check(
            &mut *c,
            "refund_settles_in_time",
            "no refund is still unsettled after its bound unless it is unknown and with a person in time",
            &format!(
                "SELECT r.request_no FROM refunds r WHERE r.state IN ('requested', 'processing', 'unknown') \
                   AND NOT {} AND r.created_at_ms < $2",
                outcome::open_in_clock(
                    "a.reason = 'refund_unknown' AND (a.order_id = r.order_id OR a.charge_id = r.charge_id)",
                    "$1"
                )
            ),
            &[now_ms, now_ms - options.refund_unsettled_ms_max],
        )
        .await?,
    );
    checks.push(
        sql_check(
            &mut *c,
            "parked_not_forgotten",
            "no parked notification is older than its limit without being in front of a person",
            "SELECT CAST(n.id AS TEXT) FROM notifications n WHERE n.verdict = 'parked' AND n.received_at_ms < $1 \
               AND NOT EXISTS (SELECT 1 FROM attention_items a WHERE a.notification_id = n.id)",
            &[now_ms - options.parked_age_ms_max],
        )
        .await?,
    );
    checks.push(
        sql_check(
            &mut *c,
            "exhausted_jobs_seen",
            "every job that exhausted its attempts is in front of a person (its order flagged, or an item raised)",
            "SELECT CAST(j.id AS TEXT) FROM jobs j WHERE j.state = 'attention' AND NOT EXISTS \
               (SELECT 1 FROM attention_items a WHERE a.job_id = j.id OR (j.order_id IS NOT NULL AND a.order_id = j.order_id))",
            &[],
        )
        .await?,
    );

    Ok(checks)
}
