-- Operator orders (issue 16): a decommission that erases the device's credentials, or an
-- ownership transfer. The signed order (JSON) is delivered with every check-in until the
-- device reports it done; then the device is decommissioned here (a transferred device
-- names its new server) and refused from then on.
ALTER TABLE devices ADD COLUMN pending_order TEXT;
-- SHA-256 of the signed order's body (hex): what the device's report names.
ALTER TABLE devices ADD COLUMN order_fingerprint TEXT;
ALTER TABLE devices ADD COLUMN order_done_at BIGINT;
ALTER TABLE devices ADD COLUMN transferred_to TEXT;
