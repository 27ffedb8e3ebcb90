//! Offering a checking-in device its release.
//!
//! The checks that only read (selector, version, stage) run first on the read pool, each
//! a lookup by key whatever the fleet's size; the decision that matters against a
//! concurrent halt — the rollout still offers — is taken in the same write operation as
//! the assignment, behind the rollout's lock, so once a halting report commits no replica
//! assigns again. That operation runs in a group commit (`crate::db::batch`): the
//! device hears of its assignment only once it is on disk.

use std::cmp::Reverse;

use rota_protocol::api::{Assignment, RolloutState, rollout_bucket};
use sqlx::AnyConnection;

use super::membership;
use super::store::{self, DeviceStatus, Filter, Outcome, RolloutRow};
use super::{DeviceView, RolloutError};
use crate::db::Db;
use crate::db::batch::WriteKey;

/// The release `device` should install now, if any. A device with an open assignment
/// (assigned or in progress) gets that same assignment again, so re-check-ins are
/// idempotent; otherwise the highest release version whose offering rollout (active, or
/// completed with members still to settle) takes it.
pub(super) async fn offer(
    db: &Db,
    device: &DeviceView,
    now_ms: i64,
) -> Result<Option<Assignment>, RolloutError> {
    let mut rollouts =
        store::load_rollouts(&db.read, Filter::OfferingOfClass(&device.class_id)).await?;
    if rollouts.is_empty() {
        return Ok(None);
    }
    let open: Vec<String> = sqlx::query_scalar(
        "SELECT rollout_id FROM rollout_devices \
         WHERE device_id = $1 AND status IN ('assigned', 'in_progress')",
    )
    .bind(&device.id)
    .fetch_all(&db.read)
    .await?;
    // The store lists newest first; reversed, the stable sort breaks ties oldest first.
    rollouts.reverse();
    rollouts.sort_by_key(|r| (!open.contains(&r.id), Reverse(r.release.version)));
    for rollout in &rollouts {
        if let Some(assignment) = offer_one(db, rollout, device, now_ms).await? {
            return Ok(Some(assignment));
        }
    }
    Ok(None)
}

async fn offer_one(
    db: &Db,
    rollout: &RolloutRow,
    device: &DeviceView,
    now_ms: i64,
) -> Result<Option<Assignment>, RolloutError> {
    // Rules "selector" and "newer only", evaluated at each check-in.
    if !membership::selected(&rollout.policy.selector, rollout.release.version, device) {
        return Ok(None);
    }
    let stage = match store::device_row(&db.read, &rollout.id, &device.id).await? {
        // Rule "not already done with this rollout": confirmed, failed, timed out.
        Some(row) if !row.status.is_open() => return Ok(None),
        Some(row) => row.stage,
        None => {
            let stages = &rollout.policy.stages;
            // Rule "stage membership": the count stages were drawn once, when the rollout
            // was created; looking the device up is all a check-in does.
            let drawn = if membership::has_count_stage(stages, rollout.current_stage) {
                membership::drawn_stage(&db.read, &rollout.id, &device.id).await?
            } else {
                None
            };
            let bucket = rollout_bucket(&rollout.id, &device.id);
            match membership::stage_of(stages, bucket, drawn) {
                Some(stage) => stage,
                None => return Ok(None),
            }
        }
    };
    // Rule "stage <= current stage". The stage only grows, so a stale read can only
    // refuse too early, never assign too early.
    if stage > rollout.current_stage {
        return Ok(None);
    }

    let (rollout_id, device_id) = (rollout.id.clone(), device.id.clone());
    let open = db
        .writes
        .run(WriteKey::rollout(&rollout_id, &device_id), move |conn| {
            Box::pin(async move { assign(conn, &rollout_id, &device_id, stage, now_ms).await })
        })
        .await?;
    Ok(open.then(|| assignment(rollout)))
}

/// The assignment as one write operation of a group commit (`crate::db::batch`): assigns
/// `device_id` to `stage` of the rollout unless it has a row already. Returns whether the
/// device holds an open assignment in the rollout once it commits.
async fn assign(
    conn: &mut AnyConnection,
    rollout_id: &str,
    device_id: &str,
    stage: u32,
    now_ms: i64,
) -> Result<bool, RolloutError> {
    // Rule "only an offering rollout assigns", atomic with the insert below: active, or
    // completed (its last stage open to every member that has not settled).
    let offering = [RolloutState::Active, RolloutState::Completed];
    if !store::lock(conn, rollout_id, &offering).await? {
        return Ok(false);
    }
    // A row that exists already (open, or made final meanwhile) is left as it is.
    let inserted = sqlx::query(
        "INSERT INTO rollout_devices \
         (rollout_id, device_id, stage, status, attempts, assigned_at, updated_at, reason) \
         VALUES ($1, $2, $3, $4, 0, $5, $5, NULL) \
         ON CONFLICT (rollout_id, device_id) DO NOTHING",
    )
    .bind(rollout_id)
    .bind(device_id)
    .bind(i64::from(stage))
    .bind(DeviceStatus::Assigned.as_str())
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() > 0 {
        store::count_move(conn, rollout_id, stage, None, Outcome::Open, 1).await?;
    }
    let row = store::device_row(&mut *conn, rollout_id, device_id).await?;
    Ok(row.is_some_and(|row| row.status.is_open()))
}

fn assignment(rollout: &RolloutRow) -> Assignment {
    let release = &rollout.release;
    Assignment {
        rollout_id: rollout.id.clone(),
        release_id: release.id.clone(),
        target: release.target.clone(),
        envelope_target: release.envelope_target.clone(),
        version: release.version,
        security_version: release.security_version,
        length: release.length,
        sha256: release.sha256.clone(),
    }
}
