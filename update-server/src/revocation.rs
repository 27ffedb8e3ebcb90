//! Revocation of device credentials: a device key, one certificate, or a CA's
//! certificates issued at or after a time (a compromised factory line).
//!
//! Rule "revoked credentials are refused everywhere within one second": the device
//! directory reads a device's revocation with its record ([`revoked_column`]), and its cache
//! lives `CACHE_TTL_MS` (one second), so a revocation made through any replica is in force
//! on every replica within that time; the replica that took it drops its cache at once.
//! A revoked device is refused every request after its signature verifies (403 with the
//! reason), and a revoked certificate cannot enrol or be registered.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use rota_protocol::api::{DeviceInfo, RevocationCreate, RevocationInfo, RevocationKind};
use rota_protocol::{CertBody, DeviceCertificate};

use crate::app::AppState;
use crate::db::{Db, api_time, new_id, now_ms};
use crate::error::{ApiError, ApiResult};
use crate::manage::AuditDetail;

/// Whether revocation `r` names the device row `devices` (SQL, portable).
const MATCHES: &str = "((r.kind = 'device_key' AND r.subject = devices.public_key) \
     OR (r.kind = 'certificate' AND r.subject = devices.certificate_sha256) \
     OR (r.kind = 'ca' AND r.subject = devices.issuer \
         AND (r.not_before IS NULL OR devices.issued_at >= r.not_before)))";

/// The reason the device row `devices` is revoked, or NULL (an SQL scalar subquery).
pub fn revoked_column() -> String {
    format!("(SELECT r.reason FROM revocations r WHERE {MATCHES} LIMIT 1)")
}

/// What a revocation is matched against in a certificate: its key, its fingerprint, its
/// issuer and when it was issued (unix ms).
pub struct Subjects {
    pub public_key: String,
    pub certificate_sha256: String,
    pub issuer: String,
    pub issued_at_ms: i64,
}

impl Subjects {
    pub fn of(certificate: &DeviceCertificate, cert: &CertBody) -> Subjects {
        Subjects {
            public_key: cert.public_key.clone(),
            certificate_sha256: hex::encode(certificate.fingerprint()),
            issuer: cert.issuer.clone(),
            issued_at_ms: i64::try_from(cert.issued_at.saturating_mul(1000)).unwrap_or(i64::MAX),
        }
    }

    /// Why a revocation refuses this certificate, if one does: the rule `MATCHES` applies
    /// to a stored device, applied to these values as a one-row `devices`.
    pub async fn revoked(&self, db: &Db) -> Result<Option<String>, ApiError> {
        let row: Option<(String,)> = sqlx::query_as(&format!(
            "SELECT r.reason FROM revocations r, \
             (SELECT CAST($1 AS TEXT) AS public_key, CAST($2 AS TEXT) AS certificate_sha256, \
             CAST($3 AS TEXT) AS issuer, CAST($4 AS BIGINT) AS issued_at) devices \
             WHERE {MATCHES} LIMIT 1"
        ))
        .bind(&self.public_key)
        .bind(&self.certificate_sha256)
        .bind(&self.issuer)
        .bind(self.issued_at_ms)
        .fetch_optional(&db.read)
        .await?;
        Ok(row.map(|(reason,)| reason))
    }
}

/// Fills the revocation subjects of devices registered before they were stored.
pub async fn backfill(db: &Db) -> anyhow::Result<u64> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id, certificate FROM devices WHERE certificate_sha256 IS NULL")
            .fetch_all(&db.read)
            .await?;
    let mut filled = 0;
    for (id, json) in rows {
        let certificate: DeviceCertificate = serde_json::from_str(&json)?;
        let cert = certificate.claims_unverified()?;
        let s = Subjects::of(&certificate, &cert);
        sqlx::query(
            "UPDATE devices SET certificate_sha256 = $1, issuer = $2, issued_at = $3 WHERE id = $4",
        )
        .bind(&s.certificate_sha256)
        .bind(&s.issuer)
        .bind(s.issued_at_ms)
        .bind(&id)
        .execute(&db.write)
        .await?;
        filled += 1;
    }
    Ok(filled)
}

type RevocationRow = (String, String, String, Option<i64>, String, i64, i64);

fn select_revocations(filter: &str) -> String {
    format!(
        "SELECT r0.id, r0.kind, r0.subject, r0.not_before, r0.reason, r0.created_at, \
         (SELECT COUNT(*) FROM devices WHERE EXISTS \
            (SELECT 1 FROM revocations r WHERE r.id = r0.id AND {MATCHES})) \
         FROM revocations r0 {filter}"
    )
}

