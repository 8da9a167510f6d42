//! The double-entry ledger for virtual currency.
//!
//! A transfer inserts one `ledger_transfers` row (its id names its cause, so a retry is a
//! no-op), moves both balances, and writes one entry per side with the balance after it.
//! Wallets cannot go negative: the table's CHECK constraint refuses it, and we check first
//! to give a clear error.
//!
//! Movements that cannot fail (credits, and anything on an account that may go negative,
//! such as a currency's issuance account, which every delivery touches) are deferred to
//! the transaction's commit: there each account is updated once (accounts that cannot go
//! negative first, then the shared source accounts, each group by id), and the entries
//! get their balances from the final one. Two things follow: the hot
//! issuance row is locked only for the commit itself, and every transaction takes
//! account locks in the same global order, so concurrent transactions never deadlock on
//! them. Debits of wallets stay immediate, because they must be checked.

use crate::{Conn, Result, StoreError, Tx};
use serde::Serialize;
use std::collections::BTreeMap;

/// Entries written per statement at commit (8 parameters each, far below both engines'
/// parameter limits).
const ENTRIES_PER_INSERT_MAX: usize = 200;

/// Ledger work a transaction carries until its commit.
#[derive(Default)]
pub(crate) struct Pending {
    /// Transfers known to be new, written at commit.
    transfers: Vec<(Transfer, Option<String>, i64)>,
    /// Entries whose balance is already known (immediate movements).
    entries: Vec<Entry>,
    /// Deferred movements per account, in the order they happened.
    deferred: BTreeMap<String, Deferred>,
    /// Each moved account's chain position before this transaction: its entries' seals
    /// continue from there at commit (the row's `seal_seq` counts them as they move).
    chain_from: BTreeMap<String, i64>,
    /// Each moved account's last seal before this transaction, once read (see [`flush`]).
    previous: BTreeMap<String, String>,
}

/// A transfer's facts, sealed with each of its entries.
#[derive(Clone)]
struct Facts {
    id: String,
    from: String,
    to: String,
    currency: String,
    amount: i64,
    order_id: Option<String>,
}

impl Facts {
    fn of(transfer: &Transfer, order_id: Option<OrderId>) -> Facts {
        Facts {
            id: transfer.id.clone(),
            from: transfer.from.to_string(),
            to: transfer.to.to_string(),
            currency: transfer.currency.clone(),
            amount: transfer.amount,
            order_id: order_id.map(|id| id.to_string()),
        }
    }
}

struct Entry {
    transfer: Facts,
    account: String,
    amount: i64,
    balance_after: i64,
    at_ms: i64,
}

struct Deferred {
    kind: AccountKind,
    currency: String,
    owner: Option<String>,
    movements: Vec<(Facts, i64, i64)>,
}
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

/// Applies `transfer` in the caller's transaction: four statements, whatever the accounts'
/// history (accounts are created by their first movement). The source's balance moves
/// last, so the hottest row (a currency's issuance account) is locked for as short a
/// time as possible before commit.
pub async fn apply(
    tx: &mut Tx,
    transfer: &Transfer,
    order_id: Option<OrderId>,
    now_ms: i64,
) -> Result<Result<TransferOutcome, TransferRefused>> {
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
        // Credits this transaction deferred for the account count toward its balance.
        flush_account(tx, transfer.from.as_str()).await?;
        // Locked, then checked: concurrent debits of one wallet queue here and each sees
        // the balance the one before left, so the answer is a clear refusal rather than
        // the CHECK constraint's error (which stays as the guarantee).
        let balance = locked_balance(tx, &transfer.from).await?;
        if balance < transfer.amount {
            return Ok(Err(TransferRefused::Insufficient {
                account: transfer.from.to_string(),
                balance,
                amount: transfer.amount,
            }));
        }
    }
    // The credit side is deferred (a credit cannot fail); the debit side is deferred
    // only for accounts that may go negative. A checked wallet debit moves now.
    let facts = Facts::of(transfer, order_id);
    defer(tx, &facts, &transfer.to, transfer.to_kind, transfer.amount, now_ms);
    if transfer.from_kind.may_go_negative() {
        defer(tx, &facts, &transfer.from, transfer.from_kind, -transfer.amount, now_ms);
    } else {
        let after =
            move_balance(tx, &transfer.from, transfer.from_kind, &transfer.currency, -transfer.amount, 1).await?;
        tx.ledger.entries.push(Entry {
            transfer: facts,
            account: transfer.from.to_string(),
            amount: -transfer.amount,
            balance_after: after,
            at_ms: now_ms,
        });
    }
    Ok(Ok(TransferOutcome::Applied))
}

