//! The byte rules of `byte_rules.rs`, against the boot profile: each violating envelope
//! (otherwise well-formed and validly signed, from the same assembler) is refused by the
//! profile too, and the subset property holds on every one of them. A second group is
//! what the general path accepts and the profile refuses, by design.

mod assemble;
mod subset;

use assemble::{
    IMAGE, Parts, V, install_sequence, public_key, sha256, single_byte_mutations, wrap,
};
use ed25519_dalek::Signer as _;
use rota_manifest::{Ed25519Verifier, Envelope, Error, Policy, verify_boot_envelope};
use subset::assert_subset;

/// The profile's verdict, with the subset property asserted.
fn profile(bytes: &[u8]) -> Result<(), Error> {
    assert_subset(bytes, &public_key(), &Ed25519Verifier).map(|_| ())
}

/// The general path's verdict, with the bootloader's policy.
fn general(bytes: &[u8]) -> Result<(), Error> {
    assemble::verify(bytes)
}

fn with_protected(protected: Vec<u8>) -> Parts {
    Parts {
        protected,
        ..Parts::default()
    }
}

fn kid() -> Vec<u8> {
    public_key().key_id().to_vec()
}

/// The assembler's default envelope is in the profile: the rules below are what refuses.
#[test]
fn the_well_formed_envelope_is_in_the_profile() {
    let bytes = Parts::default().build();
    let claims = verify_boot_envelope(&bytes, &public_key(), &Ed25519Verifier).unwrap();
    assert_eq!(claims.vendor_id, &assemble::VENDOR);
    assert_eq!(claims.class_id, &assemble::CLASS);
    assert_eq!(claims.image_digest.bytes, &sha256(IMAGE)[..]);
    assert_eq!(claims.image_size, IMAGE.len() as u64);
    assert_eq!(claims.security_version, 3);
    assert_eq!(claims.sequence_number, 7);
    assert_eq!(profile(&bytes), Ok(()));
}

