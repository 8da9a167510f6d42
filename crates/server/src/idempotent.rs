//! `Idempotency-Key` for requests that create something (orders, refunds, spends): a
//! replay returns the first response byte for byte, a different body under the same key
//! is refused, and concurrent retries create one thing.

use crate::app::App;
use crate::error::ApiError;
use axum::http::{HeaderMap, StatusCode};
use zerodrop_store::idempotency::{self, Stored};
use zerodrop_store::{now_ms, Tx};

/// Longest accepted key, as Stripe allows.
pub const KEY_CHARS_MAX: usize = 255;

pub struct Idempotency {
    scope: String,
    key: String,
    request_hash: String,
}

impl Idempotency {
    /// Reads the header (if any) and hashes the body. `scope` keeps endpoints (and the
    /// resource they act on) apart, so one key can serve two endpoints without clashing.
    pub fn from_request(scope: &str, headers: &HeaderMap, body: &[u8]) -> Result<Option<Idempotency>, ApiError> {
        let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
        let key = value
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= KEY_CHARS_MAX && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::invalid(
                    "invalid_idempotency_key",
                    format!("Idempotency-Key must be 1 to {KEY_CHARS_MAX} visible ASCII characters"),
                )
            })?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
        let request_hash = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Some(Idempotency { scope: scope.to_owned(), key: key.to_owned(), request_hash }))
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The stored answer to an earlier request with this key, if there was one.
    pub async fn replay(&self, app: &App) -> Result<Option<(StatusCode, String)>, ApiError> {
        let mut conn = app.store.reader().await?;
        match idempotency::get(&mut conn, &self.scope, &self.key).await? {
            Some(stored) => self.answer(stored).map(Some),
            None => Ok(None),
        }
    }

    fn answer(&self, stored: Stored) -> Result<(StatusCode, String), ApiError> {
        if stored.request_hash != self.request_hash {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request body",
            ));
        }
        Ok((StatusCode::from_u16(stored.status_code).unwrap_or(StatusCode::OK), stored.response))
    }
}

/// Commits `tx` with the response remembered under the key (if any). When a concurrent
/// request with the same key committed first, `tx` rolls back (nothing is created twice)
/// and that request's answer is returned instead.
pub async fn commit(
    app: &App,
    idempotency: Option<&Idempotency>,
    mut tx: Tx,
    status: StatusCode,
    body: String,
) -> Result<(StatusCode, String), ApiError> {
    if let Some(idem) = idempotency {
        let stored =
            Stored { request_hash: idem.request_hash.clone(), status_code: status.as_u16(), response: body.clone() };
        if !idempotency::put(&mut tx, &idem.scope, &idem.key, &stored, now_ms()).await? {
            drop(tx);
            return idem.replay(app).await?.ok_or_else(|| ApiError::internal("idempotency key vanished"));
        }
    }
    tx.commit().await?;
    Ok((status, body))
}
