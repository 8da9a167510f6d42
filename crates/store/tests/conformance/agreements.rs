//! Issue 11's storage, on both engines: published terms that never change, agreements
//! whose state moves only through their sealed timeline, quotes used once, step-up
//! verification facts, user messages and agreement notifications kept as evidence.

use serde_json::json;
use zerodrop_domain::hold::{Hold, HoldReason};
use zerodrop_domain::termination::Quote;
use zerodrop_domain::totp::TotpAlgorithm;
use zerodrop_domain::{AgreementEvent, AgreementState, Catalog, Secret, TerminationMode, Texts, UserId};
use zerodrop_store::agreements::timeline::{self, AppendError, Kind, NewAgreementEvent};
use zerodrop_store::agreements::{self, messages, notices, quotes, terms, verification, AgreementRow, NewAgreement};
use zerodrop_store::seal::verify::{self, VerifyOptions};
use zerodrop_store::{both_engines, now_ms, raw_execute, Store};

const MINUTE_MS: i64 = 60_000;

async fn publish_default(store: &Store) -> usize {
    let mut tx = store.begin().await.unwrap();
    let stored = terms::publish(&mut tx, Catalog::default_catalog().plans(), now_ms()).await.unwrap();
    tx.commit().await.unwrap();
    stored
}

pub(crate) async fn new_agreement(store: &Store, id: &str, user: &str) -> AgreementRow {
    publish_default(store).await;
    let catalog = Catalog::default_catalog();
    let current = catalog.plans().get("svip_monthly").unwrap().current().unwrap();
    let (_, hash) = terms::canonical(current).unwrap();
    let user = UserId::parse(user).unwrap();
    let external = format!("ext-{id}");
    let new = NewAgreement {
        id,
        user_id: &user,
        plan: "svip_monthly",
        terms_version: current.version,
        terms_sha256: &hash,
        provider: "sandbox",
        external_agreement_no: &external,
    };
    let mut tx = store.begin().await.unwrap();
    let row = agreements::insert(&mut tx, &new, "test", now_ms()).await.unwrap().unwrap();
    assert!(agreements::insert(&mut tx, &new, "test", now_ms()).await.unwrap().is_none(), "an id is used once");
    tx.commit().await.unwrap();
    row
}

async fn append(store: &Store, id: &str, event: NewAgreementEvent) -> Result<AgreementRow, AppendError> {
    let mut tx = store.begin().await.unwrap();
    let mut row = agreements::lock(&mut tx, id).await.unwrap();
    timeline::try_append(&mut tx, &mut row, event, now_ms()).await?;
    tx.commit().await.unwrap();
    Ok(row)
}

async fn refused(store: &Store, sql: &str) -> bool {
    let mut conn = store.reader().await.unwrap();
    raw_execute(&mut conn, sql).await.is_err()
}

both_engines! {
    async fn terms_are_published_once_and_a_changed_version_is_a_startup_error(db) {
        let first = publish_default(&db.store).await;
        assert!(first >= 2, "every version of every shipped plan is stored: {first}");
        assert_eq!(publish_default(&db.store).await, 0, "a second start stores nothing");
        let mut conn = db.store.reader().await.unwrap();
        let listed = terms::list(&mut conn, "svip_monthly").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].sha256, terms::sha256(&listed[0].canonical_json));
        drop(conn);

        // The same version with another price: refused, naming the plan and the version.
        let edited = zerodrop_domain::catalog::DEFAULT_CATALOG_TOML.replacen("price = \"25.00\"", "price = \"26.00\"", 1);
        let edited = Catalog::from_toml(&edited).unwrap();
        let mut tx = db.store.begin().await.unwrap();
        let error = terms::publish(&mut tx, edited.plans(), now_ms()).await.expect_err("a changed version is refused");
        let message = error.to_string();
        assert!(message.contains("terms version 1 of plan svip_monthly changed"), "{message}");
        drop(tx);
        assert!(refused(&db.store, "UPDATE plan_terms SET sha256 = 'x'").await, "a version never changes");
        assert!(refused(&db.store, "DELETE FROM plan_terms").await, "a version is never deleted");
    }
}

