//! The protocol of the platform's own delivery endpoint (a game server's top-up API, say):
//! signing requests, verifying confirmations, and one attempt at sending.
//!
//! zerodrop POSTs a JSON delivery request signed with HMAC-SHA256 over `timestamp.body`
//! (headers `X-Zerodrop-Timestamp` and `X-Zerodrop-Signature: v1=<hex>`), with the order
//! id as `Idempotency-Key` and a fresh `attempt` id in the body. 2xx means delivered; 202
//! means accepted, to be confirmed later through `POST /v1/orders/{order_no}/delivery`
//! signed the same way, naming the order and the attempt (accepted once); 4xx is a permanent
//! refusal; a redirect or a 5xx is a failure, retried. A request that went out and got no
//! complete answer (a timeout, a connection broken mid-way) is *unknown*: the endpoint may
//! have delivered, so only a later definite answer to the same idempotency key (which the
//! endpoint answers with its original result) decides the order.

use crate::config::EndpointConfig;
use aws_lc_rs::hmac;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use zerodrop_store::orders::OrderRow;

pub const TIMESTAMP_HEADER: &str = "x-zerodrop-timestamp";
pub const SIGNATURE_HEADER: &str = "x-zerodrop-signature";
/// Confirmations signed further than this from our clock are refused (replays included).
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;
/// Kept of each response, for the timeline.
pub const RESPONSE_EXCERPT_CHARS_MAX: usize = 200;
/// Read of each response at most; endpoints answer briefly.
pub const RESPONSE_BYTES_MAX: usize = 16 * 1024;

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    let tag = hmac::sign(&key, &message);
    format!("v1={}", hex::encode(tag.as_ref()))
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Zerodrop-Timestamp and X-Zerodrop-Signature headers are required")]
    Missing,
    #[error("the signature's timestamp is more than {SIGNATURE_TOLERANCE_SECS} s from now")]
    Stale,
    #[error("the signature does not match")]
    Bad,
}

/// Verifies a confirmation in constant time (aws-lc's HMAC verification).
pub fn verify(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let timestamp: i64 = timestamp.trim().parse().map_err(|_| SignatureError::Bad)?;
    if (now_secs - timestamp).abs() > SIGNATURE_TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let mac_hex = signature.trim().strip_prefix("v1=").ok_or(SignatureError::Bad)?;
    let tag = decode_mac(mac_hex).ok_or(SignatureError::Bad)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    hmac::verify(&key, &message, &tag).map_err(|_| SignatureError::Bad)
}

/// Longest hex MAC accepted, in characters (SHA-512's, twice over SHA-256's).
const MAC_HEX_CHARS_MAX: usize = 128;

/// Decodes a short hex string (a MAC); `None` for anything else.
fn decode_mac(text: &str) -> Option<Vec<u8>> {
    if text.len() > MAC_HEX_CHARS_MAX {
        return None;
    }
    hex::decode(text).ok()
}

/// A fresh id for one request to the endpoint: 128 random bits, hex. The endpoint names
/// it when it confirms an accepted request, so each confirmation is bound to one attempt.
pub fn new_attempt_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The delivery request the endpoint receives. `attempt` names this request; repeats
/// of the order's request carry new ones under the same idempotency key.
pub fn request_body(order: &OrderRow, attempt: &str) -> Value {
    let payload = match &order.product.kind {
        zerodrop_domain::ProductKind::External { payload, .. } => payload.clone(),
        _other => Value::Null,
    };
    json!({
        "order_no": order.order_no,
        "order_id": order.id.to_string(),
        "user_id": order.user_id,
        "sku": order.product.sku,
        "quantity": order.quantity,
        "amount": order.amount.to_decimal(),
        "currency": order.amount.currency.code(),
        "paid_at_ms": order.paid_at_ms,
        "payload": payload,
        "attempt": attempt,
    })
}

/// What the endpoint answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Delivered,
    Accepted,
    /// A 4xx: the endpoint will never deliver this order.
    Refused,
    /// An answer saying the endpoint did not deliver (yet): a redirect, a 5xx, a 408 or
    /// 429, or a connection never made. Try again.
    Failed(String),
    /// No complete answer to a request that may have reached the endpoint (a timeout, a
    /// connection broken after sending, a response cut off): it may have delivered. Never
    /// taken as a failure; sent again with the same key until a definite answer.
    Unknown(String),
}

