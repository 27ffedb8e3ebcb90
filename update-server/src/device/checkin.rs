//! Check-in and reports.
//!
//! A check-in is a conditional GET: the answer's entity tag names the assignment (or its
//! absence), so a device that already knows the answer gets `304 Not Modified`. The
//! "nothing new" answer is computed from the in-memory view of live rollouts without a
//! database write (last-seen is batched, see [`super::directory`]); only a device that a
//! rollout may actually take reaches the rollout engine, whose database transaction makes
//! the final decision.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use rota_protocol::api::{
    Assignment, AttestationPolicy, AttestationState, CheckInQuery, CheckInResponse, LastResult,
    Report, ReportAck, ReportKind, SlotState,
};
use rota_protocol::order::SignedOrder;
use sha2::{Digest, Sha256};

use super::SignedByDevice;
use super::directory::Seen;
use crate::app::AppState;
use crate::config::Limits;
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::rollout::{DeviceView, Proof};

pub use rota_protocol::api::POLL_AFTER_HEADER;

/// `GET /api/v1/device/checkin?version=…&slot=…&last=…`
#[utoipa::path(get, path = "/api/v1/device/checkin", params(CheckInQuery),
    responses((status = 200, body = CheckInResponse), (status = 304)), tag = "device")]
pub async fn checkin(
    State(state): State<AppState>,
    Query(query): Query<CheckInQuery>,
    headers: HeaderMap,
    signed: SignedByDevice,
) -> ApiResult<Response> {
    let device = signed.device;
    let now = now_ms();
    let attests = state
        .policies
        .get(&state.db, &device.class_id)
        .await?
        .policy
        != AttestationPolicy::Off;
    // Rule "ask for evidence": when an operator asked, or when the class attests and
    // this device never has.
    let attest =
        device.attest_requested || (attests && device.attestation == AttestationState::None);
    // Rule "a device whose attestation failed is excluded from rollouts", in classes
    // that attest (elsewhere the verdict is shown, not acted on).
    let excluded = attests && device.attestation == AttestationState::Failed;
    // Rule "rotate when asked, or when the certificate is older than the class allows".
    let rotate = device.rotate_requested
        || state
            .rotation
            .get(&state.db, &device.class_id)
            .await?
            .is_some_and(|max_age| super::rotate::due(device.issued_at_ms, max_age, now));
    metrics::counter!("rota_checkins_total").increment(1);
    state.devices.saw(
        &device.id,
        Seen {
            at: now,
            running_version: query.version,
            slot: query.slot,
            last_result: query.last,
        },
    );
    // An operator order (decommission, transfer) rides on every check-in until done.
    let order = if device.order_pending {
        super::orders::pending(&state, &device.id).await?
    } else {
        None
    };
    let view = DeviceView {
        id: device.id,
        class_id: device.class_id,
        tags: device.tags,
        running_version: query.version,
    };
    // A device ordered to leave is offered nothing more.
    let assignment = if order.is_none() && !excluded && state.live.may_offer(&view) {
        state.engine.offer(&view, now).await?
    } else {
        None
    };
    let tag = entity_tag(assignment.as_ref(), attest, rotate, order.as_ref());
    let poll_after = jittered(poll_hint(
        state.config.poll_interval_s,
        state.config.poll_hint_max_factor,
        state.db.writes.load(),
    ));
    let known = crate::app::if_none_match(&headers, &tag);
    let mut response = if known {
        metrics::counter!("rota_checkins_not_modified_total").increment(1);
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Json(CheckInResponse {
            poll_after_s: poll_after,
            assignment,
            attest,
            rotate,
            order,
        })
        .into_response()
    };
    set_headers(&mut response, &tag, poll_after);
    Ok(response)
}

fn set_headers(response: &mut Response, tag: &str, poll_after: u32) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(tag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(POLL_AFTER_HEADER, HeaderValue::from(poll_after));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
}

/// A weak entity tag over the answer (less its poll hint): equal answers, equal tags.
pub fn entity_tag(
    assignment: Option<&Assignment>,
    attest: bool,
    rotate: bool,
    order: Option<&SignedOrder>,
) -> String {
    let order = order.map(|o| hex::encode(o.fingerprint()));
    let canonical = serde_json::to_vec(&(assignment, attest, rotate, order)).unwrap_or_default();
    let digest = Sha256::digest(&canonical);
    format!("W/\"{}\"", hex::encode(&digest[..12]))
}

/// The poll interval a check-in asks for: `base` seconds, lengthened up to `max_factor`
/// times in step with `load` (0 to 1: how far behind the database's writer is,
/// `crate::db::batch::WriteBatcher::load`), so that while the database falls behind the
/// fleet checks in less often instead of being refused. The factor in use is the gauge
/// `rota_poll_hint_factor`.
pub fn poll_hint(base: u32, max_factor: u32, load: f64) -> u32 {
    let factor = 1.0 + f64::from(max_factor.max(1) - 1) * load.clamp(0.0, 1.0);
    metrics::gauge!("rota_poll_hint_factor").set(factor);
    (f64::from(base) * factor).round().min(f64::from(u32::MAX)) as u32
}

