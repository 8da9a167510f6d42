//! Notification intake under bad input: forged, mismatched, malformed, oversized,
//! replayed and unknown. Each gets a clear refusal in the provider's protocol, is stored
//! as evidence, delivers nothing, and the server keeps serving.

use crate::support::{calm, kinds, set, Harness};
use std::time::Duration;
use zerodrop_providers::keys::RsaPrivateKey;
use zerodrop_sandbox::faults::Faults;
use zerodrop_store::both_engines;
use zerodrop_store::notifications;

/// Orders whose notifications the sandbox drops, so the test controls every notification.
fn quiet() -> Faults {
    Faults { drop_rate_pct: 100, ..calm() }
}

/// A change to a notification's fields before it is signed.
type Edit = fn(&mut Vec<(String, String)>);

async fn verdicts(db: &zerodrop_store::testing::TestDb, order_no: &str) -> Vec<(String, Option<String>)> {
    let mut conn = db.store.reader().await.unwrap();
    notifications::for_order_no(&mut conn, order_no).await.unwrap().into_iter().map(|n| (n.verdict, n.reason)).collect()
}

both_engines! {
    async fn a_genuine_notification_delivers_and_its_replay_changes_nothing(db) {
        let h = Harness::start(db, quiet(), crate::support::notifications_only()).await;
        let created = h.order("u1", "diamonds_60").await;
        let no = created["order"]["order_no"].as_str().unwrap();
        let body = h.notification(no, "T-1", "6.00", |_| {});
        assert_eq!(h.post_notification("sandbox", body.clone()).await, (200, "success".into()));
        // Replayed (the provider resending, or an attacker replaying): the same answer, no second delivery.
        assert_eq!(h.post_notification("sandbox", body).await, (200, "success".into()));
        let order = h.client.order(no).await.unwrap();
        assert_eq!(order["order"]["status"], "delivered");
        assert_eq!(kinds(&order).iter().filter(|k| *k == "delivered").count(), 1);
        assert_eq!(h.wallet("u1").await["balances"][0]["balance"], 60);
        // Two posts within one millisecond may store in either order: compare as a set.
        let mut v: Vec<String> = verdicts(db, no).await.into_iter().map(|(v, _)| v).collect();
        v.sort();
        assert_eq!(v, ["accepted", "duplicate"]);
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn forged_and_unsigned_notifications_are_refused_and_kept(db) {
        let h = Harness::start(db, quiet(), crate::support::notifications_only()).await;
        let created = h.order("u1", "diamonds_60").await;
        let no = created["order"]["order_no"].as_str().unwrap();
        // Signed with a key that is not the provider's.
        let forger = RsaPrivateKey::generate().unwrap();
        let fields = zerodrop::stack::payment_notification(no, "T-forged", "6.00");
        let forged = zerodrop::stack::sign_notification(&forger, &fields).unwrap();
        assert_eq!(h.post_notification("sandbox", forged.into_bytes()).await, (400, "fail".into()));
        // Genuine signature, then a field changed in transit.
        let mut tampered = String::from_utf8(h.notification(no, "T-2", "6.00", |_| {})).unwrap();
        tampered = tampered.replace("total_amount=6.00", "total_amount=0.01");
        assert_eq!(h.post_notification("sandbox", tampered.into_bytes()).await.0, 400);
        // No signature at all.
        let unsigned = serde_urlencoded::to_string(zerodrop::stack::payment_notification(no, "T-3", "6.00")).unwrap();
        assert_eq!(h.post_notification("sandbox", unsigned.into_bytes()).await.0, 400);

        let order = h.client.order(no).await.unwrap();
        assert_eq!(order["order"]["status"], "awaiting_payment", "nothing delivered");
        assert_eq!(order["order"]["attention"], false, "forgeries from anyone do not flag real orders");
        let v = verdicts(db, no).await;
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|(verdict, _)| verdict == "rejected"), "{v:?}");
        // Posts within one millisecond may store in either order: look at the reasons as a set.
        let codes: Vec<&str> = v.iter().filter_map(|(_, reason)| reason.as_deref()?.split(':').next()).collect();
        assert!(codes.contains(&"bad_signature") && codes.contains(&"missing_signature"), "{v:?}");
        h.stop().await;
    }
}

