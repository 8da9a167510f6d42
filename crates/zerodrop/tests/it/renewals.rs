//! Renewals, reminders and the message outbox (issue 11, part 3), over real HTTP against
//! the sandbox's agreements. Time moves by making jobs due (as `Harness::make_due` does):
//! a renewal scheduled a day before the period ends runs now, and its order is charged
//! now, so a test sees a month's renewal in seconds.

use crate::support::{calm, fast, Harness};
use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zerodrop::stack::{eventually, Tuning};
use zerodrop_domain::hold::HoldRules;
use zerodrop_domain::AgreementEvent;
use zerodrop_sandbox::faults::Faults;
use zerodrop_store::agreements;
use zerodrop_store::agreements::timeline::{self, NewAgreementEvent};
use zerodrop_store::both_engines;

const DAY_MS: i64 = 86_400_000;
const WAIT: Duration = Duration::from_secs(30);
/// A secret long enough for the configuration's check (32 bytes).
const WEBHOOK_SECRET: &str = "message-webhook-secret-0123456789abcdef";

/// The default catalog plus a plan that keeps its agreement after a lapse.
fn keep_catalog() -> String {
    format!(
        "{}\n[[plan]]\nid = \"svip_keep\"\ntitle = \"SVIP keep\"\nmembership = \"svip\"\ncurrency = \"CNY\"\n\n\
         [[plan.terms]]\nversion = 1\nprice = \"25.00\"\nperiod_days = 30\nlapse_policy = \"keep_agreement\"\n\
         how_to_terminate = {{ zh_cn = \"点击解约\", en = \"Tap End agreement\" }}\n",
        zerodrop_domain::catalog::DEFAULT_CATALOG_TOML
    )
}

async fn agreement(h: &Harness, id: &str) -> Value {
    let (status, body) = h.client.get(&format!("/v1/agreements/{id}")).await.expect("get");
    assert_eq!(status, 200, "{body}");
    body["agreement"].clone()
}

async fn wait_agreement(h: &Harness, id: &str, what: &str, test: impl Fn(&Value) -> bool) -> Value {
    eventually(WAIT, what, || async {
        let (_, body) = h.client.get(&format!("/v1/agreements/{id}")).await?;
        Ok(test(&body["agreement"]).then(|| body["agreement"].clone()))
    })
    .await
    .expect(what)
}

/// Signs `plan` for `user` at the sandbox and waits for its first period to be paid:
/// (agreement id, our external agreement number).
async fn signed(h: &Harness, user: &str, plan: &str) -> (String, String) {
    let (status, created) = h.post("/v1/agreements", &json!({ "user_id": user, "plan": plan }), None).await;
    assert_eq!(status, 201, "{created}");
    let id = created["agreement"]["id"].as_str().unwrap().to_owned();
    let external = created["agreement"]["external_agreement_no"].as_str().unwrap().to_owned();
    h.sandbox.sandbox.sign_agreement(created["sign"]["sign_request"].as_str().unwrap()).expect("signed");
    wait_agreement(h, &id, "the first period paid", |a| a["periods_paid"] == 1).await;
    (id, external)
}

fn timeline_kinds(agreement: &Value) -> Vec<String> {
    agreement["timeline"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

/// The user's messages as `GET /v1/users/{user}/messages` shows them (newest first).
async fn user_messages(h: &Harness, user: &str) -> Vec<Message> {
    let (status, body) = h.client.get(&format!("/v1/users/{user}/messages?limit=100")).await.expect("messages");
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body["messages"].clone()).expect("messages")
}

#[derive(Debug, serde::Deserialize)]
struct Message {
    kind: String,
    body: zerodrop_domain::Texts,
}

async fn messages_of_kind(h: &Harness, user: &str, kind: &str) -> Vec<Message> {
    user_messages(h, user).await.into_iter().filter(|m| m.kind == kind).collect()
}

/// (state, count) of the jobs of `kind`.
async fn job_states(h: &Harness, kind: &str) -> Vec<String> {
    let mut conn = h.server.app.store.reader().await.unwrap();
    sqlx::query_scalar::<_, String>("SELECT state FROM jobs WHERE kind = $1 ORDER BY id")
        .bind(kind)
        .fetch_all(&mut *conn)
        .await
        .unwrap()
}

/// Makes one renewal attempt due now (and no other period's).
async fn make_attempt_due(h: &Harness, id: &str, period_end_ms: i64, attempt: u32) {
    let mut tx = h.server.app.store.begin().await.unwrap();
    let key = format!("renew_agreement:{id}:{period_end_ms}:{attempt}");
    let sql = format!("UPDATE jobs SET run_at_ms = 0 WHERE dedupe_key = '{key}' AND state = 'queued'");
    zerodrop_store::raw_execute(&mut tx, &sql).await.unwrap();
    tx.commit().await.unwrap();
    h.server.app.wake();
}

/// Queues the finished jobs of `kind` again, due now.
async fn rerun_finished(h: &Harness, kind: &str) {
    let mut tx = h.server.app.store.begin().await.unwrap();
    let sql = format!("UPDATE jobs SET state = 'queued', run_at_ms = 0, attempts = 0, finished_at_ms = NULL WHERE kind = '{kind}' AND state = 'done'");
    zerodrop_store::raw_execute(&mut tx, &sql).await.unwrap();
    tx.commit().await.unwrap();
    h.server.app.wake();
}

async fn orders_under(h: &Harness, id: &str) -> usize {
    let mut conn = h.server.app.store.reader().await.unwrap();
    agreements::orders_of(&mut conn, id).await.unwrap().len()
}

/// Runs the renewal attempts (and expires their unpaid orders) until `done` holds.
async fn drive_until(h: &Harness, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(60), what, || async {
        h.make_due("renew_agreement").await;
        h.make_due("expire_order").await;
        h.make_due("lapse_agreement").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, body) = h.client.get(&format!("/v1/agreements/{id}")).await?;
        Ok(done(&body["agreement"]).then(|| body["agreement"].clone()))
    })
    .await
    .expect(what)
}

