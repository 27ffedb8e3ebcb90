//! What both fuzz targets do with an envelope: decode it under each policy, walk every
//! accessor, authenticate it with the RFC 8032 TEST 1 key, and re-verify independently
//! whatever rota accepts.
//!
//! Properties checked (a failed `assert!` is a crash to libFuzzer):
//! - nothing panics, for any input;
//! - a decoded envelope's authentication wrapper parses (decode promises it);
//! - the command sequences `Manifest::decode` validated iterate without errors, and every
//!   `set-component-index` in them selects existing components (validate promises it);
//! - an authenticated manifest is the manifest `manifest_unauthenticated` shows;
//! - **rota never accepts what it then fails to re-verify**: for an accepted envelope,
//!   (a) SHA-256 over `Envelope::manifest_bytes()` equals the wrapper's SUIT_Digest, as
//!   read by ciborium, and those bytes are the envelope's key-3 bstr, and (b) one of the
//!   wrapper's COSE_Sign1 blocks, parsed by coset, has an algorithm the policy allows, a
//!   detached payload, and a signature that ed25519-dalek's `verify_strict` accepts over
//!   coset's `tbs_detached_data` with the TEST 1 public key.

use core::hint::black_box;

use coset::cbor::value::Value;
use coset::{Algorithm, TaggedCborSerializable as _, iana};
use rota_manifest::{
    Command, CommandSequence, Ed25519Verifier, Envelope, Manifest, Policy, PublicKey, Severable,
};
use sha2::{Digest as _, Sha256};

/// RFC 8032 §7.1 TEST 1 public key: the only anchor (a published test key).
pub const TEST1_PUBLIC: [u8; 32] = [
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];

/// The bootloader's policy and the most permissive one.
pub const POLICIES: [Policy; 2] = [
    Policy {
        allow_eddsa_8: false,
        allow_untagged_envelope: false,
    },
    Policy {
        allow_eddsa_8: true,
        allow_untagged_envelope: true,
    },
];

/// How deep the walk follows try-each / run-sequence in sequences rota did not
/// validate (severed ones, before authentication): bounds the harness's own stack.
const MAX_WALK_DEPTH: usize = 16;

/// Decodes `data` under every policy and exercises whatever decodes.
pub fn exercise(data: &[u8]) {
    for policy in &POLICIES {
        if let Ok(envelope) = Envelope::decode(data, policy) {
            exercise_envelope(data, &envelope, policy);
        }
    }
}

fn exercise_envelope(data: &[u8], envelope: &Envelope<'_>, policy: &Policy) {
    assert_eq!(envelope.bytes(), data);
    assert!(is_within(envelope.manifest_bytes(), data));
    for key in envelope.member_keys() {
        black_box(key);
    }
    for payload in envelope.integrated_payloads() {
        black_box(payload);
    }
    let (digest_item, digest, _) = envelope
        .authentication_wrapper()
        .expect("decode checked the authentication wrapper");
    black_box(digest);
    let signatures = envelope
        .signatures()
        .expect("decode checked the authentication wrapper");
    for cose in signatures.flatten() {
        black_box(cose);
        let mut buf = [0u8; 512];
        let _ = black_box(cose.to_be_signed(digest_item.content, &[], &mut buf));
        // Too small a buffer must be an error, not a panic.
        let mut small = [0u8; 16];
        let _ = black_box(cose.to_be_signed(digest_item.content, &[], &mut small));
    }

    let unauthenticated = envelope.manifest_unauthenticated();
    if let Ok(manifest) = &unauthenticated {
        exercise_manifest(envelope, manifest);
    }

    let other_ed25519 = [0x3d; 32];
    let p256 = {
        let mut k = [0u8; 65];
        k[0] = 4;
        k
    };
    let anchor_sets: [&[PublicKey]; 3] = [
        &[PublicKey::Ed25519(TEST1_PUBLIC)],
        &[PublicKey::P256(p256), PublicKey::Ed25519(TEST1_PUBLIC)],
        &[
            PublicKey::Ed25519(other_ed25519),
            PublicKey::Ed25519(TEST1_PUBLIC),
        ],
    ];
    for anchors in anchor_sets {
        let Ok(authenticated) = envelope.authenticate(anchors, &Ed25519Verifier, policy) else {
            continue;
        };
        assert_eq!(
            anchors[authenticated.signer],
            PublicKey::Ed25519(TEST1_PUBLIC)
        );
        assert!(policy.allow_eddsa_8 || authenticated.algorithm.cose_id() == -19);
        assert_eq!(Ok(authenticated.manifest), unauthenticated);
        reverify(data, envelope, policy);
        trace_acceptance();
        let count = authenticated.manifest.common.component_count();
        for component in 0..=count {
            for slot in [None, Some(0), Some(1)] {
                let _ = black_box(authenticated.claims(component, slot));
            }
        }
    }
}

