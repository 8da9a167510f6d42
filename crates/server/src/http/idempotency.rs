//! `Idempotency-Key` for requests that create something (orders, refunds, spends): a
//! replay returns the first response byte for byte, a different body under the same key
//! is refused, and concurrent retries create one thing.

use super::error::{ApiError, ErrorCode};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use zerodrop_store::idempotency::{self, Stored};
use zerodrop_store::{now_ms, Store, Tx};

/// Longest accepted key, as Stripe allows.
pub const KEY_CHARS_MAX: usize = 255;

/// A request's key, with the scope it is valid in and the hash of the request body.
pub struct IdempotencyKey {
    scope: String,
    key: String,
    request_hash: String,
}

impl IdempotencyKey {
    /// Reads the header (if any) and hashes the body. `scope` keeps endpoints (and the
    /// resource they act on) apart, so one key can serve two endpoints without clashing.
    pub fn from_request(scope: String, headers: &HeaderMap, body: &[u8]) -> Result<Option<IdempotencyKey>, ApiError> {
        let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
        let key = value
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= KEY_CHARS_MAX && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::invalid(
                    ErrorCode::InvalidIdempotencyKey,
                    format!("Idempotency-Key must be 1 to {KEY_CHARS_MAX} visible ASCII characters"),
                )
            })?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
        Ok(Some(IdempotencyKey { scope, key: key.to_owned(), request_hash: hex::encode(digest.as_ref()) }))
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The stored answer to an earlier request with this key, if there was one.
    pub async fn replay(&self, store: &Store) -> Result<Option<Response>, ApiError> {
        let mut conn = store.reader().await?;
        match idempotency::get(&mut conn, &self.scope, &self.key).await? {
            Some(stored) => self.answer(stored).map(Some),
            None => Ok(None),
        }
    }

    fn answer(&self, stored: Stored) -> Result<Response, ApiError> {
        if stored.request_hash != self.request_hash {
            return Err(ApiError::conflict(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request body",
            ));
        }
        Ok(json_response(StatusCode::from_u16(stored.status_code).unwrap_or(StatusCode::OK), stored.response))
    }
}

/// Commits `tx` with the response remembered under the key (if any). When a concurrent
/// request with the same key committed first, `tx` rolls back (nothing is created twice)
/// and that request's answer is returned instead.
pub async fn commit(
    store: &Store,
    key: Option<&IdempotencyKey>,
    mut tx: Tx,
    status: StatusCode,
    body: serde_json::Value,
) -> Result<Response, ApiError> {
    let body = body.to_string();
    if let Some(key) = key {
        let stored =
            Stored { request_hash: key.request_hash.clone(), status_code: status.as_u16(), response: body.clone() };
        if !idempotency::put(&mut tx, &key.scope, &key.key, &stored, now_ms()).await? {
            drop(tx);
            return key.replay(store).await?.ok_or_else(|| {
                ApiError::internal(&zerodrop_store::StoreError::Invariant("idempotency key vanished".into()))
            });
        }
    }
    tx.commit().await?;
    Ok(json_response(status, body))
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [("content-type", "application/json")], body).into_response()
}
