//! The order status machine.
//!
//! An order's status is never written on its own: every change is an appended event,
//! and the stored status must always equal the fold of those events. `apply` is the
//! single place where a transition is allowed or refused; its matches are exhaustive
//! (no catch-all arm) so a new status or event cannot slip through unconsidered.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where an order stands in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Created; the user may pay until the order expires.
    AwaitingPayment,
    /// The provider confirmed payment; delivery has not completed yet (waiting for stock,
    /// or for the platform's delivery endpoint).
    Paid,
    /// The goods reached the user.
    Delivered,
    /// Closed at the provider without payment.
    Expired,
    /// Paid, and the money must go back (late payment or missed deadline under a refund
    /// policy, or a refund that failed and waits for a person).
    RefundDue,
    /// A full refund is with the provider.
    Refunding,
    /// The provider returned all the money.
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::AwaitingPayment,
        OrderStatus::Paid,
        OrderStatus::Delivered,
        OrderStatus::Expired,
        OrderStatus::RefundDue,
        OrderStatus::Refunding,
        OrderStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::AwaitingPayment => "awaiting_payment",
            OrderStatus::Paid => "paid",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Expired => "expired",
            OrderStatus::RefundDue => "refund_due",
            OrderStatus::Refunding => "refunding",
            OrderStatus::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// True once nothing more will happen to the order without a person or a new request.
    pub fn is_settled(self) -> bool {
        match self {
            OrderStatus::Delivered | OrderStatus::Expired | OrderStatus::Refunded => true,
            OrderStatus::AwaitingPayment | OrderStatus::Paid | OrderStatus::RefundDue | OrderStatus::Refunding => false,
        }
    }

    /// True when a captured payment has reached one of its outcomes (delivered, or its
    /// money owed back, on its way back, or back).
    pub fn is_payment_outcome(self) -> bool {
        match self {
            OrderStatus::Delivered | OrderStatus::RefundDue | OrderStatus::Refunding | OrderStatus::Refunded => true,
            OrderStatus::AwaitingPayment | OrderStatus::Paid | OrderStatus::Expired => false,
        }
    }

    /// True when the provider holds (or held) the user's money for this order.
    pub fn is_paid(self) -> bool {
        match self {
            OrderStatus::Paid
            | OrderStatus::Delivered
            | OrderStatus::RefundDue
            | OrderStatus::Refunding
            | OrderStatus::Refunded => true,
            OrderStatus::AwaitingPayment | OrderStatus::Expired => false,
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to an order. Some events move the status; the rest are the timeline's
/// evidence (a query answered, a delivery attempt, a notification refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Created,
    PaymentCaptured,
    Delivered,
    Expired,
    RefundDue,
    RefundRequested,
    RefundSucceeded,
    RefundFailed,
    PartialRefundRequested,
    PartialRefundSucceeded,
    PartialRefundFailed,
    GoodsReclaimed,
    AwaitingStock,
    DeliveryAttempted,
    DeliveryAccepted,
    /// An attempt whose answer never came (a timeout, a connection broken after the
    /// request went out): the endpoint may or may not have delivered.
    DeliveryUnknown,
    DeliveryFailed,
    DeadlineMissed,
    Compensated,
    AttentionRaised,
    AttentionCleared,
    ProviderQueried,
    ProviderCloseRequested,
    NotificationRejected,
    RefundNotified,
    /// A trade the provider reports as paid was recorded as a charge on this order
    /// (evidence; the class says which policy ends it).
    ChargeRecorded,
    /// A charge that is not the order's payment (a second trade, a wrong amount or
    /// provider) is being refunded in full; the order's own status is untouched.
    ChargeRefundRequested,
    ChargeRefundSucceeded,
    ChargeRefundFailed,
    /// A refund's outcome is not known (timeouts, or no final answer within its bound):
    /// it still counts against what can be refunded, and it is still asked about.
    RefundUnknown,
    /// The provider refused a refund: what the refund took back was given back.
    GoodsRestored,
    /// A person acted (resolved an attention item): who, why, and what they did.
    ActionTaken,
    /// A delivery confirmation already accepted came again (a replay, or an endpoint
    /// resending): refused, kept as evidence, nothing else changed.
    ConfirmationReplayed,
}

impl EventKind {
    pub const ALL: [EventKind; 33] = [
        EventKind::Created,
        EventKind::PaymentCaptured,
        EventKind::Delivered,
        EventKind::Expired,
        EventKind::RefundDue,
        EventKind::RefundRequested,
        EventKind::RefundSucceeded,
        EventKind::RefundFailed,
        EventKind::PartialRefundRequested,
        EventKind::PartialRefundSucceeded,
        EventKind::PartialRefundFailed,
        EventKind::GoodsReclaimed,
        EventKind::AwaitingStock,
        EventKind::DeliveryAttempted,
        EventKind::DeliveryAccepted,
        EventKind::DeliveryUnknown,
        EventKind::DeliveryFailed,
        EventKind::DeadlineMissed,
        EventKind::Compensated,
        EventKind::AttentionRaised,
        EventKind::AttentionCleared,
        EventKind::ProviderQueried,
        EventKind::ProviderCloseRequested,
        EventKind::NotificationRejected,
        EventKind::RefundNotified,
        EventKind::ChargeRecorded,
        EventKind::ChargeRefundRequested,
        EventKind::ChargeRefundSucceeded,
        EventKind::ChargeRefundFailed,
        EventKind::RefundUnknown,
        EventKind::GoodsRestored,
        EventKind::ActionTaken,
        EventKind::ConfirmationReplayed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::PaymentCaptured => "payment_captured",
            EventKind::Delivered => "delivered",
            EventKind::Expired => "expired",
            EventKind::RefundDue => "refund_due",
            EventKind::RefundRequested => "refund_requested",
            EventKind::RefundSucceeded => "refund_succeeded",
            EventKind::RefundFailed => "refund_failed",
            EventKind::PartialRefundRequested => "partial_refund_requested",
            EventKind::PartialRefundSucceeded => "partial_refund_succeeded",
            EventKind::PartialRefundFailed => "partial_refund_failed",
            EventKind::GoodsReclaimed => "goods_reclaimed",
            EventKind::AwaitingStock => "awaiting_stock",
            EventKind::DeliveryAttempted => "delivery_attempted",
            EventKind::DeliveryAccepted => "delivery_accepted",
            EventKind::DeliveryUnknown => "delivery_unknown",
            EventKind::DeliveryFailed => "delivery_failed",
            EventKind::DeadlineMissed => "deadline_missed",
            EventKind::Compensated => "compensated",
            EventKind::AttentionRaised => "attention_raised",
            EventKind::AttentionCleared => "attention_cleared",
            EventKind::ProviderQueried => "provider_queried",
            EventKind::ProviderCloseRequested => "provider_close_requested",
            EventKind::NotificationRejected => "notification_rejected",
            EventKind::RefundNotified => "refund_notified",
            EventKind::ChargeRecorded => "charge_recorded",
            EventKind::ChargeRefundRequested => "charge_refund_requested",
            EventKind::ChargeRefundSucceeded => "charge_refund_succeeded",
            EventKind::ChargeRefundFailed => "charge_refund_failed",
            EventKind::RefundUnknown => "refund_unknown",
            EventKind::GoodsRestored => "goods_restored",
            EventKind::ActionTaken => "action_taken",
            EventKind::ConfirmationReplayed => "confirmation_replayed",
        }
    }

    pub fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Who caused an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The payment provider (a notification or a query answer).
    Provider,
    /// zerodrop itself (a job, a deadline).
    System,
    /// The end user.
    User,
    /// A support agent.
    Operator,
    /// The platform's back end, through the merchant API.
    Merchant,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Provider => "provider",
            Actor::System => "system",
            Actor::User => "user",
            Actor::Operator => "operator",
            Actor::Merchant => "merchant",
        }
    }

    pub fn parse(text: &str) -> Option<Actor> {
        [Actor::Provider, Actor::System, Actor::User, Actor::Operator, Actor::Merchant]
            .into_iter()
            .find(|a| a.as_str() == text)
    }
}

