//! The device API: every request is signed with the device's identity key
//! (`rota_protocol::auth`), or, for check-ins and reports only, MAC'd under a session the
//! device opened with a signed request ([`session`]); the certificate that binds that key
//! to the device id, class and tags was issued by a manufacturer CA the server trusts.
//!
//! Lifecycle (`DeviceState`): provisioned → active (its first authenticated request) →
//! suspended ↔ active → decommissioned. Suspended and decommissioned devices are refused
//! everything.

pub mod checkin;
pub mod directory;
pub mod orders;
pub mod rotate;
pub mod session;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use rota_protocol::api::{DeviceState, Enroll};
use rota_protocol::auth::SIGNATURE_HEADER;
use rota_protocol::session::{SESSION_HEADER, parse_session_headers};
use rota_protocol::{AuthError, PublicKey, SignedHeaders, api, parse_headers};

use crate::app::AppState;
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use directory::KnownDevice;

/// The largest body a device sends (a report or an enrolment).
pub const MAX_DEVICE_BODY: usize = 16 * 1024;

/// A request the device authenticated, from a device allowed to make it: signed with its
/// key, or, for a check-in or a report only, MAC'd under one of its sessions
/// (`rota_protocol::session::session_allowed`).
pub struct SignedByDevice {
    pub device: KnownDevice,
    pub body: Bytes,
    /// Authenticated by a session MAC rather than a signature.
    pub via_session: bool,
}

fn auth_error(err: AuthError) -> ApiError {
    ApiError::unauthorized(err.to_string())
}

/// A device request taken apart: its signature headers and its body (at most
/// [`MAX_DEVICE_BODY`] bytes), not yet verified.
struct DeviceRequest {
    parts: Parts,
    headers: SignedHeaders,
    body: Bytes,
}

impl DeviceRequest {
    async fn read(req: Request) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let headers =
            parse_headers(|name| parts.headers.get(name)?.to_str().ok()).map_err(auth_error)?;
        let body = read_body(body).await?;
        Ok(DeviceRequest {
            parts,
            headers,
            body,
        })
    }

    fn path_and_query(&self) -> &str {
        path_and_query(&self.parts)
    }

    /// Checks the clock, the signature with `key` over the method, path and query and
    /// body, and the nonce.
    fn verify(&self, state: &AppState, key: &PublicKey) -> Result<(), ApiError> {
        state
            .verifier
            .verify(
                &self.headers,
                self.parts.method.as_str(),
                self.path_and_query(),
                &self.body,
                key,
                now_ms() as u64,
            )
            .map_err(|err| {
                tracing::info!(device = %self.headers.device_id, error = %err, "refused a device request");
                auth_error(err)
            })
    }

    /// Refuses a request naming a device id the server does not know with the answer a
    /// known device gets for a request its key did not sign, so that the answer does not
    /// tell which ids are registered (see `rota_protocol::auth`). Only the log says why.
    fn refuse_unknown(&self, state: &AppState) -> ApiError {
        tracing::info!(device = %self.headers.device_id, "refused a request from an unknown device id");
        auth_error(state.verifier.refuse_unknown(
            &self.headers,
            self.parts.method.as_str(),
            self.path_and_query(),
            &self.body,
            now_ms() as u64,
        ))
    }
}

/// The request target exactly as sent (what the signature or MAC covers).
fn path_and_query(parts: &Parts) -> &str {
    parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
}

/// A device request's body, at most [`MAX_DEVICE_BODY`] bytes.
async fn read_body(body: axum::body::Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_DEVICE_BODY)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large",
            )
        })
}

impl FromRequest<AppState> for SignedByDevice {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        // A request with both a signature and a session is taken as signed.
        if req.headers().contains_key(SESSION_HEADER)
            && !req.headers().contains_key(SIGNATURE_HEADER)
        {
            return by_session(req, state).await;
        }
        let request = DeviceRequest::read(req).await?;
        let Some(device) = state
            .devices
            .get(&state.db, &request.headers.device_id)
            .await?
        else {
            return Err(request.refuse_unknown(state));
        };
        request.verify(state, &device.public_key)?;
        admit(state, device, request.body, false).await
    }
}

