//! Fixed keys and a ready-made certificate body for the integration tests.

#![allow(dead_code)]

use rota_protocol::{CertBody, PublicKey, Sign as _, SoftwareKey};

pub const CLASS_ID: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";

pub fn key(seed: u8) -> SoftwareKey {
    SoftwareKey::from_ed25519_seed([seed; 32])
}

pub fn ca() -> SoftwareKey {
    key(0xca)
}

pub fn device_key() -> SoftwareKey {
    key(0xde)
}

pub fn body_for(ca: &PublicKey, device_id: &str, tags: &[&str]) -> CertBody {
    CertBody::new(
        ca,
        device_id,
        &device_key().public_key(),
        &CLASS_ID.parse().unwrap(),
        tags.iter().map(|t| t.to_string()).collect(),
        1_700_000_000,
    )
}

pub fn body() -> CertBody {
    body_for(
        &ca().public_key(),
        "sensor-0001",
        &["region:eu", "hw.rev-b"],
    )
}
