//! COSE_Sign1 (RFC 9052) against the COSE WG examples (`shared/vectors/cose-wg/`,
//! github cose-wg/Examples).
//!
//! - `eddsa-examples/eddsa-sig-01.json`: Ed25519 COSE_Sign1 with alg -8 (EdDSA). The
//!   Sig_structure rota builds must equal `intermediates.ToBeSign_hex`, and the signature
//!   must verify with the RFC 8032 TEST 1 key, under the explicit EdDSA (-8) policy flag.
//! - `sign1-tests/*.json` (ES256): each case's verdict; the one deliberate difference from
//!   the COSE WG verdicts is explained where it is asserted.
//! - Ed448 (`eddsa-02`, `eddsa-sig-02`) and COSE_Sign (`eddsa-01`, `eddsa-02`) are refused.
//!
//! `CoseSign1::decode` takes the crate's internal CBOR reader, which integration tests
//! cannot construct, so each message is placed as the (only) authentication block of a
//! minimal SUIT envelope and decoded through [`Envelope::signatures`], which calls
//! `CoseSign1::decode` on exactly those bytes.
#![cfg(feature = "std")] // P-256 verification (HostVerifier) needs std

use std::path::Path;

use rota_manifest::cose::sig_structure;
use rota_manifest::{
    CoseSign1, Ed25519Verifier, Envelope, Error, HostVerifier, Policy, PublicKey,
    SignatureAlgorithm, Verifier,
};
use serde_json::Value;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

/// RFC 8032 §7.1 TEST 1 public key (test key only).
const RFC8032_TEST1_PUBLIC: &str =
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn load(rel: &str) -> Value {
    let path = format!("{VECTORS}/cose-wg/{rel}");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .unwrap()
}

fn output_cbor(case: &Value) -> Vec<u8> {
    hex::decode(case["output"]["cbor"].as_str().unwrap()).unwrap()
}

fn to_be_signed_hex(case: &Value) -> Vec<u8> {
    hex::decode(case["intermediates"]["ToBeSign_hex"].as_str().unwrap()).unwrap()
}

fn plaintext(case: &Value) -> &[u8] {
    case["input"]["plaintext"].as_str().unwrap().as_bytes()
}

fn external_aad(case: &Value) -> Vec<u8> {
    case["input"]["sign0"]["external"]
        .as_str()
        .map(|h| hex::decode(h).unwrap())
        .unwrap_or_default()
}

/// A CBOR byte string: header (major type 2) and content.
fn bstr(content: &[u8]) -> Vec<u8> {
    let n = content.len();
    let mut out = match n {
        0..=23 => vec![0x40 | n as u8],
        24..=255 => vec![0x58, n as u8],
        256..=65535 => vec![0x59, (n >> 8) as u8, n as u8],
        _ => panic!("too long for a test envelope"),
    };
    out.extend_from_slice(content);
    out
}

/// A minimal tagged SUIT envelope whose one authentication block is `cose`:
/// `107({2: << [<< [-16, h'00…'] >>, << cose >>] >>, 3: << {} >>})`.
/// `Envelope::decode` checks the wrapper's shape but decodes the block only on demand.
fn envelope_around(cose: &[u8]) -> Vec<u8> {
    let digest = [&[0x82, 0x2f, 0x58, 0x20][..], &[0u8; 32]].concat();
    let wrapper = [&[0x82][..], &bstr(&digest), &bstr(cose)].concat();
    [
        &[0xd8, 0x6b, 0xa2, 0x02][..],
        &bstr(&wrapper),
        &[0x03],
        &bstr(&[0xa0]),
    ]
    .concat()
}

/// `CoseSign1::decode` of `cose`, through the public envelope API (see the module docs).
fn decode_cose_sign1(envelope: &[u8]) -> Result<CoseSign1<'_>, Error> {
    let envelope = Envelope::decode(envelope, &Policy::default()).expect("test envelope");
    let mut blocks = envelope.signatures().expect("test envelope wrapper");
    let block = blocks.next().expect("one block");
    assert!(blocks.next().is_none());
    block
}

