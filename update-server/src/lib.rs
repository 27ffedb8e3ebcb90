//! rota-server: the update server.
//!
//! It holds the TUF repository's online roles (snapshot and timestamp; root and targets
//! are signed offline by the `rota` CLI), the device registry with its lifecycle, staged
//! rollouts that halt on failure, and the device and management HTTP APIs. All state lives
//! in the database and the artifact store, so any number of replicas can share them.

pub mod app;
pub mod artifacts;
pub mod attestation;
pub mod cas;
pub mod config;
pub mod connections;
pub mod db;
pub mod device;
pub mod error;
pub mod live;
pub mod manage;
pub mod openapi;
pub mod ops;
pub mod revocation;
pub mod rollout;
pub mod tasks;
pub mod tuf;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::app::AppState;
use crate::config::Config;

/// Uploads older than this at start-up were cut off by a crash.
const STALE_UPLOAD_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    serve(config, listener, shutdown_signal()).await
}

/// Serves on `listener` until `shutdown` completes; the background pass runs beside it.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    ops::metrics_handle();
    let state = AppState::open(config).await?;
    if let Some(path) = manage::tokens::bootstrap_admin(&state.db, &state.config.data_dir).await? {
        tracing::info!(path = %path.display(), "created the first admin token");
    }
    match state.artifacts.sweep_stale_uploads(STALE_UPLOAD_AGE).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, "deleted uploads a crash had cut off"),
        Err(err) => tracing::warn!(error = %format!("{err:#}"), "cannot sweep stale uploads"),
    }
    let address = listener.local_addr()?;
    tracing::info!(%address, database = %db::redact(&state.config.database_url), "rota-server listening");
    let background = tokio::spawn(tasks::run(state.clone()));
    let app = app::router(state.clone());
    connections::serve(listener, app, &state.config.limits, shutdown).await;
    background.abort();
    // Last-seen times collected since the last tick.
    tasks::tick(&state).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
