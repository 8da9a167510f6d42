//! Agreements users can end (issue 11): the stored side.
//!
//! An agreement's row summarises its timeline ([`timeline`]): its state only ever changes
//! through [`timeline::append`], which asks the domain's state machine first, exactly as
//! an order's status changes only through its events. The terms a user consented to are
//! stored as published ([`terms`]); quotes are used once ([`quotes`]); step-up
//! verification and holds keep their facts in [`verification`]; agreement notifications
//! are kept as evidence before anything acts on them ([`notices`]); and messages a user
//! reads (one-time codes) in [`messages`].

pub mod messages;
pub mod notices;
pub mod quotes;
pub mod terms;
pub mod timeline;
pub mod verification;

use crate::{Conn, Result, StoreError, Tx};
use zerodrop_domain::hold::{Hold, HoldReason};
use zerodrop_domain::{AgreementState, TerminationMode, UserId};

/// The job that asks the provider to unsign a terminating agreement (the server's unsign
/// job handles it). Enqueued in the transaction that commits the termination, once per
/// agreement ([`unsign_job_key`]); the audit holds every terminating agreement to it.
pub const UNSIGN_JOB_KIND: &str = "agreement_unsign";

/// The unsign job's dedupe key: one unsign job per agreement, ever.
pub fn unsign_job_key(agreement_id: &str) -> String {
    format!("{UNSIGN_JOB_KIND}:{agreement_id}")
}

/// Longest page of agreements a list returns: a user has a handful; the sweeps page on.
pub const LIST_ROWS_MAX: i64 = 500;

#[derive(Clone, Debug, PartialEq)]
pub struct AgreementRow {
    pub id: String,
    pub user_id: UserId,
    pub plan: String,
    pub terms_version: u32,
    /// The SHA-256 of the terms version's canonical JSON the user consented to.
    pub terms_sha256: String,
    pub provider: String,
    /// Ours, sent to the provider as its `external_agreement_no`.
    pub external_agreement_no: String,
    /// The provider's, once the sign is confirmed.
    pub provider_agreement_no: Option<String>,
    pub state: AgreementState,
    pub signed_at_ms: Option<i64>,
    pub paid_until_ms: Option<i64>,
    pub periods_paid: i64,
    pub hold: Option<Hold>,
    pub termination_committed_at_ms: Option<i64>,
    pub termination_effective_at_ms: Option<i64>,
    pub termination_confirmed_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub event_seq: i64,
    /// The seal of the agreement's last event: where its chain continues.
    pub seal_head: Option<String>,
}

pub struct NewAgreement<'a> {
    pub id: &'a str,
    pub user_id: &'a UserId,
    pub plan: &'a str,
    pub terms_version: u32,
    pub terms_sha256: &'a str,
    pub provider: &'a str,
    pub external_agreement_no: &'a str,
}

const COLUMNS: &str = "id, user_id, plan, terms_version, terms_sha256, provider, external_agreement_no, \
     provider_agreement_no, state, mode, signed_at_ms, paid_until_ms, periods_paid, hold_since_ms, hold_until_ms, \
     hold_reason, termination_committed_at_ms, termination_effective_at_ms, termination_confirmed_at_ms, \
     created_at_ms, updated_at_ms, event_seq, seal_head";

/// Inserts an agreement in `signing` with its `created` event. `None` when the id or the
/// external agreement number is taken (the caller draws another, or answers the first).
/// The terms version must be published (see [`terms::publish`]): the foreign key refuses
/// an agreement citing terms nobody can show again.
pub async fn insert(tx: &mut Tx, new: &NewAgreement<'_>, cause: &str, now_ms: i64) -> Result<Option<AgreementRow>> {
    let inserted = sqlx::query(
        "INSERT INTO agreements (id, user_id, plan, terms_version, terms_sha256, provider, external_agreement_no, \
             state, periods_paid, created_at_ms, updated_at_ms, event_seq) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $9, 0) ON CONFLICT DO NOTHING",
    )
    .bind(new.id)
    .bind(new.user_id.as_str())
    .bind(new.plan)
    .bind(i64::from(new.terms_version))
    .bind(new.terms_sha256)
    .bind(new.provider)
    .bind(new.external_agreement_no)
    .bind(AgreementState::Signing.as_str())
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }
    let mut row = lock(tx, new.id).await?;
    // Every fact that never changes, so the sealed timeline vouches for the row.
    let data = serde_json::json!({
        "user_id": new.user_id, "plan": new.plan, "terms_version": new.terms_version,
        "terms_sha256": new.terms_sha256, "provider": new.provider,
        "external_agreement_no": new.external_agreement_no,
    });
    timeline::append(tx, &mut row, timeline::NewAgreementEvent::created(cause, data), now_ms).await?;
    Ok(Some(row))
}