fn info(row: RevocationRow) -> Result<RevocationInfo, ApiError> {
    let (id, kind, subject, not_before, reason, created_at, devices) = row;
    Ok(RevocationInfo {
        kind: kind
            .parse::<RevocationKind>()
            .map_err(|_| ApiError::internal(format!("revocation {id} has kind {kind}")))?,
        id,
        subject,
        issued_after: not_before.map(api_time),
        reason,
        created_at: api_time(created_at),
        devices: devices.max(0) as u64,
    })
}

/// `POST /api/v1/revocations` (admin): revokes a device key, a certificate or a CA.
#[utoipa::path(post, path = "/api/v1/revocations", request_body = RevocationCreate,
    responses((status = 201, body = RevocationInfo), (status = 400), (status = 409)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Json(body): Json<RevocationCreate>,
) -> ApiResult<impl IntoResponse> {
    body.validate().map_err(ApiError::bad_request)?;
    let id = new_id();
    let not_before = body
        .issued_after
        .map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX));
    let inserted = sqlx::query(
        "INSERT INTO revocations (id, kind, subject, not_before, reason, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind, subject) DO NOTHING",
    )
    .bind(&id)
    .bind(body.kind.as_str())
    .bind(&body.subject)
    .bind(not_before)
    .bind(&body.reason)
    .bind(now_ms())
    .execute(&state.db.write)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::conflict(format!(
            "{} {} is revoked already",
            body.kind, body.subject
        )));
    }
    // This replica refuses at once; the others within their cache's lifetime.
    state.devices.invalidate_all();
    let row: RevocationRow = sqlx::query_as(&select_revocations("WHERE r0.id = $1"))
        .bind(&id)
        .fetch_one(&state.db.read)
        .await?;
    let info = info(row)?;
    metrics::counter!("rota_revocations_total", "kind" => body.kind.as_str()).increment(1);
    Ok((
        StatusCode::CREATED,
        axum::Extension(AuditDetail(format!(
            "revoked {} {}: {} ({} devices)",
            info.kind, info.subject, info.reason, info.devices
        ))),
        Json(info),
    ))
}

/// `GET /api/v1/revocations`: every revocation, newest first.
#[utoipa::path(get, path = "/api/v1/revocations",
    responses((status = 200, body = Vec<RevocationInfo>)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<RevocationInfo>>> {
    let rows: Vec<RevocationRow> = sqlx::query_as(&select_revocations(
        "ORDER BY r0.created_at DESC, r0.id LIMIT 1000",
    ))
    .fetch_all(&state.db.read)
    .await?;
    Ok(Json(rows.into_iter().map(info).collect::<Result<_, _>>()?))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesQuery {
    /// Devices after this id (for paging).
    pub after: Option<String>,
    /// At most this many (1 to 1000; default 100).
    pub limit: Option<i64>,
}

/// `GET /api/v1/revocations/{id}/devices`: the registered devices it refuses, in id order.
#[utoipa::path(get, path = "/api/v1/revocations/{id}/devices",
    params(("id" = String, Path), ("after" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = Vec<DeviceInfo>), (status = 404)), security(("bearer" = [])))]
pub async fn devices(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DevicesQuery>,
) -> ApiResult<Json<Vec<DeviceInfo>>> {
    let known: Option<(String,)> = sqlx::query_as("SELECT id FROM revocations WHERE id = $1")
        .bind(&id)
        .fetch_optional(&state.db.read)
        .await?;
    if known.is_none() {
        return Err(ApiError::not_found(format!("there is no revocation {id}")));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows: Vec<crate::device::directory::InfoRow> = sqlx::query_as(&format!(
        "SELECT {} FROM devices WHERE EXISTS \
         (SELECT 1 FROM revocations r WHERE r.id = $1 AND {MATCHES}) \
         AND id > $2 ORDER BY id LIMIT $3",
        crate::device::directory::INFO_COLUMNS
    ))
    .bind(&id)
    .bind(q.after.as_deref().unwrap_or(""))
    .bind(limit)
    .fetch_all(&state.db.read)
    .await?;
    Ok(Json(
        rows.into_iter()
            .map(crate::device::directory::info)
            .collect::<Result<_, _>>()?,
    ))
}
