//! External delivery through the platform's endpoint: signed requests, every attempt in
//! the timeline, confirmations checked, deadlines kept, compensation paid once.

use crate::support::{calm, count, goods, Harness};
use serde_json::{json, Value};
use std::time::Duration;
use zerodrop::endpoint::{self, Endpoint, Mode};
use zerodrop_store::both_engines;

async fn stack(db: &zerodrop_store::testing::TestDb, mode: Mode) -> (Harness, Endpoint) {
    let endpoint = Endpoint::start(mode).await.unwrap();
    let h = Harness::start(db, calm(), goods(Some(endpoint.url.clone()))).await;
    (h, endpoint)
}

both_engines! {
    async fn a_working_endpoint_delivers_once_and_replays_on_request(db) {
        let (h, game) = stack(db, Mode::Up).await;
        let no = h.paid("player", "gold_patient").await;
        let order = h.wait_for_status(&no, "delivered", Duration::from_secs(10)).await;
        let attempt = order["timeline"].as_array().unwrap().iter().find(|e| e["kind"] == "delivery_attempted").unwrap();
        assert_eq!(attempt["data"]["http_status"], 200);
        assert!(attempt["data"]["latency_ms"].as_i64().is_some());
        assert_eq!(attempt["data"]["response_excerpt"], r#"{"ok":true}"#);
        assert_eq!(game.requests().1, 0, "every request carried a valid signature");
        // The operator replays the delivery: the endpoint hears it again (same order id,
        // its idempotency key); zerodrop still delivered once.
        let (status, body) = h.post(&format!("/v1/orders/{no}/delivery/replay"), &json!({}), None).await;
        assert_eq!(status, 202, "{body}");
        zerodrop::stack::eventually(Duration::from_secs(10), "the replay", || async {
            Ok(game.delivered().values().any(|n| *n == 2).then_some(()))
        }).await.unwrap();
        let order = h.client.order(&no).await.unwrap();
        assert_eq!(count(&order, "delivered"), 1);
        assert_eq!(count(&order, "delivery_attempted"), 2);
        h.audit_passes().await;
        h.stop().await;
        game.stop();
    }
}

both_engines! {
    /// The endpoint is down for longer than the deadline: the order is refunded, and the
    /// endpoint, back up, receives nothing more for it.
    async fn an_endpoint_down_past_the_deadline_leads_to_a_refund(db) {
        let (h, game) = stack(db, Mode::Down).await;
        let no = h.paid("player", "gold_100").await;
        let order = h.wait_for_status(&no, "refunded", Duration::from_secs(30)).await;
        assert!(count(&order, "delivery_attempted") >= 2, "retried with backoff until the deadline");
        assert_eq!(order["refunds"][0]["origin"], "deadline");
        assert!(order["status_text"].as_str().unwrap().contains("已退款"));
        game.set_mode(Mode::Up);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(game.delivered().is_empty(), "no delivery after the refund");
        h.audit_passes().await;
        h.stop().await;
        game.stop();
    }
}

both_engines! {
    /// Under an escalate policy the deadline puts the order in front of a person while
    /// delivery keeps retrying; when it lands late, compensation is paid once.
    async fn s12_late_delivery_is_compensated_once(db) {
        let (h, game) = stack(db, Mode::Down).await;
        let no = h.paid("player", "gold_escalate").await;
        zerodrop::stack::eventually(Duration::from_secs(30), "escalation", || async {
            let order = h.client.order(&no).await?;
            Ok((order["order"]["attention_reason"] == "dropped_order").then_some(()))
        }).await.unwrap();
        game.set_mode(Mode::Up);
        let order = h.wait_for_status(&no, "delivered", Duration::from_secs(30)).await;
        assert_eq!(count(&order, "compensated"), 1);
        let wallet = h.wallet("player").await;
        assert_eq!(wallet["balances"][0]["currency"], "DIAMOND");
        assert_eq!(wallet["balances"][0]["balance"], 50, "the product's compensation, once");
        // A replay after delivery changes nothing more.
        h.post(&format!("/v1/orders/{no}/delivery/replay"), &json!({}), None).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(h.wallet("player").await["balances"][0]["balance"], 50);
        h.audit_passes().await;
        h.stop().await;
        game.stop();
    }
}

both_engines! {
    async fn accepted_deliveries_are_confirmed_by_a_signed_callback(db) {
        let (h, game) = stack(db, Mode::Accept).await;
        let no = h.paid("player", "gold_patient").await;
        zerodrop::stack::eventually(Duration::from_secs(10), "acceptance", || async {
            let order = h.client.order(&no).await?;
            Ok((count(&order, "delivery_accepted") == 1).then_some(()))
        }).await.unwrap();
        let client = zerodrop_providers::http_client::client(Duration::from_secs(5)).unwrap();
        let url = &h.server.base_url;
        // Forged (another secret), stale, and unsigned confirmations are refused.
        let forged = client.post(format!("{url}/v1/orders/{no}/delivery"))
            .header("x-zerodrop-timestamp", (zerodrop_store::now_ms() / 1000).to_string())
            .header("x-zerodrop-signature", zerodrop_server::flows::endpoint::sign("not-the-endpoint-secret", zerodrop_store::now_ms() / 1000, br#"{"status":"delivered"}"#))
            .body(r#"{"status":"delivered"}"#).send().await.unwrap();
        assert_eq!(forged.status().as_u16(), 401);
        let old = zerodrop_store::now_ms() / 1000 - 600;
        let stale = client.post(format!("{url}/v1/orders/{no}/delivery"))
            .header("x-zerodrop-timestamp", old.to_string())
            .header("x-zerodrop-signature", zerodrop_server::flows::endpoint::sign(endpoint::SECRET, old, br#"{"status":"delivered"}"#))
            .body(r#"{"status":"delivered"}"#).send().await.unwrap();
        assert_eq!(stale.status().as_u16(), 401);
        let unsigned = client.post(format!("{url}/v1/orders/{no}/delivery")).body(r#"{"status":"delivered"}"#).send().await.unwrap();
        assert_eq!(unsigned.status().as_u16(), 401);
        assert_eq!(h.client.order(&no).await.unwrap()["order"]["status"], "paid");
        // The genuine confirmation delivers. Sent again (a replay, or a resend whose answer
        // was lost) it is refused and recorded, and changes nothing else: a replayed
        // `failed` under the same attempt included.
        let answers = game.confirm_accepted(url).await.unwrap();
        assert_eq!(answers, vec![(no.clone(), 200)]);
        let attempt = game.accepted_attempt(&no).expect("the accepted request named its attempt");
        let delivered = json!({ "order_no": no, "attempt": attempt, "status": "delivered" }).to_string();
        assert_eq!(endpoint::confirm(&client, url, &no, &delivered).await.unwrap(), 409);
        let failed = json!({ "order_no": no, "attempt": attempt, "status": "failed", "reason": "x" }).to_string();
        assert_eq!(endpoint::confirm(&client, url, &no, &failed).await.unwrap(), 409, "a replayed failed is refused");
        let order = h.client.order(&no).await.unwrap();
        assert_eq!(order["order"]["status"], "delivered");
        assert_eq!(count(&order, "delivered"), 1);
        assert_eq!(count(&order, "confirmation_replayed"), 2, "each replay is in the timeline");
        assert_eq!(count(&order, "refund_requested") + count(&order, "delivery_failed"), 0);
        // An attempt zerodrop never sent is refused, whatever it says.
        let made_up = json!({ "order_no": no, "attempt": "0123456789abcdef", "status": "failed" }).to_string();
        assert_eq!(endpoint::confirm(&client, url, &no, &made_up).await.unwrap(), 422);
        // Confirmations for orders that are not external are refused.
        let other = h.paid("player", "diamonds_60").await;
        let for_other = json!({ "order_no": other, "attempt": attempt, "status": "delivered" }).to_string();
        assert_eq!(endpoint::confirm(&client, url, &other, &for_other).await.unwrap(), 409);
        // A genuine confirmation for one order, replayed against another: refused, and the
        // other order is untouched (a replayed `failed` would have refunded it).
        let waiting = h.paid("player2", "gold_patient").await;
        let failed_for_no = json!({ "order_no": no, "attempt": attempt, "status": "failed", "reason": "x" }).to_string();
        assert_eq!(endpoint::confirm(&client, url, &waiting, &failed_for_no).await.unwrap(), 422);
        let unnamed = json!({ "attempt": attempt, "status": "failed" }).to_string();
        assert_eq!(endpoint::confirm(&client, url, &waiting, &unnamed).await.unwrap(), 422, "the order must be named");
        let no_attempt = json!({ "order_no": waiting, "status": "failed" }).to_string();
        assert_eq!(endpoint::confirm(&client, url, &waiting, &no_attempt).await.unwrap(), 422, "the attempt must be named");
        assert_eq!(h.client.order(&waiting).await.unwrap()["order"]["status"], "paid", "nothing refunded");
        h.audit_passes().await;
        h.stop().await;
        game.stop();
    }
}

both_engines! {
    /// A genuine `failed` refunds the order once. The same confirmation replayed, however
    /// often within its signature's window, is refused and recorded, and refunds nothing.
    async fn a_replayed_failed_confirmation_refunds_nothing_more(db) {
        let (h, game) = stack(db, Mode::Accept).await;
        let no = h.paid("player", "gold_patient").await;
        zerodrop::stack::eventually(Duration::from_secs(10), "acceptance", || async {
            let order = h.client.order(&no).await?;
            Ok((count(&order, "delivery_accepted") == 1).then_some(()))
        }).await.unwrap();
        let client = zerodrop_providers::http_client::client(Duration::from_secs(5)).unwrap();
        let url = &h.server.base_url;
        let attempt = game.accepted_attempt(&no).unwrap();
        let failed = json!({ "order_no": no, "attempt": attempt, "status": "failed", "reason": "banned" }).to_string();
        assert_eq!(endpoint::confirm(&client, url, &no, &failed).await.unwrap(), 200);
        // Once the refund it started has settled, nothing else moves the order.
        let before = h.wait_for_status(&no, "refunded", Duration::from_secs(15)).await;
        assert_eq!(count(&before, "delivery_failed"), 1);
        assert_eq!(count(&before, "refund_requested"), 1, "the policy refunds at once");
        for _ in 0..3 {
            assert_eq!(endpoint::confirm(&client, url, &no, &failed).await.unwrap(), 409);
        }
        let after = h.client.order(&no).await.unwrap();
        assert_eq!(count(&after, "confirmation_replayed"), 3);
        // What a `failed` does, done once: the refund's own later news (the provider's refund
        // notification) may still arrive, so the timeline is compared kind by kind.
        for kind in ["delivery_failed", "deadline_missed", "refund_due", "refund_requested", "attention_raised", "delivered"] {
            assert_eq!(count(&after, kind), count(&before, kind), "a replay does not {kind} again");
        }
        assert_eq!(after["order"]["status"], "refunded");
        assert_eq!(after["refunds"].as_array().map(Vec::len), before["refunds"].as_array().map(Vec::len));
        let mut conn = h.server.app.store.reader().await.unwrap();
        let order_id = after["order"]["id"].as_str().unwrap();
        let stored = zerodrop_store::confirmations::for_order(&mut conn, order_id).await.unwrap();
        assert_eq!(stored.len(), 1, "accepted once");
        assert_eq!((stored[0].attempt_id.as_str(), stored[0].status.as_str()), (attempt.as_str(), "failed"));
        drop(conn);
        h.audit_passes().await;
        h.stop().await;
        game.stop();
    }
}

both_engines! {
    /// A confirmation naming an attempt zerodrop has not recorded: while a request to the
    /// endpoint is out it may be that request's answer racing ahead of it (503: send it
    /// again); once nothing is out, it is refused.
    async fn a_confirmation_for_an_attempt_not_recorded_is_asked_again_then_refused(db) {
        let game = Endpoint::start(Mode::Hold).await.unwrap();
        let tuning = zerodrop::stack::Tuning { endpoint_timeout_ms: 20_000, ..goods(Some(game.url.clone())) };
        let h = Harness::start(db, calm(), tuning).await;
        let no = h.paid("player", "gold_patient").await;
        zerodrop::stack::eventually(Duration::from_secs(10), "the request to be out", || async {
            Ok((game.heard().values().sum::<u32>() >= 1).then_some(()))
        }).await.unwrap();
        let client = zerodrop_providers::http_client::client(Duration::from_secs(5)).unwrap();
        let url = &h.server.base_url;
        let unseen = json!({ "order_no": no, "attempt": "0123456789abcdef0123456789abcdef", "status": "delivered" }).to_string();
        assert_eq!(endpoint::confirm(&client, url, &no, &unseen).await.unwrap(), 503, "a request is out: send again");
        assert_eq!(h.client.order(&no).await.unwrap()["order"]["status"], "paid", "nothing changed");
        game.release();
        h.wait_for_status(&no, "delivered", Duration::from_secs(10)).await;
        zerodrop::stack::eventually(Duration::from_secs(10), "the delivery job to finish", || async {
            let order = h.client.order(&no).await?;
            let pending = order["pending_jobs"].as_array().map(|j| j.iter().any(|j| j["kind"] == "deliver_external"));
            Ok((pending == Some(false)).then_some(()))
        }).await.unwrap();
        assert_eq!(endpoint::confirm(&client, url, &no, &unseen).await.unwrap(), 422, "nothing is out: refused");
        h.audit_passes().await;
        h.stop().await;
        game.stop();
    }
}

both_engines! {
    /// A 4xx is final: no retries, the order is refunded at once (its policy). A redirect
    /// and a broken answer are failures to retry; a 2xx with garbage is a delivery (the
    /// status code is the contract).
    async fn refusals_redirects_and_garbage_from_the_endpoint(db) {
        let (h, game) = stack(db, Mode::Refuse).await;
        let refused = h.paid("player", "gold_patient").await;
        let order = h.wait_for_status(&refused, "refunded", Duration::from_secs(15)).await;
        assert_eq!(count(&order, "delivery_attempted"), 1, "a refusal is not retried");
        assert_eq!(count(&order, "delivery_failed"), 1);
        assert_eq!(order["refunds"][0]["origin"], "delivery_failed");
        game.set_mode(Mode::Redirect);
        let redirected = h.paid("player", "gold_patient").await;
        zerodrop::stack::eventually(Duration::from_secs(15), "redirects retried", || async {
            let order = h.client.order(&redirected).await?;
            Ok((count(&order, "delivery_attempted") >= 2).then_some(order))
        }).await.map(|order| {
            let attempt = order["timeline"].as_array().unwrap().iter().find(|e| e["kind"] == "delivery_attempted").unwrap().clone();
            assert_eq!(attempt["data"]["http_status"], 302);
        }).unwrap();
        game.set_mode(Mode::Garbage);
        let garbage = h.paid("player", "gold_patient").await;
        h.wait_for_status(&garbage, "delivered", Duration::from_secs(15)).await;
        // Slower than the endpoint's timeout (2 s here): a failed attempt, retried.
        game.set_mode(Mode::Slow(3_000));
        let slow = h.paid("player", "gold_patient").await;
        zerodrop::stack::eventually(Duration::from_secs(15), "a timed-out attempt", || async {
            let order = h.client.order(&slow).await?;
            let timed_out = order["timeline"].as_array().unwrap().iter()
                .any(|e| e["kind"] == "delivery_attempted" && e["data"]["outcome"].as_str().unwrap_or("").contains("timed out"));
            Ok(timed_out.then_some(()))
        }).await.unwrap();
        game.set_mode(Mode::Up);
        h.wait_for_status(&slow, "delivered", Duration::from_secs(15)).await;
        h.audit_passes().await;
        h.stop().await;
        game.stop();
    }
}

/// Calls the deadline made to settle an order (their `purpose` says so).
fn settle_attempts(order: &Value) -> Vec<Value> {
    let timeline = order["timeline"].as_array().cloned().unwrap_or_default();
    timeline.into_iter().filter(|e| e["kind"] == "delivery_attempted" && e["data"]["purpose"] == "settle").collect()
}

/// The endpoint heard one idempotency key only (the order id), at least `times` times, and
/// applied the goods under it exactly `applied` times.
fn same_key(game: &Endpoint, h_order: &Value, times: u32, applied: u32) {
    let order_id = h_order["order"]["id"].as_str().map(str::to_owned);
    let heard = game.heard();
    assert_eq!(heard.len(), 1, "one idempotency key, whoever sent: {heard:?}");
    let (key, n) = heard.into_iter().next().unwrap();
    if let Some(id) = order_id {
        assert_eq!(key, id, "the key is the order id");
    }
    assert!(n >= times, "heard {n} times, wanted at least {times}");
    assert_eq!(game.applied().get(&key).copied().unwrap_or(0), applied, "goods applied under the key");
}

both_engines! {
    /// The endpoint applies the goods and answers after zerodrop's timeout: the attempt is
    /// unknown, not failed, and the next send (same key) gets the original 200.
    async fn an_answer_after_the_timeout_is_unknown_and_the_same_key_gets_the_original_result(db) {
        let (h, game) = stack(db, Mode::Slow(5_000)).await;
        let no = h.paid("player", "gold_100").await;
        let order = h.wait_for_status(&no, "delivered", Duration::from_secs(30)).await;
        assert!(count(&order, "delivery_unknown") >= 1, "the timed-out attempt is unknown");
        assert_eq!(count(&order, "delivery_failed"), 0);
        assert_eq!(count(&order, "delivered"), 1);
        assert!(order["refunds"].as_array().is_none_or(|r| r.is_empty()), "never refunded");
        same_key(&game, &order, 2, 1);
        h.audit_passes().await;
        h.stop().await;
        game.stop();
    }
}

both_engines! {
    /// The endpoint applies the goods and then stays silent. At the deadline zerodrop does
    /// not refund: it asks again (same key) a bounded number of times, then hands the order
    /// to a person with reason `delivery_unknown`. When the endpoint speaks again, the
    /// order is delivered, once.
    async fn a_silent_endpoint_goes_to_a_person_at_the_deadline_never_refunded(db) {
        let (h, game) = stack(db, Mode::Silent).await;
        let no = h.paid("player", "gold_100").await;
        let order = zerodrop::stack::eventually(Duration::from_secs(60), "a person", || async {
            let order = h.client.order(&no).await?;
            Ok((order["order"]["attention_reason"] == "delivery_unknown").then_some(order))
        }).await.unwrap();
        assert_eq!(order["order"]["status"], "paid", "not refunded");
        assert_eq!(count(&order, "refund_due"), 0);
        assert_eq!(count(&order, "deadline_missed"), 0, "the deadline's policy never acted");
        let settles = settle_attempts(&order);
        assert_eq!(settles.len(), zerodrop_server::flows::delivery::settle::SETTLE_SENDS_MAX, "bounded");
        assert!(settles.iter().all(|a| a["data"]["outcome"].as_str().unwrap_or("").contains("Unknown")));
        let raised = order["timeline"].as_array().unwrap().iter()
            .find(|e| e["kind"] == "attention_raised").unwrap().clone();
        assert_eq!(raised["data"]["reason"], "delivery_unknown");
        same_key(&game, &order, 4, 1);
        h.audit_passes().await;
        // The endpoint answers again: the next retry of the delivery job gets the original 200.
        game.release();
        h.make_due("deliver_external").await;
        let order = h.wait_for_status(&no, "delivered", Duration::from_secs(30)).await;
        assert_eq!(count(&order, "delivered"), 1);
        assert_eq!(count(&order, "refund_requested"), 0);
        same_key(&game, &order, 5, 1);
        h.audit_passes().await;
        h.stop().await;
        game.stop();
    }
}

both_engines! {
    /// A 202 whose signed confirmation never arrives (the endpoint delivered; the callback
    /// was lost): at the deadline zerodrop asks again with the same key, gets 200, and the
    /// order is delivered instead of refunded.
    async fn a_lost_confirmation_is_settled_by_asking_again_before_the_deadline_refunds(db) {
        let (h, game) = stack(db, Mode::Accept).await;
        let no = h.paid("player", "gold_100").await;
        zerodrop::stack::eventually(Duration::from_secs(10), "acceptance", || async {
            let order = h.client.order(&no).await?;
            Ok((count(&order, "delivery_accepted") == 1).then_some(()))
        }).await.unwrap();
        assert_eq!(game.finish_accepted(), vec![no.clone()], "delivered, confirmation lost");
        let order = h.wait_for_status(&no, "delivered", Duration::from_secs(30)).await;
        let settles = settle_attempts(&order);
        assert_eq!(settles.len(), 1, "one question settled it");
        assert_eq!(settles[0]["data"]["http_status"], 200);
        assert_eq!(count(&order, "refund_due"), 0);
        assert_eq!(count(&order, "delivered"), 1);
        same_key(&game, &order, 2, 1);
        h.audit_passes().await;
        h.stop().await;
        game.stop();
    }
}

both_engines! {
    /// The endpoint reads the request, applies it, and the connection breaks before any
    /// answer: unknown, not failed, and never a refusal. Back up, the same key gets 200.
    async fn a_connection_broken_after_the_request_is_unknown_not_failed(db) {
        let (h, game) = stack(db, Mode::Break).await;
        let no = h.paid("player", "gold_patient").await;
        let order = zerodrop::stack::eventually(Duration::from_secs(15), "an unknown attempt", || async {
            let order = h.client.order(&no).await?;
            Ok((count(&order, "delivery_unknown") >= 1).then_some(order))
        }).await.unwrap();
        let attempt = order["timeline"].as_array().unwrap().iter().find(|e| e["kind"] == "delivery_attempted").unwrap();
        assert!(attempt["data"]["outcome"].as_str().unwrap().contains("Unknown"), "{attempt}");
        assert_eq!(attempt["data"]["http_status"], Value::Null, "no answer at all");
        assert_eq!(count(&order, "delivery_failed"), 0);
        assert_eq!(order["order"]["status"], "paid");
        game.set_mode(Mode::Up);
        h.make_due("deliver_external").await;
        let order = h.wait_for_status(&no, "delivered", Duration::from_secs(30)).await;
        same_key(&game, &order, 2, 1);
        h.audit_passes().await;
        h.stop().await;
        game.stop();
    }
}

both_engines! {
    /// Settling does not stand in the way of a definite refusal: the request is held (the
    /// endpoint has not acted) past the deadline, the deadline asks again, the endpoint
    /// refuses, and the order is refunded by its policy, with no goods applied.
    async fn the_deadline_still_refunds_when_the_endpoint_definitively_refuses(db) {
        let (h, game) = stack(db, Mode::Hold).await;
        let no = h.paid("player", "gold_100").await;
        zerodrop::stack::eventually(Duration::from_secs(40), "the deadline settling", || async {
            let order = h.client.order(&no).await?;
            Ok((!settle_attempts(&order).is_empty()).then_some(()))
        }).await.unwrap();
        assert_eq!(h.client.order(&no).await.unwrap()["order"]["status"], "paid", "no refund while unknown");
        game.set_mode(Mode::Refuse);
        let order = h.wait_for_status(&no, "refunded", Duration::from_secs(30)).await;
        assert_eq!(order["refunds"][0]["origin"], "delivery_failed");
        assert_eq!(count(&order, "delivered"), 0);
        game.release();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(game.applied().is_empty(), "the endpoint never applied the goods");
        let order = h.client.order(&no).await.unwrap();
        assert_eq!(order["order"]["attention_reason"], Value::Null, "nothing for a person: no doubt remains");
        h.audit_passes().await;
        h.stop().await;
        game.stop();
    }
}

both_engines! {
    /// A request still out when the deadline comes (the endpoint's timeout is longer than
    /// the time left): the deadline does not refund under it but asks again with the same
    /// key, and when the endpoint answers, the order is delivered, the goods applied once.
    async fn a_request_still_out_at_the_deadline_is_settled_not_refunded(db) {
        let game = Endpoint::start(Mode::Hold).await.unwrap();
        let tuning = zerodrop::stack::Tuning { endpoint_timeout_ms: 45_000, ..goods(Some(game.url.clone())) };
        let h = Harness::start(db, calm(), tuning).await;
        let no = h.paid("player", "gold_100").await;
        zerodrop::stack::eventually(Duration::from_secs(30), "the deadline asking again", || async {
            Ok(game.heard().values().any(|n| *n >= 2).then_some(()))
        }).await.unwrap();
        assert_eq!(h.client.order(&no).await.unwrap()["order"]["status"], "paid", "no refund under a request");
        game.release();
        let order = h.wait_for_status(&no, "delivered", Duration::from_secs(30)).await;
        assert_eq!(count(&order, "refund_due"), 0);
        assert_eq!(count(&order, "delivered"), 1);
        same_key(&game, &order, 2, 1);
        h.audit_passes().await;
        h.stop().await;
        game.stop();
    }
}
