//! The business flows: creating orders, checking on a payment, the one payment path,
//! delivery, refunds and card-key stock. Each takes the store (or a transaction, for the
//! `_in` functions that run in the caller's), plus what else it needs; none takes the HTTP
//! layer's types or returns an HTTP error. Follow-ups are typed jobs enqueued in the same
//! transaction.

pub mod agreement;
pub mod attention;
pub mod card_keys;
pub mod check;
pub mod delivery;
pub mod endpoint;
pub mod messages;
pub mod order;
pub mod payment;
pub mod reconcile;
pub mod refund;
pub mod renewal;
pub mod wallet;
