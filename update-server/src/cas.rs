//! The device CA registry: which CAs' certificates the server accepts at enrolment and
//! registration (`device_cas`, the one truth about that trust), and the rollover from
//! one manufacturer CA to another (`docs/design/lifecycle.md`, section 3).
//!
//! A rollover: introduce the new CA (`POST /api/v1/cas`), re-certify the devices by key
//! rotation (the operator's device CA issues their new certificates,
//! `crate::device::rotate`), then retire the old CA (`POST /api/v1/cas/{key_id}/retire`).
//!
//! The rules, each where it is checked:
//! - "no device is locked out": [`retire`] refuses while a device that is not
//!   decommissioned holds a current certificate the CA issued (`devices.issuer`), naming
//!   how many and which; a registered device is authenticated by its stored key, never
//!   by its CA again, so retiring only closes enrolment and registration;
//! - "the device CA stays": the server's own device CA (`--device-ca-key`), which
//!   certifies every rotated key, cannot be retired;
//! - "retired everywhere within one second": [`Registry`] caches the registry for
//!   `CACHE_TTL_MS`, as the device directory does, and the replica that made the change
//!   drops its copy at once;
//! - "configured CAs are registered, never revived": the `device-ca/` directory's keys
//!   and the device CA are added at start-up if absent ([`register_configured`]); a CA
//!   retired through the API stays retired though its file remains.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use rota_protocol::api::{CaCreate, CaInfo, CaState, DeviceInfo};
use rota_protocol::{CertBody, DeviceCertificate, IdentityError, PublicKey};

use crate::app::AppState;
use crate::db::{Db, api_time, now_ms};
use crate::device::directory::{CACHE_TTL_MS, INFO_COLUMNS, InfoRow, info};
use crate::error::{ApiError, ApiResult};
use crate::manage::AuditDetail;
use crate::revocation::DevicesQuery;

/// Devices named in a refusal to retire (the rest are counted).
const NAMED_IN_REFUSAL: i64 = 5;

/// What "depends on a CA" means: a device not decommissioned whose current certificate
/// it issued (SQL over `devices`, with the CA's key id as `$1`).
const DEPENDS_ON: &str = "issuer = $1 AND state <> 'decommissioned'";

/// The CAs as enrolment uses them: the active keys, and the retired ones by key id (so
/// that a refusal says the CA was retired, not that it is unknown).
#[derive(Debug, Default)]
pub struct Trust {
    active: Vec<PublicKey>,
    retired: HashMap<String, String>,
}

impl Trust {
    /// The active CAs' keys: whose certificates and orders this server takes.
    pub fn active(&self) -> &[PublicKey] {
        &self.active
    }

    /// The certified claims of `certificate`, if an active CA issued and signed it; else
    /// why not, as one sentence.
    pub fn verify(&self, certificate: &DeviceCertificate) -> Result<CertBody, String> {
        certificate.verify(&self.active).map_err(|e| match e {
            IdentityError::UnknownIssuer { issuer } => match self.retired.get(&issuer) {
                Some(name) => format!(
                    "the certificate was issued by device CA {issuer} ({name}), which is \
                     retired: it is no longer trusted for enrolment or registration"
                ),
                None => format!(
                    "the certificate was issued by {issuer}, which is not a trusted device CA"
                ),
            },
            e => e.to_string(),
        })
    }
}

/// The registry's trust, cached for `CACHE_TTL_MS`.
#[derive(Debug, Default)]
pub struct Registry {
    cache: Mutex<Option<(Arc<Trust>, i64)>>,
}

impl Registry {
    /// The CAs trusted now (at most `CACHE_TTL_MS` old).
    pub async fn trust(&self, db: &Db) -> Result<Arc<Trust>, ApiError> {
        let now = now_ms();
        if let Some((trust, at)) = &*self.cache.lock().unwrap() {
            if now - at < CACHE_TTL_MS {
                return Ok(trust.clone());
            }
        }
        let rows: Vec<(String, String, String, String)> =
            sqlx::query_as("SELECT key_id, public_key, name, state FROM device_cas")
                .fetch_all(&db.read)
                .await?;
        let mut trust = Trust::default();
        for (key_id, public_key, name, state) in rows {
            if state == CaState::Active.as_str() {
                trust.active.push(stored_key(&key_id, &public_key)?);
            } else {
                trust.retired.insert(key_id, name);
            }
        }
        let trust = Arc::new(trust);
        *self.cache.lock().unwrap() = Some((trust.clone(), now));
        Ok(trust)
    }

    /// Drops the cached copy (after a change through this replica).
    pub fn forget(&self) {
        *self.cache.lock().unwrap() = None;
    }
}

fn stored_key(key_id: &str, hex_key: &str) -> Result<PublicKey, ApiError> {
    hex::decode(hex_key)
        .ok()
        .and_then(|b| PublicKey::from_raw(&b))
        .filter(|k| hex::encode(k.key_id()) == key_id)
        .ok_or_else(|| ApiError::internal(format!("device CA {key_id} has a malformed key")))
}

