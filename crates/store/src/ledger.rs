//! The double-entry ledger for virtual currency.
//!
//! A transfer inserts one `ledger_transfers` row (its id names its cause, so a retry is a
//! no-op), moves both balances, and writes one entry per side with the balance after it.
//! Wallets cannot go negative: the table's CHECK constraint refuses it, and we check first
//! to give a clear error.

use crate::{Conn, Result, StoreError, Tx};
use serde::Serialize;
use sqlx::Row;
use zerodrop_domain::ledger::{AccountId, AccountKind, Transfer};
use zerodrop_domain::{OrderId, UserId};

#[derive(Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    Applied,
    /// The transfer id was already used (by this same transfer): nothing moved again.
    AlreadyApplied,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferRefused {
    #[error("insufficient balance in {account}: has {balance}, needs {amount}")]
    Insufficient { account: String, balance: i64, amount: i64 },
    #[error("transfer id {0} was used for a different movement")]
    IdReused(String),
}

/// Applies `transfer` in the caller's transaction. The source's balance moves last, so
/// the hottest row (a currency's issuance account) is locked for as short a time as
/// possible before commit.
pub async fn apply(
    tx: &mut Tx,
    transfer: &Transfer,
    order_id: Option<OrderId>,
    now_ms: i64,
) -> Result<Result<TransferOutcome, TransferRefused>> {
    ensure_account(tx, &transfer.from, transfer.from_kind, &transfer.currency).await?;
    ensure_account(tx, &transfer.to, transfer.to_kind, &transfer.currency).await?;
    let inserted = sqlx::query(
        "INSERT INTO ledger_transfers (id, from_account, to_account, currency, amount, order_id, at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&transfer.id)
    .bind(transfer.from.as_str())
    .bind(transfer.to.as_str())
    .bind(&transfer.currency)
    .bind(transfer.amount)
    .bind(order_id.map(|id| id.to_string()))
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return same_transfer_again(tx, transfer).await;
    }
    if !transfer.from_kind.may_go_negative() {
        let balance = balance_of(tx, &transfer.from).await?;
        if balance < transfer.amount {
            return Ok(Err(TransferRefused::Insufficient {
                account: transfer.from.to_string(),
                balance,
                amount: transfer.amount,
            }));
        }
    }
    move_balance(tx, &transfer.id, &transfer.to, transfer.amount, now_ms).await?;
    move_balance(tx, &transfer.id, &transfer.from, -transfer.amount, now_ms).await?;
    Ok(Ok(TransferOutcome::Applied))
}

async fn same_transfer_again(tx: &mut Tx, transfer: &Transfer) -> Result<Result<TransferOutcome, TransferRefused>> {
    let row = sqlx::query("SELECT from_account, to_account, amount FROM ledger_transfers WHERE id = $1")
        .bind(&transfer.id)
        .fetch_one(&mut **tx)
        .await?;
    let same = row.try_get::<String, _>(0)? == transfer.from.as_str()
        && row.try_get::<String, _>(1)? == transfer.to.as_str()
        && row.try_get::<i64, _>(2)? == transfer.amount;
    if same {
        Ok(Ok(TransferOutcome::AlreadyApplied))
    } else {
        Ok(Err(TransferRefused::IdReused(transfer.id.clone())))
    }
}

async fn ensure_account(tx: &mut Tx, id: &AccountId, kind: AccountKind, currency: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO ledger_accounts (id, kind, currency, owner, balance) VALUES ($1, $2, $3, $4, 0) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id.as_str())
    .bind(kind.as_str())
    .bind(currency)
    .bind(id.wallet_owner())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn balance_of(conn: &mut Conn, id: &AccountId) -> Result<i64> {
    let row = sqlx::query("SELECT balance FROM ledger_accounts WHERE id = $1")
        .bind(id.as_str())
        .fetch_one(conn)
        .await?;
    Ok(row.try_get(0)?)
}

async fn move_balance(tx: &mut Tx, transfer_id: &str, account: &AccountId, delta: i64, now_ms: i64) -> Result<()> {
    let row = sqlx::query("UPDATE ledger_accounts SET balance = balance + $1 WHERE id = $2 RETURNING balance, kind")
        .bind(delta)
        .bind(account.as_str())
        .fetch_one(&mut **tx)
        .await?;
    let balance_after: i64 = row.try_get(0)?;
    let kind: String = row.try_get(1)?;
    if kind == AccountKind::Wallet.as_str() && balance_after < 0 {
        // The CHECK constraint should already have refused this; never carry on if not.
        return Err(StoreError::Invariant(format!("wallet {account} would go below zero")));
    }
    sqlx::query(
        "INSERT INTO ledger_entries (transfer_id, account_id, amount, balance_after, at_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(transfer_id)
    .bind(account.as_str())
    .bind(delta)
    .bind(balance_after)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One balance of a user's wallet, with the ledger position it reflects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WalletBalance {
    pub currency: String,
    pub balance: i64,
    /// Id of the last ledger entry on this account: the balance is exactly the sum of
    /// entries up to and including it.
    pub last_entry_id: Option<i64>,
    /// The order whose delivery last credited this wallet.
    pub last_credit_order_id: Option<String>,
    pub last_credit_at_ms: Option<i64>,
}

pub async fn wallet(conn: &mut Conn, user: &UserId) -> Result<Vec<WalletBalance>> {
    let rows = sqlx::query(
        "SELECT a.id, a.currency, a.balance, \
             (SELECT MAX(e.id) FROM ledger_entries e WHERE e.account_id = a.id) \
         FROM ledger_accounts a WHERE a.kind = 'wallet' AND a.owner = $1 ORDER BY a.currency",
    )
    .bind(user.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut balances = Vec::with_capacity(rows.len());
    for row in rows {
        let account: String = row.try_get(0)?;
        let credit = sqlx::query(
            "SELECT order_id, at_ms FROM ledger_transfers \
             WHERE to_account = $1 AND order_id IS NOT NULL ORDER BY at_ms DESC, id DESC LIMIT 1",
        )
        .bind(&account)
        .fetch_optional(&mut *conn)
        .await?;
        balances.push(WalletBalance {
            currency: row.try_get(1)?,
            balance: row.try_get(2)?,
            last_entry_id: row.try_get(3)?,
            last_credit_order_id: credit.as_ref().map(|c| c.try_get(0)).transpose()?,
            last_credit_at_ms: credit.as_ref().map(|c| c.try_get(1)).transpose()?,
        });
    }
    Ok(balances)
}
