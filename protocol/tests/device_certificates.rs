//! Device certificates: what a CA issues verifies, and nothing else does.

mod support;

use ed25519_dalek::Signer as _;
use rota_protocol::identity::{
    CERT_SIGNING_CONTEXT, MAX_CERT_BODY_LEN, issuer_id, signing_key_from_pem,
    verifying_key_from_pem,
};
use rota_protocol::{CertBody, DeviceCertificate, IdentityError, Signature, SigningKey, issue};
use serde_json::{Value, json};
use support::{CLASS_ID, body, body_for, ca, device_key, key};

/// A certificate over arbitrary body bytes, properly signed by `ca`: what a buggy or
/// hostile issuer could produce with a real CA key.
fn signed_raw(ca: &SigningKey, body: &[u8]) -> DeviceCertificate {
    let mut message = CERT_SIGNING_CONTEXT.to_vec();
    message.extend_from_slice(body);
    DeviceCertificate::from_parts(body.to_vec(), ca.sign(&message))
}

/// The JSON of a valid body, to be edited into an invalid one.
fn body_json() -> Value {
    serde_json::to_value(body()).unwrap()
}

fn signed_json(value: &Value) -> DeviceCertificate {
    signed_raw(&ca(), &serde_json::to_vec(value).unwrap())
}

fn trusted() -> Vec<ed25519_dalek::VerifyingKey> {
    vec![ca().verifying_key()]
}

#[test]
fn issued_certificate_verifies_and_returns_its_claims() {
    let cert = issue(&ca(), &body()).unwrap();
    let claims = cert.verify(&trusted()).unwrap();
    assert_eq!(claims, body());
    assert_eq!(claims.device_key().unwrap(), device_key().verifying_key());
    assert_eq!(claims.class_id, CLASS_ID);
    assert_eq!(claims.issuer, issuer_id(&ca().verifying_key()));
}

#[test]
fn certificate_survives_its_json_form() {
    let cert = issue(&ca(), &body()).unwrap();
    let text = serde_json::to_string(&cert).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    let fields: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["body", "signature"]);
    assert_eq!(
        value["signature"].as_str().unwrap().len(),
        88,
        "base64 of 64 bytes"
    );
    let back: DeviceCertificate = serde_json::from_str(&text).unwrap();
    assert_eq!(back, cert);
    assert_eq!(back.verify(&trusted()).unwrap(), body());
}

#[test]
fn any_trusted_ca_may_issue() {
    let other = key(0x0c);
    let cert = issue(
        &other,
        &body_for(&other.verifying_key(), "sensor-0001", &[]),
    )
    .unwrap();
    let cas = [ca().verifying_key(), other.verifying_key()];
    assert!(cert.verify(&cas).is_ok());
}

#[test]
fn rejects_certificate_from_untrusted_ca() {
    let rogue = key(0x66);
    let cert = issue(
        &rogue,
        &body_for(&rogue.verifying_key(), "sensor-0001", &[]),
    )
    .unwrap();
    assert_eq!(
        cert.verify(&trusted()),
        Err(IdentityError::UnknownIssuer {
            issuer: issuer_id(&rogue.verifying_key())
        })
    );
    assert!(matches!(
        cert.verify(&[]),
        Err(IdentityError::UnknownIssuer { .. })
    ));
}

#[test]
fn rejects_rogue_signature_naming_a_trusted_issuer() {
    // The body claims the trusted CA, but another key signed it.
    let cert = signed_raw(&key(0x66), &serde_json::to_vec(&body()).unwrap());
    assert_eq!(cert.verify(&trusted()), Err(IdentityError::BadSignature));
}

#[test]
fn issue_refuses_a_body_naming_another_issuer() {
    let body = body_for(&key(0x66).verifying_key(), "sensor-0001", &[]);
    assert!(matches!(
        issue(&ca(), &body),
        Err(IdentityError::IssuerMismatch { .. })
    ));
}

#[test]
fn issue_refuses_what_verify_would_refuse() {
    let mut bad = body();
    bad.device_id = "has space".into();
    assert!(matches!(
        issue(&ca(), &bad),
        Err(IdentityError::InvalidDeviceId(_))
    ));
    let mut bad = body();
    bad.tags = (0..33).map(|i| format!("t{i}")).collect();
    assert_eq!(issue(&ca(), &bad), Err(IdentityError::TooManyTags(33)));
}

#[test]
fn rejects_every_single_bit_flip_in_the_body() {
    let cert = issue(&ca(), &body()).unwrap();
    let bytes = cert.body_bytes().to_vec();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut tampered = bytes.clone();
            tampered[i] ^= 1 << bit;
            let forged = DeviceCertificate::from_parts(tampered, *cert.signature());
            assert!(
                forged.verify(&trusted()).is_err(),
                "accepted with bit {bit} of byte {i} flipped"
            );
        }
    }
}

