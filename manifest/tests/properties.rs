//! Properties of the decode-and-verify path over generated inputs.

mod assemble;

use assemble::{Parts, V, public_key, verify, wrap};
use proptest::prelude::*;
use rota_manifest::{Ed25519Verifier, Envelope, Policy};

/// Decodes, inspects and authenticates without asserting: the point is that no input
/// makes any of it panic.
fn exercise(bytes: &[u8]) {
    for policy in [
        Policy::default(),
        Policy {
            allow_eddsa_8: true,
            allow_untagged_envelope: true,
        },
    ] {
        let Ok(env) = Envelope::decode(bytes, &policy) else {
            continue;
        };
        env.member_keys().for_each(drop);
        if let Ok(sigs) = env.signatures() {
            sigs.for_each(drop);
        }
        if let Ok(m) = env.manifest_unauthenticated() {
            for c in m.common.components() {
                c.segments().for_each(drop);
            }
            for i in 0..m.common.component_count() {
                for slot in [None, Some(0), Some(1)] {
                    let _ = env.claims(&m, i, slot);
                }
            }
        }
        let _ = env.authenticate(&[public_key()], &Ed25519Verifier, &policy);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn decoding_corrupted_envelopes_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
    ) {
        let mut bytes = Parts::default().build();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        exercise(&bytes);
    }

    #[test]
    fn every_proper_prefix_is_rejected(cut in any::<prop::sample::Index>()) {
        let bytes = Parts::default().build();
        let len = cut.index(bytes.len());
        prop_assert!(verify(&bytes[..len]).is_err());
    }

    /// What is signed is what is read back: the no_std verifier returns exactly the
    /// claims the envelope was assembled with.
    #[test]
    fn signed_claims_round_trip(
        sequence in any::<u64>(),
        security_version in any::<u64>(),
        size in any::<u64>(),
        vendor in any::<[u8; 16]>(),
        class in any::<[u8; 16]>(),
        digest in any::<[u8; 32]>(),
    ) {
        let mut parts = Parts { shared_params: vec![
            (V::U(1), V::B(vendor.to_vec())),
            (V::U(2), V::B(class.to_vec())),
            (V::U(3), wrap(&V::A(vec![V::N(-16), V::B(digest.to_vec())]))),
            (V::U(14), V::U(size)),
            (V::N(-256), V::U(security_version)),
        ], ..Parts::default() };
        let mut m = parts.manifest();
        if let V::M(entries) = &mut m {
            entries[1].1 = V::U(sequence);
        }
        parts.manifest = Some(m);
        let bytes = parts.build();
        let env = Envelope::decode(&bytes, &Policy::default()).unwrap();
        let auth = env.authenticate(&[public_key()], &Ed25519Verifier, &Policy::default()).unwrap();
        let claims = auth.claims(0, None).unwrap();
        prop_assert_eq!(auth.manifest.sequence_number, sequence);
        prop_assert_eq!(claims.security_version, Some(security_version));
        prop_assert_eq!(claims.image_size, Some(size));
        prop_assert_eq!(claims.vendor_id, Some(&vendor[..]));
        prop_assert_eq!(claims.class_id, Some(&class[..]));
        prop_assert_eq!(claims.image_digest.unwrap().bytes, &digest[..]);
    }
}
