//! The rollout rows as the engine reads them, and the SQL its operations share.
//!
//! Times in the database are unix milliseconds; the API's are unix seconds.

use rota_protocol::api::{RolloutCounts, RolloutCreate, RolloutState, RolloutStatus, StageCounts};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use super::RolloutError;
use crate::db::Backend;

/// A device's status in a rollout (`rollout_devices.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceStatus {
    Assigned,
    InProgress,
    Confirmed,
    Failed,
    TimedOut,
    /// The device was decommissioned while its assignment was open: it left the fleet,
    /// which is neither a success nor a failure of the release.
    Decommissioned,
}

impl DeviceStatus {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Assigned => "assigned",
            DeviceStatus::InProgress => "in_progress",
            DeviceStatus::Confirmed => "confirmed",
            DeviceStatus::Failed => "failed",
            DeviceStatus::TimedOut => "timed_out",
            DeviceStatus::Decommissioned => "decommissioned",
        }
    }

    fn parse(text: &str) -> Result<Self, sqlx::Error> {
        Ok(match text {
            "assigned" => DeviceStatus::Assigned,
            "in_progress" => DeviceStatus::InProgress,
            "confirmed" => DeviceStatus::Confirmed,
            "failed" => DeviceStatus::Failed,
            "timed_out" => DeviceStatus::TimedOut,
            "decommissioned" => DeviceStatus::Decommissioned,
            other => return Err(corrupt(format!("unknown rollout device status {other:?}"))),
        })
    }

    /// Whether the device is still working on the update; the other statuses are final.
    pub(crate) fn is_open(self) -> bool {
        matches!(self, DeviceStatus::Assigned | DeviceStatus::InProgress)
    }

    /// The outcome this status counts under in `rollout_counts`.
    pub(crate) fn outcome(self) -> Outcome {
        match self {
            DeviceStatus::Assigned | DeviceStatus::InProgress => Outcome::Open,
            DeviceStatus::Confirmed => Outcome::Confirmed,
            DeviceStatus::Failed => Outcome::Failed,
            DeviceStatus::TimedOut => Outcome::TimedOut,
            DeviceStatus::Decommissioned => Outcome::Decommissioned,
        }
    }
}

/// What `rollout_counts` counts: a device's status with `assigned` and `in_progress`
/// merged, as progress reports do not change what a gate or the threshold sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Open,
    Confirmed,
    Failed,
    TimedOut,
    Decommissioned,
}

impl Outcome {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Outcome::Open => "open",
            Outcome::Confirmed => "confirmed",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::Decommissioned => "decommissioned",
        }
    }

    fn parse(text: &str) -> Result<Self, sqlx::Error> {
        Ok(match text {
            "open" => Outcome::Open,
            "confirmed" => Outcome::Confirmed,
            "failed" => Outcome::Failed,
            "timed_out" => Outcome::TimedOut,
            "decommissioned" => Outcome::Decommissioned,
            other => return Err(corrupt(format!("unknown rollout outcome {other:?}"))),
        })
    }

    /// Whether the device has settled as a member: it will not take the update in this
    /// rollout any more, and it still counts in its stage's gate.
    fn is_settled_member(self) -> bool {
        matches!(
            self,
            Outcome::Confirmed | Outcome::Failed | Outcome::TimedOut
        )
    }
}

/// The release a rollout installs.
#[derive(Debug, Clone)]
pub(crate) struct ReleaseRow {
    pub id: String,
    pub target: String,
    pub envelope_target: String,
    pub class_id: String,
    pub version: u64,
    pub security_version: u64,
    pub length: u64,
    pub sha256: String,
}

/// A `rollouts` row with its policy decoded and its release.
#[derive(Debug, Clone)]
pub(crate) struct RolloutRow {
    pub id: String,
    pub state: RolloutState,
    pub policy: RolloutCreate,
    pub current_stage: u32,
    pub gate_met_at: Option<i64>,
    pub halted_reason: Option<String>,
    /// Completed and failed (or timed-out) devices when the rollout was last resumed from
    /// halted: the failure threshold counts only what completed since.
    pub halt_base_completed: i64,
    pub halt_base_failed: i64,
    /// Whether the count stages' members are drawn (always, but on rollouts created
    /// before the draw existed, until the next tick draws them).
    pub count_members_drawn: bool,
    /// When a completed rollout's last member settled; from then on it offers nothing.
    pub settled_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub release: ReleaseRow,
}

/// A device's row in a rollout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeviceRow {
    pub stage: u32,
    pub status: DeviceStatus,
    /// Retries used so far (0 on the first assignment).
    pub attempts: i64,
}

