//! One charge's entry in the proof: its outcome (as [`crate::outcome`] defines it) and the
//! sealed records that show it: the order's deciding events, the delivery, the refunds,
//! the ledger transfers with their entries, and the attention items that hold it.

use super::{AttentionRef, ChargeRef, DeliveryRef, Entry, EventRef, LedgerEntryRef, OrderRef, RefundRef, TransferRef};
use crate::outcome::{self, Bounds, Outcome};
use crate::seal::stream;
use crate::{Conn, Result, StoreError};

/// The events that decide an order payment's outcome.
const ORDER_PAYMENT_EVENTS: &str =
    "'payment_captured', 'delivered', 'refund_due', 'refund_requested', 'refund_succeeded', 'refund_failed', \
     'goods_restored'";
/// The events that record a charge's own refund on its order's timeline.
const CHARGE_REFUND_EVENTS: &str = "'charge_refund_requested', 'charge_refund_succeeded', 'charge_refund_failed'";

/// A charge as the page query reads it, with its outcome.
#[derive(sqlx::FromRow)]
pub(crate) struct ChargeLine {
    pub(crate) id: i64,
    provider: String,
    trade_no: String,
    order_no: String,
    class: String,
    amount_minor: i64,
    currency: String,
    paid_at_ms: Option<i64>,
    recorded_at_ms: i64,
    seal: Option<String>,
    order_id: Option<String>,
    order_order_no: Option<String>,
    order_status: Option<String>,
    outcome: String,
    reached_at: Option<i64>,
    deadline: i64,
}

/// Charges matching `filter` (SQL over `c`, naming `$4`…), after `after_id`, in id order,
/// with their outcome at `now_ms`. `binds` fill `$4`… in order.
pub(crate) async fn lines(
    conn: &mut Conn,
    bounds: &Bounds,
    now_ms: i64,
    filter: &str,
    binds: &[&str],
    ints: &[i64],
) -> Result<Vec<ChargeLine>> {
    let sql = format!(
        "SELECT c.id, c.provider, c.trade_no, c.order_no, c.class, c.amount_minor, c.currency, c.paid_at_ms, \
                c.recorded_at_ms, c.seal, o.id AS order_id, o.order_no AS order_order_no, o.status AS order_status, \
                ({outcome}) AS outcome, ({reached}) AS reached_at, ({deadline}) AS deadline \
         FROM charges c LEFT JOIN orders o ON o.id = c.order_id WHERE {filter}",
        outcome = outcome::charge_sql(),
        reached = outcome::reached_at_sql(),
        deadline = outcome::deadline_sql(bounds.park_window_ms),
    );
    let mut query = sqlx::query_as::<_, ChargeLine>(&sql);
    for p in outcome::params(bounds, now_ms) {
        query = query.bind(p);
    }
    for b in binds {
        query = query.bind(*b);
    }
    for i in ints {
        query = query.bind(*i);
    }
    Ok(query.fetch_all(conn).await?)
}

/// Charges confirmed in `[from_ms, to_ms)` after `after_id`, at most `limit`.
pub(crate) async fn page(
    conn: &mut Conn,
    bounds: &Bounds,
    now_ms: i64,
    (from_ms, to_ms): (i64, i64),
    after_id: i64,
    limit: i64,
) -> Result<Vec<ChargeLine>> {
    let confirmed = outcome::CONFIRMED_AT_SQL;
    let filter = format!("{confirmed} >= $4 AND {confirmed} < $5 AND c.id > $6 ORDER BY c.id LIMIT $7");
    lines(conn, bounds, now_ms, &filter, &[], &[from_ms, to_ms, after_id, limit]).await
}

/// The entries of every charge of one order (the user's own proof).
pub async fn for_order(conn: &mut Conn, bounds: &Bounds, now_ms: i64, order_id: &str) -> Result<Vec<Entry>> {
    let lines = lines(&mut *conn, bounds, now_ms, "c.order_id = $4 ORDER BY c.id", &[order_id], &[]).await?;
    let mut entries = Vec::with_capacity(lines.len());
    for line in lines {
        entries.push(entry(&mut *conn, bounds, line).await?);
    }
    Ok(entries)
}

