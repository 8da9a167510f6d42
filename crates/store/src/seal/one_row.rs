//! The audit's walks over one-row records (payments, deliveries, charges, refunds,
//! verified notifications), each row a stream of its own: its seal is recomputed, and it
//! joins the batch it names (see [`super::batch`]) or, sealed before batches, is held to
//! its own checkpointed head.

use super::verify::{Walk, PAGE_ROWS};
use super::{content, stream};
use crate::{Conn, Result};

#[derive(sqlx::FromRow)]
struct PaymentRecord {
    id: i64,
    order_id: String,
    provider: String,
    trade_no: String,
    amount_minor: i64,
    currency: String,
    paid_at_ms: Option<i64>,
    recorded_at_ms: i64,
    source: String,
    late: i64,
    seal: Option<String>,
    seal_batch: Option<Vec<u8>>,
}

#[derive(sqlx::FromRow)]
struct DeliveryRecord {
    order_id: String,
    kind: String,
    delivered_at_ms: i64,
    detail: String,
    seal: Option<String>,
    seal_batch: Option<Vec<u8>>,
}

#[derive(sqlx::FromRow)]
struct ChargeRecord {
    id: i64,
    provider: String,
    trade_no: String,
    order_no: String,
    amount_minor: i64,
    currency: String,
    paid_at_ms: Option<i64>,
    evidence: String,
    recorded_at_ms: i64,
    seal: Option<String>,
    seal_batch: Option<Vec<u8>>,
}

/// Payments, deliveries, charges, refunds and verified notifications: each row a stream
/// of its own.
pub(super) async fn walk_payments(c: &mut Conn, payments: &mut Walk<'_>) -> Result<()> {
    let mut after = 0_i64;
    loop {
        let page = sqlx::query_as::<_, PaymentRecord>(
            "SELECT id, order_id, provider, trade_no, amount_minor, currency, paid_at_ms, recorded_at_ms, source, late, \
                 seal, seal_batch FROM payments WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(PAGE_ROWS)
        .fetch_all(&mut *c)
        .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for p in &page {
            let facts = content::PaymentFacts {
                order_id: &p.order_id,
                provider: &p.provider,
                trade_no: &p.trade_no,
                amount_minor: p.amount_minor,
                currency: &p.currency,
                paid_at_ms: p.paid_at_ms,
                recorded_at_ms: p.recorded_at_ms,
                source: &p.source,
                late: p.late != 0,
            };
            payments.visit_one(&stream::payment(&p.order_id), p.seal.as_deref(), p.seal_batch.as_deref(), || {
                content::payment(&facts)
            });
        }
    }
    Ok(())
}

pub(super) async fn walk_deliveries(c: &mut Conn, deliveries: &mut Walk<'_>) -> Result<()> {
    let mut after = String::new();
    loop {
        let page = sqlx::query_as::<_, DeliveryRecord>(
            "SELECT order_id, kind, delivered_at_ms, detail, seal, seal_batch FROM deliveries WHERE order_id > $1 \
             ORDER BY order_id LIMIT $2",
        )
        .bind(&after)
        .bind(PAGE_ROWS)
        .fetch_all(&mut *c)
        .await?;
        let Some(last) = page.last() else { break };
        after = last.order_id.clone();
        for d in &page {
            deliveries.visit_one(&stream::delivery(&d.order_id), d.seal.as_deref(), d.seal_batch.as_deref(), || {
                content::delivery(&d.order_id, &d.kind, d.delivered_at_ms, &d.detail)
            });
        }
    }
    Ok(())
}

pub(super) async fn walk_charges(c: &mut Conn, charges: &mut Walk<'_>) -> Result<()> {
    let mut after = 0_i64;
    loop {
        let page = sqlx::query_as::<_, ChargeRecord>(
            "SELECT id, provider, trade_no, order_no, amount_minor, currency, paid_at_ms, evidence, recorded_at_ms, seal, \
                 seal_batch FROM charges WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(PAGE_ROWS)
        .fetch_all(&mut *c)
        .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for ch in &page {
            let facts = content::ChargeFacts {
                provider: &ch.provider,
                trade_no: &ch.trade_no,
                order_no: &ch.order_no,
                amount_minor: ch.amount_minor,
                currency: &ch.currency,
                paid_at_ms: ch.paid_at_ms,
                evidence: &ch.evidence,
                recorded_at_ms: ch.recorded_at_ms,
            };
            let name = stream::charge(&ch.provider, &ch.trade_no);
            charges.visit_one(&name, ch.seal.as_deref(), ch.seal_batch.as_deref(), || content::charge(&facts));
        }
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct RefundRecord {
    id: String,
    order_id: Option<String>,
    charge_id: Option<i64>,
    request_no: String,
    amount_minor: i64,
    currency: String,
    full_refund: i64,
    origin: String,
    reason: String,
    created_at_ms: i64,
    seal: Option<String>,
    seal_batch: Option<Vec<u8>>,
}

#[derive(sqlx::FromRow)]
struct NotificationRecord {
    id: i64,
    provider: String,
    received_at_ms: i64,
    remote_addr: Option<String>,
    headers: String,
    body: Vec<u8>,
    seal: Option<String>,
    seal_batch: Option<Vec<u8>>,
}

pub(super) async fn walk_refunds(c: &mut Conn, refunds: &mut Walk<'_>) -> Result<()> {
    let mut after = String::new();
    loop {
        let page = sqlx::query_as::<_, RefundRecord>(
            "SELECT id, order_id, charge_id, request_no, amount_minor, currency, full_refund, origin, reason, \
                 created_at_ms, seal, seal_batch FROM refunds WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(&after)
        .bind(PAGE_ROWS)
        .fetch_all(&mut *c)
        .await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for r in &page {
            let facts = content::RefundFacts {
                id: &r.id,
                order_id: r.order_id.as_deref(),
                charge_id: r.charge_id,
                request_no: &r.request_no,
                amount_minor: r.amount_minor,
                currency: &r.currency,
                full: r.full_refund != 0,
                origin: &r.origin,
                reason: &r.reason,
                created_at_ms: r.created_at_ms,
            };
            refunds.visit_one(&stream::refund(&r.id), r.seal.as_deref(), r.seal_batch.as_deref(), || {
                content::refund(&facts)
            });
        }
    }
    Ok(())
}

pub(super) async fn walk_notifications(c: &mut Conn, notifications: &mut Walk<'_>) -> Result<()> {
    let mut after = i64::MIN;
    loop {
        // Refused notifications are not evidence and are not sealed (they are pruned).
        let page = sqlx::query_as::<_, NotificationRecord>(
            "SELECT id, provider, received_at_ms, remote_addr, headers, body, seal, seal_batch FROM notifications \
             WHERE id > $1 AND (seal IS NOT NULL OR verdict <> 'rejected') ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(PAGE_ROWS)
        .fetch_all(&mut *c)
        .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for n in &page {
            notifications.visit_one(&stream::notification(n.id), n.seal.as_deref(), n.seal_batch.as_deref(), || {
                content::notification(
                    n.id,
                    &n.provider,
                    n.received_at_ms,
                    n.remote_addr.as_deref(),
                    &n.headers,
                    &n.body,
                )
            });
        }
    }
    Ok(())
}