/// An order's folded state: its lifecycle status and whether a person must look at it.
/// Attention is orthogonal to the status: an order flagged for a forged notification can
/// still be paid by a genuine query answer, and a person still sees why it was flagged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderState {
    pub status: OrderStatus,
    pub attention: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("an order's first event must be `created`, not `{0}`")]
    NotCreatedFirst(&'static str),
    #[error("order already created")]
    CreatedTwice,
    #[error("event `{event}` is not allowed in status `{status}`")]
    NotAllowed { event: &'static str, status: &'static str },
}

/// Applies one event. `None` is the state before the order exists.
pub fn apply(state: Option<OrderState>, kind: EventKind) -> Result<OrderState, TransitionError> {
    let Some(state) = state else {
        return match kind {
            EventKind::Created => Ok(OrderState { status: OrderStatus::AwaitingPayment, attention: false }),
            other => Err(TransitionError::NotCreatedFirst(other.as_str())),
        };
    };
    // Attention is a flag beside the status: only these two events touch it.
    let attention = if kind == EventKind::AttentionRaised {
        true
    } else if kind == EventKind::AttentionCleared {
        false
    } else {
        state.attention
    };
    match next_status(state.status, kind)? {
        Some(status) => Ok(OrderState { status, attention }),
        None => Err(TransitionError::NotAllowed { event: kind.as_str(), status: state.status.as_str() }),
    }
}