/// How many devices of a stage have an outcome.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutcomeCount {
    pub stage: u32,
    pub outcome: Outcome,
    pub count: u64,
}

/// Which rollouts [`load_rollouts`] reads.
pub(crate) enum Filter<'a> {
    All,
    /// Not over: active, paused, halted, or completed with members still to settle.
    Live,
    /// Offering their release (active, or completed with members still to settle), of a
    /// release for this device class.
    OfferingOfClass(&'a str),
}

const ROLLOUT_SELECT: &str = "SELECT r.id, r.state, r.policy, r.current_stage, r.gate_met_at, \
     r.halted_reason, r.halt_base_completed, r.halt_base_failed, r.count_members_drawn_at, \
     r.settled_at, r.created_at, r.updated_at, \
     rel.id, rel.target, rel.envelope_target, rel.class_id, rel.version, rel.security_version, \
     rel.length, rel.sha256 FROM rollouts r JOIN releases rel ON rel.id = r.release_id";

/// One live rollout per release: the partial unique index `rollouts_one_live_per_release`.
const ONE_PER_RELEASE_STATES: &str = "('active', 'paused', 'halted')";

/// The rollouts that are not over ([`Filter::Live`]).
const LIVE: &str = "(r.state IN ('active', 'paused', 'halted') \
     OR (r.state = 'completed' AND r.settled_at IS NULL))";

/// The rollouts that offer their release ([`Filter::OfferingOfClass`]).
const OFFERING: &str = "(r.state = 'active' OR (r.state = 'completed' AND r.settled_at IS NULL))";

pub(crate) async fn load_rollout<'e, E>(
    exec: E,
    id: &str,
) -> Result<Option<RolloutRow>, RolloutError>
where
    E: Executor<'e, Database = Any>,
{
    let row = sqlx::query(&format!("{ROLLOUT_SELECT} WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(exec)
        .await?;
    Ok(row.as_ref().map(decode_rollout).transpose()?)
}

pub(crate) async fn load_rollouts<'e, E>(
    exec: E,
    filter: Filter<'_>,
) -> Result<Vec<RolloutRow>, RolloutError>
where
    E: Executor<'e, Database = Any>,
{
    let order = "ORDER BY r.created_at DESC, r.id";
    let rows = match filter {
        Filter::All => {
            sqlx::query(&format!("{ROLLOUT_SELECT} {order}"))
                .fetch_all(exec)
                .await?
        }
        Filter::Live => {
            sqlx::query(&format!("{ROLLOUT_SELECT} WHERE {LIVE} {order}"))
                .fetch_all(exec)
                .await?
        }
        Filter::OfferingOfClass(class_id) => {
            sqlx::query(&format!(
                "{ROLLOUT_SELECT} WHERE {OFFERING} AND rel.class_id = $1 {order}"
            ))
            .bind(class_id)
            .fetch_all(exec)
            .await?
        }
    };
    Ok(rows.iter().map(decode_rollout).collect::<Result<_, _>>()?)
}

fn decode_rollout(row: &AnyRow) -> Result<RolloutRow, sqlx::Error> {
    let state: String = row.try_get(1)?;
    let policy: String = row.try_get(2)?;
    Ok(RolloutRow {
        id: row.try_get(0)?,
        state: state.parse().map_err(|e| corrupt(format!("{e}")))?,
        policy: serde_json::from_str(&policy)
            .map_err(|e| corrupt(format!("the stored rollout policy is not valid: {e}")))?,
        current_stage: u32::try_from(row.try_get::<i64, _>(3)?)
            .map_err(|_| corrupt("the stored current stage is out of range".into()))?,
        gate_met_at: row.try_get(4)?,
        halted_reason: row.try_get(5)?,
        halt_base_completed: row.try_get(6)?,
        halt_base_failed: row.try_get(7)?,
        count_members_drawn: row.try_get::<Option<i64>, _>(8)?.is_some(),
        settled_at: row.try_get(9)?,
        created_at: row.try_get(10)?,
        updated_at: row.try_get(11)?,
        release: decode_release(row, 12)?,
    })
}

/// A release from `row`'s columns `first`… in the order id, target, envelope_target,
/// class_id, version, security_version, length, sha256.
fn decode_release(row: &AnyRow, first: usize) -> Result<ReleaseRow, sqlx::Error> {
    Ok(ReleaseRow {
        id: row.try_get(first)?,
        target: row.try_get(first + 1)?,
        envelope_target: row.try_get(first + 2)?,
        class_id: row.try_get(first + 3)?,
        version: to_u64(row.try_get(first + 4)?),
        security_version: to_u64(row.try_get(first + 5)?),
        length: to_u64(row.try_get(first + 6)?),
        sha256: row.try_get(first + 7)?,
    })
}

pub(crate) async fn load_release<'e, E>(
    exec: E,
    id: &str,
) -> Result<Option<ReleaseRow>, RolloutError>
where
    E: Executor<'e, Database = Any>,
{
    let row = sqlx::query(
        "SELECT id, target, envelope_target, class_id, version, security_version, length, \
         sha256 FROM releases WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(exec)
    .await?;
    Ok(row.as_ref().map(|row| decode_release(row, 0)).transpose()?)
}

/// The id of a rollout of `release_id` that is not over, if there is one.
pub(crate) async fn live_rollout_of_release<'e, E>(
    exec: E,
    release_id: &str,
) -> Result<Option<String>, RolloutError>
where
    E: Executor<'e, Database = Any>,
{
    Ok(sqlx::query_scalar(&format!(
        "SELECT id FROM rollouts WHERE release_id = $1 AND state IN {ONE_PER_RELEASE_STATES}"
    ))
    .bind(release_id)
    .fetch_optional(exec)
    .await?)
}