/// A check-in or report MAC'd under a session: the MAC and the token first
/// (`rota_protocol::session`), then the device as after a signature. An unknown device
/// gets the answer of a wrong MAC; a token bound to a key that is no longer the device's
/// (rotated, replaced) is refused as not this device's session.
async fn by_session(req: Request, state: &AppState) -> Result<SignedByDevice, ApiError> {
    let (parts, body) = req.into_parts();
    let headers = parse_session_headers(|name| parts.headers.get(name)?.to_str().ok())
        .unwrap_or(Err(AuthError::MissingHeader(SESSION_HEADER)))
        .map_err(auth_error)?;
    let body = read_body(body).await?;
    let session = state.sessions.verify(state, &parts, &headers, &body)?;
    let Some(device) = state.devices.get(&state.db, &session.device_id).await? else {
        tracing::info!(device = %session.device_id, "refused a session of an unknown device id");
        return Err(auth_error(AuthError::BadMac));
    };
    if device.public_key.key_id() != session.device_key_id {
        tracing::info!(device = %device.id, "refused a session opened with a key the device no longer has");
        return Err(auth_error(AuthError::InvalidSession));
    }
    let admitted = admit(state, device, body, true).await?;
    if parts.uri.path() == api::CHECKIN_PATH {
        metrics::counter!("rota_session_checkins_total").increment(1);
    } else {
        metrics::counter!("rota_session_reports_total").increment(1);
    }
    Ok(admitted)
}

/// The checks after the device authenticated a request, the same for a signature and a
/// session.
async fn admit(
    state: &AppState,
    device: KnownDevice,
    body: Bytes,
    via_session: bool,
) -> Result<SignedByDevice, ApiError> {
    // Rule "revoked credentials are refused" (`crate::revocation`), after the
    // signature, so only the key's holder learns that it is revoked.
    if let Some(reason) = &device.revoked {
        return Err(ApiError::forbidden(format!(
            "this device's key or certificate is revoked: {reason}"
        )));
    }
    match device.state {
        DeviceState::Suspended => {
            return Err(ApiError::forbidden("the device is suspended"));
        }
        DeviceState::Decommissioned => {
            return Err(ApiError::forbidden("the device is decommissioned"));
        }
        DeviceState::Provisioned => state.devices.activate(&state.db, &device.id).await?,
        DeviceState::Active => {}
    }
    Ok(SignedByDevice {
        device,
        body,
        via_session,
    })
}

/// `POST /api/v1/device/enroll`: a device the server has not heard of presents its
/// certificate, and proves it holds the certified key by signing the request with it.
/// Enrolling again with the same certificate is a no-op.
#[utoipa::path(post, path = "/api/v1/device/enroll", request_body = Enroll,
    responses((status = 201), (status = 200)), tag = "device")]
pub async fn enroll(State(state): State<AppState>, req: Request) -> ApiResult<impl IntoResponse> {
    let request = DeviceRequest::read(req).await?;
    let Enroll { certificate } = serde_json::from_slice(&request.body)
        .map_err(|e| ApiError::bad_request(format!("the enrolment is not valid JSON: {e}")))?;
    let cert = state
        .cas
        .trust(&state.db)
        .await?
        .verify(&certificate)
        .map_err(ApiError::forbidden)?;
    if cert.device_id != request.headers.device_id {
        return Err(ApiError::forbidden(
            "the request is signed for a different device than the certificate names",
        ));
    }
    let key = cert
        .device_key()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    request.verify(&state, &key)?;
    let created = state
        .devices
        .register(&state.db, &certificate, &cert)
        .await?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    })
}

/// `GET /api/v1/device/self`: the device's own record, as the server holds it.
#[utoipa::path(get, path = "/api/v1/device/self",
    responses((status = 200, body = rota_protocol::api::DeviceInfo)), tag = "device")]
pub async fn whoami(
    State(state): State<AppState>,
    signed: SignedByDevice,
) -> ApiResult<Json<rota_protocol::api::DeviceInfo>> {
    directory::device_info(&state.db, &signed.device.id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("the device is not registered"))
}