/// Applies one account's deferred movements now, recording their entries.
async fn flush_account(tx: &mut Tx, account: &str) -> Result<()> {
    let Some(deferred) = tx.ledger.deferred.remove(account) else {
        return Ok(());
    };
    let total: i64 = deferred.movements.iter().map(|(_, delta, _)| delta).sum();
    let id = AccountId::from_stored(account);
    let entries = deferred.movements.len() as i64;
    let owner = deferred.owner.as_deref();
    let after = move_balance_owned(tx, &id, deferred.kind, &deferred.currency, owner, total, entries).await?;
    let mut balance = after - total;
    for (transfer, delta, at_ms) in deferred.movements {
        balance += delta;
        tx.ledger.entries.push(Entry {
            transfer,
            account: account.to_owned(),
            amount: delta,
            balance_after: balance,
            at_ms,
        });
    }
    Ok(())
}

fn defer(tx: &mut Tx, transfer: &Facts, account: &AccountId, kind: AccountKind, delta: i64, now_ms: i64) {
    let deferred = tx.ledger.deferred.entry(account.to_string()).or_insert_with(|| Deferred {
        kind,
        currency: transfer.currency.clone(),
        owner: account.wallet_owner().map(str::to_owned),
        movements: Vec::new(),
    });
    deferred.movements.push((transfer.clone(), delta, now_ms));
}

/// Applies a transfer whose id cannot have been used before, because its cause already
/// happens once only (an order's credit: the order's single delivery row). Everything
/// about it waits for the commit: its row (a reused id fails the commit, never passes
/// silently) and both balances. Only for transfers that cannot fail: a credit, from an
/// account that may go negative.
pub fn apply_new(tx: &mut Tx, transfer: &Transfer, order_id: Option<OrderId>, now_ms: i64) -> Result<()> {
    if !transfer.from_kind.may_go_negative() {
        return Err(StoreError::Invariant(format!("transfer {} debits a checked account; use apply", transfer.id)));
    }
    tx.ledger.transfers.push((transfer.clone(), order_id.map(|id| id.to_string()), now_ms));
    let facts = Facts::of(transfer, order_id);
    defer(tx, &facts, &transfer.to, transfer.to_kind, transfer.amount, now_ms);
    defer(tx, &facts, &transfer.from, transfer.from_kind, -transfer.amount, now_ms);
    Ok(())
}

/// Rows per statement for transfers written at commit (7 parameters each).
const TRANSFERS_PER_INSERT_MAX: usize = 100;

async fn flush_transfers(tx: &mut Tx) -> Result<()> {
    let pending = std::mem::take(&mut tx.ledger.transfers);
    for chunk in pending.chunks(TRANSFERS_PER_INSERT_MAX) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = i * 7;
                format!("(${}, ${}, ${}, ${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4, p + 5, p + 6, p + 7)
            })
            .collect();
        let sql = format!(
            "INSERT INTO ledger_transfers (id, from_account, to_account, currency, amount, order_id, at_ms) VALUES {}",
            values.join(", ")
        );
        let mut insert = sqlx::query(&sql);
        for (t, order_id, at_ms) in chunk {
            insert = insert
                .bind(t.id.clone())
                .bind(t.from.to_string())
                .bind(t.to.to_string())
                .bind(t.currency.clone())
                .bind(t.amount)
                .bind(order_id.clone())
                .bind(*at_ms);
        }
        insert.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Applies the deferred movements (each account once, in one global lock order) and writes every
