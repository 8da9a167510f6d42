//! "Refunds never double" (docs/API.md), end to end on both engines: a refund whose outcome
//! is unknown, for minutes or for days, still counts against what can be refunded and is
//! settled only by the provider's answer; partial refunds never take back more than they
//! cover; timeouts are unknown, never failed.

use crate::support::{calm, code, count, goods, Harness};
use serde_json::{json, Value};
use std::time::Duration;
use zerodrop::stack::eventually;
use zerodrop_sandbox::faults::Faults;
use zerodrop_store::both_engines;

pub async fn refund(h: &Harness, order_no: &str, body: Value, key: Option<&str>) -> (u16, Value) {
    h.post(&format!("/v1/orders/{order_no}/refunds"), &body, key).await
}

/// Waits until the order's refund number `index` (oldest first) is in `state`.
pub async fn wait_refund(h: &Harness, order_no: &str, index: usize, state: &str) -> Value {
    eventually(Duration::from_secs(20), &format!("{order_no}'s refund {index} to be {state}"), || async {
        let order = h.client.order(order_no).await?;
        Ok((order["refunds"][index]["state"] == state).then_some(order))
    })
    .await
    .unwrap()
}

/// The sandbox's refunds of one order (its own books, not zerodrop's).
pub fn paid_out(h: &Harness, order_no: &str) -> Vec<zerodrop_sandbox::state::RefundRecord> {
    h.sandbox.sandbox.refunds().into_iter().filter(|r| r.out_trade_no == order_no).collect()
}

