//! Spending from a user's wallet: a gift to a creator, or a purchase on the platform.
//! One ledger transfer, named by the request's idempotency key, so a retried spend is
//! never a second spend.

use zerodrop_domain::ids::IdError;
use zerodrop_domain::ledger::{AccountId, AccountKind, Transfer, TransferError};
use zerodrop_domain::UserId;
use zerodrop_store::ledger::{self, TransferRefused};
use zerodrop_store::{StoreError, Tx};

/// Most units one spend may move.
pub const SPEND_UNITS_MAX: i64 = 100_000_000;
/// Longest currency code, in letters.
const CURRENCY_CHARS_MAX: usize = 16;

/// Where a spend goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// A gift to a creator.
    Creator(UserId),
    /// A purchase on the platform.
    Platform,
}

impl Recipient {
    /// `creator:<id>` or `platform`.
    pub fn parse(text: &str) -> Result<Recipient, SpendError> {
        match text.split_once(':') {
            Some(("creator", id)) => UserId::parse(id).map(Recipient::Creator).map_err(SpendError::Recipient),
            None if text == "platform" => Ok(Recipient::Platform),
            _ => Err(SpendError::RecipientForm),
        }
    }

    fn account(&self, currency: &str) -> (AccountId, AccountKind) {
        match self {
            Recipient::Creator(creator) => (AccountId::creator(creator, currency), AccountKind::Creator),
            Recipient::Platform => (AccountId::platform(currency), AccountKind::Platform),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpendError {
    #[error("amount must be 1..={SPEND_UNITS_MAX} units")]
    Amount,
    #[error("currency must be 1-{CURRENCY_CHARS_MAX} uppercase letters")]
    Currency,
    #[error("to must be creator:<id> or platform")]
    RecipientForm,
    #[error(transparent)]
    Recipient(IdError),
    #[error(transparent)]
    Transfer(TransferError),
    #[error("the wallet holds {balance} {currency}, the spend needs {amount}")]
    Insufficient { currency: String, balance: i64, amount: i64 },
    #[error("this Idempotency-Key was used for another spend")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A spend that was applied.
pub struct Spent {
    pub transfer_id: String,
    /// The wallet's balance after it.
    pub balance: i64,
}

/// A valid spend, not yet applied: checked before any transaction is opened.
pub struct Spend {
    currency: String,
    amount: i64,
    to: Recipient,
}

impl Spend {
    /// `amount` units of `currency` to `to` (`creator:<id>` or `platform`).
    pub fn parse(currency: &str, amount: i64, to: &str) -> Result<Spend, SpendError> {
        if !(1..=SPEND_UNITS_MAX).contains(&amount) {
            return Err(SpendError::Amount);
        }
        let currency_ok = !currency.is_empty()
            && currency.len() <= CURRENCY_CHARS_MAX
            && currency.bytes().all(|b| b.is_ascii_uppercase());
        if !currency_ok {
            return Err(SpendError::Currency);
        }
        Ok(Spend { currency: currency.to_owned(), amount, to: Recipient::parse(to)? })
    }

    /// Moves the units from the user's wallet in `tx`, once per `key`.
    #[tracing::instrument(name = "wallet.spend", skip(self, tx, key), fields(currency = %self.currency, amount = self.amount))]
    pub async fn apply_in(self, tx: &mut Tx, user: &UserId, key: &str, now_ms: i64) -> Result<Spent, SpendError> {
        let currency = self.currency.as_str();
        let transfer =
            Transfer::spend(&format!("{user}:{key}"), user, currency, self.amount, self.to.account(currency))
                .map_err(SpendError::Transfer)?;
        match ledger::apply(tx, &transfer, None, now_ms).await? {
            Ok(_) => {}
            Err(TransferRefused::Insufficient { balance, amount, .. }) => {
                return Err(SpendError::Insufficient { currency: currency.to_owned(), balance, amount });
            }
            Err(TransferRefused::IdReused(_)) => return Err(SpendError::KeyReused),
        }
        let balance = ledger::balance(tx, &AccountId::wallet(user, currency)).await?;
        Ok(Spent { transfer_id: transfer.id, balance })
    }
}
