//! Goods and money per order: the amount is the product's price times the quantity, the
//! payment is for that amount through the order's provider, each delivery grants exactly
//! what the product says (and compensation exactly its rule), and every ledger transfer or
//! membership change naming the order has a cause that permits it.

use super::facts::OrderFacts;
use super::Check;
use zerodrop_domain::catalog::{Compensation, ProductKind};
use zerodrop_domain::Product;

/// Delivery kind of goods a person handed over by hand (card codes, external goods).
const BY_HAND: &str = "by_hand";

pub(super) struct Goods {
    price: Check,
    payment: Check,
    grant: Check,
}

impl Goods {
    pub(super) fn new() -> Goods {
        Goods {
            price: Check::new(
                "order_amount_is_price",
                "every order's amount is its product snapshot's price times its quantity",
            ),
            payment: Check::new(
                "payment_matches_order",
                "every order's payment is its amount through its provider, and every charge on it names its number",
            ),
            grant: Check::new(
                "grant_matches_product",
                "each delivery grants the product's units, days or one card key of its SKU to the order's user, and \
                 any compensation is the product's rule",
            ),
        }
    }

    /// Checks one order; `cause` is the shared `transfer_has_cause` check.
    pub(super) fn check(&mut self, o: &OrderFacts, cause: &mut Check) {
        let product = serde_json::from_str::<Product>(&o.product).ok();
        match product.as_ref().map(|p| p.total(o.quantity)) {
            Some(Ok(total)) if total.minor == o.amount_minor && total.currency.code() == o.currency => {}
            Some(Ok(total)) => self.price.violation(format!(
                "{}: amount {} {} is not the product's price × {} = {} {}",
                o.order_no, o.amount_minor, o.currency, o.quantity, total.minor, total.currency
            )),
            Some(Err(e)) => self.price.violation(format!("{}: {e}", o.order_no)),
            None => self.price.violation(format!("{}: its product snapshot is not readable", o.order_no)),
        }
        self.payment(o);
        if let Some(product) = &product {
            self.grant(o, product);
            permits(o, product, cause);
        }
    }

    pub(super) fn into_checks(self) -> Vec<Check> {
        vec![self.price, self.payment, self.grant]
    }

    fn payment(&mut self, o: &OrderFacts) {
        if let Some(p) = &o.payment {
            if p.amount_minor != o.amount_minor || p.currency != o.currency || p.provider != o.provider {
                self.payment.violation(format!(
                    "{}: payment {} of {} {} through {} for an order of {} {} through {}",
                    o.order_no,
                    p.trade_no,
                    p.amount_minor,
                    p.currency,
                    p.provider,
                    o.amount_minor,
                    o.currency,
                    o.provider
                ));
            }
        }
        for c in o.charges.iter().filter(|c| c.order_no != o.order_no) {
            self.payment.violation(format!("{}: charge {} names order {}", o.order_no, c.trade_no, c.order_no));
        }
    }

