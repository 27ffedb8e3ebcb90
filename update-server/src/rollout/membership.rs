//! Who a rollout reaches: the selector, and each device's stage (rules "selector", "newer
//! only", "stage membership"; definitions in the [module doc](super)).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rota_protocol::api::{Selector, Stage, rollout_bucket};
use sqlx::{Any, AnyConnection, Executor, Row};

use super::store::{self, RolloutRow, corrupt};
use super::{DeviceView, RolloutError};
use crate::db::{Backend, Db};

/// Device states that can take an update: the others (suspended, decommissioned) are
/// refused by the device API, so counting them would hold stage gates back for nothing.
const TAKING_STATES: &str = "('provisioned', 'active')";

/// Whether the rollout's selector takes `device` now and the device needs the release.
pub(crate) fn selected(selector: &Selector, release_version: u64, device: &DeviceView) -> bool {
    selected_parts(
        selector,
        release_version,
        &device.class_id,
        &device.tags,
        Some(device.running_version),
    )
}

fn selected_parts(
    selector: &Selector,
    release_version: u64,
    class_id: &str,
    tags: &[String],
    running_version: Option<u64>,
) -> bool {
    // Rule "selector": the class, every selector tag, `versions` empty or holding the
    // running version.
    selector.matches(class_id, tags, running_version)
        // Rule "newer only": a device already running the release has nothing to do. One
        // that never reported a version is taken to need it.
        && running_version.unwrap_or(0) < release_version
}

/// Rule "stage membership": the device's drawn count stage if it has one, else the first
/// percent stage its bucket is below; `None` when no stage takes it.
pub(crate) fn stage_of(stages: &[Stage], bucket: f64, drawn: Option<u32>) -> Option<u32> {
    if drawn.is_some() {
        return drawn;
    }
    let k = stages
        .iter()
        .position(|stage| matches!(*stage, Stage::Percent(percent) if bucket * 100.0 < percent))?;
    u32::try_from(k).ok()
}

/// The count stage that takes the device drawn at `rank` (0-based, in bucket order):
/// the first whose cumulative count is above the rank.
fn count_stage_of_rank(stages: &[Stage], rank: u64) -> Option<u32> {
    let k = stages
        .iter()
        .position(|stage| matches!(*stage, Stage::Count(count) if rank < count))?;
    u32::try_from(k).ok()
}

/// How many devices the count stages take in all (they are cumulative): 0 without any.
fn count_seats(stages: &[Stage]) -> u64 {
    stages
        .iter()
        .filter_map(|s| match *s {
            Stage::Count(count) => Some(count),
            Stage::Percent(_) => None,
        })
        .max()
        .unwrap_or(0)
}

/// Whether a stage in `0..=current` is a count stage, whose members only the database
/// knows (percent stages need only the bucket).
pub(crate) fn has_count_stage(stages: &[Stage], current: u32) -> bool {
    stages
        .iter()
        .take(current as usize + 1)
        .any(|s| matches!(s, Stage::Count(_)))
}

/// Whether the device may be in a stage up to `current`: exact for percent stages, and
/// true whenever a count stage might have drawn the device.
pub(crate) fn may_be_in_stage(
    stages: &[Stage],
    current: u32,
    rollout_id: &str,
    device_id: &str,
) -> bool {
    has_count_stage(stages, current)
        || stage_of(stages, rollout_bucket(rollout_id, device_id), None)
            .is_some_and(|k| k <= current)
}

/// The device's drawn count stage, if the draw took it.
pub(crate) async fn drawn_stage<'e, E>(
    exec: E,
    rollout_id: &str,
    device_id: &str,
) -> Result<Option<u32>, RolloutError>
where
    E: Executor<'e, Database = Any>,
{
    let stage: Option<i64> = sqlx::query_scalar(
        "SELECT stage FROM rollout_count_members WHERE rollout_id = $1 AND device_id = $2",
    )
    .bind(rollout_id)
    .bind(device_id)
    .fetch_optional(exec)
    .await?;
    stage.map(to_stage).transpose()
}

