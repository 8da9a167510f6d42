//! The Alipay adapter's refund calls against a one-shot local gateway that answers with
//! a correctly signed response: a genuine answer about another refund (another request
//! number, trade or order) is a `BadResponse`, never a settled refund.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zerodrop_domain::money::{Currency, Money};
use zerodrop_providers::alipay::sign::response_key;
use zerodrop_providers::alipay::{Alipay, AlipayConfig};
use zerodrop_providers::keys::{RsaPrivateKey, RsaPublicKey};
use zerodrop_providers::{OrderRef, Provider, ProviderError, RefundRef, RefundStatus};

fn vector(name: &str) -> String {
    let path = format!("{}/../../tests/fixtures/provider-vectors/alipay/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Serves one gateway call: reads the request, answers `content` for `method`, signed with
/// the key the adapter trusts as Alipay's. Returns the gateway URL.
async fn gateway_answering(method: &'static str, content: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/gateway.do", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        // Headers, then as many body bytes as Content-Length says.
        loop {
            let n = socket.read(&mut buffer).await.unwrap();
            request.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&request).to_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        let key = RsaPrivateKey::parse(&vector("nodejs-sdk_app-private-key.pem"), "gateway key").unwrap();
        let text = content.to_string();
        let sign = key.sign_sha256_base64(text.as_bytes()).unwrap();
        let body = format!("{{\"{}\":{text},\"sign\":{}}}", response_key(method), Value::String(sign));
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        socket.shutdown().await.ok();
    });
    url
}

fn adapter(gateway_url: String) -> Alipay {
    Alipay::new(AlipayConfig {
        name: "alipay".into(),
        app_id: "2021000000000001".into(),
        seller_id: "2088000000000001".into(),
        gateway_url,
        notify_url: "http://127.0.0.1:9/v1/providers/alipay/notify".into(),
        app_private_key: RsaPrivateKey::parse(&vector("nodejs-sdk_app-private-key.pem"), "app key").unwrap(),
        // The one-shot gateway signs with the app key pair: its public half is "Alipay's".
        alipay_public_key: RsaPublicKey::parse(&vector("nodejs-sdk_app-public-key.pem"), "alipay key").unwrap(),
        timeout_ms: 3_000,
    })
    .unwrap()
}

fn our_refund() -> RefundRef {
    RefundRef {
        order: OrderRef {
            order_no: "ZD0000000000AB".into(),
            amount: Money::new(600, Currency::Cny),
            subject: "60 diamonds".into(),
            expires_at_ms: 0,
            trade_no: None,
        },
        trade_no: Some("2026010122001400000000000001".into()),
        request_no: "ZD0000000000ABR1".into(),
        amount: Money::new(600, Currency::Cny),
        reason: "test".into(),
    }
}

/// A successful refund query answer for our refund, with `change` applied.
fn query_answer(change: impl FnOnce(&mut Value)) -> Value {
    let mut answer = json!({
        "code": "10000", "msg": "Success",
        "trade_no": "2026010122001400000000000001", "out_trade_no": "ZD0000000000AB",
        "out_request_no": "ZD0000000000ABR1", "total_amount": "6.00",
        "refund_status": "REFUND_SUCCESS", "refund_amount": "6.00",
    });
    change(&mut answer);
    answer
}

const QUERY: &str = "alipay.trade.fastpay.refund.query";

#[tokio::test]
async fn a_refund_query_answer_about_another_refund_is_a_bad_response() {
    // Our own refund, answered: it succeeded (the control: the one-shot gateway works).
    let alipay = adapter(gateway_answering(QUERY, query_answer(|_| {})).await);
    assert_eq!(alipay.query_refund(&our_refund()).await.unwrap(), RefundStatus::Succeeded);

    for (field, other) in [
        ("out_request_no", "ZD0000000000ABR2"),
        ("trade_no", "2026010122001400000000000002"),
        ("out_trade_no", "ZD0000000000CD"),
    ] {
        let answer = query_answer(|a| a[field] = json!(other));
        let alipay = adapter(gateway_answering(QUERY, answer).await);
        match alipay.query_refund(&our_refund()).await {
            Err(ProviderError::BadResponse(message)) => assert!(message.contains("another"), "{field}: {message}"),
            answer => panic!("{field} = {other}: {answer:?}"),
        }
    }
}

#[tokio::test]
async fn a_refund_answer_about_another_trade_is_a_bad_response() {
    let answer = json!({
        "code": "10000", "msg": "Success", "fund_change": "Y", "refund_fee": "6.00",
        "trade_no": "2026010122001400000000000002", "out_trade_no": "ZD0000000000AB",
    });
    let alipay = adapter(gateway_answering("alipay.trade.refund", answer).await);
    assert!(matches!(alipay.refund(&our_refund()).await, Err(ProviderError::BadResponse(_))));
}