impl Answer {
    /// True when the answer decides the order: delivered, or refused for good.
    pub fn is_definite(&self) -> bool {
        match self {
            Answer::Delivered | Answer::Refused => true,
            Answer::Accepted | Answer::Failed(_) | Answer::Unknown(_) => false,
        }
    }
}

/// One attempt, as the timeline records it.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The `attempt` the request carried.
    pub id: String,
    pub answer: Answer,
    pub status: Option<u16>,
    pub latency_ms: i64,
    pub excerpt: String,
}

pub async fn send(client: &reqwest::Client, endpoint: &EndpointConfig, order: &OrderRow, now_secs: i64) -> Attempt {
    let id = new_attempt_id();
    let body = request_body(order, &id).to_string().into_bytes();
    let started = Instant::now();
    let response = client
        .post(&endpoint.url)
        .timeout(Duration::from_millis(endpoint.timeout_ms))
        .header("content-type", "application/json")
        .header("idempotency-key", order.id.to_string())
        .header(TIMESTAMP_HEADER, now_secs.to_string())
        .header(SIGNATURE_HEADER, sign(endpoint.secret.expose(), now_secs, &body))
        .body(body)
        .send()
        .await;
    let mut response = match response {
        Ok(response) => response,
        Err(e) => {
            // Only a request that never left (no connection, or not even built) is a
            // plain failure; past that point the endpoint may have acted on it.
            let answer = if e.is_connect() && !e.is_timeout() {
                Answer::Failed("connection failed".into())
            } else if e.is_builder() {
                Answer::Failed("request not built".into())
            } else if e.is_timeout() {
                Answer::Unknown("timed out".into())
            } else {
                Answer::Unknown("the connection broke before an answer".into())
            };
            return Attempt { id, answer, status: None, latency_ms: elapsed_ms(started), excerpt: String::new() };
        }
    };
    let status = response.status().as_u16();
    let mut bytes = Vec::new();
    let mut broken = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if bytes.len() < RESPONSE_BYTES_MAX => bytes.extend_from_slice(&chunk),
            Ok(Some(_)) | Ok(None) => break,
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    let excerpt: String = String::from_utf8_lossy(&bytes)
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .take(RESPONSE_EXCERPT_CHARS_MAX)
        .collect();
    let answer = match status {
        // The status line arrived but not the whole answer: taken as unknown, so a cut-off
        // 2xx is confirmed by asking again rather than guessed either way.
        _ if broken => Answer::Unknown("the response broke off".into()),
        202 => Answer::Accepted,
        200..=299 => Answer::Delivered,
        // 408 and 429 say "later", not "never".
        408 | 429 => Answer::Failed(format!("HTTP {status}")),
        400..=499 => Answer::Refused,
        _ => Answer::Failed(format!("HTTP {status}")),
    };
    Attempt { id, answer, status: Some(status), latency_ms: elapsed_ms(started), excerpt }
}

fn elapsed_ms(started: Instant) -> i64 {
    i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_refuse_tampering_and_staleness() {
        let secret = "a-secret-of-some-length";
        let body = br#"{"status":"delivered"}"#;
        let signature = sign(secret, 1_000, body);
        assert_eq!(verify(secret, Some("1000"), Some(&signature), body, 1_100), Ok(()));
        assert_eq!(verify(secret, Some("1000"), Some(&signature), b"{}", 1_100), Err(SignatureError::Bad));
        assert_eq!(
            verify("another-secret-entirely", Some("1000"), Some(&signature), body, 1_100),
            Err(SignatureError::Bad)
        );
        assert_eq!(verify(secret, Some("1000"), Some(&signature), body, 2_000), Err(SignatureError::Stale));
        assert_eq!(verify(secret, None, Some(&signature), body, 1_000), Err(SignatureError::Missing));
        assert_eq!(verify(secret, Some("1000"), Some("v1=zz"), body, 1_000), Err(SignatureError::Bad));
        assert_eq!(verify(secret, Some("x"), Some(&signature), body, 1_000), Err(SignatureError::Bad));
    }
}
