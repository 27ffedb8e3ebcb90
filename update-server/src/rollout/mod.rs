//! Staged rollouts: which device gets which release when, and when a rollout halts.
//!
//! Every decision is made inside a database transaction and every piece of state lives in
//! the database (`rollouts`, `rollout_devices`, `device_events`), so any number of server
//! replicas can run [`Engine`] against the same database and agree.
//!
//! # State machine
//!
//! ```text
//!                        pause
//!   active ─────────────────────────────────▶ paused
//!   active ◀───────────────────────────────── paused, halted      resume
//!   active, paused ──failure threshold──────▶ halted
//!   active ──last stage's gate and soak─────▶ completed
//!   active, paused, halted, completed ──────▶ aborted             abort (terminal)
//!   completed ──every member settled────────▶ completed, settled  (terminal)
//! ```
//!
//! - An `active` rollout assigns ([`Engine::offer`]) and advances stages
//!   ([`Engine::tick`]). Reports apply in every state, per-device timeouts in every state
//!   that is not over: devices already updating keep going.
//! - A `completed` rollout has passed every stage, but its promise is every member (rule
//!   "no member left behind"): a success gate below 1 lets the last stage pass while some
//!   members have not checked in yet. So it keeps offering the release, its last stage
//!   open, to every member that has not settled — `StageCounts::pending`, the members
//!   not assigned yet plus those in progress — and keeps applying their reports and
//!   timeouts. Once no member is pending, the tick records `settled_at` and the rollout
//!   offers nothing more: it is over. The failure threshold no longer halts it (its
//!   stages' verdict is in); an operator who wants the remaining offers stopped aborts it.
//! - The failure threshold halts an `active` or `paused` rollout (pausing must not shelter
//!   a failing rollout from halting).
//! - Resuming a `halted` rollout is allowed: it is an operator's decision after
//!   investigating. It clears `halted_reason` and starts a new failure window: the
//!   threshold then applies to the devices that complete after the resume, so the
//!   failures that caused the halt do not halt it again at once.
//! - Resuming (from `paused` or `halted`) restarts the current stage's soak.
//! - Asking for the state a rollout is already in (pause a paused one, abort an aborted
//!   one) succeeds and changes nothing, so operators and scripts can retry.
//! - At most one rollout per release is `active`, `paused` or `halted`; a partial unique
//!   index enforces it. Several releases of one class may roll out at once: a device is
//!   offered the release of the rollout it already has an open assignment in, else the
//!   highest version whose offering rollout takes it (oldest rollout first on a tie).
//!
//! # Definitions
//!
//! - **Selected** (rule "selector"): the device's class is the selector's, it has every
//!   selector tag, and `versions` is empty or holds its running version; and (rule "newer
//!   only") its running version is below the release's. Evaluated at each check-in, so
//!   devices registered after the rollout was created join it.
//! - **Count stages are drawn once**: when the rollout is created, the first `count` (of
//!   the last count stage) devices in `(rollout_bucket(rollout, device), device id)`
//!   order among the known devices selected then (state `provisioned` or `active`) are
//!   recorded in `rollout_count_members` with their count stage: the first whose
//!   cumulative count is above their rank. A check-in only looks its device up there.
//!   Devices registered later join the percent stages only.
//! - **Stage of a device** (rule "stage membership"): its drawn count stage, else the
//!   first percent stage `k` with `rollout_bucket(rollout, device) * 100 < percent_k`;
//!   none if no stage takes it. Once assigned, a device keeps the stage recorded in its
//!   row.
//! - **Members of stage k**: the devices whose stage is `k` — those with a row recording
//!   stage `k` (but those decommissioned while their assignment was open: they left),
//!   plus known selected devices without a row whose stage is `k`. Suspended and
//!   decommissioned devices without a row are not members: they cannot take the update.
//!   Known devices that have not checked in yet are; a success gate below 1 leaves room
//!   for devices that stay offline, and a completed rollout keeps offering to them.
//! - **Success gate** of the current stage `k`: met when `confirmed_k / members_k >=
//!   success_gate`, counting the members of stage `k` alone (not of earlier stages, or a
//!   small later stage would pass on the earlier stages' confirmations); a stage with no
//!   members meets it. [`Engine::tick`] records when the gate was first met
//!   (`gate_met_at`); once it has held for `soak_s` the next stage starts, or after the
//!   last stage the rollout completes. A tick that finds the gate no longer met (new
//!   members joined) restarts the soak.
//! - **Completed devices**: `confirmed + failed + timed_out`. The failure threshold (rule
//!   "halt") halts when `completed >= min_sample` and `(failed + timed_out) / completed >
//!   failure_threshold`, over all stages, within the current failure window. Devices
//!   assigned but silent do not count until they time out.
//!
//! # Device status in a rollout (`rollout_devices.status`)
//!
//! `assigned` → `in_progress` (downloading … trial) → `confirmed` (a confirmed boot of the
//! release's version, the only success) | `failed` (a revert, or a failure with no retry
//! left; a failure with retries left goes back to `assigned`) | `timed_out` (no
//! confirmation within `device_timeout_s` of the assignment or retry) | `decommissioned`
//! (the timeout found the device decommissioned: it left the fleet, which is not a
//! failure). All but the first two are final: later reports are stored but change no
//! count, so counts only grow and a halt decision is never undone by a late report.
//!
//! # Running counts (`rollout_counts`)
//!
//! Gates, the threshold and the status read per-stage counts of each outcome (`open` =
//! assigned or in progress, `confirmed`, `failed`, `timed_out`, `decommissioned`), never a
//! recount of `rollout_devices`: every transaction that changes a device's outcome moves
//! the counts in the same transaction, behind the rollout's lock, so a report costs the
//! same at any fleet size and replicas on one database agree.