both_engines! {
    async fn an_agreement_moves_only_through_its_sealed_timeline(db) {
        let row = new_agreement(&db.store, "agr-1", "user-1").await;
        assert_eq!(row.state, AgreementState::Signing);
        assert_eq!(row.event_seq, 1);

        // Out of order: an unsign confirmation for an agreement never terminating.
        let early = append(&db.store, "agr-1", NewAgreementEvent::state(AgreementEvent::UnsignConfirmed, "t", json!({}))).await;
        assert!(matches!(early, Err(AppendError::Refused(_))), "{early:?}");

        let signed = NewAgreementEvent::state(AgreementEvent::SignConfirmed, "notification:1", json!({"provider_agreement_no": "P-1"}));
        let row = append(&db.store, "agr-1", signed).await.unwrap();
        assert_eq!((row.state, row.provider_agreement_no.as_deref()), (AgreementState::Active, Some("P-1")));
        assert!(row.signed_at_ms.is_some());

        let paid_until = now_ms() + 30 * 86_400_000;
        let row = append(&db.store, "agr-1", NewAgreementEvent::period_paid("order:1", paid_until, 1, json!({"order_no": "1"}))).await.unwrap();
        assert_eq!((row.paid_until_ms, row.periods_paid), (Some(paid_until), 1));

        let hold = Hold { reason: HoldReason::TakeoverSignal, since_ms: now_ms(), until_ms: now_ms() + 30 * MINUTE_MS };
        let row = append(&db.store, "agr-1", NewAgreementEvent::state(AgreementEvent::HoldPlaced, "api", json!({"hold": hold}))).await.unwrap();
        assert_eq!((row.state, row.hold.clone()), (AgreementState::Paused, Some(hold.clone())));
        // The user may not terminate while held.
        let user_end = AgreementEvent::TerminationCommitted { mode: TerminationMode::User };
        let held = append(&db.store, "agr-1", NewAgreementEvent::state(user_end, "api", json!({}))).await;
        assert!(matches!(held, Err(AppendError::Refused(_))), "{held:?}");
        let row = append(&db.store, "agr-1", NewAgreementEvent::state(AgreementEvent::HoldReleased, "job:1", json!({}))).await.unwrap();
        assert_eq!((row.state, row.hold.clone()), (AgreementState::Active, None));

        let effective = now_ms() + 1_000;
        let row = append(&db.store, "agr-1", NewAgreementEvent::state(user_end, "api", json!({"effective_at_ms": effective}))).await.unwrap();
        assert_eq!(row.state, AgreementState::Terminating { mode: TerminationMode::User });
        assert!(row.termination_committed_at_ms.is_some());
        assert_eq!(row.termination_effective_at_ms, Some(effective));
        let row = append(&db.store, "agr-1", NewAgreementEvent::state(AgreementEvent::UnsignConfirmed, "job:2", json!({}))).await.unwrap();
        assert_eq!(row.state, AgreementState::Terminated { mode: TerminationMode::User });
        assert!(row.termination_confirmed_at_ms.is_some());
        // A duplicate unsign notification: a refusal the caller records as a no-op.
        let again = append(&db.store, "agr-1", NewAgreementEvent::state(AgreementEvent::ProviderUnsigned, "t", json!({}))).await;
        assert!(matches!(again, Err(AppendError::Refused(zerodrop_domain::agreement::TransitionRefusal::AlreadyTerminated))));
        let row = append(&db.store, "agr-1", NewAgreementEvent::new(Kind::Recorded("notification_ignored"), "notification:2", json!({}))).await.unwrap();

        let mut conn = db.store.reader().await.unwrap();
        let stored = agreements::get(&mut conn, "agr-1").await.unwrap().unwrap();
        assert_eq!(stored, row, "the row read back is the row the timeline moved");
        assert_eq!(agreements::get_by_external_no(&mut conn, "ext-agr-1").await.unwrap().unwrap().id, "agr-1");
        let events = timeline::list(&mut conn, "agr-1").await.unwrap();
        let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["created", "sign_confirmed", "period_paid", "hold_placed", "hold_released",
                           "termination_committed", "unsign_confirmed", "notification_ignored"]);
        assert_eq!(timeline::fold(&events).unwrap(), Some(stored.state), "the state is the fold of the timeline");
        let mine = agreements::list_for_user(&mut conn, &UserId::parse("user-1").unwrap()).await.unwrap();
        assert_eq!(mine.len(), 1);
        drop(conn);

        // Sealed: every row's seal recomputes and the row's head is its last event's.
        let options = VerifyOptions { trusted_keys: &[], log: None, pending_age_ms_max: i64::MAX, now_ms: now_ms() };
        let checks = verify::run(&db.store, &options).await.unwrap();
        for name in ["sealed_rows", "seal_heads_current"] {
            let check = checks.iter().find(|c| c.name == name).unwrap();
            assert_eq!(check.violations, 0, "{check:?}");
        }

        // Append-only, and the agreement's facts never change.
        assert!(refused(&db.store, "UPDATE agreement_events SET cause = 'x'").await);
        assert!(refused(&db.store, "DELETE FROM agreement_events").await);
        assert!(refused(&db.store, "UPDATE agreements SET terms_version = 2").await);
        assert!(refused(&db.store, "DELETE FROM agreements").await);
    }
}

