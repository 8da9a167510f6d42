//! Delivery of internal goods, inside the payment's transaction: a wallet credit through
//! the ledger, or a membership extension. Payment and entitlement commit together (S4).

use serde_json::json;
use zerodrop_domain::catalog::ProductKind;
use zerodrop_domain::ledger::Transfer;
use zerodrop_domain::order::{Actor, EventKind};
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::ledger::{self, TransferOutcome};
use zerodrop_store::orders::OrderRow;
use zerodrop_store::{memberships, payments, StoreError, Tx};

/// Grants the order's goods and appends `pending` events (the capture) followed by
/// `delivered`, all in the caller's transaction.
pub async fn deliver_internal(
    tx: &mut Tx,
    order: &mut OrderRow,
    mut pending: Vec<NewEvent>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let invariant = |m: String| StoreError::Invariant(m);
    let detail = match &order.product.kind {
        ProductKind::Membership { plan, days } => {
            let days = days
                .checked_mul(order.quantity)
                .ok_or_else(|| invariant("membership days overflow".into()))?;
            let period =
                memberships::extend(tx, &order.user_id, plan, days, order.id, now_ms).await?;
            json!({ "kind": "membership", "plan": plan, "days": days, "starts_at_ms": period.starts_at_ms, "ends_at_ms": period.ends_at_ms })
        }
        ProductKind::CurrencyPack {
            virtual_currency,
            units,
        } => {
            let units = units
                .checked_mul(order.quantity)
                .ok_or_else(|| invariant("currency units overflow".into()))?;
            json!({ "kind": "currency_pack", "currency": virtual_currency, "units": units })
        }
    };
    payments::insert_delivery(tx, order.id, order.product.kind.name(), &detail, now_ms).await?;
    pending.push(NewEvent::new(
        EventKind::Delivered,
        Actor::System,
        "internal_delivery",
        detail,
    ));
    events::append_all(tx, order, pending, now_ms).await?;
    // The ledger transfer goes last: on PostgreSQL it locks the currency's issuance
    // account, which every credit touches, so holding it only until commit keeps
    // concurrent deliveries from queueing behind each other.
    if let ProductKind::CurrencyPack {
        virtual_currency,
        units,
    } = &order.product.kind
    {
        let units = units * order.quantity;
        let transfer = Transfer::order_credit(order.id, &order.user_id, virtual_currency, units)
            .map_err(|e| invariant(e.to_string()))?;
        match ledger::apply(tx, &transfer, Some(order.id), now_ms).await? {
            Ok(TransferOutcome::Applied) => {}
            // The deliveries row above is unique per order, so a credit that already
            // exists means the record disagrees with itself: never credit twice.
            Ok(TransferOutcome::AlreadyApplied) => {
                return Err(invariant(format!(
                    "order {} was already credited",
                    order.order_no
                )))
            }
            Err(refused) => return Err(invariant(refused.to_string())),
        }
    }
    Ok(())
}
