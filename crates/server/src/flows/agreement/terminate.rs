//! Ending an agreement: a stored quote, then its confirmation.
//!
//! The quote says exactly what will happen (`termination::quote`) and is stored with an
//! id and expiry. Confirming re-derives it from the facts under the agreement's lock
//! (`termination::confirm`), checks the step-up code only when nothing else refuses (so a
//! stale quote never burns a code), and commits locally first: the `terminating` state,
//! its events and the unsign job, in one transaction. Once that commits no charge can
//! start (`charge_period` checks the state under the same lock), and a charge in flight
//! that lands later is refunded in full by the paid path (`flows::agreement::paid`).
//!
//! The confirm is idempotent by quote: the answer is stored with the quote, and the same
//! quote confirmed again gets it again. Refusals do not use the quote (a user who mistyped
//! a code retries with it), but wrong codes are counted and committed.

use super::holds;
use crate::jobs::{self, unsign::UnsignAgreement};
use crate::services::Services;
use serde::Deserialize;
use serde_json::json;
use zerodrop_domain::order::OrderStatus;
use zerodrop_domain::refusal::VerificationMethod;
use zerodrop_domain::termination::{self, ChargeInFlight, ChargePurpose, Quote, TerminationFacts, Verification};
use zerodrop_domain::totp::verify_totp;
use zerodrop_domain::{OrderId, Refusal, TermsVersion, UserId};
use zerodrop_store::agreements::quotes::{self, QuoteRow};
use zerodrop_store::agreements::timeline::{self, Kind, NewAgreementEvent};
use zerodrop_store::agreements::{self, verification, AgreementRow};
use zerodrop_store::{orders, Conn, StoreError, Tx};

