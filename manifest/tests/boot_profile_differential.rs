//! Differential test of the boot profile against the general path: random mutations of
//! signed envelopes, and of manifests then signed again (so that mutations get past the
//! digest and the signature and reach the manifest readers), from the builder, from the
//! byte-rule assembler and from the draft-37 examples. Whenever the profile accepts,
//! the general path must accept with the same claims (`subset::assert_subset`).
#![cfg(feature = "builder")]

mod assemble;
mod subset;

use std::sync::LazyLock;

use proptest::prelude::*;
use rota_manifest::{
    Ed25519Verifier, Envelope, ImageManifest, Policy, Sign, SoftwareKey, sign_manifest,
};
use subset::assert_subset;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

fn signer() -> SoftwareKey {
    SoftwareKey::from_ed25519_seed(assemble::TEST1_SEED)
}

/// One edit of a byte string; positions wrap around its length.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, byte: u8 },
    Delete { at: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, 1..=255u8).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        at.prop_map(|at| Mutation::Delete { at }),
        at.prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Flip { at, xor } if !bytes.is_empty() => bytes[at % len] ^= xor,
            Mutation::Set { at, byte } if !bytes.is_empty() => bytes[at % len] = byte,
            Mutation::Insert { at, byte } => bytes.insert(at % (bytes.len() + 1), byte),
            Mutation::Delete { at } if !bytes.is_empty() => {
                bytes.remove(at % len);
            }
            Mutation::Truncate { at } => bytes.truncate(at % (bytes.len() + 1)),
            _ => {}
        }
    }
    bytes
}

/// The content of the manifest bstr of an envelope the general path decodes.
fn manifest_of(envelope: &[u8]) -> Vec<u8> {
    let policy = Policy {
        allow_eddsa_8: true,
        allow_untagged_envelope: true,
    };
    let bstr = Envelope::decode(envelope, &policy)
        .unwrap()
        .manifest_bytes();
    minicbor::Decoder::new(bstr).bytes().unwrap().to_vec()
}

/// Builder envelopes: without and with install and text, in the shapes they take.
static BUILDER_ENVELOPES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let base = ImageManifest {
        vendor_id: assemble::VENDOR,
        class_id: assemble::CLASS,
        image_digest: [0x5a; 32],
        image_size: 34_768,
        sequence_number: 7,
        security_version: 3,
        ..ImageManifest::default()
    };
    let variants = [
        base.clone(),
        ImageManifest {
            uri: Some("https://updates.example/fw/7.bin".into()),
            ..base.clone()
        },
        ImageManifest {
            description: Some("rota test release".into()),
            ..base.clone()
        },
        ImageManifest {
            uri: Some("u".into()),
            description: Some("d".into()),
            component: vec![b"fw".to_vec(), vec![1]],
            ..base
        },
    ];
    variants
        .iter()
        .map(|m| m.build_envelope(&[&signer()]).unwrap())
        .collect()
});

/// Every draft-37 example envelope (signed, unsigned, severed): P-256 or unsigned, so
/// never in the profile as they are; their manifests are signed again below.
static DRAFT37_ENVELOPES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let dir = format!("{VECTORS}/suit-manifest-draft37");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "suit"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 12, "draft-37 examples in {dir}");
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
});

static BUILDER_MANIFESTS: LazyLock<Vec<Vec<u8>>> =
    LazyLock::new(|| BUILDER_ENVELOPES.iter().map(|e| manifest_of(e)).collect());

static DRAFT37_MANIFESTS: LazyLock<Vec<Vec<u8>>> =
    LazyLock::new(|| DRAFT37_ENVELOPES.iter().map(|e| manifest_of(e)).collect());

/// The subset check on `bytes`. With `ROTA_TRACE_ACCEPTANCES` set, reports each
/// acceptance, to see that the mutations reach them.
fn check(bytes: &[u8]) {
    let verdict = assert_subset(bytes, &signer().public_key(), &Ed25519Verifier);
    if std::env::var_os("ROTA_TRACE_ACCEPTANCES").is_some() {
        eprintln!(
            "boot profile: {}",
            if verdict.is_ok() {
                "accepted"
            } else {
                "refused"
            }
        );
    }
}

/// Signs `manifest` as the builder does, whatever it holds.
fn signed(manifest: &[u8]) -> Vec<u8> {
    sign_manifest(manifest, &[&signer()]).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn mutated_envelopes(
        which in any::<prop::sample::Index>(),
        draft in any::<bool>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let sources = if draft { &*DRAFT37_ENVELOPES } else { &*BUILDER_ENVELOPES };
        check(&mutate(which.get(sources).clone(), &mutations));
    }

    /// Mostly the builder's manifests, whose mutations the profile may accept.
    #[test]
    fn mutated_manifests_signed_again(
        which in any::<prop::sample::Index>(),
        draft in prop::bool::weighted(0.25),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let sources = if draft { &*DRAFT37_MANIFESTS } else { &*BUILDER_MANIFESTS };
        check(&signed(&mutate(which.get(sources).clone(), &mutations)));
    }

    /// The COSE headers, signed over as mutated (the assembler signs what it sends).
    #[test]
    fn mutated_protected_headers_signed_again(
        mutations in prop::collection::vec(mutation(), 1..3),
        unprotected in prop::sample::select(vec![vec![0xa0], vec![0xa1, 0x04, 0x40], vec![0xa1, 0x01, 0x32]]),
    ) {
        let parts = assemble::Parts::default();
        let parts = assemble::Parts {
            protected: mutate(parts.protected.clone(), &mutations),
            unprotected: assemble::V::Raw(unprotected),
            ..parts
        };
        check(&parts.build());
    }
}

/// Every single-byte change of every builder manifest, signed again: the profile never
/// accepts what the general path does not, and it does accept the changes that only
/// alter a value (an id, a digest byte, a number, a character), so the property is not
/// met vacuously.
#[test]
fn every_single_byte_change_of_a_builder_manifest_signed_again() {
    let mut accepted = 0;
    let mut tried = 0;
    for manifest in BUILDER_MANIFESTS.iter() {
        for at in 0..manifest.len() {
            for xor in [0x01, 0x20, 0x80, 0xff] {
                let mut changed = manifest.clone();
                changed[at] ^= xor;
                let envelope = signed(&changed);
                tried += 1;
                if assert_subset(&envelope, &signer().public_key(), &Ed25519Verifier).is_ok() {
                    accepted += 1;
                }
            }
        }
    }
    // Value bytes (ids, digest, strings, small integers) are a large share of a manifest.
    assert!(
        accepted * 4 > tried,
        "only {accepted} of {tried} changes accepted: the test would be vacuous"
    );
}
