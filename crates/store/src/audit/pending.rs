//! What keeps an order moving: every order that is not settled has a queued job that will
//! move it on, or an open attention item (a person has it). Deleting the queue cannot
//! leave an order waiting forever unseen.

use super::facts::OrderFacts;
use super::Check;

/// The job kinds that move an order on from each unsettled status (see the server's
/// `jobs` module): the expiry (and the queries before it) for an unpaid order; the
/// delivery deadline (and the endpoint's delivery) for a paid one; the refund job for
/// money owed or going back.
fn kinds_for(status: &str) -> Option<&'static [&'static str]> {
    match status {
        "awaiting_payment" => Some(&["expire_order", "query_payment", "check_payment"]),
        "paid" => Some(&["deadline", "deliver_external"]),
        "refund_due" | "refunding" => Some(&["refund"]),
        _ => None,
    }
}

pub(super) struct Pending {
    check: Check,
}

impl Pending {
    pub(super) fn new() -> Pending {
        Pending {
            check: Check::new(
                "pending_has_job",
                "every order not settled has a queued job that moves it on (expiry, delivery deadline, refund) or \
                 an open attention item",
            ),
        }
    }

    pub(super) fn into_checks(self) -> Vec<Check> {
        vec![self.check]
    }

    pub(super) fn check(&mut self, o: &OrderFacts) {
        let Some(kinds) = kinds_for(&o.status) else { return };
        if o.open_items == 0 && !o.queued_jobs.iter().any(|k| kinds.contains(&k.as_str())) {
            self.check.violation(format!(
                "{}: {} with no queued {} job and no open attention item",
                o.order_no,
                o.status,
                kinds.join("/")
            ));
        }
    }
}
