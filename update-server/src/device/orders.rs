//! Operator orders (`docs/design/lifecycle.md`, sections 6 and 7): the server signs a
//! decommission or an ownership transfer with its device CA, delivers it with every
//! check-in until the device reports it done, and from that report on refuses the
//! device everything (its record and audit history stay). The new operator's server
//! takes a transferred device in on the order.
//!
//! The rules, each where it is checked:
//! - only a server with a device CA issues orders (devices obey their operator's CA);
//! - one order per device at a time; a new one replaces an order not yet done;
//! - the device's report names the order by its fingerprint: a report of another order
//!   (withdrawn, replaced) is refused, and a repeat of a done report is answered the
//!   same (the device may have lost the answer);
//! - a transfer is taken in only when the order names this server's device CA and was
//!   signed by a CA this server trusts, for the device the request is signed by.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use rota_protocol::api::{DeviceState, KeyRotated};
use rota_protocol::order::{
    DEFAULT_ORDER_DAYS, MAX_ORDER_LIFETIME_S, OrderAction, OrderBody, OrderCreate, OrderDone,
    OrderIssued, SignedOrder, TransferIn, TransferTo, issue_order,
};
use rota_protocol::{CertBody, DeviceCertificate, issue};

use super::DeviceRequest;
use crate::app::AppState;
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::manage::AuditDetail;

/// `POST /api/v1/devices/{id}/orders` (admin): signs an order for the device and queues
/// it for its next check-in.
#[utoipa::path(post, path = "/api/v1/devices/{id}/orders", request_body = OrderCreate,
    responses((status = 201, body = OrderIssued), (status = 400), (status = 404), (status = 409)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(request): Json<OrderCreate>,
) -> ApiResult<impl IntoResponse> {
    let Some(ca) = state.device_ca.clone() else {
        return Err(ApiError::conflict(
            "this server has no device CA (--device-ca-key) to sign orders with",
        ));
    };
    let days = request.valid_days.unwrap_or(DEFAULT_ORDER_DAYS);
    if days == 0 || days * 24 * 3600 > MAX_ORDER_LIFETIME_S {
        return Err(ApiError::bad_request(format!(
            "valid_days must be 1 to {}",
            MAX_ORDER_LIFETIME_S / (24 * 3600)
        )));
    }
    let transfer = match request.action {
        OrderAction::Decommission => {
            if request.server.is_some() || request.device_ca.is_some() || request.tuf_root.is_some()
            {
                return Err(ApiError::bad_request(
                    "server, device_ca and tuf_root belong to a transfer only",
                ));
            }
            None
        }
        OrderAction::Transfer => {
            let (Some(server), Some(device_ca), Some(root)) =
                (request.server, request.device_ca, request.tuf_root)
            else {
                return Err(ApiError::bad_request(
                    "a transfer needs server, device_ca and tuf_root",
                ));
            };
            use base64::Engine as _;
            let tuf_root = base64::engine::general_purpose::STANDARD
                .decode(root)
                .map_err(|_| ApiError::bad_request("tuf_root is not standard base64"))?;
            // The root must be one this server's devices can follow: cross-signed by the
            // repository's current root (what the device checks, checked here first so
            // an operator learns it now, not from every device).
            state.repo.check_cross_signed(&tuf_root).await?;
            Some(TransferTo {
                server,
                device_ca,
                tuf_root,
            })
        }
    };
    let (device_state,): (String,) = sqlx::query_as("SELECT state FROM devices WHERE id = $1")
        .bind(&id)
        .fetch_optional(&state.db.read)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("there is no device {id}")))?;
    if device_state == DeviceState::Decommissioned.as_str() {
        return Err(ApiError::conflict(format!(
            "device {id} is decommissioned already: it takes no more orders"
        )));
    }
    let body = OrderBody::new(
        &ca.public_key(),
        &id,
        request.action,
        transfer,
        (now_ms() / 1000) as u64,
        days * 24 * 3600,
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let order = tokio::task::spawn_blocking(move || issue_order(&*ca, &body))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let claims = order.claims_unverified().map_err(ApiError::internal)?;
    let fingerprint = hex::encode(order.fingerprint());
    let updated = sqlx::query(
        "UPDATE devices SET pending_order = $1, order_fingerprint = $2, order_done_at = NULL, \
         updated_at = $3 WHERE id = $4 AND state <> 'decommissioned'",
    )
    .bind(serde_json::to_string(&order).map_err(ApiError::internal)?)
    .bind(&fingerprint)
    .bind(now_ms())
    .bind(&id)
    .execute(&state.db.write)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(ApiError::conflict(format!(
            "device {id} was decommissioned meanwhile"
        )));
    }
    state.devices.invalidate(&id);
    let detail = match &claims.transfer {
        Some(to) => format!(
            "device {id}: transfer order {} to {}",
            &fingerprint[..16],
            to.server
        ),
        None => format!("device {id}: decommission order {}", &fingerprint[..16]),
    };
    Ok((
        StatusCode::CREATED,
        axum::Extension(AuditDetail(detail)),
        Json(OrderIssued {
            device_id: id,
            action: claims.action,
            fingerprint,
            not_after: claims.not_after,
        }),
    ))
}

