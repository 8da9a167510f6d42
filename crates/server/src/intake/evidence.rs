//! Raw notifications as evidence: what is kept of a request (never its credentials) and
//! how it is stored with its verdict. (A stored one is verified again later with
//! `zerodrop_providers::verify_stored`.)

use axum::http::HeaderMap;
use std::net::SocketAddr;
use zerodrop_providers::Notice;
use zerodrop_store::notifications::{self, NewNotification, Verdict};
use zerodrop_store::{now_ms, Store, StoreError, Tx};

/// Headers that are never stored with the evidence.
const HEADERS_NOT_STORED: &[&str] = &["authorization", "cookie", "proxy-authorization"];
/// Longest provider name, order number, trade number or notify id kept, in characters.
const FIELD_CHARS_MAX: usize = 128;
/// Longest header value kept, in characters.
const HEADER_CHARS_MAX: usize = 512;
/// Longest verdict reason kept, in characters.
const REASON_CHARS_MAX: usize = 500;
/// Headers kept of any request, in bytes of their JSON: a provider sends a handful.
const HEADERS_BYTES_MAX: usize = 4 * 1024;
/// Headers kept of a refused, unverified request: its body keeps 8 KiB, and headers are
/// not a way around that bound.
const REFUSED_HEADERS_BYTES_MAX: usize = 1024;
/// The entry that says how many headers were left out.
const HEADERS_LEFT_OUT: &str = "x-zerodrop-headers-left-out";

/// A received notification as it is stored: owned, so it can wait for the committer.
pub struct Inbound {
    pub provider: String,
    pub remote: Option<String>,
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
}

impl Inbound {
    pub fn new(provider: &str, remote: Option<SocketAddr>, headers: &HeaderMap, body: &[u8]) -> Inbound {
        Inbound {
            provider: clip(provider),
            remote: remote.map(|a| a.to_string()),
            headers: stored_headers(headers, HEADERS_BYTES_MAX),
            body: body.to_vec(),
        }
    }
}

/// What a row says about the notification besides its body.
#[derive(Default)]
pub struct Fields<'a> {
    pub order_no: Option<&'a str>,
    pub trade_no: Option<&'a str>,
    pub notify_id: Option<&'a str>,
    /// Refused, and never verified as the provider's: kept in part (its first 8 KiB,
    /// the whole body's hash and length), and pruned after its retention.
    pub refused_unverified: bool,
}

impl<'a> Fields<'a> {
    pub fn of(notice: &'a Notice) -> Fields<'a> {
        Fields {
            order_no: Some(notice.order_no.as_str()),
            trade_no: notice.trade_no.as_deref(),
            notify_id: notice.notify_id.as_deref(),
            refused_unverified: false,
        }
    }
}

/// Stores the raw notification with its verdict in the caller's transaction.
pub fn insert(
    tx: &mut Tx,
    inbound: &Inbound,
    verdict: Verdict,
    reason: Option<&str>,
    fields: Fields<'_>,
    now: i64,
) -> i64 {
    let headers = if fields.refused_unverified {
        bounded(&inbound.headers, REFUSED_HEADERS_BYTES_MAX)
    } else {
        inbound.headers.clone()
    };
    let row = NewNotification {
        provider: &inbound.provider,
        remote_addr: inbound.remote.clone(),
        headers,
        body: &inbound.body,
        refused_unverified: fields.refused_unverified,
        verdict,
        reason: reason.map(|r| r.chars().take(REASON_CHARS_MAX).collect()),
        order_no: fields.order_no.map(clip),
        trade_no: fields.trade_no.map(clip),
        notify_id: fields.notify_id.map(clip),
    };
    notifications::insert(tx, &row, now)
}

/// Stores the raw notification with its verdict in its own transaction (there is nothing
/// else to do with it).
pub async fn store_alone(
    store: &Store,
    inbound: &Inbound,
    verdict: Verdict,
    reason: &str,
    refused_unverified: bool,
) -> Result<i64, StoreError> {
    let mut tx = store.begin().await?;
    let fields = Fields { refused_unverified, ..Fields::default() };
    let id = insert(&mut tx, inbound, verdict, Some(reason), fields, now_ms());
    tx.commit().await?;
    Ok(id)
}

fn clip(text: &str) -> String {
    text.chars().take(FIELD_CHARS_MAX).collect()
}

fn stored_headers(headers: &HeaderMap, bytes_max: usize) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        if HEADERS_NOT_STORED.contains(&name.as_str()) {
            continue;
        }
        let text: String = String::from_utf8_lossy(value.as_bytes()).chars().take(HEADER_CHARS_MAX).collect();
        map.insert(name.as_str().to_owned(), serde_json::Value::String(text));
    }
    bounded(&serde_json::Value::Object(map), bytes_max)
}

/// The headers whose JSON fits in `bytes_max` (in their order), and how many were left out.
fn bounded(headers: &serde_json::Value, bytes_max: usize) -> serde_json::Value {
    let Some(all) = headers.as_object() else { return headers.clone() };
    let mut kept = serde_json::Map::new();
    let mut used = 2; // the braces
    let mut left_out = 0;
    for (name, value) in all {
        // "name":"value", with quotes, colon and comma.
        let size = name.len() + value.to_string().len() + 4;
        if used + size > bytes_max {
            left_out += 1;
            continue;
        }
        used += size;
        kept.insert(name.clone(), value.clone());
    }
    if left_out > 0 {
        kept.insert(HEADERS_LEFT_OUT.into(), serde_json::Value::from(left_out));
    }
    serde_json::Value::Object(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_headers_are_bounded_and_say_what_was_left_out() {
        let mut headers = HeaderMap::new();
        for i in 0..100 {
            let name = axum::http::HeaderName::from_bytes(format!("x-flood-{i}").as_bytes()).unwrap();
            headers.insert(name, "v".repeat(600).parse().unwrap());
        }
        headers.insert("authorization", "Bearer secret".parse().unwrap());
        let stored = stored_headers(&headers, HEADERS_BYTES_MAX);
        assert!(stored.to_string().len() <= HEADERS_BYTES_MAX + 64, "{}", stored.to_string().len());
        assert!(stored.get(HEADERS_LEFT_OUT).is_some());
        assert!(stored.get("authorization").is_none(), "credentials are never stored");
        let refused = bounded(&stored, REFUSED_HEADERS_BYTES_MAX);
        assert!(refused.to_string().len() <= REFUSED_HEADERS_BYTES_MAX + 64);
    }
}
