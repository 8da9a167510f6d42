//! Evidence: every order's payment is a charge, and every charge cites what the provider
//! said (a stored notification, or the provider's signed answer to a query), which
//! verifies again and says the same order, trade, amount and paid time. A payment or
//! charge edited by hand no longer agrees with the provider's signed word, and evidence
//! edited by hand no longer verifies.

use super::{sql_check, Check, Evidenced, Verifier};
use crate::answers;
use crate::{Conn, Result};
use serde_json::Value;

/// The migration from which a charge learned by asking the provider keeps the provider's
/// signed answer. Charges recorded before it cite only the job that asked.
const ANSWERS_KEPT_SINCE_VERSION: i64 = 6;
/// Charges checked per page (each reads its evidence), to bound memory.
const CHARGE_PAGE: i64 = 500;
/// How much of a reported order number a charge keeps (see `charges::insert_new`).
const ORDER_NO_CHARS_MAX: usize = 128;

pub(super) async fn checks(c: &mut Conn, verifier: Option<&dyn Verifier>) -> Result<Vec<Check>> {
    let is_payment = sql_check(
        &mut *c,
        "charge_is_payment",
        "every order's payment is a charge of class matched or late with its trade, order, amount and paid time, \
         and every such charge is a payment",
        "SELECT p.trade_no FROM payments p WHERE NOT EXISTS (SELECT 1 FROM charges c WHERE c.provider = p.provider \
           AND c.trade_no = p.trade_no AND c.order_id = p.order_id AND c.amount_minor = p.amount_minor \
           AND c.currency = p.currency AND c.class IN ('matched', 'late') \
           AND (c.paid_at_ms = p.paid_at_ms OR (c.paid_at_ms IS NULL AND p.paid_at_ms IS NULL))) \
         UNION ALL \
         SELECT c.trade_no FROM charges c WHERE c.class IN ('matched', 'late') AND NOT EXISTS \
           (SELECT 1 FROM payments p WHERE p.provider = c.provider AND p.trade_no = c.trade_no)",
        &[],
    )
    .await?;
    Ok(vec![is_payment, matches_evidence(c, verifier).await?])
}

/// A `charges` row as this check reads it.
#[derive(sqlx::FromRow)]
struct ChargeRecord {
    id: i64,
    provider: String,
    trade_no: String,
    order_no: String,
    amount_minor: i64,
    currency: String,
    paid_at_ms: Option<i64>,
    /// JSON text.
    evidence: String,
    recorded_at_ms: i64,
}

/// The `notifications` columns this check reads.
#[derive(sqlx::FromRow)]
struct NotificationRecord {
    provider: String,
    order_no: Option<String>,
    trade_no: Option<String>,
    headers: String,
    body: Vec<u8>,
}

