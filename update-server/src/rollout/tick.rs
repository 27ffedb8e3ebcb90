//! The periodic pass every replica runs: per-device timeouts, the failure threshold, the
//! current stage's success gate and soak, completion, and when a completed rollout's
//! members have all settled.
//!
//! Each change is a transaction behind the rollout's lock whose writes are conditioned on
//! what it reads there (`state`, `current_stage`, `gate_met_at`), so replicas ticking at
//! the same time serialize and each stage advances once. Deciding *whether* to write
//! reads outside the lock, so a pass with nothing to do writes nothing.

use rota_protocol::api::RolloutState;

use super::membership::{self, MemberCounts};
use super::store::{self, DeviceStatus, Outcome, RolloutRow};
use super::{RolloutError, halt_if_failing};
use crate::db::Db;

pub(super) async fn tick(db: &Db, members: &MemberCounts, now_ms: i64) -> Result<(), RolloutError> {
    let live = store::load_rollouts(&db.read, store::Filter::Live).await?;
    for rollout in live {
        tick_one(db, members, rollout, now_ms).await?;
    }
    Ok(())
}

async fn tick_one(
    db: &Db,
    members: &MemberCounts,
    mut rollout: RolloutRow,
    now_ms: i64,
) -> Result<(), RolloutError> {
    if !rollout.count_members_drawn {
        // A rollout created before count stages were drawn at creation.
        match draw_count_members(db, &rollout.id, now_ms).await? {
            Some(fresh) => rollout = fresh,
            None => return Ok(()),
        }
    }
    // Only timeouts change the counts outside a report, and a report applies the failure
    // threshold itself: without a timeout due, there is nothing to halt for.
    if timeouts_due(db, &rollout, now_ms).await? {
        match time_out_and_check_halt(db, &rollout.id, now_ms).await? {
            Some(fresh) => rollout = fresh,
            None => return Ok(()),
        }
    }
    if rollout.state == RolloutState::Completed {
        return settle_if_no_member_pending(db, members, &rollout, now_ms).await;
    }
    if rollout.state != RolloutState::Active {
        return Ok(());
    }
    // Computed outside the lock (it scans the fleet): a stale answer only delays or
    // repeats a step that the compare-and-set in `advance` makes once.
    let gate_met = current_gate_met(db, members, &rollout).await?;
    if step(&rollout, gate_met, now_ms) == Step::Nothing {
        return Ok(());
    }
    advance(db, &rollout, gate_met, now_ms).await
}

/// The oldest assignment time that is not yet timed out.
fn timeout_cutoff(rollout: &RolloutRow, now_ms: i64) -> i64 {
    let timeout_ms = store::to_i64(rollout.policy.device_timeout_s.saturating_mul(1000));
    now_ms.saturating_sub(timeout_ms)
}

async fn timeouts_due(db: &Db, rollout: &RolloutRow, now_ms: i64) -> Result<bool, RolloutError> {
    let due: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM rollout_devices WHERE rollout_id = $1 \
         AND status IN ('assigned', 'in_progress') AND assigned_at <= $2",
    )
    .bind(&rollout.id)
    .bind(timeout_cutoff(rollout, now_ms))
    .fetch_one(&db.read)
    .await?;
    Ok(due > 0)
}

/// Marks the devices past their timeout and applies the failure threshold. Returns the
/// rollout as it is after that, unless it is over.
async fn time_out_and_check_halt(
    db: &Db,
    id: &str,
    now_ms: i64,
) -> Result<Option<RolloutRow>, RolloutError> {
    use RolloutState::*;
    let mut tx = db.write.begin().await?;
    if !store::lock(&mut tx, id, &[Active, Paused, Halted, Completed]).await? {
        tx.rollback().await?;
        return Ok(None);
    }
    let Some(mut rollout) = store::load_rollout(&mut *tx, id).await? else {
        tx.rollback().await?;
        return Ok(None);
    };
    let timeout_s = rollout.policy.device_timeout_s;
    let cutoff = timeout_cutoff(&rollout, now_ms);
    // Rule "left the fleet": a device decommissioned while its assignment was open is not
    // a failure of the release, nor a member any more.
    let left = close_overdue(
        &mut tx,
        id,
        DeviceStatus::Decommissioned,
        "the device was decommissioned before it finished the update".into(),
        now_ms,
        cutoff,
        "AND device_id IN (SELECT id FROM devices WHERE state = 'decommissioned')",
    )
    .await?;
    // Rule "per-device timeout": no confirmation within the timeout of the assignment
    // (or of the retry) counts as a failure; in every live state, as devices keep going.
    let timed_out = close_overdue(
        &mut tx,
        id,
        DeviceStatus::TimedOut,
        format!("no confirmed boot of the release within {timeout_s} s of the assignment"),
        now_ms,
        cutoff,
        "",
    )
    .await?;
    if timed_out + left > 0 {
        tracing::info!(rollout = %id, timed_out, decommissioned = left, "devices timed out");
    }
    // Rule "halt": timeouts count as failures and can halt.
    if halt_if_failing(&mut tx, &rollout, now_ms).await? {
        rollout.state = Halted;
    }
    tx.commit().await?;
    Ok(Some(rollout))
}

