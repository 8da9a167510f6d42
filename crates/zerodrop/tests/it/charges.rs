//! Every charge a provider confirms ends delivered or refunded, including the ones that
//! do not fit: a user who pays twice, a wrong amount, a payment for an order zerodrop
//! never issued. Real payments at the sandbox, real refunds back through it.

use crate::support::{calm, code, count, Harness};
use serde_json::{json, Value};
use std::time::Duration;
use zerodrop::stack::{eventually, Twist};
use zerodrop_domain::money::{Currency, Money};
use zerodrop_store::both_engines;

/// The sandbox's refunds of one trade.
fn refunds_of(h: &Harness, trade_no: &str) -> Vec<zerodrop_sandbox::state::RefundRecord> {
    h.sandbox.sandbox.refunds().into_iter().filter(|r| r.trade_no == trade_no).collect()
}

async fn wait_refunded_at_sandbox(h: &Harness, trade_no: &str) {
    eventually(Duration::from_secs(15), &format!("trade {trade_no} refunded at the sandbox"), || async {
        Ok((!refunds_of(h, trade_no).is_empty()).then_some(()))
    })
    .await
    .unwrap();
}

/// The charges zerodrop recorded for an order, from the database.
async fn charges_of(db: &zerodrop_store::testing::TestDb, order_id: &str) -> Vec<zerodrop_store::charges::ChargeRow> {
    let mut conn = db.store.reader().await.unwrap();
    let id = zerodrop_domain::OrderId::parse(order_id).unwrap();
    zerodrop_store::charges::for_order(&mut conn, id).await.unwrap()
}

/// Waits until every refund zerodrop holds is final.
async fn refunds_settle(db: &zerodrop_store::testing::TestDb) {
    eventually(Duration::from_secs(20), "every refund to be final", || async {
        let mut conn = db.store.reader().await?;
        let all = zerodrop_store::refunds::all(&mut conn).await?;
        Ok(all.iter().all(|r| r.state.is_final()).then_some(()))
    })
    .await
    .unwrap();
}

