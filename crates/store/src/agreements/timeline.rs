//! An agreement's append-only timeline, whose fold is its state.
//!
//! [`append`] is the only code that changes `agreements.state`: it asks the domain's
//! state machine (`agreement::next`) whether a state event applies, inserts the event
//! sealed in the agreement's chain (its rows in the transaction's seal batch, like order
//! events), and moves the row's summary columns, in the caller's transaction. Events that
//! record something without moving the state (a charge started, a period paid, a
//! duplicate notification) go through the same chain.

use super::AgreementRow;
use crate::{seal, Conn, Result, StoreError, Tx};
use serde::Serialize;
use zerodrop_domain::agreement::{self, TransitionRefusal};
use zerodrop_domain::hold::Hold;
use zerodrop_domain::{AgreementEvent, AgreementState};

/// Longest timeline [`list`] returns: an agreement has a few events a period, so this
/// covers decades; the audit pages on.
pub const TIMELINE_ROWS_MAX: i64 = 2_000;

/// What an event is: the first, a state event, or a record that leaves the state alone.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Created,
    State(AgreementEvent),
    /// A period was paid: `data` carries `paid_until_ms` and `periods_paid`.
    PeriodPaid,
    /// Anything else worth keeping (`charge_started`, `notification_ignored`,
    /// `quote_issued`, `verification_failed`, ...). Never moves the state.
    Recorded(&'static str),
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Created => "created",
            Kind::State(event) => event.as_str(),
            Kind::PeriodPaid => "period_paid",
            Kind::Recorded(name) => name,
        }
    }
}

pub struct NewAgreementEvent {
    pub kind: Kind,
    /// What brought the event about, e.g. `agreement_notification:42`, `job:7`, `api`.
    pub cause: String,
    pub data: serde_json::Value,
}

impl NewAgreementEvent {
    pub fn new(kind: Kind, cause: &str, data: serde_json::Value) -> NewAgreementEvent {
        NewAgreementEvent { kind, cause: cause.to_owned(), data }
    }

    pub(crate) fn created(cause: &str, data: serde_json::Value) -> NewAgreementEvent {
        NewAgreementEvent::new(Kind::Created, cause, data)
    }

    /// A state event. Its `data` may carry what the row summarises: `provider_agreement_no`
    /// (sign), `hold` (a [`Hold`], hold placed), `effective_at_ms` (termination).
    pub fn state(event: AgreementEvent, cause: &str, data: serde_json::Value) -> NewAgreementEvent {
        NewAgreementEvent::new(Kind::State(event), cause, data)
    }