/// Adds the configured CAs (`device-ca/*.pub` by file name, and the device CA) to the
/// registry where absent; a CA retired through the API stays retired.
pub async fn register_configured(db: &Db, cas: &[(String, PublicKey)]) -> anyhow::Result<()> {
    for (name, key) in cas {
        let key_id = hex::encode(key.key_id());
        sqlx::query(
            "INSERT INTO device_cas (key_id, public_key, name, state, created_at) \
             VALUES ($1, $2, $3, 'active', $4) ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(&key_id)
        .bind(hex::encode(key.as_bytes()))
        .bind(name)
        .bind(now_ms())
        .execute(&db.write)
        .await?;
        let (state,): (String,) = sqlx::query_as("SELECT state FROM device_cas WHERE key_id = $1")
            .bind(&key_id)
            .fetch_one(&db.read)
            .await?;
        if state != CaState::Active.as_str() {
            tracing::warn!(ca = %key_id, %name, "a configured device CA is retired in the registry: its certificates are refused");
        }
    }
    Ok(())
}

/// A public key as `POST /api/v1/cas` takes it: SubjectPublicKeyInfo PEM or raw hex.
fn parse_key(text: &str) -> Result<PublicKey, String> {
    let text = text.trim();
    let key = if text.starts_with("-----BEGIN") {
        rota_keys::public_key_from_pem(text)
            .map_err(|e| format!("public_key is not an Ed25519 or P-256 public key: {e}"))?
    } else {
        hex::decode(text)
            .ok()
            .filter(|_| text.bytes().all(|b| !b.is_ascii_uppercase()))
            .and_then(|b| PublicKey::from_raw(&b))
            .ok_or("public_key is neither a PEM public key nor a raw Ed25519 or P-256 key in lowercase hex")?
    };
    key.validate()
        .map_err(|_| "public_key is not a valid Ed25519 or P-256 point".to_string())?;
    Ok(key)
}

type CaRow = (String, String, String, String, i64, Option<i64>, i64);

fn select_cas(filter: &str) -> String {
    format!(
        "SELECT c.key_id, c.public_key, c.name, c.state, c.created_at, c.retired_at, \
         (SELECT COUNT(*) FROM devices WHERE devices.issuer = c.key_id \
            AND devices.state <> 'decommissioned') \
         FROM device_cas c {filter}"
    )
}

fn ca_info(state: &AppState, row: CaRow) -> Result<CaInfo, ApiError> {
    let (key_id, public_key, name, ca_state, created_at, retired_at, devices) = row;
    Ok(CaInfo {
        state: ca_state
            .parse()
            .map_err(|_| ApiError::internal(format!("device CA {key_id} has state {ca_state}")))?,
        device_ca: is_device_ca(state, &key_id),
        key_id,
        public_key,
        name,
        created_at: api_time(created_at),
        retired_at: retired_at.map(api_time),
        devices: devices.max(0) as u64,
    })
}

fn is_device_ca(state: &AppState, key_id: &str) -> bool {
    state
        .device_ca
        .as_ref()
        .is_some_and(|ca| hex::encode(ca.public_key().key_id()) == key_id)
}

async fn one(state: &AppState, key_id: &str) -> Result<CaInfo, ApiError> {
    let row: Option<CaRow> = sqlx::query_as(&select_cas("WHERE c.key_id = $1"))
        .bind(key_id)
        .fetch_optional(&state.db.read)
        .await?;
    match row {
        Some(row) => ca_info(state, row),
        None => Err(ApiError::not_found(format!(
            "there is no device CA {key_id}"
        ))),
    }
}

/// `POST /api/v1/cas` (admin): introduces a device CA; devices it certified may enrol from
/// then on, on every replica within a second.
#[utoipa::path(post, path = "/api/v1/cas", request_body = CaCreate,
    responses((status = 201, body = CaInfo), (status = 400), (status = 409)),
    security(("bearer" = [])), tag = "devices")]
pub async fn create(
    State(state): State<AppState>,
    Json(body): Json<CaCreate>,
) -> ApiResult<impl IntoResponse> {
    body.validate().map_err(ApiError::bad_request)?;
    let key = parse_key(&body.public_key).map_err(ApiError::bad_request)?;
    let key_id = hex::encode(key.key_id());
    let inserted = sqlx::query(
        "INSERT INTO device_cas (key_id, public_key, name, state, created_at) \
         VALUES ($1, $2, $3, 'active', $4) ON CONFLICT (key_id) DO NOTHING",
    )
    .bind(&key_id)
    .bind(hex::encode(key.as_bytes()))
    .bind(&body.name)
    .bind(now_ms())
    .execute(&state.db.write)
    .await?;
    if inserted.rows_affected() == 0 {
        let known = one(&state, &key_id).await?;
        return Err(ApiError::conflict(format!(
            "device CA {key_id} is registered already, as {:?} ({})",
            known.name, known.state
        )));
    }
    state.cas.forget();
    let info = one(&state, &key_id).await?;
    metrics::counter!("rota_device_ca_changes_total", "change" => "introduced").increment(1);
    Ok((
        StatusCode::CREATED,
        Extension(AuditDetail(format!(
            "introduced device CA {key_id} ({})",
            info.name
        ))),
        Json(info),
    ))
}

