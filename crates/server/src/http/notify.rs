//! `POST /v1/providers/{provider}/notify`: reads the body (up to the limit) and hands the
//! request to notification intake, then answers in the provider's own protocol.

use super::error::ApiError;
use crate::app::App;
use crate::intake::{self, Intake, Request, NOTIFY_BODY_BYTES_MAX};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use zerodrop_providers::{Ack, AckKind};

pub async fn notify(
    State(app): State<App>,
    Path(provider): Path<String>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A body that breaks off is stored (empty) and refused like any unverifiable one.
    let bytes = super::extract::read_limited(body, NOTIFY_BODY_BYTES_MAX).await.unwrap_or(Some(Bytes::new()));
    let request = Request { provider_name: &provider, remote: Some(remote), headers: &headers, body: bytes.as_deref() };
    let provider_adapter = app.provider(&provider).cloned();
    if !app.readiness.is_ready() {
        // Nothing can be stored before the database is reached: the provider's own
        // "retry later" (Alipay: 503 `fail`), so it sends the notification again.
        return match provider_adapter {
            Some(adapter) => answer(adapter.ack(AckKind::RetryLater)),
            None => super::gate::not_ready().into_response(),
        };
    }
    let intake = Intake { store: &app.store, committer: &app.committer, refusals: &app.refusals };
    match intake::receive(&intake, provider_adapter, request).await {
        Some(ack) => answer(ack),
        None => {
            let body = format!("unknown provider (request id {})", ApiError::request_id());
            (StatusCode::NOT_FOUND, body).into_response()
        }
    }
}

/// The provider's acknowledgement as an HTTP response.
fn answer(ack: Ack) -> Response {
    let status = StatusCode::from_u16(ack.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("content-type", ack.content_type)], ack.body).into_response()
}
