//! Conformance against the examples of draft-ietf-suit-manifest-37 (Appendix "Examples"),
//! as copied to `shared/vectors/suit-manifest-draft37/` with a machine-checked
//! `expected.json` (see that directory's README).
//!
//! What is asserted, per the README:
//! - every `signed` envelope (and the severed example 2) decodes and authenticates with the
//!   draft's P-256 key (ES256, detached payload = the encoded SUIT_Digest);
//! - the SUIT_Digest covers the manifest bstr *including its CBOR header*;
//! - sequence numbers, components, member keys and the claims the shared / install /
//!   payload-fetch sequences make match `expected.json` and the README;
//! - every `unsigned` envelope (digest only, no COSE block) is refused as unauthenticated;
//! - a processor without ES256 refuses the signed ones as "unsupported algorithm",
//!   not as a parse error;
//! - sequence numbers 0..5 are in order, and a device that accepted N refuses < N.
#![cfg(feature = "std")] // P-256 verification (HostVerifier) needs std

use std::collections::BTreeSet;

use p256::elliptic_curve::sec1::ToSec1Point;
use p256::pkcs8::DecodePublicKey;
use rota_manifest::claims::ComponentClaims;
use rota_manifest::{
    Authenticated, Ed25519Verifier, Envelope, Error, HostVerifier, Key, Policy, PublicKey,
    Severable, SignatureAlgorithm,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

/// Common parameters of every example (README §1).
const VENDOR_ID: &str = "fa6b4a53d5ad5fdfbe9de663e4d41ffe";
const CLASS_ID: &str = "1492af1425695e48bf429b2d51f2ab45";
const IMAGE_DIGEST: &str = "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210";
const IMAGE_SIZE: u64 = 34768;
/// The second image (ex 3 slot 1, ex 4 component 2, ex 5 component 1).
const SECOND_IMAGE_DIGEST: &str =
    "0123456789abcdeffedcba987654321000112233445566778899aabbccddeeff";
const SECOND_IMAGE_SIZE: u64 = 76834;
/// COSE algorithm id of SHA-256 (RFC 9054).
const SHA256_ALG: i64 = -16;

fn dir() -> String {
    format!("{VECTORS}/suit-manifest-draft37")
}

fn read(name: &str) -> Vec<u8> {
    let path = format!("{}/{name}", dir());
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn expected() -> Value {
    let path = format!("{}/expected.json", dir());
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The draft's P-256 verification key, as rota holds it (uncompressed SEC1).
fn p256_anchor() -> PublicKey {
    let pem = std::fs::read_to_string(format!("{}/example_public_key_p256.pem", dir())).unwrap();
    let key = p256::PublicKey::from_public_key_pem(&pem).expect("P-256 SPKI PEM");
    let sec1 = key.as_affine().to_sec1_point(false);
    PublicKey::P256(
        sec1.as_bytes()
            .try_into()
            .expect("65-byte uncompressed point"),
    )
}

fn decode(bytes: &[u8]) -> Envelope<'_> {
    Envelope::decode(bytes, &Policy::default()).expect("the envelope decodes")
}

fn authenticate<'a>(envelope: &Envelope<'a>) -> Authenticated<'a> {
    envelope
        .authenticate(&[p256_anchor()], &HostVerifier, &Policy::default())
        .expect("the envelope authenticates with the draft's P-256 key")
}

/// A key as `expected.json` spells it: `2` for integers, `"#tc"` for text.
fn key_str(key: Key<'_>) -> String {
    match key {
        Key::Int(i) => i.to_string(),
        Key::Text(t) => Value::String(t.to_owned()).to_string(),
        other => panic!("unexpected key {other:?}"),
    }
}

fn key_set<'a>(keys: impl Iterator<Item = Key<'a>>) -> BTreeSet<String> {
    keys.map(key_str).collect()
}

fn json_key_set(v: &Value) -> BTreeSet<String> {
    v.as_array().unwrap().iter().map(Value::to_string).collect()
}

fn components(envelope: &Envelope<'_>) -> Vec<Vec<String>> {
    let manifest = envelope.manifest_unauthenticated().unwrap();
    manifest
        .common
        .components()
        .map(|id| id.segments().map(hex::encode).collect())
        .collect()
}

