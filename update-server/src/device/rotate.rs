//! Device key rotation: a device replaces its identity key, and the operator's device CA
//! certifies the new one (`docs/design/lifecycle.md`, section 2).
//!
//! The rules, each where it is checked:
//! - the request is signed by the device's current key (`SignedByDevice`), and the new
//!   key signs [`rotation_message`] (proof of possession: nobody rotates a device to a key
//!   they do not hold);
//! - in a class that attests, only a device whose latest attestation is good may rotate
//!   (its state is what it is allowed to rotate in);
//! - the new certificate keeps the device's id, class, tags and DICE DeviceID; the old
//!   key is revoked in the same transaction (`crate::revocation`), so from its commit on
//!   every replica refuses it within a second;
//! - idempotent: a device whose answer was lost asks again, signed by the new key, and
//!   gets the certificate already issued;
//! - a device rotates whoever issued its current certificate, a retired manufacturer CA
//!   included (`crate::cas`): it is authenticated by its stored key, so re-certifying is
//!   how a device leaves a CA that is being retired.
//!
//! Scheduled rotation: a class's `max_certificate_age_days` ([`RotationPolicies`], set
//! through `PUT /api/v1/classes/{class_id}/rotation`) makes the check-in answer
//! `rotate: true` for a device whose current certificate is older ([`due`]), as an
//! operator's request does (`rota device rotate ID`).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use rota_protocol::api::{
    AttestationPolicy, AttestationState, ClassRotation, KeyRotated, KeyRotation, rotation_message,
};
use rota_protocol::{CertBody, DeviceCertificate, PublicKey, issue};

use super::SignedByDevice;
use crate::app::AppState;
use crate::db::{Db, new_id, now_ms};
use crate::error::{ApiError, ApiResult};
use crate::manage::AuditDetail;
use crate::revocation::Subjects;

/// `POST /api/v1/device/rotate`.
#[utoipa::path(post, path = "/api/v1/device/rotate", request_body = KeyRotation,
    responses((status = 200, body = KeyRotated), (status = 400), (status = 403), (status = 409)),
    tag = "device")]
