//! Publishing: artifact uploads, offline-signed root and targets metadata, and the
//! releases the targets list.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use futures::{StreamExt, TryStreamExt};
use rota_protocol::api::{PublishResult, ReleaseInfo};

use super::AuditDetail;
use crate::app::AppState;
use crate::artifacts::UploadError;
use crate::error::{ApiError, ApiResult};

/// `PUT /api/v1/artifacts/{sha256}`: a target file, streamed; kept only if its length is
/// the `Content-Length` and its SHA-256 the one in the path.
#[utoipa::path(put, path = "/api/v1/artifacts/{sha256}", request_body(content = Vec<u8>,
    content_type = "application/octet-stream"), responses((status = 201), (status = 200)),
    security(("bearer" = [])))]
pub async fn put_artifact(
    State(state): State<AppState>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<impl IntoResponse> {
    if sha256.len() != 64
        || !sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(ApiError::bad_request(
            "the artifact name must be its SHA-256 in lowercase hex",
        ));
    }
    let length: u64 = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::LENGTH_REQUIRED,
                "an artifact upload needs a Content-Length",
            )
        })?;
    if let Some(existing) = state.artifacts.len(&sha256).await? {
        if existing == length {
            // Read the body anyway: answering before it is sent makes the connection
            // close under a client still sending, which then sees a failed upload.
            let mut body = body.into_data_stream();
            while let Some(Ok(_)) = body.next().await {}
            return Ok((
                StatusCode::OK,
                Extension(AuditDetail(format!("artifact {sha256} already stored"))),
            ));
        }
    }
    let stream = body.into_data_stream().map_err(|e| e.to_string());
    state
        .artifacts
        .upload(
            &sha256,
            length,
            state.config.max_artifact_size,
            Box::pin(stream),
        )
        .await
        .map_err(|e| match e {
            UploadError::TooLarge(_) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
            UploadError::Store(err) => ApiError::internal(format!("{err:#}")),
            _ => ApiError::bad_request(e.to_string()),
        })?;
    sqlx::query("INSERT INTO artifacts (sha256, length, created_at) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING")
        .bind(&sha256)
        .bind(length as i64)
        .bind(crate::db::now_ms())
        .execute(&state.db.write)
        .await?;
    Ok((
        StatusCode::CREATED,
        Extension(AuditDetail(format!("artifact {sha256}, {length} bytes"))),
    ))
}

/// `PUT /api/v1/repo/root`: the first root, or the next version (a rotation).
#[utoipa::path(put, path = "/api/v1/repo/root", request_body(content = String,
    content_type = "application/json"), responses((status = 201)), security(("bearer" = [])))]
pub async fn put_root(State(state): State<AppState>, body: Bytes) -> ApiResult<impl IntoResponse> {
    let version = state.repo.put_root(&body).await?;
    Ok((
        StatusCode::CREATED,
        Extension(AuditDetail(format!("root version {version}"))),
    ))
}

/// `PUT /api/v1/repo/targets`: offline-signed targets metadata; the server adds a new
/// snapshot and timestamp.
#[utoipa::path(put, path = "/api/v1/repo/targets", request_body(content = String,
    content_type = "application/json"), responses((status = 201, body = PublishResult)),
    security(("bearer" = [])))]
pub async fn put_targets(
    State(state): State<AppState>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let verified = state.repo.put_targets(&body, &state.artifacts).await?;
    let names: Vec<String> = verified.targets.iter().map(|t| t.name.clone()).collect();
    let detail = AuditDetail(format!(
        "targets version {} with {}",
        verified.version,
        names.join(", ")
    ));
    Ok((
        StatusCode::CREATED,
        Extension(detail),
        Json(PublishResult {
            targets_version: verified.version,
            targets: names,
        }),
    ))
}

/// `GET /api/v1/releases`.
#[utoipa::path(get, path = "/api/v1/releases", responses((status = 200, body = [ReleaseInfo])),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<ReleaseInfo>>> {
    type Row = (String, String, String, String, i64, i64, i64, String, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, target, envelope_target, class_id, version, security_version, length, sha256, \
         created_at FROM releases ORDER BY created_at, target",
    )
    .fetch_all(&state.db.read)
    .await?;
    Ok(Json(
        rows.into_iter()
            .map(
                |(
                    id,
                    target,
                    envelope_target,
                    class_id,
                    version,
                    security_version,
                    length,
                    sha256,
                    created_at,
                )| {
                    ReleaseInfo {
                        id,
                        target,
                        envelope_target,
                        class_id,
                        version: version as u64,
                        security_version: security_version as u64,
                        length: length as u64,
                        sha256,
                        created_at: crate::db::api_time(created_at),
                    }
                },
            )
            .collect(),
    ))
}