both_engines! {
    async fn a_provider_agreement_number_names_one_agreement(db) {
        new_agreement(&db.store, "agr-a", "user-1").await;
        new_agreement(&db.store, "agr-b", "user-1").await;
        let sign = |no: &str| NewAgreementEvent::state(AgreementEvent::SignConfirmed, "t", json!({"provider_agreement_no": no}));
        append(&db.store, "agr-a", sign("P-9")).await.unwrap();
        let mut tx = db.store.begin().await.unwrap();
        let mut row = agreements::lock(&mut tx, "agr-b").await.unwrap();
        let clash = timeline::try_append(&mut tx, &mut row, sign("P-9"), now_ms()).await;
        assert!(clash.is_err(), "one provider agreement number, one agreement");
    }
}

fn a_quote(expires_at_ms: i64) -> Quote {
    let catalog = Catalog::default_catalog();
    let terms = catalog.plans().get("svip_monthly").unwrap().current().unwrap().clone();
    let facts = zerodrop_domain::termination::TerminationFacts {
        state: AgreementState::Active,
        signed_at_ms: now_ms() - 86_400_000,
        paid_until_ms: Some(now_ms() + 86_400_000),
        periods_paid: 1,
        hold: None,
        charge_in_flight: None,
        fee_paid: false,
        totp_enrolled: true,
        terminated_effective_at_ms: None,
    };
    let mut quote = zerodrop_domain::termination::quote(&terms, &facts, now_ms()).unwrap();
    quote.expires_at_ms = expires_at_ms;
    quote
}

both_engines! {
    async fn a_quote_is_used_once_and_answers_the_same_again(db) {
        new_agreement(&db.store, "agr-q", "user-1").await;
        let quote = a_quote(now_ms() + 10 * MINUTE_MS);
        let mut tx = db.store.begin().await.unwrap();
        quotes::insert(&mut tx, "q-1", "agr-q", &quote, now_ms()).await.unwrap();
        let answer = json!({"state": "terminating"});
        assert!(quotes::mark_used(&mut tx, "q-1", &answer, now_ms()).await.unwrap());
        assert!(!quotes::mark_used(&mut tx, "q-1", &json!({"other": 1}), now_ms()).await.unwrap(), "used once");
        tx.commit().await.unwrap();
        let mut conn = db.store.reader().await.unwrap();
        let stored = quotes::get(&mut conn, "q-1").await.unwrap().unwrap();
        assert_eq!((&stored.quote, &stored.answer), (&quote, &Some(answer)));
        assert!(stored.used_at_ms.is_some() && !stored.is_expired(now_ms()));
        assert!(quotes::get(&mut conn, "q-2").await.unwrap().is_none());
        drop(conn);
        assert!(refused(&db.store, "UPDATE termination_quotes SET used_at_ms = NULL, answer = NULL").await, "a use stands");
        assert!(refused(&db.store, "UPDATE termination_quotes SET quote = '{}'").await);
        assert!(refused(&db.store, "DELETE FROM termination_quotes").await);
    }
}

