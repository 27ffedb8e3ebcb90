//! The background pass every replica runs each tick: write batched last-seen times,
//! advance rollouts (timeouts, gates, soak), refresh the live-rollout view, re-sign
//! TUF metadata before it expires, and delete artifacts no signed targets list. Every step is a compare-and-set in the database, so
//! replicas running it at the same time do each thing once.

use std::time::Duration;

use crate::app::AppState;
use crate::db::now_ms;

/// Runs until the process ends; a failed step is logged and tried again next tick.
pub async fn run(state: AppState) {
    let mut interval = tokio::time::interval(Duration::from_millis(state.config.tick_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        tick(&state).await;
    }
}

/// One pass.
pub async fn tick(state: &AppState) {
    if let Err(err) = state.devices.flush_seen(&state.db).await {
        tracing::error!(error = %format!("{err:#}"), "cannot write last-seen times");
    }
    let now = now_ms();
    if let Err(err) = state.engine.tick(now).await {
        tracing::error!(error = %err, "rollout pass failed");
    }
    if let Err(err) = state.live.refresh(&state.engine).await {
        tracing::error!(error = %err, "cannot refresh the live rollouts");
    }
    if let Err(err) = state.repo.refresh_expiring(now).await {
        tracing::error!(error = %format!("{err:#}"), "cannot re-sign TUF metadata");
    }
    let grace = Duration::from_secs(state.config.unlisted_artifact_grace_s);
    if let Err(err) = state
        .repo
        .sweep_unlisted(&state.artifacts, grace, now)
        .await
    {
        tracing::error!(error = %format!("{err:#}"), "cannot sweep unlisted artifacts");
    }
}
