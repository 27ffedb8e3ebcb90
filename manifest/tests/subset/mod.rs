//! The boot profile's defining property, on one input: whatever `verify_boot_envelope`
//! accepts, the general path (`Envelope::decode` → `authenticate` → `claims(0, None)`,
//! the bootloader's default policy) accepts too, with one component and the same claims.
//!
//! Shared by the boot-profile tests and the `boot_profile` fuzz target (by `#[path]`).
#![allow(dead_code)]

use rota_manifest::{
    BootClaims, Envelope, Error, Policy, PublicKey, Verifier, verify_boot_envelope,
};

/// Runs both paths on `bytes` with `key` as the only anchor and panics on a violation of
/// the subset property; returns the boot profile's verdict.
pub fn assert_subset<'a>(
    bytes: &'a [u8],
    key: &PublicKey,
    verifier: &impl Verifier,
) -> Result<BootClaims<'a>, Error> {
    let profile = verify_boot_envelope(bytes, key, verifier);
    let Ok(boot) = &profile else {
        return profile;
    };
    let policy = Policy::default();
    let authenticated = Envelope::decode(bytes, &policy)
        .and_then(|e| e.authenticate(&[*key], verifier, &policy))
        .unwrap_or_else(|e| {
            panic!(
                "the boot profile accepts what the general path refuses ({e:?}): {}",
                hex(bytes)
            )
        });
    let manifest = &authenticated.manifest;
    assert_eq!(manifest.common.component_count(), 1, "{}", hex(bytes));
    assert_eq!(
        manifest.sequence_number,
        boot.sequence_number,
        "{}",
        hex(bytes)
    );
    let claims = authenticated
        .claims(0, None)
        .unwrap_or_else(|e| panic!("the general path has no claims ({e:?}): {}", hex(bytes)));
    let expected = (
        Some(&boot.vendor_id[..]),
        Some(&boot.class_id[..]),
        Some(boot.image_digest),
        Some(boot.image_size),
        Some(boot.security_version),
    );
    let actual = (
        claims.vendor_id,
        claims.class_id,
        claims.image_digest,
        claims.image_size,
        claims.security_version,
    );
    assert_eq!(actual, expected, "claims differ: {}", hex(bytes));
    profile
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