/// Draws the count stages' members, once, in the transaction that creates the rollout
/// (or, for a rollout created before draws existed, under its lock): the first
/// `count` devices in `(bucket, device id)` order among the devices holding a row of the
/// rollout and the known devices selected now. Scans the class once, so that no
/// check-in has to.
pub(crate) async fn draw_count_members(
    conn: &mut AnyConnection,
    rollout: &RolloutRow,
    now_ms: i64,
) -> Result<(), RolloutError> {
    let stages = &rollout.policy.stages;
    let seats = count_seats(stages);
    if seats > 0 {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT device_id FROM rollout_devices WHERE rollout_id = $1")
                .bind(&rollout.id)
                .fetch_all(&mut *conn)
                .await?;
        // The two sets are disjoint: `unassigned_selected_devices` leaves out every device
        // with a row.
        let mut population: Vec<(f64, String)> = unassigned_selected_devices(&mut *conn, rollout)
            .await?
            .into_iter()
            .chain(rows)
            .map(|id| (rollout_bucket(&rollout.id, &id), id))
            .collect();
        population.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        for (rank, (_, id)) in (0u64..seats).zip(population) {
            let Some(stage) = count_stage_of_rank(stages, rank) else {
                break;
            };
            sqlx::query(
                "INSERT INTO rollout_count_members (rollout_id, device_id, stage) \
                 VALUES ($1, $2, $3) ON CONFLICT (rollout_id, device_id) DO NOTHING",
            )
            .bind(&rollout.id)
            .bind(id)
            .bind(i64::from(stage))
            .execute(&mut *conn)
            .await?;
        }
    }
    sqlx::query("UPDATE rollouts SET count_members_drawn_at = $2 WHERE id = $1")
        .bind(&rollout.id)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The known devices (able to take updates) that the rollout selects now and has not
/// assigned (they hold no row of it), from their `devices` rows. Leaving the assigned out
/// in the query keeps the scan's cost to the devices still to reach: all of a large
/// class when a rollout starts, few once its last stage is out.
async fn unassigned_selected_devices<'e, E>(
    exec: E,
    rollout: &RolloutRow,
) -> Result<Vec<String>, RolloutError>
where
    E: Executor<'e, Database = Any>,
{
    let selector = &rollout.policy.selector;
    let devices = sqlx::query(&format!(
        "SELECT id, tags, running_version FROM devices d \
         WHERE class_id = $1 AND state IN {TAKING_STATES} AND NOT EXISTS \
         (SELECT 1 FROM rollout_devices r WHERE r.rollout_id = $2 AND r.device_id = d.id)"
    ))
    .bind(&selector.class_id)
    .bind(&rollout.id)
    .fetch_all(exec)
    .await?;
    let mut out = Vec::with_capacity(devices.len());
    for row in devices {
        let id: String = row.try_get(0)?;
        let tags: String = row.try_get(1)?;
        let tags: Vec<String> = serde_json::from_str(&tags)
            .map_err(|e| corrupt(format!("the stored tags of device {id} are not valid: {e}")))?;
        let running: Option<i64> = row.try_get(2)?;
        let running = running.map(|v| u64::try_from(v).unwrap_or(0));
        if selected_parts(
            selector,
            rollout.release.version,
            &selector.class_id,
            &tags,
            running,
        ) {
            out.push(id);
        }
    }
    Ok(out)
}

/// How many members each stage has: the devices with a row of the rollout in the stage
/// it records (but those decommissioned meanwhile), from the running counts, plus the
/// known selected devices without a row, in the stage they would be offered. Scans the
/// class's unassigned devices: for the tick and the management API, never a check-in or
/// a report.
///
/// The scan and the counts are read in one snapshot: a device assigned between two reads
/// would be counted twice or not at all (a stage with more members than the class has
/// devices, seen at 100,000 devices on PostgreSQL, where the scan takes seconds).
async fn members_per_stage(db: &Db, rollout: &RolloutRow) -> Result<Vec<u64>, RolloutError> {
    let stages = &rollout.policy.stages;
    let mut tx = db.read.begin().await?;
    // SQLite's read transaction is a snapshot (WAL) from its first read; PostgreSQL's
    // default, read committed, takes one per statement.
    if db.backend == Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
    }
    let mut members = vec![0u64; stages.len()];
    let mut drawn: HashMap<String, u32> = HashMap::new();
    for row in
        sqlx::query("SELECT device_id, stage FROM rollout_count_members WHERE rollout_id = $1")
            .bind(&rollout.id)
            .fetch_all(&mut *tx)
            .await?
    {
        drawn.insert(row.try_get(0)?, to_stage(row.try_get(1)?)?);
    }
    for id in unassigned_selected_devices(&mut *tx, rollout).await? {
        let bucket = rollout_bucket(&rollout.id, &id);
        let stage = stage_of(stages, bucket, drawn.get(&id).copied());
        if let Some(n) = stage.and_then(|k| members.get_mut(k as usize)) {
            *n += 1;
        }
    }
    let counts = store::device_counts(&mut *tx, &rollout.id).await?;
    for (k, n) in (0u32..).zip(members.iter_mut()) {
        *n += store::members_and_confirmed(&counts, k).0;
    }
    tx.rollback().await?;
    Ok(members)
}