both_engines! {
    /// A user pays twice (and the second payment's notification comes ten times): the
    /// order is delivered once, the second trade is refunded in full once, automatically.
    async fn a_user_who_pays_twice_gets_the_second_payment_back(db) {
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        let created = h.order("twice", "diamonds_60").await;
        let no = created["order"]["order_no"].as_str().unwrap().to_owned();
        let first = h.client.pay(&created).await.unwrap().unwrap();
        h.wait_for_status(&no, "delivered", Duration::from_secs(15)).await;
        let second = h.client.pay_with(&created, Twist::SecondTrade).await.unwrap().unwrap();
        assert_ne!(first.trade_no, second.trade_no);
        wait_refunded_at_sandbox(&h, &second.trade_no).await;
        // The same second trade notified ten more times: nothing more happens.
        for _ in 0..10 {
            let body = h.notification(&no, &second.trade_no, "6.00", |_| {});
            assert_eq!(h.post_notification("sandbox", body).await, (200, "success".into()));
        }
        refunds_settle(db).await;
        let order = h.client.order(&no).await.unwrap();
        assert_eq!(order["order"]["status"], "delivered");
        assert_eq!(count(&order, "delivered"), 1);
        assert_eq!(count(&order, "charge_recorded"), 1);
        assert_eq!(count(&order, "charge_refund_succeeded"), 1, "{}", order["timeline"]);
        assert_eq!(h.wallet("twice").await["balances"][0]["balance"], 60, "delivered once");
        assert_eq!(order["charges"].as_array().map(Vec::len), Some(2), "{}", order["charges"]);
        let words = order["status_text"].as_str().unwrap_or_default();
        assert!(!words.contains("退款"), "the second payment's refund is not the order's: {words}");
        assert!(refunds_of(&h, &first.trade_no).is_empty(), "the first payment is the order's");
        let back = refunds_of(&h, &second.trade_no);
        assert_eq!((back.len(), back[0].amount_minor), (1, 600), "refunded in full, once: {back:?}");
        let charges = charges_of(db, order["order"]["id"].as_str().unwrap()).await;
        let classes: Vec<&str> = charges.iter().map(|c| c.class.as_str()).collect();
        assert_eq!(classes, ["matched", "duplicate_trade"]);
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// A payment of another amount: refunded in full, the order stays unpaid and is
    /// flagged with nothing at stake; a person dismisses the flag through the API, once.
    async fn an_amount_mismatch_is_refunded_and_the_order_stays_unpaid(db) {
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        let created = h.order("wrong", "diamonds_60").await;
        let no = created["order"]["order_no"].as_str().unwrap().to_owned();
        let paid = Twist::Amount(Money::new(1, Currency::Cny));
        let charge = h.client.pay_with(&created, paid).await.unwrap().unwrap();
        wait_refunded_at_sandbox(&h, &charge.trade_no).await;
        refunds_settle(db).await;
        let order = h.client.order(&no).await.unwrap();
        assert_eq!(order["order"]["status"], "awaiting_payment", "nothing delivered");
        assert_eq!((order["order"]["attention"].clone(), order["order"]["attention_reason"].clone()), (json!(true), json!("amount_mismatch")));
        assert!(h.wallet("wrong").await["balances"].as_array().unwrap().is_empty());
        assert_eq!(refunds_of(&h, &charge.trade_no)[0].amount_minor, 1, "the 0.01 paid goes back");
        h.audit_passes().await;

        let (status, list) = h.client.get("/v1/attention?reason=amount_mismatch").await.unwrap();
        assert_eq!(status, 200, "{list}");
        let item = list["items"][0].clone();
        assert_eq!((item["at_stake"]["amount_minor"].clone(), item["overdue"].clone()), (json!(0), json!(false)));
        let id = item["id"].as_i64().unwrap();
        let dismiss = json!({ "action": "dismiss", "reason_code": "refunded_automatically", "note": "the user paid 0.01 by mistake; it went back", "actor": "agent-7" });
        let path = format!("/v1/attention/{id}/resolve");
        let (status, first) = h.post(&path, &dismiss, Some("dismiss-1")).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(h.post(&path, &dismiss, Some("dismiss-1")).await, (200, first.clone()), "a replay answers the same");
        let refund = json!({ "action": "refund", "reason_code": "x", "note": "n", "actor": "agent-8" });
        let (status, body) = h.post(&path, &refund, Some("refund-1")).await;
        assert_eq!((status, code(&body)), (409, "attention_resolved"), "one item, one ending: {body}");
        let order = h.client.order(&no).await.unwrap();
        assert_eq!(order["order"]["attention"], false, "no open item left: the flag clears");
        assert_eq!(count(&order, "action_taken"), 1);
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// A payment naming an order zerodrop never issued: recorded at once as a charge, and
    /// refunded in full when the park window ends without the order appearing.
    async fn a_payment_for_an_unknown_order_is_refunded_after_the_park_window(db) {
        let h = Harness::start_with(db, calm(), crate::support::notifications_only(), |config| {
            config.charges.park_window_secs = 2;
        })
        .await;
        let created = h.order("stranger", "diamonds_60").await;
        let unknown = zerodrop_domain::OrderNo::from_random(rand::random::<u64>()).to_string();
        let charge = h.client.pay_with(&created, Twist::OrderNo(unknown.clone())).await.unwrap().unwrap();
        let recorded = eventually(Duration::from_secs(10), "the charge to be recorded", || async {
            let mut conn = db.store.reader().await?;
            Ok(zerodrop_store::charges::by_trade(&mut conn, "sandbox", &charge.trade_no).await?)
        })
        .await
        .unwrap();
        assert_eq!((recorded.class.as_str(), recorded.order_id.as_deref()), ("unknown_order", None));
        wait_refunded_at_sandbox(&h, &charge.trade_no).await;
        refunds_settle(db).await;
        assert_eq!(refunds_of(&h, &charge.trade_no).len(), 1);
        let order = h.client.order(created["order"]["order_no"].as_str().unwrap()).await.unwrap();
        assert_eq!(order["order"]["status"], "awaiting_payment", "the real order is untouched");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// The audit counts charges and clocks: a charge with no outcome fails it, an item past
    /// its clock fails it, and both pass once a person has acted.
    async fn the_audit_fails_on_a_charge_without_outcome_and_an_overdue_item_until_resolved(db) {
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        let created = h.order("audit", "diamonds_60").await;
        let no = created["order"]["order_no"].as_str().unwrap().to_owned();
        h.client.pay(&created).await.unwrap().unwrap();
        h.wait_for_status(&no, "delivered", Duration::from_secs(15)).await;
        // A second trade's refund that the provider refuses: money at stake, with a person.
        h.sandbox.sandbox.set_faults(zerodrop_sandbox::faults::Faults { refund_refused: true, ..calm() });
        let second = h.client.pay_with(&created, Twist::SecondTrade).await.unwrap().unwrap();
        let item: Value = eventually(Duration::from_secs(15), "the refused refund with a person", || async {
            let (_, list) = h.client.get("/v1/attention?reason=refund_failed").await?;
            Ok(list["items"].get(0).cloned())
        })
        .await
        .unwrap();
        let list = json!({ "items": [item.clone()] });
        assert_eq!(item["at_stake"]["amount_minor"], 600, "{list}");
        let options = zerodrop_store::audit::AuditOptions::new(3_600_000);
        let now = zerodrop_store::now_ms();
        assert!(zerodrop_store::audit::run(&db.store, &options, now).await.unwrap().passed(), "within its clock");
        let overdue = zerodrop_store::audit::run(&db.store, &options, now + 5 * 3_600_000).await.unwrap();
        let failed: Vec<&str> = overdue.checks.iter().filter(|c| c.violations > 0).map(|c| c.name).collect();
        assert_eq!(failed, ["charge_has_outcome", "attention_in_time"], "{}", zerodrop::audit::render(&overdue));
        assert_eq!(overdue.attention_overdue, 1);

        // A person refunds it again once the provider allows it: the charge ends.
        h.sandbox.sandbox.set_faults(calm());
        let refund = json!({ "action": "refund", "reason_code": "provider_unfrozen", "note": "asked again", "actor": "sup-1" });
        let (status, body) = h.post(&format!("/v1/attention/{}/resolve", item["id"]), &refund, Some("again")).await;
        assert_eq!(status, 200, "{body}");
        wait_refunded_at_sandbox(&h, &second.trade_no).await;
        refunds_settle(db).await;
        let later = zerodrop_store::audit::run(&db.store, &options, now + 5 * 3_600_000).await.unwrap();
        assert!(later.passed(), "{}", zerodrop::audit::render(&later));
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// Resolving is checked and idempotent: bad input gets a stable code and changes
    /// nothing; a hand delivery ends a paid order's item and the order is delivered once.
    async fn resolving_attention_refuses_bad_input_and_delivers_by_hand_once(db) {
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        let post = |path: String, body: Value, key: Option<&'static str>| {
            let h = &h;
            async move { h.post(&path, &body, key).await }
        };
        let ok = json!({ "action": "dismiss", "reason_code": "x", "note": "n", "actor": "a" });
        assert_eq!(code(&post("/v1/attention/999999/resolve".into(), ok.clone(), Some("k")).await.1), "attention_not_found");
        assert_eq!(code(&post("/v1/attention/abc/resolve".into(), ok.clone(), Some("k")).await.1), "attention_not_found");
        assert_eq!(code(&post("/v1/attention/1/resolve".into(), ok.clone(), None).await.1), "idempotency_key_required");
        for bad in [
            json!({ "action": "shrug", "reason_code": "x", "note": "n", "actor": "a" }),
            json!({ "action": "dismiss", "reason_code": "", "note": "n", "actor": "a" }),
            json!({ "action": "dismiss", "reason_code": "has space", "note": "n", "actor": "a" }),
            json!({ "action": "dismiss", "reason_code": "x", "note": "n".repeat(1_001), "actor": "a" }),
            json!({ "action": "deliver_by_hand", "reason_code": "x", "note": "n", "actor": "a" }),
            json!({ "action": "dismiss", "amount": "1.00", "reason_code": "x", "note": "n", "actor": "a" }),
            json!({ "action": "dismiss", "reason_code": "x", "note": "n", "actor": "a", "extra": 1 }),
        ] {
            let (status, body) = post("/v1/attention/1/resolve".into(), bad.clone(), Some("bad")).await;
            assert_eq!(status, 422, "{bad} -> {body}");
        }
        // No key, a forged key, and a flood of a body: refused before anything is read.
        let url = format!("{}/v1/attention/1/resolve", h.server.base_url);
        let anonymous = h.client.http.post(&url).header("idempotency-key", "k").json(&ok).send().await.unwrap();
        assert_eq!(anonymous.status().as_u16(), 401);
        let forged = h.client.http.get(format!("{}/v1/attention", h.server.base_url)).bearer_auth("zd_forged").send().await.unwrap();
        assert_eq!(forged.status().as_u16(), 401);
        let huge = json!({ "action": "dismiss", "reason_code": "x", "note": "n".repeat(70 * 1024), "actor": "a" });
        let (status, body) = post("/v1/attention/1/resolve".into(), huge, Some("huge")).await;
        assert_eq!((status, code(&body)), (413, "body_too_large"), "{body}");
        let (status, body) = h.client.get("/v1/attention?state=sideways").await.unwrap();
        assert_eq!((status, code(&body)), (422, "invalid_request"));
        let (status, _) = h.client.get("/v1/attention?limit=0").await.unwrap();
        assert_eq!(status, 422);

        // An order paid but stuck: a person delivers it by hand, once.
        let created = h.order("hand", "diamonds_60").await;
        let no = created["order"]["order_no"].as_str().unwrap().to_owned();
        let id = created["order"]["id"].as_str().unwrap().to_owned();
        h.client.pay(&created).await.unwrap().unwrap();
        h.wait_for_status(&no, "delivered", Duration::from_secs(15)).await;
        let (_, list) = h.client.get("/v1/attention").await.unwrap();
        assert!(list["items"].as_array().unwrap().is_empty(), "nothing to look at: {list}");
        // Flag the delivered order through a job-exhaustion-like raise, then try each action.
        let mut tx = db.store.begin().await.unwrap();
        let mut order = zerodrop_store::orders::lock(&mut tx, zerodrop_domain::OrderId::parse(&id).unwrap()).await.unwrap();
        let raised = zerodrop_store::events::NewEvent::new(
            zerodrop_domain::order::EventKind::AttentionRaised, zerodrop_domain::order::Actor::System, "test",
            json!({ "reason": "user_complaint" }));
        zerodrop_store::events::append(&mut tx, &mut order, raised, zerodrop_store::now_ms()).await.unwrap();
        tx.commit().await.unwrap();
        let (_, list) = h.client.get("/v1/attention?reason=user_complaint").await.unwrap();
        let item = list["items"][0]["id"].as_i64().unwrap();
        let path = format!("/v1/attention/{item}/resolve");
        let hand = json!({ "action": "deliver_by_hand", "delivered": "grant 77", "reason_code": "x", "note": "n", "actor": "a" });
        let (status, body) = post(path.clone(), hand, Some("hand")).await;
        assert_eq!((status, code(&body)), (409, "action_not_applicable"), "already delivered: {body}");
        let (status, body) = post(path.clone(), json!({ "action": "compensate", "reason_code": "x", "note": "n", "actor": "a" }), Some("comp")).await;
        assert_eq!((status, code(&body)), (409, "action_not_applicable"), "diamonds_60 has no compensation rule: {body}");
        let (status, body) = post(path.clone(), ok.clone(), Some("dismiss")).await;
        assert_eq!(status, 200, "nothing at stake on a delivered order: {body}");
        let order = h.client.order(&no).await.unwrap();
        assert_eq!((order["order"]["attention"].clone(), count(&order, "delivered")), (json!(false), 1));
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// A payment reported by another provider than the order's: refunded in full through
    /// the provider that took the money; the order stays unpaid and flagged.
    async fn a_payment_through_another_provider_is_refunded_there(db) {
        let silent = zerodrop_sandbox::faults::Faults { drop_rate_pct: 100, extra_trade_drop_rate_pct: 100, ..calm() };
        let h = Harness::start_with(db, silent, crate::support::notifications_only(), |config| {
            let mut other = config.providers[0].clone();
            other.name = "sandbox2".into();
            config.providers.push(other);
        })
        .await;
        let created = h.order("elsewhere", "diamonds_60").await;
        let no = created["order"]["order_no"].as_str().unwrap().to_owned();
        // A real trade at the provider, reported (genuinely signed) through the other name.
        let charge = h.client.pay_with(&created, Twist::SecondTrade).await.unwrap().unwrap();
        let body = h.notification(&no, &charge.trade_no, "6.00", |_| {});
        assert_eq!(h.post_notification("sandbox2", body).await, (200, "success".into()));
        wait_refunded_at_sandbox(&h, &charge.trade_no).await;
        refunds_settle(db).await;
        let order = h.client.order(&no).await.unwrap();
        assert_eq!(order["order"]["status"], "awaiting_payment");
        assert_eq!(order["order"]["attention_reason"], "provider_mismatch");
        let charges = charges_of(db, order["order"]["id"].as_str().unwrap()).await;
        assert_eq!((charges.len(), charges[0].class.as_str(), charges[0].provider.as_str()), (1, "provider_mismatch", "sandbox2"));
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// A person's refund racing the platform's own refund of the same order: one of them
    /// takes the money back, the other gets a clear refusal; nothing is refunded twice.
    async fn a_resolve_racing_a_merchant_refund_refunds_once(db) {
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        let created = h.order("race", "diamonds_60").await;
        let no = created["order"]["order_no"].as_str().unwrap().to_owned();
        let id = created["order"]["id"].as_str().unwrap().to_owned();
        let paid = h.client.pay(&created).await.unwrap().unwrap();
        h.wait_for_status(&no, "delivered", Duration::from_secs(15)).await;
        let mut tx = db.store.begin().await.unwrap();
        let mut order = zerodrop_store::orders::lock(&mut tx, zerodrop_domain::OrderId::parse(&id).unwrap()).await.unwrap();
        let raised = zerodrop_store::events::NewEvent::new(
            zerodrop_domain::order::EventKind::AttentionRaised, zerodrop_domain::order::Actor::System, "test",
            json!({ "reason": "user_complaint", "at_stake_minor": 600 }));
        zerodrop_store::events::append(&mut tx, &mut order, raised, zerodrop_store::now_ms()).await.unwrap();
        tx.commit().await.unwrap();
        let (_, list) = h.client.get("/v1/attention?reason=user_complaint").await.unwrap();
        let item = list["items"][0]["id"].as_i64().unwrap();
        let resolve = json!({ "action": "refund", "reason_code": "complaint", "note": "never arrived, says the user", "actor": "agent-2" });
        let merchant = json!({ "reason": "customer asked" });
        let (resolve_path, refund_path) = (format!("/v1/attention/{item}/resolve"), format!("/v1/orders/{no}/refunds"));
        let (a, b) = tokio::join!(
            h.post(&resolve_path, &resolve, Some("race-a")),
            h.post(&refund_path, &merchant, Some("race-b")),
        );
        let won = [a.0, b.0].iter().filter(|s| **s == 200 || **s == 201).count();
        assert_eq!(won, 1, "one refund wins: {a:?} {b:?}");
        let lost = if a.0 == 200 { &b.1 } else { &a.1 };
        assert!(["refund_in_progress", "nothing_left_to_refund"].contains(&code(lost)), "{lost}");
        wait_refunded_at_sandbox(&h, &paid.trade_no).await;
        refunds_settle(db).await;
        assert_eq!(refunds_of(&h, &paid.trade_no).len(), 1, "refunded once");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// A refund notice is also news of a payment: a trade zerodrop never heard of (its
    /// payment notifications lost) becomes a charge through the one payment path, and the
    /// refund nobody here asked for goes to a person.
    async fn a_refund_notice_for_a_trade_never_heard_of_records_its_charge(db) {
        let silent = zerodrop_sandbox::faults::Faults { drop_rate_pct: 100, ..calm() };
        let h = Harness::start(db, silent, crate::support::notifications_only()).await;
        let created = h.order("console", "diamonds_60").await;
        let no = created["order"]["order_no"].as_str().unwrap().to_owned();
        let paid = h.client.pay(&created).await.unwrap().unwrap();
        let body = h.notification(&no, &paid.trade_no, "6.00", |f| {
            f.push(("refund_fee".into(), "1.00".into()));
            f.push(("gmt_refund".into(), "2026-11-29 10:00:00.123".into()));
            f.push(("out_biz_no".into(), "CONSOLE-1".into()));
        });
        assert_eq!(h.post_notification("sandbox", body).await, (200, "success".into()));
        let order = h.wait_for_status(&no, "delivered", Duration::from_secs(10)).await;
        assert_eq!(order["charges"][0]["class"], "matched", "{}", order["charges"]);
        assert_eq!(order["order"]["attention_reason"], "refund_outside_zerodrop");
        h.audit_passes().await;
        h.stop().await;
    }
}
