-- Check-in sessions (issue 17): secrets the server keeps for itself, one row per purpose,
-- shared by every replica on the database. `session-token`: the 32-byte key that seals
-- session tokens (AES-256-GCM-SIV, `rota_protocol::session::TokenSealer`), made by the
-- first server to start and never changed by a later one (`device::session`), so a
-- session opened on one replica works on all.
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    -- Lowercase hex.
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
