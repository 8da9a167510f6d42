//! A refund the provider refuses gives back, in the same transaction, what it took back
//! (docs/API.md, "Refunds never double"), and refund answers settle only the refund they
//! name. End to end on both engines.

use crate::refunds_never_double::{paid_out, refund, wait_refund};
use crate::support::{calm, count, goods, Harness};
use serde_json::{json, Value};
use std::time::Duration;
use zerodrop::stack::eventually;
use zerodrop_sandbox::faults::Faults;
use zerodrop_store::both_engines;

fn refused() -> Faults {
    Faults { refund_refused: true, ..calm() }
}

/// The open `refund_failed` item of one order.
async fn refund_failed_item(h: &Harness, order: &Value) -> Value {
    let id = order["order"]["id"].clone();
    eventually(Duration::from_secs(15), "a refund_failed item", || async {
        let (_, list) = h.client.get("/v1/attention?reason=refund_failed").await?;
        Ok(list["items"].as_array().and_then(|items| items.iter().find(|i| i["order_id"] == id).cloned()))
    })
    .await
    .unwrap()
}

fn event<'a>(order: &'a Value, kind: &str) -> &'a Value {
    let timeline = order["timeline"].as_array().unwrap();
    timeline.iter().find(|e| e["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in {timeline:?}"))
}

/// A refused full refund: the refund failed, the order is delivered again, the goods
/// restored, and a person holds the money at stake.
async fn refused_in_full(h: &Harness, no: &str, at_stake: i64) -> Value {
    let (status, body) = refund(h, no, json!({"reason": "refused"}), Some(&format!("refused-{no}"))).await;
    assert_eq!(status, 201, "{body}");
    wait_refund(h, no, 0, "failed").await;
    let order = h.wait_for_status(no, "delivered", Duration::from_secs(10)).await;
    assert_eq!(count(&order, "goods_restored"), 1, "{}", order["timeline"]);
    assert_eq!(refund_failed_item(h, &order).await["at_stake"]["amount_minor"], at_stake);
    assert!(paid_out(h, no).is_empty(), "nothing was paid out");
    order
}

