//! What each sealed row's seal covers: its facts, the columns that never change. Columns
//! that move with a record's life (a refund's state, a charge's class once its order is
//! found, a notification's verdict) are not sealed here; each such move is an order event,
//! sealed in the order's chain, and the audit's cross-checks tie the two.
//!
//! Writers and the audit both call these, so the two can never disagree on a field.

use super::{link, Field};

#[allow(clippy::too_many_arguments)]
pub fn event(
    prev: &str,
    order_id: &str,
    seq: i64,
    at_ms: i64,
    kind: &str,
    actor: &str,
    cause: &str,
    data: &str,
) -> String {
    link(
        "order_events",
        prev,
        &[
            Field::Text(order_id),
            Field::Int(seq),
            Field::Int(at_ms),
            Field::Text(kind),
            Field::Text(actor),
            Field::Text(cause),
            Field::Text(data),
        ],
    )
}

/// An agreement's timeline event, chained per agreement like an order's events.
pub fn agreement_event(
    prev: &str,
    agreement_id: &str,
    seq: i64,
    at_ms: i64,
    kind: &str,
    cause: &str,
    data: &str,
) -> String {
    link(
        "agreement_events",
        prev,
        &[
            Field::Text(agreement_id),
            Field::Int(seq),
            Field::Int(at_ms),
            Field::Text(kind),
            Field::Text(cause),
            Field::Text(data),
        ],
    )
}

/// The transfer an entry belongs to, sealed with each of its entries: editing a transfer
/// breaks both its entries' seals.
pub struct TransferFacts<'a> {
    pub id: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub currency: &'a str,
    pub amount: i64,
    pub order_id: Option<&'a str>,
}

pub fn entry(
    prev: &str,
    transfer: &TransferFacts<'_>,
    account_id: &str,
    seq: i64,
    amount: i64,
    balance_after: i64,
    at_ms: i64,
) -> String {
    link(
        "ledger_entries",
        prev,
        &[
            Field::Text(transfer.id),
            Field::Text(transfer.from),
            Field::Text(transfer.to),
            Field::Text(transfer.currency),
            Field::Int(transfer.amount),
            Field::OptText(transfer.order_id),
            Field::Text(account_id),
            Field::Int(seq),
            Field::Int(amount),
            Field::Int(balance_after),
            Field::Int(at_ms),
        ],
    )
}

pub struct PaymentFacts<'a> {
    pub order_id: &'a str,
    pub provider: &'a str,
    pub trade_no: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub paid_at_ms: Option<i64>,
    pub recorded_at_ms: i64,
    pub source: &'a str,
    pub late: bool,
}

pub fn payment(p: &PaymentFacts<'_>) -> String {
    link(
        "payments",
        super::GENESIS,
        &[
            Field::Text(p.order_id),
            Field::Text(p.provider),
            Field::Text(p.trade_no),
            Field::Int(p.amount_minor),
            Field::Text(p.currency),
            Field::OptInt(p.paid_at_ms),
            Field::Int(p.recorded_at_ms),
            Field::Text(p.source),
            Field::Int(i64::from(p.late)),
        ],
    )
}

pub fn delivery(order_id: &str, kind: &str, delivered_at_ms: i64, detail: &str) -> String {
    link(
        "deliveries",
        super::GENESIS,
        &[Field::Text(order_id), Field::Text(kind), Field::Int(delivered_at_ms), Field::Text(detail)],
    )
}

pub struct ChargeFacts<'a> {
    pub provider: &'a str,
    pub trade_no: &'a str,
    pub order_no: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub paid_at_ms: Option<i64>,
    pub evidence: &'a str,
    pub recorded_at_ms: i64,
}

pub fn charge(c: &ChargeFacts<'_>) -> String {
    link(
        "charges",
        super::GENESIS,
        &[
            Field::Text(c.provider),
            Field::Text(c.trade_no),
            Field::Text(c.order_no),
            Field::Int(c.amount_minor),
            Field::Text(c.currency),
            Field::OptInt(c.paid_at_ms),
            Field::Text(c.evidence),
            Field::Int(c.recorded_at_ms),
        ],
    )
}

pub struct RefundFacts<'a> {
    pub id: &'a str,
    pub order_id: Option<&'a str>,
    pub charge_id: Option<i64>,
    pub request_no: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub full: bool,
    pub origin: &'a str,
    pub reason: &'a str,
    pub created_at_ms: i64,
}

pub fn refund(r: &RefundFacts<'_>) -> String {
    link(
        "refunds",
        super::GENESIS,
        &[
            Field::Text(r.id),
            Field::OptText(r.order_id),
            Field::OptInt(r.charge_id),
            Field::Text(r.request_no),
            Field::Int(r.amount_minor),
            Field::Text(r.currency),
            Field::Int(i64::from(r.full)),
            Field::Text(r.origin),
            Field::Text(r.reason),
            Field::Int(r.created_at_ms),
        ],
    )
}

pub fn notification(
    id: i64,
    provider: &str,
    received_at_ms: i64,
    remote_addr: Option<&str>,
    headers: &str,
    body: &[u8],
) -> String {
    link(
        "notifications",
        super::GENESIS,
        &[
            Field::Int(id),
            Field::Text(provider),
            Field::Int(received_at_ms),
            Field::OptText(remote_addr),
            Field::Text(headers),
            Field::Bytes(body),
        ],
    )
}

pub struct ActionFacts<'a> {
    pub stream: &'a str,
    pub seq: i64,
    pub item_id: Option<i64>,
    pub order_id: Option<&'a str>,
    pub charge_id: Option<i64>,
    pub action: &'a str,
    pub reason_code: &'a str,
    pub note: &'a str,
    pub actor: &'a str,
    pub channel: &'a str,
    pub detail: &'a str,
    pub at_ms: i64,
}

pub fn action(prev: &str, a: &ActionFacts<'_>) -> String {
    link(
        "operator_actions",
        prev,
        &[
            Field::Text(a.stream),
            Field::Int(a.seq),
            Field::OptInt(a.item_id),
            Field::OptText(a.order_id),
            Field::OptInt(a.charge_id),
            Field::Text(a.action),
            Field::Text(a.reason_code),
            Field::Text(a.note),
            Field::Text(a.actor),
            Field::Text(a.channel),
            Field::Text(a.detail),
            Field::Int(a.at_ms),
        ],
    )
}