/// Closes the open assignments given at or before `cutoff` (and matching `also`, SQL on
/// the row) with `status`, and moves the rollout's counts to match. Returns how many.
async fn close_overdue(
    conn: &mut sqlx::AnyConnection,
    rollout_id: &str,
    status: DeviceStatus,
    reason: String,
    now_ms: i64,
    cutoff: i64,
    also: &str,
) -> Result<u64, RolloutError> {
    let stages: Vec<i64> = sqlx::query_scalar(&format!(
        "UPDATE rollout_devices SET status = $2, updated_at = $3, reason = $4 \
         WHERE rollout_id = $1 AND status IN ('assigned', 'in_progress') AND assigned_at <= $5 \
         {also} RETURNING stage"
    ))
    .bind(rollout_id)
    .bind(status.as_str())
    .bind(now_ms)
    .bind(reason)
    .bind(cutoff)
    .fetch_all(&mut *conn)
    .await?;
    let mut per_stage: std::collections::BTreeMap<i64, u64> = Default::default();
    for stage in &stages {
        *per_stage.entry(*stage).or_default() += 1;
    }
    for (stage, devices) in per_stage {
        let stage = u32::try_from(stage)
            .map_err(|_| store::corrupt(format!("stored stage {stage} is out of range")))?;
        store::count_move(
            conn,
            rollout_id,
            stage,
            Some(Outcome::Open),
            status.outcome(),
            devices,
        )
        .await?;
    }
    Ok(stages.len() as u64)
}

/// Rule "success gate": the current stage's confirmed members over its members reach the
/// gate; a stage without members meets it.
async fn current_gate_met(
    db: &Db,
    members: &MemberCounts,
    rollout: &RolloutRow,
) -> Result<bool, RolloutError> {
    let stage = rollout.current_stage;
    let gate = rollout.policy.success_gate;
    let counts = store::device_counts(&db.read, &rollout.id).await?;
    let (assigned, confirmed) = store::members_and_confirmed(&counts, stage);
    // Every assigned member is a member, so short of the gate among them is short of it
    // among all members: no need to scan the fleet.
    if assigned > 0 && (confirmed as f64 / assigned as f64) < gate {
        return Ok(false);
    }
    let members = members
        .get(db, rollout)
        .await?
        .get(stage as usize)
        .copied()
        .unwrap_or(0)
        .max(assigned);
    Ok(members == 0 || confirmed as f64 / members as f64 >= gate)
}

/// Rule "no member left behind": a completed rollout offers its release until every
/// member has settled; then it records when, and offers nothing more. Counted as the
/// status counts it (`pending`), outside the lock: a device that joins the fleet after
/// this read is not a member of a settled rollout.
async fn settle_if_no_member_pending(
    db: &Db,
    members: &MemberCounts,
    rollout: &RolloutRow,
    now_ms: i64,
) -> Result<(), RolloutError> {
    let members = members.get(db, rollout).await?;
    let counts = store::device_counts(&db.read, &rollout.id).await?;
    let status = store::to_status(rollout.clone(), &counts, Some(&members));
    if status.counts.total.pending > 0 {
        return Ok(());
    }
    let settled = sqlx::query(
        "UPDATE rollouts SET settled_at = $2, updated_at = $2 \
         WHERE id = $1 AND state = 'completed' AND settled_at IS NULL",
    )
    .bind(&rollout.id)
    .bind(now_ms)
    .execute(&db.write)
    .await?;
    if settled.rows_affected() > 0 {
        tracing::info!(rollout = %rollout.id, "every member of the completed rollout settled");
    }
    Ok(())
}

