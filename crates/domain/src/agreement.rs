//! The agreement state machine: signing, active, paused (security hold), terminating
//! (local termination committed, provider unsign pending) and terminated, with its mode.
//!
//! Termination commits locally first: from `terminating` on, no renewal charge may be
//! created, whatever the provider says later. Provider-side termination is honoured from
//! any live state.

use crate::money::Money;
use crate::texts::{format_utc, Texts};
use serde::{Deserialize, Serialize};

/// Who or what ended an agreement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminationMode {
    /// The user asked zerodrop (quote, then confirm).
    User,
    /// The platform ended it (an operator, or a policy).
    Platform,
    /// The user unsigned at the provider (its app), or the provider dropped it.
    ProviderSide,
    /// Signing never completed, or the membership lapsed under a `terminate` lapse policy.
    Expired,
}

impl TerminationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TerminationMode::User => "user",
            TerminationMode::Platform => "platform",
            TerminationMode::ProviderSide => "provider_side",
            TerminationMode::Expired => "expired",
        }
    }
}

/// Where an agreement is. `terminating` and `terminated` carry the mode of termination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AgreementState {
    /// Waiting for the provider's sign notification.
    Signing,
    Active,
    /// On a security hold: termination waits, and so do renewal charges.
    Paused,
    /// Terminated locally (no more charges); the provider's unsign is pending.
    Terminating {
        mode: TerminationMode,
    },
    /// Terminated, and the provider agrees.
    Terminated {
        mode: TerminationMode,
    },
}

impl AgreementState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgreementState::Signing => "signing",
            AgreementState::Active => "active",
            AgreementState::Paused => "paused",
            AgreementState::Terminating { .. } => "terminating",
            AgreementState::Terminated { .. } => "terminated",
        }
    }

    pub fn mode(self) -> Option<TerminationMode> {
        match self {
            AgreementState::Terminating { mode } | AgreementState::Terminated { mode } => Some(mode),
            AgreementState::Signing | AgreementState::Active | AgreementState::Paused => None,
        }
    }

    /// Whether a renewal charge may be created in this state. Holds are timed, so the
    /// caller also checks `Hold::charges_paused`; `paused` alone already refuses.
    pub fn may_charge(self) -> bool {
        match self {
            AgreementState::Active => true,
            AgreementState::Signing
            | AgreementState::Paused
            | AgreementState::Terminating { .. }
            | AgreementState::Terminated { .. } => false,
        }
    }

    /// Whether the local termination is committed (no charge after this, ever).
    pub fn is_terminated_locally(self) -> bool {
        match self {
            AgreementState::Terminating { .. } | AgreementState::Terminated { .. } => true,
            AgreementState::Signing | AgreementState::Active | AgreementState::Paused => false,
        }
    }
}

/// Something that happens to an agreement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AgreementEvent {
    /// The provider's sign notification (`dut_user_sign`) or query confirms the agreement.
    SignConfirmed,
    /// A security rule placed (or extended) a hold.
    HoldPlaced,
    /// The hold's unlock time passed (or the platform lifted it).
    HoldReleased,
    /// zerodrop committed a termination locally. `User` needs an unheld agreement.
    TerminationCommitted { mode: TerminationMode },
    /// The provider confirmed the unsign zerodrop asked for.
    UnsignConfirmed,
    /// The provider reports the agreement gone (`dut_user_unsign`, or a query).
    ProviderUnsigned,
}

impl AgreementEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AgreementEvent::SignConfirmed => "sign_confirmed",
            AgreementEvent::HoldPlaced => "hold_placed",
            AgreementEvent::HoldReleased => "hold_released",
            AgreementEvent::TerminationCommitted { .. } => "termination_committed",
            AgreementEvent::UnsignConfirmed => "unsign_confirmed",
            AgreementEvent::ProviderUnsigned => "provider_unsigned",
        }
    }
}

/// Why an event does not apply. Callers treat `AlreadyTerminated` on provider events as a
/// recorded no-op (a duplicate notification), never as a failure to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum TransitionRefusal {
    #[error("the agreement is already terminated")]
    AlreadyTerminated,
    #[error("the agreement is on a security hold")]
    SecurityHold,
    #[error("{event} does not apply to a {state} agreement")]
    NotApplicable { state: &'static str, event: &'static str },
}