fn declining(external: &str) -> Faults {
    Faults { agreement_decline_nos: vec![external.to_owned()], ..calm() }
}

both_engines! {
    async fn a_renewal_is_charged_once_and_the_reminder_states_the_facts_once(db) {
        let h = Harness::start(db, calm(), fast()).await;
        let (id, _) = signed(&h, "user-r1", "svip_monthly").await;
        let first = agreement(&h, &id).await;
        let paid_until = first["paid_until_ms"].as_i64().unwrap();
        assert_eq!(job_states(&h, "renew_agreement").await.len(), 2, "the first period's, then the next one's");

        // The reminder, 3 days before: amount, charge date, terms version, the way out.
        h.make_due("remind_agreement").await;
        let reminders = eventually(WAIT, "the reminder", || async {
            let found = messages_of_kind(&h, "user-r1", "renewal_reminder").await;
            Ok((!found.is_empty()).then_some(found))
        }).await.unwrap();
        let body = &reminders[0].body;
        let charge_at = zerodrop_domain::texts::format_utc(paid_until - DAY_MS);
        for needle in ["25.00 CNY", charge_at.as_str(), "terms v1", "End agreement"] {
            assert!(body.en.contains(needle), "{needle}: {}", body.en);
        }
        assert!(body.zh_cn.contains("第 1 版") && body.zh_cn.contains("解约"), "{}", body.zh_cn);

        // The renewal: charged under the agreement, the membership extended one period.
        h.make_due("renew_agreement").await;
        let renewed = wait_agreement(&h, &id, "the second period paid", |a| a["periods_paid"] == 2).await;
        assert_eq!(renewed["paid_until_ms"].as_i64(), Some(paid_until + 30 * DAY_MS));
        // Run every finished renewal and reminder again (as after a crash before their
        // outcome was recorded): nothing more is charged or said.
        rerun_finished(&h, "renew_agreement").await;
        rerun_finished(&h, "remind_agreement").await;
        // The membership's own reminder stays quiet while the agreement renews it.
        h.make_due("remind_membership").await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let after = agreement(&h, &id).await;
        assert_eq!(after["periods_paid"], 2, "charged once");
        assert_eq!(orders_under(&h, &id).await, 2);
        assert_eq!(messages_of_kind(&h, "user-r1", "renewal_reminder").await.len(), 1, "once per period");
        let (status, memberships) = h.client.get("/v1/users/user-r1/memberships").await.unwrap();
        assert_eq!(status, 200);
        assert!(memberships.to_string().contains("svip"), "{memberships}");
        assert!(messages_of_kind(&h, "user-r1", "expiry_reminder").await.is_empty(), "it renews: no expiry to announce");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn a_declined_renewal_is_retried_then_paid(db) {
        let h = Harness::start(db, calm(), fast()).await;
        let (id, external) = signed(&h, "user-r2", "svip_monthly").await;
        h.sandbox.sandbox.set_faults(declining(&external));
        let failed = drive_until(&h, &id, "a failed attempt", |a| timeline_kinds(a).contains(&"charge_failed".to_owned())).await;
        assert_eq!(failed["state"], "active", "the membership is kept during the grace");
        let told = messages_of_kind(&h, "user-r2", "charge_failed").await;
        assert_eq!(told.len(), 1);
        assert!(told[0].body.en.contains("try again"), "{}", told[0].body.en);
        // The balance is back: the retry pays.
        h.sandbox.sandbox.set_faults(calm());
        let paid = drive_until(&h, &id, "the retry paid", |a| a["periods_paid"].as_i64() >= Some(2)).await;
        assert_eq!(paid["state"], "active");
        let kinds = timeline_kinds(&paid);
        assert!(kinds.iter().filter(|k| *k == "period_paid").count() >= 2, "{kinds:?}");
        assert_eq!(kinds.iter().filter(|k| *k == "charge_failed").count(), 1, "{kinds:?}");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn declined_to_the_end_the_membership_lapses_and_the_agreement_ends_or_stays_by_policy(db) {
        let tuning = Tuning { catalog_toml: Some(keep_catalog()), ..fast() };
        let h = Harness::start(db, calm(), tuning).await;
        let (ended, ended_no) = signed(&h, "user-r3", "svip_monthly").await;
        let (kept, kept_no) = signed(&h, "user-r4", "svip_keep").await;
        let kept_until = agreement(&h, &kept).await["paid_until_ms"].as_i64().unwrap();
        h.sandbox.sandbox.set_faults(Faults { agreement_decline_nos: vec![ended_no, kept_no], ..calm() });

        // Terminate policy: three attempts fail, then the grace runs out.
        let lapsed = drive_until(&h, &ended, "terminated by the lapse", |a| a["mode"] == "expired").await;
        assert_eq!(lapsed["mode"], "expired", "{lapsed}");
        let kinds = timeline_kinds(&lapsed);
        assert_eq!(kinds.iter().filter(|k| *k == "charge_failed").count(), 3, "the charge and two retries: {kinds:?}");
        assert_eq!(messages_of_kind(&h, "user-r3", "charge_failed").await.len(), 3);
        let told = messages_of_kind(&h, "user-r3", "lapsed").await;
        assert!(told.len() == 1 && told[0].body.en.contains("terminated"), "{told:?}");
        assert_eq!(job_states(&h, "agreement_unsign").await.len(), 1, "the provider unsign follows");

        // Keep policy: the membership lapses, the agreement stays, the next renewal is set.
        let stayed = drive_until(&h, &kept, "lapsed, kept", |a| timeline_kinds(a).contains(&"lapsed".to_owned())).await;
        assert_eq!(stayed["state"], "active");
        let told = messages_of_kind(&h, "user-r4", "lapsed").await;
        let next = zerodrop_domain::texts::format_utc(kept_until + 30 * DAY_MS - DAY_MS);
        assert!(told.len() == 1 && told[0].body.en.contains(&next), "{told:?}");
        // Paid again: the next renewal charges and the membership comes back.
        h.sandbox.sandbox.set_faults(calm());
        let back = drive_until(&h, &kept, "renewed after the lapse", |a| a["periods_paid"].as_i64() >= Some(2)).await;
        assert_eq!(back["state"], "active");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn no_renewal_while_on_hold_nor_after_termination(db) {
        let h = Harness::start(db, calm(), fast()).await;
        let (id, external) = signed(&h, "user-r5", "svip_monthly").await;
        // A takeover signal holds the agreement for 3 seconds.
        {
            let now = zerodrop_store::now_ms();
            let hold = HoldRules::default().takeover(now, 3_000);
            let mut tx = h.server.app.store.begin().await.unwrap();
            let mut row = agreements::lock(&mut tx, &id).await.unwrap();
            let event = NewAgreementEvent::state(AgreementEvent::HoldPlaced, "test", json!({ "hold": hold }));
            timeline::append(&mut tx, &mut row, event, now).await.unwrap();
            tx.commit().await.unwrap();
        }
        h.make_due("renew_agreement").await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(orders_under(&h, &id).await, 1, "nothing charged while held");
        assert_eq!(agreement(&h, &id).await["state"], "paused");
        // At the unlock time the attempt runs again by itself, and charges.
        let renewed = wait_agreement(&h, &id, "charged after the unlock", |a| a["periods_paid"] == 2).await;
        assert!(timeline_kinds(&renewed).contains(&"hold_released".to_owned()));
        h.audit_passes().await;

        // The user ends it in the provider's app: no renewal after that.
        h.sandbox.sandbox.user_unsign(&external).expect("unsigned");
        wait_agreement(&h, &id, "terminated", |a| a["state"] == "terminated").await;
        h.make_due("renew_agreement").await;
        h.make_due("remind_agreement").await;
        h.make_due("remind_membership").await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(orders_under(&h, &id).await, 2, "no charge after termination");
        assert_eq!(messages_of_kind(&h, "user-r5", "agreement_terminated").await.len(), 1);
        let expiry = messages_of_kind(&h, "user-r5", "expiry_reminder").await;
        assert_eq!(expiry.len(), 1, "the membership's end is announced, without a renewal");
        assert!(messages_of_kind(&h, "user-r5", "renewal_reminder").await.is_empty());
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn an_agreement_gone_at_the_provider_ends_provider_side_without_a_charge(db) {
        let h = Harness::start(db, calm(), fast()).await;
        let (id, external) = signed(&h, "user-r6", "svip_monthly").await;
        // The user unsigns in the app and the notification is lost.
        h.sandbox.sandbox.set_faults(Faults { drop_rate_pct: 100, ..calm() });
        h.sandbox.sandbox.user_unsign(&external).expect("unsigned");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(agreement(&h, &id).await["state"], "active", "zerodrop has not heard");
        h.make_due("renew_agreement").await;
        let ended = wait_agreement(&h, &id, "ended provider side", |a| a["state"] == "terminated").await;
        assert_eq!(ended["mode"], "provider_side");
        assert_eq!(orders_under(&h, &id).await, 1, "the agreement was queried first: no charge");
        assert_eq!(messages_of_kind(&h, "user-r6", "agreement_terminated").await.len(), 1);
        h.audit_passes().await;
        h.stop().await;
    }
}

/// What the test's webhook received: (headers, body).
type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn webhook() -> (String, Received) {
    let received: Received = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/messages",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/messages", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

both_engines! {
    async fn the_webhook_receives_each_message_signed_like_external_deliveries(db) {
        let (url, received) = webhook().await;
        let h = Harness::start_with(db, calm(), fast(), |config| {
            config.messages.webhook_url = Some(url.clone());
            config.messages.webhook_secret = Some(zerodrop_domain::Secret::new(WEBHOOK_SECRET.to_owned()));
        })
        .await;
        let (id, _) = signed(&h, "user-r7", "svip_monthly").await;
        h.make_due("remind_agreement").await;
        let got = eventually(WAIT, "the reminder at the webhook", || async {
            Ok(received.lock().unwrap().first().cloned())
        }).await.unwrap();
        let (headers, body) = got;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let now_secs = zerodrop_store::now_ms() / 1000;
        zerodrop_server::flows::endpoint::verify(WEBHOOK_SECRET, header("x-zerodrop-timestamp"), header("x-zerodrop-signature"), &body, now_secs)
            .expect("signed like external deliveries");
        let message: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((message["user_id"].as_str(), message["kind"].as_str()), (Some("user-r7"), Some("renewal_reminder")));
        assert!(message["body"]["en"].as_str().unwrap().contains("25.00 CNY"));
        assert_eq!(header("idempotency-key"), Some(format!("message:{}", message["id"]).as_str()));
        assert!(!String::from_utf8_lossy(&body).contains(WEBHOOK_SECRET));
        let _ = id;
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn a_message_never_delivered_ends_in_attention_and_stays_readable(db) {
        // A webhook nobody listens on.
        let dead = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            format!("http://{}/messages", listener.local_addr().unwrap())
        };
        let h = Harness::start_with(db, calm(), fast(), |config| {
            config.messages.webhook_url = Some(dead.clone());
            config.messages.webhook_secret = Some(zerodrop_domain::Secret::new(WEBHOOK_SECRET.to_owned()));
            config.messages.attempts_max = 3;
        })
        .await;
        signed(&h, "user-r8", "svip_monthly").await;
        h.make_due("remind_agreement").await;
        eventually(WAIT, "the delivery in attention", || async {
            h.make_due("deliver_message").await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok((job_states(&h, "deliver_message").await == ["attention"]).then_some(()))
        }).await.unwrap();
        let mut conn = h.server.app.store.reader().await.unwrap();
        let items: Vec<(String, i64)> = sqlx::query_as("SELECT reason, due_at_ms FROM attention_items")
            .fetch_all(&mut *conn).await.unwrap();
        drop(conn);
        assert!(items.iter().any(|(reason, due)| reason == "deliver_message_exhausted" && *due > 0), "{items:?}");
        assert_eq!(messages_of_kind(&h, "user-r8", "renewal_reminder").await.len(), 1, "still readable");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn an_unknown_outcome_is_waited_for_never_counted_as_a_failure(db) {
        let h = Harness::start(db, calm(), fast()).await;
        let (id, _) = signed(&h, "user-r9", "svip_monthly").await;
        let paid_until = agreement(&h, &id).await["paid_until_ms"].as_i64().unwrap();
        // The provider answers "processing" and pays 1.5 s later (notified then).
        h.sandbox.sandbox.set_faults(Faults { agreement_charge_processing_pct: 100, agreement_charge_settle_ms: 1_500, ..calm() });
        h.make_due("renew_agreement").await;
        eventually(WAIT, "the renewal order", || async { Ok((orders_under(&h, &id).await == 2).then_some(())) }).await.unwrap();
        assert_eq!(agreement(&h, &id).await["periods_paid"], 1, "not paid yet, not failed either");
        // The attempt looks again once the order has its outcome: the period is recorded.
        let renewed = eventually(WAIT, "the period recorded", || async {
            make_attempt_due(&h, &id, paid_until, 0).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (_, body) = h.client.get(&format!("/v1/agreements/{id}")).await?;
            Ok((body["agreement"]["periods_paid"] == 2).then(|| body["agreement"].clone()))
        }).await.unwrap();
        assert!(!timeline_kinds(&renewed).contains(&"charge_failed".to_owned()));
        assert_eq!(orders_under(&h, &id).await, 2, "no second charge while the first was unknown");
        assert!(messages_of_kind(&h, "user-r9", "charge_failed").await.is_empty());
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn a_membership_bought_once_is_reminded_before_it_ends(db) {
        let h = Harness::start(db, calm(), fast()).await;
        h.paid("user-m1", "svip_30d").await;
        eventually(WAIT, "the reminder scheduled", || async {
            Ok((job_states(&h, "remind_membership").await == ["queued"]).then_some(()))
        }).await.unwrap();
        h.make_due("remind_membership").await;
        let told = eventually(WAIT, "the expiry reminder", || async {
            let found = messages_of_kind(&h, "user-m1", "expiry_reminder").await;
            Ok((!found.is_empty()).then_some(found))
        }).await.unwrap();
        assert!(told[0].body.en.contains("Nothing will be charged") && told[0].body.zh_cn.contains("不会自动扣款"), "{told:?}");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn an_agreement_past_its_validity_at_the_provider_ends_expired_without_a_charge(db) {
        // Agreements signed now are valid 3 s at the provider (then refused, silently).
        let h = Harness::start(db, Faults { agreement_valid_ms: 3_000, ..calm() }, fast()).await;
        let (id, _) = signed(&h, "user-r10", "svip_monthly").await;
        tokio::time::sleep(Duration::from_millis(3_200)).await;
        h.make_due("renew_agreement").await;
        let ended = wait_agreement(&h, &id, "ended at its validity", |a| a["mode"] == "expired").await;
        assert_eq!(ended["mode"], "expired", "{ended}");
        assert_eq!(orders_under(&h, &id).await, 1, "nothing charged past the validity");
        assert_eq!(job_states(&h, "agreement_unsign").await.len(), 1, "the provider unsign follows");
        assert_eq!(messages_of_kind(&h, "user-r10", "termination_committed").await.len(), 1);
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn a_renewal_that_lands_after_termination_is_refunded_and_the_user_told_where_the_money_goes(db) {
        let h = Harness::start(db, calm(), fast()).await;
        let (id, external) = signed(&h, "user-r11", "svip_monthly").await;
        // The renewal is in flight (processing, paid 2 s later) when the user ends it in the app.
        h.sandbox.sandbox.set_faults(Faults { agreement_charge_processing_pct: 100, agreement_charge_settle_ms: 2_000, ..calm() });
        h.make_due("renew_agreement").await;
        eventually(WAIT, "the renewal order", || async { Ok((orders_under(&h, &id).await == 2).then_some(())) }).await.unwrap();
        h.sandbox.sandbox.user_unsign(&external).expect("unsigned");
        wait_agreement(&h, &id, "terminated", |a| a["state"] == "terminated").await;
        let told = eventually(WAIT, "the refund message", || async {
            let found = messages_of_kind(&h, "user-r11", "refund_arrival").await;
            Ok((!found.is_empty()).then_some(found))
        }).await.unwrap();
        assert!(told[0].body.en.contains("25.00 CNY") && told[0].body.en.contains("1–7 working days"), "{told:?}");
        let ended = agreement(&h, &id).await;
        assert_eq!(ended["periods_paid"], 1, "the late charge bought nothing: {ended}");
        assert!(timeline_kinds(&ended).contains(&"charge_refunded_after_termination".to_owned()));
        h.audit_passes().await;
        h.stop().await;
    }
}