/// `DELETE /api/v1/devices/{id}/orders` (admin): withdraws the order not yet done, so the
/// device is offered updates again; a device that took it already reports it and is
/// refused that report (409), and so carries out nothing.
#[utoipa::path(delete, path = "/api/v1/devices/{id}/orders",
    responses((status = 204), (status = 404)), security(("bearer" = [])))]
pub async fn withdraw(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let withdrawn = sqlx::query(
        "UPDATE devices SET pending_order = NULL, order_fingerprint = NULL, updated_at = $1 \
         WHERE id = $2 AND pending_order IS NOT NULL AND order_done_at IS NULL",
    )
    .bind(now_ms())
    .bind(&id)
    .execute(&state.db.write)
    .await?;
    if withdrawn.rows_affected() == 0 {
        return Err(ApiError::not_found(format!(
            "device {id} has no order waiting (none was issued, or it was carried out)"
        )));
    }
    state.devices.invalidate(&id);
    Ok((
        StatusCode::NO_CONTENT,
        axum::Extension(AuditDetail(format!("device {id}: order withdrawn"))),
    ))
}

/// The order a device has to carry out, for its check-in answer.
pub async fn pending(state: &AppState, device_id: &str) -> Result<Option<SignedOrder>, ApiError> {
    let row: Option<(Option<String>,)> =
        sqlx::query_as("SELECT pending_order FROM devices WHERE id = $1 AND order_done_at IS NULL")
            .bind(device_id)
            .fetch_optional(&state.db.read)
            .await?;
    match row.and_then(|(order,)| order) {
        Some(json) => serde_json::from_str(&json)
            .map(Some)
            .map_err(ApiError::internal),
        None => Ok(None),
    }
}

/// `POST /api/v1/device/order-done`: the device carried out its order (its last request
/// here). Signed by the device's key, and taken also from a device this very report
/// decommissioned, so that a repeat after a lost answer gets the same answer.
#[utoipa::path(post, path = "/api/v1/device/order-done", request_body = OrderDone,
    responses((status = 200), (status = 400), (status = 401), (status = 403), (status = 409)),
    tag = "device")]
pub async fn done(State(state): State<AppState>, req: Request) -> ApiResult<StatusCode> {
    let request = DeviceRequest::read(req).await?;
    let Some(device) = state
        .devices
        .get(&state.db, &request.headers.device_id)
        .await?
    else {
        return Err(request.refuse_unknown(&state));
    };
    request.verify(&state, &device.public_key)?;
    if let Some(reason) = &device.revoked {
        return Err(ApiError::forbidden(format!(
            "this device's key or certificate is revoked: {reason}"
        )));
    }
    let OrderDone { order } = serde_json::from_slice(&request.body)
        .map_err(|e| ApiError::bad_request(format!("the report is not valid: {e}")))?;
    let (pending, fingerprint, done_at): (Option<String>, Option<String>, Option<i64>) =
        sqlx::query_as(
            "SELECT pending_order, order_fingerprint, order_done_at FROM devices WHERE id = $1",
        )
        .bind(&device.id)
        .fetch_one(&state.db.read)
        .await?;
    if fingerprint.as_deref() != Some(order.as_str()) {
        return Err(ApiError::conflict(
            "this is not the order the server holds for this device (withdrawn or replaced)",
        ));
    }
    if done_at.is_some() {
        return Ok(StatusCode::OK);
    }
    if device.state == DeviceState::Decommissioned {
        return Err(ApiError::forbidden("the device is decommissioned"));
    }
    let signed: SignedOrder = pending
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("an order fingerprint without its order"))?;
    let claims = signed.claims_unverified().map_err(ApiError::internal)?;
    let to = claims.transfer.as_ref().map(|t| t.server.clone());
    let now = now_ms();
    let updated = sqlx::query(
        "UPDATE devices SET state = 'decommissioned', order_done_at = $1, transferred_to = $2, \
         updated_at = $1 WHERE id = $3 AND order_fingerprint = $4 AND order_done_at IS NULL",
    )
    .bind(now)
    .bind(&to)
    .bind(&device.id)
    .bind(&order)
    .execute(&state.db.write)
    .await?;
    state.devices.invalidate(&device.id);
    if updated.rows_affected() == 1 {
        let detail = match &to {
            Some(server) => format!("device {} transferred to {server}", device.id),
            None => format!(
                "device {} erased its credentials (decommissioned)",
                device.id
            ),
        };
        tracing::info!(device = %device.id, %detail, "order done");
        let subject = format!("order of device {}", device.id);
        state
            .audit
            .record(
                &state.db,
                &crate::manage::audit::Record {
                    source: None,
                    caller: None,
                    method: &axum::http::Method::POST,
                    subject: &subject,
                    status: 200,
                    detail: &detail,
                },
            )
            .await;
    }
    Ok(StatusCode::OK)
}

