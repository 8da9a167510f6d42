//! Holds a proof to the database and the seal log again. Every finding is one line naming
//! the record: a record edited, removed or renumbered since the proof was made, a seal that
//! is no longer the hash of its content and chain, a checkpoint unsigned, unchained or
//! changed, totals that no longer add up, or a proof file edited after it was written.
//!
//! The file is read whole (a proof of millions of charges needs memory for it: verify long
//! periods as several shorter proofs).

use super::{Body, Entry, Header, Totals, KIND, SCHEMA_VERSION};
use crate::seal::checkpoint::{self, heads_root, Checkpoint};
use crate::seal::{content, sha256_hex, GENESIS};
use crate::{Conn, Result, Store};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::path::Path;

/// A proof file that cannot be read as one: named with the serde position.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("proof file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("proof file {path}: not a zerodrop proof ({reason})")]
    Malformed { path: String, reason: String },
}

#[derive(Deserialize)]
struct RawFile<'a> {
    header: Header,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// A proof as read, with what reading it already found (a body edited after it was written).
pub struct Read {
    pub header: Header,
    pub body: Body,
    pub findings: Vec<String>,
}

/// Reads and parses a proof file.
pub fn read(path: &Path) -> Result<Read, ReadError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io { path: shown.clone(), source })?;
    let malformed = |reason: String| ReadError::Malformed { path: shown.clone(), reason };
    let raw: RawFile<'_> = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    if raw.header.kind != KIND || raw.header.schema_version != SCHEMA_VERSION {
        return Err(malformed(format!(
            "kind {:?} version {}, expected {KIND:?} version {SCHEMA_VERSION}",
            raw.header.kind, raw.header.schema_version
        )));
    }
    let mut findings = Vec::new();
    if sha256_hex(raw.body.get().as_bytes()) != raw.header.body_sha256 {
        findings.push("proof file: its body is not the one its header's SHA-256 names (edited after writing)".into());
    }
    let body: Body = serde_json::from_str(raw.body.get()).map_err(|e| malformed(format!("body: {e}")))?;
    if (body.from_ms, body.to_ms) != (raw.header.from_ms, raw.header.to_ms) {
        findings.push("proof file: the body's period is not the header's".into());
    }
    Ok(Read { header: raw.header, body, findings })
}

pub struct Inputs<'a> {
    /// Public keys (base64) whose checkpoint signatures are trusted.
    pub trusted_keys: &'a [String],
    /// Checkpoints read from an exported seal log, when one is given.
    pub log: Option<&'a [Checkpoint]>,
}

/// Every finding, one line each; empty when the proof still holds.
pub async fn verify(store: &Store, proof: &Read, inputs: &Inputs<'_>) -> Result<Vec<String>> {
    let mut findings = proof.findings.clone();
    let mut snapshot = store.snapshot().await?;
    let c = &mut *snapshot;
    let mut totals = Totals::default();
    for entry in &proof.body.charges {
        totals.add(entry);
        check_entry(&mut *c, entry, &mut findings).await?;
    }
    if totals != proof.body.totals {
        findings.push("totals: the report's totals are not the sum of its charges".into());
    }
    check_checkpoints(&mut *c, &proof.body.checkpoints, inputs, &mut findings).await?;
    Ok(findings)
}

#[derive(sqlx::FromRow)]
struct ChargeRecord {
    provider: String,
    trade_no: String,
    order_no: String,
    amount_minor: i64,
    currency: String,
    paid_at_ms: Option<i64>,
    evidence: String,
    recorded_at_ms: i64,
    seal: Option<String>,
}

/// Compares a record's stored seal with the proof's, and with the one its content makes.
fn compare(name: &str, reported: Option<&str>, stored: Option<&str>, computed: &str, findings: &mut Vec<String>) {
    if stored != reported {
        findings.push(format!("{name}: its seal changed since the proof was made"));
    }
    if stored != Some(computed) {
        findings.push(format!("{name}: its seal is not the hash of its content and chain (edited in place)"));
    }
}