/// Each envelope breaks one rule the general path enforces; both refuse it.
fn violations() -> Vec<(&'static str, Vec<u8>)> {
    let mut v = Vec::new();
    let mut case = |name, bytes| v.push((name, bytes));

    // SUIT §8.3: the manifest digest covers the manifest bstr, header included.
    case(
        "digest over the manifest without its bstr header",
        Parts {
            digest_over_content_only: true,
            ..Parts::default()
        }
        .build(),
    );
    let mut tampered = Parts::default().build();
    let at = tampered.windows(2).position(|w| w == [0x02, 0x07]).unwrap();
    tampered[at + 1] = 0x08;
    case("tampered manifest", tampered);

    // RFC 9052 §4.4: the signature covers the protected header as received.
    let canonical = Parts::default().protected;
    let mut received = canonical.clone();
    received[2..3].copy_from_slice(&[0x38]);
    received.insert(3, 0x12);
    case(
        "signature over a re-encoded protected header",
        Parts {
            protected: received,
            sign_protected: Some(canonical),
            ..Parts::default()
        }
        .build(),
    );

    // RFC 8949 §5.3: a structure ends where its container ends.
    let mut trailing = Parts::default().build();
    trailing.push(0x00);
    case("trailing bytes after the envelope", trailing);
    let mut manifest = Parts::default().manifest().enc();
    manifest.push(0x00);
    case(
        "trailing bytes in the manifest bstr",
        Parts {
            manifest: Some(V::Raw(manifest)),
            ..Parts::default()
        }
        .build(),
    );
    let mut protected = Parts::default().protected;
    protected.push(0x00);
    case(
        "trailing bytes in the protected header",
        with_protected(protected).build(),
    );

    // SUIT §8.3: the authentication wrapper comes before the manifest.
    case(
        "manifest before the authentication wrapper",
        Parts {
            manifest_first: true,
            ..Parts::default()
        }
        .build(),
    );

    // RFC 8949 §5.6: no duplicate map keys.
    case(
        "duplicate envelope key",
        Parts {
            envelope_extra: vec![(V::U(3), V::B(Parts::default().manifest().enc()))],
            ..Parts::default()
        }
        .build(),
    );
    case(
        "duplicate manifest key",
        Parts {
            manifest_extra: vec![(V::U(2), V::U(99))],
            ..Parts::default()
        }
        .build(),
    );
    let mut parts = Parts::default();
    parts.shared_params.push((V::U(14), V::U(1)));
    case("duplicate parameter", parts.build());
    let mut parts = Parts::default();
    parts
        .shared_params
        .push((V::Raw(vec![0x18, 0x0e]), V::U(1)));
    case("duplicate parameter in another encoding", parts.build());
    case(
        "duplicate protected header label",
        with_protected(V::M(vec![(V::U(1), V::N(-19)), (V::U(1), V::N(-19))]).enc()).build(),
    );

    // RFC 9052 §3.1: crit lists only understood labels, and only in the protected bucket.
    case(
        "unknown critical header",
        with_protected(
            V::M(vec![
                (V::U(1), V::N(-19)),
                (V::U(2), V::A(vec![V::N(-70000)])),
                (V::N(-70000), V::U(1)),
            ])
            .enc(),
        )
        .build(),
    );
    case(
        "text label in crit",
        with_protected(
            V::M(vec![
                (V::U(1), V::N(-19)),
                (V::U(2), V::A(vec![V::T("x-vendor")])),
                (V::T("x-vendor"), V::U(1)),
            ])
            .enc(),
        )
        .build(),
    );
    case(
        "crit in the unprotected header",
        Parts {
            unprotected: V::M(vec![(V::U(2), V::A(vec![V::U(4)]))]),
            ..Parts::default()
        }
        .build(),
    );

    // RFC 9052 §3, §3.1: alg protected, and in one bucket only.
    case(
        "alg only in the unprotected header",
        Parts {
            protected: vec![],
            unprotected: V::M(vec![(V::U(1), V::N(-19))]),
            ..Parts::default()
        }
        .build(),
    );
    case(
        "alg in both headers",
        Parts {
            unprotected: V::M(vec![(V::U(1), V::N(-19))]),
            ..Parts::default()
        }
        .build(),
    );
    case("no alg", with_protected(vec![]).build());
    case(
        "EdDSA (-8) without the policy",
        with_protected(V::M(vec![(V::U(1), V::N(-8)), (V::U(4), V::B(kid()))]).enc()).build(),
    );

    // SUIT §8.2 SUIT_Envelope_Tagged, §8.3 COSE_Sign1_Tagged.
    for (name, parts) in [
        (
            "untagged COSE_Sign1",
            Parts {
                cose_tag: None,
                ..Parts::default()
            },
        ),
        (
            "COSE_Mac0 tag",
            Parts {
                cose_tag: Some(17),
                ..Parts::default()
            },
        ),
        (
            "untagged envelope",
            Parts {
                envelope_tag: None,
                ..Parts::default()
            },
        ),
        (
            "wrong envelope tag",
            Parts {
                envelope_tag: Some(18),
                ..Parts::default()
            },
        ),
        // SUIT §8.3: the payload is detached.
        (
            "attached payload",
            Parts {
                payload: V::B(b"payload".to_vec()),
                ..Parts::default()
            },
        ),
        // SUIT §10: a digest's length matches its algorithm; rota hashes with SHA-256.
        (
            "SHA-512 id with 32 bytes",
            Parts {
                digest_alg: -44,
                ..Parts::default()
            },
        ),
        (
            "SHA-384 manifest digest",
            Parts {
                digest_alg: -43,
                digest_bytes: Some(vec![0; 48]),
                ..Parts::default()
            },
        ),
    ] {
        case(name, parts.build());
    }
    let mut parts = Parts::default();
    parts.shared_params[2].1 = wrap(&V::A(vec![V::N(-16), V::B(vec![0; 31])]));
    case("image digest of 31 bytes", parts.build());

    // SUIT §8.4.11: severed members match their digest, which the manifest holds.
    let install = install_sequence();
    let mut tampered = install.enc();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    case(
        "tampered severed install",
        Parts {
            manifest_extra: vec![(
                V::U(20),
                V::A(vec![V::N(-16), V::B(sha256(&install.enc()))]),
            )],
            envelope_extra: vec![(V::U(20), V::Raw(tampered))],
            ..Parts::default()
        }
        .build(),
    );
    let V::B(content) = &install else {
        unreachable!()
    };
    case(
        "severed digest without the bstr header",
        Parts {
            manifest_extra: vec![(V::U(20), V::A(vec![V::N(-16), V::B(sha256(content))]))],
            envelope_extra: vec![(V::U(20), install.clone())],
            ..Parts::default()
        }
        .build(),
    );
    case(
        "severed member without a digest",
        Parts {
            envelope_extra: vec![(V::U(20), install.clone())],
            ..Parts::default()
        }
        .build(),
    );
    case(
        "member both inline and severed",
        Parts {
            manifest_extra: vec![(V::U(20), install.clone())],
            envelope_extra: vec![(V::U(20), install)],
            ..Parts::default()
        }
        .build(),
    );

    // RFC 8032 §5.1.7, strict: S < L, and the signature is the key's.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let good = Parts::default().build();
    let env = Envelope::decode(&good, &Policy::default()).unwrap();
    let (_, _, mut blocks) = env.authentication_wrapper().unwrap();
    let mut sig = blocks.next().unwrap().unwrap().signature.to_vec();
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = sig[32 + i] as u16 + L[i] as u16 + carry;
        sig[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    case(
        "malleable signature (S + L)",
        Parts {
            signature: Some(sig),
            ..Parts::default()
        }
        .build(),
    );
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    case(
        "another key's signature under the trusted kid",
        Parts {
            signature: Some(other.sign(b"anything").to_bytes().to_vec()),
            ..Parts::default()
        }
        .build(),
    );
    case(
        "unknown kid",
        Parts {
            protected: V::M(vec![(V::U(1), V::N(-19)), (V::U(4), V::B(vec![1; 32]))]).enc(),
            signature: Some(vec![0; 64]),
            ..Parts::default()
        }
        .build(),
    );

    // RFC 8949 §4.2.1: definite lengths only.
    let mut manifest = Parts::default().manifest().enc();
    manifest[0] = 0xbf;
    manifest.push(0xff);
    case(
        "indefinite-length manifest map",
        Parts {
            manifest: Some(V::Raw(manifest)),
            ..Parts::default()
        }
        .build(),
    );

    // SUIT §8.4.1: manifest-version 1.
    let mut m = Parts::default().manifest();
    if let V::M(entries) = &mut m {
        entries[0].1 = V::U(2);
    }
    case(
        "manifest version 2",
        Parts {
            manifest: Some(m),
            ..Parts::default()
        }
        .build(),
    );

    // SUIT §8.4.10.1: component indices name listed components.
    let mut parts = Parts::default();
    parts.shared_sequence.extend([V::U(12), V::U(1)]);
    case("component index out of range", parts.build());

    // Truncations (RFC 8949 §5.3) and garbage.
    let whole = Parts::default().build();
    for cut in [0, 1, 4, 40, whole.len() - 1] {
        case("truncated envelope", whole[..cut].to_vec());
    }
    case("not an envelope", b"hello, world\n".to_vec());
    v
}

#[test]
fn the_profile_refuses_every_byte_rule_violation() {
    for (name, bytes) in violations() {
        assert!(general(&bytes).is_err(), "{name}: the general path accepts");
        let verdict = profile(&bytes);
        assert!(verdict.is_err(), "{name}: the boot profile accepts");
    }
}

/// Where the rule's own error is reachable in the profile's layout, it is the same.
#[test]
fn the_profile_names_the_rule_where_it_is_checked() {
    let mut tampered = Parts::default().build();
    let at = tampered.windows(2).position(|w| w == [0x02, 0x07]).unwrap();
    tampered[at + 1] = 0x08;
    assert_eq!(profile(&tampered), Err(Error::ManifestDigestMismatch));

    let mut trailing = Parts::default().build();
    let end = trailing.len();
    trailing.push(0x00);
    assert_eq!(
        profile(&trailing),
        Err(Error::TrailingBytes { offset: end })
    );

    let manifest_first = Parts {
        manifest_first: true,
        ..Parts::default()
    };
    assert_eq!(
        profile(&manifest_first.build()),
        Err(Error::AuthenticationWrapperNotFirst { offset: 3 })
    );

    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let forged = Parts {
        signature: Some(other.sign(b"anything").to_bytes().to_vec()),
        ..Parts::default()
    };
    assert_eq!(profile(&forged.build()), Err(Error::BadSignature));

    let unknown_kid = Parts {
        protected: V::M(vec![(V::U(1), V::N(-19)), (V::U(4), V::B(vec![1; 32]))]).enc(),
        ..Parts::default()
    };
    assert_eq!(profile(&unknown_kid.build()), Err(Error::NoTrustedKey));

    let whole = Parts::default().build();
    assert_eq!(
        profile(&whole[..whole.len() - 1]),
        Err(Error::Truncated {
            offset: whole.len() - 1
        })
    );
}

/// Valid SUIT that the general path accepts and the profile refuses, by design: each is
/// outside the layout `rota sign` writes.
#[test]
fn the_profile_refuses_valid_envelopes_outside_its_layout() {
    let install = install_sequence();
    let install_digest = V::A(vec![V::N(-16), V::B(sha256(&install.enc()))]);
    let mut reordered = Parts::default().manifest();
    if let V::M(entries) = &mut reordered {
        entries.swap(0, 1);
    }
    let mut two_byte_alg = vec![0xa2, 0x01, 0x38, 0x12];
    two_byte_alg.extend(V::U(4).enc());
    two_byte_alg.extend(V::B(kid()).enc());
    let mut parts_extra_param = Parts::default();
    parts_extra_param.shared_params.push((V::U(5), V::U(0)));
    let mut parts_no_sv = Parts::default();
    parts_no_sv.shared_params.pop();
    let cases: Vec<(&str, Parts)> = vec![
        (
            "a severed install sequence",
            Parts {
                manifest_extra: vec![(V::U(20), install_digest)],
                envelope_extra: vec![(V::U(20), install.clone())],
                ..Parts::default()
            },
        ),
        (
            "an understood crit",
            with_protected(
                V::M(vec![
                    (V::U(1), V::N(-19)),
                    (V::U(2), V::A(vec![V::U(1)])),
                    (V::U(4), V::B(kid())),
                ])
                .enc(),
            ),
        ),
        (
            "alg in a non-preferred encoding",
            with_protected(two_byte_alg),
        ),
        (
            "no kid",
            with_protected(V::M(vec![(V::U(1), V::N(-19))]).enc()),
        ),
        (
            "kid in the unprotected header",
            Parts {
                protected: V::M(vec![(V::U(1), V::N(-19))]).enc(),
                unprotected: V::M(vec![(V::U(4), V::B(kid()))]),
                ..Parts::default()
            },
        ),
        (
            "a kid that is not the key's id",
            with_protected(V::M(vec![(V::U(1), V::N(-19)), (V::U(4), V::B(vec![9; 32]))]).enc()),
        ),
        (
            "manifest members in another order",
            Parts {
                manifest: Some(reordered),
                ..Parts::default()
            },
        ),
        (
            "an extra manifest member (reference-uri)",
            Parts {
                manifest_extra: vec![(V::U(4), V::T("https://example.com"))],
                ..Parts::default()
            },
        ),
        (
            "an integrated payload",
            Parts {
                envelope_extra: vec![(V::T("#image"), V::B(IMAGE.to_vec()))],
                ..Parts::default()
            },
        ),
        ("an extra parameter (component-slot)", parts_extra_param),
        ("no security version", parts_no_sv),
        (
            "another reporting policy",
            Parts {
                shared_sequence: vec![V::U(1), V::U(0), V::U(2), V::U(15)],
                ..Parts::default()
            },
        ),
    ];
    for (name, parts) in cases {
        let bytes = parts.build();
        assert_eq!(general(&bytes), Ok(()), "{name}: the general path refuses");
        assert!(
            verify_boot_envelope(&bytes, &public_key(), &Ed25519Verifier).is_err(),
            "{name}: the boot profile accepts"
        );
    }
}

/// Every single-byte change of a signed envelope is refused by the profile too.
#[test]
fn every_single_byte_mutation_is_refused() {
    let good = Parts::default().build();
    for (i, flip, bad) in single_byte_mutations(&good) {
        assert!(
            profile(&bad).is_err(),
            "mutation at byte {i} (xor {flip:#04x}) was accepted"
        );
    }
}
