//! Operations: liveness, Prometheus metrics, the OpenAPI document.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use utoipa::OpenApi;

use crate::app::AppState;
use crate::error::ApiError;

/// The process's metrics recorder: one per process, shared by every server in it (tests
/// run several).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding application's); then
        // this handle renders only what rota records through it, which is nothing — so
        // say so in the log rather than fail.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder is already installed; /metrics will be empty");
        }
        handle
    })
}

/// `GET /healthz`: 200 when the database answers.
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match sqlx::query("SELECT 1").execute(&state.db.read).await {
        Ok(_) => (StatusCode::OK, "ok\n"),
        Err(err) => {
            tracing::error!(error = %err, "health check: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the database does not answer\n",
            )
        }
    }
}

/// `GET /metrics`: Prometheus text format. Rollout states are read at scrape time, so
/// every replica reports the same numbers.
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM rollouts GROUP BY state")
            .fetch_all(&state.db.read)
            .await?;
    for name in ["active", "paused", "halted", "aborted", "completed"] {
        let count = rows.iter().find(|(s, _)| s == name).map_or(0, |(_, c)| *c);
        metrics::gauge!("rota_rollouts", "state" => name).set(count as f64);
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics_handle().render(),
    ))
}

/// `GET /openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::ApiDoc::openapi())
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("there is no such endpoint")
}