both_engines! {
    async fn totp_steps_are_used_once_and_codes_are_stored_hashed(db) {
        new_agreement(&db.store, "agr-v", "user-1").await;
        let user = UserId::parse("user-1").unwrap();
        let secret = Secret::new(vec![7_u8; 20]);
        let mut tx = db.store.begin().await.unwrap();
        assert!(verification::enrol_totp(&mut tx, &user, &secret, TotpAlgorithm::Sha1, now_ms()).await.unwrap());
        assert!(verification::enrol_totp(&mut tx, &user, &secret, TotpAlgorithm::Sha1, now_ms()).await.unwrap(), "unconfirmed: replaced");
        assert!(verification::use_totp_step(&mut tx, &user, 100, true, now_ms()).await.unwrap());
        assert!(!verification::use_totp_step(&mut tx, &user, 100, false, now_ms()).await.unwrap(), "a replayed step");
        assert!(!verification::use_totp_step(&mut tx, &user, 99, false, now_ms()).await.unwrap(), "an older step");
        assert!(verification::use_totp_step(&mut tx, &user, 101, false, now_ms()).await.unwrap());
        assert!(!verification::enrol_totp(&mut tx, &user, &Secret::new(vec![9; 20]), TotpAlgorithm::Sha1, now_ms()).await.unwrap(),
            "a confirmed secret is kept");

        let code = Secret::new("123456".to_owned());
        verification::insert_code(&mut tx, "c-2", "agr-v", &user, &Secret::new("654321".to_owned()), now_ms() - 1, now_ms() - 2).await.unwrap();
        verification::insert_code(&mut tx, "c-1", "agr-v", &user, &code, now_ms() + 10 * MINUTE_MS, now_ms()).await.unwrap();
        assert!(!verification::use_code(&mut tx, "agr-v", "000000", now_ms()).await.unwrap(), "wrong");
        assert!(!verification::use_code(&mut tx, "agr-v", "654321", now_ms()).await.unwrap(), "expired");
        // A newer code supersedes it: only the newest works.
        verification::insert_code(&mut tx, "c-3", "agr-v", &user, &Secret::new("111111".to_owned()), now_ms() + 10 * MINUTE_MS, now_ms()).await.unwrap();
        assert!(!verification::use_code(&mut tx, "agr-v", "123456", now_ms()).await.unwrap(), "superseded");
        assert!(verification::use_code(&mut tx, "agr-v", "111111", now_ms()).await.unwrap());
        assert!(!verification::use_code(&mut tx, "agr-v", "111111", now_ms()).await.unwrap(), "used once");
        for minutes_ago in [20, 3, 2, 1] {
            verification::record_failure(&mut tx, &user, Some("agr-v"), "totp", now_ms() - minutes_ago * MINUTE_MS).await.unwrap();
        }
        tx.commit().await.unwrap();

        let mut conn = db.store.reader().await.unwrap();
        let stored = verification::totp(&mut conn, &user).await.unwrap().unwrap();
        assert_eq!(stored.secret.expose(), secret.expose());
        assert_eq!((stored.last_step, stored.confirmed_at_ms.is_some()), (Some(101), true));
        assert!(!format!("{stored:?}").contains("AAAA"), "no secret in Debug");
        let failures = verification::failures_since(&mut conn, &user, now_ms() - 15 * MINUTE_MS).await.unwrap();
        assert_eq!(failures.len(), 3, "only the window counts");
        let hashes = sqlx::query_scalar::<_, String>("SELECT code_sha256 FROM verification_codes")
            .fetch_all(&mut *conn).await.unwrap();
        assert!(hashes.iter().all(|h| h.len() == 64 && h != "123456"), "{hashes:?}");
        drop(conn);
        assert!(refused(&db.store, "UPDATE verification_failures SET at_ms = 0").await);
    }
}

