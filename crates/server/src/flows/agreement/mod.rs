//! Agreements users can end (issue 11): signing, the provider's sign and unsign
//! notifications, and how an agreement is shown.
//!
//! As everywhere: store first. An agreement exists (in `signing`, citing the current
//! terms version and its hash) before the user sees the provider's sign page; a
//! notification is stored raw before it is judged; each change commits with its timeline
//! events, and follow-up work is enqueued in the same transaction.

pub mod charge;
pub mod holds;
pub mod notify;
pub mod paid;
pub mod terminate;
pub mod verification;

use crate::services::Services;
use serde::Deserialize;
use std::sync::Arc;
use zerodrop_domain::agreement::{self, StateFacts};
use zerodrop_domain::{Texts, UserId};
use zerodrop_providers::agreement::AgreementSignRef;
use zerodrop_providers::{Provider, ProviderError};
use zerodrop_store::agreements::timeline::{self, AgreementEventRow};
use zerodrop_store::agreements::{self, terms, AgreementRow, NewAgreement};
use zerodrop_store::{StoreError, Tx};

/// How long a user has to confirm the sign in the provider's app before the agreement is
/// shown as past its signing deadline. Alipay's sign page itself lapses well within this.
pub const SIGNING_WINDOW_MS: i64 = 24 * 3_600_000;

