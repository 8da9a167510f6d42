//! Ending an agreement (issue 11, part 4), over real HTTP against the sandbox: quote then
//! confirm with a step-up code; the local commit stops charges at once and the unsign job
//! confirms with the provider (retrying through an outage); a charge in flight that lands
//! after the commit is refunded in full; every refusal speaks both languages; wrong and
//! replayed codes are counted and five place a hold that also pauses charges; the
//! platform's takeover signal holds; a termination racing a charge never charges after it.

use crate::support::{calm, code, Harness};
use serde_json::{json, Value};
use std::time::Duration;
use zerodrop::stack::eventually;
use zerodrop_domain::totp::{base32_decode, totp_code, TotpAlgorithm, TOTP_DIGITS};
use zerodrop_sandbox::faults::Faults;
use zerodrop_server::flows::agreement::charge::{charge_period, Charged};
use zerodrop_store::both_engines;

async fn get(h: &Harness, path: &str) -> (u16, Value) {
    h.client.get(path).await.expect("get")
}

async fn agreement(h: &Harness, id: &str) -> Value {
    get(h, &format!("/v1/agreements/{id}")).await.1["agreement"].clone()
}

async fn wait_for(h: &Harness, id: &str, what: &str, test: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(20), &format!("agreement {id}: {what}"), || async {
        let (_, body) = h.client.get(&format!("/v1/agreements/{id}")).await?;
        Ok(test(&body["agreement"]).then(|| body["agreement"].clone()))
    })
    .await
    .expect(what)
}

/// Signs `plan` for `user` at the sandbox; waits for `active` (and, when `paid`, the first
/// period). Returns the agreement id.
async fn signed(h: &Harness, user: &str, plan: &str, paid: bool) -> String {
    let (status, created) = h.post("/v1/agreements", &json!({ "user_id": user, "plan": plan }), None).await;
    assert_eq!(status, 201, "{created}");
    let id = created["agreement"]["id"].as_str().unwrap().to_owned();
    h.sandbox.sandbox.sign_agreement(created["sign"]["sign_request"].as_str().unwrap()).expect("signed");
    wait_for(h, &id, "active", |a| a["state"] == "active").await;
    if paid {
        wait_for(h, &id, "first period paid", |a| a["periods_paid"] == 1).await;
    }
    id
}

/// Enrols and confirms a TOTP for `user`; returns the secret and the code used.
async fn enrolled(h: &Harness, user: &str) -> (Vec<u8>, String) {
    let (status, enrolled) = h.post(&format!("/v1/users/{user}/totp"), &json!({}), None).await;
    assert_eq!(status, 201, "{enrolled}");
    let uri = enrolled["otpauth_uri"].as_str().unwrap();
    let secret = base32_decode(uri.split("secret=").nth(1).unwrap().split('&').next().unwrap()).unwrap();
    // A code from the previous step, so the current one is still fresh for the test.
    let code = totp_code(TotpAlgorithm::Sha1, &secret, zerodrop_store::now_ms() - 30_000, TOTP_DIGITS);
    let (status, ok) = h.post(&format!("/v1/users/{user}/totp/confirm"), &json!({ "code": code }), None).await;
    assert_eq!(status, 200, "{ok}");
    (secret, code)
}

fn totp_now(secret: &[u8]) -> String {
    totp_code(TotpAlgorithm::Sha1, secret, zerodrop_store::now_ms(), TOTP_DIGITS)
}

async fn quote(h: &Harness, id: &str) -> (u16, Value) {
    h.post(&format!("/v1/agreements/{id}/termination-quote"), &json!({}), None).await
}

async fn quote_id(h: &Harness, id: &str) -> String {
    let (status, body) = quote(h, id).await;
    assert_eq!(status, 201, "{body}");
    body["quote"]["id"].as_str().unwrap().to_owned()
}

