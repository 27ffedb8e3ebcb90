//! The builder and the no_std verifier agree: whatever a release engineer signs is
//! exactly what the bootloader's path reads back, for arbitrary inputs.
#![cfg(feature = "builder")]

use proptest::prelude::*;
use rota_manifest::{
    Ed25519Verifier, Envelope, ImageDigest, ImageManifest, Policy, Sign, SoftwareKey,
};

/// RFC 8032 §7.1 TEST 1 seed (test key).
const SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];

fn component() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn builder_output_verifies_with_the_no_std_path_and_reads_back_its_inputs(
        vendor_id in any::<[u8; 16]>(),
        class_id in any::<[u8; 16]>(),
        component in component(),
        image in proptest::collection::vec(any::<u8>(), 0..2048),
        sequence_number in any::<u64>(),
        security_version in any::<u64>(),
        uri in proptest::option::of("[a-z]{1,12}://[a-z0-9./-]{0,40}"),
        description in proptest::option::of("\\PC{0,40}"),
    ) {
        let signer = SoftwareKey::from_ed25519_seed(SEED);
        let mut digest = ImageDigest::new();
        digest.update(&image);
        let release = ImageManifest {
            vendor_id,
            class_id,
            component: component.clone(),
            image_digest: digest.finalize(),
            image_size: image.len() as u64,
            sequence_number,
            security_version,
            uri: uri.clone(),
            description,
        };
        let bytes = release.build_envelope(&[&signer]).unwrap();

        let policy = Policy::default();
        let env = Envelope::decode(&bytes, &policy).unwrap();
        let auth = env
            .authenticate(&[signer.public_key()], &Ed25519Verifier, &policy)
            .unwrap();
        prop_assert_eq!(auth.manifest.sequence_number, sequence_number);
        let ids: Vec<Vec<Vec<u8>>> = auth
            .manifest
            .common
            .components()
            .map(|c| c.segments().map(<[u8]>::to_vec).collect())
            .collect();
        prop_assert_eq!(ids, vec![component]);

        let claims = auth.claims(0, None).unwrap();
        prop_assert_eq!(claims.vendor_id, Some(&vendor_id[..]));
        prop_assert_eq!(claims.class_id, Some(&class_id[..]));
        prop_assert_eq!(claims.image_size, Some(image.len() as u64));
        prop_assert_eq!(claims.security_version, Some(security_version));
        prop_assert_eq!(claims.uri, uri.as_deref());

        // And the image it names is the one that was signed.
        let mut check = ImageDigest::new();
        check.update(&image);
        prop_assert_eq!(check.check(&claims.image_digest.unwrap(), claims.image_size), Ok(()));
    }
}
