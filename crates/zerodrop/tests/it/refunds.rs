//! Refunds end to end through the sandbox provider, and spending. On both engines.

use crate::support::{calm, code, goods, Harness};
use serde_json::{json, Value};
use std::time::Duration;
use zerodrop_sandbox::faults::Faults;
use zerodrop_store::both_engines;

async fn refund(h: &Harness, order_no: &str, body: Value, key: Option<&str>) -> (u16, Value) {
    h.post(&format!("/v1/orders/{order_no}/refunds"), &body, key).await
}

async fn wait_refund(h: &Harness, order_no: &str, index: usize, state: &str) -> Value {
    zerodrop::stack::eventually(Duration::from_secs(15), "the refund to settle", || async {
        let order = h.client.order(order_no).await?;
        Ok((order["refunds"][index]["state"] == state).then_some(order))
    })
    .await
    .unwrap()
}

both_engines! {
    /// Partial then full: each settles at the sandbox under its own request number, the
    /// goods go back in proportion, and the total never exceeds what was paid.
    async fn partial_and_full_refunds_settle_through_the_provider(db) {
        let h = Harness::start(db, calm(), goods(None)).await;
        let no = h.paid("buyer", "diamonds_60").await;
        assert_eq!(h.wallet("buyer").await["balances"][0]["balance"], 60);

        let (status, body) = refund(&h, &no, json!({"amount": "9.00", "reason": "too much"}), None).await;
        assert_eq!((status, code(&body)), (422, "refund_exceeds_paid"));
        let (status, body) = refund(&h, &no, json!({"amount": "3.00", "reason": "half"}), Some("r-1")).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["refund"]["full"], false);
        // Replayed with its key: the same refund, not a second.
        let (again, replay) = refund(&h, &no, json!({"amount": "3.00", "reason": "half"}), Some("r-1")).await;
        assert_eq!((again, &replay["refund"]["id"]), (201, &body["refund"]["id"]));
        let (clash, err) = refund(&h, &no, json!({"amount": "1.00", "reason": "other"}), Some("r-1")).await;
        assert_eq!((clash, code(&err)), (409, "idempotency_key_reused"));
        let order = wait_refund(&h, &no, 0, "succeeded").await;
        assert_eq!(order["order"]["status"], "delivered", "a partial refund keeps the order delivered");
        assert_eq!(h.wallet("buyer").await["balances"][0]["balance"], 30, "half the units went back");

        let (status, body) = refund(&h, &no, json!({"reason": "the rest"}), None).await;
        assert_eq!((status, body["refund"]["amount"].as_str()), (201, Some("3.00")), "{body}");
        let order = wait_refund(&h, &no, 1, "succeeded").await;
        assert_eq!(order["order"]["status"], "refunded");
        assert_eq!(h.wallet("buyer").await["balances"][0]["balance"], 0);
        let (status, body) = refund(&h, &no, json!({"reason": "again"}), None).await;
        assert_eq!((status, code(&body)), (409, "nothing_left_to_refund"));

        let books = h.sandbox.sandbox.refunds();
        let numbers: Vec<&str> = books.iter().map(|r| r.request_no.as_str()).collect();
        assert_eq!(numbers, [format!("{no}R1"), format!("{no}R2")]);
        assert_eq!(books.iter().map(|r| r.amount_minor).sum::<i64>(), 600, "refunds never exceed the payment");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn refunds_refuse_what_cannot_be_refunded(db) {
        let h = Harness::start(db, calm(), goods(None)).await;
        let unpaid = h.order("buyer", "diamonds_60").await;
        let unpaid = unpaid["order"]["order_no"].as_str().unwrap();
        let (status, body) = refund(&h, unpaid, json!({"reason": "x"}), None).await;
        assert_eq!((status, code(&body)), (409, "order_not_paid"));
        let (status, body) = refund(&h, "ZD000000000000", json!({"reason": "x"}), None).await;
        assert_eq!((status, code(&body)), (404, "order_not_found"));
        let no = h.paid("buyer", "diamonds_60").await;
        for (body, expected) in [
            (json!({"amount": "-1", "reason": "x"}), "invalid_amount"),
            (json!({"amount": "0.001", "reason": "x"}), "invalid_amount"),
            (json!({"amount": "1.00"}), "invalid_request"),
            (json!({"amount": "1.00", "reason": ""}), "invalid_request"),
            (json!({"amount": "1.00", "reason": "x", "extra": 1}), "invalid_request"),
        ] {
            let (status, response) = refund(&h, &no, body.clone(), None).await;
            assert_eq!((status, code(&response)), (422, expected), "{body}");
        }
        // Card keys waiting for stock: only whole refunds (nothing was delivered).
        let waiting = h.paid("buyer", "card_patient").await;
        let (status, body) = refund(&h, &waiting, json!({"amount": "10.00", "reason": "x"}), None).await;
        assert_eq!((status, code(&body)), (409, "partial_refund_not_allowed"));
        h.stop().await;
    }
}

