//! The audit's side of the sealed record: recompute every seal, walk every chain, and hold
//! the chains to the signed checkpoints, in the database and in an exported seal log.
//!
//! What each check proves:
//! - `sealed_rows`: no sealed row was edited, inserted or removed without recomputing
//!   seals (a renumbered or missing position breaks its stream).
//! - `seal_heads_current`: where writers continue from (an order's head seal, an account's
//!   entry count) is where their chains end, so the next write cannot fork a chain silently.
//! - `checkpoints_signed`: every stored checkpoint is intact, names the one before, binds
//!   its heads, and is signed by a trusted seal key.
//! - `checkpoint_heads_match`: every head a checkpoint recorded is still the seal at that
//!   position, and every checkpointed batch of one-row records still has the rows and
//!   seals it had (see [`super::batch`]). Rows edited and re-sealed by someone without
//!   the key fail here.
//! - `seal_log_matches`: the exported log's checkpoints are signed, linked, and present
//!   unchanged in the database; a database rewritten together with its checkpoints
//!   fails here.
//! - `sealing_keeps_up`: no committed heads wait for a checkpoint longer than allowed.

use super::checkpoint::{self, heads_root, Checkpoint};
use super::{content, one_row, stream, Head, GENESIS};
use crate::audit::{Check, EXAMPLES_MAX};
use crate::{Conn, Result, Store};
use std::collections::{HashMap, HashSet};

/// Rows read per page while walking a table.
pub(super) const PAGE_ROWS: i64 = 5_000;

pub struct VerifyOptions<'a> {
    /// Public keys (base64) whose signatures are trusted. Empty: signatures are unchecked,
    /// which `checkpoints_signed` reports as a violation once checkpoints exist.
    pub trusted_keys: &'a [String],
    /// Checkpoints read from an exported seal log, when one is given.
    pub log: Option<&'a [Checkpoint]>,
    /// Committed heads may wait this long for the sealing job.
    pub pending_age_ms_max: i64,
    pub now_ms: i64,
}

/// A check being counted.
pub(super) struct Tally {
    check: Check,
}

impl Tally {
    fn new(name: &'static str, description: &'static str) -> Tally {
        Tally { check: Check { name, description, violations: 0, examples: Vec::new() } }
    }

    pub(super) fn fail(&mut self, example: impl FnOnce() -> String) {
        self.check.violations += 1;
        if self.check.examples.len() < EXAMPLES_MAX {
            self.check.examples.push(example());
        }
    }
}

/// Walks the chains of one table, stream by stream, in order.
pub(super) struct Walk<'a> {
    table: &'static str,
    heads: &'a HashMap<String, Vec<(i64, String)>>,
    matched: HashSet<(String, i64)>,
    /// One-row records by the batch they name: (stream, stored seal).
    batches: HashMap<Vec<u8>, Vec<(String, String)>>,
    rows: Tally,
    head_check: Tally,
    stream: String,
    expect_seq: i64,
    prev: String,
}

impl<'a> Walk<'a> {
    /// Starts walking another table.
    fn table(&mut self, table: &'static str) -> &mut Self {
        self.table = table;
        self.stream.clear();
        self
    }

    /// Visits a one-row record (a stream of its own).
    pub(super) fn visit_one(
        &mut self,
        stream: &str,
        stored: Option<&str>,
        batch: Option<&[u8]>,
        compute: impl Fn() -> String,
    ) {
        self.visit(stream, Some(1), stored, batch, |_| compute());
    }

    /// Visits the next row of its table: `batch` is the batch it names, if sealed since
    /// batches (migration 0008).
    fn visit(
        &mut self,
        stream: &str,
        seq: Option<i64>,
        stored: Option<&str>,
        batch: Option<&[u8]>,
        compute: impl Fn(&str) -> String,
    ) {
        if let Some(batch) = batch {
            let rows = self.batches.entry(batch.to_vec()).or_default();
            rows.push((stream.to_owned(), stored.unwrap_or_default().to_owned()));
        }
        if stream != self.stream {
            self.stream = stream.to_owned();
            self.expect_seq = 1;
            self.prev = GENESIS.to_owned();
        }
        let table = self.table;
        let seq = match seq {
            Some(seq) if seq == self.expect_seq => seq,
            other => {
                let expect = self.expect_seq;
                self.rows
                    .fail(|| format!("{table} {stream} #{other:?}: out of place in its chain (expected #{expect})"));
                other.unwrap_or(expect)
            }
        };
        let computed = compute(&self.prev);
        match stored {
            None => self.rows.fail(|| format!("{table} {stream} #{seq}: not sealed")),
            Some(s) if s != computed => {
                self.rows.fail(|| format!("{table} {stream} #{seq}: seal does not match its content and chain"))
            }
            Some(_) => {}
        }
        if let Some(recorded) = self.heads.get(stream) {
            for (head_seq, head_seal) in recorded.iter().filter(|(s, _)| *s == seq) {
                self.matched.insert((stream.to_owned(), *head_seq));
                if stored != Some(head_seal.as_str()) {
                    self.head_check
                        .fail(|| format!("{table} {stream} #{head_seq}: differs from the sealed checkpoint"));
                }
            }
        }
        self.prev = stored.map_or(computed, str::to_owned);
        self.expect_seq = seq + 1;
    }
}

