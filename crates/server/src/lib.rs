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
//!   as the server starts them; [`readiness`]: serving before the database is reached;
//!   [`config`]; [`card_vault`]: card codes at rest.

pub mod app;
pub mod card_vault;
pub mod config;
pub mod flows;
pub mod http;
pub mod intake;
pub mod jobs;
pub mod readiness;
pub mod report;
pub mod schedule;
pub mod sealer;
pub mod services;

pub use app::App;
pub use config::Config;

use std::future::Future;
use std::net::SocketAddr;

/// Serves the API and runs the job workers until `shutdown` resolves; then stops taking
/// requests, lets in-flight work finish, and returns.
///
/// An app that is not ready yet (see [`App::open`]) is served at once: `/healthz`
/// answers, everything that needs the database answers 503, and the database is tried
/// until it can be migrated; then the workers start. A database failure no retry can
/// fix stops the server and is returned as the error.
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The job workers and the sealing job start once the database is ready.
    let when_ready = |task: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>| {
        let (readiness, stop) = (app.readiness.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let mut stopped = stop;
            let ready = tokio::select! {
                _ = readiness.wait() => true,
                _ = stopped.wait_for(|stop| *stop) => false,
            };
            if ready {
                task.await;
            }
        })
    };
    let sealer =
        app.sealer.clone().filter(|_| app.config.jobs.enabled && app.config.seal.enabled).map(|key| {
            when_ready(Box::pin(sealer::run(app.store.clone(), app.config.seal.clone(), key, stop_rx.clone())))
        });
    let workers = app.config.jobs.enabled.then(|| {
        let services = app.services.clone();
        let stop = stop_rx.clone();
        when_ready(Box::pin(async move {
            jobs::reconcile_daily::ensure_scheduled(&services).await;
            jobs::worker::run(services, stop).await
        }))
    });
    let mut bring_up =
        readiness::BringUp::start(&app.store, app.catalog.plans(), &app.readiness, &app.config.database_url);
    // Where the shutdown future leaves the database error that ended the serving, if any.
    let failure = std::sync::Arc::new(std::sync::Mutex::new(None));
    let router = http::router(app.clone());
    let served = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown({
            let failure = failure.clone();
            async move {
                tokio::select! {
                    _ = shutdown => {}
                    e = bring_up.failed() => {
                        if let Ok(mut slot) = failure.lock() {
                            *slot = Some(e);
                        }
                    }
                }
                // Ends the attempts if they are still going.
                drop(bring_up);
                let _ = stop_tx.send(true);
            }
        })
        .await;
    if let Some(workers) = workers {
        let _ = workers.await;
    }
    // After the workers: their last commits are in the final checkpoint.
    if let Some(sealer) = sealer {
        let _ = sealer.await;
    }
    let failure = failure.lock().ok().and_then(|mut slot| slot.take());
    match failure {
        Some(e) => Err(std::io::Error::other(format!("database: {e}"))),
        None => served,
    }
}