/// Takes the rollout's lock for the rest of the transaction, if the rollout is in one of
/// `states`; returns whether it is. Every transaction that reads the rollout's state or
/// counts and then writes starts here, so they serialize. On PostgreSQL it is the row
/// lock an `UPDATE` takes, `FOR NO KEY UPDATE` (a waiting transaction re-checks `state`
/// once the holder commits; the key-share locks of inserts that reference the rollout do
/// not wait for it); not an `UPDATE … SET state = state` itself, which would write a new
/// version of the row for every offer and report, hundreds per group commit, that every
/// check-in's read of the rollouts then steps over until vacuum. On SQLite it is the
/// database's single write lock, which any write takes.
pub(crate) async fn lock(
    conn: &mut AnyConnection,
    id: &str,
    states: &[RolloutState],
) -> Result<bool, RolloutError> {
    let list = states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    if Backend::of(conn) == Backend::Postgres {
        let locked = sqlx::query(&format!(
            "SELECT 1 FROM rollouts WHERE id = $1 AND state IN ({list}) FOR NO KEY UPDATE"
        ))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        return Ok(locked.is_some());
    }
    let done = sqlx::query(&format!(
        "UPDATE rollouts SET state = state WHERE id = $1 AND state IN ({list})"
    ))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn device_row<'e, E>(
    exec: E,
    rollout_id: &str,
    device_id: &str,
) -> Result<Option<DeviceRow>, RolloutError>
where
    E: Executor<'e, Database = Any>,
{
    let row = sqlx::query(
        "SELECT stage, status, attempts FROM rollout_devices \
         WHERE rollout_id = $1 AND device_id = $2",
    )
    .bind(rollout_id)
    .bind(device_id)
    .fetch_optional(exec)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let status: String = row.try_get(1)?;
    Ok(Some(DeviceRow {
        stage: to_stage(row.try_get(0)?)?,
        status: DeviceStatus::parse(&status)?,
        attempts: row.try_get(2)?,
    }))
}

/// Moves `devices` devices of `stage` from outcome `from` (`None`: newly assigned) to
/// `to` in the rollout's running counts. Called in the transaction that changes their
/// `rollout_devices` rows, behind the rollout's lock, so the counts always equal a recount.
pub(crate) async fn count_move(
    conn: &mut AnyConnection,
    rollout_id: &str,
    stage: u32,
    from: Option<Outcome>,
    to: Outcome,
    devices: u64,
) -> Result<(), RolloutError> {
    if from == Some(to) || devices == 0 {
        return Ok(());
    }
    let devices = to_i64(devices);
    if let Some(from) = from {
        sqlx::query(
            "UPDATE rollout_counts SET devices = devices - $4 \
             WHERE rollout_id = $1 AND stage = $2 AND outcome = $3",
        )
        .bind(rollout_id)
        .bind(i64::from(stage))
        .bind(from.as_str())
        .bind(devices)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "INSERT INTO rollout_counts (rollout_id, stage, outcome, devices) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (rollout_id, stage, outcome) \
         DO UPDATE SET devices = rollout_counts.devices + $4",
    )
    .bind(rollout_id)
    .bind(i64::from(stage))
    .bind(to.as_str())
    .bind(devices)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Completed devices (confirmed, failed, timed out) and, of them, the failed and timed
/// out, over the whole rollout: from the running counts, whatever the fleet's size.
pub(crate) async fn completion_totals(
    conn: &mut AnyConnection,
    rollout_id: &str,
) -> Result<(i64, i64), RolloutError> {
    let mut completed = 0u64;
    let mut failures = 0u64;
    for c in device_counts(&mut *conn, rollout_id).await? {
        match c.outcome {
            Outcome::Confirmed => completed += c.count,
            Outcome::Failed | Outcome::TimedOut => {
                completed += c.count;
                failures += c.count;
            }
            Outcome::Open | Outcome::Decommissioned => {}
        }
    }
    Ok((to_i64(completed), to_i64(failures)))
}

/// The rollout's devices by stage and outcome, from the running counts.
pub(crate) async fn device_counts<'e, E>(
    exec: E,
    rollout_id: &str,
) -> Result<Vec<OutcomeCount>, RolloutError>
where
    E: Executor<'e, Database = Any>,
{
    let rows =
        sqlx::query("SELECT stage, outcome, devices FROM rollout_counts WHERE rollout_id = $1")
            .bind(rollout_id)
            .fetch_all(exec)
            .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let outcome: String = row.try_get(1)?;
        out.push(OutcomeCount {
            stage: to_stage(row.try_get(0)?)?,
            outcome: Outcome::parse(&outcome)?,
            count: to_u64(row.try_get(2)?),
        });
    }
    Ok(out)
}

