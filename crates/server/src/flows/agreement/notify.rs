//! The provider's agreement notifications (`dut_user_sign`, `dut_user_unsign`).
//!
//! Stored raw first, in its own commit, so nothing received is ever lost; then verified
//! from what was stored (`verify_stored_agreement`), and applied with its timeline event
//! in one transaction that also records the verdict. The provider is told `Accepted` only
//! after that commit. A forged or unreadable body is refused (and kept); a verified one
//! for an agreement we do not know is refused and kept; a duplicate or out-of-order one
//! is a recorded no-op (`notification_ignored` in the timeline), acknowledged so the
//! provider stops sending it.

use crate::services::Services;
use serde_json::json;
use std::sync::Arc;
use zerodrop_domain::{AgreementEvent, AgreementState};
use zerodrop_providers::agreement::{AgreementNotice, AgreementNoticeKind};
use zerodrop_providers::{verify_stored_agreement, Ack, AckKind, Provider};
use zerodrop_store::agreements::notices::{self, Judgement, NewNotice, NoticeVerdict};
use zerodrop_store::agreements::timeline::{self, AppendError, Kind, NewAgreementEvent};
use zerodrop_store::agreements::{self};
use zerodrop_store::{now_ms, StoreError};

/// What became of one notification (for tests and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The agreement moved (signed, unsigned).
    Moved,
    /// Verified, already applied or out of order: recorded, nothing changed.
    Ignored,
    /// Verified, for an agreement zerodrop does not know: kept, refused.
    UnknownAgreement,
    /// Not the provider's (bad signature, malformed): kept, refused.
    Rejected,
}

/// A received notification as it is stored: the HTTP layer bounds its headers (as the
/// notification intake does) and hands it over.
pub struct Received {
    pub remote: Option<String>,
    /// The headers as a JSON object of strings.
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
}

/// Receives one agreement notification and answers in the provider's protocol. `None`
/// when no provider has this name.
pub async fn receive(services: &Services, provider_name: &str, received: Received) -> Option<Ack> {
    let provider = services.provider(provider_name).cloned()?;
    let ack = match handle(services, &provider, received).await {
        Ok(Applied::Moved | Applied::Ignored) => AckKind::Accepted,
        Ok(Applied::UnknownAgreement | Applied::Rejected) => AckKind::Rejected,
        Err(e) => {
            tracing::error!(provider = provider_name, error = %e, "agreement notification not processed; provider will retry");
            AckKind::RetryLater
        }
    };
    Some(provider.ack(ack))
}

async fn handle(services: &Services, provider: &Arc<dyn Provider>, inbound: Received) -> Result<Applied, StoreError> {
    let headers_json = serde_json::to_string(&inbound.headers)?;
    // Store first: a crash after this leaves the notification to be judged again.
    let mut tx = services.store.begin().await?;
    let notice = NewNotice {
        provider: provider.name(),
        remote_addr: inbound.remote.clone(),
        headers: inbound.headers.clone(),
        body: &inbound.body,
    };
    let id = notices::insert(&mut tx, &notice, now_ms()).await?;
    tx.commit().await?;
    // Judged from what was stored, with the provider's own check.
    match verify_stored_agreement(provider.as_ref(), &headers_json, &inbound.body) {
        Ok(verified) => apply(services, id, &verified).await,
        Err(rejection) => {
            let mut tx = services.store.begin().await?;
            let reason = format!("{}: {}", rejection.code.as_str(), rejection.detail);
            let judgement = Judgement {
                verdict: NoticeVerdict::Rejected,
                reason: Some(&reason),
                external_agreement_no: None,
                notify_type: None,
                notify_id: None,
            };
            notices::judge(&mut tx, id, &judgement, now_ms()).await?;
            tx.commit().await?;
            tracing::warn!(notification = id, reason = %reason, "agreement notification refused");
            Ok(Applied::Rejected)
        }
    }
}