/// The next state after `event`, or why it does not apply.
pub fn next(state: AgreementState, event: AgreementEvent) -> Result<AgreementState, TransitionRefusal> {
    use AgreementEvent as E;
    use AgreementState as S;
    let not_applicable = || TransitionRefusal::NotApplicable { state: state.as_str(), event: event.as_str() };
    match (state, event) {
        (S::Terminated { .. }, _) => Err(TransitionRefusal::AlreadyTerminated),
        // A committed termination is final locally; only the provider's word finishes it.
        (S::Terminating { mode }, E::UnsignConfirmed | E::ProviderUnsigned) => Ok(S::Terminated { mode }),
        (S::Terminating { .. }, E::TerminationCommitted { .. }) => Err(TransitionRefusal::AlreadyTerminated),
        (S::Terminating { .. }, E::SignConfirmed | E::HoldPlaced | E::HoldReleased) => Err(not_applicable()),

        (S::Signing, E::SignConfirmed) => Ok(S::Active),
        // Signing abandoned or cancelled: the provider may still have signed, so unsign.
        (S::Signing, E::TerminationCommitted { mode }) => Ok(S::Terminating { mode }),
        (S::Signing | S::Active | S::Paused, E::ProviderUnsigned) => {
            Ok(S::Terminated { mode: TerminationMode::ProviderSide })
        }
        (S::Signing, E::HoldPlaced | E::HoldReleased | E::UnsignConfirmed) => Err(not_applicable()),

        (S::Active | S::Paused, E::HoldPlaced) => Ok(S::Paused),
        (S::Paused, E::HoldReleased) => Ok(S::Active),
        (S::Active, E::TerminationCommitted { mode }) => Ok(S::Terminating { mode }),
        // The user waits for the unlock time (stated); the platform may still end it, and a
        // lapse still ends it: neither charges anyone.
        (S::Paused, E::TerminationCommitted { mode: TerminationMode::User }) => Err(TransitionRefusal::SecurityHold),
        (
            S::Paused,
            E::TerminationCommitted {
                mode: mode @ (TerminationMode::Platform | TerminationMode::ProviderSide | TerminationMode::Expired),
            },
        ) => Ok(S::Terminating { mode }),
        (S::Active, E::SignConfirmed | E::HoldReleased | E::UnsignConfirmed) => Err(not_applicable()),
        (S::Paused, E::SignConfirmed | E::UnsignConfirmed) => Err(not_applicable()),
    }
}

/// What a state sentence may cite. Fields the state does not use may be `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFacts {
    pub plan_title: String,
    pub terms_version: u32,
    pub price: Option<Money>,
    pub next_charge_at_ms: Option<i64>,
    pub paid_until_ms: Option<i64>,
    pub hold_until_ms: Option<i64>,
    pub effective_at_ms: Option<i64>,
    pub signing_expires_at_ms: Option<i64>,
}

fn time_or(ms: Option<i64>, zh: &str, en: &str) -> (String, String) {
    match ms {
        Some(ms) => (format_utc(ms), format_utc(ms)),
        None => (zh.to_owned(), en.to_owned()),
    }
}