/// Reads the records behind one charge's outcome.
pub(crate) async fn entry(conn: &mut Conn, bounds: &Bounds, line: ChargeLine) -> Result<Entry> {
    let outcome = Outcome::parse(&line.outcome).ok_or_else(|| StoreError::Corrupt("charge outcome".into()))?;
    let order_payment = matches!(line.class.as_str(), "matched" | "late");
    let order = match (line.order_id, line.order_order_no, line.order_status) {
        (Some(id), Some(order_no), Some(status)) => Some(OrderRef { id, order_no, status }),
        _ => None,
    };
    let refunds = refunds(&mut *conn, line.id, order.as_ref().filter(|_| order_payment).map(|o| o.id.as_str())).await?;
    let (events, delivery, transfers) = match &order {
        Some(o) if order_payment => {
            let events = events(&mut *conn, &o.id, ORDER_PAYMENT_EVENTS, None).await?;
            (events, delivery(&mut *conn, &o.id).await?, transfers(&mut *conn, &o.id, &refunds).await?)
        }
        Some(o) => (events(&mut *conn, &o.id, CHARGE_REFUND_EVENTS, Some(line.id)).await?, None, Vec::new()),
        None => (Vec::new(), None, Vec::new()),
    };
    let attention = match outcome {
        Outcome::Attention | Outcome::None | Outcome::Pending => {
            attention(&mut *conn, order.as_ref().map(|o| o.id.as_str()), line.id).await?
        }
        Outcome::Delivered | Outcome::Refunded | Outcome::Refunding => Vec::new(),
    };
    Ok(Entry {
        charge: ChargeRef {
            id: line.id,
            provider: line.provider,
            trade_no: line.trade_no,
            order_no: line.order_no,
            class: line.class,
            amount_minor: line.amount_minor,
            currency: line.currency,
            paid_at_ms: line.paid_at_ms,
            recorded_at_ms: line.recorded_at_ms,
            seal: line.seal,
        },
        order,
        outcome,
        reached_at_ms: line.reached_at.filter(|_| outcome.is_reached()),
        deadline_ms: line.deadline,
        late: outcome.is_reached() && line.reached_at.is_some_and(|at| at > line.deadline + bounds.deadline_grace_ms),
        events,
        delivery,
        refunds,
        transfers,
        attention,
    })
}

#[derive(sqlx::FromRow)]
struct EventLine {
    seq: i64,
    kind: String,
    at_ms: i64,
    data: String,
    seal: Option<String>,
}

async fn events(conn: &mut Conn, order_id: &str, kinds: &str, charge_id: Option<i64>) -> Result<Vec<EventRef>> {
    let sql = format!(
        "SELECT seq, kind, at_ms, data, seal FROM order_events WHERE order_id = $1 AND kind IN ({kinds}) ORDER BY seq"
    );
    let rows = sqlx::query_as::<_, EventLine>(&sql).bind(order_id).fetch_all(conn).await?;
    let mut refs = Vec::with_capacity(rows.len());
    for e in rows {
        // A charge's own refund events name the charge in their data.
        if let Some(id) = charge_id {
            let data: serde_json::Value = serde_json::from_str(&e.data)?;
            if data["charge_id"].as_i64() != Some(id) {
                continue;
            }
        }
        refs.push(EventRef { seq: e.seq, kind: e.kind, at_ms: e.at_ms, seal: e.seal });
    }
    Ok(refs)
}

async fn delivery(conn: &mut Conn, order_id: &str) -> Result<Option<DeliveryRef>> {
    let row = sqlx::query_as::<_, (String, i64, Option<String>)>(
        "SELECT kind, delivered_at_ms, seal FROM deliveries WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(kind, delivered_at_ms, seal)| DeliveryRef { kind, delivered_at_ms, seal }))
}

#[derive(sqlx::FromRow)]
struct RefundLine {
    id: String,
    request_no: String,
    state: String,
    amount_minor: i64,
    full_refund: i64,
    created_at_ms: i64,
    seal: Option<String>,
}

/// The charge's refunds; for an order's payment, also the order's refunds stored before
/// refunds named their charge.
async fn refunds(conn: &mut Conn, charge_id: i64, order_id: Option<&str>) -> Result<Vec<RefundRef>> {
    let rows = sqlx::query_as::<_, RefundLine>(
        "SELECT id, request_no, state, amount_minor, full_refund, created_at_ms, seal FROM refunds \
         WHERE charge_id = $1 OR (charge_id IS NULL AND order_id = $2) ORDER BY created_at_ms, id",
    )
    .bind(charge_id)
    .bind(order_id.unwrap_or(""))
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| RefundRef {
            id: r.id,
            request_no: r.request_no,
            state: r.state,
            amount_minor: r.amount_minor,
            full: r.full_refund != 0,
            created_at_ms: r.created_at_ms,
            seal: r.seal,
        })
        .collect())
}

