-- Remote attestation (issue 15): what each device's latest evidence showed, the
-- single-use challenges shared by every replica, and each class's policy.

-- The DICE DeviceID the device's certificate binds (hex), and the latest verdict.
ALTER TABLE devices ADD COLUMN dice_device_id TEXT;
ALTER TABLE devices ADD COLUMN attestation TEXT NOT NULL DEFAULT 'none';
ALTER TABLE devices ADD COLUMN attestation_reason TEXT;
ALTER TABLE devices ADD COLUMN attested_version BIGINT;
ALTER TABLE devices ADD COLUMN attested_digest TEXT;
ALTER TABLE devices ADD COLUMN attested_bootloader TEXT;
ALTER TABLE devices ADD COLUMN attested_by TEXT;
ALTER TABLE devices ADD COLUMN attested_at BIGINT;
-- An operator asked for fresh evidence at this time (cleared by the next evidence).
ALTER TABLE devices ADD COLUMN attest_requested_at BIGINT;

-- A challenge is used at most once (`UPDATE … WHERE used_at IS NULL`), before it expires.
CREATE TABLE attestation_nonces (
    nonce TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX attestation_nonces_device ON attestation_nonces (device_id, expires_at);
CREATE INDEX attestation_nonces_expires ON attestation_nonces (expires_at);

-- Per device class: off | software | required, and the expected bootloader measurements
-- (a JSON array of lowercase hex; empty: any).
CREATE TABLE attestation_policies (
    class_id TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    bootloaders TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