mod assign;
mod membership;
mod report;
mod store;
mod tick;

pub use report::Proof;

use std::sync::Arc;
use std::time::Duration;

use rota_protocol::api::{
    Assignment, Report, ReportAck, RolloutCreate, RolloutState, RolloutStatus,
};
use sqlx::AnyConnection;

use crate::db::{Db, new_id};
use membership::MemberCounts;
use store::RolloutRow;

/// Why a rollout operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// No rollout has this id.
    #[error("no rollout has the id {0}")]
    NotFound(String),
    /// The request is not valid (a 4xx); the message is one sentence.
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with the rollout's state (a 409); the message is one sentence.
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// What the engine needs to know about a checking-in device (from its certificate and
/// the check-in query, which may be newer than the `devices` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    pub id: String,
    pub class_id: String,
    pub tags: Vec<String>,
    pub running_version: u64,
}

/// A rollout that is not over, small enough to cache on every replica: lets a check-in
/// answer "nothing new" without touching the database ([`LiveRollout::may_offer`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRollout {
    pub id: String,
    pub release_id: String,
    pub release_version: u64,
    pub state: RolloutState,
    pub current_stage: u32,
    pub policy: RolloutCreate,
}

impl LiveRollout {
    /// Whether [`Engine::offer`] might assign this rollout's release to `device`. False is
    /// certain (as of when this row was read); true may still end in "nothing new".
    pub fn may_offer(&self, device: &DeviceView) -> bool {
        // Completed rollouts in this view still have members to settle.
        matches!(self.state, RolloutState::Active | RolloutState::Completed)
            && membership::selected(&self.policy.selector, self.release_version, device)
            && membership::may_be_in_stage(
                &self.policy.stages,
                self.current_stage,
                &self.id,
                &device.id,
            )
    }
}

/// The staged-rollout engine. Cheap to clone; every replica can run its own.
#[derive(Debug, Clone)]
pub struct Engine {
    db: Db,
    members: Arc<MemberCounts>,
}

impl Engine {
    /// An engine that counts a rollout's members whenever it needs them.
    pub fn new(db: Db) -> Self {
        Self::with_member_count_interval(db, Duration::ZERO)
    }