both_engines! {
    /// Refused refunds give back what they took: wallet units (the write-off of units
    /// already spent reversed), membership days, the card key (its code shown again).
    async fn a_refused_refund_restores_the_goods(db) {
        let h = Harness::start(db, refused(), goods(None)).await;

        let no = h.paid("keeper", "diamonds_60").await;
        refused_in_full(&h, &no, 600).await;
        assert_eq!(h.wallet("keeper").await["balances"][0]["balance"], 60);

        let no = h.paid("spender", "diamonds_60").await;
        let spend = json!({"currency": "DIAMOND", "amount": 45, "to": "creator:streamer"});
        let (status, body) = h.post("/v1/users/spender/wallet/spend", &spend, Some("gift")).await;
        assert_eq!(status, 201, "{body}");
        let order = refused_in_full(&h, &no, 600).await;
        let taken = &event(&order, "goods_reclaimed")["data"];
        assert_eq!((taken["taken_back"].as_i64(), taken["already_spent_written_off"].as_i64()), (Some(15), Some(45)));
        let restored = &event(&order, "goods_restored")["data"];
        assert_eq!((restored["given_back"].as_i64(), restored["loss_reversed"].as_i64()), (Some(15), Some(45)), "{restored}");
        assert_eq!(h.wallet("spender").await["balances"][0]["balance"], 15, "what was left before the refund");

        let no = h.paid("vip", "svip_30d").await;
        let (_, before) = h.client.get("/v1/users/vip/memberships").await.unwrap();
        let order = refused_in_full(&h, &no, 3000).await;
        assert_eq!(event(&order, "goods_restored")["data"]["days_given_back"], 30, "every day back");
        let (_, after) = h.client.get("/v1/users/vip/memberships").await.unwrap();
        assert_eq!(after["memberships"][0]["active"], true, "{after}");
        // The reclaim ended the plan; the days given back start again from the refusal,
        // so the plan ends no earlier than bought (later by the refund's short life).
        let bought_end = event(&order, "goods_reclaimed")["data"]["ends_at_ms"].as_i64().unwrap() + 30 * 86_400_000;
        let late = event(&order, "goods_restored")["data"]["ends_at_ms"].as_i64().unwrap() - bought_end;
        assert!((0..60_000).contains(&late), "{late} ms: {before} {after}");
        assert!(after["memberships"][0]["ends_at"].as_str() >= before["memberships"][0]["ends_at"].as_str());

        h.import_keys("card_50", &["KEEP-ME-1"]).await;
        let no = h.paid("player", "card_50").await;
        let order = refused_in_full(&h, &no, 5000).await;
        assert_eq!(order["delivery"]["state"], "allocated", "{}", order["delivery"]);
        assert_eq!(order["delivery"]["code"], "KEEP-ME-1");

        // A refused partial refund gives its share back too, and leaves the order delivered.
        let no = h.paid("halver", "diamonds_60").await;
        let (status, body) = refund(&h, &no, json!({"amount": "3.00", "reason": "half"}), Some("half")).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(h.wallet("halver").await["balances"][0]["balance"], 30);
        wait_refund(&h, &no, 0, "failed").await;
        assert_eq!(h.wallet("halver").await["balances"][0]["balance"], 60);
        let order = h.client.order(&no).await.unwrap();
        assert_eq!(order["order"]["status"], "delivered");
        assert_eq!(refund_failed_item(&h, &order).await["at_stake"]["amount_minor"], 300);
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// Refunds of 0.55 each take back 5 and then 6 units (floor(60 × 1.10 / 6.00) = 11 in
    /// all). When the first is refused after the second succeeded, the second alone covers
    /// floor(5.5) = 5 units: the user must hold 55, not 54.
    async fn a_refused_refund_before_a_successful_one_leaves_only_what_the_rest_cover(db) {
        let h = Harness::start(db, calm(), goods(None)).await;
        let no = h.paid("odd", "diamonds_60").await;
        let trade = h.sandbox.sandbox.charges().into_iter().find(|c| c.out_trade_no == no).unwrap().trade_no;
        // The gateway is down: both refunds stay unknown, each with its share taken.
        let down = zerodrop_store::now_ms() + 3_600_000;
        h.sandbox.sandbox.set_faults(Faults { gateway_down_until_ms: down, ..calm() });
        for key in ["odd-1", "odd-2"] {
            let (status, body) = refund(&h, &no, json!({"amount": "0.55", "reason": "piece"}), Some(key)).await;
            assert_eq!(status, 201, "{body}");
        }
        wait_refund(&h, &no, 1, "unknown").await;
        assert_eq!(h.wallet("odd").await["balances"][0]["balance"], 49);
        // The provider says the second went through (its notification); then it refuses
        // the first.
        let body = refund_notice(&h, &no, &trade, &format!("{no}R2"), "0.55");
        assert_eq!(h.post_notification("sandbox", body).await, (200, "success".into()));
        wait_refund(&h, &no, 1, "succeeded").await;
        h.sandbox.sandbox.set_faults(refused());
        h.make_due("refund").await;
        wait_refund(&h, &no, 0, "failed").await;
        assert_eq!(h.wallet("odd").await["balances"][0]["balance"], 55, "0.55 of 6.00 covers 5 of 60 units");
        h.audit_passes().await;
        h.stop().await;
    }
}

/// A signed refund notification as the sandbox sends it: the trade's refunded total
/// (`refund_fee`), when (`gmt_refund`), and our request number (`out_biz_no`).
fn refund_notice(h: &Harness, order_no: &str, trade_no: &str, request_no: &str, refunded_total: &str) -> Vec<u8> {
    let at = zerodrop_providers::alipay::clock::format_cst(zerodrop_store::now_ms());
    h.notification(order_no, trade_no, "6.00", |fields| {
        fields.push(("refund_fee".into(), refunded_total.into()));
        fields.push(("gmt_refund".into(), format!("{at}.000")));
        fields.push(("out_biz_no".into(), request_no.into()));
    })
}

both_engines! {
    /// A genuine, signed refund notification settles a refund only when order, trade and
    /// request number all name it: our request number on another trade, another order's
    /// request number on our trade, or ours on another order settle nothing.
    async fn refund_notifications_settle_only_the_refund_they_name(db) {
        let h = Harness::start(db, calm(), goods(None)).await;
        let a = h.paid("alice", "diamonds_60").await;
        let b = h.paid("bob", "diamonds_60").await;
        let trade_of = |no: &str| h.sandbox.sandbox.charges().into_iter().find(|c| c.out_trade_no == no).unwrap().trade_no;
        let (trade_a, trade_b) = (trade_of(&a), trade_of(&b));
        // The provider keeps both refunds processing and notifies nothing by itself.
        h.sandbox.sandbox.set_faults(Faults { refund_delay_ms: 3_600_000, drop_rate_pct: 100, ..calm() });
        for no in [&a, &b] {
            let (status, body) = refund(&h, no, json!({"reason": "both"}), Some(&format!("r-{no}"))).await;
            assert_eq!(status, 201, "{body}");
        }
        eventually(Duration::from_secs(15), "both refunds at the provider", || async {
            Ok((paid_out(&h, &a).len() + paid_out(&h, &b).len() == 2).then_some(()))
        })
        .await
        .unwrap();
        let (ra, rb) = (format!("{a}R1"), format!("{b}R1"));
        for (order_no, trade_no, request_no) in [
            (&a, trade_b.as_str(), ra.as_str()),     // our request number, another order's trade
            (&a, "2099010122001400000000000001", ra.as_str()), // a trade nobody recorded
            (&a, trade_a.as_str(), rb.as_str()),     // our trade, another order's request number
            (&b, trade_b.as_str(), ra.as_str()),     // our request number, on another order
        ] {
            let body = refund_notice(&h, order_no, trade_no, request_no, "6.00");
            assert_eq!(h.post_notification("sandbox", body).await, (200, "success".into()), "{order_no} {trade_no} {request_no}");
        }
        for no in [&a, &b] {
            let order = h.client.order(no).await.unwrap();
            assert_ne!(order["refunds"][0]["state"], "succeeded", "{no}: {}", order["refunds"]);
            assert_eq!((order["order"]["status"].clone(), count(&order, "refund_succeeded")), (json!("refunding"), 0));
        }
        // All three match: that one settles, and only that one.
        let body = refund_notice(&h, &a, &trade_a, &ra, "6.00");
        assert_eq!(h.post_notification("sandbox", body).await, (200, "success".into()));
        h.wait_for_status(&a, "refunded", Duration::from_secs(10)).await;
        assert_eq!(h.client.order(&b).await.unwrap()["order"]["status"], "refunding");

        h.sandbox.sandbox.finish_refunds();
        h.make_due("refund").await;
        h.wait_for_status(&b, "refunded", Duration::from_secs(15)).await;
        assert_eq!(paid_out(&h, &a).len() + paid_out(&h, &b).len(), 2, "one refund each");
        h.audit_passes().await;
        h.stop().await;
    }
}
