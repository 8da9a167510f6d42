//! The demo's view of the outcome: settlement progress, the table, and the comparison of
//! the provider's books (charges, refunds) with zerodrop's. DROPPED counts charges (see
//! [`super::charges`]) and overdue attention items, not orders.

use super::charges::{Books, Outcome, Tally};
use crate::stack::InProcess;
use anyhow::Result;
use std::collections::{BTreeSet, HashMap};
use std::io::{IsTerminal, Write};
use std::time::Duration;
use zerodrop_sandbox::state::{Charge, RefundRecord};
use zerodrop_store::attention::{Filter, Item};
use zerodrop_store::charges::ChargeClass;
use zerodrop_store::now_ms;
use zerodrop_store::refunds::{RefundRow, RefundState};

/// Off a terminal (CI logs), progress is a line this often rather than a redrawn bar.
const PLAIN_PROGRESS_EVERY_SECS: u64 = 10;

pub type OrderStates = HashMap<String, (String, bool, Option<i64>)>;

pub async fn order_states(server: &InProcess) -> Result<OrderStates> {
    let mut conn = server.app.store.reader().await?;
    let rows = zerodrop_store::orders::summaries(&mut conn).await?;
    Ok(rows.into_iter().map(|o| (o.order_no, (o.status, o.attention, o.settled_at_ms))).collect())
}

/// zerodrop's books as they stand: charges, orders, refunds and open attention items.
pub async fn books(
    server: &InProcess,
    states: &OrderStates,
    now_ms: i64,
) -> Result<(Books, Vec<RefundRow>, Vec<Item>)> {
    let mut conn = server.app.store.reader().await?;
    let charges = zerodrop_store::charges::all(&mut conn).await?;
    let refunds = zerodrop_store::refunds::all(&mut conn).await?;
    let open =
        zerodrop_store::attention::list(&mut conn, &Filter { open: Some(true), ..Filter::default() }, 0, i64::MAX)
            .await?;
    let status = states.iter().map(|(no, (status, _, _))| (no.clone(), status.clone())).collect();
    Ok((Books::new(charges, status, &refunds, &open, now_ms), refunds, open))
}

pub struct Progress {
    pub settled: u64,
    pub unsettled: u64,
    pub charges_without_outcome: u64,
    pub refunds_in_flight: u64,
}

pub async fn settlement(server: &InProcess, charges: &[Charge], order_nos: &[String]) -> Result<Progress> {
    let states = order_states(server).await?;
    let settled_state = |no: &str| {
        states.get(no).is_some_and(|(status, attention, _)| {
            *attention || matches!(status.as_str(), "delivered" | "expired" | "refunded")
        })
    };
    let settled = order_nos.iter().filter(|no| settled_state(no)).count() as u64;
    let (books, refunds, _) = books(server, &states, now_ms()).await?;
    let charges_without_outcome = charges.iter().filter(|c| books.outcome(c) == Outcome::Nothing).count() as u64;
    let refunds_in_flight = refunds.iter().filter(|r| !r.state.is_final()).count() as u64;
    Ok(Progress { settled, unsettled: order_nos.len() as u64 - settled, charges_without_outcome, refunds_in_flight })
}