    /// An engine that counts a live rollout's members at most once per `interval`
    /// (`--member-count-interval`; `membership::MemberCounts` says why).
    pub fn with_member_count_interval(db: Db, interval: Duration) -> Self {
        Engine {
            db,
            members: Arc::new(MemberCounts::new(interval)),
        }
    }

    /// Creates an `active` rollout at stage 0, and draws its count stages' members. The
    /// release must exist and be for the selector's class, and no other rollout of the
    /// release may be active, paused or halted.
    pub async fn create(
        &self,
        req: &RolloutCreate,
        now_ms: i64,
    ) -> Result<RolloutStatus, RolloutError> {
        req.validate().map_err(RolloutError::Invalid)?;
        let release = store::load_release(&self.db.read, &req.release_id)
            .await?
            .ok_or_else(|| {
                RolloutError::Invalid(format!("no release has the id {}", req.release_id))
            })?;
        if release.class_id != req.selector.class_id {
            return Err(RolloutError::Invalid(format!(
                "release {} is for device class {}, not the selector's class {}",
                release.id, release.class_id, req.selector.class_id
            )));
        }
        if let Some(other) = store::live_rollout_of_release(&self.db.read, &release.id).await? {
            return Err(one_live_per_release(&release.id, Some(&other)));
        }
        let id = new_id();
        let policy = serde_json::to_string(req)
            .map_err(|e| RolloutError::Invalid(format!("the rollout cannot be stored: {e}")))?;
        let mut tx = self.db.write.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO rollouts (id, release_id, state, policy, current_stage, \
             stage_started_at, gate_met_at, halted_reason, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 0, $5, NULL, NULL, $5, $5)",
        )
        .bind(&id)
        .bind(&release.id)
        .bind(RolloutState::Active.as_str())
        .bind(policy)
        .bind(now_ms)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                let rollout = store::load_rollout(&mut *tx, &id)
                    .await?
                    .ok_or_else(|| RolloutError::NotFound(id.clone()))?;
                membership::draw_count_members(&mut tx, &rollout, now_ms).await?;
                tx.commit().await?;
            }
            // Another replica created one between the check above and this insert.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(one_live_per_release(&release.id, None));
            }
            Err(e) => return Err(e.into()),
        }
        self.status(&id).await
    }

    /// The rollout with its counts per stage and in total.
    pub async fn status(&self, id: &str) -> Result<RolloutStatus, RolloutError> {
        let rollout = store::load_rollout(&self.db.read, id)
            .await?
            .ok_or_else(|| RolloutError::NotFound(id.to_string()))?;
        self.status_of(rollout).await
    }

    /// Every rollout, newest first.
    pub async fn list(&self) -> Result<Vec<RolloutStatus>, RolloutError> {
        let rollouts = store::load_rollouts(&self.db.read, store::Filter::All).await?;
        let mut out = Vec::with_capacity(rollouts.len());
        for rollout in rollouts {
            out.push(self.status_of(rollout).await?);
        }
        Ok(out)
    }

    async fn status_of(&self, rollout: RolloutRow) -> Result<RolloutStatus, RolloutError> {
        // Members of an ended rollout are the devices it assigned: who else "belongs" to
        // it no longer matters, and listing old rollouts should not scan the fleet.
        let members = if is_over(&rollout) {
            None
        } else {
            Some(self.members.get(&self.db, &rollout).await?)
        };
        let rows = store::device_counts(&self.db.read, &rollout.id).await?;
        Ok(store::to_status(rollout, &rows, members.as_deref()))
    }

    /// `active` → `paused`: no new assignments until resumed.
    pub async fn pause(&self, id: &str, now_ms: i64) -> Result<RolloutStatus, RolloutError> {
        self.transition(id, now_ms, RolloutState::Paused).await
    }

    /// `paused` or `halted` → `active`. From `halted` this starts a new failure window.
    pub async fn resume(&self, id: &str, now_ms: i64) -> Result<RolloutStatus, RolloutError> {
        self.transition(id, now_ms, RolloutState::Active).await
    }

    /// `active`, `paused`, `halted`, or `completed` with members still to settle →
    /// `aborted`, for good: no more offers.
    pub async fn abort(&self, id: &str, now_ms: i64) -> Result<RolloutStatus, RolloutError> {
        self.transition(id, now_ms, RolloutState::Aborted).await
    }

    /// An operator's state change, checked and applied under the rollout's lock.
    async fn transition(
        &self,
        id: &str,
        now_ms: i64,
        to: RolloutState,
    ) -> Result<RolloutStatus, RolloutError> {
        use RolloutState::*;
        let mut tx = self.db.write.begin().await?;
        if !store::lock(&mut tx, id, RolloutState::ALL).await? {
            return Err(RolloutError::NotFound(id.to_string()));
        }
        let rollout = store::load_rollout(&mut *tx, id)
            .await?
            .ok_or_else(|| RolloutError::NotFound(id.to_string()))?;
        let from = rollout.state;
        let allowed = match (from, to) {
            _ if from == to => {
                // Already there: nothing to do.
                tx.rollback().await?;
                return self.status(id).await;
            }
            (Active, Paused) | (Paused, Active) | (Halted, Active) => true,
            (Active | Paused | Halted, Aborted) => true,
            // Stops the offers to the members that have not settled.
            (Completed, Aborted) => rollout.settled_at.is_none(),
            _ => false,
        };
        if !allowed {
            return Err(RolloutError::Conflict(refusal(&rollout, to)));
        }
        if from == Halted {
            // A new failure window: the failures that halted it are the operator's call.
            let (completed, failures) = store::completion_totals(&mut tx, id).await?;
            sqlx::query(
                "UPDATE rollouts SET halt_base_completed = $2, halt_base_failed = $3, \
                 halted_reason = NULL WHERE id = $1",
            )
            .bind(id)
            .bind(completed)
            .bind(failures)
            .execute(&mut *tx)
            .await?;
        }
        // Resuming restarts the current stage's soak.
        let restart_soak = if to == Active {
            "gate_met_at = NULL, "
        } else {
            ""
        };
        sqlx::query(&format!(
            "UPDATE rollouts SET {restart_soak}state = $2, updated_at = $3 WHERE id = $1"
        ))
        .bind(id)
        .bind(to.as_str())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.status(id).await
    }

    /// The rollouts that are not over (`active`, `paused`, `halted`, and `completed` with
    /// members still to settle), for [`LiveRollout::may_offer`].
    pub async fn live_rollouts(&self) -> Result<Vec<LiveRollout>, RolloutError> {
        let rollouts = store::load_rollouts(&self.db.read, store::Filter::Live).await?;
        Ok(rollouts
            .into_iter()
            .map(|r| LiveRollout {
                id: r.id,
                release_id: r.release.id,
                release_version: r.release.version,
                state: r.state,
                current_stage: r.current_stage,
                policy: r.policy,
            })
            .collect())
    }

    /// The release `device` should install now, if any. A device with an open assignment
    /// gets the same one again (re-check-ins are idempotent); otherwise the highest release
    /// version whose active rollout selects it and has reached its stage. The rollout's
    /// state is checked in the transaction that records the assignment, behind the
    /// rollout's lock, so once a halting report commits no replica assigns again.
    pub async fn offer(
        &self,
        device: &DeviceView,
        now_ms: i64,
    ) -> Result<Option<Assignment>, RolloutError> {
        assign::offer(&self.db, device, now_ms).await
    }

    /// Stores a device's report once per `(device, event_id)` and, in the same
    /// transaction, applies it to the device's status in the rollout and applies the
    /// failure threshold. A duplicate answers `duplicate: true` and changes nothing.
    pub async fn report(
        &self,
        device_id: &str,
        report: &Report,
        proof: &Proof,
        now_ms: i64,
    ) -> Result<ReportAck, RolloutError> {
        report::report(&self.db, device_id, report, proof, now_ms).await
    }

    /// Per-device timeouts (and the failure threshold they may cross), the current stage's
    /// success gate and soak, stage advancement and completion. Safe to run at the same
    /// time on every replica: each step is a compare-and-set behind the rollout's lock.
    pub async fn tick(&self, now_ms: i64) -> Result<(), RolloutError> {
        tick::tick(&self.db, &self.members, now_ms).await
    }
}

