//! JSON views of stored records, as the API shows them. Times are RFC 3339 in UTC.

use serde_json::{json, Value};
use zerodrop_store::events::EventRow;
use zerodrop_store::orders::OrderRow;
use zerodrop_store::payments::PaymentRow;

pub fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

pub fn opt_time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| Value::String(rfc3339(ms)))
}

pub fn order(o: &OrderRow) -> Value {
    json!({
        "order_no": o.order_no,
        "id": o.id.to_string(),
        "user_id": o.user_id,
        "sku": o.product.sku,
        "title": o.product.title,
        "quantity": o.quantity,
        "amount": o.amount.to_decimal(),
        "amount_minor": o.amount.minor,
        "currency": o.amount.currency.code(),
        "provider": o.provider,
        "status": o.status.as_str(),
        "attention": o.attention,
        "attention_reason": o.attention_reason,
        "grants": o.product.kind,
        "delivery_deadline_secs": o.product.delivery_deadline_secs,
        "late_payment_policy": o.product.late_payment.as_str(),
        "created_at": rfc3339(o.created_at_ms),
        "expires_at": rfc3339(o.expires_at_ms),
        "paid_at": opt_time(o.paid_at_ms),
        "deliver_by": opt_time(o.deliver_by_ms),
        "settled_at": opt_time(o.settled_at_ms),
    })
}

pub fn payment(p: &PaymentRow) -> Value {
    json!({
        "provider": p.provider,
        "trade_no": p.trade_no,
        "amount": p.amount.to_decimal(),
        "currency": p.amount.currency.code(),
        "paid_at": opt_time(p.paid_at_ms),
        "recorded_at": rfc3339(p.recorded_at_ms),
        "source": p.source,
        "late": p.late,
    })
}

pub fn timeline(events: &[EventRow]) -> Value {
    Value::Array(
        events
            .iter()
            .map(|e| {
                json!({
                    "seq": e.seq, "at": rfc3339(e.at_ms), "kind": e.kind,
                    "actor": e.actor, "cause": e.cause, "data": e.data,
                })
            })
            .collect(),
    )
}

/// A trade the provider reported as paid for the order, and what its class means.
pub fn charge(c: &zerodrop_store::charges::ChargeRow) -> Value {
    json!({
        "id": c.id,
        "provider": c.provider,
        "trade_no": c.trade_no,
        "amount": c.amount.to_decimal(),
        "currency": c.amount.currency.code(),
        "class": c.class.as_str(),
        "paid_at": opt_time(c.paid_at_ms),
        "recorded_at": rfc3339(c.recorded_at_ms),
    })
}

pub fn refund(r: &zerodrop_store::refunds::RefundRow) -> Value {
    json!({
        "id": r.id,
        "request_no": r.request_no,
        "charge_id": r.charge_id,
        "amount": r.amount.to_decimal(),
        "currency": r.amount.currency.code(),
        "full": r.full,
        "origin": r.origin,
        "reason": r.reason,
        "state": r.state.as_str(),
        "detail": r.detail,
        "requested_at": rfc3339(r.created_at_ms),
        "finished_at": opt_time(r.finished_at_ms),
    })
}