async fn terminate(h: &Harness, id: &str, quote_id: &str, verification: Value) -> (u16, Value) {
    let body = json!({ "quote_id": quote_id, "verification": verification });
    h.post(&format!("/v1/agreements/{id}/terminate"), &body, None).await
}

/// Sends a one-time code and reads it from the user's newest message.
async fn one_time_code(h: &Harness, id: &str, user: &str) -> String {
    let (status, sent) = h.post(&format!("/v1/agreements/{id}/verification-code"), &json!({}), None).await;
    assert_eq!(status, 201, "{sent}");
    assert!(!sent.to_string().contains("验证码："), "the code is never in the answer");
    let (_, messages) = get(h, &format!("/v1/users/{user}/messages?limit=1")).await;
    let text = messages["messages"][0]["body"]["en"].as_str().unwrap().to_owned();
    text.split_whitespace()
        .find(|w| w.trim_end_matches('.').len() == 6 && w.trim_end_matches('.').bytes().all(|b| b.is_ascii_digit()))
        .unwrap()
        .trim_end_matches('.')
        .to_owned()
}

/// A refusal's code, both languages present (and Chinese in the zh-CN one) and a next step.
fn refusal<'a>(status: u16, body: &'a Value, want_status: u16, want: &str) -> &'a Value {
    assert_eq!((status, code(body)), (want_status, want), "{body}");
    let message = &body["error"]["message"];
    let zh = message["zh_cn"].as_str().unwrap_or_default();
    assert!(zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "{body}");
    assert!(!message["en"].as_str().unwrap_or_default().is_empty(), "{body}");
    assert!(body["error"]["next_step"].is_string(), "{body}");
    &body["error"]["details"]
}

async fn orders_of(h: &Harness, id: &str) -> Vec<(String, String)> {
    let mut conn = h.server.app.store.reader().await.unwrap();
    zerodrop_store::agreements::orders_of(&mut conn, id).await.unwrap()
}

async fn order_status(h: &Harness, order_no: &str) -> String {
    get(h, &format!("/v1/orders/{order_no}")).await.1["order"]["status"].as_str().unwrap_or_default().to_owned()
}