async fn attention(h: &Harness, query: &str) -> Vec<Value> {
    let (status, list) = h.client.get(&format!("/v1/attention?{query}")).await.unwrap();
    assert_eq!(status, 200, "{list}");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// The "three days" of the test below, compressed: a refund's birth is a sealed fact, so
/// the test waits out a short bound instead of moving the refund's clock.
const UNKNOWN_AFTER_SECS: i64 = 5;

both_engines! {
    /// The provider holds a full refund "processing" for three days: it becomes `unknown`
    /// with a `refund_unknown` item holding the money, no second refund can start in
    /// between (full or partial, under new keys), and when the provider's query finally
    /// says it succeeded it settles once and zerodrop ends the item.
    async fn a_refund_unknown_for_three_days_then_succeeding_is_never_refunded_twice(db) {
        let h = Harness::start_with(db, calm(), goods(None), |c| c.refunds.unknown_after_secs = UNKNOWN_AFTER_SECS).await;
        let no = h.paid("patient", "diamonds_60").await;
        // Processing for an hour, and no notifications: only the job's queries can learn
        // the outcome (the "three days" pass by waiting out a short bound, below).
        h.sandbox.sandbox.set_faults(Faults { refund_delay_ms: 3_600_000, drop_rate_pct: 100, ..calm() });
        let (status, body) = refund(&h, &no, json!({"reason": "never arrived"}), Some("first")).await;
        assert_eq!(status, 201, "{body}");
        let refund_id = body["refund"]["id"].as_str().unwrap().to_owned();
        eventually(Duration::from_secs(15), "the refund to reach the provider", || async {
            Ok((paid_out(&h, &no).len() == 1).then_some(()))
        })
        .await
        .unwrap();
        let order = h.client.order(&no).await.unwrap();
        assert_ne!(order["refunds"][0]["state"], "unknown", "not unknown before its bound: {}", order["refunds"]);
        assert!(attention(&h, "reason=refund_unknown").await.is_empty());

        tokio::time::sleep(Duration::from_millis(UNKNOWN_AFTER_SECS as u64 * 1000 + 200)).await;
        h.make_due("refund").await;
        let order = wait_refund(&h, &no, 0, "unknown").await;
        assert_eq!(order["order"]["status"], "refunding");
        let items = eventually(Duration::from_secs(15), "a refund_unknown item", || async {
            let items = attention(&h, "reason=refund_unknown").await;
            Ok((!items.is_empty()).then_some(items))
        })
        .await
        .unwrap();
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0]["at_stake"]["amount_minor"], 600, "{items:?}");
        assert_eq!(items[0]["detail"]["refund_id"], refund_id.as_str());
        // Asked again (the job keeps asking): still one item, one event.
        h.make_due("refund").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(attention(&h, "reason=refund_unknown").await.len(), 1);

        // No second refund while the first may have paid out, however it is asked.
        for (n, body) in [json!({"reason": "again"}), json!({"amount": "6.00", "reason": "again"}), json!({"amount": "1.00", "reason": "part"})].into_iter().enumerate() {
            let (status, answer) = refund(&h, &no, body.clone(), Some(&format!("second-{n}"))).await;
            assert!(
                matches!((status, code(&answer)), (409, "refund_in_progress" | "nothing_left_to_refund") | (422, "refund_exceeds_paid")),
                "{body} -> {status} {answer}"
            );
        }
        let order = h.client.order(&no).await.unwrap();
        assert_eq!(order["refunds"].as_array().unwrap().len(), 1, "{}", order["refunds"]);

        // The provider finishes it; the next query settles it.
        h.sandbox.sandbox.finish_refunds();
        h.make_due("refund").await;
        wait_refund(&h, &no, 0, "succeeded").await;
        let order = h.wait_for_status(&no, "refunded", Duration::from_secs(10)).await;
        assert_eq!(count(&order, "refund_succeeded"), 1);
        assert_eq!(count(&order, "refund_unknown"), 1, "{}", order["timeline"]);
        let books = paid_out(&h, &no);
        assert_eq!((books.len(), books[0].amount_minor), (1, 600), "refunded once: {books:?}");
        assert!(attention(&h, "reason=refund_unknown").await.is_empty(), "the item ended with the answer");
        let resolved = attention(&h, "reason=refund_unknown&state=resolved").await;
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0]["resolution"]["action"], "settled_by_provider", "{resolved:?}");
        assert_eq!(resolved[0]["resolution"]["actor"], "zerodrop");
        let (status, answer) = refund(&h, &no, json!({"reason": "after"}), Some("after")).await;
        assert_eq!((status, code(&answer)), (409, "nothing_left_to_refund"), "{answer}");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// A 60-unit pack paid 6.00, refunded in pieces under new keys: after each, the units
    /// taken back in total are floor(60 × refunded / paid), never more; a refund beyond
    /// what is left is refused; the last piece takes the rest.
    async fn partial_refunds_never_take_back_more_than_they_cover(db) {
        let h = Harness::start(db, calm(), goods(None)).await;
        let no = h.paid("splitter", "diamonds_60").await;
        let mut refunded = 0;
        let steps: [(&str, i64); 7] = [("1.00", 100), ("1.00", 100), ("1.00", 100), ("0.55", 55), ("0.55", 55), ("0.01", 1), ("0.07", 7)];
        for (n, (amount, minor)) in steps.into_iter().enumerate() {
            let key = format!("piece-{n}");
            let (status, body) = refund(&h, &no, json!({"amount": amount, "reason": "piece"}), Some(&key)).await;
            assert_eq!(status, 201, "{amount}: {body}");
            // The same key again is the same refund, never a second piece.
            let (again, replay) = refund(&h, &no, json!({"amount": amount, "reason": "piece"}), Some(&key)).await;
            assert_eq!((again, &replay["refund"]["id"]), (201, &body["refund"]["id"]));
            refunded += minor;
            let covered = 60 * refunded / 600;
            assert_eq!(h.wallet("splitter").await["balances"][0]["balance"], 60 - covered, "after {refunded} of 600 refunded");
        }
        let order = h.client.order(&no).await.unwrap();
        assert_eq!(order["refunds"].as_array().unwrap().len(), steps.len());
        let taken: i64 = order["timeline"].as_array().unwrap().iter()
            .filter(|e| e["kind"] == "goods_reclaimed")
            .map(|e| e["data"]["taken_back"].as_i64().unwrap())
            .sum();
        assert_eq!(taken, 60 * refunded / 600);

        // 4.18 refunded, 1.82 left: more is refused, the rest is a full refund of the rest.
        let (status, body) = refund(&h, &no, json!({"amount": "1.83", "reason": "too much"}), Some("over")).await;
        assert_eq!((status, code(&body)), (422, "refund_exceeds_paid"), "{body}");
        let (status, body) = refund(&h, &no, json!({"amount": "6.00", "reason": "too much"}), Some("over-2")).await;
        assert_eq!((status, code(&body)), (422, "refund_exceeds_paid"), "{body}");
        let (status, body) = refund(&h, &no, json!({"amount": "1.82", "reason": "the rest"}), Some("rest")).await;
        assert_eq!((status, body["refund"]["full"].clone()), (201, json!(true)), "{body}");
        assert_eq!(h.wallet("splitter").await["balances"][0]["balance"], 0, "the last piece takes the rest");
        let (status, body) = refund(&h, &no, json!({"amount": "0.01", "reason": "more"}), Some("more")).await;
        assert_eq!(status, 409, "{body}");
        assert!(matches!(code(&body), "nothing_left_to_refund" | "refund_in_progress"), "{body}");
        h.wait_for_status(&no, "refunded", Duration::from_secs(15)).await;
        let books = paid_out(&h, &no);
        assert_eq!(books.len(), steps.len() + 1);
        assert_eq!(books.iter().map(|r| r.amount_minor).sum::<i64>(), 600, "the provider paid out exactly the payment");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// The gateway is down when a full refund is asked: the refund is `unknown`, never
    /// failed, and the order stays `refunding`; when the gateway is back the same request
    /// number is asked again, paid out once, and the refund succeeds.
    async fn a_refund_asked_while_the_gateway_is_down_is_unknown_then_succeeds_once(db) {
        let h = Harness::start(db, calm(), goods(None)).await;
        let no = h.paid("outage", "diamonds_60").await;
        let down = zerodrop_store::now_ms() + 3_600_000;
        h.sandbox.sandbox.set_faults(Faults { gateway_down_until_ms: down, ..calm() });
        let (status, body) = refund(&h, &no, json!({"reason": "outage"}), Some("down")).await;
        assert_eq!(status, 201, "{body}");
        let order = wait_refund(&h, &no, 0, "unknown").await;
        assert_eq!(order["order"]["status"], "refunding", "not failed, not restored");
        assert_eq!(count(&order, "refund_failed"), 0);
        assert!(paid_out(&h, &no).is_empty());
        assert!(attention(&h, "reason=refund_unknown").await.is_empty(), "within its bound: no person yet");
        assert!(attention(&h, "reason=refund_failed").await.is_empty());
        // Asked again during the outage: still unknown, still one refund.
        h.make_due("refund").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, answer) = refund(&h, &no, json!({"reason": "again"}), Some("down-2")).await;
        assert_eq!((status, code(&answer)), (409, "refund_in_progress"), "{answer}");

        h.sandbox.sandbox.set_faults(calm());
        h.make_due("refund").await;
        wait_refund(&h, &no, 0, "succeeded").await;
        let order = h.wait_for_status(&no, "refunded", Duration::from_secs(10)).await;
        assert_eq!(order["refunds"].as_array().unwrap().len(), 1);
        let books = paid_out(&h, &no);
        assert_eq!((books.len(), books[0].amount_minor), (1, 600), "{books:?}");
        assert_eq!(books[0].request_no, format!("{no}R1"), "the same request number");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// Every gateway answer is "outcome unknown" (code 20000) while a partial refund is
    /// asked: it is `unknown`, and it still counts against what is left (a refund of the
    /// whole payment is refused; the rest is allowed). Once the gateway answers, each
    /// request number is paid out once and the total is the payment.
    async fn an_unknown_partial_refund_counts_against_what_is_left(db) {
        let h = Harness::start(db, calm(), goods(None)).await;
        let no = h.paid("coin", "diamonds_60").await;
        h.sandbox.sandbox.set_faults(Faults { gateway_unknown_rate_pct: 100, ..calm() });
        let (status, body) = refund(&h, &no, json!({"amount": "4.00", "reason": "most"}), Some("most")).await;
        assert_eq!(status, 201, "{body}");
        let order = wait_refund(&h, &no, 0, "unknown").await;
        assert_eq!(order["order"]["status"], "delivered");
        assert_eq!(h.wallet("coin").await["balances"][0]["balance"], 20, "what the refund covers is taken back at once");
        let (status, answer) = refund(&h, &no, json!({"amount": "6.00", "reason": "all"}), Some("all")).await;
        assert_eq!((status, code(&answer)), (422, "refund_exceeds_paid"), "{answer}");
        let (status, answer) = refund(&h, &no, json!({"amount": "2.01", "reason": "more"}), Some("more")).await;
        assert_eq!((status, code(&answer)), (422, "refund_exceeds_paid"), "{answer}");

        h.sandbox.sandbox.set_faults(calm());
        h.make_due("refund").await;
        wait_refund(&h, &no, 0, "succeeded").await;
        let (status, body) = refund(&h, &no, json!({"reason": "the rest"}), Some("rest")).await;
        assert_eq!((status, body["refund"]["amount"].as_str()), (201, Some("2.00")), "{body}");
        h.wait_for_status(&no, "refunded", Duration::from_secs(15)).await;
        let books = paid_out(&h, &no);
        let numbers: Vec<(&str, i64)> = books.iter().map(|r| (r.request_no.as_str(), r.amount_minor)).collect();
        assert_eq!(numbers, [(format!("{no}R1").as_str(), 400), (format!("{no}R2").as_str(), 200)]);
        assert_eq!(h.wallet("coin").await["balances"][0]["balance"], 0);
        h.audit_passes().await;
        h.stop().await;
    }
}
