//! Device registry management: register a provisioned device, list, and lifecycle changes.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use rota_protocol::api::{DeviceInfo, DeviceRegister, DeviceState, FleetSummary};
use serde::Deserialize;

use super::AuditDetail;
use crate::app::AppState;
use crate::device::directory::{device_info, fleet_summary, list_devices};
use crate::error::{ApiError, ApiResult};

/// `POST /api/v1/devices`: registers a device from its manufacturer-signed certificate
/// (what `rota device provision --server` does), in the provisioned state.
#[utoipa::path(post, path = "/api/v1/devices", request_body = DeviceRegister,
    responses((status = 201, body = DeviceInfo), (status = 200, body = DeviceInfo)),
    security(("bearer" = [])))]
pub async fn register(
    State(state): State<AppState>,
    Json(req): Json<DeviceRegister>,
) -> ApiResult<impl IntoResponse> {
    let cert = state
        .cas
        .trust(&state.db)
        .await?
        .verify(&req.certificate)
        .map_err(ApiError::bad_request)?;
    let created = state
        .devices
        .register(&state.db, &req.certificate, &cert)
        .await?;
    let info = device_info(&state.db, &cert.device_id)
        .await?
        .ok_or_else(|| ApiError::internal("a registered device vanished"))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let detail = AuditDetail(format!("device {} class {}", cert.device_id, cert.class_id));
    Ok((status, Extension(detail), Json(info)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    /// Only devices of this class.
    pub class: Option<String>,
    /// Devices after this id (for paging).
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/devices", params(DeviceQuery),
    responses((status = 200, body = [DeviceInfo])), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<DeviceQuery>,
) -> ApiResult<Json<Vec<DeviceInfo>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(
        list_devices(&state.db, q.class.as_deref(), q.after.as_deref(), limit).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FleetQuery {
    /// Only devices of this class.
    pub class: Option<String>,
}

/// `GET /api/v1/fleet`: devices per state and per running version, counted by the
/// database (what polling the device list cost a 100,000-device fleet, in one query).
#[utoipa::path(get, path = "/api/v1/fleet", params(FleetQuery),
    responses((status = 200, body = FleetSummary)), security(("bearer" = [])))]
pub async fn summary(
    State(state): State<AppState>,
    Query(q): Query<FleetQuery>,
) -> ApiResult<Json<FleetSummary>> {
    Ok(Json(fleet_summary(&state.db, q.class.as_deref()).await?))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}",
    responses((status = 200, body = DeviceInfo)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceInfo>> {
    device_info(&state.db, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("there is no device {id}")))
}

/// `POST /api/v1/devices/{id}/{suspend|resume|decommission|attest|rotate}` (`attest?clear=true`
/// also clears an attestation flag).
#[utoipa::path(post, path = "/api/v1/devices/{id}/{action}",
    params(("action" = String, Path, description = "suspend, resume, decommission, attest or rotate"),
        ("clear" = Option<bool>, Query, description = "with attest: also clear the attestation flag")),
    responses((status = 200, body = DeviceInfo)), security(("bearer" = [])))]
pub async fn lifecycle(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    Query(query): Query<ActionQuery>,
) -> ApiResult<impl IntoResponse> {
    let to = match action.as_str() {
        "suspend" => DeviceState::Suspended,
        "resume" => DeviceState::Active,
        "decommission" => DeviceState::Decommissioned,
        "rotate" => {
            let info = crate::device::rotate::request(&state, &id).await?;
            let detail = format!("device {id}: asked to rotate its identity key");
            return Ok((Extension(AuditDetail(detail)), Json(info)));
        }
        "attest" => {
            let clear = query.clear.unwrap_or(false);
            let info = crate::attestation::request_evidence(&state, &id, clear).await?;
            let detail = if clear {
                format!("device {id}: attestation flag cleared, fresh evidence requested")
            } else {
                format!("device {id}: fresh evidence requested")
            };
            return Ok((Extension(AuditDetail(detail)), Json(info)));
        }
        _ => {
            return Err(ApiError::not_found(format!(
                "{action} is not a device action; use suspend, resume, decommission, attest or rotate"
            )));
        }
    };
    if query.clear.is_some() {
        return Err(ApiError::bad_request(
            "clear applies to the attest action only",
        ));
    }
    let info = state.devices.transition(&state.db, &id, to).await?;
    Ok((
        Extension(AuditDetail(format!("device {id} {action}"))),
        Json(info),
    ))
}

/// The query of a device action: `clear=true` with `attest` clears an attestation flag.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionQuery {
    pub clear: Option<bool>,
}
