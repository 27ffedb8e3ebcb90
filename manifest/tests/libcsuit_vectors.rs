//! Interoperability with the 22 envelopes of libcsuit's `testfiles/`
//! (`shared/vectors/libcsuit/`, with a machine-checked `expected.json`).
//!
//! Every file listed in `expected.json` is checked, and every `*.suit` file is listed:
//! - tagged envelopes decode under the default [`Policy`]; untagged ones (TEEP carries
//!   envelopes without tag 107) are refused by default and decode only under
//!   `allow_untagged_envelope`;
//! - the envelope keys, manifest digest and (where rota parses the manifest) sequence
//!   number, components and manifest keys match;
//! - every COSE_Sign1 (ESP256 -9, ES256 -7) verifies with the trust anchor;
//! - COSE_Mac0 (tag 17) authentication blocks are refused as unsupported.
#![cfg(feature = "std")] // P-256 verification (HostVerifier) needs std

use std::collections::{BTreeMap, BTreeSet};

use p256::elliptic_curve::sec1::ToSec1Point;
use p256::pkcs8::DecodePublicKey;
use rota_manifest::{
    Ed25519Verifier, Envelope, Error, HostVerifier, Key, Policy, PublicKey, SignatureAlgorithm,
};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

/// The README's count of libcsuit envelopes.
const FILE_COUNT: usize = 22;

const UNTAGGED: Policy = Policy {
    allow_eddsa_8: false,
    allow_untagged_envelope: true,
};

#[derive(Deserialize, Debug)]
struct Expected {
    len: usize,
    tag: Option<u64>,
    envelope_keys: Vec<Value>,
    digest_ok: bool,
    n_auth_blocks: usize,
    auth_blocks: Vec<AuthBlock>,
    manifest_keys: Vec<Value>,
    seq: u64,
    version: u64,
    components: Vec<Vec<String>>,
    common_keys: Vec<i64>,
    same_manifest_as_draft37_example: Option<usize>,
}

#[derive(Deserialize, Debug)]
struct AuthBlock {
    cose_tag: u64,
    protected: BTreeMap<String, i64>,
    es256_verifies_with_trust_anchor: Option<bool>,
}

fn dir() -> String {
    format!("{VECTORS}/libcsuit")
}

fn expected() -> BTreeMap<String, Expected> {
    let path = format!("{}/expected.json", dir());
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn read(name: &str) -> Vec<u8> {
    let path = format!("{}/{name}", dir());
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn trust_anchor() -> PublicKey {
    let pem = std::fs::read_to_string(format!("{}/trust_anchor_secp256r1_pub.pem", dir())).unwrap();
    let key = p256::PublicKey::from_public_key_pem(&pem).expect("P-256 SPKI PEM");
    PublicKey::P256(
        key.as_affine()
            .to_sec1_point(false)
            .as_bytes()
            .try_into()
            .unwrap(),
    )
}

/// A key as `expected.json` spells it: `2` for integers, `"#tc"` for text
/// (text keys are integrated payloads, §7.6).
fn key_str(key: Key<'_>) -> String {
    match key {
        Key::Int(i) => i.to_string(),
        Key::Text(t) => Value::String(t.to_owned()).to_string(),
        other => panic!("unexpected key {other:?}"),
    }
}

fn json_keys(keys: &[Value]) -> BTreeSet<String> {
    keys.iter().map(Value::to_string).collect()
}

/// The policy a file needs to decode at all.
fn policy_for(exp: &Expected) -> Policy {
    match exp.tag {
        Some(107) => Policy::default(),
        None => UNTAGGED,
        Some(other) => panic!("unexpected envelope tag {other}"),
    }
}

/// `suit-dependencies` (SUIT_Common key 1, draft-ietf-suit-trust-domains) is present.
/// rota does not process dependencies; the trust-domains draft requires a processor
/// without dependency support to abort on such a manifest.
fn has_dependencies(exp: &Expected) -> bool {
    exp.common_keys.contains(&1)
}

#[test]
fn libcsuit_every_suit_file_has_an_expected_entry() {
    let expected = expected();
    let files: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".suit"))
        .collect();
    let listed: BTreeSet<String> = expected.keys().cloned().collect();
    assert_eq!(files, listed);
    assert_eq!(files.len(), FILE_COUNT);
    assert_eq!(expected.len(), FILE_COUNT);
}

