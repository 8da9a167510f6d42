//! Every error response is the documented JSON (`{"error": {"code", "message",
//! "request_id"}}`), including what is refused before zerodrop's own checks run: an
//! unknown route, a method a route does not take, a body over the limit, a body that is
//! not JSON, a path parameter that is not UTF-8, a bad query. Over real HTTP. Provider
//! notification routes answer in the provider's protocol, as documented.

use crate::support::{calm, fast, Harness};
use reqwest::Method;
use serde_json::Value;
use zerodrop_store::both_engines;

/// One request and the error it must get.
struct Case {
    method: Method,
    path: &'static str,
    body: Option<Vec<u8>>,
    merchant_key: bool,
    status: u16,
    code: &'static str,
}

fn case(method: Method, path: &'static str, merchant_key: bool, status: u16, code: &'static str) -> Case {
    Case { method, path, body: None, merchant_key, status, code }
}

fn cases() -> Vec<Case> {
    let oversized = vec![b'x'; 70 * 1024];
    vec![
        case(Method::GET, "/nope", false, 404, "not_found"),
        case(Method::GET, "/v1/orders/ZD000000000000/nope", true, 404, "not_found"),
        case(Method::GET, "/v1/orders", true, 405, "method_not_allowed"),
        case(Method::DELETE, "/v1/orders/ZD000000000000", true, 405, "method_not_allowed"),
        case(Method::PUT, "/healthz", false, 405, "method_not_allowed"),
        case(Method::POST, "/v1/orders", false, 401, "unauthorized"),
        Case { body: Some(oversized), ..case(Method::POST, "/v1/orders", true, 413, "body_too_large") },
        Case { body: Some(b"{oops".to_vec()), ..case(Method::POST, "/v1/orders", true, 422, "invalid_request") },
        Case { body: Some(b"{}".to_vec()), ..case(Method::POST, "/v1/orders", true, 422, "invalid_request") },
        // Path parameters that are not UTF-8: refused by the router before any handler.
        case(Method::GET, "/v1/orders/%FF", true, 400, "bad_request"),
        case(Method::GET, "/v1/attention/%FF%FE", true, 400, "bad_request"),
        case(Method::POST, "/v1/orders/%FF/delivery", false, 400, "bad_request"),
        case(Method::POST, "/v1/orders/%C3%28/refunds", true, 400, "bad_request"),
        case(Method::POST, "/v1/users/%FF/wallet/spend", true, 422, "invalid_user_id"),
        // A query that does not fit its fields.
        case(Method::GET, "/v1/attention?limit=many", true, 422, "invalid_request"),
        case(Method::GET, "/v1/attention?overdue=perhaps", true, 422, "invalid_request"),
    ]
}

both_engines! {
    async fn every_error_response_is_the_documented_json(db) {
        let h = Harness::start(db, calm(), fast()).await;
        for case in cases() {
            let what = format!("{} {}", case.method, case.path);
            let mut request = h.client.http.request(case.method.clone(), format!("{}{}", h.server.base_url, case.path));
            if case.merchant_key {
                request = request.bearer_auth(zerodrop::stack::API_KEY);
            }
            if let Some(body) = case.body {
                request = request.body(body);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), case.status, "{what}");
            let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            assert!(content_type.starts_with("application/json"), "{what}: content-type {content_type}");
            let request_id = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            let text = response.text().await.unwrap();
            let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
            assert_eq!(body["error"]["code"], case.code, "{what}: {text}");
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {text}");
            assert!(!request_id.is_empty(), "{what}: every response carries its id");
            assert_eq!(body["error"]["request_id"], request_id.as_str(), "{what}: the body repeats the id");
        }
        // Provider routes answer in the provider's protocol, as documented.
        let (status, text) = h.post_notification("sandbox", b"not a notification".to_vec()).await;
        assert_eq!((status, text.as_str()), (400, "fail"));
        let (status, text) = h.post_notification("nobody", b"x".to_vec()).await;
        assert_eq!(status, 404);
        assert!(text.starts_with("unknown provider"), "{text}");
        h.stop().await;
    }
}