/// pending entry. Called by [`Tx::commit`] just before the database commit, after every
/// other deferred write.
///
/// In two steps, so that as little as possible runs while the shared source accounts
/// (issuance, compensation, loss: every delivery moves one) are locked, which holds back
/// every other committer:
/// 1. the accounts that cannot go negative (wallets, creators, the platform), each by id;
///    their entries are sealed into the transaction's batch and written, and then the
///    transaction's `seal_pending` row ([`crate::seal::flush`]), now complete;
/// 2. the shared accounts, each by id; their entries are chained per account as always,
///    but name no batch: the sealing job checkpoints those few accounts' heads itself
///    ([`crate::seal::checkpoint`]). Under their locks: their update, one read of where
///    their chains stand, their entries, and the commit.
///
/// Every transaction takes the locks in this one order, so none waits on another in a circle.
pub(crate) async fn flush(tx: &mut Tx) -> Result<()> {
    flush_transfers(tx).await?;
    let mut accounts: Vec<(bool, String)> =
        tx.ledger.deferred.iter().map(|(id, d)| (d.kind.may_go_negative(), id.clone())).collect();
    accounts.sort();
    let split = accounts.iter().position(|(shared, _)| *shared).unwrap_or(accounts.len());
    for (_, account) in &accounts[..split] {
        flush_account(tx, account).await?;
    }
    write_entries(tx, true).await?;
    crate::seal::flush(tx).await?;
    for (_, account) in &accounts[split..] {
        flush_account(tx, account).await?;
    }
    write_entries(tx, false).await
}

