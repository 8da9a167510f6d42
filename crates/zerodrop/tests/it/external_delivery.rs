//! External delivery through the platform's endpoint: signed requests, every attempt in
//! the timeline, confirmations checked, deadlines kept, compensation paid once.

use crate::support::{calm, count, goods, Harness};
use serde_json::json;
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
        // The genuine confirmation delivers; its replay gets the same answer and changes nothing.
        let answers = game.confirm_accepted(url).await.unwrap();
        assert_eq!(answers, vec![(no.clone(), 200)]);
        assert_eq!(endpoint::confirm(&client, url, &no, r#"{"status":"delivered"}"#).await.unwrap(), 200);
        let order = h.client.order(&no).await.unwrap();
        assert_eq!(order["order"]["status"], "delivered");
        assert_eq!(count(&order, "delivered"), 1);
        // Confirmations for orders that are not external are refused.
        let other = h.paid("player", "diamonds_60").await;
        assert_eq!(endpoint::confirm(&client, url, &other, r#"{"status":"delivered"}"#).await.unwrap(), 409);
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

both_engines! {
    /// The race between a slow endpoint and the deadline: the request goes out, the 10 s
    /// deadline refunds the order while it is under way, then the endpoint answers 200.
    /// The user may now hold the goods and the money: the order goes to a person, with the
    /// attempt in its timeline; nothing is delivered or refunded twice.
    async fn a_delivery_landing_after_the_deadline_refund_goes_to_a_person(db) {
        // The endpoint holds the request until the deadline has refunded the order, then
        // answers 200 (zerodrop waits up to 45 s for it; its job may run 50 s).
        let game = Endpoint::start(Mode::Hold).await.unwrap();
        let tuning = zerodrop::stack::Tuning { endpoint_timeout_ms: 45_000, ..goods(Some(game.url.clone())) };
        let h = Harness::start(db, calm(), tuning).await;
        let no = h.paid("player", "gold_100").await;
        h.wait_for_status(&no, "refunded", Duration::from_secs(30)).await;
        game.release();
        let order = zerodrop::stack::eventually(Duration::from_secs(20), "the late answer", || async {
            let order = h.client.order(&no).await?;
            Ok((order["order"]["attention_reason"] == "delivered_after_refund").then_some(order))
        }).await.unwrap();
        assert_eq!(order["order"]["status"], "refunded");
        assert_eq!(count(&order, "delivered"), 0, "no second outcome recorded");
        assert_eq!(count(&order, "refund_succeeded"), 1);
        let attempt = order["timeline"].as_array().unwrap().iter().find(|e| e["kind"] == "delivery_attempted").unwrap();
        assert_eq!(attempt["data"]["http_status"], 200);
        assert_eq!(game.delivered().values().sum::<u32>(), 1, "the endpoint delivered once");
        h.audit_passes().await;
        h.stop().await;
        game.stop();
    }
}
