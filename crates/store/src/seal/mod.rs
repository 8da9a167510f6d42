//! The sealed record: hash chains over every row that must never change, and signed
//! checkpoints of their heads kept outside the database.
//!
//! Each sealed row carries `seal = SHA-256(table, previous seal in its stream, content)`.
//! A stream is what one lock already serialises, so chaining costs no extra contention:
//! an order's events (the order row), an account's ledger entries (the account row), an
//! attention item's operator actions. Records that exist once per key (a payment, a
//! delivery, a charge, a refund, a verified notification) are streams of their own.
//!
//! A committing transaction records what it sealed in `seal_pending` (one row per
//! transaction, see [`flush`]): one head for all its rows, their batch's digest (see
//! [`batch`]), and the heads of the operator actions' streams it moved. The shared
//! accounts' entries (issuance, compensation, loss), written after that row under the
//! hottest locks, are in no batch: the sealing job reads those few accounts' heads
//! itself. It ([`checkpoint`]) folds them into a signed checkpoint that names the previous one, and
//! the server appends it to the seal log. The audit ([`verify`]) recomputes every seal,
//! and checks the rows against the checkpoints in the database and in an exported log: a
//! row edited and re-sealed in the database no longer matches the batch digest (or, sealed
//! before batches, the stream head) a signed checkpoint recorded.

pub mod batch;
pub mod checkpoint;
pub mod content;
pub mod key;
pub mod log;
mod one_row;
pub mod verify;

use crate::{Result, StoreError, Tx};
use aws_lc_rs::digest;

/// The "previous seal" of a stream's first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain separation: a seal of one version can never be mistaken for another's.
const SEAL_DOMAIN: &[u8] = b"zerodrop-seal-v1";

/// One value of a row's content, encoded without ambiguity (a type tag, then a length).
#[derive(Clone, Copy, Debug)]
pub enum Field<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
    Bytes(&'a [u8]),
}

/// The seal of a row of `table` whose stream's previous seal is `prev`.
pub fn link(table: &str, prev: &str, fields: &[Field<'_>]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    put(&mut ctx, b'd', SEAL_DOMAIN);
    put(&mut ctx, b't', table.as_bytes());
    put(&mut ctx, b'p', prev.as_bytes());
    for field in fields {
        match *field {
            Field::Text(s) => put(&mut ctx, b's', s.as_bytes()),
            Field::OptText(Some(s)) => put(&mut ctx, b's', s.as_bytes()),
            Field::OptText(None) | Field::OptInt(None) => put(&mut ctx, b'n', b""),
            Field::Int(i) | Field::OptInt(Some(i)) => put(&mut ctx, b'i', &i.to_be_bytes()),
            Field::Bytes(b) => put(&mut ctx, b'b', b),
        }
    }
    hex::encode(ctx.finish().as_ref())
}

fn put(ctx: &mut digest::Context, tag: u8, bytes: &[u8]) {
    ctx.update(&[tag]);
    ctx.update(&(bytes.len() as u64).to_be_bytes());
    ctx.update(bytes);
}

/// Hex SHA-256 of `bytes` (checkpoint hashes and roots).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// A stream's head: its name, the position of its last row, and that row's seal.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Head(pub String, pub i64, pub String);

/// Heads a transaction moved, written at its commit.
#[derive(Default)]
pub(crate) struct Pending {
    heads: Vec<Head>,
    batch: batch::Batch,
}

impl Tx {
    /// Notes that `stream` now ends at `seq` with `seal` (operator actions, whose rows name
    /// no batch).
    pub(crate) fn sealed(&mut self, stream: String, seq: i64, seal: String) {
        self.seals.heads.push(Head(stream, seq, seal));
    }

    /// The batch id this transaction's sealed rows name (their `seal_batch`).
    pub(crate) fn seal_batch(&mut self) -> Vec<u8> {
        self.seals.batch.id()
    }

    /// Notes a row written with [`Tx::seal_batch`]: its seal joins the batch's digest.
    pub(crate) fn sealed_in_batch(&mut self, seal: String) {
        self.seals.batch.add(seal);
    }
}

/// Writes the transaction's batch head and the heads it moved as one `seal_pending` row
/// (the last position of each stream is enough: a head vouches for every row before it),
/// one small row whatever the transaction wrote. Called by
/// [`Tx::commit`] after every other deferred write.
pub(crate) async fn flush(tx: &mut Tx) -> Result<()> {
    let mut heads = std::mem::take(&mut tx.seals.heads);
    heads.extend(tx.seals.batch.take_head());
    if heads.is_empty() {
        return Ok(());
    }
    // Keep the furthest position of each stream.
    heads.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    heads.dedup_by(|later, earlier| later.0 == earlier.0);
    let text = serde_json::to_string(&heads).map_err(StoreError::Json)?;
    sqlx::query("INSERT INTO seal_pending (at_ms, heads) VALUES ($1, $2)")
        .bind(crate::now_ms())
        .bind(text)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Stream names, one place for the writers and the audit.
pub mod stream {
    pub fn events(order_id: &str) -> String {
        format!("order:{order_id}")
    }
    pub fn agreement(agreement_id: &str) -> String {
        format!("agreement:{agreement_id}")
    }
    pub fn entries(account_id: &str) -> String {
        format!("account:{account_id}")
    }
    /// Stream names also name rows in the audit's failures; before batches (migration
    /// 0008), every stream's head was checkpointed under its name.
    pub fn payment(order_id: &str) -> String {
        format!("payment:{order_id}")
    }
    pub fn delivery(order_id: &str) -> String {
        format!("delivery:{order_id}")
    }
    pub fn charge(provider: &str, trade_no: &str) -> String {
        format!("charge:{provider}:{trade_no}")
    }
    pub fn refund(id: &str) -> String {
        format!("refund:{id}")
    }
    pub fn notification(id: i64) -> String {
        format!("notification:{id}")
    }
    /// An attention item's actions; actions on no item are chained per order, else per charge.
    pub fn actions(item_id: Option<i64>, order_id: Option<&str>, charge_id: Option<i64>) -> String {
        match (item_id, order_id, charge_id) {
            (Some(item), _, _) => format!("actions:item:{item}"),
            (None, Some(order), _) => format!("actions:order:{order}"),
            (None, None, Some(charge)) => format!("actions:charge:{charge}"),
            (None, None, None) => "actions:none".to_owned(),
        }
    }
}
