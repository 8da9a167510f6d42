//! zerodrop's server: the merchant API, provider notification intake, the one path by
//! which an order becomes paid, and the workers that run stored jobs.
//!
//! [`serve`] takes a bound listener and a shutdown signal, so tests bind port 0 and stop
//! the server when they are done.
//!
//! # Layout
//!
//! Folders follow the way a request travels; arrows are the only import directions
//! (a test, `tests/module_graph.rs`, refuses any cycle between modules):
//!
//! ```text
//! http ──▶ intake ──▶ flows ──▶ jobs (kinds: payloads, enqueue)
//!   │                   ▲          │
//!   └───────────────────┘          └─▶ each kind's run ──▶ flows
//! ```
//!
//! * [`http`]: routes, extractors (merchant key, body limit, idempotency), the error
//!   codes, JSON views and the user's status pages.
//! * [`intake`]: provider notifications: verify, store as evidence, group-commit, accept.
//! * [`flows`]: order, payment, delivery, refund, card-key stock, wallet; they take the
//!   store or a transaction and return their own errors, never HTTP ones.
//! * [`jobs`]: one module per job kind (its payload, limits, dedupe key and run) and the
//!   [`jobs::worker`] that claims and runs them.
//! * [`schedule`]: when providers are asked about an order (open-order cadence, the check
//!   call's burst, late sweeps): pure functions of time.
//! * [`sealer`]: the sealing job (signed checkpoints of the sealed record, the seal log).
//! * [`services`]: what flows and jobs are given; [`app`]: services plus the committer,
//!   as the server starts them; [`config`]; [`card_vault`]: card codes at rest.

pub mod app;
pub mod card_vault;
pub mod config;
pub mod flows;
pub mod http;
pub mod intake;
pub mod jobs;
pub mod schedule;
pub mod sealer;
pub mod services;

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
    let sealer = app.sealer.clone().filter(|_| app.config.jobs.enabled && app.config.seal.enabled).map(|key| {
        let store = app.services.store.clone();
        tokio::spawn(sealer::run(store, app.config.seal.clone(), key, stop_rx.clone()))
    });
    let workers = app.config.jobs.enabled.then(|| tokio::spawn(jobs::worker::run(app.services.clone(), stop_rx)));
    let router = http::router(app.clone());
    let served = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
    if let Some(workers) = workers {
        let _ = workers.await;
    }
    // After the workers: their last commits are in the final checkpoint.
    if let Some(sealer) = sealer {
        let _ = sealer.await;
    }
    served
}
