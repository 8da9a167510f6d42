//! The platform's endpoint confirms a delivery it accepted (`202`) with a signed
//! `delivered` or `failed`. A confirmation is checked against the endpoint of the order
//! it names; the same confirmation again gets the same answer.

use super::complete::complete_later;
use super::miss::{arrived_after_refund_in, refused_in};
use crate::config::EndpointConfig;
use crate::flows::endpoint::{self, SignatureError};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use zerodrop_domain::catalog::ProductKind;
use zerodrop_domain::order::OrderStatus;
use zerodrop_domain::OrderNo;
use zerodrop_store::orders::{self, OrderRow};
use zerodrop_store::{now_ms, Store, StoreError};

/// Longest reason kept from a confirmation, in characters.
const REASON_CHARS_MAX: usize = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Confirmation {
    /// The order confirmed. The signature covers the body, so naming the order in it is
    /// what ties a confirmation to one order: without it, a genuine confirmation for one
    /// order could be replayed against any other (a `failed` one would refund it).
    order_no: String,
    /// `delivered` or `failed`.
    status: String,
    #[serde(default)]
    reason: String,
}

/// The signature headers of a confirmation, as sent.
pub struct Signed<'a> {
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("no order with this number")]
    NotFound,
    #[error("this order is not delivered by an endpoint")]
    NotExternal,
    #[error("the order's delivery endpoint {0} is not configured")]
    EndpointMissing(String),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("the body is not a valid confirmation: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("status must be delivered or failed")]
    UnknownStatus,
    #[error("the confirmation names another order than the one it was sent for")]
    OtherOrder,
    #[error("the order is being refunded; a person will look at this delivery")]
    Refunded,
    #[error("the order is {0}")]
    NotAwaiting(OrderStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Verifies and applies a confirmation; returns the order as it now stands.
#[tracing::instrument(name = "delivery.confirm", skip(store, endpoints, signed))]
pub async fn confirm(
    store: &Store,
    endpoints: &BTreeMap<String, EndpointConfig>,
    order_no: &str,
    signed: Signed<'_>,
) -> Result<OrderRow, ConfirmError> {
    if OrderNo::parse(order_no).is_none() {
        return Err(ConfirmError::NotFound);
    }
    let mut tx = store.begin().await?;
    let now = now_ms();
    let mut order = orders::lock_by_no(&mut tx, order_no).await?.ok_or(ConfirmError::NotFound)?;
    let ProductKind::External { endpoint, .. } = &order.product.kind else {
        return Err(ConfirmError::NotExternal);
    };
    let endpoint = endpoints.get(endpoint).ok_or_else(|| ConfirmError::EndpointMissing(endpoint.clone()))?;
    endpoint::verify(endpoint.secret.expose(), signed.timestamp, signed.signature, signed.body, now / 1000)?;
    let confirmation: Confirmation = serde_json::from_slice(signed.body).map_err(ConfirmError::Malformed)?;
    if confirmation.order_no != order_no {
        return Err(ConfirmError::OtherOrder);
    }
    let cause = format!("endpoint:{}", endpoint.name);
    let reason: String = confirmation.reason.chars().take(REASON_CHARS_MAX).collect();
    let data = json!({ "confirmation": confirmation.status, "reason": reason });
    match (confirmation.status.as_str(), order.status) {
        ("delivered", OrderStatus::Paid) => {
            complete_later(&mut tx, &mut order, Some(json!({ "confirmed": true })), now).await?;
        }
        // The same confirmation again (a retry, a replay within the window): same answer.
        ("delivered", OrderStatus::Delivered) => {}
        ("failed", OrderStatus::Paid) => refused_in(&mut tx, &mut order, &cause, data, now).await?,
        ("delivered", OrderStatus::RefundDue | OrderStatus::Refunding | OrderStatus::Refunded) => {
            arrived_after_refund_in(&mut tx, &mut order, &cause, data, now).await?;
            tx.commit().await?;
            return Err(ConfirmError::Refunded);
        }
        ("delivered" | "failed", status) => return Err(ConfirmError::NotAwaiting(status)),
        _ => return Err(ConfirmError::UnknownStatus),
    }
    tx.commit().await?;
    Ok(order)
}