/// Per stage: the devices that have a row and are members (every outcome but
/// decommissioned), and of them the confirmed.
pub(crate) fn members_and_confirmed(counts: &[OutcomeCount], stage: u32) -> (u64, u64) {
    let in_stage = counts.iter().filter(|c| c.stage == stage);
    let members = in_stage
        .clone()
        .filter(|c| c.outcome != Outcome::Decommissioned)
        .map(|c| c.count)
        .sum();
    let confirmed = in_stage
        .filter(|c| c.outcome == Outcome::Confirmed)
        .map(|c| c.count)
        .sum();
    (members, confirmed)
}

/// The API's view of a rollout. `members` holds each stage's members; without it (a
/// rollout that is over) a stage's members are the devices it assigned.
pub(crate) fn to_status(
    rollout: RolloutRow,
    counts: &[OutcomeCount],
    members: Option<&[u64]>,
) -> RolloutStatus {
    let mut stages = vec![StageCounts::default(); rollout.policy.stages.len()];
    // Assigned devices that are members of their stage (not decommissioned since).
    let mut assigned_members = vec![0u64; stages.len()];
    let mut settled = vec![0u64; stages.len()];
    for c in counts {
        let Some(stage) = stages.get_mut(c.stage as usize) else {
            continue;
        };
        let k = c.stage as usize;
        stage.assigned += c.count;
        match c.outcome {
            Outcome::Open => stage.in_progress += c.count,
            Outcome::Confirmed => stage.confirmed += c.count,
            Outcome::Failed => stage.failed += c.count,
            Outcome::TimedOut => stage.timed_out += c.count,
            Outcome::Decommissioned => stage.decommissioned += c.count,
        }
        if c.outcome != Outcome::Decommissioned {
            assigned_members[k] += c.count;
        }
        if c.outcome.is_settled_member() {
            settled[k] += c.count;
        }
    }
    let mut total = StageCounts::default();
    for (k, stage) in stages.iter_mut().enumerate() {
        let known = members.and_then(|m| m.get(k)).copied().unwrap_or(0);
        // The two reads are not one snapshot; every assigned member is a member.
        stage.members = known.max(assigned_members[k]);
        stage.pending = stage.members - settled[k];
        total.members += stage.members;
        total.assigned += stage.assigned;
        total.in_progress += stage.in_progress;
        total.confirmed += stage.confirmed;
        total.failed += stage.failed;
        total.timed_out += stage.timed_out;
        total.decommissioned += stage.decommissioned;
        total.pending += stage.pending;
    }
    RolloutStatus {
        id: rollout.id,
        release_id: rollout.release.id,
        state: rollout.state,
        current_stage: rollout.current_stage,
        stages: rollout.policy.stages,
        selector: rollout.policy.selector,
        counts: RolloutCounts { stages, total },
        halted_reason: rollout.halted_reason,
        created_at: to_u64(rollout.created_at / 1000),
        updated_at: to_u64(rollout.updated_at / 1000),
    }
}

/// A stored count, version or length (never negative as the server writes them).
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A version or duration for a BIGINT column, saturating.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_stage(value: i64) -> Result<u32, sqlx::Error> {
    u32::try_from(value).map_err(|_| corrupt(format!("stored stage {value} is out of range")))
}

/// A stored value the engine did not write that way.
pub(crate) fn corrupt(message: String) -> sqlx::Error {
    sqlx::Error::Decode(message.into())
}