#[test]
fn libcsuit_envelopes_decode_and_match_expected() {
    let expected = expected();
    let mut checked = 0;
    for (name, exp) in &expected {
        let bytes = read(name);
        assert_eq!(bytes.len(), exp.len, "{name}");
        let envelope = Envelope::decode(&bytes, &policy_for(exp))
            .unwrap_or_else(|e| panic!("{name}: {e} ({e:?})"));

        let keys: BTreeSet<String> = envelope.member_keys().map(key_str).collect();
        assert_eq!(keys, json_keys(&exp.envelope_keys), "{name}: envelope keys");
        let integrated: Vec<&str> = envelope.integrated_payloads().map(|(k, _)| k).collect();
        let text_keys: Vec<&str> = exp.envelope_keys.iter().filter_map(Value::as_str).collect();
        assert_eq!(integrated, text_keys, "{name}: integrated payloads");

        // The SUIT_Digest covers the manifest bstr, header included.
        let (_, digest, _) = envelope.authentication_wrapper().unwrap();
        assert_eq!(digest.alg, -16, "{name}");
        let digest_ok = Sha256::digest(envelope.manifest_bytes()).as_slice() == digest.bytes;
        assert_eq!(digest_ok, exp.digest_ok, "{name}");
        assert_eq!(
            digest.matches(envelope.manifest_bytes()),
            Ok(true),
            "{name}"
        );

        assert_eq!(
            envelope.signatures().unwrap().count(),
            exp.n_auth_blocks,
            "{name}"
        );
        assert_eq!(exp.auth_blocks.len(), exp.n_auth_blocks, "{name}");

        match envelope.manifest_unauthenticated() {
            Ok(manifest) => {
                assert!(
                    !has_dependencies(exp),
                    "{name}: dependencies must be refused"
                );
                assert_eq!(exp.version, 1, "{name}");
                assert_eq!(manifest.sequence_number, exp.seq, "{name}");
                let mkeys: BTreeSet<String> = manifest.member_keys().map(key_str).collect();
                assert_eq!(
                    mkeys,
                    json_keys(&exp.manifest_keys),
                    "{name}: manifest keys"
                );
                let components: Vec<Vec<String>> = manifest
                    .common
                    .components()
                    .map(|id| id.segments().map(hex::encode).collect())
                    .collect();
                assert_eq!(components, exp.components, "{name}");
            }
            Err(e) => {
                // rota does not process dependency manifests (trust domains) and
                // refuses them explicitly, as that draft requires.
                assert!(has_dependencies(exp), "{name}: unexpected {e:?}");
                assert_eq!(e, Error::UnsupportedDependencies, "{name}");
            }
        }
        checked += 1;
    }
    assert_eq!(checked, FILE_COUNT);
}

#[test]
fn libcsuit_untagged_envelopes_are_rejected_unless_policy_allows() {
    let expected = expected();
    let mut untagged = 0;
    for (name, exp) in &expected {
        let bytes = read(name);
        let default = Envelope::decode(&bytes, &Policy::default());
        if exp.tag.is_none() {
            untagged += 1;
            assert_eq!(default.unwrap_err(), Error::UntaggedEnvelope, "{name}");
            Envelope::decode(&bytes, &UNTAGGED).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        } else {
            assert!(default.is_ok(), "{name}: {default:?}");
        }
    }
    // expD, expI, expU (TEEP).
    assert_eq!(untagged, 3);
}

#[test]
fn libcsuit_cose_sign1_signatures_verify_with_the_trust_anchor() {
    let expected = expected();
    let anchors = [trust_anchor()];
    let mut verified = 0;
    for (name, exp) in &expected {
        let bytes = read(name);
        let envelope = Envelope::decode(&bytes, &policy_for(exp)).unwrap();
        let (digest_item, _, _) = envelope.authentication_wrapper().unwrap();
        for (block, exp_block) in envelope.signatures().unwrap().zip(&exp.auth_blocks) {
            if exp_block.cose_tag != 18 {
                continue;
            }
            assert_eq!(
                exp_block.es256_verifies_with_trust_anchor,
                Some(true),
                "{name}"
            );
            let cose = block.unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let alg_id = exp_block.protected["1"];
            assert_eq!(cose.alg, alg_id, "{name}");
            let alg = SignatureAlgorithm::from_cose(alg_id).unwrap();
            assert!(
                matches!(alg, SignatureAlgorithm::Es256 | SignatureAlgorithm::Esp256),
                "{name}"
            );
            assert_eq!(
                cose.verify(alg, Some(digest_item.content), &[], &anchors, &HostVerifier),
                Ok(0),
                "{name}"
            );
            verified += 1;
        }
    }
    // 22 files less the three COSE_Mac0 ones.
    assert_eq!(verified, FILE_COUNT - 3);
}