pub async fn rotate(
    State(state): State<AppState>,
    signed: SignedByDevice,
) -> ApiResult<Json<KeyRotated>> {
    let device = &signed.device;
    let request: KeyRotation = serde_json::from_slice(&signed.body)
        .map_err(|e| ApiError::bad_request(format!("the key rotation is not valid: {e}")))?;
    let new_key = hex::decode(&request.public_key)
        .ok()
        .filter(|_| request.public_key.bytes().all(|b| !b.is_ascii_uppercase()))
        .and_then(|b| PublicKey::from_raw(&b))
        .filter(|k| k.validate().is_ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "public_key is not an Ed25519 or P-256 public key in lowercase hex",
            )
        })?;
    let (certificate_json,): (String,) =
        sqlx::query_as("SELECT certificate FROM devices WHERE id = $1")
            .bind(&device.id)
            .fetch_one(&state.db.read)
            .await?;
    let current: DeviceCertificate =
        serde_json::from_str(&certificate_json).map_err(ApiError::internal)?;
    let claims = current.claims_unverified().map_err(ApiError::internal)?;

    // Rule "idempotent": signed by the new key, which the stored certificate names.
    if new_key == device.public_key {
        return Ok(Json(KeyRotated {
            certificate: current,
        }));
    }
    let Some(ca) = &state.device_ca else {
        return Err(ApiError::conflict(
            "this server has no device CA (--device-ca-key) to certify a new key",
        ));
    };
    // Rule "proof of possession".
    new_key
        .verify(
            &rotation_message(&device.id, &device.public_key, &new_key),
            &request.proof,
        )
        .map_err(|_| {
            ApiError::bad_request(
                "the proof does not verify with the new key: it must sign rotation_message",
            )
        })?;
    // Rule "only an attested device rotates", in classes that attest.
    let policy = state
        .policies
        .get(&state.db, &device.class_id)
        .await?
        .policy;
    // Where it has DICE, its attested state now: fresh evidence with the request, which
    // must pass appraisal (a device without DICE is held to its latest attestation).
    if policy != AttestationPolicy::Off {
        match &request.evidence {
            Some(evidence) => {
                let appraisal = crate::attestation::appraise(&state, device, &evidence.0).await?;
                if appraisal.state != AttestationState::Ok {
                    return Err(ApiError::forbidden(format!(
                        "the evidence sent with the rotation fails appraisal: {}",
                        appraisal.reason.unwrap_or_default()
                    )));
                }
            }
            None if device.dice_device_id.is_some() => {
                return Err(ApiError::forbidden(
                    "this device's class attests and the device has DICE: send evidence of \
                     its boot with the rotation",
                ));
            }
            None if device.attestation != AttestationState::Ok => {
                return Err(ApiError::forbidden(
                    "this device's class attests and its latest attestation is not good: attest first",
                ));
            }
            None => {}
        }
    }

    let now = now_ms();
    let body = CertBody::new(
        &ca.public_key(),
        &device.id,
        &new_key,
        &device
            .class_id
            .parse()
            .map_err(|_| ApiError::internal("a stored class id is not a UUID"))?,
        claims.tags.clone(),
        (now / 1000) as u64,
    );
    let body = CertBody {
        dice_device_id: claims.dice_device_id.clone(),
        ..body
    };
    let ca = ca.clone();
    let certificate = tokio::task::spawn_blocking(move || issue(&*ca, &body))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(format!("the device CA could not certify: {e}")))?;
    let cert = certificate
        .claims_unverified()
        .map_err(ApiError::internal)?;
    let subjects = Subjects::of(&certificate, &cert);
    let old_key = hex::encode(device.public_key.as_bytes());

    let mut tx = state.db.write.begin().await?;
    let moved = sqlx::query(
        "UPDATE devices SET public_key = $1, certificate = $2, certificate_sha256 = $3, \
         issuer = $4, issued_at = $5, rotate_requested_at = NULL, updated_at = $6 \
         WHERE id = $7 AND public_key = $8",
    )
    .bind(&subjects.public_key)
    .bind(serde_json::to_string(&certificate).map_err(ApiError::internal)?)
    .bind(&subjects.certificate_sha256)
    .bind(&subjects.issuer)
    .bind(subjects.issued_at_ms)
    .bind(now)
    .bind(&device.id)
    .bind(&old_key)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() == 0 {
        return Err(ApiError::conflict(
            "the device's key changed meanwhile; try again",
        ));
    }
    sqlx::query(
        "INSERT INTO revocations (id, kind, subject, not_before, reason, created_at) \
         VALUES ($1, 'device_key', $2, NULL, $3, $4) ON CONFLICT (kind, subject) DO NOTHING",
    )
    .bind(new_id())
    .bind(&old_key)
    .bind(format!(
        "rotated: device {} now holds key {}",
        device.id,
        &hex::encode(new_key.key_id())[..16]
    ))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    state.devices.invalidate(&device.id);
    metrics::counter!("rota_key_rotations_total").increment(1);
    let subject = format!("key rotation of device {}", device.id);
    let detail = format!(
        "key {} replaced by {}",
        &hex::encode(device.public_key.key_id())[..16],
        &hex::encode(new_key.key_id())[..16]
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

/// Asks device `id` to rotate its key at its next check-in (`rota device rotate ID`).
pub async fn request(
    state: &AppState,
    id: &str,
) -> Result<rota_protocol::api::DeviceInfo, ApiError> {
    let done = sqlx::query("UPDATE devices SET rotate_requested_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(id)
        .execute(&state.db.write)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("there is no device {id}")));
    }
    state.devices.invalidate(id);
    super::directory::device_info(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("there is no device {id}")))
}

/// One day in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// Whether a certificate issued at `issued_at_ms` is older than `max_age_days` at `now_ms`
/// (a device whose issue time is unknown is not asked).
pub fn due(issued_at_ms: Option<i64>, max_age_days: u32, now_ms: i64) -> bool {
    issued_at_ms.is_some_and(|at| now_ms - at > i64::from(max_age_days) * DAY_MS)
}

/// Classes' maximum certificate ages in days, cached for a second like the attestation
/// policies, so that a check-in costs no query of its own.
#[derive(Debug, Default)]
pub struct RotationPolicies {
    cache: Mutex<HashMap<String, (Option<u32>, i64)>>,
}

