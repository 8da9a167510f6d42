//! The pure core of zerodrop: types and rules with no IO.
//!
//! Everything here is deterministic and testable without a database or a network:
//! money parsing, ids, the order status machine (whose fold over events is the order's
//! status), the product catalog, ledger transfer rules and membership period maths.

pub mod bill;
pub mod catalog;
pub mod ids;
pub mod ledger;
pub mod membership;
pub mod money;
pub mod order;
pub mod refund;
pub mod secret;

pub use catalog::{Catalog, LatePolicy, Product, ProductKind};
pub use ids::{OrderId, OrderNo, Sku, UserId};
pub use money::{Currency, Money};
pub use order::{Actor, EventKind, OrderState, OrderStatus};
pub use secret::Secret;