/// [`members_per_stage`] of each live rollout, counted at most once per `interval` for
/// the same version of the rollout's row (its `updated_at`: a stage advance, a pause, a
/// draw of count members each make a new one). The count scans the class's devices not
/// yet assigned (every one of a 100,000-device class as a rollout starts: over a second on
/// SQLite), and the tick (every 250 ms) and every `rollout status` ask for it: at 100,000
/// devices the tick alone kept a core busy counting. A count up to `interval` old delays
/// a gate or a settlement by as much; the tick reads it outside the rollout's lock
/// already, where it can be as stale.
#[derive(Debug)]
pub(crate) struct MemberCounts {
    interval: Duration,
    counted: Mutex<HashMap<String, Counted>>,
}

#[derive(Debug)]
struct Counted {
    row_version: i64,
    at: Instant,
    members: Vec<u64>,
}

impl MemberCounts {
    pub(crate) fn new(interval: Duration) -> Self {
        MemberCounts {
            interval,
            counted: Mutex::new(HashMap::new()),
        }
    }

    /// `rollout`'s members per stage, counted now or within the interval.
    pub(crate) async fn get(
        &self,
        db: &Db,
        rollout: &RolloutRow,
    ) -> Result<Vec<u64>, RolloutError> {
        if let Some(c) = self.counted.lock().unwrap().get(&rollout.id) {
            if c.row_version == rollout.updated_at && c.at.elapsed() < self.interval {
                return Ok(c.members.clone());
            }
        }
        let members = members_per_stage(db, rollout).await?;
        if !self.interval.is_zero() {
            let mut counted = self.counted.lock().unwrap();
            // Counts of rollouts no longer asked about (ended, or gone) do not pile up.
            counted.retain(|_, c| c.at.elapsed() < self.interval);
            counted.insert(
                rollout.id.clone(),
                Counted {
                    row_version: rollout.updated_at,
                    at: Instant::now(),
                    members: members.clone(),
                },
            );
        }
        Ok(members)
    }
}

fn to_stage(value: i64) -> Result<u32, RolloutError> {
    u32::try_from(value)
        .map_err(|_| corrupt(format!("stored stage {value} is out of range")).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_stages_take_buckets_below_the_cumulative_percent() {
        let stages = [
            Stage::Percent(10.0),
            Stage::Percent(50.0),
            Stage::Percent(100.0),
        ];
        assert_eq!(stage_of(&stages, 0.05, None), Some(0));
        assert_eq!(stage_of(&stages, 0.10, None), Some(1));
        assert_eq!(stage_of(&stages, 0.49, None), Some(1));
        assert_eq!(stage_of(&stages, 0.99, None), Some(2));
        assert_eq!(stage_of(&stages[..2], 0.99, None), None);
    }

    #[test]
    fn count_stages_take_ranks_below_the_cumulative_count_then_percent_stages_follow() {
        let stages = [Stage::Count(2), Stage::Count(5), Stage::Percent(100.0)];
        assert_eq!(count_stage_of_rank(&stages, 0), Some(0));
        assert_eq!(count_stage_of_rank(&stages, 2), Some(1));
        assert_eq!(count_stage_of_rank(&stages, 5), None);
        assert_eq!(count_seats(&stages), 5);
        // Drawn devices keep their count stage; the others fall to the percent stages.
        assert_eq!(stage_of(&stages, 0.9, Some(1)), Some(1));
        assert_eq!(stage_of(&stages, 0.9, None), Some(2));
        assert!(has_count_stage(&stages, 0));
        assert!(!has_count_stage(
            &[Stage::Percent(1.0), Stage::Percent(100.0)],
            1
        ));
    }
}