#[test]
fn rejects_tampered_device_id_as_bad_signature() {
    let cert = issue(&ca(), &body()).unwrap();
    let text = String::from_utf8(cert.body_bytes().to_vec()).unwrap();
    let tampered = text.replace("sensor-0001", "sensor-0002").into_bytes();
    let forged = DeviceCertificate::from_parts(tampered, *cert.signature());
    assert_eq!(forged.verify(&trusted()), Err(IdentityError::BadSignature));
}

#[test]
fn rejects_every_single_bit_flip_in_the_signature() {
    let cert = issue(&ca(), &body()).unwrap();
    let signature = cert.signature().to_bytes();
    for i in 0..signature.len() {
        for bit in 0..8 {
            let mut tampered = signature;
            tampered[i] ^= 1 << bit;
            let forged = DeviceCertificate::from_parts(
                cert.body_bytes().to_vec(),
                Signature::from_bytes(&tampered),
            );
            assert_eq!(
                forged.verify(&trusted()),
                Err(IdentityError::BadSignature),
                "bit {bit} of byte {i}"
            );
        }
    }
}

#[test]
fn rejects_malleated_signature_with_s_plus_group_order() {
    // (R, S + L) verifies under lax rules; strict verification must refuse it.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let cert = issue(&ca(), &body()).unwrap();
    let mut sig = cert.signature().to_bytes();
    let mut carry = 0u16;
    for (s, l) in sig[32..].iter_mut().zip(L) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum as u8;
        carry = sum >> 8;
    }
    let forged =
        DeviceCertificate::from_parts(cert.body_bytes().to_vec(), Signature::from_bytes(&sig));
    assert_eq!(forged.verify(&trusted()), Err(IdentityError::BadSignature));
}

#[test]
fn rejects_signature_without_the_domain_separation_context() {
    let bytes = serde_json::to_vec(&body()).unwrap();
    let cert = DeviceCertificate::from_parts(bytes.clone(), ca().sign(&bytes));
    assert_eq!(cert.verify(&trusted()), Err(IdentityError::BadSignature));
}

#[test]
fn rejects_unknown_body_field() {
    let mut value = body_json();
    value["admin"] = json!(true);
    let err = signed_json(&value).verify(&trusted()).unwrap_err();
    assert!(
        matches!(&err, IdentityError::MalformedBody(m) if m.contains("unknown field")),
        "{err}"
    );
}

#[test]
fn rejects_missing_body_field() {
    let mut value = body_json();
    value.as_object_mut().unwrap().remove("class_id");
    assert!(matches!(
        signed_json(&value).verify(&trusted()),
        Err(IdentityError::MalformedBody(_))
    ));
}

#[test]
fn rejects_duplicate_body_field() {
    let text = String::from_utf8(serde_json::to_vec(&body()).unwrap()).unwrap();
    let doubled = text.replacen(
        "\"device_id\":\"sensor-0001\"",
        "\"device_id\":\"sensor-0001\",\"device_id\":\"sensor-9999\"",
        1,
    );
    assert_ne!(text, doubled);
    assert!(matches!(
        signed_raw(&ca(), doubled.as_bytes()).verify(&trusted()),
        Err(IdentityError::MalformedBody(_))
    ));
}

#[test]
fn rejects_trailing_data_after_the_body() {
    let bytes = serde_json::to_vec(&body()).unwrap();
    for trailer in [&b"{}"[..], b"x", b" ", b"\n", b"\0"] {
        let mut with_trailer = bytes.clone();
        with_trailer.extend_from_slice(trailer);
        assert_eq!(
            signed_raw(&ca(), &with_trailer).verify(&trusted()),
            Err(IdentityError::TrailingData),
            "{trailer:?}"
        );
    }
}

#[test]
fn rejects_unsupported_version() {
    let mut value = body_json();
    value["version"] = json!(2);
    assert_eq!(
        signed_json(&value).verify(&trusted()),
        Err(IdentityError::UnsupportedVersion(2))
    );
}

#[test]
fn rejects_invalid_device_id() {
    for bad in [
        "",
        "has space",
        "slash/ed",
        "colon:ed",
        "ünïcode",
        &"x".repeat(65),
    ] {
        let mut value = body_json();
        value["device_id"] = json!(bad);
        assert_eq!(
            signed_json(&value).verify(&trusted()),
            Err(IdentityError::InvalidDeviceId(bad.to_string())),
            "{bad:?}"
        );
    }
}

#[test]
fn rejects_too_many_tags() {
    let mut value = body_json();
    value["tags"] = json!((0..33).map(|i| format!("t{i}")).collect::<Vec<_>>());
    assert_eq!(
        signed_json(&value).verify(&trusted()),
        Err(IdentityError::TooManyTags(33))
    );
    value["tags"] = json!((0..32).map(|i| format!("t{i}")).collect::<Vec<_>>());
    assert!(signed_json(&value).verify(&trusted()).is_ok());
}

#[test]
fn rejects_invalid_or_duplicate_tag() {
    for bad in ["", "a b", "a=b", &"t".repeat(65)] {
        let mut value = body_json();
        value["tags"] = json!(["ok", bad]);
        assert_eq!(
            signed_json(&value).verify(&trusted()),
            Err(IdentityError::InvalidTag(bad.to_string())),
            "{bad:?}"
        );
    }
    let mut value = body_json();
    value["tags"] = json!(["a", "a"]);
    assert_eq!(
        signed_json(&value).verify(&trusted()),
        Err(IdentityError::DuplicateTag("a".into()))
    );
}