both_engines! {
    async fn a_user_ends_an_agreement_with_totp_the_unsign_confirms_and_nothing_is_charged_after(db) {
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        let (secret, _) = enrolled(&h, "user-end").await;
        let id = signed(&h, "user-end", "svip_monthly", true).await;
        let (status, quoted) = quote(&h, &id).await;
        assert_eq!(status, 201, "{quoted}");
        assert_eq!(quoted["quote"]["quote"]["verification"], "totp");
        assert!(quoted["quote"]["sentence"]["zh_cn"].as_str().unwrap().contains("解约"));
        let qid = quoted["quote"]["id"].as_str().unwrap().to_owned();

        let (status, body) = terminate(&h, &id, &qid, json!({})).await;
        assert_eq!(refusal(status, &body, 422, "verification_required")["method"], "totp");
        let (status, body) = terminate(&h, &id, &qid, json!({ "totp": "000000" })).await;
        assert_eq!(refusal(status, &body, 422, "verification_failed")["attempts_left"], 4);
        let (status, done) = terminate(&h, &id, &qid, json!({ "totp": totp_now(&secret) })).await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["termination"]["state"], "terminating");
        assert_eq!(done["replayed"], false);
        // The same quote again: the first answer.
        let (status, again) = terminate(&h, &id, &qid, json!({ "totp": "999999" })).await;
        assert_eq!((status, &again["termination"], &again["replayed"]), (200, &done["termination"], &json!(true)));

        let ended = wait_for(&h, &id, "terminated by the unsign job", |a| a["state"] == "terminated").await;
        assert_eq!(ended["mode"], "user");
        assert!(ended["termination"]["confirmed_at_ms"].is_i64(), "{ended}");
        let kinds: Vec<&str> = ended["timeline"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        // The unsign job's answer or the provider's notification confirms (whichever first).
        let committed = kinds.iter().position(|k| *k == "termination_committed").expect("committed");
        assert_eq!(kinds[committed - 2..committed], ["quote_issued", "verification_failed"], "{kinds:?}");
        assert_eq!(kinds[committed + 1], "unsign_confirmed", "{kinds:?}");
        // No charge after: the period charge refuses, and a new quote says why.
        let charged = charge_period(&h.server.app, &id, zerodrop_store::now_ms()).await.unwrap();
        assert!(matches!(charged, Charged::NotCharged(_)), "{charged:?}");
        assert_eq!(orders_of(&h, &id).await.len(), 1, "only the first period's order");
        let (status, body) = quote(&h, &id).await;
        assert_eq!(refusal(status, &body, 409, "already_terminated")["confirmed"], true);
        let (status, missing) = quote(&h, "agr_nope").await;
        assert_eq!((status, code(&missing)), (404, "agreement_not_found"));
        let (status, missing) = terminate(&h, &id, "tq_nope", json!({})).await;
        assert_eq!((status, code(&missing)), (404, "quote_not_found"));
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn an_unsign_during_a_gateway_outage_keeps_the_agreement_terminating_and_retries(db) {
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        let id = signed(&h, "user-outage", "svip_monthly", true).await;
        let qid = quote_id(&h, &id).await;
        let code = one_time_code(&h, &id, "user-outage").await;
        // A second agreement, whose unsign runs out of attempts during the outage.
        let other = signed(&h, "user-outage-b", "svip_monthly", true).await;
        let other_qid = quote_id(&h, &other).await;
        let other_code = one_time_code(&h, &other, "user-outage-b").await;
        h.sandbox.sandbox.set_faults(Faults { gateway_down_until_ms: zerodrop_store::now_ms() + 600_000, ..calm() });
        let (status, done) = terminate(&h, &id, &qid, json!({ "code": code })).await;
        assert_eq!(status, 200, "{done}");
        let (status, done) = terminate(&h, &other, &other_qid, json!({ "code": other_code })).await;
        assert_eq!(status, 200, "{done}");
        let job_state = |key: String| {
            let h = &h;
            async move {
                let mut conn = h.server.app.store.reader().await.unwrap();
                sqlx::query_as::<_, (i64, String)>("SELECT attempts, state FROM jobs WHERE dedupe_key = $1")
                    .bind(key)
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap()
            }
        };
        let key = zerodrop_store::agreements::unsign_job_key(&id);
        eventually(Duration::from_secs(20), "the unsign retried", || async {
            Ok((job_state(key.clone()).await.0 >= 2).then_some(()))
        })
        .await
        .expect("retries");
        assert_eq!(agreement(&h, &id).await["state"], "terminating", "still terminating while the provider is down");
        let charged = charge_period(&h.server.app, &id, zerodrop_store::now_ms()).await.unwrap();
        assert!(matches!(charged, Charged::NotCharged(_)), "{charged:?}");
        h.audit_passes().await;

        // The other one's last attempt fails: a person gets it, the agreement stays terminating.
        let other_key = zerodrop_store::agreements::unsign_job_key(&other);
        let mut tx = h.server.app.store.begin().await.unwrap();
        let sql = format!(
            "UPDATE jobs SET attempts = max_attempts - 1, run_at_ms = 0 WHERE dedupe_key = '{other_key}' AND state = 'queued'"
        );
        zerodrop_store::raw_execute(&mut tx, &sql).await.unwrap();
        tx.commit().await.unwrap();
        h.server.app.wake();
        eventually(Duration::from_secs(20), "the unsign given to a person", || async {
            Ok((job_state(other_key.clone()).await.1 == "attention").then_some(()))
        })
        .await
        .expect("attention");
        let shown = agreement(&h, &other).await;
        assert_eq!(shown["state"], "terminating", "{shown}");
        assert!(shown["timeline"].to_string().contains("unsign_attention"), "{shown}");
        let (_, items) = get(&h, "/v1/attention").await;
        assert!(items.to_string().contains("agreement_unsign_exhausted"), "{items}");
        h.audit_passes().await;

        h.sandbox.sandbox.set_faults(calm());
        h.make_due(zerodrop_store::agreements::UNSIGN_JOB_KIND).await;
        wait_for(&h, &id, "terminated after the outage", |a| a["state"] == "terminated").await;
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn a_charge_in_flight_when_the_termination_commits_is_refunded_in_full_when_it_lands(db) {
        let faults = Faults { agreement_charge_processing_pct: 100, agreement_charge_settle_ms: 4_000, ..calm() };
        let h = Harness::start(db, faults, crate::support::notifications_only()).await;
        let id = signed(&h, "user-flight", "svip_monthly", false).await;
        let orders = eventually(Duration::from_secs(10), "the first charge started", || async {
            let orders = orders_of(&h, &id).await;
            Ok((!orders.is_empty()).then_some(orders))
        })
        .await
        .expect("charge started");
        let order_no = orders[0].1.clone();
        assert_eq!(order_status(&h, &order_no).await, "awaiting_payment");
        let (status, quoted) = quote(&h, &id).await;
        assert_eq!(status, 201, "{quoted}");
        assert_eq!(quoted["quote"]["quote"]["in_flight_refund"]["amount"]["minor"], 2_500, "{quoted}");
        let qid = quoted["quote"]["id"].as_str().unwrap();
        let code = one_time_code(&h, &id, "user-flight").await;
        let (status, done) = terminate(&h, &id, qid, json!({ "code": code })).await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["termination"]["refund_in_flight_renewal"], true);
        // The charge lands (notified) after the commit: refunded in full, never delivered.
        eventually(Duration::from_secs(30), "the late charge refunded", || async {
            let status = order_status(&h, &order_no).await;
            Ok(matches!(status.as_str(), "refunding" | "refunded").then_some(()))
        })
        .await
        .expect("refunded");
        let shown = agreement(&h, &id).await;
        assert_eq!(shown["periods_paid"], 0, "the refunded charge paid no period: {shown}");
        assert!(shown["timeline"].to_string().contains("charge_refunded_after_termination"));
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn every_refusal_speaks_both_languages_and_a_stale_quote_is_refused(db) {
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        // A stale quote: a period paid since it was made changes what it states.
        let id = signed(&h, "user-stale", "svip_monthly", true).await;
        let stale = quote_id(&h, &id).await;
        let charged = charge_period(&h.server.app, &id, zerodrop_store::now_ms()).await.unwrap();
        assert!(matches!(charged, Charged::Started { paid: true, .. }), "{charged:?}");
        let code = one_time_code(&h, &id, "user-stale").await;
        let (status, body) = terminate(&h, &id, &stale, json!({ "code": code })).await;
        refusal(status, &body, 409, "quote_expired");
        // The code was not used by the refusal: it still works with a fresh quote.
        let fresh = quote_id(&h, &id).await;
        let (status, done) = terminate(&h, &id, &fresh, json!({ "code": code })).await;
        assert_eq!(status, 200, "{done}");
        // The stale quote after the termination: already terminated.
        let (status, body) = terminate(&h, &id, &stale, json!({ "code": code })).await;
        refusal(status, &body, 409, "already_terminated");

        // A plan with an early-termination fee cannot be signed while no fee can be paid:
        // a user bound to it could never end it (`fee_unpaid`, stated with its fee in both
        // languages, is covered by the domain's tests).
        let (status, refused) =
            h.post("/v1/agreements", &json!({ "user_id": "user-fee", "plan": "svip_yearly_commit" }), None).await;
        assert_eq!((status, refused["error"]["code"].as_str()), (422, Some("plan_not_offered")), "{refused}");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn wrong_and_replayed_codes_count_and_five_place_a_hold_that_pauses_charges(db) {
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        // A replayed TOTP code is refused and counted.
        let (_, used) = enrolled(&h, "user-replay").await;
        let id = signed(&h, "user-replay", "svip_monthly", true).await;
        let qid = quote_id(&h, &id).await;
        let (status, body) = terminate(&h, &id, &qid, json!({ "totp": used })).await;
        assert_eq!(refusal(status, &body, 422, "verification_failed")["attempts_left"], 4, "a replay counts");

        // Five wrong one-time codes: the fifth places a hold with its unlock time.
        let id = signed(&h, "user-guess", "svip_monthly", true).await;
        let qid = quote_id(&h, &id).await;
        let real = one_time_code(&h, &id, "user-guess").await;
        let wrong = if real == "000000" { "111111" } else { "000000" };
        for left in (1..=4).rev() {
            let (status, body) = terminate(&h, &id, &qid, json!({ "code": wrong })).await;
            assert_eq!(refusal(status, &body, 422, "verification_failed")["attempts_left"], left);
        }
        let (status, body) = terminate(&h, &id, &qid, json!({ "code": wrong })).await;
        let details = refusal(status, &body, 423, "security_hold");
        assert!(details["unlock_at_ms"].as_i64().unwrap() > zerodrop_store::now_ms() + 29 * 60_000, "{body}");
        assert!(details["unlock_at"].as_str().unwrap().ends_with("UTC"), "{body}");
        let message = &body["error"]["message"];
        let at = details["unlock_at"].as_str().unwrap();
        assert!(message["zh_cn"].as_str().unwrap().contains(at) && message["en"].as_str().unwrap().contains(at));
        let held = agreement(&h, &id).await;
        assert_eq!(held["state"], "paused", "{held}");
        // While held: even the right code is refused, and nothing is charged.
        let (status, body) = terminate(&h, &id, &qid, json!({ "code": real })).await;
        refusal(status, &body, 423, "security_hold");
        let (status, body) = quote(&h, &id).await;
        refusal(status, &body, 423, "security_hold");
        let charged = charge_period(&h.server.app, &id, zerodrop_store::now_ms()).await.unwrap();
        assert!(matches!(charged, Charged::NotCharged(_)), "{charged:?}");
        assert_eq!(orders_of(&h, &id).await.len(), 1);
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn a_takeover_signal_holds_the_users_agreements_until_it_ends_by_itself(db) {
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        let id = signed(&h, "user-takeover", "svip_monthly", true).await;
        let (status, body) = h.post("/v1/users/user-takeover/security-signal", &json!({ "kind": "account_takeover", "hold_secs": 2 }), None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["held"], json!([id]));
        let (status, bad) = h.post("/v1/users/user-takeover/security-signal", &json!({ "kind": "other", "hold_secs": 2 }), None).await;
        assert_eq!((status, code(&bad)), (422, "invalid_request"));
        assert_eq!(agreement(&h, &id).await["state"], "paused");
        let (status, refused) = quote(&h, &id).await;
        refusal(status, &refused, 423, "security_hold");
        let charged = charge_period(&h.server.app, &id, zerodrop_store::now_ms()).await.unwrap();
        assert!(matches!(charged, Charged::NotCharged(_)), "{charged:?}");
        tokio::time::sleep(Duration::from_millis(2_200)).await;
        // Ended by itself: a quote is given, and the next charge releases the hold first.
        let (status, quoted) = quote(&h, &id).await;
        assert_eq!(status, 201, "{quoted}");
        let charged = charge_period(&h.server.app, &id, zerodrop_store::now_ms()).await.unwrap();
        assert!(matches!(charged, Charged::Started { paid: true, .. }), "{charged:?}");
        let shown = agreement(&h, &id).await;
        assert_eq!((&shown["state"], &shown["periods_paid"]), (&json!("active"), &json!(2)), "{shown}");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn a_termination_racing_a_charge_never_charges_after_the_termination(db) {
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        for round in 0..3 {
            let user = format!("user-race-{round}");
            let id = signed(&h, &user, "svip_monthly", true).await;
            let qid = quote_id(&h, &id).await;
            let otp = one_time_code(&h, &id, &user).await;
            let app = h.server.app.clone();
            let charge_id = id.clone();
            let charging = tokio::spawn(async move { charge_period(&app, &charge_id, zerodrop_store::now_ms()).await });
            let (status, done) = terminate(&h, &id, &qid, json!({ "code": otp })).await;
            let charged = charging.await.unwrap().unwrap();
            // The charge may come first (then the quote is stale) or lose to the commit.
            assert!(status == 200 || code(&done) == "quote_expired", "{status} {done} {charged:?}");
            if status != 200 {
                let qid = quote_id(&h, &id).await;
                let otp = one_time_code(&h, &id, &user).await;
                let (status, done) = terminate(&h, &id, &qid, json!({ "code": otp })).await;
                assert_eq!(status, 200, "{done}");
            }
            // Any order created or paid after the commit is refunded: the audit checks it.
            h.audit_passes().await;
        }
        h.stop().await;
    }
}

both_engines! {
    /// Ended while still signing: the unsign finds nothing at the provider and confirms.
    /// When the user then finishes the provider's sign page anyway, the sign is recorded
    /// as ignored and the provider's now-live agreement is unsigned too; nothing is charged.
    async fn a_sign_that_lands_after_termination_is_unsigned_at_the_provider(db) {
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        let (status, created) = h.post("/v1/agreements", &json!({ "user_id": "user-late", "plan": "svip_monthly" }), None).await;
        assert_eq!(status, 201, "{created}");
        let id = created["agreement"]["id"].as_str().unwrap().to_owned();
        let external = created["agreement"]["external_agreement_no"].as_str().unwrap().to_owned();
        let qid = quote_id(&h, &id).await;
        let code = one_time_code(&h, &id, "user-late").await;
        let (status, done) = terminate(&h, &id, &qid, json!({ "code": code })).await;
        assert_eq!(status, 200, "{done}");
        wait_for(&h, &id, "terminated", |a| a["state"] == "terminated").await;

        h.sandbox.sandbox.sign_agreement(created["sign"]["sign_request"].as_str().unwrap()).expect("signed late");
        let ended = wait_for(&h, &id, "the late sign unsigned", |a| {
            a["timeline"].as_array().is_some_and(|t| t.iter().any(|e| e["kind"] == "late_sign_unsigned"))
        })
        .await;
        assert_eq!(ended["state"], "terminated", "{ended}");
        let at_provider = h.sandbox.sandbox.agreement(&external).expect("the provider's agreement");
        assert_eq!(at_provider.status, zerodrop_sandbox::state::AgreementState::Stop, "unsigned at the provider");
        assert!(orders_of(&h, &id).await.is_empty(), "nothing charged");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// A user whose authenticator is enrolled but lost is never trapped: where the quote
    /// asks for TOTP, a one-time code sent through the user's own channel is accepted.
    async fn a_lost_authenticator_never_traps_a_one_time_code_is_accepted_instead(db) {
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        enrolled(&h, "user-lost").await;
        let id = signed(&h, "user-lost", "svip_monthly", true).await;
        let (status, quoted) = quote(&h, &id).await;
        assert_eq!(status, 201, "{quoted}");
        assert_eq!(quoted["quote"]["quote"]["verification"], "totp");
        let qid = quoted["quote"]["id"].as_str().unwrap().to_owned();
        let (status, body) = terminate(&h, &id, &qid, json!({ "code": "000000" })).await;
        refusal(status, &body, 422, "verification_failed");
        let code = one_time_code(&h, &id, "user-lost").await;
        let (status, done) = terminate(&h, &id, &qid, json!({ "code": code })).await;
        assert_eq!(status, 200, "{done}");
        wait_for(&h, &id, "terminated", |a| a["state"] == "terminated").await;
        h.audit_passes().await;
        h.stop().await;
    }
}
