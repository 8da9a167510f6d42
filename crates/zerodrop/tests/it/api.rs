//! The merchant API under bad input, idempotency, and the OpenAPI document's truth.

use crate::support::{calm, fast, Harness};
use serde_json::{json, Value};
use zerodrop_store::both_engines;

async fn raw_post(h: &Harness, key: Option<&str>, body: Vec<u8>, idempotency: Option<&str>) -> (u16, Value) {
    let mut request = h
        .client
        .http
        .post(format!("{}/v1/orders", h.server.base_url))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(idem) = idempotency {
        request = request.header("idempotency-key", idem);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no code>")
}

async fn order_count(db: &zerodrop_store::testing::TestDb) -> usize {
    let mut conn = db.store.reader().await.unwrap();
    zerodrop_store::orders::summaries(&mut conn).await.unwrap().len()
}

both_engines! {
    async fn orders_refuse_bad_input_with_stable_codes_and_store_nothing(db) {
        let h = Harness::start(db, calm(), fast()).await;
        let key = Some(zerodrop::stack::API_KEY);
        let good = json!({"user_id": "u1", "sku": "diamonds_60"}).to_string().into_bytes();
        let cases: Vec<(Option<&str>, Vec<u8>, u16, &str)> = vec![
            (None, good.clone(), 401, "unauthorized"),
            (Some("wrong-key"), good.clone(), 401, "unauthorized"),
            (key, b"{not json".to_vec(), 422, "invalid_request"),
            (key, json!({"user_id": "u1", "sku": "diamonds_60", "price": "0.01"}).to_string().into_bytes(), 422, "invalid_request"),
            (key, json!({"user_id": "u1", "sku": "gold_bars"}).to_string().into_bytes(), 422, "unknown_sku"),
            (key, json!({"user_id": "u1", "sku": "diamonds_60", "quantity": 0}).to_string().into_bytes(), 422, "invalid_quantity"),
            (key, json!({"user_id": "u1", "sku": "diamonds_60", "quantity": 11}).to_string().into_bytes(), 422, "invalid_quantity"),
            (key, json!({"user_id": "u1", "sku": "diamonds_60", "quantity": -5}).to_string().into_bytes(), 422, "invalid_quantity"),
            (key, json!({"user_id": "bad user\n", "sku": "diamonds_60"}).to_string().into_bytes(), 422, "invalid_user_id"),
            (key, json!({"user_id": "u1", "sku": "diamonds_60", "provider": "paypal"}).to_string().into_bytes(), 422, "unknown_provider"),
            (key, vec![b' '; 70 * 1024], 413, "body_too_large"),
        ];
        for (key, body, status, expected) in cases {
            let (got, response) = raw_post(&h, key, body, None).await;
            assert_eq!((got, code(&response)), (status, expected), "{response}");
            assert!(response["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert!(response["error"]["request_id"].as_str().is_some_and(|id| id.len() >= 32), "{response}");
        }
        assert_eq!(order_count(db).await, 0, "nothing stored");
        let (status, _) = raw_post(&h, key, good, None).await;
        assert_eq!(status, 201, "and the server keeps serving");
        h.stop().await;
    }
}

both_engines! {
    async fn every_answer_carries_its_request_id_and_errors_echo_it(db) {
        let h = Harness::start(db, calm(), fast()).await;
        let send = |id: Option<&'static str>, path: &'static str| {
            let mut request = h.client.http.get(format!("{}{path}", h.server.base_url));
            if let Some(id) = id {
                request = request.header("x-request-id", id);
            }
            request.send()
        };
        // The caller's id is kept: in the header and in the error body.
        let response = send(Some("trace-me-123"), "/v1/orders/ZD0000000000").await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["x-request-id"], "trace-me-123");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["request_id"], "trace-me-123", "{body}");
        // Without one, zerodrop makes one, the same in both places; unknown routes too.
        let response = send(None, "/no/such/route").await.unwrap();
        assert_eq!(response.status(), 404);
        let header = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        assert_eq!((code(&body), body["error"]["request_id"].as_str()), ("not_found", Some(header.as_str())));
        // A route asked with the wrong method answers in the documented shape too.
        let response = h.client.http.delete(format!("{}/v1/orders", h.server.base_url)).send().await.unwrap();
        assert_eq!(response.status(), 405);
        let body: Value = response.json().await.unwrap();
        assert_eq!(code(&body), "method_not_allowed", "{body}");
        assert!(body["error"]["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{body}");
        // A forged id (too long, bytes that are not ASCII) reaches no log or body as sent:
        // it is cut to 128 printable characters there.
        let forged = format!("{}\u{e9}<script>", "a".repeat(300));
        let response = h
            .client
            .http
            .get(format!("{}/v1/orders/ZD0000000000", h.server.base_url))
            .header("x-request-id", reqwest::header::HeaderValue::from_bytes(forged.as_bytes()).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        let id = body["error"]["request_id"].as_str().unwrap_or_default();
        assert!(id.len() == 128 && id.bytes().all(|b| b.is_ascii_graphic()), "{body}");
        // Successful answers carry it too.
        let response = send(None, "/healthz").await.unwrap();
        assert!(response.status().is_success() && response.headers().contains_key("x-request-id"));
        h.stop().await;
    }
}

both_engines! {
    async fn idempotency_keys_replay_the_first_answer_and_refuse_a_different_body(db) {
        let h = Harness::start(db, calm(), fast()).await;
        let key = Some(zerodrop::stack::API_KEY);
        let body = json!({"user_id": "u1", "sku": "svip_30d"}).to_string().into_bytes();
        let (s1, first) = raw_post(&h, key, body.clone(), Some("order-42")).await;
        let (s2, second) = raw_post(&h, key, body, Some("order-42")).await;
        assert_eq!((s1, s2), (201, 201));
        assert_eq!(first, second, "a replay returns the first result, byte for byte");
        let other = json!({"user_id": "u1", "sku": "svip_90d"}).to_string().into_bytes();
        let (s3, conflict) = raw_post(&h, key, other, Some("order-42")).await;
        assert_eq!((s3, code(&conflict)), (409, "idempotency_key_reused"));
        let (s4, bad) = raw_post(&h, key, b"{}".to_vec(), Some(&"k".repeat(256))).await;
        assert_eq!((s4, code(&bad)), (422, "invalid_idempotency_key"));
        assert_eq!(order_count(db).await, 1);

        // Many concurrent retries of one request create one order.
        let body = json!({"user_id": "u2", "sku": "diamonds_60"}).to_string().into_bytes();
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let (http, url, body) = (h.client.http.clone(), format!("{}/v1/orders", h.server.base_url), body.clone());
            tasks.push(tokio::spawn(async move {
                let r = http.post(url).bearer_auth(zerodrop::stack::API_KEY).header("idempotency-key", "burst-1")
                    .header("content-type", "application/json").body(body).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        assert!(answers.iter().all(|(s, b)| *s == 201 && b == &answers[0].1), "{answers:?}");
        assert_eq!(order_count(db).await, 2);
        h.stop().await;
    }
}

both_engines! {
    async fn reads_refuse_unknown_and_malformed_ids(db) {
        let h = Harness::start(db, calm(), fast()).await;
        for path in ["/v1/orders/ZD000000000000", "/v1/orders/not-an-order", "/v1/nothing-here"] {
            let (status, body) = h.client.get(path).await.unwrap();
            assert_eq!(status, 404, "{path}: {body}");
            assert!(code(&body).ends_with("not_found"), "{body}");
        }
        let (status, body) = h.client.get("/v1/users/bad%20id/wallet").await.unwrap();
        assert_eq!((status, code(&body)), (422, "invalid_user_id"));
        let (status, body) = h.client.get("/v1/users/nobody/wallet").await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body["balances"], json!([]));
        let unauthenticated = h.client.http.get(format!("{}/v1/users/u/wallet", h.server.base_url)).send().await.unwrap();
        assert_eq!(unauthenticated.status().as_u16(), 401);
        h.stop().await;
    }
}

both_engines! {
    async fn operations_endpoints_report_truthfully(db) {
        // An order that cannot expire while the test reads the metrics.
        let h = Harness::start(db, calm(), crate::support::notifications_only()).await;
        h.order("u1", "diamonds_60").await;
        let get = |path: &'static str| {
            let (http, url) = (h.client.http.clone(), format!("{}{path}", h.server.base_url));
            async move {
                let r = http.get(url).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }
        };
        assert_eq!(get("/healthz").await, (200, "ok".into()));
        assert_eq!(get("/readyz").await, (200, "ready".into()));
        let (status, metrics) = get("/metrics").await;
        assert_eq!(status, 200);
        assert!(metrics.contains("zerodrop_orders{status=\"awaiting_payment\"} 1"), "{metrics}");
        assert!(metrics.contains("zerodrop_jobs{kind=\"expire_order\",state=\"queued\"} 1"), "{metrics}");
        h.stop().await;
    }
}

/// Every route the router declares is in the OpenAPI document, and every documented
/// path answers (is not the router's fallback).
#[tokio::test]
async fn the_openapi_document_matches_the_router() {
    let doc: Value = serde_json::from_str(zerodrop_server::http::OPENAPI_JSON).unwrap();
    let documented: std::collections::BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let source = include_str!("../../../server/src/http/mod.rs");
    let routed: std::collections::BTreeSet<String> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix(".route(\""))
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect();
    assert_eq!(documented, routed);

    let db = zerodrop_store::testing::TestDb::sqlite().await;
    let h = Harness::start(&db, calm(), fast()).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let url = format!(
                "{}{}",
                h.server.base_url,
                path.replace("{order_no}", "ZD000000000000").replace("{user_id}", "u").replace("{provider}", "sandbox")
            );
            let request = match method.as_str() {
                "get" => h.client.http.get(url),
                "post" => h.client.http.post(url).body("{}"),
                other => panic!("undocumented method {other}"),
            };
            let response = request.bearer_auth(zerodrop::stack::API_KEY).send().await.unwrap();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_ne!(body["error"]["code"], "not_found", "{method} {path} is documented but not routed");
        }
    }
    h.stop().await;
    db.finish().await;
}
