//! Remote attestation: single-use challenges, appraisal of a device's evidence against the
//! signed releases and its class's policy, and the verdict the device carries from then on.
//! The evidence format is `rota_protocol::attestation`; the plan, `docs/design/attestation.md`.
//!
//! Appraisal, each step with the answer it gives:
//! 1. The evidence verifies (structure, chain up to the DeviceID its certificate binds,
//!    signatures, the token names this device): else 400 and nothing changes, except a
//!    clone (a correctly signed chain from another DeviceID), which flags the device (403).
//! 2. Its nonce is one this server issued to this device, unexpired and unused; using it
//!    is one `UPDATE … WHERE used_at IS NULL` in the shared database, so a nonce is
//!    accepted once across every replica: else 400, nothing changes.
//! 3. The measurement against reference values the server holds signed or configured:
//!    the image digest must be a release of the device's class (from offline-signed TUF
//!    targets), the bootloader one the class expects, the DICE mode Normal, and, where the
//!    class requires it, the evidence hardware-rooted. Any failure flags the device
//!    (`attestation: failed` with the reason): it is offered no update, and it is audited.
//!
//! A clone flag is sticky: good evidence from the device the certificate names does not
//! clear it (both present the same certificate); an operator decides
//! (`rota device attest ID --clear`).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rota_protocol::api::{
    Attest, AttestationChallenge, AttestationPolicy, AttestationResult, AttestationState,
    ClassAttestation,
};
use rota_protocol::attestation::{Attested, EvidenceError, MeasuredBy};

use crate::app::AppState;
use crate::db::{Db, now_ms};
use crate::device::SignedByDevice;
use crate::device::directory::KnownDevice;
use crate::error::{ApiError, ApiResult};
use crate::manage::audit::Record;

/// How long a class's policy is cached: a change through any replica applies on every
/// replica within this time.
const POLICY_TTL_MS: i64 = 1000;
/// The reason text that marks a clone flag (sticky, see the module docs).
const CLONE: &str = "clone: ";

/// A class's policy as appraisal applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub policy: AttestationPolicy,
    pub bootloaders: Vec<[u8; 32]>,
}

impl Policy {
    const OFF: Policy = Policy {
        policy: AttestationPolicy::Off,
        bootloaders: Vec::new(),
    };
}

/// Class policies, cached for a second (`POLICY_TTL_MS`).
#[derive(Debug, Default)]
pub struct Policies {
    cache: Mutex<HashMap<String, (Policy, i64)>>,
}

impl Policies {
    /// The policy of `class_id` (`off` when none was set).
    pub async fn get(&self, db: &Db, class_id: &str) -> Result<Policy, ApiError> {
        let now = now_ms();
        if let Some((policy, at)) = self.cache.lock().unwrap().get(class_id) {
            if now - at < POLICY_TTL_MS {
                return Ok(policy.clone());
            }
        }
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT policy, bootloaders FROM attestation_policies WHERE class_id = $1",
        )
        .bind(class_id)
        .fetch_optional(&db.read)
        .await?;
        let policy = match row {
            None => Policy::OFF,
            Some((policy, bootloaders)) => Policy {
                policy: policy.parse().map_err(ApiError::internal)?,
                bootloaders: serde_json::from_str::<Vec<String>>(&bootloaders)
                    .map_err(ApiError::internal)?
                    .iter()
                    .map(|hex| {
                        hex::decode(hex)
                            .ok()
                            .and_then(|b| <[u8; 32]>::try_from(b).ok())
                            .ok_or_else(|| ApiError::internal("a malformed bootloader measurement"))
                    })
                    .collect::<Result<_, _>>()?,
            },
        };
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= 100_000 {
            cache.clear();
        }
        cache.insert(class_id.to_string(), (policy.clone(), now));
        Ok(policy)
    }

    fn forget(&self, class_id: &str) {
        self.cache.lock().unwrap().remove(class_id);
    }
}

/// What the server concluded from one piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appraisal {
    pub state: AttestationState,
    pub reason: Option<String>,
    /// The release whose image was measured, when one of the class has it.
    pub version: Option<u64>,
    pub measured_by: MeasuredBy,
}

impl Appraisal {
    pub fn result(&self) -> AttestationResult {
        AttestationResult {
            attestation: self.state,
            reason: self.reason.clone(),
            attested_version: self.version,
        }
    }
}

/// `POST /api/v1/device/attestation/nonce`: a fresh challenge for this device.
#[utoipa::path(post, path = "/api/v1/device/attestation/nonce",
    responses((status = 200, body = AttestationChallenge), (status = 429)), tag = "device")]