/// A sentence per state: what is true now, why, whose move it is, and what happens next.
pub fn describe(state: AgreementState, facts: &StateFacts) -> Texts {
    let plan = &facts.plan_title;
    let v = facts.terms_version;
    let price = facts.price.map(|p| p.to_string()).unwrap_or_default();
    match state {
        AgreementState::Signing => {
            let (zh, en) = time_or(facts.signing_expires_at_ms, "签约时限", "the signing deadline");
            Texts::new(
                format!("「{plan}」自动续费协议（条款第 {v} 版）正在等待支付平台确认签约。确认前不会扣款；如 {zh} 前未完成签约，协议会自动失效。"),
                format!("The {plan} auto-renewal agreement (terms v{v}) is waiting for the payment provider to confirm signing. Nothing is charged before that; if signing is not completed by {en}, the agreement lapses by itself."),
            )
        }
        AgreementState::Active => {
            let (zh, en) = time_or(facts.next_charge_at_ms, "下个周期", "the next period");
            Texts::new(
                format!("「{plan}」自动续费生效中（条款第 {v} 版）。下次续费将于 {zh} 扣款 {price}，扣款前会提醒你；你可以随时一步解约。"),
                format!("Your {plan} auto-renewal is active (terms v{v}). The next renewal charges {price} at {en}; you are reminded before it, and you can end the agreement in one step at any time."),
            )
        }
        AgreementState::Paused => {
            let (zh, en) = time_or(facts.hold_until_ms, "锁定解除时", "the lock lifts");
            Texts::new(
                format!("「{plan}」自动续费因安全锁定而暂停：锁定期间既不能解约，也不会扣款。锁定于 {zh} 自动解除，之后可以解约。"),
                format!("Your {plan} auto-renewal is paused by a security hold: while it lasts, neither termination nor any renewal charge happens. The hold lifts at {en}; you can end the agreement after that."),
            )
        }
        AgreementState::Terminating { mode } => {
            let (zh, en) = time_or(facts.effective_at_ms, "报价所述时间", "the time stated in your quote");
            Texts::new(
                format!("「{plan}」自动续费已解约（{}），此后不会再扣款；解约于 {zh} 生效。我们正在通知支付平台解除代扣协议，会自动重试直到平台确认。", mode_zh(mode)),
                format!("Your {plan} auto-renewal is terminated ({}) and will not be charged again; the termination takes effect at {en}. We are telling the payment provider to cancel the agreement and retry until it confirms.", mode_en(mode)),
            )
        }
        AgreementState::Terminated { mode } => {
            let (zh, en) = time_or(facts.paid_until_ms, "已结束", "already over");
            Texts::new(
                format!("「{plan}」自动续费已解约（{}），支付平台已确认，不会再扣款。已付费的会员权益保留至 {zh}。", mode_zh(mode)),
                format!("Your {plan} auto-renewal is terminated ({}) and the payment provider has confirmed it; nothing more will be charged. Membership you already paid for lasts until {en}.", mode_en(mode)),
            )
        }
    }
}

fn mode_zh(mode: TerminationMode) -> &'static str {
    match mode {
        TerminationMode::User => "由你申请",
        TerminationMode::Platform => "由平台操作",
        TerminationMode::ProviderSide => "在支付平台侧解除",
        TerminationMode::Expired => "因续费失败或签约未完成而失效",
    }
}