/// Tries at drawing an unused agreement number (128 random bits: a clash is out of reach,
/// so more than one try means something else is wrong).
const NUMBER_TRIES_MAX: u32 = 3;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignAgreement {
    pub user_id: String,
    pub plan: String,
    pub provider: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgreementError {
    #[error("invalid user id")]
    InvalidUserId,
    #[error("no plan named {0:?}")]
    UnknownPlan(String),
    #[error("no provider named {name:?}")]
    UnknownProvider { name: String, known: Vec<String> },
    #[error("the provider could not prepare the sign request")]
    Provider(#[source] ProviderError),
    #[error("no unused agreement number could be drawn")]
    NumbersExhausted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the sign refused or prepared, before anything is stored.
pub struct PreparedSign {
    pub user_id: UserId,
    pub plan: String,
    pub terms_version: u32,
    pub terms_sha256: String,
    pub provider: Arc<dyn Provider>,
    pub sign_ref: AgreementSignRef,
}

/// Checks the request and asks the provider for the sign instructions (a signature, no
/// I/O): nothing is stored yet.
pub fn prepare(services: &Services, request: SignAgreement, now_ms: i64) -> Result<PreparedSign, AgreementError> {
    let user_id = UserId::parse(&request.user_id).map_err(|_| AgreementError::InvalidUserId)?;
    let plan =
        services.catalog.plans().get(&request.plan).ok_or_else(|| AgreementError::UnknownPlan(request.plan.clone()))?;
    let current = plan.current().ok_or_else(|| AgreementError::UnknownPlan(request.plan.clone()))?;
    let (_, terms_sha256) = terms::canonical(current)?;
    let provider_name = request.provider.unwrap_or_else(|| services.config.default_provider.clone());
    let provider = services.provider(&provider_name).cloned().ok_or_else(|| AgreementError::UnknownProvider {
        name: provider_name.clone(),
        known: services.providers.keys().cloned().collect(),
    })?;
    let period_days =
        u32::try_from(current.period_days).map_err(|_| AgreementError::UnknownPlan(request.plan.clone()))?;
    let sign_ref = AgreementSignRef {
        external_agreement_no: String::new(),
        single_amount: current.price,
        total_amount: None,
        period_days,
        // The first period is charged when the sign is confirmed.
        first_charge_at_ms: now_ms,
        notify_url: Some(notify_url(&services.config.public_base_url, &provider_name)),
    };
    Ok(PreparedSign {
        user_id,
        plan: plan.id.clone(),
        terms_version: current.version,
        terms_sha256,
        provider,
        sign_ref,
    })
}

/// Where a provider sends an agreement's sign and unsign notifications.
pub fn notify_url(public_base_url: &str, provider: &str) -> String {
    format!("{}/v1/providers/{provider}/agreements/notify", public_base_url.trim_end_matches('/'))
}

/// A stored agreement and what the client needs to sign it.
pub struct Signing {
    pub agreement: AgreementRow,
    pub sign: serde_json::Value,
}

/// Stores the agreement (`signing`) in the caller's transaction and builds its sign
/// instructions. The caller commits (with the idempotency record) before answering.
pub async fn insert_in(tx: &mut Tx, prepared: PreparedSign, now_ms: i64) -> Result<Signing, AgreementError> {
    for _ in 0..NUMBER_TRIES_MAX {
        let id = format!("agr_{}", uuid::Uuid::new_v4().simple());
        let external = format!("ZDA{}", uuid::Uuid::new_v4().simple());
        let new = NewAgreement {
            id: &id,
            user_id: &prepared.user_id,
            plan: &prepared.plan,
            terms_version: prepared.terms_version,
            terms_sha256: &prepared.terms_sha256,
            provider: prepared.provider.name(),
            external_agreement_no: &external,
        };
        let Some(agreement) = agreements::insert(tx, &new, "api", now_ms).await? else { continue };
        let sign_ref = AgreementSignRef { external_agreement_no: external.clone(), ..prepared.sign_ref.clone() };
        let sign = prepared.provider.agreement_sign_instructions(&sign_ref).map_err(AgreementError::Provider)?;
        return Ok(Signing { agreement, sign });
    }
    Err(AgreementError::NumbersExhausted)
}

/// An agreement as the API shows it: its row, timeline and the terms it cites.
pub struct AgreementView {
    pub agreement: AgreementRow,
    pub timeline: Vec<AgreementEventRow>,
    pub terms: Option<terms::PublishedTerms>,
}

pub async fn load(services: &Services, id: &str) -> Result<Option<AgreementView>, StoreError> {
    let mut conn = services.store.reader().await?;
    let Some(agreement) = agreements::get(&mut conn, id).await? else { return Ok(None) };
    let timeline = timeline::list(&mut conn, id).await?;
    let terms = terms::get(&mut conn, &agreement.plan, agreement.terms_version).await?;
    Ok(Some(AgreementView { agreement, timeline, terms }))
}

impl AgreementView {
    /// The state in a sentence, in both languages.
    pub fn describe(&self, services: &Services) -> Texts {
        let a = &self.agreement;
        let plan = services.catalog.plans().get(&a.plan);
        let terms = plan.and_then(|p| p.version(a.terms_version));
        let facts = StateFacts {
            plan_title: plan.map_or_else(|| a.plan.clone(), |p| p.title.clone()),
            terms_version: a.terms_version,
            price: terms.map(|t| t.price),
            next_charge_at_ms: a.paid_until_ms,
            paid_until_ms: a.paid_until_ms,
            hold_until_ms: a.hold.as_ref().map(|h| h.until_ms),
            effective_at_ms: a.termination_effective_at_ms,
            signing_expires_at_ms: Some(a.created_at_ms + SIGNING_WINDOW_MS),
        };
        agreement::describe(a.state, &facts)
    }

    pub fn json(&self, services: &Services) -> serde_json::Value {
        let a = &self.agreement;
        serde_json::json!({
            "id": a.id,
            "user_id": a.user_id,
            "plan": a.plan,
            "terms": { "version": a.terms_version, "sha256": a.terms_sha256 },
            "provider": a.provider,
            "external_agreement_no": a.external_agreement_no,
            "provider_agreement_no": a.provider_agreement_no,
            "state": a.state.as_str(),
            "mode": a.state.mode().map(|m| m.as_str()),
            "sentence": self.describe(services),
            "signed_at_ms": a.signed_at_ms,
            "paid_until_ms": a.paid_until_ms,
            "periods_paid": a.periods_paid,
            "hold": a.hold,
            "termination": {
                "committed_at_ms": a.termination_committed_at_ms,
                "effective_at_ms": a.termination_effective_at_ms,
                "confirmed_at_ms": a.termination_confirmed_at_ms,
            },
            "created_at_ms": a.created_at_ms,
            "timeline": self.timeline,
            "terms_cited": self.terms.as_ref().map(|t| serde_json::json!({
                "plan": t.plan, "version": t.version, "sha256": t.sha256,
                "terms": serde_json::from_str::<serde_json::Value>(&t.canonical_json).ok(),
            })),
        })
    }
}