/// Redraws the bar in place on a terminal; elsewhere prints a line every
/// [`PLAIN_PROGRESS_EVERY_SECS`].
pub fn draw(users_done: u64, total: u64, progress: &Progress, elapsed: Duration) {
    const WIDTH: u64 = 40;
    let terminal = std::io::stderr().is_terminal();
    if !terminal && elapsed.as_millis() % (u128::from(PLAIN_PROGRESS_EVERY_SECS) * 1000) >= 500 {
        return;
    }
    let filled = (progress.settled * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let bar: String = (0..WIDTH).map(|i| if i < filled { '#' } else { '.' }).collect();
    let line = format!(
        "[{bar}] {:>5}/{total} settled  users done {:>5}  paid awaiting outcome {:>4}  refunds in flight {:>3}  {:>4}s",
        progress.settled,
        users_done,
        progress.charges_without_outcome,
        progress.refunds_in_flight,
        elapsed.as_secs()
    );
    if terminal {
        eprint!("\r{line} ");
    } else {
        eprintln!("{line}");
    }
    let _ = std::io::stderr().flush();
}

pub struct Table {
    pub payments: u64,
    pub delivered: u64,
    pub late: u64,
    pub late_delivered: u64,
    pub expired: u64,
    /// The provider's charges by zerodrop's class, and how each ended.
    pub charges: Tally,
    /// Whether every charge at the provider is one of zerodrop's, trade and amount.
    pub charge_books_match: bool,
    /// Open attention items within their clock, and past it.
    pub attention_in_clock: u64,
    pub attention_overdue: u64,
    /// Charges with no outcome, plus overdue attention items: must be 0.
    pub dropped: u64,
    pub p50_ms: i64,
    pub p99_ms: i64,
    pub max_ms: i64,
    pub events: HashMap<String, i64>,
    pub card_keys_delivered: u64,
    pub external_delivered: u64,
    pub refunds_by_origin: Vec<(String, u64)>,
    pub refunds_succeeded: u64,
    pub refunds_not_succeeded: u64,
    pub refunded_orders: u64,
    /// Whether the provider's refunds are exactly zerodrop's settled refunds.
    pub refund_books_match: bool,
}

pub async fn summarise(
    server: &InProcess,
    charges: &[Charge],
    provider_refunds: &[RefundRecord],
    order_nos: &[String],
) -> Result<Table> {
    let states = order_states(server).await?;
    let now = now_ms();
    let (books, refunds, open) = books(server, &states, now).await?;
    let tally = Tally::of(&books, charges);
    let attention_overdue = open.iter().filter(|i| i.is_overdue(now)).count() as u64;
    let mut conn = server.app.store.reader().await?;
    let payments = zerodrop_store::payments::list_after(&mut conn, 0, i64::MAX).await?;
    let late = payments.iter().filter(|p| p.late).count() as u64;
    let count = |status: &str| {
        order_nos.iter().filter(|no| states.get(*no).is_some_and(|(s, _, _)| s == status)).count() as u64
    };
    let late_orders: std::collections::HashSet<&str> =
        payments.iter().filter(|p| p.late).map(|p| p.order_id.as_str()).collect();
    let delivered_at = zerodrop_store::payments::delivered_at_by_order_no(&mut conn).await?;
    let mut latencies: Vec<i64> =
        charges.iter().filter_map(|c| delivered_at.get(&c.out_trade_no).map(|(_, at)| at - c.paid_at_ms)).collect();
    let late_delivered = delivered_at.values().filter(|(id, _)| late_orders.contains(id.as_str())).count() as u64;
    latencies.sort_unstable();
    let pick =
        |per_mille: usize| latencies.get((latencies.len().saturating_sub(1)) * per_mille / 1000).copied().unwrap_or(0);
    let events: HashMap<String, i64> = zerodrop_store::events::count_by_kind(&mut conn).await?.into_iter().collect();
    let kinds = zerodrop_store::payments::delivered_kinds(&mut conn).await?;
    let mut by_origin: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for r in &refunds {
        *by_origin.entry(r.origin.clone()).or_default() += 1;
    }
    let ours: BTreeSet<(String, i64)> = refunds
        .iter()
        .filter(|r| r.state == RefundState::Succeeded)
        .map(|r| (r.request_no.clone(), r.amount.minor))
        .collect();
    let theirs: BTreeSet<(String, i64)> =
        provider_refunds.iter().map(|r| (r.request_no.clone(), r.amount_minor)).collect();
    let recorded: BTreeSet<(String, i64)> =
        zerodrop_store::charges::all(&mut conn).await?.into_iter().map(|c| (c.trade_no, c.amount.minor)).collect();
    let charged: BTreeSet<(String, i64)> = charges.iter().map(|c| (c.trade_no.clone(), c.amount_minor)).collect();
    Ok(Table {
        payments: payments.len() as u64,
        delivered: count("delivered"),
        late,
        late_delivered,
        expired: count("expired"),
        dropped: tally.ended(Outcome::Nothing) + attention_overdue,
        charges: tally,
        charge_books_match: recorded == charged,
        attention_in_clock: open.len() as u64 - attention_overdue,
        attention_overdue,
        p50_ms: pick(500),
        p99_ms: pick(990),
        max_ms: latencies.last().copied().unwrap_or(0),
        events,
        card_keys_delivered: kinds.get("card_key").copied().unwrap_or(0),
        external_delivered: kinds.get("external").copied().unwrap_or(0),
        refunds_by_origin: by_origin.into_iter().collect(),
        refunds_succeeded: ours.len() as u64,
        refunds_not_succeeded: refunds.iter().filter(|r| r.state != RefundState::Succeeded).count() as u64,
        refunded_orders: count("refunded"),
        refund_books_match: ours == theirs,
    })
}

pub fn print(table: &Table) {
    let row = |label: &str, value: String| println!("{label:<46} {value:>10}");
    let event = |kind: &str| table.events.get(kind).copied().unwrap_or(0).to_string();
    let yes = |ok: bool| if ok { "yes".to_owned() } else { "NO".to_owned() };
    row("  provider's charge books match zerodrop's", yes(table.charge_books_match));
    print_charges(&table.charges);
    let (refunded, off_path) = off_path_refunded(&table.charges);
    row("  not an order's payment: refunded in full", format!("{refunded} of {off_path}"));
    row("paid orders, recorded by zerodrop", table.payments.to_string());
    row("delivered", table.delivered.to_string());
    row("  card keys delivered", table.card_keys_delivered.to_string());
    row("    orders that waited for stock", event("awaiting_stock"));
    row("  delivered by the platform's endpoint", table.external_delivered.to_string());
    row("    endpoint attempts (every one in a timeline)", event("delivery_attempted"));
    row("  compensated for a late delivery", event("compensated"));
    row("late payments", table.late.to_string());
    row("  delivered late (policy: deliver)", table.late_delivered.to_string());
    row("deadlines missed", event("deadline_missed"));
    row("refunds requested", (table.refunds_succeeded + table.refunds_not_succeeded).to_string());
    for (origin, n) in &table.refunds_by_origin {
        row(&format!("  {origin}"), n.to_string());
    }
    row("  settled at the provider", table.refunds_succeeded.to_string());
    row("  provider's refund books match zerodrop's", yes(table.refund_books_match));
    row("orders fully refunded", table.refunded_orders.to_string());
    row("expired unpaid", table.expired.to_string());
    row("attention items open, within their clock", table.attention_in_clock.to_string());
    row("attention items overdue (must be 0)", table.attention_overdue.to_string());
    row("DROPPED: no outcome + overdue (must be 0)", table.dropped.to_string());
    row("payment → delivery p50", format!("{} ms", table.p50_ms));
    row("payment → delivery p99", format!("{} ms", table.p99_ms));
    row("payment → delivery max", format!("{} ms", table.max_ms));
}

/// Charges that were no order's payment (second trades, wrong amounts, unknown orders,
/// other providers): (refunded in full, all of them).
fn off_path_refunded(tally: &Tally) -> (u64, u64) {
    let off_path = ChargeClass::ALL.into_iter().filter(|c| !c.is_order_payment());
    off_path.fold((0, 0), |(refunded, all), class| {
        (refunded + tally.of_class(class.as_str(), Outcome::Refunded), all + tally.count(class))
    })
}

/// The charges by class, with how each ended.
fn print_charges(tally: &Tally) {
    let ends = Outcome::ALL;
    let header: String = ends.iter().map(|o| format!(" {:>13}", o.label())).collect();
    println!("{:<32} {:>6}{header}", "charges by class", "count");
    for (class, outcomes) in &tally.by_class {
        let counts: String = ends.iter().map(|o| format!(" {:>13}", outcomes.get(o).copied().unwrap_or(0))).collect();
        println!("  {class:<30} {:>6}{counts}", outcomes.values().sum::<u64>());
    }
}

pub use zerodrop_server::config::redact_url;
