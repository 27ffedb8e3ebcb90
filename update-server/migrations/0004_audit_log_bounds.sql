-- The audit log under a flood of refusals (issue 12): refusals from one address beyond
-- its rate are not stored one by one but counted, one record per address and reason per
-- minute, so each record says where it came from and how many requests it stands for.
ALTER TABLE audit_log ADD COLUMN source TEXT;
ALTER TABLE audit_log ADD COLUMN occurrences BIGINT NOT NULL DEFAULT 1;