pub async fn run(store: &Store, options: &VerifyOptions<'_>) -> Result<Vec<Check>> {
    let mut snapshot = store.snapshot().await?;
    let c = &mut *snapshot;
    let rows = Tally::new(
        "sealed_rows",
        "every sealed row's seal is the hash of its content and of the previous seal in its stream, with no gap",
    );
    let head_check = Tally::new(
        "checkpoint_heads_match",
        "every head a signed checkpoint recorded is still the seal at that place in its chain, and every batch \
         it recorded still has the same rows and seals",
    );
    let mut signed = Tally::new(
        "checkpoints_signed",
        "every checkpoint is intact, names the one before, binds its heads and is signed by a trusted seal key",
    );
    let checkpoints = checkpoint::list(c, 0, i64::MAX).await?;
    let mut heads: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    let mut prev_hash = GENESIS.to_owned();
    for (i, cp) in checkpoints.iter().enumerate() {
        let recorded = checkpoint::heads(c, cp.id).await?;
        check_checkpoint(cp, i as i64 + 1, &prev_hash, &recorded, options.trusted_keys, &mut signed);
        prev_hash = cp.hash.clone();
        for Head(s, seq, seal) in recorded {
            heads.entry(s).or_default().push((seq, seal));
        }
    }
    let mut walk = Walk {
        table: "",
        heads: &heads,
        matched: HashSet::new(),
        batches: HashMap::new(),
        rows,
        head_check,
        stream: String::new(),
        expect_seq: 1,
        prev: GENESIS.to_owned(),
    };
    walk_events(c, walk.table("order_events")).await?;
    walk_agreement_events(c, walk.table("agreement_events")).await?;
    walk_entries(c, walk.table("ledger_entries")).await?;
    walk_actions(c, walk.table("operator_actions")).await?;
    one_row::walk_payments(c, walk.table("payments")).await?;
    one_row::walk_deliveries(c, walk.table("deliveries")).await?;
    one_row::walk_charges(c, walk.table("charges")).await?;
    one_row::walk_refunds(c, walk.table("refunds")).await?;
    one_row::walk_notifications(c, walk.table("notifications")).await?;
    let Walk { matched, batches, rows, mut head_check, .. } = walk;
    super::batch::check(&heads, &batches, &mut head_check);
    // Heads whose row the walks never met: the row is gone (or moved out of its place).
    // (A batch's head has no row of its own: its rows were just checked.)
    for (s, list) in heads.iter().filter(|(s, _)| super::batch::id_of(s).is_none()) {
        for (seq, _) in list.iter().filter(|(seq, _)| !matched.contains(&(s.clone(), *seq))) {
            head_check.fail(|| format!("{s} #{seq}: sealed in a checkpoint, now missing"));
        }
    }
    let mut checks = vec![rows.check, heads_current(c).await?, signed.check, head_check.check];
    if let Some(log) = options.log {
        checks.push(log_matches(log, &checkpoints, options.trusted_keys));
    }
    checks.push(keeps_up(c, options).await?);
    Ok(checks)
}

