//! How each charge the provider reports ended, from zerodrop's own records: the demo's
//! DROPPED figure counts charges, not payments, so a second payment, a wrong amount or a
//! payment for an order zerodrop never issued is followed to its end like any other.

use std::collections::{BTreeMap, HashMap, HashSet};
use zerodrop_sandbox::state::Charge;
use zerodrop_store::attention::Item;
use zerodrop_store::charges::{ChargeClass, ChargeRow};
use zerodrop_store::refunds::{RefundRow, RefundState};

/// How a charge ended, as far as zerodrop's records tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Its order was delivered (an order's payment).
    Delivered,
    /// All of its money went back at the provider.
    Refunded,
    /// All of it is on its way back: a refund asked for and not yet final.
    Refunding,
    /// A person has it, and their clock has not run out.
    WithPerson,
    /// None of the above: once everything settled, a dropped charge.
    Nothing,
}

impl Outcome {
    pub const ALL: [Outcome; 5] =
        [Outcome::Delivered, Outcome::Refunded, Outcome::Refunding, Outcome::WithPerson, Outcome::Nothing];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Refunded => "refunded",
            Outcome::Refunding => "refunding",
            Outcome::WithPerson => "with a person",
            Outcome::Nothing => "NO OUTCOME",
        }
    }
}

/// zerodrop's side, read once: charges by trade, order status by order number, refunds
/// by charge, and the open attention items within their clock.
pub struct Books {
    charges: HashMap<String, ChargeRow>,
    order_status: HashMap<String, String>,
    refunds: HashMap<i64, Vec<(RefundState, i64)>>,
    /// Charges and orders (by id) that an open item within its clock holds.
    held_charges: HashSet<i64>,
    held_orders: HashSet<String>,
}

impl Books {
    pub fn new(
        charges: Vec<ChargeRow>,
        order_status: HashMap<String, String>,
        refunds: &[RefundRow],
        open_items: &[Item],
        now_ms: i64,
    ) -> Books {
        let mut by_charge: HashMap<i64, Vec<(RefundState, i64)>> = HashMap::new();
        for r in refunds {
            if let Some(id) = r.charge_id {
                by_charge.entry(id).or_default().push((r.state, r.amount.minor));
            }
        }
        let in_clock: Vec<&Item> = open_items.iter().filter(|i| i.is_open() && !i.is_overdue(now_ms)).collect();
        Books {
            charges: charges.into_iter().map(|c| (c.trade_no.clone(), c)).collect(),
            order_status,
            refunds: by_charge,
            held_charges: in_clock.iter().filter_map(|i| i.charge_id).collect(),
            held_orders: in_clock.iter().filter_map(|i| i.order_id.clone()).collect(),
        }
    }

    /// zerodrop's record of a provider charge: none when zerodrop never heard of it.
    pub fn record(&self, charge: &Charge) -> Option<&ChargeRow> {
        self.charges.get(&charge.trade_no)
    }

    /// How the provider's charge ended.
    pub fn outcome(&self, charge: &Charge) -> Outcome {
        let Some(row) = self.record(charge) else { return Outcome::Nothing };
        let held = self.held_charges.contains(&row.id)
            || row.order_id.as_ref().is_some_and(|id| self.held_orders.contains(id));
        let ended = if row.class.is_order_payment() {
            match self.order_status.get(&row.order_no).map(String::as_str) {
                Some("delivered") => Some(Outcome::Delivered),
                Some("refunded") => Some(Outcome::Refunded),
                Some("refund_due" | "refunding") => Some(Outcome::Refunding),
                _ => None,
            }
        } else {
            // A charge that is no order's payment ends only when all of it goes back.
            let refunds = self.refunds.get(&row.id).map(Vec::as_slice).unwrap_or_default();
            let settled: i64 = refunds.iter().filter(|(s, _)| *s == RefundState::Succeeded).map(|(_, m)| m).sum();
            let asked: i64 = refunds.iter().filter(|(s, _)| *s != RefundState::Failed).map(|(_, m)| m).sum();
            if settled >= row.amount.minor {
                Some(Outcome::Refunded)
            } else if asked >= row.amount.minor {
                Some(Outcome::Refunding)
            } else {
                None
            }
        };
        ended.unwrap_or(if held { Outcome::WithPerson } else { Outcome::Nothing })
    }
}

/// Charges by class (zerodrop's, or `unrecorded`), each with how many ended which way.
#[derive(Default)]
pub struct Tally {
    pub by_class: BTreeMap<&'static str, BTreeMap<Outcome, u64>>,
}

/// Provider charges zerodrop never recorded are shown under this class.
pub const UNRECORDED: &str = "not recorded by zerodrop";

impl Tally {
    pub fn of(books: &Books, provider_charges: &[Charge]) -> Tally {
        let mut tally = Tally::default();
        for charge in provider_charges {
            let class = books.record(charge).map_or(UNRECORDED, |c| c.class.as_str());
            *tally.by_class.entry(class).or_default().entry(books.outcome(charge)).or_default() += 1;
        }
        tally
    }

    pub fn count(&self, class: ChargeClass) -> u64 {
        self.by_class.get(class.as_str()).map_or(0, |o| o.values().sum())
    }

    pub fn ended(&self, outcome: Outcome) -> u64 {
        self.by_class.values().filter_map(|o| o.get(&outcome)).sum()
    }