fn json_components(v: &Value) -> Vec<Vec<String>> {
    serde_json::from_value(v.clone()).unwrap()
}

fn digest_hex(claims: &ComponentClaims<'_>) -> Option<String> {
    claims.image_digest.map(|d| {
        assert_eq!(d.alg, SHA256_ALG, "image digests are SHA-256");
        hex::encode(d.bytes)
    })
}

/// Checks the README's common parameters for component 0 (vendor, class, image digest, size).
fn assert_component0_common(claims: &ComponentClaims<'_>, what: &str) {
    assert_eq!(
        claims.vendor_id.map(hex::encode).as_deref(),
        Some(VENDOR_ID),
        "{what}"
    );
    assert_eq!(
        claims.class_id.map(hex::encode).as_deref(),
        Some(CLASS_ID),
        "{what}"
    );
    assert_eq!(digest_hex(claims).as_deref(), Some(IMAGE_DIGEST), "{what}");
    assert_eq!(claims.image_size, Some(IMAGE_SIZE), "{what}");
}

/// Everything `expected.json` says about one example, checked on a decoded envelope.
fn assert_matches_expected(n: usize, envelope: &Envelope<'_>, exp: &Value, severed: bool) {
    let what = format!("example {n}{}", if severed { " (severed)" } else { "" });

    // §8.3: the digest covers the manifest bstr with its header, not the inner map.
    let manifest_bytes = envelope.manifest_bytes();
    let digest = hex::encode(Sha256::digest(manifest_bytes));
    assert_eq!(digest, exp["manifest_digest"].as_str().unwrap(), "{what}");
    let inner_digest = hex::encode(Sha256::digest(&manifest_bytes[2..]));
    assert_ne!(
        inner_digest, digest,
        "{what}: hashing only the inner map differs"
    );
    let (_, wrapper_digest, _) = envelope.authentication_wrapper().unwrap();
    assert_eq!(
        wrapper_digest.alg,
        exp["digest_alg"].as_i64().unwrap(),
        "{what}"
    );
    assert_eq!(hex::encode(wrapper_digest.bytes), digest, "{what}");

    let manifest = envelope.manifest_unauthenticated().unwrap();
    assert_eq!(
        manifest.sequence_number,
        exp["sequence_number"].as_u64().unwrap(),
        "{what}"
    );
    // `Manifest::decode` refuses every version but 1 (§8.4.1), so decoding is the check;
    // the member itself must be present.
    assert_eq!(exp["manifest_version"], 1, "{what}");
    assert!(manifest.member_keys().any(|k| k == Key::Int(1)), "{what}");
    assert_eq!(
        components(envelope),
        json_components(&exp["components"]),
        "{what}"
    );
    assert_eq!(
        key_set(manifest.member_keys()),
        json_key_set(&exp["manifest_keys"]),
        "{what}: manifest keys"
    );
    let mut envelope_keys = json_key_set(&exp["envelope_keys"]);
    if severed {
        // The severed variant drops the severable elements (20, 23) from the envelope.
        envelope_keys.retain(|k| k != "20" && k != "23");
    }
    assert_eq!(
        key_set(envelope.member_keys()),
        envelope_keys,
        "{what}: envelope keys"
    );
    if let Some(uri) = exp.get("reference-uri") {
        assert_eq!(manifest.reference_uri, uri.as_str(), "{what}");
    }
    // Severed members: the manifest holds their digests (over the bstr with its header).
    for (key, member) in [(20, "install"), (23, "text")] {
        let Some(severed_digest) = exp[member].get("severed_digest") else {
            continue;
        };
        let Some(Severable::Severed(d)) = manifest.severable(key) else {
            panic!("{what}: {member} should be severed");
        };
        assert_eq!(d.alg, severed_digest[0].as_i64().unwrap(), "{what}");
        assert_eq!(
            hex::encode(d.bytes),
            severed_digest[1].as_str().unwrap(),
            "{what}"
        );
    }
}

fn example_ids() -> impl Iterator<Item = usize> {
    0..=5
}

#[test]
fn draft37_expected_json_covers_examples_0_to_5() {
    let exp = expected();
    let keys: BTreeSet<_> = exp.as_object().unwrap().keys().cloned().collect();
    let want: BTreeSet<_> = example_ids().map(|n| n.to_string()).collect();
    assert_eq!(keys, want);
}

