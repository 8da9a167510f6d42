//! Honest figures: `GET /v1/stats` (JSON, merchant key) and the same figures as gauges in
//! `/metrics`. Both are read from the database at request time with the audit's notion of a
//! charge's outcome (`zerodrop_store::outcome`), so every instance reports the same truth.

use super::error::ApiError;
use super::extract::Merchant;
use crate::app::App;
use crate::config::Config;
use axum::extract::State;
use axum::Json;
use zerodrop_store::now_ms;
use zerodrop_store::outcome::{Bounds, DEADLINE_GRACE_MS_DEFAULT};
use zerodrop_store::stats::{self, Figures};

/// The bounds charges are judged by, from the configuration (as `zerodrop audit` uses them).
pub fn bounds(config: &Config) -> Bounds {
    Bounds { deadline_grace_ms: DEADLINE_GRACE_MS_DEFAULT, park_window_ms: config.charges.park_window_secs * 1000 }
}

/// The figures now, for the last hour, day and 30 days, in one read snapshot.
pub async fn figures(app: &App) -> Result<Figures, zerodrop_store::StoreError> {
    let mut snapshot = app.store.snapshot().await?;
    stats::figures(&mut snapshot, &bounds(&app.config), now_ms()).await
}

/// `GET /v1/stats`.
pub async fn get(State(app): State<App>, _: Merchant) -> Result<Json<Figures>, ApiError> {
    Ok(Json(figures(&app).await?))
}
