//! zerodrop's server: the merchant API, provider notification intake, the one path by
//! which an order becomes paid, and the workers that run stored jobs.
//!
//! [`serve`] takes a bound listener and a shutdown signal, so tests bind port 0 and stop
//! the server when they are done.

pub mod api;
pub mod app;
pub mod committer;
pub mod config;
pub mod delivery;
pub mod detail;
pub mod error;
pub mod external;
pub mod idempotent;
pub mod jobs;
pub mod notify;
pub mod order;
pub mod pages;
pub mod payment;
pub mod refund;
pub mod stock;
pub mod vault;
pub mod views;
pub mod words;

pub use app::App;
pub use config::Config;

use std::future::Future;
use std::net::SocketAddr;

/// Serves the API and runs the job workers until `shutdown` resolves; then stops taking
/// requests, lets in-flight work finish, and returns.
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = app.config.jobs.enabled.then(|| tokio::spawn(jobs::run(app.clone(), stop_rx)));
    let router = api::router(app.clone());
    let served = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
    if let Some(workers) = workers {
        let _ = workers.await;
    }
    served
}
