//! The rollout rows as the engine reads them, and the SQL its operations share.
//!
//! Times in the database are unix milliseconds; the API's are unix seconds.

use rota_protocol::api::{RolloutCounts, RolloutCreate, RolloutState, RolloutStatus, StageCounts};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use super::RolloutError;

/// A device's status in a rollout (`rollout_devices.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceStatus {
    Assigned,
    InProgress,
    Confirmed,
    Failed,
    TimedOut,
}

impl DeviceStatus {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Assigned => "assigned",
            DeviceStatus::InProgress => "in_progress",
            DeviceStatus::Confirmed => "confirmed",
            DeviceStatus::Failed => "failed",
            DeviceStatus::TimedOut => "timed_out",
        }
    }

    fn parse(text: &str) -> Result<Self, sqlx::Error> {
        Ok(match text {
            "assigned" => DeviceStatus::Assigned,
            "in_progress" => DeviceStatus::InProgress,
            "confirmed" => DeviceStatus::Confirmed,
            "failed" => DeviceStatus::Failed,
            "timed_out" => DeviceStatus::TimedOut,
            other => return Err(corrupt(format!("unknown rollout device status {other:?}"))),
        })
    }

    /// Whether the device is still working on the update; the other statuses are final.
    pub(crate) fn is_open(self) -> bool {
        matches!(self, DeviceStatus::Assigned | DeviceStatus::InProgress)
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

/// How many devices of a stage have a status.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StatusCount {
    pub stage: u32,
    pub status: DeviceStatus,
    pub count: u64,
}

/// Which rollouts [`load_rollouts`] reads.
pub(crate) enum Filter<'a> {
    All,
    /// Not over: active, paused or halted.
    Live,
    /// Active, of a release for this device class.
    ActiveOfClass(&'a str),
}

const ROLLOUT_SELECT: &str = "SELECT r.id, r.state, r.policy, r.current_stage, r.gate_met_at, \
     r.halted_reason, r.halt_base_completed, r.halt_base_failed, r.created_at, r.updated_at, \
     rel.id, rel.target, rel.envelope_target, rel.class_id, rel.version, rel.security_version, \
     rel.length, rel.sha256 FROM rollouts r JOIN releases rel ON rel.id = r.release_id";

const LIVE_STATES: &str = "('active', 'paused', 'halted')";

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
            sqlx::query(&format!(
                "{ROLLOUT_SELECT} WHERE r.state IN {LIVE_STATES} {order}"
            ))
            .fetch_all(exec)
            .await?
        }
        Filter::ActiveOfClass(class_id) => {
            sqlx::query(&format!(
                "{ROLLOUT_SELECT} WHERE r.state = 'active' AND rel.class_id = $1 {order}"
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
        created_at: row.try_get(8)?,
        updated_at: row.try_get(9)?,
        release: decode_release(row, 10)?,
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
        "SELECT id FROM rollouts WHERE release_id = $1 AND state IN {LIVE_STATES}"
    ))
    .bind(release_id)
    .fetch_optional(exec)
    .await?)
}

/// Takes the rollout's lock for the rest of the transaction, if the rollout is in one of
/// `states`; returns whether it is. Every transaction that reads the rollout's state or
/// counts and then writes starts here, so they serialize: on PostgreSQL this write takes
/// the row lock (a waiting transaction re-checks `state` once the holder commits), on
/// SQLite the database's single write lock.
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

/// Completed devices (confirmed, failed, timed out) and, of them, the failed and timed
/// out, over the whole rollout.
pub(crate) async fn completion_totals(
    conn: &mut AnyConnection,
    rollout_id: &str,
) -> Result<(i64, i64), RolloutError> {
    let row = sqlx::query(
        "SELECT COUNT(CASE WHEN status IN ('confirmed', 'failed', 'timed_out') THEN 1 END), \
         COUNT(CASE WHEN status IN ('failed', 'timed_out') THEN 1 END) \
         FROM rollout_devices WHERE rollout_id = $1",
    )
    .bind(rollout_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// The rollout's devices by stage and status.
pub(crate) async fn device_counts<'e, E>(
    exec: E,
    rollout_id: &str,
) -> Result<Vec<StatusCount>, RolloutError>
where
    E: Executor<'e, Database = Any>,
{
    let rows = sqlx::query(
        "SELECT stage, status, COUNT(*) FROM rollout_devices WHERE rollout_id = $1 \
         GROUP BY stage, status",
    )
    .bind(rollout_id)
    .fetch_all(exec)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let status: String = row.try_get(1)?;
        out.push(StatusCount {
            stage: to_stage(row.try_get(0)?)?,
            status: DeviceStatus::parse(&status)?,
            count: to_u64(row.try_get(2)?),
        });
    }
    Ok(out)
}

/// The API's view of a rollout. `members` holds each stage's members; without it (an
/// ended rollout) a stage's members are the devices it assigned.
pub(crate) fn to_status(
    rollout: RolloutRow,
    counts: &[StatusCount],
    members: Option<&[u64]>,
) -> RolloutStatus {
    let mut stages = vec![StageCounts::default(); rollout.policy.stages.len()];
    for c in counts {
        let Some(stage) = stages.get_mut(c.stage as usize) else {
            continue;
        };
        stage.assigned += c.count;
        match c.status {
            DeviceStatus::Assigned | DeviceStatus::InProgress => stage.in_progress += c.count,
            DeviceStatus::Confirmed => stage.confirmed += c.count,
            DeviceStatus::Failed => stage.failed += c.count,
            DeviceStatus::TimedOut => stage.timed_out += c.count,
        }
    }
    let mut total = StageCounts::default();
    for (k, stage) in stages.iter_mut().enumerate() {
        let known = members.and_then(|m| m.get(k)).copied().unwrap_or(0);
        // The two reads are not one snapshot; every assigned device is a member.
        stage.members = known.max(stage.assigned);
        total.members += stage.members;
        total.assigned += stage.assigned;
        total.in_progress += stage.in_progress;
        total.confirmed += stage.confirmed;
        total.failed += stage.failed;
        total.timed_out += stage.timed_out;
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