/// Whether the rollout has ended for good: aborted, or completed with every member settled.
fn is_over(rollout: &RolloutRow) -> bool {
    match rollout.state {
        RolloutState::Aborted => true,
        RolloutState::Completed => rollout.settled_at.is_some(),
        _ => false,
    }
}

fn refusal(rollout: &RolloutRow, to: RolloutState) -> String {
    use RolloutState::*;
    let from = rollout.state;
    match (from, to) {
        (Completed, Active | Paused) if rollout.settled_at.is_none() => format!(
            "the rollout is completed and cannot be {}; abort it to stop offering the \
             release to the members that have not updated",
            if to == Active { "resumed" } else { "paused" }
        ),
        (Aborted | Completed, _) => {
            let verb = match to {
                Active => "resumed",
                Paused => "paused",
                _ => "aborted",
            };
            format!("the rollout is {from} and cannot be {verb}")
        }
        (Halted, Paused) => {
            "the rollout is halted; resume it after investigating, or abort it".to_string()
        }
        _ => format!("a rollout cannot go from {from} to {to}"),
    }
}

fn one_live_per_release(release_id: &str, other: Option<&str>) -> RolloutError {
    let which = other.map(|id| format!(" ({id})")).unwrap_or_default();
    RolloutError::Conflict(format!(
        "release {release_id} already has a rollout{which} that is not over; abort it first"
    ))
}

