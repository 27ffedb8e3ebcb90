//! Device reports: stored once per event id, applied to the device's rollout status, and
//! checked against the failure threshold, all in one write operation of a group commit
//! (`crate::db::batch`): it commits, or rolls back, as a whole.

use rota_protocol::api::{Report, ReportAck, ReportKind, RolloutState};
use sqlx::AnyConnection;

use super::store::{self, DeviceStatus};
use super::{RolloutError, halt_if_failing};
use crate::db::Db;
use crate::db::batch::WriteKey;

/// What attestation proves about a `confirmed` report, for classes that attest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// The class does not attest, or the report is not a confirmation.
    NotRequired,
    /// Evidence with the report shows the bootloader measured the reported version.
    Attested,
    /// The class attests and this confirmation is not proven: why.
    Missing(String),
}

/// Stores `report` through the next group commit; answers once it is on disk.
pub(super) async fn report(
    db: &Db,
    device_id: &str,
    report: &Report,
    proof: &Proof,
    now_ms: i64,
) -> Result<ReportAck, RolloutError> {
    let key = match &report.rollout_id {
        Some(rollout_id) => WriteKey::rollout(rollout_id, device_id),
        None => WriteKey::device(device_id),
    };
    let (device_id, report, proof) = (device_id.to_string(), report.clone(), proof.clone());
    db.writes
        .run(key, move |conn| {
            Box::pin(async move { record(conn, &device_id, &report, &proof, now_ms).await })
        })
        .await
}

/// The report as one write operation on `conn`, inside a transaction its caller commits.
async fn record(
    conn: &mut AnyConnection,
    device_id: &str,
    report: &Report,
    proof: &Proof,
    now_ms: i64,
) -> Result<ReportAck, RolloutError> {
    // Reports of one rollout serialize behind its lock, so the halt rule below counts
    // exactly, and an offer waiting on the lock sees the halt.
    let rollout_id = match &report.rollout_id {
        Some(id) if store::lock(conn, id, RolloutState::ALL).await? => Some(id.as_str()),
        _ => None,
    };
    // Rule "idempotent by (device, event id)": a duplicate changes nothing.
    let stored = sqlx::query(
        "INSERT INTO device_events \
         (device_id, event_id, rollout_id, kind, version, reason, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (device_id, event_id) DO NOTHING",
    )
    .bind(device_id)
    .bind(&report.event_id)
    .bind(report.rollout_id.clone())
    .bind(report.kind.as_str())
    .bind(store::to_i64(report.version))
    .bind(report.reason.clone())
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    if stored.rows_affected() == 0 {
        // Nothing written (the lock above changes no row).
        return Ok(ReportAck { duplicate: true });
    }
    if let Some(rollout_id) = rollout_id {
        apply(conn, rollout_id, device_id, report, proof, now_ms).await?;
    }
    Ok(ReportAck { duplicate: false })
}

/// Moves the device's status in the rollout and re-checks the failure threshold.
async fn apply(
    conn: &mut AnyConnection,
    rollout_id: &str,
    device_id: &str,
    report: &Report,
    proof: &Proof,
    now_ms: i64,
) -> Result<(), RolloutError> {
    let Some(rollout) = store::load_rollout(&mut *conn, rollout_id).await? else {
        return Ok(());
    };
    // Rule "reports for a rollout the device is not part of change no counts"; and final
    // statuses stay final, so counts only grow.
    let Some(row) = store::device_row(&mut *conn, rollout_id, device_id).await? else {
        return Ok(());
    };
    if !row.status.is_open() {
        return Ok(());
    }
    let policy = &rollout.policy;
    let reason = report.reason.clone();
    let (status, attempts, assigned_at, reason) = match report.kind {
        // Rule "progress": the device is working on it.
        ReportKind::Downloading
        | ReportKind::Downloaded
        | ReportKind::Installed
        | ReportKind::Trial => (DeviceStatus::InProgress, row.attempts, None, None),
        // Rule "success only on a confirmed boot of the new version", and, where the
        // class attests, only when evidence shows the bootloader measured it: an unproven
        // confirmation is a failure with its reason.
        ReportKind::Confirmed if report.version == rollout.release.version => match proof {
            Proof::NotRequired | Proof::Attested => {
                (DeviceStatus::Confirmed, row.attempts, None, None)
            }
            Proof::Missing(why) => (DeviceStatus::Failed, row.attempts, None, Some(why.clone())),
        },
        // A confirmed boot of another version (the old one, after a revert the device
        // did not report) is not a success; the timeout settles it.
        ReportKind::Confirmed => return Ok(()),
        // Rule "a revert is a failure, with no retry".
        ReportKind::Reverted => (
            DeviceStatus::Failed,
            row.attempts,
            None,
            Some(reason.unwrap_or_else(|| "the trial boot failed and the device reverted".into())),
        ),
        // Rule "retries": a failure with retries left is assigned again, and the retry's
        // timeout runs from now.
        ReportKind::Failed if row.attempts < i64::from(policy.max_retries) => (
            DeviceStatus::Assigned,
            row.attempts + 1,
            Some(now_ms),
            reason,
        ),
        ReportKind::Failed => (
            DeviceStatus::Failed,
            row.attempts,
            None,
            Some(reason.unwrap_or_else(|| "the update failed".into())),
        ),
    };
    sqlx::query(
        "UPDATE rollout_devices SET status = $3, attempts = $4, \
         assigned_at = COALESCE($5, assigned_at), reason = COALESCE($6, reason), updated_at = $7 \
         WHERE rollout_id = $1 AND device_id = $2",
    )
    .bind(rollout_id)
    .bind(device_id)
    .bind(status.as_str())
    .bind(attempts)
    .bind(assigned_at)
    .bind(reason)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    store::count_move(
        conn,
        rollout_id,
        row.stage,
        Some(row.status.outcome()),
        status.outcome(),
        1,
    )
    .await?;
    // Rule "halt", in the same transaction: the halt takes effect as this report commits.
    halt_if_failing(conn, &rollout, now_ms).await?;
    Ok(())
}
