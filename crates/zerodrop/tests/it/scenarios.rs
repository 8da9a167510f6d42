//! The stories zerodrop exists to end (paid but nothing arrived; stuck in processing) as
//! black-box tests against the running server and the sandbox provider, on SQLite and on
//! PostgreSQL.

use crate::support::{calm, fast, kinds, Harness};
use std::time::Duration;
use zerodrop_sandbox::faults::Faults;
use zerodrop_store::both_engines;

both_engines! {
    /// The provider charged, its notification never came; a query finds the
    /// payment and the diamonds arrive seconds later, exactly as if notified.
    async fn s01_lost_notification_is_found_by_query(db) {
        let h = Harness::start(db, Faults { drop_rate_pct: 100, ..calm() }, fast()).await;
        let created = h.order("li-ming", "diamonds_60").await;
        let order_no = created["order"]["order_no"].as_str().unwrap().to_owned();
        let charge = h.client.pay(&created).await.unwrap().expect("paid at the sandbox");
        let order = h.wait_for_status(&order_no, "delivered", Duration::from_secs(10)).await;
        assert_eq!(order["payment"]["source"], "query");
        assert_eq!(order["payment"]["trade_no"], charge.trade_no.as_str());
        assert!(kinds(&order).contains(&"payment_captured".to_owned()));
        let wallet = h.wallet("li-ming").await;
        assert_eq!(wallet["balances"][0]["currency"], "DIAMOND");
        assert_eq!(wallet["balances"][0]["balance"], 60);
        assert_eq!(wallet["balances"][0]["last_credit_order_no"], order_no.as_str());
        assert!(wallet["balances"][0]["ledger_entry_id"].as_i64().is_some());
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// Duplicated and out-of-order notifications (a stale WAIT_BUYER_PAY after the
    /// payment) deliver once; every copy is kept as evidence with its verdict.
    async fn s05_duplicate_and_reordered_notifications_deliver_once(db) {
        let faults = Faults { duplicate_rate_pct: 100, reorder_rate_pct: 100, delay_ms_max: 300, ..calm() };
        // No payment query within the test: every payment must be recorded by its
        // notification, however slowly the machine runs them.
        let h = Harness::start(db, faults, crate::support::notifications_only()).await;
        let mut order_nos = Vec::new();
        for i in 0..5 {
            let created = h.order(&format!("u{i}"), "diamonds_300").await;
            h.client.pay(&created).await.unwrap().expect("paid");
            order_nos.push(created["order"]["order_no"].as_str().unwrap().to_owned());
        }
        for no in &order_nos {
            h.wait_for_status(no, "delivered", Duration::from_secs(10)).await;
        }
        // Let every copy arrive, then check nothing moved twice.
        zerodrop::stack::eventually(Duration::from_secs(10), "all sends acknowledged", || async {
            let s = h.sandbox.sandbox.stats();
            Ok((s.sends_acknowledged >= 15).then_some(()))
        }).await.unwrap();
        for (i, no) in order_nos.iter().enumerate() {
            let order = h.client.order(no).await.unwrap();
            let k = kinds(&order);
            assert_eq!(k.iter().filter(|k| *k == "delivered").count(), 1, "{k:?}");
            assert_eq!(order["order"]["status"], "delivered");
            assert_eq!(h.wallet(&format!("u{i}")).await["balances"][0]["balance"], 300);
        }
        let mut conn = db.store.reader().await.unwrap();
        let verdicts = zerodrop_store::notifications::count_by_verdict(&mut conn).await.unwrap();
        let count = |v: &str| verdicts.iter().find(|(k, _)| k == v).map_or(0, |(_, n)| *n);
        assert_eq!(count("accepted"), 5);
        assert_eq!(count("duplicate"), 5);
        assert_eq!(count("ignored"), 5, "stale WAIT_BUYER_PAY notifications change nothing");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// SVIP purchases stack after the current end, and the memberships
    /// endpoint says exactly when the plan ends and which orders added which days.
    async fn s11_membership_purchases_stack(db) {
        let h = Harness::start(db, calm(), fast()).await;
        let mut order_nos = Vec::new();
        for sku in ["svip_30d", "svip_90d"] {
            let created = h.order("vip", sku).await;
            h.client.pay(&created).await.unwrap().expect("paid");
            let no = created["order"]["order_no"].as_str().unwrap().to_owned();
            h.wait_for_status(&no, "delivered", Duration::from_secs(10)).await;
            order_nos.push(no);
        }
        let (status, body) = h.client.get("/v1/users/vip/memberships").await.unwrap();
        assert_eq!(status, 200);
        let svip = &body["memberships"][0];
        assert_eq!(svip["plan"], "svip");
        assert_eq!(svip["active"], true);
        let periods = svip["periods"].as_array().unwrap();
        assert_eq!(periods.len(), 2);
        assert_eq!(periods[0]["order_no"], order_nos[0].as_str());
        assert_eq!(periods[0]["ends_at"], periods[1]["starts_at"], "the second period starts when the first ends");
        assert_eq!(svip["ends_at"], periods[1]["ends_at"]);
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// An order nobody pays is closed at the provider at expiry, asked once more, and
    /// only then marked expired; its timeline says so.
    async fn unpaid_order_expires_after_close_and_final_query(db) {
        let h = Harness::start(db, calm(), fast()).await;
        let created = h.order("u", "diamonds_60").await;
        let no = created["order"]["order_no"].as_str().unwrap();
        let order = h.wait_for_status(no, "expired", Duration::from_secs(15)).await;
        let k = kinds(&order);
        assert!(k.contains(&"provider_queried".to_owned()), "{k:?}");
        assert!(k.contains(&"provider_close_requested".to_owned()), "{k:?}");
        // The user can no longer pay an expired order at the provider.
        assert!(h.client.pay(&created).await.unwrap().is_err());
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// A payment that lands after expiry is late, never ignored: delivered under
    /// a `deliver` policy, refunded through the provider at once under `refund`.
    async fn late_payments_follow_the_product_policy(db) {
        let faults = Faults { drop_rate_pct: 100, late_pay_grace_ms: 60_000, ..calm() };
        // The late sweep waits until the test has paid and then makes it due, so a slow
        // machine cannot run the one sweep before the payment exists.
        let tuning = zerodrop::stack::Tuning { late_sweep_schedule_secs: vec![600], ..fast() };
        let h = Harness::start(db, faults, tuning).await;
        let deliver = h.order("late-1", "diamonds_60").await; // policy: deliver
        let refund = h.order("late-2", "diamonds_6480").await; // policy: refund
        for created in [&deliver, &refund] {
            let no = created["order"]["order_no"].as_str().unwrap();
            h.wait_for_status(no, "expired", Duration::from_secs(15)).await;
            h.client.pay(created).await.unwrap().expect("the sandbox's lax clock still takes payment");
        }
        h.make_due("late_sweep").await;
        // Notifications are all lost: the late sweep after expiry finds both payments.
        let no = deliver["order"]["order_no"].as_str().unwrap();
        let order = h.wait_for_status(no, "delivered", Duration::from_secs(15)).await;
        assert_eq!(order["payment"]["late"], true);
        let no = refund["order"]["order_no"].as_str().unwrap();
        let order = h.wait_for_status(no, "refunded", Duration::from_secs(15)).await;
        assert_eq!(order["payment"]["late"], true);
        let kinds = kinds(&order);
        for kind in ["payment_captured", "refund_due", "refund_requested", "refund_succeeded"] {
            assert!(kinds.contains(&kind.to_owned()), "{kind} missing from {kinds:?}");
        }
        assert_eq!(order["refunds"][0]["origin"], "late_payment");
        assert_eq!(order["refunds"][0]["amount"], "648.00");
        // The provider's own books show the money going back, under our request number.
        let refunds = h.sandbox.sandbox.refunds();
        assert_eq!(refunds.len(), 1);
        assert_eq!(refunds[0].request_no, order["refunds"][0]["request_no"].as_str().unwrap());
        assert_eq!(refunds[0].amount_minor, 64_800);
        assert!(h.wallet("late-2").await["balances"].as_array().unwrap().is_empty(), "nothing delivered");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// The provider down: queries fail during the outage and are retried; the
    /// payment is found once the gateway is back, and delivered exactly once.
    async fn s21_provider_outage_delays_but_never_drops(db) {
        // The gateway is down from before the order until a query has failed (paying at
        // the sandbox does not go through the gateway).
        let down = Faults { drop_rate_pct: 100, gateway_down_until_ms: i64::MAX, ..calm() };
        let h = Harness::start(db, down, fast()).await;
        let created = h.order("li-ming", "diamonds_980").await;
        h.client.pay(&created).await.unwrap().expect("paid");
        let no = created["order"]["order_no"].as_str().unwrap();
        zerodrop::stack::eventually(Duration::from_secs(20), "a query to fail", || async {
            let order = h.client.order(no).await?;
            Ok(order["timeline"].as_array().and_then(|t| t.iter().find(|e| e["kind"] == "provider_queried")).map(|_| ()))
        })
        .await
        .unwrap();
        let up = Faults { gateway_down_until_ms: 0, ..h.sandbox.sandbox.faults() };
        h.sandbox.sandbox.set_faults(up);
        let order = h.wait_for_status(no, "delivered", Duration::from_secs(20)).await;
        let answers: Vec<String> = order["timeline"].as_array().unwrap().iter()
            .filter(|e| e["kind"] == "provider_queried")
            .map(|e| e["data"]["answer"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert!(answers.iter().any(|a| a.contains("unreachable") || a.contains("HTTP 503")), "{answers:?}");
        assert_eq!(h.wallet("li-ming").await["balances"][0]["balance"], 980);
        h.audit_passes().await;
        h.stop().await;
    }
}

/// A signed payment notification whose provider payment time is `paid_ago_ms` in the past.
fn paid_earlier(h: &Harness, order_no: &str, trade_no: &str, amount: &str, paid_ago_ms: i64) -> Vec<u8> {
    let paid_at = zerodrop_providers::alipay::clock::format_cst(zerodrop_store::now_ms() - paid_ago_ms);
    h.notification(order_no, trade_no, amount, |f| crate::support::set(f, "gmt_payment", &paid_at))
}

both_engines! {
    /// Compensation for internal goods: the user paid a minute ago, the notification was lost and
    /// zerodrop learns of it only now, past the 10 s deadline. The diamonds and the SVIP
    /// days arrive with the product's compensation (10% more diamonds; 3 more days), once,
    /// whatever replays follow; a payment learned of in time gets none.
    async fn s12_payments_learned_late_are_delivered_with_compensation(db) {
        let quiet = Faults { drop_rate_pct: 100, ..calm() };
        let tuning = zerodrop::stack::Tuning { query_schedule_secs: vec![500], ..crate::support::goods(None) };
        let h = Harness::start(db, quiet, tuning).await;

        let created = h.order("late-pack", "diamonds_comp").await;
        let no = created["order"]["order_no"].as_str().unwrap().to_owned();
        let body = paid_earlier(&h, &no, "T-late-pack", "30.00", 60_000);
        assert_eq!(h.post_notification("sandbox", body.clone()).await, (200, "success".into()));
        assert_eq!(h.post_notification("sandbox", body).await, (200, "success".into()), "a replay");
        let order = h.client.order(&no).await.unwrap();
        assert_eq!(order["order"]["status"], "delivered");
        assert_eq!(crate::support::count(&order, "compensated"), 1, "{:?}", kinds(&order));
        assert_eq!(h.wallet("late-pack").await["balances"][0]["balance"], 330, "300 and 10% for the wait");

        let created = h.order("late-vip", "svip_comp").await;
        let no = created["order"]["order_no"].as_str().unwrap().to_owned();
        let body = paid_earlier(&h, &no, "T-late-vip", "30.00", 60_000);
        assert_eq!(h.post_notification("sandbox", body).await, (200, "success".into()));
        let order = h.client.order(&no).await.unwrap();
        assert_eq!(crate::support::count(&order, "compensated"), 1, "{:?}", kinds(&order));
        let delivered = order["timeline"].as_array().unwrap().iter().find(|e| e["kind"] == "delivered").unwrap();
        let period_end_ms = delivered["data"]["ends_at_ms"].as_i64().unwrap();
        let (status, body) = h.client.get("/v1/users/late-vip/memberships").await.unwrap();
        assert_eq!(status, 200);
        let three_days_ms = 3 * zerodrop_domain::membership::DAY_MS;
        assert_eq!(body["memberships"][0]["ends_at"], zerodrop_server::http::json::rfc3339(period_end_ms + three_days_ms));

        // Learned of in time: delivered, nothing extra.
        let created = h.order("on-time", "diamonds_comp").await;
        let no = created["order"]["order_no"].as_str().unwrap().to_owned();
        let body = paid_earlier(&h, &no, "T-on-time", "30.00", 2_000);
        assert_eq!(h.post_notification("sandbox", body).await, (200, "success".into()));
        let order = h.client.order(&no).await.unwrap();
        assert_eq!(order["order"]["status"], "delivered");
        assert_eq!(crate::support::count(&order, "compensated"), 0);
        assert_eq!(h.wallet("on-time").await["balances"][0]["balance"], 300);
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// A payment made after the order expired is the payer's delay: delivered by the late
    /// payment policy, past its deadline, and never compensated.
    async fn late_payments_are_never_compensated(db) {
        let quiet = Faults { drop_rate_pct: 100, ..calm() };
        let tuning = zerodrop::stack::Tuning { ttl_secs: 2, query_schedule_secs: vec![500], ..crate::support::goods(None) };
        let h = Harness::start(db, quiet, tuning).await;
        let t0_ms = zerodrop_store::now_ms();
        let created = h.order("late-payer", "diamonds_comp").await;
        let no = created["order"]["order_no"].as_str().unwrap().to_owned();
        h.wait_for_status(&no, "expired", Duration::from_secs(15)).await;
        // Paid a second after expiry by the provider's clock; heard of after the 10 s
        // deadline that runs from that payment.
        let paid_at_ms = t0_ms + 3_000;
        let heard_at_ms = paid_at_ms + 12_000;
        tokio::time::sleep(Duration::from_millis(u64::try_from(heard_at_ms - zerodrop_store::now_ms()).unwrap_or(0))).await;
        let body = paid_earlier(&h, &no, "T-late-payer", "30.00", zerodrop_store::now_ms() - paid_at_ms);
        assert_eq!(h.post_notification("sandbox", body).await, (200, "success".into()));
        let order = h.client.order(&no).await.unwrap();
        assert_eq!(order["order"]["status"], "delivered", "{:?}", kinds(&order));
        assert_eq!(order["payment"]["late"], true);
        assert_eq!(crate::support::count(&order, "compensated"), 0, "{:?}", kinds(&order));
        assert_eq!(h.wallet("late-payer").await["balances"][0]["balance"], 300);
        h.audit_passes().await;
        h.stop().await;
    }
}