/// The failure threshold (rule "halt"), evaluated inside a transaction that holds the
/// rollout's lock, so the counts are exact and the halt is atomic with the report or
/// timeout that caused it. Halts only an `active` or `paused` rollout; returns whether it
/// did.
async fn halt_if_failing(
    conn: &mut AnyConnection,
    rollout: &RolloutRow,
    now_ms: i64,
) -> Result<bool, RolloutError> {
    if !matches!(rollout.state, RolloutState::Active | RolloutState::Paused) {
        return Ok(false);
    }
    let (completed, failures) = store::completion_totals(conn, &rollout.id).await?;
    // The failure window starts at the last resume from halted.
    let completed = completed - rollout.halt_base_completed;
    let failures = failures - rollout.halt_base_failed;
    let policy = &rollout.policy;
    // Rule "minimum sample": no verdict on fewer completed devices.
    if completed <= 0 || completed < i64::from(policy.min_sample) {
        return Ok(false);
    }
    // Rule "failure threshold over completed devices only": silent devices do not dilute.
    let ratio = failures as f64 / completed as f64;
    if ratio <= policy.failure_threshold {
        return Ok(false);
    }
    let window = if rollout.halt_base_completed > 0 {
        " since the rollout was last resumed"
    } else {
        ""
    };
    let reason = format!(
        "{failures} of {completed} completed devices{window} failed or timed out ({:.1}%), \
         more than the failure threshold of {:.1}% (minimum sample {})",
        ratio * 100.0,
        policy.failure_threshold * 100.0,
        policy.min_sample
    );
    let halted = sqlx::query(
        "UPDATE rollouts SET state = $2, halted_reason = $3, updated_at = $4 \
         WHERE id = $1 AND state IN ($5, $6)",
    )
    .bind(&rollout.id)
    .bind(RolloutState::Halted.as_str())
    .bind(reason)
    .bind(now_ms)
    .bind(RolloutState::Active.as_str())
    .bind(RolloutState::Paused.as_str())
    .execute(&mut *conn)
    .await?;
    if halted.rows_affected() > 0 {
        tracing::warn!(rollout = %rollout.id, failures, completed, "rollout halted");
        metrics::counter!("rota_rollout_halts_total").increment(1);
    }
    Ok(halted.rows_affected() > 0)
}
