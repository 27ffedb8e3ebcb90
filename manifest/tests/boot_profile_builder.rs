//! The boot profile accepts every envelope the builder writes for one Ed25519 signer,
//! and reads back exactly the general path's claims and the builder's inputs.
#![cfg(feature = "builder")]

mod subset;

use proptest::prelude::*;
use rota_manifest::{
    Ed25519Verifier, Error, ImageManifest, Sign, SoftwareKey, verify_boot_envelope,
};
use subset::assert_subset;

/// RFC 8032 §7.1 TEST 1 seed (test key).
const SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];

/// Integers at every CBOR head width boundary, and anything.
fn uint() -> impl Strategy<Value = u64> {
    prop_oneof![
        prop::sample::select(vec![
            0,
            23,
            24,
            255,
            256,
            65_535,
            65_536,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ]),
        any::<u64>(),
    ]
}

fn release() -> impl Strategy<Value = ImageManifest> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        // Segments empty to long enough for 2-byte bstr heads, and none at all.
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..4),
        any::<[u8; 32]>(),
        (uint(), uint(), uint()),
        // Long enough for 1- and 2-byte text heads; any Unicode.
        prop::option::of("\\PC{0,300}"),
        prop::option::of("\\PC{0,300}"),
    )
        .prop_map(
            |(vendor_id, class_id, component, image_digest, numbers, uri, description)| {
                let (image_size, sequence_number, security_version) = numbers;
                ImageManifest {
                    vendor_id,
                    class_id,
                    component,
                    image_digest,
                    image_size,
                    sequence_number,
                    security_version,
                    uri,
                    description,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn boot_profile_accepts_every_builder_envelope_with_the_general_paths_claims(
        release in release(),
    ) {
        let signer = SoftwareKey::from_ed25519_seed(SEED);
        let bytes = release.build_envelope(&[&signer]).unwrap();
        let claims = assert_subset(&bytes, &signer.public_key(), &Ed25519Verifier)
            .expect("the boot profile accepts the builder's envelope");
        prop_assert_eq!(claims.vendor_id, &release.vendor_id);
        prop_assert_eq!(claims.class_id, &release.class_id);
        prop_assert_eq!(claims.image_digest.alg, -16);
        prop_assert_eq!(claims.image_digest.bytes, &release.image_digest[..]);
        prop_assert_eq!(claims.image_size, release.image_size);
        prop_assert_eq!(claims.security_version, release.security_version);
        prop_assert_eq!(claims.sequence_number, release.sequence_number);
    }

    /// The profile verifies one signer; an envelope signed by several is the general
    /// path's to read.
    #[test]
    fn boot_profile_refuses_more_than_one_signature(release in release()) {
        let a = SoftwareKey::from_ed25519_seed(SEED);
        let b = SoftwareKey::from_ed25519_seed([42; 32]);
        let bytes = release.build_envelope(&[&a, &b]).unwrap();
        let verdict = verify_boot_envelope(&bytes, &a.public_key(), &Ed25519Verifier);
        prop_assert!(matches!(verdict, Err(Error::NotBootProfile { .. })), "{:?}", verdict);
    }
}

/// The draft's example 0 layout (rota's default release) is in the profile.
#[test]
fn boot_profile_accepts_the_default_release() {
    let signer = SoftwareKey::from_ed25519_seed(SEED);
    let bytes = ImageManifest::default().build_envelope(&[&signer]).unwrap();
    let claims = assert_subset(&bytes, &signer.public_key(), &Ed25519Verifier).unwrap();
    assert_eq!(claims.sequence_number, 0);
    assert_eq!(claims.image_size, 0);
}

/// The signer must be the key given, named by its key id; another trusted-looking key
/// is refused before any curve arithmetic.
#[test]
fn boot_profile_refuses_another_key() {
    let signer = SoftwareKey::from_ed25519_seed(SEED);
    let bytes = ImageManifest::default().build_envelope(&[&signer]).unwrap();
    let other = SoftwareKey::from_ed25519_seed([7; 32]).public_key();
    assert_eq!(
        verify_boot_envelope(&bytes, &other, &Ed25519Verifier),
        Err(Error::NoTrustedKey)
    );
    // A P-256 key whose id could never be the kid of an Ed25519 signature.
    let mut p256 = [0u8; 65];
    p256[0] = 4;
    assert_eq!(
        verify_boot_envelope(
            &bytes,
            &rota_manifest::PublicKey::P256(p256),
            &Ed25519Verifier
        ),
        Err(Error::NoTrustedKey)
    );
}

/// EdDSA (-8) is the general path's only under a policy the bootloader does not set.
#[test]
fn boot_profile_refuses_eddsa_8() {
    let signer = SoftwareKey::from_ed25519_seed(SEED);
    let bytes = ImageManifest::default()
        .build_envelope_as(&[(&signer, rota_manifest::SignatureAlgorithm::EdDsa)])
        .unwrap();
    assert!(matches!(
        verify_boot_envelope(&bytes, &signer.public_key(), &Ed25519Verifier),
        Err(Error::NotBootProfile { .. })
    ));
}