/// Applies a verified notification (stored as `notification_id`).
pub async fn apply(services: &Services, notification_id: i64, notice: &AgreementNotice) -> Result<Applied, StoreError> {
    let now = now_ms();
    let cause = format!("agreement_notification:{notification_id}");
    let notify_type = match notice.kind {
        AgreementNoticeKind::Signed { .. } => "dut_user_sign",
        AgreementNoticeKind::Unsigned { .. } => "dut_user_unsign",
    };
    let mut tx = services.store.begin().await?;
    let judged = |verdict, reason: Option<&'static str>| Judgement {
        verdict,
        reason,
        external_agreement_no: Some(&notice.external_agreement_no),
        notify_type: Some(notify_type),
        notify_id: notice.notify_id.as_deref(),
    };
    let Some(mut row) = agreements::lock_by_external_no(&mut tx, &notice.external_agreement_no).await? else {
        notices::judge(&mut tx, notification_id, &judged(NoticeVerdict::Unknown, Some("no such agreement")), now)
            .await?;
        tx.commit().await?;
        tracing::warn!(notification = notification_id, "agreement notification for an unknown agreement");
        return Ok(Applied::UnknownAgreement);
    };
    let (event, data) = match notice.kind {
        AgreementNoticeKind::Signed { signed_at_ms, valid_until_ms } => (
            AgreementEvent::SignConfirmed,
            json!({ "provider_agreement_no": notice.agreement_no, "signed_at_ms": signed_at_ms,
                    "valid_until_ms": valid_until_ms }),
        ),
        AgreementNoticeKind::Unsigned { unsigned_at_ms } => {
            let event = match row.state {
                // The unsign zerodrop asked for, confirmed.
                AgreementState::Terminating { .. } => AgreementEvent::UnsignConfirmed,
                // The user ended it in the provider's app (or the provider dropped it).
                AgreementState::Signing
                | AgreementState::Active
                | AgreementState::Paused
                | AgreementState::Terminated { .. } => AgreementEvent::ProviderUnsigned,
            };
            (event, json!({ "provider_agreement_no": notice.agreement_no, "unsigned_at_ms": unsigned_at_ms }))
        }
    };
    let applied =
        match timeline::try_append(&mut tx, &mut row, NewAgreementEvent::state(event, &cause, data.clone()), now).await
        {
            Ok(()) => {
                notices::judge(&mut tx, notification_id, &judged(NoticeVerdict::Accepted, None), now).await?;
                if event == AgreementEvent::SignConfirmed {
                    // The first period is charged by a job enqueued with the sign, so a
                    // crash after this commit still charges it (and only once).
                    crate::flows::renewal::schedule_first(&mut tx, &row, now).await?;
                }
                crate::flows::renewal::post_state_message(&mut tx, services, &row, now).await?;
                Applied::Moved
            }
            Err(AppendError::Refused(refusal)) => {
                // A duplicate or out-of-order notification: kept in the timeline, nothing moves.
                let mut data = data;
                data["event"] = event.as_str().into();
                data["refusal"] = serde_json::to_value(refusal)?;
                let ignored = NewAgreementEvent::new(Kind::Recorded("notification_ignored"), &cause, data);
                timeline::append(&mut tx, &mut row, ignored, now).await?;
                // A sign the provider confirmed after zerodrop terminated the agreement
                // (ended while still signing): the provider's live agreement is unsigned
                // too, by a job enqueued here, so the user's app never shows it active.
                if event == AgreementEvent::SignConfirmed && matches!(row.state, AgreementState::Terminated { .. }) {
                    let job = crate::jobs::unsign::UnsignAgreement { agreement_id: row.id.clone(), late_sign: true };
                    crate::jobs::enqueue(&mut tx, &job, now, now).await?;
                }
                notices::judge(
                    &mut tx,
                    notification_id,
                    &judged(NoticeVerdict::Ignored, Some("duplicate or out of order")),
                    now,
                )
                .await?;
                Applied::Ignored
            }
            Err(AppendError::Store(e)) => return Err(e),
        };
    tx.commit().await?;
    if applied == Applied::Moved {
        // Woken for the first period's charge (enqueued with the sign) and the messages.
        services.wake();
    }
    tracing::info!(agreement = %row.id, notification = notification_id, state = row.state.as_str(), ?applied, "agreement notification applied");
    Ok(applied)
}
