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
    /// The provider confirmed payment; delivery has not completed yet.
    Paid,
    /// The goods reached the user.
    Delivered,
    /// Closed at the provider without payment.
    Expired,
    /// Paid but must be refunded (late payment under a refund policy); a refund job is stored.
    RefundDue,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::AwaitingPayment,
        OrderStatus::Paid,
        OrderStatus::Delivered,
        OrderStatus::Expired,
        OrderStatus::RefundDue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::AwaitingPayment => "awaiting_payment",
            OrderStatus::Paid => "paid",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Expired => "expired",
            OrderStatus::RefundDue => "refund_due",
        }
    }

    pub fn parse(text: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// True once the order needs nothing more from zerodrop's automation.
    pub fn is_settled(self) -> bool {
        match self {
            OrderStatus::Delivered | OrderStatus::Expired | OrderStatus::RefundDue => true,
            OrderStatus::AwaitingPayment | OrderStatus::Paid => false,
        }
    }

    /// True when a captured payment has reached one of its outcomes.
    pub fn is_payment_outcome(self) -> bool {
        match self {
            OrderStatus::Delivered | OrderStatus::RefundDue => true,
            OrderStatus::AwaitingPayment | OrderStatus::Paid | OrderStatus::Expired => false,
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to an order. Some events move the status; the rest are the
/// timeline's evidence (a query answered, a notification refused) and leave it alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Created,
    PaymentCaptured,
    Delivered,
    Expired,
    RefundDue,
    AttentionRaised,
    AttentionCleared,
    ProviderQueried,
    ProviderCloseRequested,
    NotificationRejected,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::Created,
        EventKind::PaymentCaptured,
        EventKind::Delivered,
        EventKind::Expired,
        EventKind::RefundDue,
        EventKind::AttentionRaised,
        EventKind::AttentionCleared,
        EventKind::ProviderQueried,
        EventKind::ProviderCloseRequested,
        EventKind::NotificationRejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::PaymentCaptured => "payment_captured",
            EventKind::Delivered => "delivered",
            EventKind::Expired => "expired",
            EventKind::RefundDue => "refund_due",
            EventKind::AttentionRaised => "attention_raised",
            EventKind::AttentionCleared => "attention_cleared",
            EventKind::ProviderQueried => "provider_queried",
            EventKind::ProviderCloseRequested => "provider_close_requested",
            EventKind::NotificationRejected => "notification_rejected",
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
        [
            Actor::Provider,
            Actor::System,
            Actor::User,
            Actor::Operator,
            Actor::Merchant,
        ]
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
    NotAllowed {
        event: &'static str,
        status: &'static str,
    },
}

/// Applies one event. `None` is the state before the order exists.
pub fn apply(state: Option<OrderState>, kind: EventKind) -> Result<OrderState, TransitionError> {
    let Some(state) = state else {
        return match kind {
            EventKind::Created => Ok(OrderState {
                status: OrderStatus::AwaitingPayment,
                attention: false,
            }),
            other => Err(TransitionError::NotCreatedFirst(other.as_str())),
        };
    };
    let refuse = || TransitionError::NotAllowed {
        event: kind.as_str(),
        status: state.status.as_str(),
    };
    let with_status = |status| {
        Ok(OrderState {
            status,
            attention: state.attention,
        })
    };
    match kind {
        EventKind::Created => Err(TransitionError::CreatedTwice),
        EventKind::PaymentCaptured => match state.status {
            // A capture on an expired order is a late payment; policy decides what follows.
            OrderStatus::AwaitingPayment | OrderStatus::Expired => with_status(OrderStatus::Paid),
            OrderStatus::Paid | OrderStatus::Delivered | OrderStatus::RefundDue => Err(refuse()),
        },
        EventKind::Delivered => match state.status {
            OrderStatus::Paid => with_status(OrderStatus::Delivered),
            OrderStatus::AwaitingPayment
            | OrderStatus::Delivered
            | OrderStatus::Expired
            | OrderStatus::RefundDue => Err(refuse()),
        },
        EventKind::RefundDue => match state.status {
            OrderStatus::Paid => with_status(OrderStatus::RefundDue),
            OrderStatus::AwaitingPayment
            | OrderStatus::Delivered
            | OrderStatus::Expired
            | OrderStatus::RefundDue => Err(refuse()),
        },
        EventKind::Expired => match state.status {
            OrderStatus::AwaitingPayment => with_status(OrderStatus::Expired),
            OrderStatus::Paid
            | OrderStatus::Delivered
            | OrderStatus::Expired
            | OrderStatus::RefundDue => Err(refuse()),
        },
        EventKind::AttentionRaised => Ok(OrderState {
            status: state.status,
            attention: true,
        }),
        EventKind::AttentionCleared => Ok(OrderState {
            status: state.status,
            attention: false,
        }),
        EventKind::ProviderQueried
        | EventKind::ProviderCloseRequested
        | EventKind::NotificationRejected => Ok(state),
    }
}

/// Folds a sequence of events into the state they describe.
pub fn fold<I: IntoIterator<Item = EventKind>>(
    events: I,
) -> Result<Option<OrderState>, TransitionError> {
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
        let state = fold([
            EventKind::Created,
            EventKind::ProviderQueried,
            EventKind::PaymentCaptured,
            EventKind::Delivered,
        ]);
        assert_eq!(
            state,
            Ok(Some(OrderState {
                status: OrderStatus::Delivered,
                attention: false
            }))
        );
    }

    #[test]
    fn a_second_capture_or_delivery_is_refused() {
        let paid = fold([
            EventKind::Created,
            EventKind::PaymentCaptured,
            EventKind::Delivered,
        ])
        .unwrap();
        assert!(apply(paid, EventKind::PaymentCaptured).is_err());
        assert!(apply(paid, EventKind::Delivered).is_err());
    }

    #[test]
    fn a_late_payment_reopens_an_expired_order() {
        let state = fold([
            EventKind::Created,
            EventKind::Expired,
            EventKind::PaymentCaptured,
            EventKind::RefundDue,
        ]);
        assert_eq!(state.unwrap().unwrap().status, OrderStatus::RefundDue);
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
            let deliveries = accepted.iter().filter(|k| **k == EventKind::Delivered).count();
            let captures = accepted.iter().filter(|k| **k == EventKind::PaymentCaptured).count();
            prop_assert!(deliveries <= 1);
            prop_assert!(captures <= 1);
            // The fold of what was accepted is the state we reached step by step.
            prop_assert_eq!(fold(accepted.iter().copied()).unwrap(), state);
        }
    }
}