pub async fn get(conn: &mut Conn, id: &str) -> Result<Option<AgreementRow>> {
    let row = sqlx::query_as::<_, AgreementRecord>(&format!("SELECT {COLUMNS} FROM agreements WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(TryInto::try_into).transpose()
}

/// The agreement with our external number (what the provider's notifications name).
pub async fn get_by_external_no(conn: &mut Conn, external_no: &str) -> Result<Option<AgreementRow>> {
    let sql = format!("SELECT {COLUMNS} FROM agreements WHERE external_agreement_no = $1");
    let row = sqlx::query_as::<_, AgreementRecord>(&sql).bind(external_no).fetch_optional(conn).await?;
    row.map(TryInto::try_into).transpose()
}

/// Reads the agreement for a change, holding its row lock until the transaction ends.
pub async fn lock(tx: &mut Tx, id: &str) -> Result<AgreementRow> {
    let sql = format!("SELECT {COLUMNS} FROM agreements WHERE id = $1{}", tx.dialect().for_update());
    let row = sqlx::query_as::<_, AgreementRecord>(&sql).bind(id).fetch_optional(&mut **tx).await?;
    row.map(TryInto::try_into).transpose()?.ok_or(StoreError::NotFound)
}

/// Locks the agreement with our external number, if there is one.
pub async fn lock_by_external_no(tx: &mut Tx, external_no: &str) -> Result<Option<AgreementRow>> {
    let sql = format!("SELECT {COLUMNS} FROM agreements WHERE external_agreement_no = $1{}", tx.dialect().for_update());
    let row = sqlx::query_as::<_, AgreementRecord>(&sql).bind(external_no).fetch_optional(&mut **tx).await?;
    row.map(TryInto::try_into).transpose()
}

/// A user's agreements, newest first (at most [`LIST_ROWS_MAX`]).
pub async fn list_for_user(conn: &mut Conn, user_id: &UserId) -> Result<Vec<AgreementRow>> {
    let sql = format!("SELECT {COLUMNS} FROM agreements WHERE user_id = $1 ORDER BY created_at_ms DESC, id LIMIT $2");
    let rows =
        sqlx::query_as::<_, AgreementRecord>(&sql).bind(user_id.as_str()).bind(LIST_ROWS_MAX).fetch_all(conn).await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// Agreements in a state (by its name, e.g. `active`), paid-until first, after
/// `after_id` for paging: the renewal and unsign sweeps read these.
pub async fn list_in_state(conn: &mut Conn, state: &str, after_id: &str, limit: i64) -> Result<Vec<AgreementRow>> {
    let sql = format!("SELECT {COLUMNS} FROM agreements WHERE state = $1 AND id > $2 ORDER BY id LIMIT $3");
    let rows = sqlx::query_as::<_, AgreementRecord>(&sql)
        .bind(state)
        .bind(after_id)
        .bind(limit.clamp(1, LIST_ROWS_MAX))
        .fetch_all(conn)
        .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// The stored name of a termination mode, and back.
pub fn parse_mode(text: &str) -> Option<TerminationMode> {
    [TerminationMode::User, TerminationMode::Platform, TerminationMode::ProviderSide, TerminationMode::Expired]
        .into_iter()
        .find(|m| m.as_str() == text)
}

/// The state from its stored name and mode.
pub fn parse_state(state: &str, mode: Option<&str>) -> Option<AgreementState> {
    let mode = || mode.and_then(parse_mode);
    match state {
        "signing" => Some(AgreementState::Signing),
        "active" => Some(AgreementState::Active),
        "paused" => Some(AgreementState::Paused),
        "terminating" => Some(AgreementState::Terminating { mode: mode()? }),
        "terminated" => Some(AgreementState::Terminated { mode: mode()? }),
        _ => None,
    }
}

/// An `agreements` row as stored, parsed into an [`AgreementRow`] by its `TryFrom`.
#[derive(sqlx::FromRow)]
struct AgreementRecord {
    id: String,
    user_id: String,
    plan: String,
    terms_version: i64,
    terms_sha256: String,
    provider: String,
    external_agreement_no: String,
    provider_agreement_no: Option<String>,
    state: String,
    mode: Option<String>,
    signed_at_ms: Option<i64>,
    paid_until_ms: Option<i64>,
    periods_paid: i64,
    hold_since_ms: Option<i64>,
    hold_until_ms: Option<i64>,
    hold_reason: Option<String>,
    termination_committed_at_ms: Option<i64>,
    termination_effective_at_ms: Option<i64>,
    termination_confirmed_at_ms: Option<i64>,
    created_at_ms: i64,
    updated_at_ms: i64,
    event_seq: i64,
    seal_head: Option<String>,
}

impl TryFrom<AgreementRecord> for AgreementRow {
    type Error = StoreError;

    fn try_from(r: AgreementRecord) -> Result<AgreementRow> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("agreement {}: {what}", r.id));
        let state = parse_state(&r.state, r.mode.as_deref()).ok_or_else(|| corrupt("unknown state or mode"))?;
        let hold = match (r.hold_since_ms, r.hold_until_ms, r.hold_reason.as_deref()) {
            (Some(since_ms), Some(until_ms), Some(reason)) => {
                let reason: HoldReason = serde_json::from_str(reason).map_err(StoreError::Json)?;
                Some(Hold { reason, since_ms, until_ms })
            }
            (None, None, None) => None,
            _ => return Err(corrupt("a hold without its reason or times")),
        };
        Ok(AgreementRow {
            user_id: UserId::parse(&r.user_id).map_err(|_| corrupt("user id"))?,
            terms_version: u32::try_from(r.terms_version).map_err(|_| corrupt("terms version"))?,
            id: r.id,
            plan: r.plan,
            terms_sha256: r.terms_sha256,
            provider: r.provider,
            external_agreement_no: r.external_agreement_no,
            provider_agreement_no: r.provider_agreement_no,
            state,
            signed_at_ms: r.signed_at_ms,
            paid_until_ms: r.paid_until_ms,
            periods_paid: r.periods_paid,
            hold,
            termination_committed_at_ms: r.termination_committed_at_ms,
            termination_effective_at_ms: r.termination_effective_at_ms,
            termination_confirmed_at_ms: r.termination_confirmed_at_ms,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            event_seq: r.event_seq,
            seal_head: r.seal_head,
        })
    }
}

/// Names the agreement a membership order is charged under, in the transaction that
/// created the order. Set once: the database refuses to change it.
pub async fn attach_order(tx: &mut Tx, order_id: zerodrop_domain::OrderId, agreement_id: &str) -> Result<()> {
    let updated = sqlx::query("UPDATE orders SET agreement_id = $1 WHERE id = $2 AND agreement_id IS NULL")
        .bind(agreement_id)
        .bind(order_id.to_string())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if updated != 1 {
        return Err(StoreError::Invariant(format!("order {order_id} is unknown or already under an agreement")));
    }
    Ok(())
}

/// The orders charged under an agreement: (order id, order number), oldest first.
pub async fn orders_of(conn: &mut Conn, agreement_id: &str) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as::<_, (String, String)>(
        "SELECT id, order_no FROM orders WHERE agreement_id = $1 ORDER BY created_at_ms, id LIMIT $2",
    )
    .bind(agreement_id)
    .bind(LIST_ROWS_MAX)
    .fetch_all(conn)
    .await?)
}

/// The agreement an order is charged under, if any (read in the caller's transaction,
/// which holds the order's lock: the paid path asks this before delivering).
pub async fn agreement_of_order(tx: &mut Tx, order_id: zerodrop_domain::OrderId) -> Result<Option<String>> {
    let found = sqlx::query_scalar::<_, Option<String>>("SELECT agreement_id FROM orders WHERE id = $1")
        .bind(order_id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(found.flatten())
}
