//! Ending attention items. An item ends only through a recorded action: deliver by hand,
//! refund (the one refund path), compensate, or dismiss (only with no money at stake).
//! The merchant API and `zerodrop admin attention resolve` both come here; each action is
//! written to the append-only action log and, for an order, to its timeline, in the same
//! transaction as its effect. Once an order has no open item left, its flag clears.

use crate::flows::delivery::complete;
use crate::flows::refund::request::request_in;
use crate::flows::refund::{self, RefundError};
use serde::Serialize;
use serde_json::json;
use zerodrop_domain::money::Money;
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_domain::OrderId;
use zerodrop_store::attention::{self, Item, NewAction};
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::orders::{self, OrderRow};
use zerodrop_store::{charges, StoreError, Tx};

/// Longest reason code, note, actor and description kept, in characters.
pub const CODE_CHARS_MAX: usize = 64;
pub const NOTE_CHARS_MAX: usize = 1_000;
pub const WHAT_CHARS_MAX: usize = 500;

/// What a person does to end an item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// The goods reached the user outside zerodrop's own path; `delivered` says what
    /// (a card code, the game's own grant id).
    DeliverByHand { delivered: String },
    /// Money back through the one refund path: `amount` (a decimal) or everything left.
    Refund { amount: Option<String> },
    /// The product's compensation, once per order.
    Compensate,
    /// Nothing to do. Refused when money is at stake.
    Dismiss,
}

impl Action {
    /// The action named `name`, with what it needs; anything it does not use is refused.
    pub fn from_parts(name: &str, delivered: Option<String>, amount: Option<String>) -> Result<Action, ResolveError> {
        let unused = |what: &str| Err(ResolveError::Invalid(format!("`{what}` does not go with action `{name}`")));
        match name {
            "deliver_by_hand" => match (delivered, amount) {
                (Some(delivered), None) => Ok(Action::DeliverByHand { delivered }),
                (None, _) => Err(ResolveError::Invalid("deliver_by_hand needs `delivered`: what the user got".into())),
                (Some(_), Some(_)) => unused("amount"),
            },
            "refund" if delivered.is_some() => unused("delivered"),
            "refund" => Ok(Action::Refund { amount }),
            "compensate" | "dismiss" if delivered.is_some() => unused("delivered"),
            "compensate" | "dismiss" if amount.is_some() => unused("amount"),
            "compensate" => Ok(Action::Compensate),
            "dismiss" => Ok(Action::Dismiss),
            _ => Err(ResolveError::Invalid("action must be deliver_by_hand, refund, compensate or dismiss".into())),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Action::DeliverByHand { .. } => "deliver_by_hand",
            Action::Refund { .. } => "refund",
            Action::Compensate => "compensate",
            Action::Dismiss => "dismiss",
        }
    }
}

