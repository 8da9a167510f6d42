//! `zerodrop audit`: checks the whole database against the invariants the promise rests
//! on. Each check counts its violations and keeps a few examples for the report.

use crate::{events, Result, Store};
use serde::Serialize;
use zerodrop_domain::order::OrderStatus;

/// Examples kept per check; the count is always complete.
pub const EXAMPLES_MAX: usize = 5;
/// Orders folded per page when checking status against events, to bound memory.
const FOLD_PAGE_ORDERS: i64 = 2_000;

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub description: &'static str,
    pub violations: i64,
    pub examples: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub checked_at_ms: i64,
    pub checks: Vec<Check>,
    /// Attention items open, within their clock or not (those past it are violations).
    pub attention_open: i64,
    pub attention_overdue: i64,
    /// Charges by class: (class, count, total in minor units).
    pub charges: Vec<(String, i64, i64)>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.violations == 0)
    }

    pub fn violations(&self) -> i64 {
        self.checks.iter().map(|c| c.violations).sum()
    }
}

pub struct AuditOptions {
    /// A parked notification older than this without an attention item is a violation.
    pub parked_age_ms_max: i64,
    /// A paid order may be this long past its delivery deadline while its deadline job
    /// runs (jobs are polled, and may queue behind others).
    pub deadline_grace_ms: i64,
    /// A refund may stay unsettled this long (the refund job's own bound, plus slack);
    /// past it, an unknown refund must be with a person in time.
    pub refund_unsettled_ms_max: i64,
    /// A charge for an unknown order may wait this long for its order before its refund.
    pub park_window_ms: i64,
}

impl AuditOptions {
    pub fn new(parked_age_ms_max: i64) -> AuditOptions {
        AuditOptions {
            parked_age_ms_max,
            deadline_grace_ms: 120_000,
            refund_unsettled_ms_max: 4 * 86_400_000,
            park_window_ms: 2_700_000,
        }
    }
}