both_engines! {
    async fn messages_page_newest_first(db) {
        let user = UserId::parse("user-m").unwrap();
        let mut tx = db.store.begin().await.unwrap();
        for i in 0..5 {
            messages::insert(&mut tx, &user, "verification_code", &Texts::new(format!("码 {i}"), format!("code {i}")), now_ms()).await.unwrap();
        }
        messages::insert(&mut tx, &UserId::parse("someone-else").unwrap(), "x", &Texts::new("a", "b"), now_ms()).await.unwrap();
        tx.commit().await.unwrap();
        let mut conn = db.store.reader().await.unwrap();
        let first = messages::page(&mut conn, &user, None, 2).await.unwrap();
        assert_eq!(first.iter().map(|m| m.body.en.as_str()).collect::<Vec<_>>(), ["code 4", "code 3"]);
        let rest = messages::page(&mut conn, &user, Some(first[1].id), 100).await.unwrap();
        assert_eq!(rest.iter().map(|m| m.body.en.as_str()).collect::<Vec<_>>(), ["code 2", "code 1", "code 0"]);
    }
}

both_engines! {
    async fn agreement_notifications_are_kept_before_they_are_judged(db) {
        let mut tx = db.store.begin().await.unwrap();
        let body = b"notify_type=dut_user_sign&external_agreement_no=ext-1";
        let notice = notices::NewNotice { provider: "sandbox", remote_addr: None, headers: json!({}), body };
        let id = notices::insert(&mut tx, &notice, now_ms()).await.unwrap();
        tx.commit().await.unwrap();
        let mut conn = db.store.reader().await.unwrap();
        assert_eq!(notices::unjudged(&mut conn, 10).await.unwrap().len(), 1, "stored before any verdict");
        drop(conn);
        let mut tx = db.store.begin().await.unwrap();
        let judgement = notices::Judgement {
            verdict: notices::NoticeVerdict::Unknown,
            reason: Some("no such agreement"),
            external_agreement_no: Some("ext-1"),
            notify_type: Some("dut_user_sign"),
            notify_id: Some("n-1"),
        };
        notices::judge(&mut tx, id, &judgement, now_ms()).await.unwrap();
        tx.commit().await.unwrap();
        let mut conn = db.store.reader().await.unwrap();
        let stored = notices::get(&mut conn, id).await.unwrap().unwrap();
        assert_eq!((stored.body.as_slice(), stored.verdict.as_str()), (&body[..], "unknown"));
        assert!(notices::unjudged(&mut conn, 10).await.unwrap().is_empty());
        drop(conn);
        assert!(refused(&db.store, "UPDATE agreement_notifications SET body = body || body").await, "evidence never changes");
        assert!(refused(&db.store, "DELETE FROM agreement_notifications").await);
    }
}

both_engines! {
    async fn the_audit_holds_agreements_to_their_promises(db) {
        use zerodrop_store::{audit, jobs};
        new_agreement(&db.store, "agr-x", "user-1").await;
        let sign = NewAgreementEvent::state(AgreementEvent::SignConfirmed, "t", json!({"provider_agreement_no": "P-x"}));
        append(&db.store, "agr-x", sign).await.unwrap();
        let before = crate::new_order(&db.store, "diamonds_60").await;
        let mut tx = db.store.begin().await.unwrap();
        agreements::attach_order(&mut tx, before.id, "agr-x").await.unwrap();
        assert!(agreements::attach_order(&mut tx, before.id, "agr-x").await.is_err(), "named once");
        tx.commit().await.unwrap();

        let failing = |report: &audit::Report| -> Vec<&'static str> {
            report.checks.iter().filter(|c| c.violations > 0 && c.name.contains("agreement")).map(|c| c.name).collect()
        };
        let options = audit::AuditOptions::new(3_600_000);
        let report = audit::run(&db.store, &options, now_ms()).await.unwrap();
        assert!(failing(&report).is_empty(), "{report:#?}");

        // Terminated with no unsign job: the audit says so; with its job queued, it passes.
        let end = AgreementEvent::TerminationCommitted { mode: TerminationMode::User };
        append(&db.store, "agr-x", NewAgreementEvent::state(end, "api", json!({}))).await.unwrap();
        let report = audit::run(&db.store, &options, now_ms()).await.unwrap();
        assert_eq!(failing(&report), ["agreement_terminating_has_unsign_job"]);
        let mut tx = db.store.begin().await.unwrap();
        let job = jobs::NewJob {
            kind: agreements::UNSIGN_JOB_KIND,
            order_id: None,
            payload: json!({"agreement_id": "agr-x"}),
            run_at_ms: now_ms(),
            max_attempts: 3,
            dedupe_key: Some(agreements::unsign_job_key("agr-x")),
        };
        assert!(jobs::enqueue(&mut tx, &job, now_ms()).await.unwrap());
        tx.commit().await.unwrap();
        let report = audit::run(&db.store, &options, now_ms()).await.unwrap();
        assert!(failing(&report).is_empty(), "{report:#?}");

        // An order created under it after the commit and not refunded: a violation.
        let after = crate::new_order(&db.store, "diamonds_60").await;
        let mut tx = db.store.begin().await.unwrap();
        agreements::attach_order(&mut tx, after.id, "agr-x").await.unwrap();
        tx.commit().await.unwrap();
        let report = audit::run(&db.store, &options, now_ms()).await.unwrap();
        assert_eq!(failing(&report), ["agreement_no_charge_after_termination"]);

        // Hiding it by nulling the termination time (a consistent edit of the unsealed
        // column) is caught against the sealed timeline.
        let mut conn = db.store.reader().await.unwrap();
        raw_execute(&mut conn, "UPDATE agreements SET termination_committed_at_ms = NULL WHERE id = 'agr-x'").await.unwrap();
        drop(conn);
        let report = audit::run(&db.store, &options, now_ms()).await.unwrap();
        assert_eq!(failing(&report), ["agreement_state_is_fold"]);
    }
}

