//! Refunds per order: refund rows and the order's refund events match one to one (each
//! request, and each final outcome), and a refunded order's succeeded refunds sum to its
//! payment. A refund row deleted, added or rewritten by hand leaves events that disagree.

use super::facts::{EventFact, OrderFacts};
use super::Check;
use serde_json::Value;
use std::collections::HashMap;
use zerodrop_domain::money::{parse_decimal_minor, Currency};

const REQUESTED: &[&str] = &["refund_requested", "partial_refund_requested", "charge_refund_requested"];
const SUCCEEDED: &[&str] = &["refund_succeeded", "partial_refund_succeeded", "charge_refund_succeeded"];
const FAILED: &[&str] = &["refund_failed", "partial_refund_failed", "charge_refund_failed"];

pub(super) struct Refunds {
    check: Check,
}

impl Refunds {
    pub(super) fn new() -> Refunds {
        Refunds {
            check: Check::new(
                "refunds_match_events",
                "every refund row has exactly one request event and one event per final outcome, every refund \
                 event names a refund row of its order, and a refunded order's succeeded refunds sum to its payment",
            ),
        }
    }

    pub(super) fn into_checks(self) -> Vec<Check> {
        vec![self.check]
    }

    pub(super) fn check(&mut self, o: &OrderFacts) {
        let named = |kinds: &[&str]| -> HashMap<String, Vec<&EventFact>> {
            let mut by_refund: HashMap<String, Vec<&EventFact>> = HashMap::new();
            for e in o.events.iter().filter(|e| kinds.contains(&e.kind.as_str())) {
                let id = e.data.get("refund_id").and_then(Value::as_str).unwrap_or_default();
                by_refund.entry(id.to_owned()).or_default().push(e);
            }
            by_refund
        };
        let (requested, succeeded, failed) = (named(REQUESTED), named(SUCCEEDED), named(FAILED));
        let exponent = Currency::parse(&o.currency).map(Currency::exponent);
        for r in &o.refunds {
            let count = |by: &HashMap<String, Vec<&EventFact>>| by.get(&r.id).map_or(0, Vec::len);
            let request = requested.get(&r.id).and_then(|events| events.first());
            let amount = request
                .and_then(|e| e.data.get("amount"))
                .and_then(Value::as_str)
                .and_then(|text| exponent.and_then(|e| parse_decimal_minor(text, e).ok()));
            let number = request.and_then(|e| e.data.get("request_no")).and_then(Value::as_str);
            let problem = if count(&requested) != 1 {
                Some(format!("{} request events", count(&requested)))
            } else if amount != Some(r.amount_minor) || number != Some(r.request_no.as_str()) {
                Some(format!(
                    "row says {} as {}, its request event {amount:?} as {number:?}",
                    r.amount_minor, r.request_no
                ))
            } else if count(&succeeded) != usize::from(r.state == "succeeded") {
                Some(format!("state {} with {} succeeded events", r.state, count(&succeeded)))
            } else if count(&failed) != usize::from(r.state == "failed") {
                Some(format!("state {} with {} failed events", r.state, count(&failed)))
            } else {
                None
            };
            if let Some(problem) = problem {
                self.check.violation(format!("{}: refund {}: {problem}", o.order_no, r.request_no));
            }
        }
        for by in [&requested, &succeeded, &failed] {
            for (id, events) in by {
                if !o.refunds.iter().any(|r| &r.id == id) {
                    let kind = events.first().map_or("", |e| e.kind.as_str());
                    self.check
                        .violation(format!("{}: a {kind} event names refund {id:?}, which has no row", o.order_no));
                }
            }
        }
        if o.status == "refunded" {
            let payment_charge =
                o.charges.iter().find(|c| matches!(c.class.as_str(), "matched" | "late")).map(|c| c.id);
            let back: i64 = o
                .refunds
                .iter()
                .filter(|r| r.state == "succeeded" && (r.charge_id.is_none() || r.charge_id == payment_charge))
                .map(|r| r.amount_minor)
                .sum();
            let paid = o.payment.as_ref().map(|p| p.amount_minor);
            if Some(back) != paid {
                self.check.violation(format!(
                    "{}: refunded, its refunds returned {back} of a payment of {paid:?}",
                    o.order_no
                ));
            }
        }
    }
}
