//! Who a rollout reaches: the selector, and each device's stage (rules "selector", "newer
//! only", "stage membership"; definitions in the [module doc](super)).

use std::collections::HashMap;

use rota_protocol::api::{Selector, Stage, rollout_bucket};
use sqlx::{AnyPool, Row};

use super::store::{RolloutRow, corrupt};
use super::{DeviceView, RolloutError};

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

/// Rule "stage membership": the first stage that takes a device with this bucket and
/// rank (its position in the [`Population`]); `None` when no stage does. A count stage
/// takes nobody when the rank is not known.
pub(crate) fn stage_of(stages: &[Stage], bucket: f64, rank: Option<u64>) -> Option<u32> {
    let k = stages.iter().position(|stage| match *stage {
        Stage::Percent(percent) => bucket * 100.0 < percent,
        Stage::Count(count) => rank.is_some_and(|r| r < count),
    })?;
    u32::try_from(k).ok()
}

/// Whether deciding membership in stages `0..=current` needs the device's rank, which
/// only the database can give (percent stages need only the bucket).
pub(crate) fn needs_rank(stages: &[Stage], current: u32) -> bool {
    stages
        .iter()
        .take(current as usize + 1)
        .any(|s| matches!(s, Stage::Count(_)))
}

/// Whether the device may be in a stage up to `current`: exact for percent stages, and
/// true whenever a count stage would need the device's rank.
pub(crate) fn may_be_in_stage(
    stages: &[Stage],
    current: u32,
    rollout_id: &str,
    device_id: &str,
) -> bool {
    needs_rank(stages, current)
        || stage_of(stages, rollout_bucket(rollout_id, device_id), None)
            .is_some_and(|k| k <= current)
}

/// The devices a rollout ranks its count stages over: every device holding a row of the
/// rollout, plus the known devices (able to take updates) that are selected now, ordered
/// by `(bucket, device id)`.
pub(crate) struct Population {
    entries: Vec<Entry>,
}

struct Entry {
    id: String,
    bucket: f64,
    /// The stage recorded at assignment; devices keep it.
    recorded_stage: Option<u32>,
}

impl Population {
    /// Reads the population. `checking_in`, already judged selected from its own view
    /// (which may be newer than its `devices` row), is included whatever its row says.
    pub(crate) async fn load(
        pool: &AnyPool,
        rollout: &RolloutRow,
        checking_in: Option<&DeviceView>,
    ) -> Result<Population, RolloutError> {
        let mut recorded: HashMap<String, u32> = HashMap::new();
        for row in sqlx::query("SELECT device_id, stage FROM rollout_devices WHERE rollout_id = $1")
            .bind(&rollout.id)
            .fetch_all(pool)
            .await?
        {
            let stage: i64 = row.try_get(1)?;
            let stage = u32::try_from(stage)
                .map_err(|_| corrupt(format!("stored stage {stage} is out of range")))?;
            recorded.insert(row.try_get(0)?, stage);
        }
        let selector = &rollout.policy.selector;
        let devices = sqlx::query(&format!(
            "SELECT id, tags, running_version FROM devices \
             WHERE class_id = $1 AND state IN {TAKING_STATES}"
        ))
        .bind(&selector.class_id)
        .fetch_all(pool)
        .await?;
        let mut entries = Vec::with_capacity(devices.len() + recorded.len());
        for row in devices {
            let id: String = row.try_get(0)?;
            if recorded.contains_key(&id) || checking_in.is_some_and(|d| d.id == id) {
                continue;
            }
            let tags: String = row.try_get(1)?;
            let tags: Vec<String> = serde_json::from_str(&tags).map_err(|e| {
                corrupt(format!("the stored tags of device {id} are not valid: {e}"))
            })?;
            let running: Option<i64> = row.try_get(2)?;
            let running = running.map(|v| u64::try_from(v).unwrap_or(0));
            if selected_parts(
                selector,
                rollout.release.version,
                &selector.class_id,
                &tags,
                running,
            ) {
                entries.push(Entry {
                    bucket: rollout_bucket(&rollout.id, &id),
                    id,
                    recorded_stage: None,
                });
            }
        }
        if let Some(device) = checking_in {
            if !recorded.contains_key(&device.id) {
                entries.push(Entry {
                    bucket: rollout_bucket(&rollout.id, &device.id),
                    id: device.id.clone(),
                    recorded_stage: None,
                });
            }
        }
        for (id, stage) in recorded {
            entries.push(Entry {
                bucket: rollout_bucket(&rollout.id, &id),
                id,
                recorded_stage: Some(stage),
            });
        }
        entries.sort_by(|a, b| a.bucket.total_cmp(&b.bucket).then_with(|| a.id.cmp(&b.id)));
        Ok(Population { entries })
    }

    /// The device's 0-based rank, if it is in the population.
    pub(crate) fn rank_of(&self, device_id: &str) -> Option<u64> {
        let position = self.entries.iter().position(|e| e.id == device_id)?;
        u64::try_from(position).ok()
    }

    /// How many members each stage has: the recorded stage of devices with a row, the
    /// computed stage of the others.
    pub(crate) fn members_per_stage(&self, stages: &[Stage]) -> Vec<u64> {
        let mut members = vec![0u64; stages.len()];
        for (rank, entry) in self.entries.iter().enumerate() {
            let stage = entry
                .recorded_stage
                .or_else(|| stage_of(stages, entry.bucket, Some(rank as u64)));
            if let Some(count) = stage.and_then(|k| members.get_mut(k as usize)) {
                *count += 1;
            }
        }
        members
    }
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
        assert_eq!(stage_of(&stages, 0.9, Some(0)), Some(0));
        assert_eq!(stage_of(&stages, 0.9, Some(2)), Some(1));
        assert_eq!(stage_of(&stages, 0.9, Some(5)), Some(2));
        assert!(needs_rank(&stages, 0));
        assert!(!needs_rank(
            &[Stage::Percent(1.0), Stage::Percent(100.0)],
            1
        ));
    }
}