#[test]
fn draft37_hex_files_match_the_binary_envelopes() {
    let mut names: Vec<String> = example_ids()
        .flat_map(|n| [format!("example{n}.signed"), format!("example{n}.unsigned")])
        .filter(|name| name != "example2.unsigned")
        .collect();
    names.push("example2.severed-signed".into());
    names.push("example2.severed-unsigned".into());
    for name in names {
        let text = String::from_utf8(read(&format!("{name}.hex"))).unwrap();
        let hex: String = text.split_whitespace().collect();
        assert_eq!(
            hex::decode(hex).unwrap(),
            read(&format!("{name}.suit")),
            "{name}"
        );
    }
}

#[test]
fn draft37_signed_examples_verify_with_p256_key() {
    let exp = expected();
    for n in example_ids() {
        let bytes = read(&format!("example{n}.signed.suit"));
        let e = &exp[n.to_string()];
        assert_eq!(
            bytes.len() as u64,
            e["signed_len"].as_u64().unwrap(),
            "example {n}"
        );
        let envelope = decode(&bytes);
        assert_matches_expected(n, &envelope, e, false);

        let auth = authenticate(&envelope);
        // All examples: protected {1: -7}, i.e. ES256 on the P-256 key.
        assert_eq!(auth.algorithm, SignatureAlgorithm::Es256, "example {n}");
        assert_eq!(auth.signer, 0, "example {n}");
        assert_eq!(
            auth.manifest.sequence_number,
            e["sequence_number"].as_u64().unwrap()
        );
        let cose = envelope.signatures().unwrap().next().unwrap().unwrap();
        assert_eq!(
            hex::encode(cose.protected),
            e["cose_protected_hex"].as_str().unwrap()
        );
        assert_eq!(cose.payload, None, "example {n}: the payload is detached");
        assert_eq!(cose.kid, None, "example {n}");
    }
}

#[test]
fn draft37_example2_severed_signed_verifies_with_the_same_signature() {
    let exp = expected();
    let full = read("example2.signed.suit");
    let severed = read("example2.severed-signed.suit");
    let blocks = exp["2"]["blocks"].as_array().unwrap();
    // "with COSE authentication object but without Severable Elements: 333"
    assert_eq!(severed.len() as u64, blocks[1][1].as_u64().unwrap());

    let full_env = decode(&full);
    let severed_env = decode(&severed);
    assert_matches_expected(2, &severed_env, &exp["2"], true);
    assert_eq!(full_env.manifest_bytes(), severed_env.manifest_bytes());
    fn signature<'a>(e: &Envelope<'a>) -> &'a [u8] {
        e.signatures().unwrap().next().unwrap().unwrap().signature
    }
    assert_eq!(signature(&full_env), signature(&severed_env));

    let auth = authenticate(&severed_env);
    assert_eq!(auth.algorithm, SignatureAlgorithm::Es256);
    // The install sequence (which sets the URI) was severed and is not in the envelope.
    let claims = auth.claims(0, None).unwrap();
    assert_component0_common(&claims, "example 2 severed");
    assert_eq!(claims.uri, None);
}

#[test]
fn draft37_severable_members_are_digested_with_their_bstr_header() {
    let full = read("example2.signed.suit");
    let envelope = decode(&full);
    let manifest = authenticate(&envelope).manifest;
    // Authentication checked the severed install (20) and text (23) against their digests;
    // check the rule explicitly on the install member too.
    let Some(Severable::Severed(d)) = manifest.severable(20) else {
        panic!("install is severed");
    };
    let install = envelope
        .sequence(&manifest, 20)
        .expect("install travels in the envelope");
    let with_header = install.encoded();
    // The bstr header: major type 2 with a 1-, 2- or 3-byte length encoding.
    let header_len = match with_header[0] {
        0x40..=0x57 => 1,
        0x58 => 2,
        0x59 => 3,
        other => panic!("unexpected bstr header {other:#x}"),
    };
    let content = &with_header[header_len..];
    assert_eq!(Sha256::digest(with_header).as_slice(), d.bytes);
    assert_ne!(Sha256::digest(content).as_slice(), d.bytes);
}