pub async fn challenge(
    State(state): State<AppState>,
    signed: SignedByDevice,
) -> ApiResult<Json<AttestationChallenge>> {
    let now = now_ms();
    let lifetime_s = state.config.attestation_nonce_lifetime_s;
    let (outstanding,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM attestation_nonces \
         WHERE device_id = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(&signed.device.id)
    .bind(now)
    .fetch_one(&state.db.read)
    .await?;
    // Rule "bounded state per device": a device cannot fill the table with challenges.
    if outstanding >= i64::from(state.config.attestation_nonces_per_device) {
        return Err(ApiError::too_many_requests(
            format!(
                "this device holds {outstanding} unused attestation challenges already; use one or let them expire"
            ),
            std::time::Duration::from_secs(u64::from(lifetime_s)),
        ));
    }
    let mut nonce = vec![0u8; 32];
    getrandom::fill(&mut nonce).map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO attestation_nonces (nonce, device_id, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(hex::encode(&nonce))
    .bind(&signed.device.id)
    .bind(now + i64::from(lifetime_s) * 1000)
    .execute(&state.db.write)
    .await?;
    Ok(Json(AttestationChallenge {
        nonce,
        expires_in_s: lifetime_s,
    }))
}

/// `POST /api/v1/device/attestation`: evidence on request or at enrolment.
#[utoipa::path(post, path = "/api/v1/device/attestation", request_body = Attest,
    responses((status = 200, body = AttestationResult), (status = 400), (status = 403), (status = 429)),
    tag = "device")]
pub async fn attest(
    State(state): State<AppState>,
    signed: SignedByDevice,
) -> ApiResult<Json<AttestationResult>> {
    let Attest { evidence } = serde_json::from_slice(&signed.body)
        .map_err(|e| ApiError::bad_request(format!("the attestation is not valid: {e}")))?;
    // Evidence counts against the device's report quota: each appraisal writes.
    crate::device::checkin::within_report_quota(&state, &signed.device.id)?;
    let appraisal = appraise(&state, &signed.device, &evidence.0).await?;
    Ok(Json(appraisal.result()))
}

/// Verifies `evidence` from `device`, uses its nonce, appraises it and records the
/// verdict (see the module docs).
pub async fn appraise(
    state: &AppState,
    device: &KnownDevice,
    evidence: &[u8],
) -> Result<Appraisal, ApiError> {
    let attested = match rota_protocol::attestation::verify(
        evidence,
        &device.public_key,
        device.dice_device_id.as_ref(),
    ) {
        Ok(attested) => attested,
        Err(e) if e.is_clone() => {
            let reason = format!("{CLONE}{e}");
            flag(state, device, &reason, "clone", None).await?;
            return Err(ApiError::forbidden(reason));
        }
        Err(e) => return Err(refuse(state, device, refusal_code(&e), e.to_string()).await),
    };
    if !use_nonce(&state.db, &device.id, &attested.nonce).await? {
        return Err(refuse(
            state,
            device,
            "nonce",
            "the attestation nonce is not one this server issued to this device, or it expired, or it was used already".into(),
        )
        .await);
    }
    let policy = state.policies.get(&state.db, &device.class_id).await?;
    let digest = hex::encode(attested.measurement.image_digest);
    let release: Option<(i64,)> = sqlx::query_as(
        "SELECT version FROM releases WHERE class_id = $1 AND sha256 = $2 \
         ORDER BY version DESC LIMIT 1",
    )
    .bind(&device.class_id)
    .bind(&digest)
    .fetch_optional(&state.db.read)
    .await?;
    let version = release.map(|(v,)| v as u64);
    let failure = failure(&attested, &policy, version, &digest, &device.class_id);
    let appraisal = Appraisal {
        state: if failure.is_some() {
            AttestationState::Failed
        } else {
            AttestationState::Ok
        },
        reason: failure.as_ref().map(|(_, reason)| reason.clone()),
        version,
        measured_by: attested.measured_by,
    };
    match failure {
        Some((code, reason)) => flag(state, device, &reason, code, Some(&attested)).await?,
        None => record(state, device, &appraisal, &attested).await?,
    }
    Ok(appraisal)
}