    /// A period paid: the agreement is paid until `paid_until_ms`, `periods_paid` in all.
    pub fn period_paid(
        cause: &str,
        paid_until_ms: i64,
        periods_paid: i64,
        data: serde_json::Value,
    ) -> NewAgreementEvent {
        let mut data = data;
        if let Some(map) = data.as_object_mut() {
            map.insert("paid_until_ms".into(), paid_until_ms.into());
            map.insert("periods_paid".into(), periods_paid.into());
        } else {
            data = serde_json::json!({ "paid_until_ms": paid_until_ms, "periods_paid": periods_paid });
        }
        NewAgreementEvent::new(Kind::PeriodPaid, cause, data)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct AgreementEventRow {
    pub seq: i64,
    pub at_ms: i64,
    pub kind: String,
    pub cause: String,
    pub data: serde_json::Value,
}

/// Why [`append`] did not append: the state machine's refusal (a duplicate or
/// out-of-order provider event is `AlreadyTerminated` or `NotApplicable`: callers record
/// it as a no-op, never retry it), or a storage error.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("{0}")]
    Refused(#[from] TransitionRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Appends one event to an agreement the caller has locked (see [`super::lock`]), moving
/// its state and summary columns. A refused state event changes nothing.
pub async fn append(tx: &mut Tx, row: &mut AgreementRow, event: NewAgreementEvent, now_ms: i64) -> Result<()> {
    match try_append(tx, row, event, now_ms).await {
        Ok(()) => Ok(()),
        Err(AppendError::Refused(refusal)) => Err(StoreError::Invariant(format!("agreement {}: {refusal}", row.id))),
        Err(AppendError::Store(e)) => Err(e),
    }
}

/// [`append`], with the state machine's refusal kept apart from storage errors.
pub async fn try_append(
    tx: &mut Tx,
    row: &mut AgreementRow,
    mut event: NewAgreementEvent,
    now_ms: i64,
) -> Result<(), AppendError> {
    // The mode is part of the fold: a termination always names it in its data.
    if let Kind::State(AgreementEvent::TerminationCommitted { mode }) = event.kind {
        match event.data.as_object_mut() {
            Some(map) => {
                map.insert("mode".into(), mode.as_str().into());
            }
            None => event.data = serde_json::json!({ "mode": mode.as_str() }),
        }
    }
    let state = match &event.kind {
        Kind::State(e) => agreement::next(row.state, *e)?,
        Kind::Created | Kind::PeriodPaid | Kind::Recorded(_) => row.state,
    };
    let mut next = row.clone();
    next.state = state;
    derive_columns(&mut next, &event, now_ms)?;
    let data = serde_json::to_string(&event.data).map_err(StoreError::Json)?;
    let seq = row.event_seq + 1;
    let kind = event.kind.as_str();
    let prev = row.seal_head.clone().unwrap_or_else(|| seal::GENESIS.to_owned());
    let head = seal::content::agreement_event(&prev, &row.id, seq, now_ms, kind, &event.cause, &data);
    let batch = tx.seal_batch();
    sqlx::query(
        "INSERT INTO agreement_events (agreement_id, seq, at_ms, kind, cause, data, seal, seal_batch) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&row.id)
    .bind(seq)
    .bind(now_ms)
    .bind(kind)
    .bind(&event.cause)
    .bind(data)
    .bind(&head)
    .bind(batch)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from)?;
    let hold_reason =
        next.hold.as_ref().map(|h| serde_json::to_string(&h.reason)).transpose().map_err(StoreError::Json)?;
    let updated = sqlx::query(
        "UPDATE agreements SET state = $1, mode = $2, provider_agreement_no = $3, signed_at_ms = $4, \
             paid_until_ms = $5, periods_paid = $6, hold_since_ms = $7, hold_until_ms = $8, hold_reason = $9, \
             termination_committed_at_ms = $10, termination_effective_at_ms = $11, \
             termination_confirmed_at_ms = $12, updated_at_ms = $13, event_seq = $14, seal_head = $15 \
         WHERE id = $16 AND event_seq = $17",
    )
    .bind(next.state.as_str())
    .bind(next.state.mode().map(|m| m.as_str()))
    .bind(&next.provider_agreement_no)
    .bind(next.signed_at_ms)
    .bind(next.paid_until_ms)
    .bind(next.periods_paid)
    .bind(next.hold.as_ref().map(|h| h.since_ms))
    .bind(next.hold.as_ref().map(|h| h.until_ms))
    .bind(hold_reason)
    .bind(next.termination_committed_at_ms)
    .bind(next.termination_effective_at_ms)
    .bind(next.termination_confirmed_at_ms)
    .bind(now_ms)
    .bind(seq)
    .bind(&head)
    .bind(&row.id)
    .bind(row.event_seq)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from)?
    .rows_affected();
    if updated != 1 {
        // Another writer moved the agreement since we read it: never overwrite its state.
        return Err(StoreError::Invariant(format!("agreement {} changed concurrently", row.id)).into());
    }
    tx.sealed_in_batch(head.clone());
    next.event_seq = seq;
    next.seal_head = Some(head);
    next.updated_at_ms = now_ms;
    *row = next;
    Ok(())
}

/// The summary columns an event moves. They are derived from events, never set apart
/// from them.
fn derive_columns(row: &mut AgreementRow, event: &NewAgreementEvent, now_ms: i64) -> Result<()> {
    let int = |name: &str| event.data.get(name).and_then(|v| v.as_i64());
    match &event.kind {
        Kind::Created | Kind::Recorded(_) => {}
        Kind::PeriodPaid => {
            let (Some(until), Some(periods)) = (int("paid_until_ms"), int("periods_paid")) else {
                return Err(StoreError::Invariant(format!("agreement {}: a period paid names no period", row.id)));
            };
            row.paid_until_ms = Some(until);
            row.periods_paid = periods;
        }
        Kind::State(AgreementEvent::SignConfirmed) => {
            row.signed_at_ms = Some(int("signed_at_ms").map_or(now_ms, |ms| ms.min(now_ms)));
            if let Some(no) = event.data.get("provider_agreement_no").and_then(|v| v.as_str()) {
                row.provider_agreement_no = Some(no.to_owned());
            }
        }
        Kind::State(AgreementEvent::HoldPlaced) => {
            let hold: Hold = event
                .data
                .get("hold")
                .cloned()
                .map(serde_json::from_value)
                .transpose()?
                .ok_or_else(|| StoreError::Invariant(format!("agreement {}: a hold names no hold", row.id)))?;
            // A hold placed on a held agreement extends it; it never shortens one.
            row.hold = Some(match row.hold.take() {
                Some(existing) => existing.merge(hold),
                None => hold,
            });
        }
        Kind::State(AgreementEvent::HoldReleased) => row.hold = None,
        Kind::State(AgreementEvent::TerminationCommitted { .. }) => {
            row.termination_committed_at_ms = Some(now_ms);
            row.termination_effective_at_ms = Some(int("effective_at_ms").unwrap_or(now_ms));
        }
        Kind::State(AgreementEvent::UnsignConfirmed | AgreementEvent::ProviderUnsigned) => {
            // Ended at the provider with nothing committed here first (the user unsigned
            // in the provider's app): it is committed, effective and confirmed at once.
            row.termination_committed_at_ms.get_or_insert(now_ms);
            row.termination_effective_at_ms.get_or_insert(now_ms);
            row.termination_confirmed_at_ms = Some(now_ms);
            row.hold = None;
        }
    }
    Ok(())
}

/// The agreement's timeline, oldest first (at most [`TIMELINE_ROWS_MAX`]).
pub async fn list(conn: &mut Conn, agreement_id: &str) -> Result<Vec<AgreementEventRow>> {
    let rows = sqlx::query_as::<_, (i64, i64, String, String, String)>(
        "SELECT seq, at_ms, kind, cause, data FROM agreement_events WHERE agreement_id = $1 ORDER BY seq LIMIT $2",
    )
    .bind(agreement_id)
    .bind(TIMELINE_ROWS_MAX)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(seq, at_ms, kind, cause, data)| {
            Ok(AgreementEventRow { seq, at_ms, kind, cause, data: serde_json::from_str(&data)? })
        })
        .collect()
}

/// Folds stored event kinds (with the modes their data name) into a state, for the
/// audit: the row's state must be the fold of its timeline.
pub fn fold(events: &[AgreementEventRow]) -> Result<Option<AgreementState>, String> {
    let mut state: Option<AgreementState> = None;
    for e in events {
        let event = match e.kind.as_str() {
            "created" => {
                state = Some(AgreementState::Signing);
                continue;
            }
            "sign_confirmed" => AgreementEvent::SignConfirmed,
            "hold_placed" => AgreementEvent::HoldPlaced,
            "hold_released" => AgreementEvent::HoldReleased,
            "termination_committed" => {
                let mode = e.data.get("mode").and_then(|m| m.as_str()).and_then(super::parse_mode);
                AgreementEvent::TerminationCommitted { mode: mode.ok_or("termination without its mode")? }
            }
            "unsign_confirmed" => AgreementEvent::UnsignConfirmed,
            "provider_unsigned" => AgreementEvent::ProviderUnsigned,
            _ => continue,
        };
        let current = state.ok_or("an event before created")?;
        state = Some(agreement::next(current, event).map_err(|r| format!("event {}: {r}", e.seq))?);
    }
    Ok(state)
}