/// The algorithm rota verifies a COSE alg id as under `policy`, exactly as the envelope's
/// authentication does: -8 (polymorphic EdDSA) only with `allow_eddsa_8`.
fn algorithm(alg: i64, policy: &Policy) -> Result<SignatureAlgorithm, Error> {
    match SignatureAlgorithm::from_cose(alg) {
        Some(SignatureAlgorithm::EdDsa) if !policy.allow_eddsa_8 => None,
        other => other,
    }
    .ok_or(Error::UnsupportedAlgorithm { alg })
}

/// Decodes and verifies a COSE_Sign1 over its attached payload.
fn verify_cose(
    cose_bytes: &[u8],
    external_aad: &[u8],
    anchors: &[PublicKey],
    verifier: &impl Verifier,
    policy: &Policy,
) -> Result<usize, Error> {
    let envelope = envelope_around(cose_bytes);
    let cose = decode_cose_sign1(&envelope)?;
    let alg = algorithm(cose.alg, policy)?;
    cose.verify(alg, None, external_aad, anchors, verifier)
}

fn base64url(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c:#x}"),
        }
    };
    let (mut acc, mut bits, mut out) = (0u32, 0, Vec::new());
    for &c in s.as_bytes().iter().filter(|&&c| c != b'=') {
        acc = (acc << 6) | value(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The ES256 key of a sign1-tests case (`input.sign0.key`, JWK x/y) as rota holds it.
fn p256_key(case: &Value) -> PublicKey {
    let key = &case["input"]["sign0"]["key"];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    let x = base64url(key["x"].as_str().unwrap());
    let y = base64url(key["y"].as_str().unwrap());
    assert_eq!((x.len(), y.len()), (32, 32));
    let sec1: [u8; 65] = [&[0x04][..], &x, &y].concat().try_into().unwrap();
    // A wrong decoding would not land on the curve.
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).expect("a point on P-256");
    PublicKey::P256(sec1)
}

fn ed25519_test1() -> PublicKey {
    PublicKey::Ed25519(
        hex::decode(RFC8032_TEST1_PUBLIC)
            .unwrap()
            .try_into()
            .unwrap(),
    )
}

const EDDSA_8: Policy = Policy {
    allow_eddsa_8: true,
    allow_untagged_envelope: false,
};

// ---- EdDSA examples ----

#[test]
fn cose_wg_eddsa_sig_01_sig_structure_matches_to_be_sign() {
    let case = load("eddsa-examples/eddsa-sig-01.json");
    let envelope = envelope_around(&output_cbor(&case));
    let cose = decode_cose_sign1(&envelope).unwrap();
    assert_eq!(cose.protected, hex::decode("a201270300").unwrap());
    assert_eq!(cose.alg, -8);
    assert_eq!(
        cose.kid,
        Some(&b"11"[..]),
        "kid from the unprotected bucket"
    );
    assert_eq!(cose.payload, Some(plaintext(&case)));
    assert_eq!(cose.signature.len(), 64);

    let mut buf = [0u8; 512];
    let tbs = cose.to_be_signed(plaintext(&case), &[], &mut buf).unwrap();
    assert_eq!(tbs, to_be_signed_hex(&case));
}

#[test]
fn cose_wg_eddsa_sig_01_verifies_with_rfc8032_test1_key_under_the_eddsa_policy_flag() {
    let case = load("eddsa-examples/eddsa-sig-01.json");
    let key = &case["input"]["sign0"]["key"];
    assert_eq!(key["x_hex"].as_str().unwrap(), RFC8032_TEST1_PUBLIC);
    let cose = output_cbor(&case);
    let anchors = [ed25519_test1()];

    assert_eq!(
        verify_cose(&cose, &[], &anchors, &Ed25519Verifier, &EDDSA_8),
        Ok(0)
    );
    assert_eq!(
        verify_cose(&cose, &[], &anchors, &HostVerifier, &EDDSA_8),
        Ok(0)
    );
    // The bootloader's exact call over the Sig_structure.
    let envelope = envelope_around(&cose);
    let decoded = decode_cose_sign1(&envelope).unwrap();
    let key: [u8; 32] = hex::decode(RFC8032_TEST1_PUBLIC)
        .unwrap()
        .try_into()
        .unwrap();
    Ed25519Verifier::verify_raw(&key, &to_be_signed_hex(&case), decoded.signature).unwrap();
}

#[test]
fn cose_wg_eddsa_alg_minus_8_is_rejected_without_the_policy_flag() {
    let case = load("eddsa-examples/eddsa-sig-01.json");
    let err = verify_cose(
        &output_cbor(&case),
        &[],
        &[ed25519_test1()],
        &Ed25519Verifier,
        &Policy::default(),
    )
    .unwrap_err();
    assert_eq!(err, Error::UnsupportedAlgorithm { alg: -8 });
}

#[test]
fn cose_wg_eddsa_sig_01_tampered_payload_fails() {
    let case = load("eddsa-examples/eddsa-sig-01.json");
    let mut cose = output_cbor(&case);
    let at = cose
        .windows(plaintext(&case).len())
        .position(|w| w == plaintext(&case))
        .unwrap();
    cose[at] ^= 0x20;
    let err = verify_cose(&cose, &[], &[ed25519_test1()], &Ed25519Verifier, &EDDSA_8).unwrap_err();
    // kid '11' names none of rota's anchors (rota kids are SHA-256 of the key), so a
    // signature no anchor verifies is reported as an unknown signer.
    assert_eq!(err, Error::NoTrustedKey);
}

/// Ed448 under alg -8: rota's EdDSA is Ed25519 only. By default -8 is refused outright
/// (RFC 9864: a polymorphic id cannot tell Ed25519 from Ed448); even with the -8 flag,
/// the 57-byte Ed448 key cannot be an anchor and the 114-byte signature verifies with no
/// Ed25519 key.
#[test]
fn cose_wg_ed448_sign1_is_rejected_as_unsupported() {
    let case = load("eddsa-examples/eddsa-sig-02.json");
    let key = &case["input"]["sign0"]["key"];
    assert_eq!(key["crv"], "Ed448");
    let x = hex::decode(key["x_hex"].as_str().unwrap()).unwrap();
    assert_eq!(x.len(), 57);
    assert!(
        <[u8; 32]>::try_from(x.as_slice()).is_err(),
        "not an Ed25519 key"
    );

    let cose = output_cbor(&case);
    let envelope = envelope_around(&cose);
    let decoded = decode_cose_sign1(&envelope).unwrap();
    assert_eq!(decoded.alg, -8);
    assert_eq!(decoded.signature.len(), 114);

    let anchors = [ed25519_test1()];
    assert_eq!(
        verify_cose(&cose, &[], &anchors, &HostVerifier, &Policy::default()),
        Err(Error::UnsupportedAlgorithm { alg: -8 })
    );
    assert_eq!(
        verify_cose(&cose, &[], &anchors, &HostVerifier, &EDDSA_8),
        Err(Error::NoTrustedKey)
    );
    let test1: [u8; 32] = hex::decode(RFC8032_TEST1_PUBLIC)
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(
        Ed25519Verifier::verify_raw(&test1, &to_be_signed_hex(&case), decoded.signature),
        Err(Error::BadSignature)
    );
}

/// COSE_Sign (tag 98, one or more signers) is not COSE_Sign1 (tag 18), which is all SUIT
/// §8.3 allows rota to accept.
#[test]
fn cose_wg_cose_sign_multi_signer_is_rejected_as_unsupported_authentication_block() {
    for rel in [
        "eddsa-examples/eddsa-01.json",
        "eddsa-examples/eddsa-02.json",
    ] {
        let case = load(rel);
        let cose = output_cbor(&case);
        assert_eq!(&cose[..2], &[0xd8, 0x62], "{rel}: tag 98");
        let envelope = envelope_around(&cose);
        assert_eq!(
            decode_cose_sign1(&envelope).unwrap_err(),
            Error::UnsupportedAuthenticationBlock { tag: Some(98) },
            "{rel}"
        );
    }
}

// ---- sign1-tests (ES256) ----

fn sign1_case_names() -> Vec<String> {
    let dir = Path::new(VECTORS).join("cose-wg/sign1-tests");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// What rota does with a sign1-tests case.
#[derive(Debug)]
enum Verdict {
    /// Verifies with the case's key (anchor index 0).
    Verifies,
    /// Refused with exactly this error.
    Refused(Error),
    /// Refused by the decoder: `alg` is a text string, and rota knows only integer ids.
    RefusedTextAlg,
}

/// rota's verdict on each sign1-tests case, and why.
fn sign1_verdict(name: &str) -> Verdict {
    use Verdict::*;
    match name {
        // Deliberate divergence from the COSE WG "pass": `alg` is unprotected.
        "sign-pass-01.json" => Refused(Error::AlgorithmInUnprotectedHeader),
        "sign-pass-02.json" => Verifies,
        // Deliberate divergence from the COSE WG "pass": SUIT requires COSE_Sign1_Tagged.
        "sign-pass-03.json" => Refused(Error::UntaggedCose),
        "sign-fail-01.json" => Refused(Error::UnsupportedAuthenticationBlock { tag: Some(998) }),
        // The signature does not verify; kid '11' names no rota anchor (rota kids are
        // SHA-256 of the key), so the failure is reported as an unknown signer.
        "sign-fail-02.json" | "sign-fail-06.json" | "sign-fail-07.json" => {
            Refused(Error::NoTrustedKey)
        }
        "sign-fail-03.json" => Refused(Error::UnsupportedAlgorithm { alg: -999 }),
        "sign-fail-04.json" => RefusedTextAlg,
        other => panic!("unclassified sign1 case {other}"),
    }
}

fn assert_verdict(name: &str, result: Result<usize, Error>) {
    match (sign1_verdict(name), result) {
        (Verdict::Verifies, got) => assert_eq!(got, Ok(0), "{name}"),
        (Verdict::Refused(want), got) => assert_eq!(got, Err(want), "{name}"),
        (Verdict::RefusedTextAlg, Err(Error::InvalidMember { member, .. })) => {
            assert!(member.contains("integer algorithm"), "{name}: {member}");
        }
        (Verdict::RefusedTextAlg, got) => panic!("{name}: {got:?}"),
    }
}

#[test]
fn cose_wg_sign1_tests_fail_cases_are_all_rejected() {
    let names = sign1_case_names();
    assert_eq!(names.len(), 9);
    let mut fail_cases = 0;
    for name in &names {
        let case = load(&format!("sign1-tests/{name}"));
        if case["fail"] != true {
            continue;
        }
        fail_cases += 1;
        let anchors = [p256_key(&case)];
        let result = verify_cose(
            &output_cbor(&case),
            &external_aad(&case),
            &anchors,
            &HostVerifier,
            &Policy::default(),
        );
        assert!(result.is_err(), "{name} ({}) verified", case["title"]);
        assert_verdict(name, result);
    }
    // fail-01, -02, -03, -04, -06, -07.
    assert_eq!(fail_cases, 6);
}

#[test]
fn cose_wg_sign1_pass_02_with_external_aad_verifies() {
    let case = load("sign1-tests/sign-pass-02.json");
    let aad = external_aad(&case);
    assert_eq!(aad, hex::decode("11aa22bb33cc44dd55006699").unwrap());
    let cbor = output_cbor(&case);
    let envelope = envelope_around(&cbor);
    let cose = decode_cose_sign1(&envelope).unwrap();
    let mut buf = [0u8; 512];
    let tbs = cose.to_be_signed(plaintext(&case), &aad, &mut buf).unwrap();
    assert_eq!(tbs, to_be_signed_hex(&case));

    let anchors = [p256_key(&case)];
    assert_verdict(
        "sign-pass-02.json",
        verify_cose(&cbor, &aad, &anchors, &HostVerifier, &Policy::default()),
    );
    // Without the external AAD the signature does not verify.
    assert_eq!(
        verify_cose(&cbor, &[], &anchors, &HostVerifier, &Policy::default()),
        Err(Error::NoTrustedKey)
    );
}

/// sign-pass-03 is the untagged `COSE_Sign1` form. RFC 9052 allows it where the context
/// says what the message is, but SUIT's CDDL (§8.3) requires `COSE_Sign1_Tagged`, and an
/// untagged block would leave rota unable to tell COSE_Sign1 from another 4-element
/// structure. rota refuses it *deliberately*; the signature itself is fine, which is
/// checked here over the same bytes with the tag restored.
#[test]
fn cose_wg_sign1_pass_03_untagged_is_rejected_because_suit_requires_cose_sign1_tagged() {
    let case = load("sign1-tests/sign-pass-03.json");
    let cbor = output_cbor(&case);
    assert_eq!(cbor[0], 0x84, "an untagged 4-element array");
    let anchors = [p256_key(&case)];
    assert_verdict(
        "sign-pass-03.json",
        verify_cose(&cbor, &[], &anchors, &HostVerifier, &Policy::default()),
    );
    let tagged = [&[0xd2][..], &cbor].concat();
    assert_eq!(
        verify_cose(&tagged, &[], &anchors, &HostVerifier, &Policy::default()),
        Ok(0)
    );
}

/// sign-pass-01 re-encodes the protected header as `bstr(a0)` (an empty map) and puts
/// `alg` in the unprotected bucket. rota requires `alg` to be protected: RFC 9052 §3.1 says
/// alg "MUST be authenticated where the ability to do so exists", and an unprotected alg
/// is open to algorithm substitution. So decoding refuses it.
///
/// The case's signature is over a Sig_structure whose protected field is `h''`, not the
/// `h'a0'` on the wire (its `ToBeSign_hex` says so, and only that verifies): RFC 9052 §3
/// calls the zero-length bstr "the version used in the serialization structures for
/// cryptographic computation" for an empty map. rota never builds a Sig_structure for an
/// empty protected bucket (it would hold no `alg`, [`Error::AlgorithmNotProtected`]), so
/// its as-received rule for the protected bytes is not at odds with this case.
#[test]
fn cose_wg_sign1_pass_01_unprotected_alg_is_refused() {
    let case = load("sign1-tests/sign-pass-01.json");
    let cbor = output_cbor(&case);
    let anchors = [p256_key(&case)];
    assert_verdict(
        "sign-pass-01.json",
        verify_cose(&cbor, &[], &anchors, &HostVerifier, &Policy::default()),
    );

    // The message is 18([h'a0', {1: -7, 4: h'3131'}, payload, signature]).
    let mut d = minicbor::Decoder::new(&cbor);
    assert_eq!(d.tag().unwrap().as_u64(), 18);
    assert_eq!(d.array().unwrap(), Some(4));
    let protected = d.bytes().unwrap();
    assert_eq!(protected, [0xa0]);
    d.skip().unwrap();
    let payload = d.bytes().unwrap();
    assert_eq!(payload, plaintext(&case));
    let signature = d.bytes().unwrap();

    // The signed structure uses `h''` for the empty protected map …
    let mut buf = [0u8; 512];
    let tbs = sig_structure(&[], &[], payload, &mut buf).unwrap();
    assert_eq!(tbs, to_be_signed_hex(&case));
    assert_eq!(
        HostVerifier.verify(SignatureAlgorithm::Es256, &anchors[0], tbs, signature),
        Ok(())
    );
    // … and the wire bytes `h'a0'` would be a different message.
    let mut buf = [0u8; 512];
    let as_received = sig_structure(protected, &[], payload, &mut buf).unwrap();
    assert_eq!(
        HostVerifier.verify(
            SignatureAlgorithm::Es256,
            &anchors[0],
            as_received,
            signature
        ),
        Err(Error::BadSignature)
    );
}

/// Every case in the directory is classified, every COSE WG "fail" is refused by rota,
/// and the only COSE WG "pass" cases rota refuses are the two explained above.
#[test]
fn cose_wg_sign1_every_case_has_a_verdict() {
    let names = sign1_case_names();
    assert_eq!(names.len(), 9);
    for name in names {
        let case = load(&format!("sign1-tests/{name}"));
        let must_fail = case["fail"] == true;
        assert_eq!(must_fail, name.starts_with("sign-fail-"), "{name}");
        let verdict = sign1_verdict(&name);
        if must_fail {
            assert!(!matches!(verdict, Verdict::Verifies), "{name}");
        } else if !matches!(verdict, Verdict::Verifies) {
            assert!(
                ["sign-pass-01.json", "sign-pass-03.json"].contains(&name.as_str()),
                "{name}"
            );
        }
        // And the verdict is what rota actually does.
        let aad = external_aad(&case);
        let result = verify_cose(
            &output_cbor(&case),
            &aad,
            &[p256_key(&case)],
            &HostVerifier,
            &Policy::default(),
        );
        assert_verdict(&name, result);
    }
}
