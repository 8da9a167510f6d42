//! Security holds and the step-up codes that guard ending an agreement.
//!
//! A hold always states its reason and unlock time and ends by itself: it is judged at
//! read time (an expired hold is released, under the agreement's lock, before anything
//! charges or terminates), so no job has to run for the user to be free again. While a
//! hold lasts, renewal charges pause too (`may_charge_now`), so nobody is charged because
//! they could not terminate.

use crate::services::Services;
use serde_json::json;
use zerodrop_domain::hold::{Hold, HoldRules};
use zerodrop_domain::refusal::VerificationMethod;
use zerodrop_domain::totp::{one_time_code, ONE_TIME_CODE_VALID_MS};
use zerodrop_domain::{AgreementEvent, AgreementState, Refusal, Texts, UserId};
use zerodrop_store::agreements::timeline::{self, NewAgreementEvent};
use zerodrop_store::agreements::{self, verification, AgreementRow};
use zerodrop_store::{StoreError, Tx};

/// The kind of the user message that carries a one-time code.
pub const CODE_MESSAGE_KIND: &str = "verification_code";

/// The rules that place holds. The domain's defaults (five wrong codes in 15 minutes hold
/// for 30) are what the issue asks for; a deployment knob can come later.
pub fn rules(_services: &Services) -> HoldRules {
    HoldRules::default()
}

/// The state an agreement is in now, with a hold whose unlock time passed treated as
/// released (what the next change under its lock will record).
pub fn effective_state(row: &AgreementRow, now_ms: i64) -> AgreementState {
    match (row.state, row.hold.as_ref()) {
        (AgreementState::Paused, Some(hold)) if !hold.is_held(now_ms) => AgreementState::Active,
        (AgreementState::Paused, None) => AgreementState::Active,
        (state, _) => state,
    }
}

/// Releases a hold whose unlock time passed, on an agreement the caller has locked.
pub async fn release_if_expired(tx: &mut Tx, row: &mut AgreementRow, now_ms: i64) -> Result<bool, StoreError> {
    if row.state != AgreementState::Paused || effective_state(row, now_ms) == AgreementState::Paused {
        return Ok(false);
    }
    let unlock_at = row.hold.as_ref().map(Hold::unlock_at_ms);
    let event =
        NewAgreementEvent::state(AgreementEvent::HoldReleased, "hold_expired", json!({ "unlock_at_ms": unlock_at }));
    timeline::append(tx, row, event, now_ms).await?;
    Ok(true)
}

/// Places `hold` on a locked agreement (an active or paused one: signing, terminating and
/// terminated agreements charge nothing, so there is nothing to pause). `false` when it
/// did not apply.
pub async fn place(
    tx: &mut Tx,
    row: &mut AgreementRow,
    hold: &Hold,
    cause: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    match row.state {
        AgreementState::Active | AgreementState::Paused => {}
        AgreementState::Signing | AgreementState::Terminating { .. } | AgreementState::Terminated { .. } => {
            return Ok(false)
        }
    }
    let event = NewAgreementEvent::state(AgreementEvent::HoldPlaced, cause, json!({ "hold": hold }));
    timeline::append(tx, row, event, now_ms).await?;
    Ok(true)
}

/// Counts a wrong code (in the caller's transaction, which commits it even though the
/// request is refused) and decides: attempts left, or a hold placed on the agreement.
pub async fn failed(
    services: &Services,
    tx: &mut Tx,
    row: &mut AgreementRow,
    method: VerificationMethod,
    now_ms: i64,
) -> Result<Refusal, StoreError> {
    let name = match method {
        VerificationMethod::Totp => "totp",
        VerificationMethod::OneTimeCode => "code",
    };
    let user = row.user_id.clone();
    verification::record_failure(tx, &user, Some(&row.id), name, now_ms).await?;
    let rules = rules(services);
    let failures = verification::failures_since(tx, &user, now_ms - rules.failure_window_ms).await?;
    let (refusal, hold) = Refusal::after_failed_verification(&rules, &failures, method, now_ms);
    let recorded = NewAgreementEvent::new(
        timeline::Kind::Recorded("verification_failed"),
        "api",
        json!({ "method": name, "refusal": refusal.code() }),
    );
    timeline::append(tx, row, recorded, now_ms).await?;
    if let Some(hold) = hold {
        place(tx, row, &hold, "verification_failures", now_ms).await?;
        tracing::warn!(agreement = %row.id, until_ms = hold.until_ms, "security hold after repeated wrong codes");
    }
    Ok(refusal)
}

/// A one-time code sent for an agreement.
pub struct CodeSent {
    pub expires_at_ms: i64,
}

/// Draws a one-time code for ending `agreement_id`, stores it hashed and sends it as a
/// user message, in one transaction (a code the user was told about always exists). The
/// code itself appears only in the message: never in a log, an error or the answer.
pub async fn send_code(services: &Services, row: &AgreementRow, now_ms: i64) -> Result<CodeSent, StoreError> {
    let code = one_time_code(rand::random::<[u8; 8]>());
    let expires_at_ms = now_ms + ONE_TIME_CODE_VALID_MS;
    let id = format!("vc_{}", uuid::Uuid::new_v4().simple());
    let mut tx = services.store.begin().await?;
    verification::insert_code(&mut tx, &id, &row.id, &row.user_id, &code, expires_at_ms, now_ms).await?;
    let at = zerodrop_domain::texts::format_utc(expires_at_ms);
    let body = Texts::new(
        format!(
            "你正在申请解除自动续费协议，验证码：{}，{at} 前有效，仅可使用一次。如非本人操作，请忽略并联系客服。",
            code.expose()
        ),
        format!(
            "Your code to end the auto-renewal agreement is {}. It is valid until {at} and works once. If you did \
             not ask for it, ignore this message and contact support.",
            code.expose()
        ),
    );
    // Through the outbox: stored, and delivered to the platform's webhook when configured.
    let key = format!("{CODE_MESSAGE_KIND}:{id}");
    let config = &services.config.messages;
    crate::flows::messages::post(&mut tx, config, &row.user_id, CODE_MESSAGE_KIND, &body, &key, now_ms).await?;
    tx.commit().await?;
    services.wake();
    Ok(CodeSent { expires_at_ms })
}

/// A platform's takeover signal: every agreement of the user that could charge is put on
/// hold for `hold_ms` (capped by the rules), each in its own transaction. Returns the
/// agreements held and the hold.
pub async fn takeover_signal(
    services: &Services,
    user: &UserId,
    hold_ms: i64,
    now_ms: i64,
) -> Result<(Vec<String>, Hold), StoreError> {
    let hold = rules(services).takeover(now_ms, hold_ms);
    let rows = {
        let mut conn = services.store.reader().await?;
        agreements::list_for_user(&mut conn, user).await?
    };
    let mut held = Vec::new();
    for listed in rows {
        let mut tx = services.store.begin().await?;
        let mut row = agreements::lock(&mut tx, &listed.id).await?;
        if place(&mut tx, &mut row, &hold, "security_signal:account_takeover", now_ms).await? {
            tx.commit().await?;
            held.push(row.id);
        }
    }
    Ok((held, hold))
}