#[derive(sqlx::FromRow)]
struct TransferLine {
    id: String,
    currency: String,
    amount: i64,
    account_id: String,
    seal_seq: Option<i64>,
    at_ms: i64,
    seal: Option<String>,
}

/// Transfers whose id starts with `prefix`, read by the primary key's order (a range,
/// not a LIKE, so both engines use the index).
async fn transfers_with_prefix(conn: &mut Conn, prefix: &str, out: &mut Vec<TransferRef>) -> Result<()> {
    // The first string after every one that starts with the prefix: its last byte plus one
    // (prefixes end in ':', so ';').
    let upper = format!("{};", prefix.trim_end_matches(':'));
    let rows = sqlx::query_as::<_, TransferLine>(
        "SELECT t.id, t.currency, t.amount, e.account_id, e.seal_seq, e.at_ms, e.seal \
         FROM ledger_transfers t JOIN ledger_entries e ON e.transfer_id = t.id \
         WHERE t.id >= $1 AND t.id < $2 ORDER BY t.id, e.id",
    )
    .bind(prefix)
    .bind(upper)
    .fetch_all(conn)
    .await?;
    for r in rows {
        let entry = LedgerEntryRef { account_id: r.account_id, seq: r.seal_seq, at_ms: r.at_ms, seal: r.seal };
        match out.last_mut().filter(|t| t.id == r.id) {
            Some(t) => t.entries.push(entry),
            None => out.push(TransferRef { id: r.id, currency: r.currency, amount: r.amount, entries: vec![entry] }),
        }
    }
    Ok(())
}

/// The order's own transfers (`order:<id>:…`) and its refunds' (`refund:<id>:…`).
async fn transfers(conn: &mut Conn, order_id: &str, refunds: &[RefundRef]) -> Result<Vec<TransferRef>> {
    let mut out = Vec::new();
    transfers_with_prefix(&mut *conn, &format!("order:{order_id}:"), &mut out).await?;
    for r in refunds {
        transfers_with_prefix(&mut *conn, &format!("refund:{}:", r.id), &mut out).await?;
    }
    Ok(out)
}

async fn attention(conn: &mut Conn, order_id: Option<&str>, charge_id: i64) -> Result<Vec<AttentionRef>> {
    let rows = sqlx::query_as::<_, (i64, String, Option<i64>)>(
        "SELECT id, reason, due_at_ms FROM attention_items WHERE resolved_at_ms IS NULL \
           AND (order_id = $1 OR charge_id = $2) ORDER BY id",
    )
    .bind(order_id.unwrap_or(""))
    .bind(charge_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(id, reason, due_at_ms)| AttentionRef { id, reason, due_at_ms }).collect())
}

impl Entry {
    /// Every sealed record the entry names: its stream, its place there, its seal, and
    /// the time it was written.
    pub fn records(&self) -> Vec<(String, i64, Option<&str>, i64)> {
        let c = &self.charge;
        let mut out = vec![(stream::charge(&c.provider, &c.trade_no), 1, c.seal.as_deref(), c.recorded_at_ms)];
        if let Some(order) = &self.order {
            for e in &self.events {
                out.push((stream::events(&order.id), e.seq, e.seal.as_deref(), e.at_ms));
            }
            if let Some(d) = &self.delivery {
                out.push((stream::delivery(&order.id), 1, d.seal.as_deref(), d.delivered_at_ms));
            }
        }
        for r in &self.refunds {
            out.push((stream::refund(&r.id), 1, r.seal.as_deref(), r.created_at_ms));
        }
        for t in &self.transfers {
            for e in &t.entries {
                out.push((stream::entries(&e.account_id), e.seq.unwrap_or(0), e.seal.as_deref(), e.at_ms));
            }
        }
        out
    }
}