fn mode_en(mode: TerminationMode) -> &'static str {
    match mode {
        TerminationMode::User => "at your request",
        TerminationMode::Platform => "by the platform",
        TerminationMode::ProviderSide => "at the payment provider",
        TerminationMode::Expired => "lapsed after failed renewals or an unfinished signing",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AgreementEvent as E;
    use AgreementState as S;
    use TerminationMode as M;

    const MODES: [M; 4] = [M::User, M::Platform, M::ProviderSide, M::Expired];

    fn all_states() -> Vec<S> {
        let mut states = vec![S::Signing, S::Active, S::Paused];
        states.extend(MODES.map(|mode| S::Terminating { mode }));
        states.extend(MODES.map(|mode| S::Terminated { mode }));
        states
    }

    fn all_events() -> Vec<E> {
        let mut events =
            vec![E::SignConfirmed, E::HoldPlaced, E::HoldReleased, E::UnsignConfirmed, E::ProviderUnsigned];
        events.extend(MODES.map(|mode| E::TerminationCommitted { mode }));
        events
    }

    /// The table, written out independently of `next`'s match.
    fn expected(state: S, event: E) -> Result<S, TransitionRefusal> {
        let na = Err(TransitionRefusal::NotApplicable { state: state.as_str(), event: event.as_str() });
        match (state.as_str(), event) {
            ("terminated", _) => Err(TransitionRefusal::AlreadyTerminated),
            ("terminating", E::UnsignConfirmed | E::ProviderUnsigned) => {
                Ok(S::Terminated { mode: state.mode().unwrap() })
            }
            ("terminating", E::TerminationCommitted { .. }) => Err(TransitionRefusal::AlreadyTerminated),
            ("signing", E::SignConfirmed) => Ok(S::Active),
            ("active" | "paused", E::HoldPlaced) => Ok(S::Paused),
            ("paused", E::HoldReleased) => Ok(S::Active),
            ("paused", E::TerminationCommitted { mode: M::User }) => Err(TransitionRefusal::SecurityHold),
            ("signing" | "active" | "paused", E::TerminationCommitted { mode }) => Ok(S::Terminating { mode }),
            ("signing" | "active" | "paused", E::ProviderUnsigned) => Ok(S::Terminated { mode: M::ProviderSide }),
            _ => na,
        }
    }

    #[test]
    fn every_state_and_event_pair_follows_the_table() {
        let mut checked = 0;
        for state in all_states() {
            for event in all_events() {
                assert_eq!(next(state, event), expected(state, event), "{state:?} + {event:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 11 * 9);
    }

    #[test]
    fn no_path_leads_from_a_committed_termination_back_to_charging() {
        for state in all_states().into_iter().filter(|s| s.is_terminated_locally()) {
            assert!(!state.may_charge());
            for event in all_events() {
                if let Ok(after) = next(state, event) {
                    assert!(after.is_terminated_locally() && !after.may_charge(), "{state:?} + {event:?}");
                    assert_eq!(after.mode(), state.mode(), "the mode of a termination never changes");
                }
            }
        }
        assert!(S::Active.may_charge() && !S::Paused.may_charge() && !S::Signing.may_charge());
    }

    proptest::proptest! {
        /// Any interleaving of provider notifications, holds and terminations: once a
        /// termination is committed the agreement never charges again, and its mode stays.
        #[test]
        fn once_terminated_never_charging_again(picks in proptest::collection::vec(0_usize..9, 0..40)) {
            let events = all_events();
            let mut state = S::Signing;
            let mut committed: Option<M> = None;
            for pick in picks {
                if let Ok(after) = next(state, events[pick]) {
                    state = after;
                }
                if let Some(mode) = committed {
                    proptest::prop_assert!(!state.may_charge());
                    proptest::prop_assert_eq!(state.mode(), Some(mode));
                } else if state.is_terminated_locally() {
                    committed = state.mode();
                }
            }
        }
    }

    #[test]
    fn states_serialize_flat_with_their_mode() {
        let json = serde_json::to_string(&S::Terminated { mode: M::ProviderSide }).unwrap();
        assert_eq!(json, r#"{"state":"terminated","mode":"provider_side"}"#);
        assert_eq!(serde_json::to_string(&S::Active).unwrap(), r#"{"state":"active"}"#);
        for state in all_states() {
            let back: S = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
            assert_eq!(back, state);
        }
    }

    #[test]
    fn every_state_has_a_sentence_in_both_languages_with_its_time() {
        let facts = StateFacts {
            plan_title: "SVIP".into(),
            terms_version: 2,
            price: Some(Money::new(2500, crate::money::Currency::Cny)),
            next_charge_at_ms: Some(86_400_000),
            paid_until_ms: Some(2 * 86_400_000),
            hold_until_ms: Some(1_800_000),
            effective_at_ms: Some(3 * 86_400_000),
            signing_expires_at_ms: Some(3_600_000),
        };
        let times = [
            (S::Signing, "1970-01-01 01:00 UTC"),
            (S::Active, "1970-01-02 00:00 UTC"),
            (S::Paused, "1970-01-01 00:30 UTC"),
            (S::Terminating { mode: M::User }, "1970-01-04 00:00 UTC"),
            (S::Terminated { mode: M::Expired }, "1970-01-03 00:00 UTC"),
        ];
        for (state, time) in times {
            let text = describe(state, &facts);
            assert!(text.zh_cn.contains(time) && text.en.contains(time), "{state:?}: {text:?}");
        }
        for state in all_states() {
            let text = describe(state, &facts);
            assert!(text.en.contains("SVIP") && text.zh_cn.contains("SVIP"));
            assert!(!text.en.is_empty() && !text.zh_cn.is_empty());
        }
        assert!(describe(S::Active, &facts).en.contains("25.00 CNY"));
    }
}