/// Placeholders: SQLite numbers `$N` parameters in the order they first appear, so
/// every check's SQL names `$1` before `$2`.
///
/// Runs every check in one read snapshot, so checks that compare two tables (an order
/// and its events, a payment and its delivery) never see a change half made by a
/// transaction that commits while the audit runs.
pub async fn run(store: &Store, options: &AuditOptions, now_ms: i64) -> Result<Report> {
    let mut snapshot = store.snapshot().await?;
    let c = &mut *snapshot;
    let mut checks = Vec::new();

    let open_in_clock = |on: &str| {
        format!(
            "EXISTS (SELECT 1 FROM attention_items a WHERE {on} AND a.resolved_at_ms IS NULL AND a.due_at_ms >= $1)"
        )
    };
    checks.push(
        sql_check(
            c,
            "payment_has_outcome",
            "every captured payment is delivered, or its money owed, going or gone back, or still within its \
             delivery deadline, or with a person whose clock has not run out",
            &format!(
                "SELECT o.order_no FROM payments p JOIN orders o ON o.id = p.order_id \
                 WHERE o.status NOT IN ('delivered', 'refund_due', 'refunding', 'refunded') \
                   AND NOT {} AND NOT (o.status = 'paid' AND o.deliver_by_ms > $2)",
                open_in_clock("a.order_id = o.id")
            ),
            &[now_ms, now_ms - options.deadline_grace_ms],
        )
        .await?,
    );
    checks.push(
        sql_check(
            c,
            "charge_has_outcome",
            "every charge that is not an order's payment is going or gone back in full, or with a person whose \
             clock has not run out, or (for an unknown order) still inside its park window",
            &format!(
                "SELECT c.class || ' ' || c.trade_no FROM charges c WHERE c.class NOT IN ('matched', 'late') \
                   AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.charge_id = c.id AND r.state <> 'failed') \
                   AND NOT {} AND NOT (c.class = 'unknown_order' AND c.recorded_at_ms > $2)",
                open_in_clock("a.charge_id = c.id")
            ),
            &[now_ms, now_ms - options.park_window_ms - options.deadline_grace_ms],
        )
        .await?,
    );
    checks.push(
        sql_check(
            c,
            "charge_is_payment",
            "every order's payment is a charge of class matched or late with its trade, order and amount, and \
             every such charge is a payment",
            "SELECT p.trade_no FROM payments p WHERE NOT EXISTS (SELECT 1 FROM charges c WHERE c.provider = p.provider \
               AND c.trade_no = p.trade_no AND c.order_id = p.order_id AND c.amount_minor = p.amount_minor \
               AND c.class IN ('matched', 'late')) \
             UNION ALL \
             SELECT c.trade_no FROM charges c WHERE c.class IN ('matched', 'late') AND NOT EXISTS \
               (SELECT 1 FROM payments p WHERE p.provider = c.provider AND p.trade_no = c.trade_no)",
            &[],
        )
        .await?,
    );
    checks.push(
        sql_check(
            c,
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
            c,
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
            c,
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
            c,
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
            c,
            "one_grant_per_order",
            "no order credited a wallet or extended a membership more than once, or both",
            "SELECT order_id FROM ( \
                 SELECT order_id FROM ledger_transfers WHERE id LIKE 'order:%:credit' \
                 UNION ALL SELECT order_id FROM membership_periods) grants \
             GROUP BY order_id HAVING COUNT(*) > 1",
            &[],
        )
        .await?,
    );
    checks.push(
        sql_check(
            c,
            "grant_matches_delivery",
            "every currency or membership delivery has its grant, and every grant belongs to a delivery",
            "SELECT d.order_id FROM deliveries d \
             WHERE d.kind IN ('currency_pack', 'membership') \
               AND NOT EXISTS (SELECT 1 FROM ledger_transfers t WHERE t.id = 'order:' || d.order_id || ':credit') \
               AND NOT EXISTS (SELECT 1 FROM membership_periods m WHERE m.order_id = d.order_id) \
             UNION ALL \
             SELECT t.order_id FROM ledger_transfers t WHERE t.id LIKE 'order:%:credit' \
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.order_id = t.order_id) \
             UNION ALL \
             SELECT m.order_id FROM membership_periods m \
               WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.order_id = m.order_id)",
            &[],
        )
        .await?,
    );
    checks.push(
        sql_check(
            c,
            "refunds_within_payment",
            "refunds (requested, processing, unknown or done) never exceed the charge they return",
            "SELECT c.trade_no FROM charges c WHERE (SELECT COALESCE(SUM(r.amount_minor), 0) FROM refunds r \
               WHERE r.charge_id = c.id AND r.state <> 'failed') > c.amount_minor \
             UNION ALL \
             SELECT o.order_no FROM orders o JOIN payments p ON p.order_id = o.id \
             WHERE (SELECT COALESCE(SUM(r.amount_minor), 0) FROM refunds r \
                    WHERE r.order_id = o.id AND r.charge_id IS NULL AND r.state <> 'failed') > p.amount_minor",
            &[],
        )
        .await?,
    );
    checks.push(
        sql_check(
            c,
            "refund_has_payment",
            "every refund returns a recorded charge",
            "SELECT r.request_no FROM refunds r LEFT JOIN charges c ON c.id = r.charge_id \
             LEFT JOIN payments p ON p.order_id = r.order_id WHERE c.id IS NULL AND p.id IS NULL",
            &[],
        )
        .await?,
    );
    checks.push(
        sql_check(
            c,
            "refund_settles_in_time",
            "no refund is still unsettled after its bound unless it is unknown and with a person in time",
            &format!(
                "SELECT r.request_no FROM refunds r WHERE r.state IN ('requested', 'processing', 'unknown') \
                   AND NOT {} AND r.created_at_ms < $2",
                open_in_clock("a.reason = 'refund_unknown' AND (a.order_id = r.order_id OR a.charge_id = r.charge_id)")
            ),
            &[now_ms, now_ms - options.refund_unsettled_ms_max],
        )
        .await?,
    );
    checks.push(
        sql_check(
            c,
            "card_key_delivered_once",
            "every card-key delivery holds exactly one key, and no key serves two orders",
            "SELECT d.order_id FROM deliveries d WHERE d.kind = 'card_key' \
               AND (SELECT COUNT(*) FROM card_keys k WHERE k.order_id = d.order_id) <> 1 \
             UNION ALL \
             SELECT order_id FROM card_keys WHERE order_id IS NOT NULL GROUP BY order_id HAVING COUNT(*) > 1",
            &[],
        )
        .await?,
    );
    checks.push(
        sql_check(
            c,
            "ledger_sums_to_zero",
            "per currency, all account balances sum to zero",
            "SELECT currency FROM ledger_accounts GROUP BY currency HAVING SUM(balance) <> 0",
            &[],
        )
        .await?,
    );
    checks.push(
        sql_check(
            c,
            "balance_equals_entries",
            "every account's balance equals the sum of its entries",
            "SELECT a.id FROM ledger_accounts a \
             WHERE a.balance <> COALESCE((SELECT SUM(e.amount) FROM ledger_entries e WHERE e.account_id = a.id), 0)",
            &[],
        )
        .await?,
    );
    checks.push(
        sql_check(
            c,
            "transfer_balanced",
            "every transfer has exactly two entries that cancel out",
            "SELECT t.id FROM ledger_transfers t \
             WHERE (SELECT COUNT(*) FROM ledger_entries e WHERE e.transfer_id = t.id) <> 2 \
                OR (SELECT SUM(e.amount) FROM ledger_entries e WHERE e.transfer_id = t.id) <> 0",
            &[],
        )
        .await?,
    );
    checks.push(
        sql_check(
            c,
            "no_negative_wallet",
            "no user wallet is below zero",
            "SELECT id FROM ledger_accounts WHERE kind = 'wallet' AND balance < 0",
            &[],
        )
        .await?,
    );
    checks.push(status_is_fold(c).await?);
    checks.push(
        sql_check(
            c,
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
            c,
            "exhausted_jobs_seen",
            "every job that exhausted its attempts is in front of a person (its order flagged, or an item raised)",
            "SELECT CAST(j.id AS TEXT) FROM jobs j WHERE j.state = 'attention' AND NOT EXISTS \
               (SELECT 1 FROM attention_items a WHERE a.job_id = j.id OR (j.order_id IS NOT NULL AND a.order_id = j.order_id))",
            &[],
        )
        .await?,
    );

    let attention_open = crate::attention::count_open(&mut *c).await?;
    let attention_overdue = crate::attention::count_overdue(&mut *c, now_ms).await?;
    let charges = crate::charges::count_by_class(&mut *c).await?;
    Ok(Report { checked_at_ms: now_ms, checks, attention_open, attention_overdue, charges })
}