fn order_fingerprint_text(order: &SignedOrder) -> String {
    hex::encode(order.fingerprint())
}

/// `POST /api/v1/device/transfer`: a device another operator transferred to this one.
/// Its certificate and the order must come from CAs this server trusts, the order must
/// name this server's device CA, and the request must be signed by the certified key;
/// the device is then registered with a certificate from this server's device CA. A
/// repeat gets the certificate already issued.
#[utoipa::path(post, path = "/api/v1/device/transfer", request_body = TransferIn,
    responses((status = 200, body = KeyRotated), (status = 400), (status = 401), (status = 403), (status = 409)),
    tag = "device")]
pub async fn take_in(State(state): State<AppState>, req: Request) -> ApiResult<Json<KeyRotated>> {
    let request = DeviceRequest::read(req).await?;
    let TransferIn { certificate, order } = serde_json::from_slice(&request.body)
        .map_err(|e| ApiError::bad_request(format!("the transfer is not valid: {e}")))?;
    let trust = state.cas.trust(&state.db).await?;
    let cert = trust.verify(&certificate).map_err(ApiError::forbidden)?;
    if cert.device_id != request.headers.device_id {
        return Err(ApiError::forbidden(
            "the request is signed for a different device than the certificate names",
        ));
    }
    let key = cert
        .device_key()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    request.verify(&state, &key)?;
    let Some(ca) = state.device_ca.clone() else {
        return Err(ApiError::conflict(
            "this server has no device CA (--device-ca-key) to certify transferred devices",
        ));
    };
    let claims = order
        .verify(trust.active(), &cert.device_id, (now_ms() / 1000) as u64)
        .map_err(|e| ApiError::forbidden(format!("the transfer order is refused: {e}")))?;
    let to = match (&claims.action, &claims.transfer) {
        (OrderAction::Transfer, Some(to)) => to,
        _ => return Err(ApiError::forbidden("the order is not a transfer")),
    };
    if to.device_ca().ok() != Some(ca.public_key()) {
        return Err(ApiError::forbidden(
            "the order transfers the device to another operator's device CA",
        ));
    }
    // A repeat (the answer was lost): the device is here with this key already.
    if let Some(stored) = stored_certificate(&state, &cert.device_id, &cert.public_key).await? {
        return Ok(Json(KeyRotated {
            certificate: stored,
        }));
    }
    let body = CertBody {
        issued_at: (now_ms() / 1000) as u64,
        issuer: rota_protocol::identity::issuer_id(&ca.public_key()),
        ..cert.clone()
    };
    let certificate = tokio::task::spawn_blocking(move || issue(&*ca, &body))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(format!("the device CA could not certify: {e}")))?;
    let new_claims = certificate
        .claims_unverified()
        .map_err(ApiError::internal)?;
    state
        .devices
        .register(&state.db, &certificate, &new_claims)
        .await?;
    tracing::info!(device = %cert.device_id, "took in a transferred device");
    let subject = format!("device {}", cert.device_id);
    let detail = format!(
        "device {} transferred in (order {})",
        cert.device_id,
        &order_fingerprint_text(&order)[..16]
    );
    state
        .audit
        .record(
            &state.db,
            &crate::manage::audit::Record::by_device(&subject, 200, &detail),
        )
        .await;
    Ok(Json(KeyRotated { certificate }))
}

async fn stored_certificate(
    state: &AppState,
    device_id: &str,
    public_key: &str,
) -> Result<Option<DeviceCertificate>, ApiError> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT certificate FROM devices WHERE id = $1 AND public_key = $2 AND state <> 'decommissioned'",
    )
    .bind(device_id)
    .bind(public_key)
    .fetch_optional(&state.db.read)
    .await?;
    row.map(|(json,)| serde_json::from_str(&json).map_err(ApiError::internal))
        .transpose()
}