both_engines! {
    async fn the_audit_finds_a_charge_made_while_held(db) {
        use zerodrop_store::audit;
        new_agreement(&db.store, "agr-h", "user-1").await;
        let sign = NewAgreementEvent::state(AgreementEvent::SignConfirmed, "t", json!({"provider_agreement_no": "P-h"}));
        append(&db.store, "agr-h", sign).await.unwrap();
        let hold = Hold { reason: HoldReason::TakeoverSignal, since_ms: now_ms(), until_ms: now_ms() + 30 * MINUTE_MS };
        append(&db.store, "agr-h", NewAgreementEvent::state(AgreementEvent::HoldPlaced, "api", json!({"hold": hold}))).await.unwrap();
        let order = crate::new_order(&db.store, "diamonds_60").await;
        let mut tx = db.store.begin().await.unwrap();
        agreements::attach_order(&mut tx, order.id, "agr-h").await.unwrap();
        tx.commit().await.unwrap();
        let report = audit::run(&db.store, &audit::AuditOptions::new(3_600_000), now_ms()).await.unwrap();
        let check = report.checks.iter().find(|c| c.name == "agreement_no_charge_while_held").unwrap();
        assert_eq!(check.violations, 1, "{check:?}");
    }
}

both_engines! {
    async fn a_message_with_a_key_is_stored_once_and_read_back_with_its_user(db) {
        let store = &db.store;
        let user = UserId::parse("u-once").unwrap();
        let body = Texts::new("续费提醒", "renewal reminder");
        let mut tx = store.begin().await.unwrap();
        let first = messages::insert_once(&mut tx, &user, "renewal_reminder", &body, "remind:agr:1", now_ms()).await.unwrap();
        let again = messages::insert_once(&mut tx, &user, "renewal_reminder", &body, "remind:agr:1", now_ms()).await.unwrap();
        let other = messages::insert_once(&mut tx, &user, "renewal_reminder", &body, "remind:agr:2", now_ms()).await.unwrap();
        // Messages without a key (one-time codes of old) never collide.
        messages::insert(&mut tx, &user, "verification_code", &body, now_ms()).await.unwrap();
        messages::insert(&mut tx, &user, "verification_code", &body, now_ms()).await.unwrap();
        tx.commit().await.unwrap();
        let first = first.expect("stored the first time");
        assert!(again.is_none(), "the same key stores nothing more");
        assert!(other.is_some_and(|id| id != first));
        let mut conn = store.reader().await.unwrap();
        let (owner, message) = messages::get(&mut conn, first).await.unwrap().expect("found");
        assert_eq!((owner, message.kind.as_str(), message.body), (user.clone(), "renewal_reminder", body));
        assert_eq!(messages::page(&mut conn, &user, None, 100).await.unwrap().len(), 4);
        assert!(messages::get(&mut conn, i64::MAX).await.unwrap().is_none());
    }
}