/// Seals and writes the entries flushed so far: in the transaction's batch, or (the shared
/// accounts') chained only, checkpointed by their accounts' heads.
async fn write_entries(tx: &mut Tx, in_batch: bool) -> Result<()> {
    let entries = std::mem::take(&mut tx.ledger.entries);
    if entries.is_empty() {
        return Ok(());
    }
    let sealed = seal_entries(tx, &entries).await?;
    let batch = if in_batch {
        for (_, seal) in &sealed {
            tx.sealed_in_batch(seal.clone());
        }
        Some(tx.seal_batch())
    } else {
        None
    };
    for (chunk, seals) in entries.chunks(ENTRIES_PER_INSERT_MAX).zip(sealed.chunks(ENTRIES_PER_INSERT_MAX)) {
        let mut sql = String::from(
            "INSERT INTO ledger_entries (transfer_id, account_id, amount, balance_after, at_ms, seal_seq, seal, \
             seal_batch) VALUES ",
        );
        for i in 0..chunk.len() {
            let p = i * 8;
            if i > 0 {
                sql.push_str(", ");
            }
            let params: Vec<String> = (1..=8).map(|k| format!("${}", p + k)).collect();
            sql.push_str(&format!("({})", params.join(", ")));
        }
        let mut insert = sqlx::query(&sql);
        for (e, (seq, seal)) in chunk.iter().zip(seals) {
            insert = insert
                .bind(e.transfer.id.clone())
                .bind(e.account.clone())
                .bind(e.amount)
                .bind(e.balance_after)
                .bind(e.at_ms)
                .bind(*seq)
                .bind(seal.clone())
                .bind(batch.clone());
        }
        insert.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Accounts whose previous seal is read per statement (two parameters each).
const CHAIN_READS_PER_SELECT_MAX: usize = 100;

/// Reads each moved account's last seal before this transaction, where not read yet, in a
/// few statements. The rows are locked since their first movement here, so no other
/// writer can add to them now, and a statement of its own sees every entry committed
/// before that lock was granted.
async fn previous_seals(tx: &mut Tx) -> Result<()> {
    let ledger = &tx.ledger;
    let wanted: Vec<(String, i64)> = ledger
        .chain_from
        .iter()
        .filter(|(account, seq)| **seq > 0 && !ledger.previous.contains_key(*account))
        .map(|(a, s)| (a.clone(), *s))
        .collect();
    for chunk in wanted.chunks(CHAIN_READS_PER_SELECT_MAX) {
        let terms: Vec<String> =
            (0..chunk.len()).map(|i| format!("(account_id = ${} AND seal_seq = ${})", 2 * i + 1, 2 * i + 2)).collect();
        let sql = format!("SELECT account_id, seal FROM ledger_entries WHERE {}", terms.join(" OR "));
        let mut query = sqlx::query_as::<_, (String, Option<String>)>(&sql);
        for (account, seq) in chunk {
            query = query.bind(account.clone()).bind(*seq);
        }
        for (account, seal) in query.fetch_all(&mut **tx).await? {
            tx.ledger.previous.insert(account, seal.unwrap_or_default());
        }
    }
    Ok(())
}

/// Each entry's place and seal in its account's chain, continuing from the position the
/// account had when this transaction first moved it (or where its entries written earlier
/// in this commit left it).
async fn seal_entries(tx: &mut Tx, entries: &[Entry]) -> Result<Vec<(i64, String)>> {
    previous_seals(tx).await?;
    let previous = &tx.ledger.previous;
    let chain_from = &tx.ledger.chain_from;
    let mut heads: BTreeMap<&str, (i64, String)> = BTreeMap::new();
    let mut sealed = Vec::with_capacity(entries.len());
    for e in entries {
        if !heads.contains_key(e.account.as_str()) {
            let from = *chain_from.get(&e.account).ok_or_else(|| {
                StoreError::Invariant(format!("account {} moved without its chain position", e.account))
            })?;
            let prev = match from {
                0 => crate::seal::GENESIS.to_owned(),
                _ => previous.get(&e.account).cloned().ok_or_else(|| {
                    StoreError::Invariant(format!("account {}'s entry #{from} is missing", e.account))
                })?,
            };
            heads.insert(e.account.as_str(), (from, prev));
        }
        let (seq, head) =
            heads.get_mut(e.account.as_str()).ok_or_else(|| StoreError::Invariant("unreachable".into()))?;
        *seq += 1;
        let prev = head.as_str();
        let facts = crate::seal::content::TransferFacts {
            id: &e.transfer.id,
            from: &e.transfer.from,
            to: &e.transfer.to,
            currency: &e.transfer.currency,
            amount: e.transfer.amount,
            order_id: e.transfer.order_id.as_deref(),
        };
        let seal = crate::seal::content::entry(prev, &facts, &e.account, *seq, e.amount, e.balance_after, e.at_ms);
        *head = seal.clone();
        sealed.push((*seq, seal));
    }
    // Where each chain now stands, should the same account move again before the commit
    // ends (a shared account flushed early by a balance read, then moved once more).
    let heads: Vec<(String, i64, String)> =
        heads.into_iter().map(|(a, (seq, seal))| (a.to_owned(), seq, seal)).collect();
    for (account, seq, seal) in heads {
        tx.ledger.chain_from.insert(account.clone(), seq);
        tx.ledger.previous.insert(account, seal);
    }
    Ok(sealed)
}

async fn same_transfer_again(tx: &mut Tx, transfer: &Transfer) -> Result<Result<TransferOutcome, TransferRefused>> {
    let (from, to, amount) = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT from_account, to_account, amount FROM ledger_transfers WHERE id = $1",
    )
    .bind(&transfer.id)
    .fetch_one(&mut **tx)
    .await?;
    let same = from == transfer.from.as_str() && to == transfer.to.as_str() && amount == transfer.amount;
    if same {
        Ok(Ok(TransferOutcome::AlreadyApplied))
    } else {
        Ok(Err(TransferRefused::IdReused(transfer.id.clone())))
    }
}

/// An account's balance as this transaction sees it, deferred movements included.
pub async fn balance(tx: &mut Tx, id: &AccountId) -> Result<i64> {
    flush_account(tx, id.as_str()).await?;
    balance_of(tx, id).await
}

async fn locked_balance(tx: &mut Tx, id: &AccountId) -> Result<i64> {
    let sql = format!("SELECT balance FROM ledger_accounts WHERE id = $1{}", tx.dialect().for_update());
    // An account is created by its first movement: none yet is a balance of zero.
    let balance = sqlx::query_scalar::<_, i64>(&sql).bind(id.as_str()).fetch_optional(&mut **tx).await?;
    Ok(balance.unwrap_or(0))
}

async fn balance_of(conn: &mut Conn, id: &AccountId) -> Result<i64> {
    let balance = sqlx::query_scalar::<_, i64>("SELECT balance FROM ledger_accounts WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?;
    Ok(balance.unwrap_or(0))
}

/// Moves an account's balance by `delta`, creating the account on its first movement,
/// and returns the balance after. `entries` is how many ledger entries the movement makes:
/// the account's chain counter moves with its balance, in the same statement.
async fn move_balance(
    tx: &mut Tx,
    account: &AccountId,
    kind: AccountKind,
    currency: &str,
    delta: i64,
    entries: i64,
) -> Result<i64> {
    move_balance_owned(tx, account, kind, currency, account.wallet_owner(), delta, entries).await
}

async fn move_balance_owned(
    tx: &mut Tx,
    account: &AccountId,
    kind: AccountKind,
    currency: &str,
    owner: Option<&str>,
    delta: i64,
    entries: i64,
) -> Result<i64> {
    // Both engines check constraints on an upsert's proposed row before resolving the
    // conflict, so a debit of an account that cannot go negative must be a plain update
    // (the balance check before it found the account holding enough).
    let (balance_after, stored_kind, seal_seq) = if delta < 0 && !kind.may_go_negative() {
        sqlx::query_as::<_, (i64, String, i64)>(
            "UPDATE ledger_accounts SET balance = balance + $1, seal_seq = seal_seq + $2 WHERE id = $3 \
             RETURNING balance, kind, seal_seq",
        )
        .bind(delta)
        .bind(entries)
        .bind(account.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::Invariant(format!("account {account} does not exist to be debited")))?
    } else {
        sqlx::query_as::<_, (i64, String, i64)>(
            "INSERT INTO ledger_accounts (id, kind, currency, owner, balance, seal_seq) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO UPDATE SET balance = ledger_accounts.balance + excluded.balance, \
                 seal_seq = ledger_accounts.seal_seq + excluded.seal_seq \
             RETURNING balance, kind, seal_seq",
        )
        .bind(account.as_str())
        .bind(kind.as_str())
        .bind(currency)
        .bind(owner)
        .bind(delta)
        .bind(entries)
        .fetch_one(&mut **tx)
        .await?
    };
    // The first movement in this transaction locked the row: where its chain stood before
    // cannot move under us until commit.
    tx.ledger.chain_from.entry(account.to_string()).or_insert(seal_seq - entries);
    if stored_kind != kind.as_str() {
        return Err(StoreError::Invariant(format!("account {account} is a {stored_kind}, not a {}", kind.as_str())));
    }
    if !kind.may_go_negative() && balance_after < 0 {
        // The CHECK constraint should already have refused this; never carry on if not.
        return Err(StoreError::Invariant(format!("wallet {account} would go below zero")));
    }
    Ok(balance_after)
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
    // A tuple, not a record: the last column is an unnamed subquery, so only its position names it.
    let accounts = sqlx::query_as::<_, (String, String, i64, Option<i64>)>(
        "SELECT a.id, a.currency, a.balance, \
             (SELECT MAX(e.id) FROM ledger_entries e WHERE e.account_id = a.id) \
         FROM ledger_accounts a WHERE a.kind = 'wallet' AND a.owner = $1 ORDER BY a.currency",
    )
    .bind(user.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut balances = Vec::with_capacity(accounts.len());
    for (account, currency, balance, last_entry_id) in accounts {
        let credit = sqlx::query_as::<_, (String, i64)>(
            "SELECT order_id, at_ms FROM ledger_transfers \
             WHERE to_account = $1 AND order_id IS NOT NULL ORDER BY at_ms DESC, id DESC LIMIT 1",
        )
        .bind(&account)
        .fetch_optional(&mut *conn)
        .await?;
        let (last_credit_order_id, last_credit_at_ms) = credit.unzip();
        balances.push(WalletBalance { currency, balance, last_entry_id, last_credit_order_id, last_credit_at_ms });
    }
    Ok(balances)
}