#[test]
fn draft37_signature_covers_the_encoded_suit_digest_not_a_bstr_wrapping_of_it() {
    let exp = expected();
    let anchor = [p256_anchor()];
    for n in example_ids() {
        let e = &exp[n.to_string()];
        assert_eq!(e["es256_valid_payload_digest_bstr"], true);
        assert_eq!(e["es256_valid_payload_digest_bstr_wrapped"], false);
        let bytes = read(&format!("example{n}.signed.suit"));
        let envelope = decode(&bytes);
        let (digest_item, _, _) = envelope.authentication_wrapper().unwrap();
        let cose = envelope.signatures().unwrap().next().unwrap().unwrap();
        // payload = `82 2f 58 20 …`, the SUIT_Digest as encoded.
        assert_eq!(&digest_item.content[..4], &[0x82, 0x2f, 0x58, 0x20]);
        let ok = cose.verify(
            SignatureAlgorithm::Es256,
            Some(digest_item.content),
            &[],
            &anchor,
            &HostVerifier,
        );
        assert_eq!(ok, Ok(0), "example {n}");
        let wrapped = cose.verify(
            SignatureAlgorithm::Es256,
            Some(digest_item.encoded),
            &[],
            &anchor,
            &HostVerifier,
        );
        assert_eq!(wrapped, Err(Error::BadSignature), "example {n}");
    }
}

#[test]
fn unsigned_envelopes_are_rejected_as_unauthenticated() {
    let exp = expected();
    let mut names: Vec<(usize, String)> = example_ids()
        .filter(|&n| n != 2)
        .map(|n| (n, format!("example{n}.unsigned.suit")))
        .collect();
    names.push((2, "example2.severed-unsigned.suit".into()));
    for (n, name) in names {
        let bytes = read(&name);
        let blocks = exp[n.to_string()]["blocks"].as_array().unwrap();
        // "Total size of Envelope without COSE authentication object" (first block).
        assert_eq!(bytes.len() as u64, blocks[0][1].as_u64().unwrap(), "{name}");
        // The unsigned envelope is well formed and carries the same manifest …
        let envelope = decode(&bytes);
        assert_matches_expected(n, &envelope, &exp[n.to_string()], n == 2);
        assert_eq!(envelope.signatures().unwrap().count(), 0, "{name}");
        // … but a processor that requires authentication refuses it (§8.3).
        for verifier_result in [
            envelope.authenticate(&[p256_anchor()], &HostVerifier, &Policy::default()),
            envelope.authenticate(&[p256_anchor()], &Ed25519Verifier, &Policy::default()),
            envelope.authenticate(&[], &HostVerifier, &Policy::default()),
        ] {
            assert_eq!(
                verifier_result.unwrap_err(),
                Error::Unauthenticated,
                "{name}"
            );
        }
    }
}

#[test]
fn es256_examples_are_rejected_as_unsupported_algorithm_without_p256_support() {
    for n in example_ids() {
        let bytes = read(&format!("example{n}.signed.suit"));
        // Not a parse error: the envelope decodes.
        let envelope = decode(&bytes);
        let err = envelope
            .authenticate(&[p256_anchor()], &Ed25519Verifier, &Policy::default())
            .unwrap_err();
        assert_eq!(err, Error::UnsupportedAlgorithm { alg: -7 }, "example {n}");
    }
    let severed = read("example2.severed-signed.suit");
    let err = decode(&severed)
        .authenticate(&[p256_anchor()], &Ed25519Verifier, &Policy::default())
        .unwrap_err();
    assert_eq!(err, Error::UnsupportedAlgorithm { alg: -7 });
}

/// An Ed25519-only device has Ed25519 anchors, not the P-256 key. It refuses the ES256
/// examples too; since no anchor can verify ES256 it reports that no trusted key matches
/// (the verifier is never consulted), still not a parse error.
#[test]
fn es256_examples_are_rejected_by_an_ed25519_only_trust_store() {
    // RFC 8032 §7.1 TEST 1 public key (test key only).
    let ed25519 = PublicKey::Ed25519(
        hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
            .unwrap()
            .try_into()
            .unwrap(),
    );
    for n in example_ids() {
        let bytes = read(&format!("example{n}.signed.suit"));
        let envelope = decode(&bytes);
        let err = envelope
            .authenticate(&[ed25519], &Ed25519Verifier, &Policy::default())
            .unwrap_err();
        assert_eq!(err, Error::NoTrustedKey, "example {n}");
    }
}

