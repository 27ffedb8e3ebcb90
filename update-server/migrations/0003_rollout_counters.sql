-- Rollouts that keep their promise: running counts kept by the transaction that changes
-- them (so a report costs the same at any fleet size, and replicas agree), count stages
-- drawn once, and when a completed rollout stopped offering its release.

-- How many devices of each stage of a rollout have each outcome: open (assigned or in
-- progress), confirmed, failed, timed_out, decommissioned. Every transaction that writes
-- `rollout_devices` moves these counts in the same transaction, behind the rollout's lock.
CREATE TABLE rollout_counts (
    rollout_id TEXT NOT NULL REFERENCES rollouts (id),
    stage BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    devices BIGINT NOT NULL,
    PRIMARY KEY (rollout_id, stage, outcome)
);
INSERT INTO rollout_counts (rollout_id, stage, outcome, devices)
    SELECT rollout_id, stage,
           CASE WHEN status IN ('assigned', 'in_progress') THEN 'open' ELSE status END,
           COUNT(*)
    FROM rollout_devices
    GROUP BY rollout_id, stage,
             CASE WHEN status IN ('assigned', 'in_progress') THEN 'open' ELSE status END;

-- The devices of a rollout's count stages, drawn once (when the rollout is created) in
-- bucket order, so a check-in looks its stage up instead of ranking the fleet.
CREATE TABLE rollout_count_members (
    rollout_id TEXT NOT NULL REFERENCES rollouts (id),
    device_id TEXT NOT NULL,
    stage BIGINT NOT NULL,
    PRIMARY KEY (rollout_id, device_id)
);

-- When the count stages were drawn; NULL on rollouts created before this migration, whose
-- draw the next tick makes.
ALTER TABLE rollouts ADD COLUMN count_members_drawn_at BIGINT;

-- When every member of a completed rollout had settled (confirmed, failed, timed out, or
-- decommissioned); until then a completed rollout still offers its release.
ALTER TABLE rollouts ADD COLUMN settled_at BIGINT;
