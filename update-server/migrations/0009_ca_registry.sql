-- Manufacturer CA rollover and scheduled key rotation (issue 16).

-- The device CAs whose certificates the server accepts at enrolment and registration:
-- the one truth about trust (`crate::cas`). The `device-ca/` directory's keys and the
-- `--device-ca-key` device CA are added at start-up (never re-activated once retired).
CREATE TABLE device_cas (
    -- SHA-256 of the raw public key (hex): the `issuer` of the certificates it signs.
    key_id TEXT PRIMARY KEY,
    -- The raw public key (hex).
    public_key TEXT NOT NULL,
    name TEXT NOT NULL,
    -- active | retired
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

-- The devices a CA issued the current certificates of (listing, and refusing to retire).
CREATE INDEX devices_issuer ON devices (issuer, id);

-- Per device class: a device whose current certificate is older than this is asked to
-- rotate its key at check-in.
CREATE TABLE rotation_policies (
    class_id TEXT PRIMARY KEY,
    max_certificate_age_days BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