#[test]
fn draft37_component_claims_match_the_readme() {
    let uri = |s: &str| Some(format!("http://example.com/{s}"));
    for n in example_ids() {
        let bytes = read(&format!("example{n}.signed.suit"));
        let envelope = decode(&bytes);
        let auth = authenticate(&envelope);
        let c0 = auth.claims(0, None).unwrap();
        assert_component0_common(&c0, &format!("example {n} component 0"));
        let want_uri = match n {
            0 => None,
            1 => uri("file.bin"),
            2 => uri("very/long/path/to/file/file.bin"),
            3 => uri("file1.bin"), // slot 0, the first try-each alternative
            4 => None,             // component 0 is installed by copy from [02]
            5 => uri("file1.bin"),
            _ => unreachable!(),
        };
        assert_eq!(c0.uri.map(str::to_owned), want_uri, "example {n}");
        assert_eq!(
            c0.security_version, None,
            "example {n}: not a rota manifest"
        );
    }
}

#[test]
fn draft37_example3_ab_slots_claim_their_own_image() {
    let bytes = read("example3.signed.suit");
    let envelope = decode(&bytes);
    let auth = authenticate(&envelope);

    let slot0 = auth.claims(0, Some(0)).unwrap();
    assert_component0_common(&slot0, "example 3 slot 0");
    assert_eq!(slot0.component_slot, Some(0));
    assert_eq!(slot0.uri, Some("http://example.com/file1.bin"));

    let slot1 = auth.claims(0, Some(1)).unwrap();
    assert_eq!(slot1.vendor_id.map(hex::encode).as_deref(), Some(VENDOR_ID));
    assert_eq!(slot1.class_id.map(hex::encode).as_deref(), Some(CLASS_ID));
    assert_eq!(slot1.component_slot, Some(1));
    assert_eq!(digest_hex(&slot1).as_deref(), Some(SECOND_IMAGE_DIGEST));
    assert_eq!(slot1.image_size, Some(SECOND_IMAGE_SIZE));
    assert_eq!(slot1.uri, Some("http://example.com/file2.bin"));

    // No slot preference: the first alternative of each try-each.
    assert_eq!(auth.claims(0, None).unwrap(), slot0);
    // A slot no alternative offers: the try-each fails, nothing of it is claimed.
    let slot2 = auth.claims(0, Some(2)).unwrap();
    assert_eq!(slot2.image_digest, None);
    assert_eq!(slot2.uri, None);
}

#[test]
fn draft37_example4_components_claim_fetch_install_and_load_images() {
    let bytes = read("example4.signed.suit");
    let envelope = decode(&bytes);
    let auth = authenticate(&envelope);
    let ids = components(&envelope);
    assert_eq!(ids, [["00"], ["02"], ["01"]]);

    // Component 1 ([02], external storage): payload-fetch downloads the image into it.
    let c1 = auth.claims(1, None).unwrap();
    assert_eq!(digest_hex(&c1).as_deref(), Some(IMAGE_DIGEST));
    assert_eq!(c1.uri, Some("http://example.com/file.bin"));
    assert_eq!(c1.vendor_id, None);
    assert_eq!(c1.image_size, None);

    // Component 0 ([00]): install copies [02] into it; shared sequence sets its identity.
    let c0 = auth.claims(0, None).unwrap();
    assert_component0_common(&c0, "example 4 component 0");
    assert_eq!(c0.uri, None);

    // Component 2 ([01], RAM): the *load* sequence copies [00] into it and claims the
    // second image's digest and size.
    let c2 = auth.claims(2, None).unwrap();
    assert_eq!(digest_hex(&c2).as_deref(), Some(SECOND_IMAGE_DIGEST));
    assert_eq!(c2.image_size, Some(SECOND_IMAGE_SIZE));
    assert_eq!(c2.uri, None);
}