/// The status after `kind` in `status`, or `None` when the event is not allowed there.
fn next_status(status: OrderStatus, kind: EventKind) -> Result<Option<OrderStatus>, TransitionError> {
    use OrderStatus::{AwaitingPayment, Delivered, Expired, Paid, RefundDue, Refunded, Refunding};
    let to = |next: OrderStatus| Ok(Some(next));
    let stay = Ok(Some(status));
    let refuse = Ok(None);
    match kind {
        EventKind::Created => Err(TransitionError::CreatedTwice),
        EventKind::PaymentCaptured => match status {
            // A capture on an expired order is a late payment; policy decides what follows.
            AwaitingPayment | Expired => to(Paid),
            Paid | Delivered | RefundDue | Refunding | Refunded => refuse,
        },
        EventKind::Expired => match status {
            AwaitingPayment => to(Expired),
            Paid | Delivered | Expired | RefundDue | Refunding | Refunded => refuse,
        },
        EventKind::Delivered => match status {
            Paid => to(Delivered),
            // Once money is owed back or on its way, the goods may not also be delivered.
            AwaitingPayment | Delivered | Expired | RefundDue | Refunding | Refunded => refuse,
        },
        EventKind::RefundDue => match status {
            Paid => to(RefundDue),
            AwaitingPayment | Delivered | Expired | RefundDue | Refunding | Refunded => refuse,
        },
        EventKind::RefundRequested => match status {
            Paid | Delivered | RefundDue => to(Refunding),
            AwaitingPayment | Expired | Refunding | Refunded => refuse,
        },
        EventKind::RefundSucceeded => match status {
            Refunding => to(Refunded),
            AwaitingPayment | Paid | Delivered | Expired | RefundDue | Refunded => refuse,
        },
        EventKind::RefundFailed => match status {
            // The money is still owed; a person decides what next.
            Refunding => to(RefundDue),
            AwaitingPayment | Paid | Delivered | Expired | RefundDue | Refunded => refuse,
        },
        EventKind::PartialRefundRequested => match status {
            Delivered => stay,
            AwaitingPayment | Paid | Expired | RefundDue | Refunding | Refunded => refuse,
        },
        // A partial refund finishes whatever happened to the order meanwhile (a later full
        // refund, say): its outcome is always recorded.
        EventKind::PartialRefundSucceeded | EventKind::PartialRefundFailed => match status {
            Delivered | RefundDue | Refunding | Refunded => stay,
            AwaitingPayment | Paid | Expired => refuse,
        },
        EventKind::GoodsReclaimed => match status {
            Delivered | Refunding => stay,
            AwaitingPayment | Paid | Expired | RefundDue | Refunded => refuse,
        },
        EventKind::Compensated => match status {
            Delivered => stay,
            AwaitingPayment | Paid | Expired | RefundDue | Refunding | Refunded => refuse,
        },
        EventKind::AwaitingStock
        | EventKind::DeliveryAttempted
        | EventKind::DeliveryAccepted
        | EventKind::DeliveryUnknown
        | EventKind::DeliveryFailed
        | EventKind::DeadlineMissed => match status {
            // Delivery evidence exists only for paid orders (attempts may still report
            // after the order moved on, and are kept).
            Paid | Delivered | RefundDue | Refunding | Refunded => stay,
            AwaitingPayment | Expired => refuse,
        },
        EventKind::RefundNotified | EventKind::RefundUnknown => match status {
            Paid | Delivered | RefundDue | Refunding | Refunded => stay,
            AwaitingPayment | Expired => refuse,
        },
        EventKind::GoodsRestored => match status {
            // A refused full refund of a delivered order gives the goods back: the order
            // is delivered again (its one delivery row still stands).
            RefundDue => to(Delivered),
            Delivered => stay,
            AwaitingPayment | Paid | Expired | Refunding | Refunded => refuse,
        },
        EventKind::AttentionRaised
        | EventKind::AttentionCleared
        | EventKind::ProviderQueried
        | EventKind::ProviderCloseRequested
        | EventKind::NotificationRejected
        | EventKind::ChargeRecorded
        | EventKind::ChargeRefundRequested
        | EventKind::ChargeRefundSucceeded
        | EventKind::ChargeRefundFailed
        | EventKind::ActionTaken
        | EventKind::ConfirmationReplayed => stay,
    }
}