fn exercise_manifest<'a>(envelope: &Envelope<'a>, manifest: &Manifest<'a>) {
    for key in manifest.member_keys() {
        black_box(key);
    }
    let count = manifest.common.component_count();
    // suit-components may be absent (count 0); when present it lists 1 to 32.
    assert!(count <= 32);
    let mut listed = 0;
    for component in manifest.common.components() {
        listed += 1;
        for segment in component.segments() {
            black_box(segment);
        }
    }
    assert_eq!(listed, count);
    black_box(manifest.sequence_number);
    black_box(manifest.reference_uri);

    // Sequences that Manifest::decode validated: they must walk without an error.
    let validated = [
        manifest.common.shared_sequence,
        manifest.validate,
        manifest.load,
        manifest.invoke,
        inline(envelope, manifest, 16),
        inline(envelope, manifest, 20),
    ];
    for sequence in validated.into_iter().flatten() {
        walk(&sequence, count, 0, true);
    }
    // Severable members as the envelope resolves them (a severed one is not checked
    // against its digest before authentication, so it may be anything).
    for key in [16, 20, 23] {
        if let Some(sequence) = envelope.sequence(manifest, key) {
            walk(&sequence, count, 0, false);
        }
    }
    for key in [-1, 0, 1, 4, 9, 16, 20, 23, 24, 99, i64::MIN, i64::MAX] {
        black_box(manifest.severable(key));
    }
    for component in 0..=count {
        for slot in [None, Some(0), Some(1)] {
            let _ = black_box(envelope.claims(manifest, component, slot));
        }
    }
}

/// The severable sequence `key` when the manifest holds it inline (so validated it).
fn inline<'a>(
    envelope: &Envelope<'a>,
    manifest: &Manifest<'a>,
    key: i64,
) -> Option<CommandSequence<'a>> {
    match manifest.severable(key)? {
        Severable::Inline(_) => envelope.sequence(manifest, key),
        Severable::Severed(_) => None,
    }
}

/// Iterates every command, parameter and alternative of `sequence`, recursively.
fn walk(sequence: &CommandSequence<'_>, components: usize, depth: usize, validated: bool) {
    if depth > MAX_WALK_DEPTH {
        return;
    }
    black_box(sequence.encoded());
    for command in sequence.iter() {
        let command = match command {
            Ok(c) => c,
            Err(e) => {
                assert!(!validated, "a validated sequence failed to iterate: {e:?}");
                return;
            }
        };
        black_box(command.code());
        match command {
            Command::SetComponentIndex(arg) => {
                let mask = arg.mask(components, 0);
                assert!(
                    !validated || mask.is_ok(),
                    "validated index {arg:?}: {mask:?}"
                );
            }
            Command::OverrideParameters(params) => match params.iter() {
                Ok(params) => {
                    for p in params {
                        assert!(!validated || p.is_ok(), "validated parameter: {p:?}");
                        black_box(p.ok());
                    }
                }
                Err(e) => assert!(!validated, "validated parameters: {e:?}"),
            },
            Command::TryEach(alternatives) => match alternatives.iter() {
                Ok(alternatives) => {
                    for alternative in alternatives {
                        match alternative {
                            Ok(Some(seq)) => walk(&seq, components, depth + 1, validated),
                            Ok(None) => {}
                            Err(e) => assert!(!validated, "validated try-each: {e:?}"),
                        }
                    }
                }
                Err(e) => assert!(!validated, "validated try-each: {e:?}"),
            },
            Command::RunSequence(seq) => walk(&seq, components, depth + 1, validated),
            other => {
                black_box(other);
            }
        }
    }
}

