//! Unsign: asks the provider to end an agreement whose termination zerodrop committed.
//!
//! Enqueued in the transaction that commits the termination, once per agreement
//! (`unsign_job_key`). The provider's "unsigned" or "no such agreement" moves the
//! agreement to `terminated` (confirming the committed mode). Anything else is retried
//! with the queue's backoff; when the attempts run out the job ends in `attention` (a
//! person sees it, from the time it gave up) and the agreement stays `terminating`,
//! which already charges nothing.

use super::{Job, Outcome, Run};
use crate::services::Services;
use serde::{Deserialize, Serialize};
use serde_json::json;
use zerodrop_domain::{AgreementEvent, AgreementState, OrderId};
use zerodrop_providers::agreement::{AgreementRef, UnsignOutcome};
use zerodrop_store::agreements::timeline::{self, AppendError, Kind, NewAgreementEvent};
use zerodrop_store::agreements::{self, unsign_job_key, UNSIGN_JOB_KIND};
use zerodrop_store::{now_ms, StoreError};

/// Attempts before a person is asked: with the queue's doubling backoff (capped) this is
/// well over an hour of retries, past any provider outage worth waiting out unattended.
const ATTEMPTS_MAX: i64 = 16;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UnsignAgreement {
    pub agreement_id: String,
    /// The provider confirmed a sign after zerodrop had already terminated the agreement
    /// (the user finished the provider's sign page after ending it while it was still
    /// `signing`): the provider's now-live agreement is unsigned too, and the agreement
    /// (already `terminated`) only records it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late_sign: bool,
}

impl Job for UnsignAgreement {
    const KIND: &'static str = UNSIGN_JOB_KIND;
    const ATTEMPTS_MAX: i64 = ATTEMPTS_MAX;

    fn dedupe_key(&self) -> String {
        match self.late_sign {
            true => format!("{}:late_sign", unsign_job_key(&self.agreement_id)),
            false => unsign_job_key(&self.agreement_id),
        }
    }

    fn order_id(&self) -> Option<OrderId> {
        None
    }

    async fn run(self, services: &Services, run: &Run) -> Outcome {
        match unsign(services, &self.agreement_id, self.late_sign, run).await {
            Ok(outcome) => outcome,
            Err(e) => e.into(),
        }
    }
}

async fn unsign(services: &Services, agreement_id: &str, late_sign: bool, run: &Run) -> Result<Outcome, StoreError> {
    let row = {
        let mut conn = services.store.reader().await?;
        agreements::get(&mut conn, agreement_id).await?
    };
    let Some(row) = row else { return Ok(Outcome::Retry(format!("agreement {agreement_id} not found"))) };
    match row.state {
        AgreementState::Terminating { .. } => {}
        AgreementState::Terminated { .. } if late_sign => {}
        // Confirmed meanwhile (a notification came first), or never terminating.
        AgreementState::Terminated { .. }
        | AgreementState::Signing
        | AgreementState::Active
        | AgreementState::Paused => return Ok(Outcome::Done),
    }
    let Some(provider) = services.provider(&row.provider).cloned() else {
        return Ok(Outcome::Retry(format!("provider {} is not configured", row.provider)));
    };
    let reference = AgreementRef {
        external_agreement_no: row.external_agreement_no.clone(),
        agreement_no: row.provider_agreement_no.clone(),
    };
    let outcome = match provider.unsign_agreement(&reference).await {
        Ok(UnsignOutcome::Unsigned) => "unsigned",
        Ok(UnsignOutcome::NotFound) => "not_found",
        Err(e) => {
            let error = format!("the provider did not unsign: {e}");
            if run.attempt >= ATTEMPTS_MAX {
                give_up(services, agreement_id, run, &error).await?;
            }
            return Ok(Outcome::Retry(error));
        }
    };
    let mut tx = services.store.begin().await?;
    let mut row = agreements::lock(&mut tx, agreement_id).await?;
    if late_sign && matches!(row.state, AgreementState::Terminated { .. }) {
        let event =
            NewAgreementEvent::new(Kind::Recorded("late_sign_unsigned"), &run.cause(), json!({ "outcome": outcome }));
        timeline::append(&mut tx, &mut row, event, now_ms()).await?;
        tx.commit().await?;
        tracing::info!(agreement = %agreement_id, outcome, "a sign confirmed after termination was unsigned");
        return Ok(Outcome::Done);
    }
    let event = NewAgreementEvent::state(AgreementEvent::UnsignConfirmed, &run.cause(), json!({ "outcome": outcome }));
    match timeline::try_append(&mut tx, &mut row, event, now_ms()).await {
        Ok(()) => {
            // The user is told the termination is confirmed, once (the outbox dedupes).
            crate::flows::renewal::post_state_message(&mut tx, services, &row, now_ms()).await?;
            tx.commit().await?;
            services.wake();
        }
        // Confirmed by a notification between the read and the lock: nothing to change.
        Err(AppendError::Refused(_)) => {}
        Err(AppendError::Store(e)) => return Err(e),
    }
    tracing::info!(agreement = %agreement_id, outcome, "agreement unsigned at the provider");
    Ok(Outcome::Done)
}

/// The last attempt failed: the agreement's timeline says a person now has it (the
/// worker raises the attention item); it stays `terminating`, which charges nothing.
async fn give_up(services: &Services, agreement_id: &str, run: &Run, error: &str) -> Result<(), StoreError> {
    let mut tx = services.store.begin().await?;
    let mut row = agreements::lock(&mut tx, agreement_id).await?;
    let event = NewAgreementEvent::new(
        Kind::Recorded("unsign_attention"),
        &run.cause(),
        json!({ "attempts": run.attempt, "last_error": error }),
    );
    timeline::append(&mut tx, &mut row, event, now_ms()).await?;
    tx.commit().await
}