async fn check_entry(c: &mut Conn, entry: &Entry, findings: &mut Vec<String>) -> Result<()> {
    let ch = &entry.charge;
    let name = format!("charge {} ({} {})", ch.id, ch.provider, ch.trade_no);
    let row = sqlx::query_as::<_, ChargeRecord>(
        "SELECT provider, trade_no, order_no, amount_minor, currency, paid_at_ms, evidence, recorded_at_ms, seal \
         FROM charges WHERE id = $1",
    )
    .bind(ch.id)
    .fetch_optional(&mut *c)
    .await?;
    match row {
        None => findings.push(format!("{name}: missing from the database")),
        Some(r) => {
            if (&r.provider, &r.trade_no, r.amount_minor, &r.currency)
                != (&ch.provider, &ch.trade_no, ch.amount_minor, &ch.currency)
            {
                findings.push(format!("{name}: its facts changed since the proof was made"));
            }
            let computed = content::charge(&content::ChargeFacts {
                provider: &r.provider,
                trade_no: &r.trade_no,
                order_no: &r.order_no,
                amount_minor: r.amount_minor,
                currency: &r.currency,
                paid_at_ms: r.paid_at_ms,
                evidence: &r.evidence,
                recorded_at_ms: r.recorded_at_ms,
            });
            compare(&name, ch.seal.as_deref(), r.seal.as_deref(), &computed, findings);
        }
    }
    if let Some(order) = &entry.order {
        for e in &entry.events {
            check_event(&mut *c, &order.id, &order.order_no, e, findings).await?;
        }
        if let Some(d) = &entry.delivery {
            let name = format!("order {} delivery", order.order_no);
            let row = sqlx::query_as::<_, (String, i64, String, Option<String>)>(
                "SELECT kind, delivered_at_ms, detail, seal FROM deliveries WHERE order_id = $1",
            )
            .bind(&order.id)
            .fetch_optional(&mut *c)
            .await?;
            match row {
                None => findings.push(format!("{name}: missing from the database")),
                Some((kind, at, detail, seal)) => {
                    let computed = content::delivery(&order.id, &kind, at, &detail);
                    compare(&name, d.seal.as_deref(), seal.as_deref(), &computed, findings);
                }
            }
        }
    }
    for r in &entry.refunds {
        check_refund(&mut *c, r, findings).await?;
    }
    for t in &entry.transfers {
        for e in &t.entries {
            check_ledger_entry(&mut *c, &t.id, e, findings).await?;
        }
    }
    Ok(())
}

async fn previous_event_seal(c: &mut Conn, order_id: &str, seq: i64) -> Result<Option<String>> {
    if seq <= 1 {
        return Ok(Some(GENESIS.to_owned()));
    }
    let seal =
        sqlx::query_scalar::<_, Option<String>>("SELECT seal FROM order_events WHERE order_id = $1 AND seq = $2")
            .bind(order_id)
            .bind(seq - 1)
            .fetch_optional(c)
            .await?;
    Ok(seal.flatten())
}

async fn check_event(
    c: &mut Conn,
    order_id: &str,
    order_no: &str,
    e: &super::EventRef,
    findings: &mut Vec<String>,
) -> Result<()> {
    let name = format!("order {order_no} event #{} ({})", e.seq, e.kind);
    let row = sqlx::query_as::<_, (String, i64, String, String, String, Option<String>)>(
        "SELECT kind, at_ms, actor, cause, data, seal FROM order_events WHERE order_id = $1 AND seq = $2",
    )
    .bind(order_id)
    .bind(e.seq)
    .fetch_optional(&mut *c)
    .await?;
    let Some((kind, at_ms, actor, cause, data, seal)) = row else {
        findings.push(format!("{name}: missing from the database (removed, or the events renumbered)"));
        return Ok(());
    };
    if kind != e.kind || at_ms != e.at_ms {
        findings.push(format!("{name}: the event at this place is now `{kind}` (removed, reordered or renumbered)"));
    }
    let prev = previous_event_seal(&mut *c, order_id, e.seq).await?.unwrap_or_default();
    let computed = content::event(&prev, order_id, e.seq, at_ms, &kind, &actor, &cause, &data);
    compare(&name, e.seal.as_deref(), seal.as_deref(), &computed, findings);
    Ok(())
}

#[derive(sqlx::FromRow)]
struct RefundRecord {
    order_id: Option<String>,
    charge_id: Option<i64>,
    request_no: String,
    amount_minor: i64,
    currency: String,
    full_refund: i64,
    origin: String,
    reason: String,
    created_at_ms: i64,
    seal: Option<String>,
}

async fn check_refund(c: &mut Conn, r: &super::RefundRef, findings: &mut Vec<String>) -> Result<()> {
    let name = format!("refund {} ({})", r.id, r.request_no);
    let row = sqlx::query_as::<_, RefundRecord>(
        "SELECT order_id, charge_id, request_no, amount_minor, currency, full_refund, origin, reason, created_at_ms, \
                seal FROM refunds WHERE id = $1",
    )
    .bind(&r.id)
    .fetch_optional(c)
    .await?;
    let Some(row) = row else {
        findings.push(format!("{name}: missing from the database"));
        return Ok(());
    };
    let computed = content::refund(&content::RefundFacts {
        id: &r.id,
        order_id: row.order_id.as_deref(),
        charge_id: row.charge_id,
        request_no: &row.request_no,
        amount_minor: row.amount_minor,
        currency: &row.currency,
        full: row.full_refund != 0,
        origin: &row.origin,
        reason: &row.reason,
        created_at_ms: row.created_at_ms,
    });
    compare(&name, r.seal.as_deref(), row.seal.as_deref(), &computed, findings);
    Ok(())
}