fn check_checkpoint(
    cp: &Checkpoint,
    expect_id: i64,
    prev_hash: &str,
    recorded: &[Head],
    trusted: &[String],
    tally: &mut Tally,
) {
    let id = cp.id;
    if cp.id != expect_id {
        tally.fail(|| format!("checkpoint {id}: out of sequence (expected {expect_id})"));
    }
    if cp.prev_hash != prev_hash {
        tally.fail(|| format!("checkpoint {id}: does not name the checkpoint before it"));
    }
    if !cp.hash_is_own() {
        tally.fail(|| format!("checkpoint {id}: hash does not match its fields"));
    }
    if heads_root(recorded) != cp.heads_root || recorded.len() as i64 != cp.heads_count {
        tally.fail(|| format!("checkpoint {id}: its stored heads are not the ones it signed"));
    }
    if trusted.is_empty() {
        tally.fail(|| format!("checkpoint {id}: no trusted seal public key to check its signature"));
    } else if !trusted.iter().any(|key| cp.signed_by(key)) {
        tally.fail(|| format!("checkpoint {id}: not signed by a trusted seal key"));
    }
}

fn log_matches(log: &[Checkpoint], stored: &[Checkpoint], trusted: &[String]) -> Check {
    let mut tally = Tally::new(
        "seal_log_matches",
        "every checkpoint in the exported seal log is signed, linked, and in the database unchanged",
    );
    let by_id: HashMap<i64, &Checkpoint> = stored.iter().map(|cp| (cp.id, cp)).collect();
    let mut before: Option<&Checkpoint> = None;
    for cp in log {
        // Two exports racing to one file may both append a checkpoint: a repeat is harmless.
        if before == Some(cp) {
            continue;
        }
        let id = cp.id;
        if !cp.hash_is_own() || !trusted.iter().any(|key| cp.signed_by(key)) {
            tally.fail(|| format!("log checkpoint {id}: not intact or not signed by a trusted seal key"));
        }
        if let Some(prev) = before {
            if cp.id != prev.id + 1 || cp.prev_hash != prev.hash {
                tally.fail(|| format!("log checkpoint {id}: does not follow checkpoint {}", prev.id));
            }
        }
        match by_id.get(&cp.id) {
            None => tally.fail(|| format!("checkpoint {id}: in the seal log, missing from the database")),
            Some(db) if *db != cp => {
                tally.fail(|| format!("checkpoint {id}: the database's differs from the seal log's"))
            }
            Some(_) => {}
        }
        before = Some(cp);
    }
    if trusted.is_empty() && !log.is_empty() {
        tally.fail(|| "no trusted seal public key to check the log against".to_owned());
    }
    tally.check
}

async fn keeps_up(c: &mut Conn, options: &VerifyOptions<'_>) -> Result<Check> {
    let mut tally = Tally::new(
        "sealing_keeps_up",
        "no committed change waits for a checkpoint longer than the sealing job's bound",
    );
    let (count, oldest) = checkpoint::pending(c).await?;
    if let Some(oldest) = oldest {
        let age_ms = options.now_ms - oldest;
        if age_ms > options.pending_age_ms_max {
            tally.fail(|| format!("{count} transaction(s) unsealed, the oldest for {} s", age_ms / 1000));
        }
    }
    Ok(tally.check)
}

async fn heads_current(c: &mut Conn) -> Result<Check> {
    let rows = sqlx::query_scalar::<_, String>(
        "SELECT 'order ' || o.order_no FROM orders o WHERE o.event_seq > 0 AND COALESCE(o.seal_head, '') <> \
             COALESCE((SELECT e.seal FROM order_events e WHERE e.order_id = o.id AND e.seq = o.event_seq), '-') \
         UNION ALL \
         SELECT 'agreement ' || g.id FROM agreements g WHERE g.event_seq > 0 AND COALESCE(g.seal_head, '') <> \
             COALESCE((SELECT e.seal FROM agreement_events e WHERE e.agreement_id = g.id AND e.seq = g.event_seq), '-') \
         UNION ALL \
         SELECT 'account ' || a.id FROM ledger_accounts a \
             WHERE a.seal_seq <> COALESCE((SELECT MAX(e.seal_seq) FROM ledger_entries e WHERE e.account_id = a.id), 0)",
    )
    .fetch_all(c)
    .await?;
    let mut tally = Tally::new(
        "seal_heads_current",
        "every order's and agreement's chain head is its last event's seal, and every account's entry count is its last entry's place",
    );
    for row in rows {
        tally.fail(|| format!("{row}: head differs from its chain's last seal or position"));
    }
    Ok(tally.check)
}

#[derive(sqlx::FromRow)]
struct EventRecord {
    order_id: String,
    seq: i64,
    at_ms: i64,
    kind: String,
    actor: String,
    cause: String,
    data: String,
    seal: Option<String>,
    seal_batch: Option<Vec<u8>>,
}

