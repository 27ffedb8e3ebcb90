-- Staged rollouts: the failure window of a resumed rollout, one live rollout per release,
-- and a device's assignments looked up by device.

-- Completed devices, and of them the failed or timed out, when an operator last resumed
-- the rollout from halted: the failure threshold then counts only what completed since,
-- so the failures that caused the halt do not halt it again at once.
ALTER TABLE rollouts ADD COLUMN halt_base_completed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN halt_base_failed BIGINT NOT NULL DEFAULT 0;

-- At most one rollout per release that is not over, even when two replicas create one
-- at the same time.
CREATE UNIQUE INDEX rollouts_one_live_per_release ON rollouts (release_id)
    WHERE state IN ('active', 'paused', 'halted');

-- A check-in looks up the device's open assignments across rollouts.
CREATE INDEX rollout_devices_device ON rollout_devices (device_id, status);