impl RotationPolicies {
    /// The maximum certificate age of `class_id`, in days (`None`: no schedule).
    pub async fn get(&self, db: &Db, class_id: &str) -> Result<Option<u32>, ApiError> {
        let now = now_ms();
        if let Some((days, at)) = self.cache.lock().unwrap().get(class_id) {
            if now - at < super::directory::CACHE_TTL_MS {
                return Ok(*days);
            }
        }
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT max_certificate_age_days FROM rotation_policies WHERE class_id = $1",
        )
        .bind(class_id)
        .fetch_optional(&db.read)
        .await?;
        let days = row.map(|(d,)| u32::try_from(d).unwrap_or(u32::MAX));
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= 100_000 {
            cache.clear();
        }
        cache.insert(class_id.to_string(), (days, now));
        Ok(days)
    }

    fn forget(&self, class_id: &str) {
        self.cache.lock().unwrap().remove(class_id);
    }
}

fn valid_class(class_id: &str) -> Result<(), ApiError> {
    if rota_protocol::valid_uuid(class_id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "the class id {class_id:?} is not a UUID in lowercase hyphenated form"
        )))
    }
}

/// `PUT /api/v1/classes/{class_id}/rotation` (operator): sets or (with `null`) clears a
/// class's maximum certificate age. Every replica applies it within a second.
#[utoipa::path(put, path = "/api/v1/classes/{class_id}/rotation", request_body = ClassRotation,
    params(("class_id" = String, Path, description = "the device class UUID")),
    responses((status = 200, body = ClassRotation), (status = 400), (status = 409)),
    security(("bearer" = [])), tag = "devices")]
pub async fn set_policy(
    State(state): State<AppState>,
    Path(class_id): Path<String>,
    Json(body): Json<ClassRotation>,
) -> ApiResult<impl IntoResponse> {
    valid_class(&class_id)?;
    body.validate().map_err(ApiError::bad_request)?;
    let detail = match body.max_certificate_age_days {
        Some(days) => {
            if state.device_ca.is_none() {
                return Err(ApiError::conflict(
                    "this server has no device CA (--device-ca-key) to certify rotated keys: \
                     a schedule would ask devices for rotations it cannot make",
                ));
            }
            sqlx::query(
                "INSERT INTO rotation_policies (class_id, max_certificate_age_days, updated_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (class_id) DO UPDATE SET \
                 max_certificate_age_days = excluded.max_certificate_age_days, \
                 updated_at = excluded.updated_at",
            )
            .bind(&class_id)
            .bind(i64::from(days))
            .bind(now_ms())
            .execute(&state.db.write)
            .await?;
            format!(
                "class {class_id}: keys rotate when their certificates are older than {days} days"
            )
        }
        None => {
            sqlx::query("DELETE FROM rotation_policies WHERE class_id = $1")
                .bind(&class_id)
                .execute(&state.db.write)
                .await?;
            format!("class {class_id}: no scheduled key rotation")
        }
    };
    state.rotation.forget(&class_id);
    Ok((Extension(AuditDetail(detail)), Json(body)))
}

/// `GET /api/v1/classes/{class_id}/rotation`: a class's maximum certificate age (`null`
/// when it has no schedule).
#[utoipa::path(get, path = "/api/v1/classes/{class_id}/rotation",
    params(("class_id" = String, Path, description = "the device class UUID")),
    responses((status = 200, body = ClassRotation), (status = 400)),
    security(("bearer" = [])), tag = "devices")]
pub async fn get_policy(
    State(state): State<AppState>,
    Path(class_id): Path<String>,
) -> ApiResult<Json<ClassRotation>> {
    valid_class(&class_id)?;
    Ok(Json(ClassRotation {
        max_certificate_age_days: state.rotation.get(&state.db, &class_id).await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::{DAY_MS, due};

    #[test]
    fn a_certificate_is_due_for_rotation_only_once_older_than_the_class_allows() {
        let now = 1_000 * DAY_MS;
        assert!(due(Some(now - 31 * DAY_MS), 30, now));
        assert!(!due(Some(now - 30 * DAY_MS), 30, now));
        assert!(!due(Some(now), 1, now));
        assert!(!due(None, 1, now), "an unknown issue time is not asked");
    }
}