/// `GET /api/v1/cas`: every device CA, oldest first, with the devices depending on each.
#[utoipa::path(get, path = "/api/v1/cas",
    responses((status = 200, body = Vec<CaInfo>)), security(("bearer" = [])), tag = "devices")]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<CaInfo>>> {
    let rows: Vec<CaRow> = sqlx::query_as(&select_cas("ORDER BY c.created_at, c.key_id"))
        .fetch_all(&state.db.read)
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| ca_info(&state, row))
            .collect::<Result<_, _>>()?,
    ))
}

/// `GET /api/v1/cas/{key_id}/devices`: the devices not decommissioned whose current
/// certificate the CA issued (those that keep it from being retired), in id order.
#[utoipa::path(get, path = "/api/v1/cas/{key_id}/devices",
    params(("key_id" = String, Path, description = "the CA's key id (SHA-256 of its public key, hex)"),
        ("after" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = Vec<DeviceInfo>), (status = 404)),
    security(("bearer" = [])), tag = "devices")]
pub async fn devices(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
    Query(q): Query<DevicesQuery>,
) -> ApiResult<Json<Vec<DeviceInfo>>> {
    one(&state, &key_id).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows: Vec<InfoRow> = sqlx::query_as(&format!(
        "SELECT {INFO_COLUMNS} FROM devices WHERE {DEPENDS_ON} AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(&key_id)
    .bind(q.after.as_deref().unwrap_or(""))
    .bind(limit)
    .fetch_all(&state.db.read)
    .await?;
    Ok(Json(rows.into_iter().map(info).collect::<Result<_, _>>()?))
}

/// `POST /api/v1/cas/{key_id}/retire` (admin): its certificates are refused at enrolment
/// and registration from then on. Refused (409) while any device depends on it, and for
/// the server's own device CA.
#[utoipa::path(post, path = "/api/v1/cas/{key_id}/retire",
    params(("key_id" = String, Path, description = "the CA's key id (SHA-256 of its public key, hex)")),
    responses((status = 200, body = CaInfo), (status = 404), (status = 409)),
    security(("bearer" = [])), tag = "devices")]
pub async fn retire(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let ca = one(&state, &key_id).await?;
    if ca.device_ca {
        return Err(ApiError::conflict(format!(
            "device CA {key_id} ({}) is this server's own device CA (--device-ca-key), which \
             certifies rotated keys: it cannot be retired",
            ca.name
        )));
    }
    if ca.state == CaState::Retired {
        return Err(ApiError::conflict(format!(
            "device CA {key_id} ({}) is retired already",
            ca.name
        )));
    }
    // Rule "no device is locked out".
    if ca.devices > 0 {
        let named: Vec<(String,)> = sqlx::query_as(&format!(
            "SELECT id FROM devices WHERE {DEPENDS_ON} ORDER BY id LIMIT {NAMED_IN_REFUSAL}"
        ))
        .bind(&key_id)
        .fetch_all(&state.db.read)
        .await?;
        let mut ids: Vec<String> = named.into_iter().map(|(id,)| id).collect();
        if ca.devices > ids.len() as u64 {
            ids.push("…".into());
        }
        return Err(ApiError::conflict(format!(
            "device CA {key_id} ({}) issued the current certificates of {} that are not \
             decommissioned ({}): rotate their keys first (`rota device rotate ID`, the \
             device CA re-certifies them) or decommission them; `rota ca devices {key_id}` \
             lists them",
            ca.name,
            match ca.devices {
                1 => "1 device".to_string(),
                n => format!("{n} devices"),
            },
            ids.join(", ")
        )));
    }
    // The check again in the write, so a device certified meanwhile still stops it.
    let retired = sqlx::query(&format!(
        "UPDATE device_cas SET state = 'retired', retired_at = $2 \
         WHERE key_id = $1 AND state = 'active' \
         AND NOT EXISTS (SELECT 1 FROM devices WHERE {DEPENDS_ON})"
    ))
    .bind(&key_id)
    .bind(now_ms())
    .execute(&state.db.write)
    .await?;
    if retired.rows_affected() == 0 {
        return Err(ApiError::conflict(format!(
            "device CA {key_id} changed meanwhile; try again"
        )));
    }
    state.cas.forget();
    let info = one(&state, &key_id).await?;
    metrics::counter!("rota_device_ca_changes_total", "change" => "retired").increment(1);
    Ok((
        Extension(AuditDetail(format!(
            "retired device CA {key_id} ({})",
            info.name
        ))),
        Json(info),
    ))
}