#[test]
fn rejects_device_key_that_is_not_a_usable_point() {
    let not_a_point = (0u8..=255)
        .map(|b| {
            let mut bytes = [b; 32];
            bytes[31] &= 0x7f;
            bytes
        })
        .find(|bytes| ed25519_dalek::VerifyingKey::from_bytes(bytes).is_err())
        .expect("some y has no curve point");
    // The identity point: small order, so "signatures" under it are meaningless.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let good = hex::encode(device_key().verifying_key().as_bytes());
    for bad in [
        hex::encode(not_a_point),
        hex::encode(identity),
        good.to_uppercase(),
        good[..62].to_string(),
        format!("{good}00"),
        "zz".repeat(32),
    ] {
        let mut value = body_json();
        value["public_key"] = json!(bad);
        assert_eq!(
            signed_json(&value).verify(&trusted()),
            Err(IdentityError::InvalidPublicKey),
            "{bad}"
        );
    }
}

#[test]
fn rejects_class_id_that_is_not_a_canonical_uuid() {
    for bad in [
        CLASS_ID.to_uppercase(),
        CLASS_ID.replace('-', ""),
        format!("{{{CLASS_ID}}}"),
        "class-a".to_string(),
    ] {
        let mut value = body_json();
        value["class_id"] = json!(bad);
        assert_eq!(
            signed_json(&value).verify(&trusted()),
            Err(IdentityError::InvalidClassId(bad.clone())),
            "{bad}"
        );
    }
}

#[test]
fn rejects_oversized_body_before_parsing() {
    let cert = DeviceCertificate::from_parts(
        vec![b' '; MAX_CERT_BODY_LEN + 1],
        Signature::from_bytes(&[0; 64]),
    );
    assert_eq!(
        cert.verify(&trusted()),
        Err(IdentityError::BodyTooLarge {
            len: MAX_CERT_BODY_LEN + 1
        })
    );
}

#[test]
fn certificate_json_is_strict() {
    let cert = issue(&ca(), &body()).unwrap();
    let mut value = serde_json::to_value(&cert).unwrap();
    let good_signature = value["signature"].clone();

    value["extra"] = json!(1);
    assert!(serde_json::from_value::<DeviceCertificate>(value.clone()).is_err());
    value.as_object_mut().unwrap().remove("extra");

    let sig = good_signature.as_str().unwrap();
    for bad in [
        sig.trim_end_matches('='),                                  // no padding
        &sig[4..],                                                  // 61 bytes
        &format!("{sig}AAAA"),                                      // 67 bytes
        &sig.replace('+', "-").replace('/', "_").replace('A', "-"), // url-safe alphabet
    ] {
        value["signature"] = json!(bad);
        assert!(
            serde_json::from_value::<DeviceCertificate>(value.clone()).is_err(),
            "{bad}"
        );
    }
    value["signature"] = good_signature;
    value["body"] = json!("not base64!");
    assert!(serde_json::from_value::<DeviceCertificate>(value).is_err());
}

#[test]
fn reads_keys_in_the_pem_forms_rota_keygen_writes() {
    // Written by `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout`: the
    // PKCS#8 v1 and SPKI forms that `rota keygen` writes too. A throwaway test key.
    const PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIOj5PAHNvoHGIlfwF2bKnepkhtyGzPghhDxtdhfBxR7m\n\
        -----END PRIVATE KEY-----\n";
    const PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEAyAFOCU0Igm5w3seNaKlWU5qfoaWc2MtzyC9iIjymUAc=\n\
        -----END PUBLIC KEY-----\n";
    let ca = signing_key_from_pem(PRIVATE).unwrap();
    let public = verifying_key_from_pem(PUBLIC).unwrap();
    assert_eq!(ca.verifying_key(), public);
    assert_eq!(
        hex::encode(public.as_bytes()),
        "c8014e094d08826e70dec78d68a956539a9fa1a59cd8cb73c82f62223ca65007"
    );

    let body = body_for(&public, "sensor-0001", &[]);
    assert!(issue(&ca, &body).unwrap().verify(&[public]).is_ok());

    assert!(matches!(
        signing_key_from_pem(PUBLIC),
        Err(IdentityError::Key { .. })
    ));
    assert!(matches!(
        verifying_key_from_pem(PRIVATE),
        Err(IdentityError::Key { .. })
    ));
}

#[test]
fn body_fields_are_exactly_the_documented_ones() {
    let value = body_json();
    let mut fields: Vec<&String> = value.as_object().unwrap().keys().collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "class_id",
            "device_id",
            "issued_at",
            "issuer",
            "public_key",
            "tags",
            "version"
        ]
    );
    assert_eq!(value["version"], json!(1));
    let _: CertBody = serde_json::from_value(value).unwrap();
}