async fn matches_evidence(c: &mut Conn, verifier: Option<&dyn Verifier>) -> Result<Check> {
    let mut check = Check::new(
        "charge_matches_evidence",
        "every charge cites the provider's evidence (a stored notification or signed answer), which verifies, and \
         its order, trade number, amount and paid time equal the evidence's",
    );
    let since = answers_kept_since(c, &mut check).await?;
    let mut after = 0;
    loop {
        let page = sqlx::query_as::<_, ChargeRecord>(
            "SELECT id, provider, trade_no, order_no, amount_minor, currency, paid_at_ms, evidence, recorded_at_ms \
             FROM charges WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(CHARGE_PAGE)
        .fetch_all(&mut *c)
        .await?;
        let Some(last) = page.last().map(|ch| ch.id) else { return Ok(check) };
        for charge in &page {
            if let Some(problem) = problem(c, verifier, charge, since).await? {
                check.violation(format!("trade {} (order {}): {problem}", charge.trade_no, charge.order_no));
            }
        }
        after = last;
    }
}

/// How far apart two processes' clocks may be: the process that migrated stamped the
/// cutoff, another (on another host) may stamp the first answer a little earlier.
const CLOCK_SKEW_MS_MAX: i64 = 60_000;

/// When the database began keeping provider answers (and no later than the first answer
/// kept). A cutoff moved by hand well past the first answer (to excuse forged charges as
/// old ones) is itself a violation.
async fn answers_kept_since(c: &mut Conn, check: &mut Check) -> Result<i64> {
    let since = sqlx::query_scalar::<_, i64>("SELECT applied_at_ms FROM schema_migrations WHERE version = $1")
        .bind(ANSWERS_KEPT_SINCE_VERSION)
        .fetch_optional(&mut *c)
        .await?
        .unwrap_or(i64::MIN);
    let first = sqlx::query_scalar::<_, Option<i64>>("SELECT MIN(received_at_ms) FROM provider_answers")
        .fetch_one(&mut *c)
        .await?;
    match first {
        Some(first) if first < since.saturating_sub(CLOCK_SKEW_MS_MAX) => {
            check.violation(format!(
                "schema_migrations: answers kept since {since}, yet one was received at {first} (edited by hand?)"
            ));
            Ok(first)
        }
        Some(first) => Ok(first.min(since)),
        None => Ok(since),
    }
}

/// What a charge's evidence field cites.
enum Cited {
    Notification(i64),
    Answer(i64),
    Nothing,
}

fn cited(evidence: &Value) -> Cited {
    if let Some(id) = evidence.get("answer_id").and_then(Value::as_i64) {
        return Cited::Answer(id);
    }
    let notification = evidence.get("cause").and_then(Value::as_str).and_then(|c| c.strip_prefix("notification:"));
    match notification.and_then(|id| id.parse().ok()) {
        Some(id) => Cited::Notification(id),
        None => Cited::Nothing,
    }
}

async fn problem(
    c: &mut Conn,
    verifier: Option<&dyn Verifier>,
    charge: &ChargeRecord,
    since: i64,
) -> Result<Option<String>> {
    let evidence: Value = serde_json::from_str(&charge.evidence).unwrap_or(Value::Null);
    match cited(&evidence) {
        Cited::Notification(id) => {
            let row = sqlx::query_as::<_, NotificationRecord>(
                "SELECT provider, order_no, trade_no, headers, body FROM notifications WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
            let Some(n) = row else { return Ok(Some(format!("cites notification {id}, which does not exist"))) };
            let stored = Evidenced {
                order_no: n.order_no.clone().unwrap_or_default(),
                trade_no: n.trade_no.clone(),
                ..Evidenced::default()
            };
            let what = format!("notification {id}");
            if let Some(problem) = stored_differs(charge, &n.provider, &stored, &what) {
                return Ok(Some(problem));
            }
            let Some(verifier) = verifier else { return Ok(None) };
            Ok(match verifier.notification(&n.provider, &n.headers, &n.body) {
                Ok(said) => differs(charge, &said, &what),
                Err(why) => Some(format!("{what} does not verify: {why}")),
            })
        }
        Cited::Answer(id) => {
            let Some(answer) = answers::get(c, id).await? else {
                return Ok(Some(format!("cites provider answer {id}, which does not exist")));
            };
            let stored = Evidenced {
                order_no: answer.order_no.clone(),
                trade_no: answer.trade_no.clone(),
                ..Evidenced::default()
            };
            let what = format!("provider answer {id}");
            if let Some(problem) = stored_differs(charge, &answer.provider, &stored, &what) {
                return Ok(Some(problem));
            }
            let Some(verifier) = verifier else { return Ok(None) };
            Ok(match verifier.answer(&answer) {
                Ok(said) => differs(charge, &said, &what),
                Err(why) => Some(format!("{what} does not verify: {why}")),
            })
        }
        // Recorded before answers were kept: it cites the job that asked, and no more.
        Cited::Nothing if charge.recorded_at_ms < since => Ok(None),
        Cited::Nothing => Ok(Some(format!("cites no evidence ({evidence})"))),
    }
}

/// Compares the cited row's own columns (provider, order, trade) with the charge's.
fn stored_differs(charge: &ChargeRecord, provider: &str, stored: &Evidenced, what: &str) -> Option<String> {
    if provider != charge.provider {
        return Some(format!("{what} came from {provider}, the charge from {}", charge.provider));
    }
    let order_no: String = stored.order_no.chars().take(ORDER_NO_CHARS_MAX).collect();
    if order_no != charge.order_no || stored.trade_no.as_deref() != Some(charge.trade_no.as_str()) {
        return Some(format!("{what} is about order {order_no}, trade {:?}", stored.trade_no));
    }
    None
}

/// Compares what the verified evidence says with the charge.
fn differs(charge: &ChargeRecord, said: &Evidenced, what: &str) -> Option<String> {
    let mut differ = Vec::new();
    let order_no: String = said.order_no.chars().take(ORDER_NO_CHARS_MAX).collect();
    if order_no != charge.order_no {
        differ.push(format!("order {order_no}"));
    }
    if said.trade_no.as_deref() != Some(charge.trade_no.as_str()) {
        differ.push(format!("trade {:?}", said.trade_no));
    }
    if said.amount_minor != Some(charge.amount_minor) || said.currency.as_deref() != Some(charge.currency.as_str()) {
        differ.push(format!(
            "amount {:?} {:?} (the charge says {})",
            said.amount_minor, said.currency, charge.amount_minor
        ));
    }
    if said.paid_at_ms != charge.paid_at_ms {
        differ.push(format!("paid at {:?} (the charge says {:?})", said.paid_at_ms, charge.paid_at_ms));
    }
    (!differ.is_empty()).then(|| format!("{what} says {}", differ.join(", ")))
}