async fn walk_events(c: &mut Conn, walk: &mut Walk<'_>) -> Result<()> {
    let (mut after_order, mut after_seq) = (String::new(), 0_i64);
    loop {
        let page = sqlx::query_as::<_, EventRecord>(
            "SELECT order_id, seq, at_ms, kind, actor, cause, data, seal, seal_batch FROM order_events \
             WHERE order_id > $1 OR (order_id = $1 AND seq > $2) ORDER BY order_id, seq LIMIT $3",
        )
        .bind(&after_order)
        .bind(after_seq)
        .bind(PAGE_ROWS)
        .fetch_all(&mut *c)
        .await?;
        let Some(last) = page.last() else { return Ok(()) };
        (after_order, after_seq) = (last.order_id.clone(), last.seq);
        for e in &page {
            walk.visit(&stream::events(&e.order_id), Some(e.seq), e.seal.as_deref(), e.seal_batch.as_deref(), |prev| {
                content::event(prev, &e.order_id, e.seq, e.at_ms, &e.kind, &e.actor, &e.cause, &e.data)
            });
        }
    }
}

#[derive(sqlx::FromRow)]
struct AgreementEventRecord {
    agreement_id: String,
    seq: i64,
    at_ms: i64,
    kind: String,
    cause: String,
    data: String,
    seal: Option<String>,
    seal_batch: Option<Vec<u8>>,
}

async fn walk_agreement_events(c: &mut Conn, walk: &mut Walk<'_>) -> Result<()> {
    let (mut after_id, mut after_seq) = (String::new(), 0_i64);
    loop {
        let page = sqlx::query_as::<_, AgreementEventRecord>(
            "SELECT agreement_id, seq, at_ms, kind, cause, data, seal, seal_batch FROM agreement_events \
             WHERE agreement_id > $1 OR (agreement_id = $1 AND seq > $2) ORDER BY agreement_id, seq LIMIT $3",
        )
        .bind(&after_id)
        .bind(after_seq)
        .bind(PAGE_ROWS)
        .fetch_all(&mut *c)
        .await?;
        let Some(last) = page.last() else { return Ok(()) };
        (after_id, after_seq) = (last.agreement_id.clone(), last.seq);
        for e in &page {
            let stream = stream::agreement(&e.agreement_id);
            walk.visit(&stream, Some(e.seq), e.seal.as_deref(), e.seal_batch.as_deref(), |prev| {
                content::agreement_event(prev, &e.agreement_id, e.seq, e.at_ms, &e.kind, &e.cause, &e.data)
            });
        }
    }
}

#[derive(sqlx::FromRow)]
struct EntryRecord {
    id: i64,
    account_id: String,
    seal_seq: Option<i64>,
    amount: i64,
    balance_after: i64,
    at_ms: i64,
    seal: Option<String>,
    seal_batch: Option<Vec<u8>>,
    transfer_id: String,
    from_account: String,
    to_account: String,
    currency: String,
    transfer_amount: i64,
    order_id: Option<String>,
}

async fn walk_entries(c: &mut Conn, walk: &mut Walk<'_>) -> Result<()> {
    let (mut after_account, mut after_id) = (String::new(), 0_i64);
    loop {
        // In id order within an account: its entries are written under the account's lock,
        // so ids follow the chain; a renumbered `seal_seq` shows as out of place.
        let page = sqlx::query_as::<_, EntryRecord>(
            "SELECT e.id, e.account_id, e.seal_seq, e.amount, e.balance_after, e.at_ms, e.seal, e.seal_batch, \
                 t.id AS transfer_id, \
                 t.from_account, t.to_account, t.currency, t.amount AS transfer_amount, t.order_id \
             FROM ledger_entries e JOIN ledger_transfers t ON t.id = e.transfer_id \
             WHERE e.account_id > $1 OR (e.account_id = $1 AND e.id > $2) ORDER BY e.account_id, e.id LIMIT $3",
        )
        .bind(&after_account)
        .bind(after_id)
        .bind(PAGE_ROWS)
        .fetch_all(&mut *c)
        .await?;
        let Some(last) = page.last() else { return Ok(()) };
        (after_account, after_id) = (last.account_id.clone(), last.id);
        for e in &page {
            let facts = content::TransferFacts {
                id: &e.transfer_id,
                from: &e.from_account,
                to: &e.to_account,
                currency: &e.currency,
                amount: e.transfer_amount,
                order_id: e.order_id.as_deref(),
            };
            let seq = e.seal_seq.unwrap_or(0);
            let batch = e.seal_batch.as_deref();
            walk.visit(&stream::entries(&e.account_id), e.seal_seq, e.seal.as_deref(), batch, |prev| {
                content::entry(prev, &facts, &e.account_id, seq, e.amount, e.balance_after, e.at_ms)
            });
        }
    }
}

