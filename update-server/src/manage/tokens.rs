//! Management tokens and the audit log.

use std::path::Path;

use anyhow::{Context, Result};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use rota_protocol::api::{AuditEntry, Role, TokenCreate, TokenCreated, TokenInfo};
use serde::Deserialize;

use super::{AuditDetail, Caller, token_hash};
use crate::app::AppState;
use crate::db::{Db, new_id, now_ms};
use crate::error::{ApiError, ApiResult};

/// A new random token and its database row.
async fn insert_token(db: &Db, name: &str, role: Role) -> Result<(String, String)> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let token = format!("rota_{}", hex::encode(secret));
    let id = new_id();
    sqlx::query(
        "INSERT INTO tokens (id, name, role, token_sha256, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(name)
    .bind(role.as_str())
    .bind(token_hash(&token))
    .bind(now_ms())
    .execute(&db.write)
    .await?;
    Ok((id, token))
}

/// On a server with no tokens at all, makes the first admin token and writes it to
/// `DATA_DIR/admin.token` (mode 0600), so a fresh install can be administered. Never
/// overwrites the file; with tokens already present it does nothing.
pub async fn bootstrap_admin(db: &Db, data_dir: &Path) -> Result<Option<std::path::PathBuf>> {
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tokens")
        .fetch_one(&db.read)
        .await?;
    if count > 0 {
        return Ok(None);
    }
    let (_, token) = insert_token(db, "bootstrap admin", Role::Admin).await?;
    let path = data_dir.join("admin.token");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes())?;
    file.sync_all()?;
    Ok(Some(path))
}

#[utoipa::path(post, path = "/api/v1/tokens", request_body = TokenCreate,
    responses((status = 201, body = TokenCreated)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Json(req): Json<TokenCreate>,
) -> ApiResult<impl IntoResponse> {
    req.validate().map_err(ApiError::bad_request)?;
    let name = &req.name;
    let (id, token) = insert_token(&state.db, name, req.role).await?;
    let detail = AuditDetail(format!("token {id} ({}) for {name:?}", req.role.as_str()));
    Ok((
        StatusCode::CREATED,
        Extension(detail),
        Json(TokenCreated {
            id,
            token,
            role: req.role,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = [TokenInfo])),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<TokenInfo>>> {
    let rows: Vec<(String, String, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT id, name, role, created_at, revoked_at FROM tokens ORDER BY created_at",
    )
    .fetch_all(&state.db.read)
    .await?;
    let tokens = rows
        .into_iter()
        .filter_map(|(id, name, role, created_at, revoked_at)| {
            Some(TokenInfo {
                id,
                name,
                role: role.parse::<Role>().ok()?,
                created_at: crate::db::api_time(created_at),
                revoked: revoked_at.is_some(),
            })
        })
        .collect();
    Ok(Json(tokens))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}",
    params(("id" = String, Path, description = "the token id")),
    responses((status = 204)), security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<impl IntoResponse> {
    if id == caller.token_id {
        return Err(ApiError::conflict("a token cannot revoke itself"));
    }
    let done =
        sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(&id)
            .execute(&state.db.write)
            .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found(format!(
            "there is no active token {id}"
        )));
    }
    Ok((
        StatusCode::NO_CONTENT,
        Extension(AuditDetail(format!("revoked token {id}"))),
    ))
}

/// at, token id, role, action, subject, outcome, detail, source, occurrences.
type AuditRow = (
    i64,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    i64,
);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only records at or after this time (unix seconds).
    pub since: Option<i64>,
    /// At most this many records (default 100, at most 1000).
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery),
    responses((status = 200, body = [AuditEntry])), security(("bearer" = [])))]
pub async fn audit_log(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT at, token_id, role, action, subject, outcome, detail, source, occurrences \
         FROM audit_log \
             WHERE at >= $1 ORDER BY at DESC LIMIT $2",
    )
    // The API speaks unix seconds (`at` is `api_time`); the table stores milliseconds.
    .bind(q.since.unwrap_or(0).max(0).saturating_mul(1000))
    .bind(limit)
    .fetch_all(&state.db.read)
    .await?;
    Ok(Json(
        rows.into_iter()
            .map(
                |(at, token_id, role, action, subject, outcome, detail, source, occurrences)| {
                    AuditEntry {
                        at: crate::db::api_time(at),
                        token_id,
                        role,
                        action,
                        subject,
                        outcome,
                        detail,
                        source,
                        occurrences: occurrences.max(1) as u64,
                    }
                },
            )
            .collect(),
    ))
}
