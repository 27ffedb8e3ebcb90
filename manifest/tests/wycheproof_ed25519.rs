//! Wycheproof Ed25519 (C2SP/wycheproof `testvectors_v1/ed25519_test.json`) through
//! [`Ed25519Verifier::verify_raw`], the exact call the bootloader and the agent make.
//!
//! The property: rota's Ed25519 verification is *strict*. Every `valid` vector verifies and
//! every `invalid` one is refused: malleable signatures (`S ≥ L`), non-canonical or
//! small-order encodings of `R` and `A`, truncated signatures and signatures with garbage
//! appended (RFC 8032 §5.1.7, §8.4).

use std::collections::BTreeMap;

use rota_manifest::Ed25519Verifier;
use serde::Deserialize;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

/// The number of tests the file declares (`numberOfTests`) and the README promises.
const EXPECTED_TESTS: usize = 151;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestFile {
    algorithm: String,
    number_of_tests: usize,
    test_groups: Vec<TestGroup>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestGroup {
    #[serde(rename = "type")]
    kind: String,
    public_key: Key,
    tests: Vec<TestCase>,
}

#[derive(Deserialize)]
struct Key {
    curve: String,
    pk: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestCase {
    tc_id: u64,
    comment: String,
    flags: Vec<String>,
    msg: String,
    sig: String,
    result: Verdict,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Valid,
    Invalid,
    /// Not used by this file, but allowed by the schema; treated as a failure to classify.
    Acceptable,
}

fn load() -> TestFile {
    let path = format!("{VECTORS}/wycheproof/ed25519_test.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One disagreement between rota and Wycheproof.
struct Disagreement {
    tc_id: u64,
    flags: Vec<String>,
    comment: String,
    expected: Verdict,
    got: String,
}

#[test]
fn wycheproof_ed25519_verdicts_all_match_the_bootloader_verify_call() {
    let file = load();
    assert_eq!(file.algorithm, "EDDSA");
    assert_eq!(file.number_of_tests, EXPECTED_TESTS);

    let mut total = 0;
    let mut per_verdict: BTreeMap<&'static str, usize> = BTreeMap::new();
    // flag -> (cases, disagreements)
    let mut per_flag: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut disagreements = Vec::new();

    for group in &file.test_groups {
        assert_eq!(group.kind, "EddsaVerify");
        assert_eq!(group.public_key.curve, "edwards25519");
        let pk: [u8; 32] = hex::decode(&group.public_key.pk)
            .expect("hex public key")
            .try_into()
            .expect("32-byte Ed25519 public key");
        for case in &group.tests {
            total += 1;
            let msg = hex::decode(&case.msg).expect("hex msg");
            let sig = hex::decode(&case.sig).expect("hex sig");
            let outcome = Ed25519Verifier::verify_raw(&pk, &msg, &sig);
            let agrees = match case.result {
                Verdict::Valid => outcome.is_ok(),
                Verdict::Invalid => outcome.is_err(),
                Verdict::Acceptable => false,
            };
            *per_verdict
                .entry(match case.result {
                    Verdict::Valid => "valid",
                    Verdict::Invalid => "invalid",
                    Verdict::Acceptable => "acceptable",
                })
                .or_default() += 1;
            for flag in &case.flags {
                let entry = per_flag.entry(flag.clone()).or_default();
                entry.0 += 1;
                entry.1 += usize::from(!agrees);
            }
            if !agrees {
                disagreements.push(Disagreement {
                    tc_id: case.tc_id,
                    flags: case.flags.clone(),
                    comment: case.comment.clone(),
                    expected: case.result,
                    got: format!("{outcome:?}"),
                });
            }
        }
    }

    let report = || {
        let mut s = String::new();
        s += &format!(
            "{total} cases, by verdict {per_verdict:?}\nper flag (cases, disagreements):\n"
        );
        for (flag, (n, bad)) in &per_flag {
            s += &format!("  {flag}: {n} cases, {bad} disagree\n");
        }
        for d in &disagreements {
            s += &format!(
                "  tcId {}: expected {:?}, got {} (flags {:?}; {})\n",
                d.tc_id, d.expected, d.got, d.flags, d.comment
            );
        }
        s
    };
    assert_eq!(total, EXPECTED_TESTS, "{}", report());
    assert_eq!(per_verdict.get("valid"), Some(&88), "{}", report());
    assert_eq!(per_verdict.get("invalid"), Some(&63), "{}", report());
    assert!(disagreements.is_empty(), "{}", report());
}

/// The malleability vectors in particular: `S` replaced by `S + L` verifies under a lax
/// verifier; the bootloader must refuse it so that one signature has one encoding.
#[test]
fn wycheproof_ed25519_malleable_signatures_with_s_at_or_above_the_group_order_are_rejected() {
    let file = load();
    let mut seen = 0;
    for group in &file.test_groups {
        let pk: [u8; 32] = hex::decode(&group.public_key.pk)
            .unwrap()
            .try_into()
            .unwrap();
        for case in group
            .tests
            .iter()
            .filter(|c| c.flags.iter().any(|f| f == "SignatureMalleability"))
        {
            seen += 1;
            assert_eq!(case.result, Verdict::Invalid, "tcId {}", case.tc_id);
            let msg = hex::decode(&case.msg).unwrap();
            let sig = hex::decode(&case.sig).unwrap();
            assert!(
                Ed25519Verifier::verify_raw(&pk, &msg, &sig).is_err(),
                "tcId {} ({}) was accepted",
                case.tc_id,
                case.comment
            );
        }
    }
    assert!(seen > 0, "the file has SignatureMalleability vectors");
}

// ---- Strictness Wycheproof's file does not separate ----
//
// ed25519-dalek's lenient `verify` agrees with every verdict of `ed25519_test.json` too
// (its invalid cases are malleable S, bad lengths and bad R encodings, which both paths
// refuse). What makes `verify_raw` strict beyond that is checked here: small-order keys
// and non-canonical key encodings.

/// The identity point's canonical encoding (y = 1): a point of small order.
fn identity() -> [u8; 32] {
    let mut y = [0u8; 32];
    y[0] = 1;
    y
}

/// A = R = identity, S = 0 satisfies `[S]B = R + [k]A` for *every* message: a universal
/// forgery a lenient verifier accepts. The bootloader's call must refuse it.
#[test]
fn ed25519_small_order_key_universal_forgery_is_rejected() {
    let key = identity();
    let signature = [&identity()[..], &[0u8; 32]].concat();
    for msg in [&b""[..], b"any firmware", b"\x00\xff"] {
        // The lenient check accepts it (so the vector is meaningful) …
        let lenient = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&signature).unwrap();
        use ed25519_dalek::Verifier as _;
        assert!(lenient.verify(msg, &sig).is_ok(), "lenient verify accepts");
        // … the strict one does not.
        assert!(Ed25519Verifier::verify_raw(&key, msg, &signature).is_err());
    }
}

/// A public key whose y coordinate is encoded as `y + p` (≥ p) names the same point as
/// its canonical encoding; RFC 8032 §5.1.3 requires refusing it, so that one key has one
/// key id.
#[test]
fn ed25519_non_canonical_public_key_encoding_is_rejected() {
    use rota_manifest::Error;
    let mut tested = 0;
    for y in 2u8..=18 {
        let mut canonical = [0u8; 32];
        canonical[0] = y;
        let Ok(point) = ed25519_dalek::VerifyingKey::from_bytes(&canonical) else {
            continue; // no curve point with this y
        };
        if point.is_weak() {
            continue;
        }
        // y + p, little-endian: p = 2^255 - 19 = ed ff … ff 7f.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xed + y;
        non_canonical[31] = 0x7f;
        let signature = [0x11u8; 64];
        // The canonical key is usable (the signature is just wrong) …
        assert_eq!(
            Ed25519Verifier::verify_raw(&canonical, b"m", &signature),
            Err(Error::BadSignature),
            "y = {y}"
        );
        // … the second encoding of the same point is refused as a key.
        assert_eq!(
            Ed25519Verifier::verify_raw(&non_canonical, b"m", &signature),
            Err(Error::InvalidPublicKey),
            "y = {y}"
        );
        tested += 1;
    }
    assert!(tested > 0, "some y in 2..=18 is on the curve");
}