/// Folds a sequence of events into the state they describe.
pub fn fold<I: IntoIterator<Item = EventKind>>(events: I) -> Result<Option<OrderState>, TransitionError> {
    let mut state = None;
    for kind in events {
        state = Some(apply(state, kind)?);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_happy_path_folds_to_delivered() {
        let state =
            fold([EventKind::Created, EventKind::ProviderQueried, EventKind::PaymentCaptured, EventKind::Delivered]);
        assert_eq!(state, Ok(Some(OrderState { status: OrderStatus::Delivered, attention: false })));
    }

    #[test]
    fn a_second_capture_or_delivery_is_refused() {
        let paid = fold([EventKind::Created, EventKind::PaymentCaptured, EventKind::Delivered]).unwrap();
        assert!(apply(paid, EventKind::PaymentCaptured).is_err());
        assert!(apply(paid, EventKind::Delivered).is_err());
    }

    #[test]
    fn a_late_payment_reopens_an_expired_order() {
        let state = fold([EventKind::Created, EventKind::Expired, EventKind::PaymentCaptured, EventKind::RefundDue]);
        assert_eq!(state.unwrap().unwrap().status, OrderStatus::RefundDue);
    }

    #[test]
    fn refunds_move_a_paid_order_to_refunded_and_never_back_to_delivery() {
        let state = fold([
            EventKind::Created,
            EventKind::PaymentCaptured,
            EventKind::DeadlineMissed,
            EventKind::RefundDue,
            EventKind::RefundRequested,
        ])
        .unwrap();
        assert_eq!(state.unwrap().status, OrderStatus::Refunding);
        assert!(apply(state, EventKind::Delivered).is_err(), "no delivery once money is on its way back");
        assert_eq!(apply(state, EventKind::RefundFailed).unwrap().status, OrderStatus::RefundDue);
        assert_eq!(apply(state, EventKind::RefundSucceeded).unwrap().status, OrderStatus::Refunded);
        let delivered = fold([EventKind::Created, EventKind::PaymentCaptured, EventKind::Delivered]).unwrap();
        assert_eq!(apply(delivered, EventKind::PartialRefundRequested).unwrap().status, OrderStatus::Delivered);
        assert!(apply(fold([EventKind::Created]).unwrap(), EventKind::RefundRequested).is_err(), "nothing paid");
    }

    #[test]
    fn names_round_trip() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
    }

    fn any_event() -> impl Strategy<Value = EventKind> {
        proptest::sample::select(EventKind::ALL.to_vec())
    }

    proptest! {
        /// Whatever sequence of facts arrives (duplicates, reordering), applying only the
        /// events the machine accepts never records more than one capture or delivery.
        #[test]
        fn no_sequence_delivers_twice(events in proptest::collection::vec(any_event(), 0..40)) {
            let mut state = Some(apply(None, EventKind::Created).unwrap());
            let mut accepted = vec![EventKind::Created];
            for kind in events {
                if let Ok(next) = apply(state, kind) {
                    state = Some(next);
                    accepted.push(kind);
                }
            }
            let count = |kind: EventKind| accepted.iter().filter(|k| **k == kind).count();
            prop_assert!(count(EventKind::Delivered) <= 1);
            prop_assert!(count(EventKind::PaymentCaptured) <= 1);
            prop_assert!(count(EventKind::RefundSucceeded) <= 1, "a full refund completes once");
            // Never both delivered and fully refunded-before-delivery: once a refund was
            // requested, no delivery follows it.
            if let Some(first_refund) = accepted.iter().position(|k| *k == EventKind::RefundRequested) {
                prop_assert!(!accepted[first_refund..].contains(&EventKind::Delivered));
            }
            // The fold of what was accepted is the state we reached step by step.
            prop_assert_eq!(fold(accepted.iter().copied()).unwrap(), state);
        }
    }
}