/// `base` seconds ±20 %, so a fleet that rebooted together spreads its check-ins out.
pub fn jittered(base: u32) -> u32 {
    let mut byte = [0u8; 2];
    let _ = getrandom::fill(&mut byte);
    let unit = u16::from_le_bytes(byte) as f64 / u16::MAX as f64; // [0, 1]
    let factor = 0.8 + 0.4 * unit;
    ((base as f64 * factor).round() as u32).max(1)
}

/// New reports per device: governor's keyed limiter, keyed by the authenticated device
/// id (the signature is checked first, so no one can spend another device's quota).
pub type ReportLimiter = governor::DefaultKeyedRateLimiter<String>;

pub fn report_limiter(limits: &Limits) -> ReportLimiter {
    governor::RateLimiter::keyed(limits.report_quota())
}

/// `POST /api/v1/device/report`: a status event. Idempotent by `event_id`.
///
/// One device once sent 1,273 reports/s, all stored (issue 12). Rule "report spam": new
/// events from one device pass at `reports-per-minute` (`report-burst` at once); beyond
/// that the answer is 429 with `Retry-After`, which the agent treats as "try again
/// later", keeping the report queued. Rule "a retry is never limited": an event already
/// stored is acknowledged as a duplicate before the limit is consulted, so a device whose
/// answer was lost can always settle its queue (the engine's insert stays the one
/// authority on duplicates; this read only spares retries the limit).
#[utoipa::path(post, path = "/api/v1/device/report", request_body = Report,
    responses((status = 200, body = ReportAck), (status = 429)), tag = "device")]
pub async fn report(
    State(state): State<AppState>,
    signed: SignedByDevice,
) -> ApiResult<Json<ReportAck>> {
    let report: Report = serde_json::from_slice(&signed.body)
        .map_err(|e| ApiError::bad_request(format!("the report is not valid: {e}")))?;
    report.validate().map_err(ApiError::bad_request)?;
    let device_id = &signed.device.id;
    let stored: Option<(i64,)> =
        sqlx::query_as("SELECT 1 FROM device_events WHERE device_id = $1 AND event_id = $2")
            .bind(device_id)
            .bind(&report.event_id)
            .fetch_optional(&state.db.read)
            .await?;
    if stored.is_some() {
        return Ok(Json(ReportAck { duplicate: true }));
    }
    within_report_quota(&state, device_id)?;
    let proof = confirmation_proof(&state, &signed.device, &report).await?;
    let now = now_ms();
    let ack = state.engine.report(device_id, &report, &proof, now).await?;
    // A confirmed boot is the device's running version from now on: the fleet's versions
    // show it at once, not a poll later at the next check-in (unless the class attests
    // and the evidence does not show that boot).
    if report.kind == ReportKind::Confirmed && !ack.duplicate && !matches!(proof, Proof::Missing(_))
    {
        state.devices.saw(
            device_id,
            Seen {
                at: now,
                running_version: report.version,
                slot: SlotState::Confirmed,
                last_result: Some(LastResult::Confirmed),
            },
        );
    }
    metrics::counter!("rota_reports_total", "kind" => report.kind.as_str()).increment(1);
    Ok(Json(ack))
}

/// What a report's evidence proves about the boot it reports (rule "a confirmed counts
/// only when the evidence shows the new image measured", for classes that attest).
/// Evidence that does not verify is refused here (4xx) and the report is not stored; a
/// report of `confirmed` whose evidence shows another image flags the device.
async fn confirmation_proof(
    state: &AppState,
    device: &super::directory::KnownDevice,
    report: &Report,
) -> Result<Proof, ApiError> {
    let appraisal = match &report.evidence {
        Some(evidence) => Some(crate::attestation::appraise(state, device, &evidence.0).await?),
        None => None,
    };
    if report.kind != ReportKind::Confirmed {
        return Ok(Proof::NotRequired);
    }
    let policy = state
        .policies
        .get(&state.db, &device.class_id)
        .await?
        .policy;
    if policy == AttestationPolicy::Off {
        return Ok(Proof::NotRequired);
    }
    Ok(match appraisal {
        None => Proof::Missing(format!(
            "confirmed version {} without attestation evidence, which class {} requires",
            report.version, device.class_id
        )),
        Some(a) if a.state != AttestationState::Ok => Proof::Missing(format!(
            "attestation failed: {}",
            a.reason.unwrap_or_default()
        )),
        Some(a) if a.version != Some(report.version) => Proof::Missing(
            crate::attestation::flag_contradiction(state, device, report.version, a.version)
                .await?,
        ),
        Some(_) => Proof::Attested,
    })
}

/// Rule "report spam": new reports and attestations of one device pass at
/// `reports-per-minute` (`report-burst` at once); beyond that, 429 with `Retry-After`.
pub fn within_report_quota(state: &AppState, device_id: &str) -> Result<(), ApiError> {
    let Err(not_until) = state.report_limiter.check_key(&device_id.to_owned()) else {
        return Ok(());
    };
    metrics::counter!("rota_reports_limited_total").increment(1);
    let wait = not_until.wait_time_from(state.report_limiter.clock().now());
    Err(ApiError::too_many_requests(
        format!(
            "this device sent more than {} new reports and attestations a minute; send this one again later",
            state.config.limits.reports_per_minute
        ),
        wait,
    ))
}