both_engines! {
    /// Concurrent refunds of one order: the order's lock lets exactly one through.
    async fn concurrent_refunds_never_refund_twice(db) {
        let h = Harness::start(db, Faults { refund_delay_ms: 1_000, ..calm() }, goods(None)).await;
        let no = h.paid("buyer", "diamonds_60").await;
        let mut tasks = Vec::new();
        for n in 0..10 {
            let (http, url) = (h.client.http.clone(), format!("{}/v1/orders/{no}/refunds", h.server.base_url));
            tasks.push(tokio::spawn(async move {
                let response = http.post(url).bearer_auth(zerodrop::stack::API_KEY).header("idempotency-key", format!("k{n}"))
                    .json(&json!({"reason": "all of it"})).send().await.unwrap();
                (response.status().as_u16(), response.json::<Value>().await.unwrap())
            }));
        }
        let mut created = 0;
        for task in tasks {
            let (status, body) = task.await.unwrap();
            match status {
                201 => created += 1,
                409 => assert!(matches!(code(&body), "refund_in_progress" | "nothing_left_to_refund"), "{body}"),
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert_eq!(created, 1);
        // The sandbox reported "processing" first; the job queried until it succeeded.
        let order = wait_refund(&h, &no, 0, "succeeded").await;
        assert_eq!(order["refunds"].as_array().unwrap().len(), 1);
        assert_eq!(order["order"]["status"], "refunded");
        assert_eq!(h.sandbox.sandbox.refunds().len(), 1);
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// What a refund takes back: unspent units (the spent part is the platform's loss, not
    /// the user's debt), membership days, the card key.
    async fn refunds_take_back_only_what_is_left(db) {
        let h = Harness::start(db, calm(), goods(None)).await;
        let no = h.paid("gifter", "diamonds_60").await;
        let (status, body) = h.post("/v1/users/gifter/wallet/spend", &json!({"currency": "DIAMOND", "amount": 50, "to": "creator:streamer"}), Some("gift-1")).await;
        assert_eq!(status, 201, "{body}");
        let (_, body) = refund(&h, &no, json!({"reason": "changed my mind"}), None).await;
        let order = wait_refund(&h, &no, 0, "succeeded").await;
        let taken = order["timeline"].as_array().unwrap().iter().find(|e| e["kind"] == "goods_reclaimed").unwrap().clone();
        assert_eq!((taken["data"]["taken_back"].as_i64(), taken["data"]["already_spent_written_off"].as_i64()), (Some(10), Some(50)), "{body}");
        assert_eq!(h.wallet("gifter").await["balances"][0]["balance"], 0, "never below zero");

        let vip = h.paid("vip", "svip_30d").await;
        let (_, before) = h.client.get("/v1/users/vip/memberships").await.unwrap();
        refund(&h, &vip, json!({"reason": "refund"}), None).await;
        wait_refund(&h, &vip, 0, "succeeded").await;
        let (_, after) = h.client.get("/v1/users/vip/memberships").await.unwrap();
        assert_eq!(before["memberships"][0]["active"], true);
        assert_eq!(after["memberships"][0]["active"], false, "the refunded days are gone");

        h.import_keys("card_50", &["REFUND-ME-1"]).await;
        let card = h.paid("player", "card_50").await;
        refund(&h, &card, json!({"reason": "refund"}), None).await;
        let order = wait_refund(&h, &card, 0, "succeeded").await;
        assert_eq!(order["delivery"]["state"], "revoked");
        assert!(order["delivery"].get("code").is_none(), "a refunded key's code is hidden: {}", order["delivery"]);
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// Spending: many spends at once never overdraw a wallet; each key spends once.
    async fn concurrent_spends_never_overdraw(db) {
        let h = Harness::start(db, calm(), goods(None)).await;
        for _ in 0..5 {
            h.paid("whale", "diamonds_60").await;
        }
        assert_eq!(h.wallet("whale").await["balances"][0]["balance"], 300);
        let mut tasks = Vec::new();
        for n in 0..40 {
            let (http, url) = (h.client.http.clone(), format!("{}/v1/users/whale/wallet/spend", h.server.base_url));
            tasks.push(tokio::spawn(async move {
                let to = if n % 2 == 0 { "creator:streamer" } else { "platform" };
                let response = http.post(url).bearer_auth(zerodrop::stack::API_KEY).header("idempotency-key", format!("s{n}"))
                    .json(&json!({"currency": "DIAMOND", "amount": 10, "to": to})).send().await.unwrap();
                (response.status().as_u16(), response.json::<Value>().await.unwrap())
            }));
        }
        let (mut spent, mut refused) = (0, 0);
        for task in tasks {
            match task.await.unwrap() {
                (201, _) => spent += 1,
                (409, body) if code(&body) == "insufficient_balance" => refused += 1,
                (status, body) => panic!("unexpected {status}: {body}"),
            }
        }
        assert_eq!((spent, refused), (30, 10));
        assert_eq!(h.wallet("whale").await["balances"][0]["balance"], 0);
        // Replayed with its key: the first answer, not a second spend.
        let (status, body) = h.post("/v1/users/whale/wallet/spend", &json!({"currency": "DIAMOND", "amount": 10, "to": "platform"}), Some("s1")).await;
        assert!(status == 201 || code(&body) == "insufficient_balance", "{status} {body}");
        for (body, key, expected) in [
            (json!({"currency": "DIAMOND", "amount": 1, "to": "platform"}), None, "idempotency_key_required"),
            (json!({"currency": "DIAMOND", "amount": 0, "to": "platform"}), Some("z1"), "invalid_amount"),
            (json!({"currency": "diamond", "amount": 1, "to": "platform"}), Some("z2"), "invalid_currency"),
            (json!({"currency": "DIAMOND", "amount": 1, "to": "someone"}), Some("z3"), "invalid_recipient"),
        ] {
            let (status, response) = h.post("/v1/users/whale/wallet/spend", &body, key).await;
            assert_eq!((status, code(&response)), (422, expected), "{body}");
        }
        // The user in the path is checked first, before the key and the body.
        let (status, response) = h.post("/v1/users/bad%20user/wallet/spend", &json!({"amount": "x"}), None).await;
        assert_eq!((status, code(&response)), (422, "invalid_user_id"), "{response}");
        h.audit_passes().await;
        h.stop().await;
    }
}
