//! Device certificates: what a CA issues verifies, and nothing else does.

mod support;

use rota_protocol::identity::{CERT_SIGNING_CONTEXT, MAX_CERT_BODY_LEN, issuer_id};
use rota_protocol::{
    CertBody, DeviceCertificate, IdentityError, PublicKey, Sign, SoftwareKey, issue,
};
use serde_json::{Value, json};
use support::{CLASS_ID, body, body_for, ca, device_key, key};

/// A certificate over arbitrary body bytes, properly signed by `ca`: what a buggy or
/// hostile issuer could produce with a real CA key.
fn signed_raw(ca: &SoftwareKey, body: &[u8]) -> DeviceCertificate {
    let mut message = CERT_SIGNING_CONTEXT.to_vec();
    message.extend_from_slice(body);
    let signature = ca.sign(&message).unwrap().try_into().unwrap();
    DeviceCertificate::from_parts(body.to_vec(), signature)
}

/// The JSON of a valid body, to be edited into an invalid one.
fn body_json() -> Value {
    serde_json::to_value(body()).unwrap()
}

fn signed_json(value: &Value) -> DeviceCertificate {
    signed_raw(&ca(), &serde_json::to_vec(value).unwrap())
}

fn trusted() -> Vec<PublicKey> {
    vec![ca().public_key()]
}

#[test]
fn issued_certificate_verifies_and_returns_its_claims() {
    let cert = issue(&ca(), &body()).unwrap();
    let claims = cert.verify(&trusted()).unwrap();
    assert_eq!(claims, body());
    assert_eq!(claims.device_key().unwrap(), device_key().public_key());
    assert_eq!(claims.class_id, CLASS_ID);
    assert_eq!(claims.issuer, issuer_id(&ca().public_key()));
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
    let cert = issue(&other, &body_for(&other.public_key(), "sensor-0001", &[])).unwrap();
    let cas = [ca().public_key(), other.public_key()];
    assert!(cert.verify(&cas).is_ok());
}

#[test]
fn rejects_certificate_from_untrusted_ca() {
    let rogue = key(0x66);
    let cert = issue(&rogue, &body_for(&rogue.public_key(), "sensor-0001", &[])).unwrap();
    assert_eq!(
        cert.verify(&trusted()),
        Err(IdentityError::UnknownIssuer {
            issuer: issuer_id(&rogue.public_key())
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
    let body = body_for(&key(0x66).public_key(), "sensor-0001", &[]);
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
    let signature = *cert.signature();
    for i in 0..signature.len() {
        for bit in 0..8 {
            let mut tampered = signature;
            tampered[i] ^= 1 << bit;
            let forged = DeviceCertificate::from_parts(cert.body_bytes().to_vec(), tampered);
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
    let mut sig = *cert.signature();
    let mut carry = 0u16;
    for (s, l) in sig[32..].iter_mut().zip(L) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum as u8;
        carry = sum >> 8;
    }
    let forged = DeviceCertificate::from_parts(cert.body_bytes().to_vec(), sig);
    assert_eq!(forged.verify(&trusted()), Err(IdentityError::BadSignature));
}

#[test]
fn rejects_signature_without_the_domain_separation_context() {
    let bytes = serde_json::to_vec(&body()).unwrap();
    let cert = DeviceCertificate::from_parts(
        bytes.clone(),
        ca().sign(&bytes).unwrap().try_into().unwrap(),
    );
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
    let good = hex::encode(device_key().public_key().as_bytes());
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
    let cert = DeviceCertificate::from_parts(vec![b' '; MAX_CERT_BODY_LEN + 1], [0; 64]);
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
    let ca = SoftwareKey::from_pkcs8_pem(PRIVATE).unwrap();
    let public = rota_keys::public_key_from_pem(PUBLIC).unwrap();
    assert_eq!(ca.public_key(), public);
    assert_eq!(
        hex::encode(public.as_bytes()),
        "c8014e094d08826e70dec78d68a956539a9fa1a59cd8cb73c82f62223ca65007"
    );

    let body = body_for(&public, "sensor-0001", &[]);
    assert!(issue(&ca, &body).unwrap().verify(&[public]).is_ok());
}

/// Many secure elements and TPMs have no Ed25519: a P-256 device key in a certificate
/// from a P-256 CA (and from an Ed25519 CA) verifies, and a flipped bit does not.
#[test]
fn p256_device_keys_and_p256_cas_issue_and_verify() {
    let p256_ca = SoftwareKey::generate(rota_keys::Algorithm::EcdsaP256Sha256).unwrap();
    let device = SoftwareKey::generate(rota_keys::Algorithm::EcdsaP256Sha256).unwrap();
    for ca in [&p256_ca, &ca()] {
        let body = CertBody::new(
            &ca.public_key(),
            "tpm-device-1",
            &device.public_key(),
            &CLASS_ID.parse().unwrap(),
            vec![],
            1_700_000_000,
        );
        assert_eq!(body.public_key.len(), 130);
        let cert = issue(ca, &body).unwrap();
        let claims = cert.verify(&[ca.public_key()]).unwrap();
        assert_eq!(claims.device_key().unwrap(), device.public_key());

        let mut signature = *cert.signature();
        signature[40] ^= 1;
        let forged = DeviceCertificate::from_parts(cert.body_bytes().to_vec(), signature);
        assert_eq!(
            forged.verify(&[ca.public_key()]),
            Err(IdentityError::BadSignature)
        );
    }
    // A P-256 point off the curve, or in compressed form, is not a device key.
    let mut value = body_json();
    let mut off_curve = device.public_key().as_bytes().to_vec();
    off_curve[64] ^= 1;
    for bad in [
        hex::encode(&off_curve),
        format!("02{}", &hex::encode(device.public_key().as_bytes())[2..66]),
    ] {
        value["public_key"] = json!(bad);
        assert_eq!(
            signed_json(&value).verify(&trusted()),
            Err(IdentityError::InvalidPublicKey),
            "{bad}"
        );
    }
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