    /// Charges of `class` that ended as `outcome`.
    pub fn of_class(&self, class: &str, outcome: Outcome) -> u64 {
        self.by_class.get(class).and_then(|o| o.get(&outcome)).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerodrop_domain::money::{Currency, Money};

    const ORDER_ID: &str = "01J0000000000000000000000A";

    fn row(id: i64, trade_no: &str, class: ChargeClass, minor: i64) -> ChargeRow {
        ChargeRow {
            id,
            provider: "sandbox".into(),
            trade_no: trade_no.into(),
            order_no: "N1".into(),
            order_id: (class != ChargeClass::UnknownOrder).then(|| ORDER_ID.into()),
            amount: Money::new(minor, Currency::Cny),
            paid_at_ms: Some(0),
            class,
            evidence: serde_json::Value::Null,
            recorded_at_ms: 0,
            classified_at_ms: 0,
        }
    }

    fn at_provider(trade_no: &str, minor: i64) -> Charge {
        Charge { trade_no: trade_no.into(), out_trade_no: "N1".into(), amount_minor: minor, paid_at_ms: 0, late: false }
    }

    fn refund(charge_id: i64, state: RefundState, minor: i64) -> RefundRow {
        RefundRow {
            id: format!("r{charge_id}{minor}"),
            order_id: None,
            charge_id: Some(charge_id),
            request_no: "R".into(),
            amount: Money::new(minor, Currency::Cny),
            full: true,
            origin: "charge".into(),
            reason: "test".into(),
            state,
            detail: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            finished_at_ms: None,
        }
    }

    fn item(charge_id: Option<i64>, order_id: Option<&str>, due_at_ms: i64) -> Item {
        Item {
            id: 1,
            order_id: order_id.map(Into::into),
            charge_id,
            notification_id: None,
            job_id: None,
            reason: "test".into(),
            at_stake_minor: 600,
            currency: Some("CNY".into()),
            owner: None,
            detail: serde_json::Value::Null,
            created_at_ms: 0,
            due_at_ms,
            resolved_at_ms: None,
            resolution: None,
        }
    }

    fn books(rows: Vec<ChargeRow>, status: &str, refunds: &[RefundRow], items: &[Item]) -> Books {
        Books::new(rows, HashMap::from([("N1".to_owned(), status.to_owned())]), refunds, items, 1_000)
    }

    #[test]
    fn an_order_payment_ends_with_its_order() {
        let rows = || vec![row(1, "T1", ChargeClass::Matched, 600)];
        let t1 = at_provider("T1", 600);
        assert_eq!(books(rows(), "delivered", &[], &[]).outcome(&t1), Outcome::Delivered);
        assert_eq!(books(rows(), "refunded", &[], &[]).outcome(&t1), Outcome::Refunded);
        assert_eq!(books(rows(), "refunding", &[], &[]).outcome(&t1), Outcome::Refunding);
        assert_eq!(books(rows(), "paid", &[], &[]).outcome(&t1), Outcome::Nothing, "paid and left there");
        let in_clock = [item(None, Some(ORDER_ID), 2_000)];
        assert_eq!(books(rows(), "paid", &[], &in_clock).outcome(&t1), Outcome::WithPerson);
        let overdue = [item(None, Some(ORDER_ID), 999)];
        assert_eq!(books(rows(), "paid", &[], &overdue).outcome(&t1), Outcome::Nothing, "a person out of time");
    }

    #[test]
    fn another_charge_ends_only_when_all_of_it_goes_back() {
        let rows = || vec![row(1, "T1", ChargeClass::Matched, 600), row(2, "T2", ChargeClass::DuplicateTrade, 600)];
        let t2 = at_provider("T2", 600);
        // The order's delivery is not the second payment's outcome.
        assert_eq!(books(rows(), "delivered", &[], &[]).outcome(&t2), Outcome::Nothing);
        let done = [refund(2, RefundState::Succeeded, 600)];
        assert_eq!(books(rows(), "delivered", &done, &[]).outcome(&t2), Outcome::Refunded);
        let going = [refund(2, RefundState::Processing, 600)];
        assert_eq!(books(rows(), "delivered", &going, &[]).outcome(&t2), Outcome::Refunding);
        let failed = [refund(2, RefundState::Failed, 600)];
        assert_eq!(books(rows(), "delivered", &failed, &[]).outcome(&t2), Outcome::Nothing);
        let part = [refund(2, RefundState::Succeeded, 300)];
        assert_eq!(books(rows(), "delivered", &part, &[]).outcome(&t2), Outcome::Nothing, "half back is not an end");
        let held = [item(Some(2), Some(ORDER_ID), 2_000)];
        assert_eq!(books(rows(), "delivered", &failed, &held).outcome(&t2), Outcome::WithPerson);
    }

    #[test]
    fn a_charge_zerodrop_never_recorded_is_dropped_and_tallied_apart() {
        let b = books(vec![row(1, "T1", ChargeClass::Matched, 600)], "delivered", &[], &[]);
        let charges = [at_provider("T1", 600), at_provider("T9", 100)];
        assert_eq!(b.outcome(&charges[1]), Outcome::Nothing);
        let tally = Tally::of(&b, &charges);
        assert_eq!(tally.count(ChargeClass::Matched), 1);
        assert_eq!(tally.of_class(UNRECORDED, Outcome::Nothing), 1);
        assert_eq!((tally.ended(Outcome::Delivered), tally.ended(Outcome::Nothing)), (1, 1));
    }
}