both_engines! {
    async fn genuine_but_mismatched_notifications_flag_the_order_and_deliver_nothing(db) {
        let h = Harness::start(db, quiet(), crate::support::notifications_only()).await;
        // A genuine payment of the wrong amount is money, not a forgery: it is recorded as
        // a charge and refunded (see charges.rs).
        let cases: [(&str, Edit, &str); 2] = [
            ("wrong app", |f| set(f, "app_id", "2021999999999999"), "wrong_app_id"),
            ("wrong seller", |f| set(f, "seller_id", "2088999999999999"), "wrong_seller_id"),
        ];
        for (what, change, reason) in cases {
            let created = h.order("u2", "diamonds_60").await;
            let no = created["order"]["order_no"].as_str().unwrap();
            let body = h.notification(no, &format!("T-{what}"), "6.00", change);
            assert_eq!(h.post_notification("sandbox", body).await, (400, "fail".into()), "{what}");
            let order = h.client.order(no).await.unwrap();
            assert_eq!(order["order"]["status"], "awaiting_payment", "{what}: nothing delivered");
            assert_eq!(order["order"]["attention"], true, "{what}: a person must look");
            assert_eq!(order["order"]["attention_reason"], reason, "{what}");
            assert_eq!(verdicts(db, no).await[0].0, "rejected", "{what}");
        }
        assert!(h.wallet("u2").await["balances"].as_array().unwrap().is_empty());
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn malformed_oversized_and_unknown_provider_requests_are_refused_and_kept(db) {
        let h = Harness::start(db, quiet(), crate::support::notifications_only()).await;
        assert_eq!(h.post_notification("sandbox", b"%%%not a form".to_vec()).await.0, 400);
        assert_eq!(h.post_notification("sandbox", b"a=1&a=2".to_vec()).await.0, 400);
        assert_eq!(h.post_notification("sandbox", vec![b'x'; 70 * 1024]).await.0, 413);
        assert_eq!(h.post_notification("nobody", b"a=1".to_vec()).await.0, 404);
        let mut conn = db.store.reader().await.unwrap();
        let verdicts = notifications::count_by_verdict(&mut conn).await.unwrap();
        assert_eq!(verdicts, vec![("rejected".to_owned(), 4)]);
        // …and the server keeps serving.
        let created = h.order("u3", "diamonds_60").await;
        let no = created["order"]["order_no"].as_str().unwrap();
        assert_eq!(h.post_notification("sandbox", h.notification(no, "T-ok", "6.00", |_| {})).await.0, 200);
        h.stop().await;
    }
}

both_engines! {
    /// A genuine payment for an order zerodrop does not know (lost, restored later)
    /// is parked, not acknowledged, and applied through the one payment path once the
    /// order reappears.
    async fn s03_notification_for_an_unknown_order_is_parked_then_resolved(db) {
        let h = Harness::start(db, quiet(), crate::support::notifications_only()).await;
        let order_no = zerodrop_domain::OrderNo::from_random(rand::random::<u64>());
        let body = h.notification(order_no.as_str(), "T-lost", "6.00", |_| {});
        assert_eq!(h.post_notification("sandbox", body).await, (503, "fail".into()), "not acknowledged");
        assert_eq!(verdicts(db, order_no.as_str()).await[0].0, "parked");

        // The order is restored (as an operator would from a backup).
        let catalog = zerodrop_domain::Catalog::default_catalog();
        let product = catalog.get("diamonds_60").unwrap().clone();
        let restored = zerodrop_store::orders::NewOrder {
            id: zerodrop_domain::OrderId::new(),
            order_no: order_no.clone(),
            user_id: zerodrop_domain::UserId::parse("restored").unwrap(),
            amount: product.total(1).unwrap(),
            product,
            quantity: 1,
            provider: "sandbox".into(),
            expires_at_ms: zerodrop_store::now_ms() + 600_000,
        };
        let mut tx = db.store.begin().await.unwrap();
        zerodrop_store::orders::insert(&mut tx, &restored, "restore", zerodrop_store::now_ms()).await.unwrap().unwrap();
        tx.commit().await.unwrap();

        let order = h.wait_for_status(order_no.as_str(), "delivered", Duration::from_secs(15)).await;
        assert_eq!(order["payment"]["source"], "parked");
        assert_eq!(verdicts(db, order_no.as_str()).await[0].0, "resolved");
        assert_eq!(h.wallet("restored").await["balances"][0]["balance"], 60);
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// The other ending: a parked notification whose order never appears. Its money was
    /// recorded as an `unknown_order` charge when it arrived; when the park window ends
    /// the charge is refunded. Here the provider refuses that refund (it never held this
    /// trade), so a person gets an item with the money at stake and a clock: the audit
    /// passes while the clock runs, fails once it has run out, and a dismiss is refused.
    async fn s03_a_parked_notification_that_never_matches_is_refunded_or_goes_to_a_person(db) {
        let h = Harness::start_with(db, quiet(), crate::support::notifications_only(), |config| {
            config.charges.park_window_secs = 1;
        })
        .await;
        let order_no = zerodrop_domain::OrderNo::from_random(rand::random::<u64>());
        let body = h.notification(order_no.as_str(), "T-orphan", "6.00", |_| {});
        assert_eq!(h.post_notification("sandbox", body).await.0, 503, "parked, not acknowledged");
        let item = zerodrop::stack::eventually(Duration::from_secs(15), "an attention item", || async {
            let mut conn = db.store.reader().await?;
            let open = zerodrop_store::attention::list_open(&mut conn, 10).await?;
            Ok(open.into_iter().find(|i| i.charge_id.is_some()))
        }).await.unwrap();
        assert_eq!(item.reason, "refund_failed", "{item:?}");
        assert_eq!(item.at_stake_minor, 600, "the user's money is at stake");
        let mut conn = db.store.reader().await.unwrap();
        let charge = zerodrop_store::charges::get(&mut conn, item.charge_id.unwrap()).await.unwrap().unwrap();
        assert_eq!((charge.class.as_str(), charge.order_id.as_deref()), ("unknown_order", None));
        assert_eq!(verdicts(db, order_no.as_str()).await[0].0, "resolved", "ended by the window, still evidence");
        drop(conn);
        let options = zerodrop_store::audit::AuditOptions { park_window_ms: 1_000, ..zerodrop_store::audit::AuditOptions::new(0) };
        let report = zerodrop_store::audit::run(&db.store, &options, zerodrop_store::now_ms() + 1).await.unwrap();
        assert!(report.passed(), "a person has it, within the clock: {}", zerodrop::audit::render(&report));
        let later = zerodrop_store::now_ms() + 5 * 3_600_000;
        let report = zerodrop_store::audit::run(&db.store, &options, later).await.unwrap();
        let failed: Vec<&str> = report.checks.iter().filter(|c| c.violations > 0).map(|c| c.name).collect();
        assert!(failed.contains(&"attention_in_time") && failed.contains(&"charge_has_outcome"), "{failed:?}");
        let (status, body) = h.post(&format!("/v1/attention/{}/resolve", item.id),
            &serde_json::json!({ "action": "dismiss", "reason_code": "looked", "note": "n", "actor": "agent-1" }), Some("k1")).await;
        assert_eq!((status, crate::support::code(&body)), (409, "money_at_stake"), "{body}");
        h.stop().await;
    }
}

both_engines! {
    /// A genuine notification sent in GBK (`charset=GBK`, a Chinese subject and body in
    /// GBK bytes, signed over the GBK bytes with the sandbox's key) is accepted and
    /// delivers; it is stored as received and verifies again from storage.
    async fn a_correctly_signed_gbk_notification_is_accepted(db) {
        let faults = Faults { notify_in_gbk: true, ..calm() };
        let h = Harness::start(db, faults, crate::support::notifications_only()).await;
        let created = h.order("u1", "diamonds_60").await;
        let no = created["order"]["order_no"].as_str().unwrap().to_owned();
        assert!(created["order"]["title"].as_str().unwrap().contains("钻石"), "a subject that is not ASCII");
        h.client.pay(&created).await.unwrap().expect("paid at the sandbox");
        let order = h.wait_for_status(&no, "delivered", Duration::from_secs(15)).await;
        assert_eq!(order["payment"]["source"], "notification", "learned from the GBK notification itself");
        let mut conn = db.store.reader().await.unwrap();
        let stored = notifications::for_order_no(&mut conn, &no).await.unwrap();
        let accepted = stored.iter().find(|n| n.verdict == "accepted").expect("accepted");
        let body = String::from_utf8(accepted.body.clone()).unwrap();
        assert!(body.contains("charset=GBK") && body.contains("%D7%EA%CA%AF"), "GBK bytes, as received: {body}");
        drop(conn);
        let provider = h.server.app.provider("sandbox").unwrap().clone();
        let again = zerodrop_providers::verify_stored(provider.as_ref(), &accepted.headers, &accepted.body);
        assert_eq!(again.map(|n| n.order_no), Ok(no.clone()), "the stored evidence verifies again");
        h.audit_passes().await;
        h.stop().await;
    }
}