/// Why appraisal fails, as a metric label and a sentence; `None`: it passes.
fn failure(
    attested: &Attested,
    policy: &Policy,
    version: Option<u64>,
    digest: &str,
    class_id: &str,
) -> Option<(&'static str, String)> {
    let m = &attested.measurement;
    if attested.debug {
        return Some((
            "debug",
            "the device booted with debugging enabled (DICE mode is not Normal)".into(),
        ));
    }
    if version.is_none() {
        return Some((
            "unknown_firmware",
            format!(
                "the measured firmware (SHA-256 {digest}) is in no signed release of class {class_id}"
            ),
        ));
    }
    if !policy.bootloaders.is_empty() && !policy.bootloaders.contains(&m.bootloader) {
        return Some((
            "unexpected_bootloader",
            format!(
                "the bootloader measurement {} is not one class {class_id} expects",
                hex::encode(m.bootloader)
            ),
        ));
    }
    if policy.policy == AttestationPolicy::Required
        && attested.measured_by != MeasuredBy::Bootloader
    {
        return Some((
            "software_only",
            format!(
                "class {class_id} requires evidence measured by the bootloader; this evidence is software-measured"
            ),
        ));
    }
    None
}

fn refusal_code(e: &EvidenceError) -> &'static str {
    match e {
        EvidenceError::TooLarge { .. } => "too_large",
        EvidenceError::UnknownAlgorithm(_) => "unknown_algorithm",
        EvidenceError::BadSignature(_) | EvidenceError::BadCertificateSignature => "bad_signature",
        EvidenceError::MeasurementsDiffer => "measurements_differ",
        EvidenceError::NoCertifiedDeviceId | EvidenceError::SoftwareFromDiceDevice => "wrong_kind",
        _ => "malformed",
    }
}

/// Uses a nonce: issued to `device_id`, unexpired, unused; true if this call used it.
async fn use_nonce(db: &Db, device_id: &str, nonce: &[u8]) -> Result<bool, ApiError> {
    let now = now_ms();
    let used = sqlx::query(
        "UPDATE attestation_nonces SET used_at = $1 \
         WHERE nonce = $2 AND device_id = $3 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(hex::encode(nonce))
    .bind(device_id)
    .execute(&db.write)
    .await?;
    Ok(used.rows_affected() == 1)
}

/// Deletes challenges that expired an hour ago or more (the background pass).
pub async fn sweep_nonces(db: &Db, now_ms: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM attestation_nonces WHERE expires_at < $1")
        .bind(now_ms - 3_600_000)
        .execute(&db.write)
        .await?;
    Ok(done.rows_affected())
}

/// Evidence that proves nothing: refused, audited (within the refusal rate), counted.
async fn refuse(
    state: &AppState,
    device: &KnownDevice,
    code: &'static str,
    why: String,
) -> ApiError {
    metrics::counter!("rota_attestation_total", "result" => "refused", "reason" => code)
        .increment(1);
    tracing::info!(device = %device.id, reason = %why, "refused attestation evidence");
    let subject = format!("attestation of device {}", device.id);
    let _ = state
        .audit
        .refusal(&state.db, &Record::by_device(&subject, 400, &why))
        .await;
    ApiError::bad_request(why)
}

/// Marks the device `failed` with `reason`, audits it and counts it.
async fn flag(
    state: &AppState,
    device: &KnownDevice,
    reason: &str,
    code: &'static str,
    attested: Option<&Attested>,
) -> Result<(), ApiError> {
    metrics::counter!("rota_attestation_total", "result" => "failed", "reason" => code)
        .increment(1);
    tracing::warn!(device = %device.id, %reason, "attestation failed");
    let now = now_ms();
    sqlx::query(
        "UPDATE devices SET attestation = 'failed', attestation_reason = $1, attested_at = $2, \
         attested_digest = COALESCE($3, attested_digest), \
         attested_bootloader = COALESCE($4, attested_bootloader), updated_at = $2 \
         WHERE id = $5 AND NOT (attestation = 'failed' AND attestation_reason LIKE 'clone: %')",
    )
    .bind(reason)
    .bind(now)
    .bind(attested.map(|a| hex::encode(a.measurement.image_digest)))
    .bind(attested.map(|a| hex::encode(a.measurement.bootloader)))
    .bind(&device.id)
    .execute(&state.db.write)
    .await?;
    state.devices.invalidate(&device.id);
    let subject = format!("attestation of device {}", device.id);
    state
        .audit
        .record(&state.db, &Record::by_device(&subject, 403, reason))
        .await;
    Ok(())
}

/// Records good evidence (a clone flag stays: see the module docs).
async fn record(
    state: &AppState,
    device: &KnownDevice,
    appraisal: &Appraisal,
    attested: &Attested,
) -> Result<(), ApiError> {
    metrics::counter!("rota_attestation_total", "result" => "ok", "reason" => "").increment(1);
    let now = now_ms();
    sqlx::query(
        "UPDATE devices SET attestation = 'ok', attestation_reason = NULL, attested_version = $1, \
         attested_digest = $2, attested_bootloader = $3, attested_by = $4, attested_at = $5, \
         updated_at = $5 \
         WHERE id = $6 AND NOT (attestation = 'failed' AND attestation_reason LIKE 'clone: %')",
    )
    .bind(appraisal.version.map(|v| v as i64))
    .bind(hex::encode(attested.measurement.image_digest))
    .bind(hex::encode(attested.measurement.bootloader))
    .bind(attested.measured_by.as_str())
    .bind(now)
    .bind(&device.id)
    .execute(&state.db.write)
    .await?;
    state.devices.invalidate(&device.id);
    Ok(())
}

/// Flags a device whose report contradicts its evidence: it said it confirmed `claimed`
/// while its bootloader measured `measured` (another release, or none).
pub async fn flag_contradiction(
    state: &AppState,
    device: &KnownDevice,
    claimed: u64,
    measured: Option<u64>,
) -> Result<String, ApiError> {
    let reason = match measured {
        Some(v) => format!(
            "the device reported version {claimed} confirmed, but the image measured at boot is version {v}"
        ),
        None => format!(
            "the device reported version {claimed} confirmed, but the image measured at boot is in no signed release"
        ),
    };
    flag(state, device, &reason, "contradiction", None).await?;
    Ok(reason)
}

/// `PUT /api/v1/classes/{class_id}/attestation` (admin): sets a class's policy.
#[utoipa::path(put, path = "/api/v1/classes/{class_id}/attestation", request_body = ClassAttestation,
    params(("class_id" = String, Path, description = "the device class UUID")),
    responses((status = 200, body = ClassAttestation), (status = 400)),
    security(("bearer" = [])), tag = "devices")]
