//! Agreements users can end (issue 11), over real HTTP against the sandbox: signing cites
//! the published terms; the provider's sign and unsign notifications move the agreement
//! (stored first, verified, applied, acknowledged after the commit); forged and
//! unknown-agreement notifications are refused and kept; duplicates are recorded no-ops.

use crate::support::{calm, code, Harness};
use serde_json::{json, Value};
use std::time::Duration;
use zerodrop::stack::{self, eventually};
use zerodrop_store::both_engines;

async fn get(h: &Harness, path: &str) -> (u16, Value) {
    h.client.get(path).await.expect("get")
}

async fn wait_state(h: &Harness, id: &str, state: &str) -> Value {
    eventually(Duration::from_secs(15), &format!("agreement {id} to be {state}"), || async {
        let (_, body) = h.client.get(&format!("/v1/agreements/{id}")).await?;
        Ok((body["agreement"]["state"] == state).then_some(body))
    })
    .await
    .expect("state reached")
}

async fn post_agreement_notification(h: &Harness, body: Vec<u8>) -> (u16, String) {
    let response = h
        .client
        .http
        .post(format!("{}/v1/providers/sandbox/agreements/notify", h.server.base_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("post");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

/// A signed `dut_user_sign` notification for `external_no`, as the sandbox merchant's.
fn sign_notice(h: &Harness, external_no: &str) -> Vec<u8> {
    let now = zerodrop_providers::alipay::clock::format_cst(zerodrop_store::now_ms());
    let fields: Vec<(String, String)> = [
        ("notify_time", now.clone()),
        ("notify_type", "dut_user_sign".into()),
        ("notify_id", format!("n{}", uuid::Uuid::new_v4().simple())),
        ("app_id", stack::APP_ID.into()),
        ("auth_app_id", stack::APP_ID.into()),
        ("charset", "utf-8".into()),
        ("version", "1.0".into()),
        ("sign_type", "RSA2".into()),
        ("status", "NORMAL".into()),
        ("agreement_no", "20260101700000000099".into()),
        ("external_agreement_no", external_no.into()),
        ("personal_product_code", "CYCLE_PAY_AUTH_P".into()),
        ("alipay_user_id", "2088000000000001".into()),
        ("sign_time", now.clone()),
        ("valid_time", now),
        ("invalid_time", "2115-02-01 00:00:00".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let key = h.sandbox.sandbox_key().expect("key");
    stack::sign_notification(&key, &fields).expect("sign").into_bytes()
}

both_engines! {
    async fn a_signed_agreement_cites_its_terms_and_ends_when_the_user_unsigns_in_the_app(db) {
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        let (status, terms) = get(&h, "/v1/plans/svip_monthly/terms").await;
        assert_eq!(status, 200, "{terms}");
        let current = terms["current_version"].as_u64().unwrap();
        let sha = terms["versions"].as_array().unwrap().last().unwrap()["sha256"].as_str().unwrap().to_owned();
        let (status, unknown) = get(&h, "/v1/plans/no_such_plan/terms").await;
        assert_eq!((status, code(&unknown)), (404, "unknown_plan"));

        let request = json!({ "user_id": "user-a", "plan": "svip_monthly" });
        let (status, created) = h.post("/v1/agreements", &request, Some("sign-1")).await;
        assert_eq!(status, 201, "{created}");
        let (_, again) = h.post("/v1/agreements", &request, Some("sign-1")).await;
        assert_eq!(again["agreement"]["id"], created["agreement"]["id"], "the same key, the same agreement");
        let agreement = &created["agreement"];
        let id = agreement["id"].as_str().unwrap().to_owned();
        assert_eq!(agreement["state"], "signing");
        assert_eq!((agreement["terms"]["version"].as_u64(), agreement["terms"]["sha256"].as_str()), (Some(current), Some(sha.as_str())));
        let sign_request = created["sign"]["sign_request"].as_str().unwrap();
        assert!(sign_request.contains("agreements%2Fnotify") || sign_request.contains("agreements/notify"), "{sign_request}");

        // The user signs in the provider's app: the sign notification makes it active.
        h.sandbox.sandbox.sign_agreement(sign_request).expect("signed at the sandbox");
        let shown = wait_state(&h, &id, "active").await;
        let shown = &shown["agreement"];
        assert!(shown["provider_agreement_no"].is_string(), "{shown}");
        assert!(!shown["sentence"]["zh_cn"].as_str().unwrap().is_empty() && !shown["sentence"]["en"].as_str().unwrap().is_empty());
        assert_eq!(shown["terms_cited"]["sha256"], sha.as_str());
        // The first period is charged under the agreement and extends the membership.
        let paid = eventually(Duration::from_secs(15), "the first period paid", || async {
            let (_, body) = h.client.get(&format!("/v1/agreements/{id}")).await?;
            Ok((body["agreement"]["periods_paid"] == 1).then_some(body))
        })
        .await
        .expect("first period");
        assert!(paid["agreement"]["paid_until_ms"].as_i64().unwrap() > zerodrop_store::now_ms() + 29 * 86_400_000);
        let (status, memberships) = get(&h, "/v1/users/user-a/memberships").await;
        assert_eq!(status, 200, "{memberships}");
        assert!(memberships.to_string().contains("svip"), "{memberships}");
        h.audit_passes().await;

        // The user ends it inside the provider's app: terminated, provider side.
        let external = shown["external_agreement_no"].as_str().unwrap().to_owned();
        h.sandbox.sandbox.user_unsign(&external).expect("unsigned at the sandbox");
        let ended = wait_state(&h, &id, "terminated").await;
        assert_eq!(ended["agreement"]["mode"], "provider_side", "{ended}");
        // The sign notification again (out of order, after the end): a recorded no-op.
        let (status, ack) = post_agreement_notification(&h, sign_notice(&h, &external)).await;
        assert_eq!((status, ack.as_str()), (200, "success"));
        let after = wait_state(&h, &id, "terminated").await;
        let kinds: Vec<_> = after["agreement"]["timeline"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
        assert_eq!(kinds, ["created", "sign_confirmed", "charge_started", "period_paid", "provider_unsigned", "notification_ignored"]);
        let (status, missing) = get(&h, "/v1/agreements/agr_nope").await;
        assert_eq!((status, code(&missing)), (404, "agreement_not_found"));
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// A forged notification is refused and kept in part, like any unverified refusal; a
    /// genuine one for an agreement zerodrop never made is refused and kept whole.
    async fn forged_and_unknown_agreement_notifications_are_refused_and_kept(db) {
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        let mut forged = sign_notice(&h, "ZDAunknown");
        forged.extend_from_slice(b"&memo=edited");
        let (_, ack) = post_agreement_notification(&h, forged).await;
        assert_ne!(ack, "success", "a forged notification is refused");
        let (_, ack) = post_agreement_notification(&h, sign_notice(&h, "ZDAunknown")).await;
        assert_ne!(ack, "success", "an agreement zerodrop never made is refused");
        let mut conn = h.server.app.store.reader().await.unwrap();
        let verdicts: Vec<String> =
            sqlx::query_scalar("SELECT verdict FROM agreement_notifications ORDER BY id").fetch_all(&mut *conn).await.unwrap();
        assert_eq!(verdicts, ["unknown"], "the genuine one kept whole, with its verdict");
        // The forged one is kept as every unverified refusal is: in part, prunable.
        let refused: Vec<(Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT refused_unverified, reason FROM notifications WHERE verdict = 'rejected'",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].0, Some(1));
        assert!(refused[0].1.as_deref().unwrap_or_default().starts_with("bad_signature"), "{refused:?}");
        drop(conn);
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn totp_is_enrolled_once_confirmed_by_a_code_and_a_replayed_code_is_refused(db) {
        use zerodrop_domain::totp::{base32_decode, totp_code, TotpAlgorithm, TOTP_DIGITS};
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        let (status, missing) = h.post("/v1/users/user-t/totp/confirm", &json!({ "code": "123456" }), None).await;
        assert_eq!((status, code(&missing)), (404, "totp_not_enrolled"));
        let (status, enrolled) = h.post("/v1/users/user-t/totp", &json!({}), None).await;
        assert_eq!(status, 201, "{enrolled}");
        let uri = enrolled["otpauth_uri"].as_str().unwrap();
        let secret = uri.split("secret=").nth(1).unwrap().split('&').next().unwrap();
        let secret = base32_decode(secret).unwrap();
        let (status, wrong) = h.post("/v1/users/user-t/totp/confirm", &json!({ "code": "000000" }), None).await;
        assert_eq!((status, code(&wrong)), (422, "verification_failed"));
        let now = zerodrop_store::now_ms();
        let right = totp_code(TotpAlgorithm::Sha1, &secret, now, TOTP_DIGITS);
        let (status, ok) = h.post("/v1/users/user-t/totp/confirm", &json!({ "code": right }), None).await;
        assert_eq!((status, &ok["confirmed"]), (200, &json!(true)), "{ok}");
        let (status, replay) = h.post("/v1/users/user-t/totp/confirm", &json!({ "code": right }), None).await;
        assert_eq!((status, code(&replay)), (422, "verification_failed"), "a replayed code is refused");
        let (status, again) = h.post("/v1/users/user-t/totp", &json!({}), None).await;
        assert_eq!((status, code(&again)), (409, "totp_already_enrolled"));
        let mut conn = h.server.app.store.reader().await.unwrap();
        let user = zerodrop_domain::UserId::parse("user-t").unwrap();
        let failures = zerodrop_store::agreements::verification::failures_since(&mut conn, &user, 0).await.unwrap();
        assert_eq!(failures.len(), 2, "the wrong code and the replay are counted");
        drop(conn);
        let (status, messages) = get(&h, "/v1/users/user-t/messages?limit=5").await;
        assert_eq!(status, 200, "{messages}");
        assert_eq!(messages["messages"], json!([]));
        h.stop().await;
    }
}