#[test]
fn draft37_example5_two_images_claim_their_own_digest_and_uri() {
    let bytes = read("example5.signed.suit");
    let envelope = decode(&bytes);
    let auth = authenticate(&envelope);
    assert_eq!(components(&envelope), [["00"], ["01"]]);

    let c0 = auth.claims(0, None).unwrap();
    assert_component0_common(&c0, "example 5 component 0");
    assert_eq!(c0.uri, Some("http://example.com/file1.bin"));

    let c1 = auth.claims(1, None).unwrap();
    assert_eq!(digest_hex(&c1).as_deref(), Some(SECOND_IMAGE_DIGEST));
    assert_eq!(c1.image_size, Some(SECOND_IMAGE_SIZE));
    assert_eq!(c1.uri, Some("http://example.com/file2.bin"));

    // An index past the listed components is refused, not answered with empty claims.
    assert!(matches!(
        auth.claims(2, None),
        Err(Error::ComponentIndexOutOfRange { index: 2, .. })
    ));
}

/// REQ.SEC.SEQUENCE, modelled as a device would apply it: remember the highest accepted
/// sequence number and refuse any authenticated manifest below it (§8.4.2).
#[derive(Default)]
struct Device {
    accepted: Option<u64>,
}

impl Device {
    fn offer(&mut self, auth: &Authenticated<'_>) -> Result<(), (u64, u64)> {
        let seq = auth.manifest.sequence_number;
        match self.accepted {
            Some(current) if seq < current => Err((seq, current)),
            _ => {
                self.accepted = Some(seq);
                Ok(())
            }
        }
    }
}

#[test]
fn draft37_sequence_numbers_are_ordered_and_rollback_is_refused() {
    let files: Vec<Vec<u8>> = example_ids()
        .map(|n| read(&format!("example{n}.signed.suit")))
        .collect();
    let envelopes: Vec<Envelope<'_>> = files.iter().map(|b| decode(b)).collect();
    let auths: Vec<Authenticated<'_>> = envelopes.iter().map(authenticate).collect();
    let seqs: Vec<u64> = auths.iter().map(|a| a.manifest.sequence_number).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);

    // In order: every example is accepted.
    let mut device = Device::default();
    for auth in &auths {
        device.offer(auth).unwrap();
    }
    // Having accepted N, every example with a lower sequence number is refused,
    // and N itself (a re-install) is not.
    for (n, accepted) in auths.iter().enumerate() {
        for (m, candidate) in auths.iter().enumerate() {
            let mut device = Device::default();
            device.offer(accepted).unwrap();
            let verdict = device.offer(candidate);
            if m < n {
                assert_eq!(verdict, Err((m as u64, n as u64)));
            } else {
                assert_eq!(verdict, Ok(()));
            }
        }
    }
}

#[test]
fn tampered_manifest_is_rejected_by_the_digest_check() {
    let mut bytes = read("example0.signed.suit");
    let envelope = decode(&bytes);
    let manifest_at = envelope.manifest_bytes().as_ptr() as usize - bytes.as_ptr() as usize;
    // Flip the sequence number (the manifest map is `a5 01 01 02 00 …`).
    let seq_at = manifest_at + 2 + 4;
    assert_eq!(bytes[seq_at], 0x00);
    bytes[seq_at] = 0x07;
    let err = decode(&bytes)
        .authenticate(&[p256_anchor()], &HostVerifier, &Policy::default())
        .unwrap_err();
    assert_eq!(err, Error::ManifestDigestMismatch);
}

#[test]
fn tampered_signature_is_rejected_as_bad_signature() {
    let mut bytes = read("example1.signed.suit");
    let sig = decode(&bytes)
        .signatures()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .signature;
    let at = sig.as_ptr() as usize - bytes.as_ptr() as usize;
    bytes[at + 10] ^= 0x01;
    let err = decode(&bytes)
        .authenticate(&[p256_anchor()], &HostVerifier, &Policy::default())
        .unwrap_err();
    assert_eq!(err, Error::BadSignature);
}

#[test]
fn tampered_severed_install_is_rejected_by_its_digest() {
    let mut bytes = read("example2.signed.suit");
    let needle = b"very/long/path";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at] = b'V';
    let err = decode(&bytes)
        .authenticate(&[p256_anchor()], &HostVerifier, &Policy::default())
        .unwrap_err();
    assert_eq!(
        err,
        Error::SeverableMemberDigestMismatch {
            member: "install sequence"
        }
    );
}
