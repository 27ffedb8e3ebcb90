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
        Some(rollout_id) if is_progress(report.kind) => {
            WriteKey::rollout_row(rollout_id, device_id)
        }
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

/// Whether a report of `kind` is progress: it moves an open assignment to in progress,
/// which changes no count and so no verdict of the failure threshold.
fn is_progress(kind: ReportKind) -> bool {
    matches!(
        kind,
        ReportKind::Downloading
            | ReportKind::Downloaded
            | ReportKind::Installed
            | ReportKind::Trial
    )
}

/// The report as one write operation on `conn`, inside a transaction its caller commits.
async fn record(
    conn: &mut AnyConnection,
    device_id: &str,
    report: &Report,
    proof: &Proof,
    now_ms: i64,
) -> Result<ReportAck, RolloutError> {
    let progress = is_progress(report.kind);
    // Reports that can settle a device serialize behind the rollout's lock, so the halt
    // rule below counts exactly, and an offer waiting on the lock sees the halt. Progress
    // takes no lock: most reports are progress, and on PostgreSQL every report behind the
    // lock waits for the other replicas' batches.
    let settling = match &report.rollout_id {
        Some(id) if !progress && store::lock(conn, id, RolloutState::ALL).await? => Some(id),
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
    match (&report.rollout_id, settling) {
        (Some(rollout_id), _) if progress => {
            mark_in_progress(conn, rollout_id, device_id, now_ms).await?
        }
        (_, Some(rollout_id)) => apply(conn, rollout_id, device_id, report, proof, now_ms).await?,
        _ => {}
    }
    Ok(ReportAck { duplicate: false })
}

/// Rule "progress": the device is working on its open assignment. Conditioned on the
/// status being open, in the same statement, so a status a locked writer settled
/// meanwhile (a timeout, a confirmation on another replica) stays final; a device with no
/// row in the rollout changes nothing.
async fn mark_in_progress(
    conn: &mut AnyConnection,
    rollout_id: &str,
    device_id: &str,
    now_ms: i64,
) -> Result<(), RolloutError> {
    sqlx::query(
        "UPDATE rollout_devices SET status = $3, updated_at = $4 \
         WHERE rollout_id = $1 AND device_id = $2 AND status IN ($5, $3)",
    )
    .bind(rollout_id)
    .bind(device_id)
    .bind(DeviceStatus::InProgress.as_str())
    .bind(now_ms)
    .bind(DeviceStatus::Assigned.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Moves the device's status in the rollout for a report that can settle it (confirmed,
/// reverted, failed) and re-checks the failure threshold; behind the rollout's lock.
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
        // Progress is `mark_in_progress`, taken without the lock.
        ReportKind::Downloading
        | ReportKind::Downloaded
        | ReportKind::Installed
        | ReportKind::Trial => return Ok(()),
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
    // A retry (failed, assigned again) changes no count, and so no verdict.
    if status.outcome() != row.status.outcome() {
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
    }
    Ok(())
}