    fn grant(&mut self, o: &OrderFacts, product: &Product) {
        let wallet = |currency: &str| format!("wallet:{currency}:{}", o.user_id);
        if let Some(d) = &o.delivery {
            let problem = match &product.kind {
                ProductKind::CurrencyPack { virtual_currency: vc, units } => {
                    let credit = o.transfers.iter().find(|t| t.id == format!("order:{}:credit", o.id));
                    match credit {
                        _ if d.kind != "currency_pack" => Some(format!("delivered as {}", d.kind)),
                        None => Some("no credit".into()),
                        Some(t) if t.amount != units * o.quantity || t.currency != *vc => {
                            Some(format!("credit of {} {} for {} × {units} {vc}", t.amount, t.currency, o.quantity))
                        }
                        Some(t) if t.to_account != wallet(vc) || t.from_account != format!("issuance:{vc}") => {
                            Some(format!("credit from {} to {}", t.from_account, t.to_account))
                        }
                        Some(_) => None,
                    }
                }
                ProductKind::Membership { plan, days } => match o.periods.as_slice() {
                    _ if d.kind != "membership" => Some(format!("delivered as {}", d.kind)),
                    [p] if p.days == days * o.quantity && p.plan == *plan && p.user_id == o.user_id => None,
                    [p] => Some(format!(
                        "a period of {} days of {} for {}; the product grants {} × {days} days of {plan} to {}",
                        p.days, p.plan, p.user_id, o.quantity, o.user_id
                    )),
                    periods => Some(format!("{} membership periods", periods.len())),
                },
                ProductKind::CardKey => match o.card_keys.as_slice() {
                    _ if d.kind == BY_HAND => None,
                    _ if d.kind != "card_key" => Some(format!("delivered as {}", d.kind)),
                    [k] if k.sku == o.sku => None,
                    [k] => Some(format!("card key {} is of {}", k.id, k.sku)),
                    keys => Some(format!("{} card keys", keys.len())),
                },
                ProductKind::External { .. } if d.kind == "external" || d.kind == BY_HAND => None,
                ProductKind::External { .. } => Some(format!("delivered as {}", d.kind)),
            };
            if let Some(problem) = problem {
                self.grant.violation(format!("{}: {problem}", o.order_no));
            }
        }
        let transfer = o.transfers.iter().find(|t| t.id == format!("order:{}:compensation", o.id));
        let days = o.adjustments.iter().find(|a| a.id == format!("compensation:{}", o.id));
        let problem = match (&product.compensation, transfer, days) {
            (_, None, None) => None,
            (Some(Compensation::Percent { percent }), Some(t), None) => match &product.kind {
                ProductKind::CurrencyPack { virtual_currency: vc, units } => {
                    let due = (units * o.quantity * percent / 100).max(1);
                    (t.amount != due || t.currency != *vc || t.to_account != wallet(vc)).then(|| {
                        format!(
                            "compensation of {} {} to {}, the rule gives {due} {vc}",
                            t.amount, t.currency, t.to_account
                        )
                    })
                }
                _ => Some("percent compensation on goods that are not a currency pack".into()),
            },
            (Some(Compensation::Units { currency, units }), Some(t), None) => {
                (t.amount != *units || t.currency != *currency || t.to_account != wallet(currency)).then(|| {
                    format!(
                        "compensation of {} {} to {}, the rule gives {units} {currency}",
                        t.amount, t.currency, t.to_account
                    )
                })
            }
            (Some(Compensation::Days { days }), None, Some(a)) => match &product.kind {
                ProductKind::Membership { plan, .. } => (a.days != *days || a.plan != *plan || a.user_id != o.user_id)
                    .then(|| {
                        format!(
                            "compensation of {} days of {} for {}, the rule gives {days}",
                            a.days, a.plan, a.user_id
                        )
                    }),
                _ => Some("days of compensation on goods that are not a membership".into()),
            },
            (rule, _, _) => Some(format!("compensation that is not the product's rule ({rule:?})")),
        };
        if let Some(problem) = problem {
            self.grant.violation(format!("{}: {problem}", o.order_no));
        }
    }
}

/// Every transfer and membership change naming the order has a cause that permits it: a
/// credit needs a delivery of a currency pack, compensation a late delivery (or a person's
/// recorded grant), and what a refund takes back or gives back needs that refund.
fn permits(o: &OrderFacts, product: &Product, cause: &mut Check) {
    let compensated: Vec<_> = o.events.iter().filter(|e| e.kind == "compensated").collect();
    let compensation_permitted = match compensated.as_slice() {
        [event] if event.cause == "by_hand" => o.compensate_actions > 0,
        [_] => {
            let late = match (&o.delivery, o.deliver_by_ms) {
                (Some(d), Some(due)) => d.delivered_at_ms > due,
                _ => false,
            };
            late && o.payment.as_ref().is_some_and(|p| p.late == 0)
        }
        _ => false,
    };
    let refund_of = |id: &str| o.refunds.iter().any(|r| r.id == id);
    for t in &o.transfers {
        let permitted = if t.id == format!("order:{}:credit", o.id) {
            o.delivery.is_some() && matches!(product.kind, ProductKind::CurrencyPack { .. })
        } else if t.id == format!("order:{}:compensation", o.id) {
            compensation_permitted
        } else if let Some(rest) = t.id.strip_prefix("refund:") {
            rest.rsplit_once(':').is_some_and(|(refund, what)| {
                matches!(what, "reclaim" | "loss" | "restore" | "loss_reversed") && refund_of(refund)
            })
        } else {
            false
        };
        if !permitted {
            cause.violation(format!(
                "{}: transfer {} of {} {} has no cause that permits it",
                o.order_no, t.id, t.amount, t.currency
            ));
        }
    }
    for a in &o.adjustments {
        let permitted = if a.id == format!("compensation:{}", o.id) {
            compensation_permitted
        } else if let Some(refund) = a.id.strip_prefix("refund:").or_else(|| a.id.strip_prefix("restore:")) {
            refund_of(refund)
        } else {
            false
        };
        if !permitted {
            cause.violation(format!(
                "{}: membership change {} of {} days has no cause that permits it",
                o.order_no, a.id, a.days
            ));
        }
    }
}
