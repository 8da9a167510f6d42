//! One order as people see it: everything known about it, read in one snapshot for the
//! merchant API and the user's pages.

use super::json::rfc3339;
use super::status_text::{self, Facts, Lang, Waiting};
use crate::card_vault::Vault;
use serde_json::{json, Value};
use zerodrop_domain::order::{EventKind, OrderStatus};
use zerodrop_domain::ProductKind;
use zerodrop_store::charges::ChargeRow;
use zerodrop_store::events::EventRow;
use zerodrop_store::orders::OrderRow;
use zerodrop_store::payments::PaymentRow;
use zerodrop_store::refunds::RefundRow;
use zerodrop_store::{card_keys, charges, events, jobs, now_ms, orders, payments, refunds, Store, StoreError};

pub struct OrderView {
    pub order: OrderRow,
    pub payment: Option<PaymentRow>,
    /// Every refund naming the order: its payment's, and those of extra charges.
    pub refunds: Vec<RefundRow>,
    /// Every trade reported as paid for the order (its payment, and any that did not fit).
    pub charges: Vec<ChargeRow>,
    pub timeline: Vec<EventRow>,
    pub pending_jobs: Vec<Value>,
    pub card_key: Option<(i64, Vec<u8>, String)>,
}

pub async fn load(store: &Store, order_no: &str) -> Result<Option<OrderView>, StoreError> {
    if zerodrop_domain::OrderNo::parse(order_no).is_none() {
        return Ok(None);
    }
    // One snapshot: the order, its payment, refunds and timeline must agree.
    let mut conn = store.snapshot().await?;
    let Some(order) = orders::get_by_no(&mut conn, order_no).await? else { return Ok(None) };
    let payment = payments::for_order(&mut conn, order.id).await?;
    let refunds = refunds::for_order(&mut conn, order.id).await?;
    let charges = charges::for_order(&mut conn, order.id).await?;
    let timeline = events::list(&mut conn, order.id).await?;
    let pending_jobs = jobs::for_order(&mut conn, order.id)
        .await?
        .into_iter()
        .filter(|(_, state, _, _)| state == "queued")
        .map(|(kind, _, run_at_ms, attempts)| json!({ "kind": kind, "run_at": rfc3339(run_at_ms), "failed_attempts": attempts }))
        .collect();
    let card_key = match order.product.kind {
        ProductKind::CardKey => card_keys::for_order(&mut conn, order.id).await?.map(|k| (k.id, k.ciphertext, k.state)),
        ProductKind::CurrencyPack { .. } | ProductKind::Membership { .. } | ProductKind::External { .. } => None,
    };
    Ok(Some(OrderView { order, payment, refunds, charges, timeline, pending_jobs, card_key }))
}

impl OrderView {
    pub fn waiting(&self) -> Waiting {
        if self.order.status != OrderStatus::Paid {
            return Waiting::Nothing;
        }
        match self.order.product.kind {
            ProductKind::CardKey => Waiting::Stock,
            ProductKind::External { .. } => Waiting::Endpoint,
            ProductKind::CurrencyPack { .. } | ProductKind::Membership { .. } => Waiting::Nothing,
        }
    }

    /// Refunds of the order's own payment (an extra charge's refund returns other money).
    pub fn payment_refunds(&self) -> Vec<RefundRow> {
        let extra: Vec<i64> = self.charges.iter().filter(|c| !c.class.is_order_payment()).map(|c| c.id).collect();
        self.refunds.iter().filter(|r| r.charge_id.is_none_or(|id| !extra.contains(&id))).cloned().collect()
    }

    /// The status in words; times shown `utc_offset_minutes` east of UTC.
    pub fn status_text(&self, utc_offset_minutes: i32, lang: Lang) -> String {
        let refunds = self.payment_refunds();
        let facts = Facts {
            order: &self.order,
            refunds: &refunds,
            waiting: self.waiting(),
            utc_offset_minutes,
            now_ms: now_ms(),
        };
        status_text::status_text(&facts, lang)
    }

    /// The timeline in words, for people (the API's raw timeline is for machines).
    pub fn story(&self, offset: i32, lang: Lang) -> Vec<(String, &'static str)> {
        self.timeline
            .iter()
            .filter_map(|e| {
                let kind = EventKind::parse(&e.kind)?;
                Some((status_text::clock(e.at_ms, 0, offset), status_text::event_label(kind, lang)))
            })
            .collect()
    }

    /// The card code for its owner (the merchant API only; never logged, never on a page).
    /// A key taken back by a refund shows its state, never its code: the user holds the
    /// money again, so the code is no longer theirs to use.
    pub fn card_code(&self, vault: Option<&Vault>) -> Option<Value> {
        let (id, sealed, state) = self.card_key.as_ref()?;
        if state != "allocated" {
            return Some(json!({ "card_key_id": id, "state": state }));
        }
        let code = vault?.open(self.order.product.sku.as_str(), sealed).ok()?;
        Some(json!({ "card_key_id": id, "state": state, "code": code.expose() }))
    }
}