/// With `ROTA_FUZZ_TRACE` set, reports the count of re-verified acceptances at each
/// power of two, to confirm that the fuzzer reaches (and mutates) accepted envelopes.
fn trace_acceptance() {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static TRACE: OnceLock<bool> = OnceLock::new();
    static ACCEPTED: AtomicU64 = AtomicU64::new(0);
    if *TRACE.get_or_init(|| std::env::var_os("ROTA_FUZZ_TRACE").is_some()) {
        let n = ACCEPTED.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            eprintln!("rota-fuzz: {n} acceptances re-verified");
        }
    }
}

fn is_within(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

fn decode_value(bytes: &[u8]) -> Value {
    coset::cbor::de::from_reader(bytes)
        .unwrap_or_else(|e| panic!("rota accepted CBOR that ciborium cannot read: {e:?}"))
}

fn member(map: &[(Value, Value)], key: i128) -> &Value {
    map.iter()
        .find(|(k, _)| k.as_integer().is_some_and(|i| i128::from(i) == key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("accepted envelope without member {key}"))
}

/// Re-verifies an envelope rota accepted, without rota's parser or verifier.
fn reverify(data: &[u8], envelope: &Envelope<'_>, policy: &Policy) {
    let top = match decode_value(data) {
        Value::Tag(107, inner) => *inner,
        untagged => {
            assert!(
                policy.allow_untagged_envelope,
                "accepted an untagged envelope"
            );
            untagged
        }
    };
    let Value::Map(map) = top else {
        panic!("accepted an envelope that is not a map")
    };
    let Value::Bytes(wrapper) = member(&map, 2) else {
        panic!("accepted an authentication wrapper that is not a bstr")
    };
    let Value::Bytes(manifest) = member(&map, 3) else {
        panic!("accepted a manifest that is not a bstr")
    };

    // (a) The manifest digest, over the bstr header included (§8.3).
    let manifest_bstr = envelope.manifest_bytes();
    assert!(
        manifest_bstr.ends_with(manifest),
        "manifest_bytes is not key 3's bstr"
    );
    assert_eq!(
        decode_value(manifest_bstr),
        Value::Bytes(manifest.clone()),
        "manifest_bytes is not exactly key 3's bstr"
    );
    let Value::Array(items) = decode_value(wrapper) else {
        panic!("accepted an authentication wrapper that is not an array")
    };
    let Some(Value::Bytes(suit_digest)) = items.first() else {
        panic!("accepted a wrapper without a digest bstr")
    };
    let Value::Array(digest) = decode_value(suit_digest) else {
        panic!("accepted a SUIT_Digest that is not an array")
    };
    assert_eq!(
        digest.first().and_then(Value::as_integer).map(i128::from),
        Some(-16),
        "accepted a manifest digest that is not SHA-256"
    );
    let Some(Value::Bytes(expected)) = digest.get(1) else {
        panic!("accepted a SUIT_Digest without digest bytes")
    };
    assert_eq!(
        Sha256::digest(manifest_bstr).as_slice(),
        expected.as_slice(),
        "accepted a manifest whose SHA-256 does not match the wrapper's digest"
    );

    // (b) One block verifies, by coset's reading of COSE and dalek's verify_strict.
    let key = ed25519_dalek::VerifyingKey::from_bytes(&TEST1_PUBLIC).expect("TEST 1 key");
    let verifies = items[1..].iter().any(|item| {
        let Value::Bytes(block) = item else {
            return false;
        };
        let Ok(sign1) = coset::CoseSign1::from_tagged_slice(block) else {
            return false;
        };
        let alg_ok = match &sign1.protected.header.alg {
            Some(Algorithm::Assigned(iana::Algorithm::Ed25519)) => true,
            Some(Algorithm::Assigned(iana::Algorithm::EdDSA)) => policy.allow_eddsa_8,
            _ => false,
        };
        let Ok(signature) = ed25519_dalek::Signature::from_slice(&sign1.signature) else {
            return false;
        };
        alg_ok
            && sign1.payload.is_none()
            && key
                .verify_strict(&sign1.tbs_detached_data(suit_digest, b""), &signature)
                .is_ok()
    });
    assert!(
        verifies,
        "rota accepted an envelope no COSE_Sign1 of which coset + verify_strict accepts"
    );
}