/// Draws the count stages of a rollout created before draws existed, under its lock, once.
/// Returns the rollout as it is after that, unless it is over.
async fn draw_count_members(
    db: &Db,
    id: &str,
    now_ms: i64,
) -> Result<Option<RolloutRow>, RolloutError> {
    let mut tx = db.write.begin().await?;
    if !store::lock(&mut tx, id, RolloutState::ALL).await? {
        tx.rollback().await?;
        return Ok(None);
    }
    let Some(rollout) = store::load_rollout(&mut *tx, id).await? else {
        tx.rollback().await?;
        return Ok(None);
    };
    if !rollout.count_members_drawn {
        membership::draw_count_members(&mut tx, &rollout, now_ms).await?;
    }
    tx.commit().await?;
    Ok(Some(RolloutRow {
        count_members_drawn: true,
        ..rollout
    }))
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Nothing,
    /// The gate no longer holds (members joined): the soak starts again once it does.
    ForgetGate,
    /// The gate is met: the soak starts now.
    RecordGate,
    /// Rule "soak": the gate has held for `soak_s`; the next stage starts, or after the
    /// last stage the rollout completes.
    Advance,
}

fn step(rollout: &RolloutRow, gate_met: bool, now_ms: i64) -> Step {
    let soak_ms = store::to_i64(rollout.policy.soak_s.saturating_mul(1000));
    match (gate_met, rollout.gate_met_at) {
        (false, None) => Step::Nothing,
        (false, Some(_)) => Step::ForgetGate,
        (true, met_at) if now_ms >= met_at.unwrap_or(now_ms).saturating_add(soak_ms) => {
            Step::Advance
        }
        (true, None) => Step::RecordGate,
        (true, Some(_)) => Step::Nothing,
    }
}

/// Applies [`step`] under the lock, if the rollout is still active at the stage the gate
/// was computed for; decided again from `gate_met_at` as read there.
async fn advance(
    db: &Db,
    rollout: &RolloutRow,
    gate_met: bool,
    now_ms: i64,
) -> Result<(), RolloutError> {
    let mut tx = db.write.begin().await?;
    if !store::lock(&mut tx, &rollout.id, &[RolloutState::Active]).await? {
        tx.rollback().await?;
        return Ok(());
    }
    let fresh = match store::load_rollout(&mut *tx, &rollout.id).await? {
        Some(fresh) if fresh.current_stage == rollout.current_stage => fresh,
        // Another replica moved on since the read above.
        _ => {
            tx.rollback().await?;
            return Ok(());
        }
    };
    let stage = i64::from(fresh.current_stage);
    // Every write is also a compare-and-set on the stage.
    let sql = match step(&fresh, gate_met, now_ms) {
        Step::Nothing => None,
        Step::ForgetGate => Some(
            "UPDATE rollouts SET gate_met_at = NULL, updated_at = $3 WHERE id = $1 AND current_stage = $2",
        ),
        Step::RecordGate => Some(
            "UPDATE rollouts SET gate_met_at = $3 \
             WHERE id = $1 AND current_stage = $2 AND gate_met_at IS NULL",
        ),
        Step::Advance if fresh.current_stage as usize + 1 >= fresh.policy.stages.len() => {
            tracing::info!(rollout = %fresh.id, "rollout completed");
            Some(
                "UPDATE rollouts SET state = 'completed', updated_at = $3 \
                 WHERE id = $1 AND current_stage = $2",
            )
        }
        Step::Advance => {
            tracing::info!(rollout = %fresh.id, stage = stage + 1, "rollout stage started");
            Some(
                "UPDATE rollouts SET current_stage = $2 + 1, gate_met_at = NULL, \
                 stage_started_at = $3, updated_at = $3 WHERE id = $1 AND current_stage = $2",
            )
        }
    };
    if let Some(sql) = sql {
        sqlx::query(sql)
            .bind(&fresh.id)
            .bind(stage)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
