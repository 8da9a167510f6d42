//! A charge's outcome, defined once for the audit, the per-period proof and the figures.
//!
//! A charge that is its order's payment (`matched`, `late`) ends with its order: delivered,
//! refunded in full, or its money owed or on its way back (`refunding`). Any other charge
//! ends when its own full refund is requested (`refunding`) and done (`refunded`). Until
//! then it is with a person whose clock has not run out (`attention`), or inside its bound
//! (`pending`): the order's delivery deadline, or for an unknown order the park window,
//! each plus the grace the audit allows a polled job. Past it, with no person in time, it
//! has no outcome (`none`): the audit fails, and the figures count it dropped.
//!
//! The SQL fragments here are the definition; `audit::outcomes` checks that nothing is
//! `none`, `proof` names each charge's outcome, and `stats` counts them.

use serde::{Deserialize, Serialize};

/// What a charge has come to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Delivered,
    /// Its money back in full.
    Refunded,
    /// Its money owed back or on its way (a refund requested, not yet final).
    Refunding,
    /// With a person whose clock has not run out.
    Attention,
    /// Inside its bound: nothing is late yet.
    Pending,
    /// Past its bound with no outcome and no person in time: dropped.
    None,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Delivered,
        Outcome::Refunded,
        Outcome::Refunding,
        Outcome::Attention,
        Outcome::Pending,
        Outcome::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Refunded => "refunded",
            Outcome::Refunding => "refunding",
            Outcome::Attention => "attention",
            Outcome::Pending => "pending",
            Outcome::None => "none",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == text)
    }

    /// True when the charge has reached an end that needs nobody (delivered, or its money
    /// going or gone back): the times of these are what "time to outcome" measures.
    pub fn is_reached(self) -> bool {
        match self {
            Outcome::Delivered | Outcome::Refunded | Outcome::Refunding => true,
            Outcome::Attention | Outcome::Pending | Outcome::None => false,
        }
    }
}

/// What a polled job may take past a deadline before it counts as missed (the audit's
/// default; jobs are polled, and may queue behind others).
pub const DEADLINE_GRACE_MS_DEFAULT: i64 = 120_000;

/// The bounds a charge's outcome is judged by (the audit's options, from configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// What a polled job may take past a deadline before the charge counts as late.
    pub deadline_grace_ms: i64,
    /// How long a charge for an unknown order waits for its order before its refund.
    pub park_window_ms: i64,
}

/// The SQL parameters the fragments below name, computed from `now_ms`, in the order
/// [`charge_sql`] expects them (`$1` now, `$2` the delivery cut, `$3` the park cut).
pub fn params(bounds: &Bounds, now_ms: i64) -> [i64; 3] {
    [now_ms, now_ms - bounds.deadline_grace_ms, now_ms - bounds.park_window_ms - bounds.deadline_grace_ms]
}

/// True (SQL) when an attention item matching `on` is open and its clock (at `now`) has
/// not run out.
pub fn open_in_clock(on: &str, now: &str) -> String {
    format!("EXISTS (SELECT 1 FROM attention_items a WHERE {on} AND a.resolved_at_ms IS NULL AND a.due_at_ms >= {now})")
}

/// The outcome (SQL text) of the payment of the order aliased `o`: items on the order
/// count; `deliver_cut` is now minus the grace.
pub fn order_payment_sql(now: &str, deliver_cut: &str) -> String {
    format!(
        "CASE WHEN o.status = 'delivered' THEN 'delivered' WHEN o.status = 'refunded' THEN 'refunded' \
              WHEN o.status IN ('refund_due', 'refunding') THEN 'refunding' WHEN {} THEN 'attention' \
              WHEN o.status = 'paid' AND o.deliver_by_ms > {deliver_cut} THEN 'pending' ELSE 'none' END",
        open_in_clock("a.order_id = o.id", now)
    )
}

/// The outcome (SQL text) of the charge aliased `c` that is not an order's payment: its
/// own full refund; `park_cut` is now minus the park window and the grace.
pub fn charge_refund_sql(now: &str, park_cut: &str) -> String {
    format!(
        "CASE WHEN EXISTS (SELECT 1 FROM refunds r WHERE r.charge_id = c.id AND r.state = 'succeeded') THEN 'refunded' \
              WHEN EXISTS (SELECT 1 FROM refunds r WHERE r.charge_id = c.id AND r.state <> 'failed') THEN 'refunding' \
              WHEN {} THEN 'attention' \
              WHEN c.class = 'unknown_order' AND c.recorded_at_ms > {park_cut} THEN 'pending' ELSE 'none' END",
        open_in_clock("a.charge_id = c.id", now)
    )
}

/// The outcome (SQL text) of any charge aliased `c`, with its order (if any) joined as
/// `o` (`charges c LEFT JOIN orders o ON o.id = c.order_id`). Parameters: [`params`].
pub fn charge_sql() -> String {
    format!(
        "CASE WHEN c.class IN ('matched', 'late') THEN {} ELSE {} END",
        order_payment_sql("$1", "$2"),
        charge_refund_sql("$1", "$3")
    )
}

/// When the charge aliased `c` (order `o`) reached its outcome (SQL, NULL when it has not):
/// its order's first delivery or refund decision, or its own first refund that did not fail.
pub fn reached_at_sql() -> &'static str {
    "CASE WHEN c.class IN ('matched', 'late') THEN \
         (SELECT MIN(e.at_ms) FROM order_events e WHERE e.order_id = c.order_id \
            AND e.kind IN ('delivered', 'refund_due', 'refund_requested')) \
     ELSE (SELECT MIN(r.created_at_ms) FROM refunds r WHERE r.charge_id = c.id AND r.state <> 'failed') END"
}

/// The charge's deadline (SQL): its order's delivery deadline, or for a charge refunded on
/// its own, when it was recorded (plus the park window for an unknown order). A charge is
/// late when its outcome came after its deadline plus the grace (`$2`-style cut applied by
/// the caller).
pub fn deadline_sql(park_window_ms: i64) -> String {
    format!(
        "CASE WHEN c.class IN ('matched', 'late') THEN COALESCE(o.deliver_by_ms, c.recorded_at_ms) \
              WHEN c.class = 'unknown_order' THEN c.recorded_at_ms + {park_window_ms} ELSE c.recorded_at_ms END"
    )
}

/// When the provider says the charge was paid, else when zerodrop recorded it (SQL): the
/// time that places a charge in a period.
pub const CONFIRMED_AT_SQL: &str = "COALESCE(c.paid_at_ms, c.recorded_at_ms)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reached_is_the_end_states() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        let reached: Vec<_> = Outcome::ALL.into_iter().filter(|o| o.is_reached()).collect();
        assert_eq!(reached, [Outcome::Delivered, Outcome::Refunded, Outcome::Refunding]);
    }

    #[test]
    fn parameters_appear_in_order() {
        // SQLite numbers `$N` in the order they first appear.
        let sql = charge_sql();
        let first = |p: &str| sql.find(p).unwrap();
        assert!(first("$1") < first("$2") && first("$2") < first("$3"), "{sql}");
    }
}
