//! Money: the double-entry ledger balances, each order grants its goods once, and refunds
//! never return more than was paid.

use super::{sql_check, Check};
use crate::{Conn, Result};

pub(super) async fn checks(c: &mut Conn) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    checks.push(
        sql_check(
            &mut *c,
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
            &mut *c,
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
            &mut *c,
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
            &mut *c,
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
            &mut *c,
            "ledger_sums_to_zero",
            "per currency, all account balances sum to zero",
            "SELECT currency FROM ledger_accounts GROUP BY currency HAVING SUM(balance) <> 0",
            &[],
        )
        .await?,
    );
    checks.push(
        sql_check(
            &mut *c,
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
            &mut *c,
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
            &mut *c,
            "no_negative_wallet",
            "no user wallet is below zero",
            "SELECT id FROM ledger_accounts WHERE kind = 'wallet' AND balance < 0",
            &[],
        )
        .await?,
    );
    Ok(checks)
}

/// Transfers read per page when checking their causes.
const TRANSFER_PAGE: i64 = 1_000;

/// The check every transfer's cause is reported under, by this pass and the per-order one.
pub(super) fn transfer_has_cause() -> Check {
    Check::new(
        "transfer_has_cause",
        "every ledger transfer and membership change has a cause that exists and permits it: an order's credit a \
         delivered currency pack, compensation a late delivery, a spend its idempotency record, a refund's \
         movement its refund",
    )
}

/// A `ledger_transfers` row as this pass reads it.
#[derive(sqlx::FromRow)]
struct TransferRecord {
    id: String,
    from_account: String,
    to_account: String,
    currency: String,
    amount: i64,
    order_id: Option<String>,
}

/// Every transfer names its cause by its id: `order:<order>:credit|compensation` (the
/// per-order pass checks what the order permits), `refund:<refund>:…` (the refund exists,
/// for the same order), or `spend:<user>:<key>` (the spend's stored answer under that
/// idempotency key, for this amount, from the user's wallet to a creator or the platform).
/// Any other id is a transfer with no cause.
pub(super) async fn transfer_causes(c: &mut Conn, cause: &mut Check) -> Result<()> {
    let mut after = String::new();
    loop {
        let page = sqlx::query_as::<_, TransferRecord>(
            "SELECT id, from_account, to_account, currency, amount, order_id FROM ledger_transfers \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(&after)
        .bind(TRANSFER_PAGE)
        .fetch_all(&mut *c)
        .await?;
        let Some(last) = page.last().map(|t| t.id.clone()) else { return Ok(()) };
        for t in &page {
            if let Some(problem) = transfer_problem(c, t).await? {
                cause.violation(format!("transfer {} of {} {}: {problem}", t.id, t.amount, t.currency));
            }
        }
        after = last;
    }
}

async fn transfer_problem(c: &mut Conn, t: &TransferRecord) -> Result<Option<String>> {
    if let Some(rest) = t.id.strip_prefix("order:") {
        let names_its_order = rest.rsplit_once(':').is_some_and(|(order, what)| {
            matches!(what, "credit" | "compensation") && t.order_id.as_deref() == Some(order)
        });
        return Ok((!names_its_order).then(|| format!("does not belong to the order it names ({:?})", t.order_id)));
    }
    if let Some(rest) = t.id.strip_prefix("refund:") {
        let Some((refund, "reclaim" | "loss" | "restore" | "loss_reversed")) = rest.rsplit_once(':') else {
            return Ok(Some("not a movement a refund makes".into()));
        };
        let order = sqlx::query_scalar::<_, Option<String>>("SELECT order_id FROM refunds WHERE id = $1")
            .bind(refund)
            .fetch_optional(&mut *c)
            .await?;
        return Ok(match order {
            None => Some(format!("refund {refund} does not exist")),
            Some(order) if order != t.order_id => Some(format!("refund {refund} is of another order")),
            Some(_) => None,
        });
    }
    if let Some(rest) = t.id.strip_prefix("spend:") {
        return spend_problem(c, t, rest).await;
    }
    Ok(Some("no known cause".into()))
}

/// A spend moves units from the user's wallet to a creator or the platform, once per
/// idempotency key, and its stored answer names this transfer and amount.
async fn spend_problem(c: &mut Conn, t: &TransferRecord, rest: &str) -> Result<Option<String>> {
    if t.order_id.is_some() {
        return Ok(Some("a spend names an order".into()));
    }
    let Some(user) = t.from_account.strip_prefix(&format!("wallet:{}:", t.currency)) else {
        return Ok(Some(format!("a spend from {}, not a wallet", t.from_account)));
    };
    let recipient = t.to_account.starts_with(&format!("creator:{}:", t.currency))
        || t.to_account == format!("platform:{}", t.currency);
    if !recipient {
        return Ok(Some(format!("a spend to {}, not a creator or the platform", t.to_account)));
    }
    let Some(key) = rest.strip_prefix(user).and_then(|k| k.strip_prefix(':')) else {
        return Ok(Some(format!("a spend from {user}'s wallet under another user's key")));
    };
    let stored = sqlx::query_scalar::<_, String>("SELECT response FROM idempotency_keys WHERE scope = $1 AND key = $2")
        .bind(format!("spend:{user}"))
        .bind(key)
        .fetch_optional(&mut *c)
        .await?;
    let Some(stored) = stored else { return Ok(Some("no spend request is recorded under its key".into())) };
    let answer: serde_json::Value = serde_json::from_str(&stored).unwrap_or_default();
    let same = answer["transfer_id"].as_str() == Some(t.id.as_str())
        && answer["amount"].as_i64() == Some(t.amount)
        && answer["currency"].as_str() == Some(t.currency.as_str());
    Ok((!same).then(|| "the spend recorded under its key was for another transfer or amount".into()))
}