/// Who resolves, why, and through which door.
#[derive(Clone, Debug)]
pub struct Resolution {
    pub action: Action,
    pub reason_code: String,
    pub note: String,
    /// The acting person, as the platform knows them.
    pub actor: String,
    /// `api` or `cli`.
    pub channel: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no attention item with this id")]
    NotFound,
    #[error("the item was already resolved by `{0}`")]
    AlreadyResolved(String),
    #[error("money is at stake ({0}): end the item by delivering, refunding or compensating, not by dismissing")]
    MoneyAtStake(Money),
    #[error("{0}")]
    NotApplicable(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Refund(#[from] RefundError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Resolution {
    /// Checks the words before any transaction opens.
    pub fn validate(&self) -> Result<(), ResolveError> {
        let bounded = |name: &str, text: &str, max: usize| {
            if text.trim().is_empty() || text.chars().count() > max {
                Err(ResolveError::Invalid(format!("{name} must be 1 to {max} characters")))
            } else {
                Ok(())
            }
        };
        bounded("reason_code", &self.reason_code, CODE_CHARS_MAX)?;
        bounded("note", &self.note, NOTE_CHARS_MAX)?;
        bounded("actor", &self.actor, CODE_CHARS_MAX)?;
        if !self.reason_code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
            return Err(ResolveError::Invalid("reason_code must be letters, digits, '_', '-' or '.'".into()));
        }
        if let Action::DeliverByHand { delivered } = &self.action {
            bounded("delivered", delivered, WHAT_CHARS_MAX)?;
        }
        Ok(())
    }
}

/// Resolves item `item_id` in the caller's transaction. Resolving an item again with the
/// same action answers with the item as it stands (a retry); another action is refused.
pub async fn resolve_in(tx: &mut Tx, item_id: i64, how: &Resolution, now_ms: i64) -> Result<Item, ResolveError> {
    how.validate()?;
    let peek = attention::get(tx, item_id).await?.ok_or(ResolveError::NotFound)?;
    // The order first, then the item: the lock order every other writer uses.
    let order_id = peek.order_id.as_deref().and_then(OrderId::parse);
    let mut order = match order_id {
        Some(id) => Some(orders::lock(tx, id).await?),
        None => None,
    };
    let item = attention::lock(tx, item_id).await?.ok_or(ResolveError::NotFound)?;
    if let Some(done) = &item.resolution {
        let action = done.get("action").and_then(|a| a.as_str()).unwrap_or_default().to_owned();
        return if action == how.action.name() { Ok(item) } else { Err(ResolveError::AlreadyResolved(action)) };
    }
    let effect = act(tx, &item, order.as_mut(), how, now_ms).await?;
    let detail = json!({ "effect": effect, "action": how.action });
    let action = NewAction {
        item_id: Some(item.id),
        order_id,
        charge_id: item.charge_id,
        action: how.action.name(),
        reason_code: how.reason_code.trim(),
        note: how.note.trim(),
        actor: how.actor.trim(),
        channel: how.channel,
        detail: &detail,
    };
    if !attention::resolve(tx, item.id, &action, now_ms).await? {
        return Err(StoreError::Invariant(format!("attention item {} resolved concurrently", item.id)).into());
    }
    if let Some(order) = order.as_mut() {
        let data = json!({
            "item_id": item.id, "item_reason": item.reason, "action": how.action.name(),
            "reason_code": how.reason_code.trim(), "note": how.note.trim(), "actor": how.actor.trim(),
            "channel": how.channel, "effect": effect,
        });
        let mut pending =
            vec![NewEvent::new(EventKind::ActionTaken, Actor::Operator, &format!("attention:{}", item.id), data)];
        let still_open = attention::open_for_order(tx, order.id).await?;
        if order.attention && still_open.is_empty() {
            let cleared = json!({ "item_id": item.id, "note": "no open attention item left" });
            pending.push(NewEvent::new(
                EventKind::AttentionCleared,
                Actor::Operator,
                &format!("attention:{}", item.id),
                cleared,
            ));
        }
        events::append_all(tx, order, pending, now_ms).await?;
    }
    attention::get(tx, item.id).await?.ok_or(ResolveError::NotFound)
}

/// Carries out the action; returns what it did, for the log.
async fn act(
    tx: &mut Tx,
    item: &Item,
    order: Option<&mut OrderRow>,
    how: &Resolution,
    now_ms: i64,
) -> Result<serde_json::Value, ResolveError> {
    let cause = format!("attention:{}", item.id);
    match (&how.action, order) {
        (Action::Dismiss, _) => {
            if item.at_stake_minor > 0 {
                let currency = item.currency.as_deref().and_then(zerodrop_domain::Currency::parse);
                let currency = currency.unwrap_or(zerodrop_domain::Currency::Cny);
                return Err(ResolveError::MoneyAtStake(Money::new(item.at_stake_minor, currency)));
            }
            Ok(json!({ "dismissed": true }))
        }
        (Action::DeliverByHand { delivered }, Some(order)) => {
            if order.status != OrderStatus::Paid {
                return Err(ResolveError::NotApplicable(format!(
                    "only a paid, undelivered order can be delivered by hand; this one is {}",
                    order.status
                )));
            }
            complete::by_hand(tx, order, delivered.trim(), how.actor.trim(), now_ms).await?;
            Ok(json!({ "delivered_by_hand": true }))
        }
        (Action::Compensate, Some(order)) => {
            if order.status != OrderStatus::Delivered {
                return Err(ResolveError::NotApplicable("only a delivered order can be compensated".into()));
            }
            if !complete::compensate_by_hand(tx, order, how.actor.trim(), now_ms).await? {
                return Err(ResolveError::NotApplicable(
                    "the product has no compensation rule, or the order was already compensated".into(),
                ));
            }
            Ok(json!({ "compensated": true }))
        }
        (Action::Refund { amount }, order) => refund(tx, item, order, amount.as_deref(), how, &cause, now_ms).await,
        (Action::DeliverByHand { .. } | Action::Compensate, None) => {
            Err(ResolveError::NotApplicable("this item names no order: refund or dismiss it".into()))
        }
    }
}

/// A refund from an item: the charge it names when that charge is not an order's payment
/// (a second trade, an unknown order), else the order's payment.
async fn refund(
    tx: &mut Tx,
    item: &Item,
    order: Option<&mut OrderRow>,
    amount: Option<&str>,
    how: &Resolution,
    cause: &str,
    now_ms: i64,
) -> Result<serde_json::Value, ResolveError> {
    let charge = match item.charge_id {
        Some(id) => Some(charges::lock(tx, id).await?),
        None => None,
    };
    let reason = format!("{}: {}", how.reason_code.trim(), how.note.trim());
    if let Some(charge) = charge.filter(|c| !c.class.is_order_payment()) {
        if amount.is_some() {
            return Err(ResolveError::NotApplicable("a charge that is not an order's payment goes back whole".into()));
        }
        let refund = refund::charge::refund_in(tx, &charge, order, &reason, cause, now_ms).await?;
        return Ok(json!({ "refund_id": refund.id, "request_no": refund.request_no, "charge_id": charge.id }));
    }
    let Some(order) = order else {
        return Err(ResolveError::NotApplicable("this item names no order and no charge to refund".into()));
    };
    let currency = order.amount.currency;
    let amount = match amount {
        Some(text) => Some(
            Money::parse_decimal(text, currency)
                .ok()
                .filter(|m| m.minor > 0)
                .ok_or(RefundError::BadAmount(currency))?,
        ),
        None => None,
    };
    let refund = request_in(tx, order, amount, refund::Origin::Operator, &reason, now_ms).await?;
    Ok(json!({ "refund_id": refund.id, "request_no": refund.request_no }))
}
