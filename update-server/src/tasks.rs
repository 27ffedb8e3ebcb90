//! The background pass every replica runs each tick: write batched last-seen times,
//! advance rollouts (timeouts, gates, soak), refresh the live-rollout view, re-sign
//! TUF metadata before it expires, write the audit log's counted refusals, and delete
//! artifacts no signed targets list. Every step is a compare-and-set in the database, so
//! replicas running it at the same time do each thing once. Once a minute, housekeeping:
//! the audit log's retention, expired attestation challenges, and forgetting rate-limit
//! state of clients that have gone quiet.

use std::time::Duration;

use crate::app::AppState;
use crate::db::now_ms;

/// Runs until the process ends; a failed step is logged and tried again next tick.
pub async fn run(state: AppState) {
    let mut interval = tokio::time::interval(Duration::from_millis(state.config.tick_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_EVERY);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => tick(&state).await,
            _ = housekeeping.tick() => housekeep(&state).await,
        }
    }
}

/// How often [`housekeep`] runs; the first run is at start-up.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);

/// Deletes audit records past their retention and expired attestation challenges;
/// forgets idle rate-limit keys.
pub async fn housekeep(state: &AppState) {
    match state.audit.sweep(&state.db, now_ms()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, "deleted audit records past their retention"),
        Err(err) => tracing::error!(error = %err, "cannot sweep the audit log"),
    }
    match crate::attestation::sweep_nonces(&state.db, now_ms()).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(count = n, "deleted expired attestation challenges"),
        Err(err) => tracing::error!(error = %err, "cannot sweep attestation challenges"),
    }
    state.report_limiter.retain_recent();
    state.report_limiter.shrink_to_fit();
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
    if let Err(err) = state.audit.flush(&state.db, now).await {
        tracing::error!(error = %err, "cannot write counted refusals to the audit log");
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
