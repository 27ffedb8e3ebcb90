//! Rollout management: create, inspect, pause, resume, abort.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use rota_protocol::api::{RolloutCreate, RolloutStatus};

use super::AuditDetail;
use crate::app::AppState;
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::rollout::RolloutError;

impl From<RolloutError> for ApiError {
    fn from(err: RolloutError) -> ApiError {
        match err {
            RolloutError::NotFound(_) => ApiError::not_found(err.to_string()),
            RolloutError::Invalid(message) => ApiError::bad_request(message),
            RolloutError::Conflict(message) => ApiError::conflict(message),
            // A busy database (or a full write queue) is a 503 with Retry-After.
            RolloutError::Db(e) => ApiError::from(e),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/rollouts", request_body = RolloutCreate,
    responses((status = 201, body = RolloutStatus)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Json(req): Json<RolloutCreate>,
) -> ApiResult<impl IntoResponse> {
    let status = state.engine.create(&req, now_ms()).await?;
    state.live.refresh(&state.engine).await?;
    let detail = AuditDetail(format!(
        "rollout {} of release {}",
        status.id, status.release_id
    ));
    Ok((StatusCode::CREATED, Extension(detail), Json(status)))
}

#[utoipa::path(get, path = "/api/v1/rollouts",
    responses((status = 200, body = [RolloutStatus])), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<RolloutStatus>>> {
    Ok(Json(state.engine.list().await?))
}

#[utoipa::path(get, path = "/api/v1/rollouts/{id}",
    responses((status = 200, body = RolloutStatus)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<RolloutStatus>> {
    Ok(Json(state.engine.status(&id).await?))
}

/// `POST /api/v1/rollouts/{id}/{pause|resume|abort}`.
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/{action}",
    params(("action" = String, Path, description = "pause, resume or abort")),
    responses((status = 200, body = RolloutStatus)), security(("bearer" = [])))]
pub async fn action(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let now = now_ms();
    let status = match action.as_str() {
        "pause" => state.engine.pause(&id, now).await?,
        "resume" => state.engine.resume(&id, now).await?,
        "abort" => state.engine.abort(&id, now).await?,
        _ => {
            return Err(ApiError::not_found(format!(
                "{action} is not a rollout action; use pause, resume or abort"
            )));
        }
    };
    state.live.refresh(&state.engine).await?;
    Ok((
        Extension(AuditDetail(format!("rollout {id} {action}"))),
        Json(status),
    ))
}
