//! Double-entry ledger rules for virtual currency.
//!
//! A transfer moves a positive amount from one account to another of the same currency.
//! The issuance account of a currency is where units come from, so its balance is minus
//! everything ever issued and the sum of all balances per currency is always zero.
//! User wallets may never go below zero; the store enforces that with a constraint too.

use crate::ids::{OrderId, UserId};
use serde::Serialize;
use std::fmt;

/// Longest transfer id, in bytes. Ids are built from causes like `order:<uuid>:credit`.
pub const TRANSFER_ID_BYTES_MAX: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// A user's balance; never negative.
    Wallet,
    /// The source of every unit of a currency; its balance is minus the units in circulation.
    Issuance,
    /// A creator's earnings from gifts; never negative.
    Creator,
    /// What users spent on the platform itself; never negative.
    Platform,
    /// The source of compensation for late deliveries; its balance is minus all compensation paid.
    Compensation,
    /// Units refunded but already spent, so not taken back: the platform's loss, as a
    /// negative balance (never a debt on the user).
    Loss,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Wallet => "wallet",
            AccountKind::Issuance => "issuance",
            AccountKind::Creator => "creator",
            AccountKind::Platform => "platform",
            AccountKind::Compensation => "compensation",
            AccountKind::Loss => "loss",
        }
    }

    /// Whether the account's balance may go below zero (sources of units may).
    pub fn may_go_negative(self) -> bool {
        match self {
            AccountKind::Wallet | AccountKind::Creator | AccountKind::Platform => false,
            AccountKind::Issuance | AccountKind::Compensation | AccountKind::Loss => true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct AccountId(String);

impl AccountId {
    pub fn wallet(user: &UserId, currency: &str) -> AccountId {
        AccountId(format!("wallet:{currency}:{user}"))
    }

    pub fn issuance(currency: &str) -> AccountId {
        AccountId(format!("issuance:{currency}"))
    }

    pub fn creator(creator: &UserId, currency: &str) -> AccountId {
        AccountId(format!("creator:{currency}:{creator}"))
    }

    pub fn platform(currency: &str) -> AccountId {
        AccountId(format!("platform:{currency}"))
    }

    pub fn compensation(currency: &str) -> AccountId {
        AccountId(format!("compensation:{currency}"))
    }

    pub fn loss(currency: &str) -> AccountId {
        AccountId(format!("loss:{currency}"))
    }

    /// An id as stored (already validated when the account was created).
    pub fn from_stored(id: &str) -> AccountId {
        AccountId(id.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user a wallet belongs to; `None` for platform accounts.
    pub fn wallet_owner(&self) -> Option<&str> {
        let rest = self.0.strip_prefix("wallet:")?;
        rest.split_once(':').map(|(_currency, user)| user)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One movement of units. Its id names its cause, so retrying the cause is a no-op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Transfer {
    pub id: String,
    pub from: AccountId,
    pub from_kind: AccountKind,
    pub to: AccountId,
    pub to_kind: AccountKind,
    pub currency: String,
    pub amount: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("transfer amount must be positive, got {0}")]
    NotPositive(i64),
    #[error("a transfer cannot move units from an account to itself")]
    SameAccount,
    #[error("transfer id must be 1 to {TRANSFER_ID_BYTES_MAX} bytes")]
    BadId,
}

impl Transfer {
    /// The credit that delivers a currency pack: issuance → the user's wallet, once per order.
    pub fn order_credit(order: OrderId, user: &UserId, currency: &str, amount: i64) -> Result<Transfer, TransferError> {
        Transfer::new(
            format!("order:{order}:credit"),
            (AccountId::issuance(currency), AccountKind::Issuance),
            (AccountId::wallet(user, currency), AccountKind::Wallet),
            currency,
            amount,
        )
    }

    /// Compensation for a late delivery: compensation account → the user's wallet, once per order.
    pub fn compensation(order: OrderId, user: &UserId, currency: &str, amount: i64) -> Result<Transfer, TransferError> {
        Transfer::new(
            format!("order:{order}:compensation"),
            (AccountId::compensation(currency), AccountKind::Compensation),
            (AccountId::wallet(user, currency), AccountKind::Wallet),
            currency,
            amount,
        )
    }

    /// Taking refunded units back from the user's wallet (only what is still there).
    pub fn reclaim(refund_id: &str, user: &UserId, currency: &str, amount: i64) -> Result<Transfer, TransferError> {
        Transfer::new(
            format!("refund:{refund_id}:reclaim"),
            (AccountId::wallet(user, currency), AccountKind::Wallet),
            (AccountId::issuance(currency), AccountKind::Issuance),
            currency,
            amount,
        )
    }

    /// Refunded units the user had already spent: written off as the platform's loss.
    pub fn write_off(refund_id: &str, currency: &str, amount: i64) -> Result<Transfer, TransferError> {
        Transfer::new(
            format!("refund:{refund_id}:loss"),
            (AccountId::loss(currency), AccountKind::Loss),
            (AccountId::issuance(currency), AccountKind::Issuance),
            currency,
            amount,
        )
    }

    /// A user spends from their wallet (a gift to a creator, a purchase on the platform).
    pub fn spend(
        key: &str,
        user: &UserId,
        currency: &str,
        amount: i64,
        to: (AccountId, AccountKind),
    ) -> Result<Transfer, TransferError> {
        Transfer::new(
            format!("spend:{key}"),
            (AccountId::wallet(user, currency), AccountKind::Wallet),
            to,
            currency,
            amount,
        )
    }

    pub fn new(
        id: String,
        from: (AccountId, AccountKind),
        to: (AccountId, AccountKind),
        currency: &str,
        amount: i64,
    ) -> Result<Transfer, TransferError> {
        if amount <= 0 {
            return Err(TransferError::NotPositive(amount));
        }
        if from.0 == to.0 {
            return Err(TransferError::SameAccount);
        }
        if id.is_empty() || id.len() > TRANSFER_ID_BYTES_MAX {
            return Err(TransferError::BadId);
        }
        Ok(Transfer {
            id,
            from: from.0,
            from_kind: from.1,
            to: to.0,
            to_kind: to.1,
            currency: currency.to_owned(),
            amount,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_credit_names_its_cause_and_moves_from_issuance() {
        let user = UserId::parse("u1").unwrap();
        let order = OrderId::new();
        let t = Transfer::order_credit(order, &user, "DIAMOND", 60).unwrap();
        assert_eq!(t.id, format!("order:{order}:credit"));
        assert_eq!(t.from.as_str(), "issuance:DIAMOND");
        assert_eq!(t.to.as_str(), "wallet:DIAMOND:u1");
        assert!(Transfer::order_credit(order, &user, "DIAMOND", 0).is_err());
        assert!(!AccountKind::Wallet.may_go_negative());
        assert_eq!(t.to.wallet_owner(), Some("u1"));
        assert_eq!(t.from.wallet_owner(), None);
    }
}
