-- Device key rotation (issue 16): an operator or a class's schedule asked the device to
-- rotate its identity key at this time (cleared by the rotation).
ALTER TABLE devices ADD COLUMN rotate_requested_at BIGINT;