#[test]
fn libcsuit_signed_envelopes_authenticate_end_to_end() {
    let expected = expected();
    let anchors = [trust_anchor()];
    let mut authenticated = 0;
    for (name, exp) in &expected {
        if exp.auth_blocks.iter().any(|b| b.cose_tag != 18) {
            continue;
        }
        let bytes = read(name);
        let envelope = Envelope::decode(&bytes, &policy_for(exp)).unwrap();
        let result = envelope.authenticate(&anchors, &HostVerifier, &Policy::default());
        if has_dependencies(exp) {
            // Signature and digest verify (see the test above); the manifest is then
            // refused because it relies on dependency processing rota does not implement.
            assert_eq!(result, Err(Error::UnsupportedDependencies), "{name}");
            continue;
        }
        let auth = result.unwrap_or_else(|e| panic!("{name}: {e} ({e:?})"));
        let want = SignatureAlgorithm::from_cose(exp.auth_blocks[0].protected["1"]).unwrap();
        assert_eq!(auth.algorithm, want, "{name}");
        assert_eq!(auth.manifest.sequence_number, exp.seq, "{name}");
        authenticated += 1;
    }
    // 19 COSE_Sign1 files, of which expD, expED, expS2 and expS3 carry dependencies.
    assert_eq!(authenticated, 15);
}

#[test]
fn libcsuit_esp256_signatures_are_rejected_as_unsupported_without_p256() {
    let expected = expected();
    for (name, exp) in &expected {
        let Some(block) = exp.auth_blocks.first().filter(|b| b.cose_tag == 18) else {
            continue;
        };
        let bytes = read(name);
        let envelope = Envelope::decode(&bytes, &policy_for(exp)).unwrap();
        let err = envelope
            .authenticate(&[trust_anchor()], &Ed25519Verifier, &Policy::default())
            .unwrap_err();
        assert_eq!(
            err,
            Error::UnsupportedAlgorithm {
                alg: block.protected["1"]
            },
            "{name}"
        );
    }
}

#[test]
fn libcsuit_cose_mac0_authentication_blocks_are_rejected_as_unsupported() {
    let expected = expected();
    let mut mac0 = BTreeSet::new();
    for (name, exp) in &expected {
        if exp.auth_blocks.iter().all(|b| b.cose_tag != 17) {
            continue;
        }
        mac0.insert(name.as_str());
        assert_eq!(exp.auth_blocks[0].protected["1"], 5, "{name}: HMAC 256/256");
        let bytes = read(name);
        // Well-formed envelopes …
        let envelope = Envelope::decode(&bytes, &policy_for(exp)).unwrap();
        // … whose MAC rota cannot check: refused whatever the verifier and anchors.
        for result in [
            envelope.authenticate(&[trust_anchor()], &HostVerifier, &Policy::default()),
            envelope.authenticate(&[], &Ed25519Verifier, &Policy::default()),
        ] {
            assert_eq!(
                result.unwrap_err(),
                Error::UnsupportedAuthenticationBlock { tag: Some(17) },
                "{name}"
            );
        }
    }
    assert_eq!(
        mac0,
        BTreeSet::from([
            "suit_manifest_expAF.suit",
            "suit_manifest_expAFS.suit",
            "suit_manifest_expAW.suit"
        ])
    );
}

#[test]
fn libcsuit_manifests_are_byte_identical_to_draft37_examples() {
    let expected = expected();
    let mut compared = 0;
    for (name, exp) in &expected {
        let Some(n) = exp.same_manifest_as_draft37_example else {
            continue;
        };
        let ours = read(name);
        let draft = std::fs::read(format!(
            "{VECTORS}/suit-manifest-draft37/example{n}.signed.suit"
        ))
        .unwrap();
        let a = Envelope::decode(&ours, &Policy::default()).unwrap();
        let b = Envelope::decode(&draft, &Policy::default()).unwrap();
        assert_eq!(
            a.manifest_bytes(),
            b.manifest_bytes(),
            "{name} vs example {n}"
        );
        // Same manifest, different signature algorithm: -9 here, -7 in the draft.
        let alg = |e: &Envelope<'_>| e.signatures().unwrap().next().unwrap().unwrap().alg;
        assert_eq!((alg(&a), alg(&b)), (-9, -7), "{name}");
        compared += 1;
    }
    // exp0..exp5 plus exp2A (severed) and exp2B (full).
    assert_eq!(compared, 7);
}