#[derive(sqlx::FromRow)]
struct ActionRecord {
    id: i64,
    seal_stream: Option<String>,
    seal_seq: Option<i64>,
    item_id: Option<i64>,
    order_id: Option<String>,
    charge_id: Option<i64>,
    action: String,
    reason_code: String,
    note: String,
    actor: String,
    channel: String,
    detail: String,
    at_ms: i64,
    seal: Option<String>,
}

async fn walk_actions(c: &mut Conn, walk: &mut Walk<'_>) -> Result<()> {
    let (mut after_stream, mut after_id) = (String::new(), 0_i64);
    loop {
        let page = sqlx::query_as::<_, ActionRecord>(
            "SELECT id, seal_stream, seal_seq, item_id, order_id, charge_id, action, reason_code, note, actor, channel, \
                 detail, at_ms, seal FROM operator_actions \
             WHERE COALESCE(seal_stream, '') > $1 OR (COALESCE(seal_stream, '') = $1 AND id > $2) \
             ORDER BY COALESCE(seal_stream, ''), id LIMIT $3",
        )
        .bind(&after_stream)
        .bind(after_id)
        .bind(PAGE_ROWS)
        .fetch_all(&mut *c)
        .await?;
        let Some(last) = page.last() else { return Ok(()) };
        (after_stream, after_id) = (last.seal_stream.clone().unwrap_or_default(), last.id);
        for a in &page {
            let stream_name = a.seal_stream.clone().unwrap_or_default();
            let facts = content::ActionFacts {
                stream: &stream_name,
                seq: a.seal_seq.unwrap_or(0),
                item_id: a.item_id,
                order_id: a.order_id.as_deref(),
                charge_id: a.charge_id,
                action: &a.action,
                reason_code: &a.reason_code,
                note: &a.note,
                actor: &a.actor,
                channel: &a.channel,
                detail: &a.detail,
                at_ms: a.at_ms,
            };
            walk.visit(&stream_name, a.seal_seq, a.seal.as_deref(), None, |prev| content::action(prev, &facts));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::key::SealKey;
    use crate::seal::sha256_hex;

    fn signed(key: &SealKey, id: i64, prev_hash: &str) -> Checkpoint {
        let root = heads_root(&[]);
        let message = Checkpoint::message(id, id * 1_000, prev_hash, &root, 0);
        Checkpoint {
            id,
            at_ms: id * 1_000,
            prev_hash: prev_hash.to_owned(),
            heads_root: root,
            heads_count: 0,
            hash: sha256_hex(message.as_bytes()),
            public_key: key.public_base64(),
            signature: key.sign(message.as_bytes()),
        }
    }

    #[test]
    fn the_log_is_held_to_the_trusted_key_its_links_and_the_database() {
        let (ours, _) = SealKey::generate().unwrap();
        let (theirs, _) = SealKey::generate().unwrap();
        let trusted = vec![ours.public_base64()];
        let one = signed(&ours, 1, GENESIS);
        let two = signed(&ours, 2, &one.hash);
        let stored = vec![one.clone(), two.clone()];
        // Intact, and a line two exports both appended is harmless.
        let log = vec![one.clone(), two.clone(), two.clone()];
        assert_eq!(log_matches(&log, &stored, &trusted).violations, 0);
        // A line forged with another key, or unlinked, or absent from the database.
        // Forged in the database and the log alike: only the signature tells.
        let forged = signed(&theirs, 2, &one.hash);
        let rewritten = vec![one.clone(), forged.clone()];
        assert!(log_matches(&rewritten, &rewritten, &trusted).violations > 0);
        let unlinked = signed(&ours, 2, GENESIS);
        assert!(log_matches(&[one.clone(), unlinked], &stored, &trusted).violations > 0);
        assert!(log_matches(&[one.clone(), two.clone()], std::slice::from_ref(&one), &trusted).violations > 0);
        // Without a trusted key nothing is taken on trust.
        assert!(log_matches(&[one], &stored, &[]).violations > 0);
    }
}