pub async fn set_policy(
    State(state): State<AppState>,
    Path(class_id): Path<String>,
    Json(body): Json<ClassAttestation>,
) -> ApiResult<Json<ClassAttestation>> {
    valid_class(&class_id)?;
    body.validate().map_err(ApiError::bad_request)?;
    let bootloaders = serde_json::to_string(&body.bootloaders).map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO attestation_policies (class_id, policy, bootloaders, updated_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (class_id) DO UPDATE SET \
         policy = excluded.policy, bootloaders = excluded.bootloaders, updated_at = excluded.updated_at",
    )
    .bind(&class_id)
    .bind(body.policy.as_str())
    .bind(bootloaders)
    .bind(now_ms())
    .execute(&state.db.write)
    .await?;
    state.policies.forget(&class_id);
    Ok(Json(body))
}

/// `GET /api/v1/classes/{class_id}/attestation`: a class's policy (`off` when unset).
#[utoipa::path(get, path = "/api/v1/classes/{class_id}/attestation",
    params(("class_id" = String, Path, description = "the device class UUID")),
    responses((status = 200, body = ClassAttestation), (status = 400)),
    security(("bearer" = [])), tag = "devices")]
pub async fn get_policy(
    State(state): State<AppState>,
    Path(class_id): Path<String>,
) -> ApiResult<Json<ClassAttestation>> {
    valid_class(&class_id)?;
    let policy = state.policies.get(&state.db, &class_id).await?;
    Ok(Json(ClassAttestation {
        policy: policy.policy,
        bootloaders: policy.bootloaders.iter().map(hex::encode).collect(),
    }))
}

/// `POST /api/v1/devices/{id}/attest` (operator): asks the device for fresh evidence at
/// its next check-in; with `clear`, also clears a flag (a clone flag included).
pub async fn request_evidence(
    state: &AppState,
    id: &str,
    clear: bool,
) -> Result<rota_protocol::api::DeviceInfo, ApiError> {
    let done = sqlx::query(
        "UPDATE devices SET attest_requested_at = $1, \
         attestation = CASE WHEN $2 = 1 THEN 'none' ELSE attestation END, \
         attestation_reason = CASE WHEN $2 = 1 THEN NULL ELSE attestation_reason END \
         WHERE id = $3",
    )
    .bind(now_ms())
    .bind(i64::from(clear))
    .bind(id)
    .execute(&state.db.write)
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("there is no device {id}")));
    }
    state.devices.invalidate(id);
    crate::device::directory::device_info(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("there is no device {id}")))
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