async fn sql_check(
    conn: &mut crate::Conn,
    name: &'static str,
    description: &'static str,
    sql: &str,
    params: &[i64],
) -> Result<Check> {
    // Each check selects one text column naming the offending row (NULL shows as empty).
    let mut query = sqlx::query_scalar::<_, Option<String>>(sql);
    for p in params {
        query = query.bind(*p);
    }
    let rows = query.fetch_all(conn).await?;
    let violations = rows.len() as i64;
    let examples = rows.into_iter().take(EXAMPLES_MAX).map(Option::unwrap_or_default).collect();
    Ok(Check { name, description, violations, examples })
}

/// Every order's stored status and attention flag equal the fold of its events, and its
/// event counter equals the number of events.
async fn status_is_fold(conn: &mut crate::Conn) -> Result<Check> {
    let mut violations = 0;
    let mut examples = Vec::new();
    let mut after = String::new();
    loop {
        let orders = sqlx::query_as::<_, FoldRecord>(
            "SELECT id, order_no, status, attention, event_seq FROM orders WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(&after)
        .bind(FOLD_PAGE_ORDERS)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last_id) = orders.last().map(|o| o.id.clone()) else { break };
        let events = sqlx::query_as::<_, (String, String)>(
            "SELECT order_id, kind FROM order_events WHERE order_id > $1 AND order_id <= $2 ORDER BY order_id, seq",
        )
        .bind(&after)
        .bind(&last_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut kinds_by_order: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
        for (order_id, kind) in events {
            kinds_by_order.entry(order_id).or_default().push(kind);
        }
        for FoldRecord { id, order_no, status, attention, event_seq: seq } in orders {
            let attention = attention != 0;
            let kinds = kinds_by_order.remove(&id).unwrap_or_default();
            let folded = events::fold_kinds(&kinds);
            let ok = match &folded {
                Ok(Some(state)) => {
                    Some(state.status) == OrderStatus::parse(&status)
                        && state.attention == attention
                        && seq == kinds.len() as i64
                }
                Ok(None) | Err(_) => false,
            };
            if !ok {
                violations += 1;
                if examples.len() < EXAMPLES_MAX {
                    examples.push(format!("{order_no}: stored {status}, events fold to {folded:?}"));
                }
            }
        }
        after = last_id;
    }
    Ok(Check {
        name: "status_is_fold",
        description: "every order's status equals the fold of its events",
        violations,
        examples,
    })
}

/// The `orders` columns [`status_is_fold`] compares with the fold of the order's events.
#[derive(sqlx::FromRow)]
struct FoldRecord {
    id: String,
    order_no: String,
    status: String,
    /// A boolean stored as INTEGER 0/1.
    attention: i64,
    event_seq: i64,
}
