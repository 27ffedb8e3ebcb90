-- Revocation (issue 16): a device key, one certificate, or every certificate a CA issued
-- at or after a time. Checked whenever a device's record is read for a request, so every
-- replica refuses within the device cache's lifetime (one second).
CREATE TABLE revocations (
    id TEXT PRIMARY KEY,
    -- device_key | certificate | ca
    kind TEXT NOT NULL,
    -- device_key: the public key (hex, as devices.public_key); certificate: SHA-256 of
    -- the certificate body (hex); ca: the CA's key id (hex, as a certificate's issuer).
    subject TEXT NOT NULL,
    -- ca only: certificates issued at or after this time (unix ms); NULL: all of them.
    not_before BIGINT,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (kind, subject)
);

-- What a revocation is matched against, from the device's certificate (filled at
-- registration; rows from before this migration are filled at start-up).
ALTER TABLE devices ADD COLUMN certificate_sha256 TEXT;
ALTER TABLE devices ADD COLUMN issuer TEXT;
ALTER TABLE devices ADD COLUMN issued_at BIGINT;