#[derive(sqlx::FromRow)]
struct LedgerRecord {
    seal_seq: Option<i64>,
    amount: i64,
    balance_after: i64,
    at_ms: i64,
    seal: Option<String>,
    from_account: String,
    to_account: String,
    currency: String,
    transfer_amount: i64,
    order_id: Option<String>,
}

async fn check_ledger_entry(
    c: &mut Conn,
    transfer_id: &str,
    e: &super::LedgerEntryRef,
    findings: &mut Vec<String>,
) -> Result<()> {
    let name = format!("ledger entry {transfer_id} on {} #{}", e.account_id, e.seq.unwrap_or(0));
    let row = sqlx::query_as::<_, LedgerRecord>(
        "SELECT e.seal_seq, e.amount, e.balance_after, e.at_ms, e.seal, t.from_account, t.to_account, t.currency, \
                t.amount AS transfer_amount, t.order_id \
         FROM ledger_entries e JOIN ledger_transfers t ON t.id = e.transfer_id \
         WHERE e.transfer_id = $1 AND e.account_id = $2",
    )
    .bind(transfer_id)
    .bind(&e.account_id)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else {
        findings.push(format!("{name}: missing from the database"));
        return Ok(());
    };
    if row.seal_seq != e.seq {
        findings.push(format!("{name}: now at #{} of its account's chain (renumbered)", row.seal_seq.unwrap_or(0)));
    }
    let seq = row.seal_seq.unwrap_or(0);
    let prev = if seq <= 1 {
        Some(GENESIS.to_owned())
    } else {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT seal FROM ledger_entries WHERE account_id = $1 AND seal_seq = $2",
        )
        .bind(&e.account_id)
        .bind(seq - 1)
        .fetch_optional(&mut *c)
        .await?
        .flatten()
    };
    let facts = content::TransferFacts {
        id: transfer_id,
        from: &row.from_account,
        to: &row.to_account,
        currency: &row.currency,
        amount: row.transfer_amount,
        order_id: row.order_id.as_deref(),
    };
    let computed =
        content::entry(&prev.unwrap_or_default(), &facts, &e.account_id, seq, row.amount, row.balance_after, row.at_ms);
    compare(&name, e.seal.as_deref(), row.seal.as_deref(), &computed, findings);
    Ok(())
}

async fn check_checkpoints(
    c: &mut Conn,
    checkpoints: &[Checkpoint],
    inputs: &Inputs<'_>,
    findings: &mut Vec<String>,
) -> Result<()> {
    if inputs.trusted_keys.is_empty() && !checkpoints.is_empty() {
        findings.push("checkpoints: no trusted seal public key to check their signatures".into());
    }
    let mut before: Option<&Checkpoint> = None;
    for cp in checkpoints {
        let id = cp.id;
        if !cp.hash_is_own() {
            findings.push(format!("checkpoint {id}: its hash does not match its fields"));
        }
        if !inputs.trusted_keys.is_empty() && !inputs.trusted_keys.iter().any(|k| cp.signed_by(k)) {
            findings.push(format!("checkpoint {id}: not signed by a trusted seal key"));
        }
        let prev_hash = match before {
            Some(prev) if prev.id + 1 != id => {
                findings.push(format!("checkpoint {id}: does not follow checkpoint {} in the proof", prev.id));
                None
            }
            Some(prev) => Some(prev.hash.clone()),
            None if id <= 1 => Some(GENESIS.to_owned()),
            None => checkpoint::list(&mut *c, id - 2, 1).await?.into_iter().next().map(|p| p.hash),
        };
        if prev_hash.as_deref().is_some_and(|h| h != cp.prev_hash) {
            findings.push(format!("checkpoint {id}: does not name the checkpoint before it"));
        }
        match checkpoint::list(&mut *c, id - 1, 1).await?.into_iter().next().filter(|s| s.id == id) {
            None => findings.push(format!("checkpoint {id}: missing from the database")),
            Some(stored) if stored != *cp => {
                findings.push(format!("checkpoint {id}: the database's differs from the proof's"))
            }
            Some(_) => {
                let heads = checkpoint::heads(&mut *c, id).await?;
                if heads_root(&heads) != cp.heads_root || heads.len() as i64 != cp.heads_count {
                    findings.push(format!("checkpoint {id}: its stored heads are not the ones it signed"));
                }
            }
        }
        if let Some(log) = inputs.log {
            match log.iter().find(|l| l.id == id) {
                None => findings.push(format!("checkpoint {id}: missing from the seal log")),
                Some(l) if l != cp => {
                    findings.push(format!("checkpoint {id}: the seal log's differs from the proof's"))
                }
                Some(_) => {}
            }
        }
        before = Some(cp);
    }
    Ok(())
}
