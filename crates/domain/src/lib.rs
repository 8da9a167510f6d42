//! The pure core of zerodrop: types and rules with no IO.
//!
//! Everything here is deterministic and testable without a database or a network:
//! money parsing, ids, the order status machine (whose fold over events is the order's
//! status), the product catalog, ledger transfer rules and membership period maths;
//! auto-renewing agreements: versioned terms, the agreement state machine, termination
//! quotes and refusals, renewal schedules, security holds and step-up verification codes.

pub mod agreement;
pub mod bill;
pub mod catalog;
pub mod hold;
pub mod ids;
pub mod ledger;
pub mod membership;
pub mod money;
pub mod notice;
pub mod order;
pub mod refund;
pub mod refusal;
pub mod renewal;
pub mod secret;
pub mod termination;
pub mod terms;
pub mod texts;
pub mod totp;

pub use agreement::{AgreementEvent, AgreementState, TerminationMode};
pub use catalog::{Catalog, LatePolicy, Product, ProductKind};
pub use ids::{OrderId, OrderNo, Sku, UserId};
pub use money::{Currency, Money};
pub use order::{Actor, EventKind, OrderState, OrderStatus};
pub use refusal::Refusal;
pub use secret::Secret;
pub use terms::{Plan, Plans, TermsVersion};
pub use texts::Texts;
