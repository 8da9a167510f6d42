//! The timeline: every order's row agrees with its events, the append-only history its
//! status is the fold of. The row's facts that never change (who ordered what, for how
//! much, through which provider) are held to what the `created` event recorded, so the
//! row is as hard to rewrite as the events are.

use super::facts::{EventFact, OrderFacts};
use super::Check;
use crate::events;
use serde_json::Value;
use zerodrop_domain::money::{parse_decimal_minor, Currency};
use zerodrop_domain::order::OrderStatus;
use zerodrop_domain::Product;

pub(super) struct Timeline {
    fold: Check,
    sequence: Check,
    created: Check,
}

impl Timeline {
    pub(super) fn new() -> Timeline {
        Timeline {
            fold: Check::new(
                "status_is_fold",
                "every order's status, attention flag, paid time and delivery deadline equal the fold of its events",
            ),
            sequence: Check::new(
                "event_sequence_whole",
                "every order's events are numbered 1, 2, 3… up to its event counter, with no gap",
            ),
            created: Check::new(
                "order_matches_created",
                "every order's number, user, product snapshot, quantity, amount, expiry and provider equal what its \
                 created event recorded",
            ),
        }
    }

    pub(super) fn check(&mut self, o: &OrderFacts) {
        self.fold(o);
        let numbered = o.events.iter().enumerate().all(|(i, e)| e.seq == i as i64 + 1);
        if !numbered || o.events.len() as i64 != o.event_seq {
            let seqs: Vec<String> = o.events.iter().map(|e| e.seq.to_string()).collect();
            self.sequence.violation(format!(
                "{}: events numbered {} for an event counter of {}",
                o.order_no,
                seqs.join(","),
                o.event_seq
            ));
        }
        self.created(o);
    }

    pub(super) fn into_checks(self) -> Vec<Check> {
        vec![self.fold, self.sequence, self.created]
    }

    fn fold(&mut self, o: &OrderFacts) {
        let kinds: Vec<String> = o.events.iter().map(|e| e.kind.clone()).collect();
        let folded = events::fold_kinds(&kinds);
        let ok = match &folded {
            Ok(Some(state)) => {
                Some(state.status) == OrderStatus::parse(&o.status)
                    && state.attention == o.attention
                    && o.event_seq == kinds.len() as i64
            }
            Ok(None) | Err(_) => false,
        };
        if !ok {
            self.fold.violation(format!("{}: stored {}, events fold to {folded:?}", o.order_no, o.status));
            return;
        }
        // The paid time and deadline are derived from the capture event when it is
        // appended (the provider's payment time, never in the future), never set apart.
        let deadline_secs = serde_json::from_str::<Product>(&o.product).ok().map(|p| p.delivery_deadline_secs);
        let capture = o.events.iter().find(|e| e.kind == "payment_captured");
        let paid =
            capture.map(|e| e.data.get("paid_at_ms").and_then(Value::as_i64).map_or(e.at_ms, |ms| ms.min(e.at_ms)));
        let due = match (paid, deadline_secs) {
            (Some(paid), Some(secs)) => Some(paid + secs * 1000),
            (None, _) => None,
            // The product is unreadable: `order_matches_created` names that.
            (Some(_), None) => o.deliver_by_ms,
        };
        if paid != o.paid_at_ms || due != o.deliver_by_ms {
            self.fold.violation(format!(
                "{}: stored paid at {:?} and due by {:?}, its capture event says {paid:?} and {due:?}",
                o.order_no, o.paid_at_ms, o.deliver_by_ms
            ));
        }
    }

    fn created(&mut self, o: &OrderFacts) {
        let Some(event) = o.events.first().filter(|e| e.seq == 1 && e.kind == "created") else {
            self.created.violation(format!("{}: its first event is not `created`", o.order_no));
            return;
        };
        let differ = differences(o, event);
        if !differ.is_empty() {
            let what = differ.join(", ");
            self.created.violation(format!("{}: {what} not as its created event recorded", o.order_no));
        }
    }
}

/// The row's facts that differ from the `created` event's record of them. A fact the
/// event does not record (events written before it did) is not compared.
fn differences(o: &OrderFacts, event: &EventFact) -> Vec<&'static str> {
    let data = &event.data;
    let text = |name: &str| data.get(name).and_then(Value::as_str);
    let mut differ = Vec::new();
    let mut compare = |name: &'static str, same: Option<bool>| {
        if same == Some(false) {
            differ.push(name);
        }
    };
    compare("order_no", text("order_no").map(|v| v == o.order_no));
    compare("user_id", text("user_id").map(|v| v == o.user_id));
    compare("sku", text("sku").map(|v| v == o.sku));
    let product: Option<Value> = serde_json::from_str(&o.product).ok();
    compare("product", data.get("product").map(|v| Some(v) == product.as_ref()));
    // The row's own SKU column names the product its snapshot is of.
    let snapshot_sku = product.as_ref().and_then(|p| p.get("sku")).and_then(Value::as_str);
    compare("sku", Some(snapshot_sku == Some(o.sku.as_str())));
    compare("quantity", data.get("quantity").map(|v| v.as_i64() == Some(o.quantity)));
    compare("currency", text("currency").map(|v| v == o.currency));
    let exponent = Currency::parse(&o.currency).map(Currency::exponent);
    let amount = |v: &str| exponent.and_then(|e| parse_decimal_minor(v, e).ok());
    compare("amount", text("amount").map(|v| amount(v) == Some(o.amount_minor)));
    compare("expires_at_ms", data.get("expires_at_ms").map(|v| v.as_i64() == Some(o.expires_at_ms)));
    compare("provider", text("provider").map(|v| v == o.provider));
    differ.dedup();
    differ
}