/// The step-up proof a confirmation carries: one of the two, as the quote asked.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    pub totp: Option<String>,
    pub code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirm {
    pub quote_id: String,
    #[serde(default)]
    pub verification: Option<Proof>,
    /// When given, the agreement must be this user's (else it is not found).
    #[serde(default)]
    pub user_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TerminateError {
    #[error("no agreement with this id")]
    NotFound,
    #[error("no quote with this id for this agreement")]
    QuoteNotFound,
    #[error("the agreement's terms are not in the catalog")]
    TermsMissing,
    #[error("{}", .0.code())]
    Refused(Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a confirmation answered: stored with the quote and given again for it.
pub struct Answered {
    pub body: serde_json::Value,
    /// `false` when this is the stored answer of an earlier confirmation.
    pub first: bool,
}

fn owned_by(row: &AgreementRow, user: Option<&UserId>) -> bool {
    user.is_none_or(|u| *u == row.user_id)
}

fn terms_of<'a>(services: &'a Services, row: &AgreementRow) -> Result<&'a TermsVersion, TerminateError> {
    services
        .catalog
        .plans()
        .get(&row.plan)
        .and_then(|p| p.version(row.terms_version))
        .ok_or(TerminateError::TermsMissing)
}

/// What zerodrop knows now about the agreement (read in `conn`, inside the caller's
/// transaction when it confirms).
async fn facts(conn: &mut Conn, row: &AgreementRow, now_ms: i64) -> Result<TerminationFacts, StoreError> {
    let mut in_flight = None;
    for (id, _) in agreements::orders_of(conn, &row.id).await? {
        let Some(id) = OrderId::parse(&id) else { continue };
        let Some(order) = orders::get(conn, id).await? else { continue };
        if order.status == OrderStatus::AwaitingPayment && order.expires_at_ms > now_ms {
            in_flight = Some(ChargeInFlight {
                purpose: ChargePurpose::Renewal,
                amount: order.amount,
                settle_by_ms: order.expires_at_ms,
            });
        }
    }
    let totp = verification::totp(conn, &row.user_id).await?;
    Ok(TerminationFacts {
        state: row.state,
        signed_at_ms: row.signed_at_ms.unwrap_or(row.created_at_ms),
        paid_until_ms: row.paid_until_ms,
        periods_paid: row.periods_paid,
        hold: row.hold.clone(),
        charge_in_flight: in_flight,
        // Fee payments are not built yet: a plan with a fee refuses `fee_unpaid`.
        fee_paid: false,
        totp_enrolled: totp.is_some_and(|t| t.confirmed_at_ms.is_some()),
        terminated_effective_at_ms: row.termination_effective_at_ms,
    })
}

/// A stored quote for terminating now, or the refusal (already terminated, on hold).
pub async fn quote(
    services: &Services,
    agreement_id: &str,
    user: Option<&UserId>,
    now_ms: i64,
) -> Result<QuoteRow, TerminateError> {
    let mut tx = services.store.begin().await?;
    let mut row = match agreements::lock(&mut tx, agreement_id).await {
        Ok(row) if owned_by(&row, user) => row,
        Ok(_) | Err(StoreError::NotFound) => return Err(TerminateError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let terms = terms_of(services, &row)?;
    let facts = facts(&mut tx, &row, now_ms).await?;
    let quote = termination::quote(terms, &facts, now_ms).map_err(TerminateError::Refused)?;
    let id = format!("tq_{}", uuid::Uuid::new_v4().simple());
    let stored = quotes::insert(&mut tx, &id, &row.id, &quote, now_ms).await?;
    let issued = NewAgreementEvent::new(
        Kind::Recorded("quote_issued"),
        "api",
        json!({ "quote_id": id, "expires_at_ms": quote.expires_at_ms, "fee_minor": quote.fee.minor }),
    );
    timeline::append(&mut tx, &mut row, issued, now_ms).await?;
    tx.commit().await?;
    Ok(stored)
}

/// The quote as the API shows it.
pub fn quote_json(row: &QuoteRow) -> serde_json::Value {
    json!({
        "id": row.id,
        "agreement_id": row.agreement_id,
        "expires_at_ms": row.expires_at_ms,
        "quote": row.quote,
        "sentence": row.quote.describe(),
    })
}

/// Confirms a quote: terminates (state `terminating`, unsign job enqueued) or refuses.
/// A refusal after a wrong code is committed (the failure counts, a hold may be placed).
pub async fn confirm(
    services: &Services,
    agreement_id: &str,
    request: &Confirm,
    user: Option<&UserId>,
    now_ms: i64,
) -> Result<Answered, TerminateError> {
    let mut tx = services.store.begin().await?;
    let mut row = match agreements::lock(&mut tx, agreement_id).await {
        Ok(row) if owned_by(&row, user) => row,
        Ok(_) | Err(StoreError::NotFound) => return Err(TerminateError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let stored = match quotes::get(&mut tx, &request.quote_id).await? {
        Some(q) if q.agreement_id == row.id => q,
        Some(_) | None => return Err(TerminateError::QuoteNotFound),
    };
    if let Some(answer) = stored.answer {
        // The same quote again: the first answer, whatever happened since.
        return Ok(Answered { body: answer, first: false });
    }
    let terms = terms_of(services, &row)?;
    let facts = facts(&mut tx, &row, now_ms).await?;
    let given: &Quote = &stored.quote;
    // Everything but the code first: a refusal for any other reason never uses a code.
    let probe = termination::confirm(terms, given, &facts, Verification::NotProvided, now_ms);
    match probe {
        Err(Refusal::VerificationRequired { .. }) => {}
        Err(refusal) => return Err(TerminateError::Refused(refusal)),
        Ok(_) => return Err(StoreError::Invariant("a termination confirmed without its code".into()).into()),
    }
    let proof = request.verification.clone().unwrap_or_default();
    let verified = match check_proof(&mut tx, &row, given.verification, &proof, now_ms).await? {
        Checked::Missing => Verification::NotProvided,
        Checked::Passed => Verification::Passed,
        Checked::Wrong => {
            let refusal = holds::failed(services, &mut tx, &mut row, given.verification, now_ms).await?;
            tx.commit().await?;
            return Err(TerminateError::Refused(refusal));
        }
    };
    let done = termination::confirm(terms, given, &facts, verified, now_ms).map_err(TerminateError::Refused)?;
    let cause = format!("quote:{}", stored.id);
    for event in done.events.iter().copied() {
        let data = json!({
            "quote_id": stored.id, "effective_at_ms": done.effective_at_ms,
            "benefits_until_ms": done.benefits_until_ms, "fee_minor": done.fee.minor,
            "refund_in_flight_renewal": done.refund_in_flight_renewal,
        });
        timeline::append(&mut tx, &mut row, NewAgreementEvent::state(event, &cause, data), now_ms).await?;
    }
    enqueue_unsign(&mut tx, &row.id, now_ms).await?;
    // The user is told, through the outbox, in the transaction that committed it.
    crate::flows::renewal::post_state_message(&mut tx, services, &row, now_ms).await?;
    let body = json!({
        "agreement_id": row.id,
        "state": row.state.as_str(),
        "mode": row.state.mode().map(|m| m.as_str()),
        "committed_at_ms": row.termination_committed_at_ms,
        "effective_at_ms": done.effective_at_ms,
        "benefits_until_ms": done.benefits_until_ms,
        "fee": done.fee,
        "refund_in_flight_renewal": done.refund_in_flight_renewal,
        "quote_id": stored.id,
    });
    if !quotes::mark_used(&mut tx, &stored.id, &body, now_ms).await? {
        return Err(StoreError::Invariant(format!("quote {} used twice under its lock", stored.id)).into());
    }
    tx.commit().await?;
    services.wake();
    tracing::info!(agreement = %row.id, "termination committed; unsign queued");
    Ok(Answered { body, first: true })
}

/// Enqueues the agreement's unsign job (once per agreement, ever), in the transaction that
/// commits its termination.
pub async fn enqueue_unsign(tx: &mut Tx, agreement_id: &str, now_ms: i64) -> Result<(), StoreError> {
    let job = UnsignAgreement { agreement_id: agreement_id.to_owned(), late_sign: false };
    jobs::enqueue(tx, &job, now_ms, now_ms).await?;
    Ok(())
}

enum Checked {
    Missing,
    Passed,
    Wrong,
}

/// Checks the code the quote asked for; a replayed TOTP code is wrong. Where the quote
/// asks for TOTP, a one-time code sent through the user's own channel is accepted instead
/// when no TOTP code is given: a lost phone must never leave a user unable to end the
/// agreement. Otherwise a proof of the other kind counts as none (the refusal names the
/// method to use).
async fn check_proof(
    tx: &mut Tx,
    row: &AgreementRow,
    method: VerificationMethod,
    proof: &Proof,
    now_ms: i64,
) -> Result<Checked, StoreError> {
    match method {
        VerificationMethod::Totp if proof.totp.is_none() && proof.code.is_some() => {
            one_time(tx, row, proof, now_ms).await
        }
        VerificationMethod::Totp => {
            let Some(code) = proof.totp.as_deref() else { return Ok(Checked::Missing) };
            let Some(enrolled) = verification::totp(tx, &row.user_id).await? else { return Ok(Checked::Wrong) };
            let step = verify_totp(enrolled.algorithm, enrolled.secret.expose(), code, now_ms, enrolled.last_step);
            let used = match step {
                Some(step) => verification::use_totp_step(tx, &row.user_id, step, false, now_ms).await?,
                None => false,
            };
            Ok(if used { Checked::Passed } else { Checked::Wrong })
        }
        VerificationMethod::OneTimeCode => one_time(tx, row, proof, now_ms).await,
    }
}

async fn one_time(tx: &mut Tx, row: &AgreementRow, proof: &Proof, now_ms: i64) -> Result<Checked, StoreError> {
    let Some(code) = proof.code.as_deref() else { return Ok(Checked::Missing) };
    let used = verification::use_code(tx, &row.id, code, now_ms).await?;
    Ok(if used { Checked::Passed } else { Checked::Wrong })
}
