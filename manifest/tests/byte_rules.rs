//! One test per byte rule of the manifest issue. Each violating envelope is otherwise
//! well-formed and validly signed, so the error proves the rule is what rejects it.

mod assemble;

use assemble::{
    IMAGE, Parts, V, install_sequence, public_key, sha256, single_byte_mutations, verify,
    verify_with, wrap,
};
use ed25519_dalek::Signer as _;
use rota_manifest::{Ed25519Verifier, Envelope, Error, ImageDigest, Policy};

#[test]
fn well_formed_envelope_verifies() {
    assert_eq!(verify(&Parts::default().build()), Ok(()));
}

// ---- the manifest digest covers the bstr-wrapped manifest, header included (SUIT §8.3) ----

#[test]
fn manifest_digest_must_cover_bstr_header() {
    let parts = Parts {
        digest_over_content_only: true,
        ..Parts::default()
    };
    assert_eq!(verify(&parts.build()), Err(Error::ManifestDigestMismatch));
}

#[test]
fn tampered_manifest_fails_digest() {
    let mut bytes = Parts::default().build();
    // The sequence number `02 07` sits inside the manifest; bump it to 8.
    let at = bytes.windows(2).position(|w| w == [0x02, 0x07]).unwrap();
    bytes[at + 1] = 0x08;
    assert_eq!(verify(&bytes), Err(Error::ManifestDigestMismatch));
}

// ---- Sig_structure uses the protected header bytes exactly as received (RFC 9052 §4.4) ----

#[test]
fn sig_structure_uses_protected_bytes_as_received() {
    // {1: -19} with -19 in a non-preferred two-byte form: a verifier that re-encodes
    // the header would hash `a1 01 32` and fail.
    let kid = public_key().key_id().to_vec();
    let mut protected = vec![0xa2, 0x01, 0x38, 0x12];
    protected.extend(V::U(4).enc());
    protected.extend(V::B(kid).enc());
    let parts = Parts {
        protected,
        ..Parts::default()
    };
    assert_eq!(verify(&parts.build()), Ok(()));
}

#[test]
fn signature_over_reencoded_protected_header_is_rejected() {
    let canonical = Parts::default().protected;
    let mut received = canonical.clone();
    received[2..3].copy_from_slice(&[0x38]);
    received.insert(3, 0x12);
    let parts = Parts {
        protected: received,
        sign_protected: Some(canonical),
        ..Parts::default()
    };
    assert_eq!(verify(&parts.build()), Err(Error::BadSignature));
}

// ---- trailing bytes (RFC 8949 §5.3: a structure ends where its container ends) ----

#[test]
fn rejects_trailing_bytes_after_envelope() {
    let mut bytes = Parts::default().build();
    let end = bytes.len();
    bytes.push(0x00);
    assert_eq!(verify(&bytes), Err(Error::TrailingBytes { offset: end }));
}

#[test]
fn rejects_trailing_bytes_inside_manifest_bstr() {
    let mut manifest = Parts::default().manifest().enc();
    manifest.push(0x00);
    let parts = Parts {
        manifest: Some(V::Raw(manifest)),
        ..Parts::default()
    };
    assert!(matches!(
        verify(&parts.build()),
        Err(Error::TrailingBytes { .. })
    ));
}

#[test]
fn rejects_trailing_bytes_inside_protected_header() {
    let mut protected = Parts::default().protected;
    protected.push(0x00);
    let parts = Parts {
        protected,
        ..Parts::default()
    };
    assert!(matches!(
        verify(&parts.build()),
        Err(Error::TrailingBytes { .. })
    ));
}

// ---- duplicate map keys (RFC 8949 §5.6) ----

#[test]
fn rejects_duplicate_key_in_envelope() {
    let manifest = V::B(Parts::default().manifest().enc());
    let parts = Parts {
        envelope_extra: vec![(V::U(3), manifest)],
        ..Parts::default()
    };
    assert!(matches!(
        verify(&parts.build()),
        Err(Error::DuplicateKey { .. })
    ));
}

#[test]
fn rejects_duplicate_key_in_manifest() {
    let parts = Parts {
        manifest_extra: vec![(V::U(2), V::U(99))],
        ..Parts::default()
    };
    assert!(matches!(
        verify(&parts.build()),
        Err(Error::DuplicateKey { .. })
    ));
}

#[test]
fn rejects_duplicate_parameter() {
    let mut parts = Parts::default();
    parts.shared_params.push((V::U(14), V::U(1)));
    assert!(matches!(
        verify(&parts.build()),
        Err(Error::DuplicateKey { .. })
    ));
}

#[test]
fn rejects_duplicate_key_in_protected_header() {
    let parts = Parts {
        protected: V::M(vec![(V::U(1), V::N(-19)), (V::U(1), V::N(-19))]).enc(),
        ..Parts::default()
    };
    assert!(matches!(
        verify(&parts.build()),
        Err(Error::DuplicateKey { .. })
    ));
}

#[test]
fn duplicate_keys_are_found_by_value_across_encodings() {
    // Parameter 14 (image-size) twice: once as `0e`, once in the two-byte form `18 0e`.
    let mut parts = Parts::default();
    parts
        .shared_params
        .push((V::Raw(vec![0x18, 0x0e]), V::U(1)));
    assert!(matches!(
        verify(&parts.build()),
        Err(Error::DuplicateKey { .. })
    ));
}

/// Opaque members are walked before authentication, so their nesting is bounded: the
/// bootloader's stack must not depend on what an attacker sends.
#[test]
fn rejects_deeply_nested_opaque_data_before_authentication() {
    let nested = |depth: usize| {
        let mut v = V::U(0);
        for _ in 0..depth {
            v = V::M(vec![(V::U(1), v)]);
        }
        v
    };
    // A digest extension (SUIT_Digest allows `* $$SUIT_Digest-extensions`) nested 8 deep
    // is fine; 9 deep is refused.
    for (depth, ok) in [(8, true), (9, false)] {
        let mut digest = vec![0x83, 0x2f, 0x58, 0x20]; // [-16, h'<32 bytes>', extension]
        digest.extend([0u8; 32]);
        digest.extend(nested(depth).enc());
        let wrapper = V::A(vec![V::B(digest)]);
        let envelope = V::Tag(
            107,
            Box::new(V::M(vec![
                (V::U(2), wrap(&wrapper)),
                (V::U(3), V::B(Parts::default().manifest().enc())),
            ])),
        )
        .enc();
        let result = Envelope::decode(&envelope, &Policy::default());
        if ok {
            assert!(result.is_ok(), "depth {depth}: {result:?}");
        } else {
            assert!(
                matches!(
                    result,
                    Err(Error::LimitExceeded {
                        limit: "nesting depth",
                        ..
                    })
                ),
                "depth {depth}: {result:?}"
            );
        }
    }
}

// ---- crit (RFC 9052 §3.1) ----

#[test]
fn rejects_unknown_critical_header() {
    let parts = Parts {
        protected: V::M(vec![
            (V::U(1), V::N(-19)),
            (V::U(2), V::A(vec![V::N(-70000)])),
            (V::N(-70000), V::U(1)),
        ])
        .enc(),
        ..Parts::default()
    };
    assert_eq!(
        verify(&parts.build()),
        Err(Error::UnknownCriticalHeader {
            label: Some(-70000)
        })
    );
}

#[test]
fn rejects_text_label_in_crit() {
    let parts = Parts {
        protected: V::M(vec![
            (V::U(1), V::N(-19)),
            (V::U(2), V::A(vec![V::T("x-vendor")])),
            (V::T("x-vendor"), V::U(1)),
        ])
        .enc(),
        ..Parts::default()
    };
    assert_eq!(
        verify(&parts.build()),
        Err(Error::UnknownCriticalHeader { label: None })
    );
}

#[test]
fn rejects_crit_in_unprotected_header() {
    let parts = Parts {
        unprotected: V::M(vec![(V::U(2), V::A(vec![V::U(4)]))]),
        ..Parts::default()
    };
    assert!(matches!(
        verify(&parts.build()),
        Err(Error::InvalidMember { .. })
    ));
}

#[test]
fn accepts_understood_critical_header() {
    let parts = Parts {
        protected: V::M(vec![(V::U(1), V::N(-19)), (V::U(2), V::A(vec![V::U(1)]))]).enc(),
        ..Parts::default()
    };
    assert_eq!(verify(&parts.build()), Ok(()));
}

// ---- alg placement (RFC 9052 §3, §3.1) ----

#[test]
fn rejects_algorithm_only_in_unprotected_header() {
    let parts = Parts {
        protected: vec![],
        unprotected: V::M(vec![(V::U(1), V::N(-19))]),
        ..Parts::default()
    };
    assert_eq!(
        verify(&parts.build()),
        Err(Error::AlgorithmInUnprotectedHeader)
    );
}

#[test]
fn rejects_algorithm_in_both_headers() {
    let parts = Parts {
        unprotected: V::M(vec![(V::U(1), V::N(-19))]),
        ..Parts::default()
    };
    assert_eq!(
        verify(&parts.build()),
        Err(Error::HeaderInBothBuckets { label: 1 })
    );
}

#[test]
fn rejects_missing_algorithm() {
    let parts = Parts {
        protected: vec![],
        ..Parts::default()
    };
    assert_eq!(verify(&parts.build()), Err(Error::AlgorithmNotProtected));
}

#[test]
fn eddsa_minus_8_needs_explicit_policy() {
    let parts = Parts {
        protected: V::M(vec![(V::U(1), V::N(-8))]).enc(),
        ..Parts::default()
    };
    let bytes = parts.build();
    assert_eq!(verify(&bytes), Err(Error::UnsupportedAlgorithm { alg: -8 }));
    let lenient = Policy {
        allow_eddsa_8: true,
        ..Policy::default()
    };
    assert_eq!(verify_with(&bytes, &lenient), Ok(()));
}

// ---- tags (SUIT §8.2 SUIT_Envelope_Tagged, §8.3 COSE_Sign1_Tagged) ----

#[test]
fn rejects_untagged_cose() {
    let parts = Parts {
        cose_tag: None,
        ..Parts::default()
    };
    assert_eq!(verify(&parts.build()), Err(Error::UntaggedCose));
}

#[test]
fn rejects_untagged_envelope_unless_policy_allows() {
    let parts = Parts {
        envelope_tag: None,
        ..Parts::default()
    };
    let bytes = parts.build();
    assert_eq!(verify(&bytes), Err(Error::UntaggedEnvelope));
    let teep = Policy {
        allow_untagged_envelope: true,
        ..Policy::default()
    };
    assert_eq!(verify_with(&bytes, &teep), Ok(()));
}

#[test]
fn rejects_wrong_envelope_tag() {
    let parts = Parts {
        envelope_tag: Some(18),
        ..Parts::default()
    };
    assert_eq!(
        verify(&parts.build()),
        Err(Error::WrongEnvelopeTag { tag: 18 })
    );
}

// ---- the authentication wrapper comes first (SUIT §8.3) ----

/// A streaming processor would act on a manifest it has not authenticated yet. The
/// offset is that of the first member, key 3, right after `d8 6b a2`.
#[test]
fn rejects_manifest_before_authentication_wrapper() {
    let parts = Parts {
        manifest_first: true,
        ..Parts::default()
    };
    assert_eq!(
        verify(&parts.build()),
        Err(Error::AuthenticationWrapperNotFirst { offset: 3 })
    );
}

#[test]
fn rejects_severed_member_or_integrated_payload_before_authentication_wrapper() {
    let install = install_sequence();
    let severed = Parts {
        manifest_extra: vec![(
            V::U(20),
            V::A(vec![V::N(-16), V::B(sha256(&install.enc()))]),
        )],
        envelope_leading: vec![(V::U(20), install)],
        ..Parts::default()
    };
    let integrated = Parts {
        envelope_leading: vec![(V::T("#image"), V::B(IMAGE.to_vec()))],
        ..Parts::default()
    };
    for parts in [severed, integrated] {
        assert_eq!(
            verify(&parts.build()),
            Err(Error::AuthenticationWrapperNotFirst { offset: 3 })
        );
    }
}

/// §8.3 allows `suit-delegation` (key 1) before the wrapper.
#[test]
fn accepts_delegation_before_authentication_wrapper() {
    let parts = Parts {
        envelope_leading: vec![(V::U(1), wrap(&V::A(vec![])))],
        ..Parts::default()
    };
    assert_eq!(verify(&parts.build()), Ok(()));
}

#[test]
fn rejects_cose_mac0_as_unsupported() {
    let parts = Parts {
        cose_tag: Some(17),
        ..Parts::default()
    };
    assert_eq!(
        verify(&parts.build()),
        Err(Error::UnsupportedAuthenticationBlock { tag: Some(17) })
    );
}

#[test]
fn rejects_attached_payload() {
    let parts = Parts {
        payload: V::B(b"payload".to_vec()),
        ..Parts::default()
    };
    assert_eq!(verify(&parts.build()), Err(Error::AttachedPayload));
}

// ---- digest algorithm must match its digest (SUIT §10) ----

#[test]
fn rejects_digest_algorithm_that_does_not_match_its_length() {
    // SHA-512's id with a 32-byte digest.
    let parts = Parts {
        digest_alg: -44,
        ..Parts::default()
    };
    assert_eq!(
        verify(&parts.build()),
        Err(Error::DigestLengthMismatch { alg: -44, len: 32 })
    );
}

#[test]
fn rejects_image_digest_of_wrong_length() {
    let mut parts = Parts::default();
    parts.shared_params[2].1 = wrap(&V::A(vec![V::N(-16), V::B(vec![0; 31])]));
    assert_eq!(
        verify(&parts.build()),
        Err(Error::DigestLengthMismatch { alg: -16, len: 31 })
    );
}

#[test]
fn rejects_unsupported_manifest_digest_algorithm() {
    // A well-formed SHA-384 digest: rota hashes with SHA-256 only (one hash keeps the
    // bootloader small), so it names the algorithm rather than reporting a mismatch.
    let parts = Parts {
        digest_alg: -43,
        digest_bytes: Some(vec![0; 48]),
        ..Parts::default()
    };
    assert_eq!(
        verify(&parts.build()),
        Err(Error::UnsupportedDigestAlgorithm { alg: -43 })
    );
}

// ---- severable members (SUIT §8.4.11) ----

#[test]
fn severed_install_verifies_and_yields_uri() {
    let install = install_sequence();
    let digest = V::A(vec![V::N(-16), V::B(sha256(&install.enc()))]);
    let parts = Parts {
        manifest_extra: vec![(V::U(20), digest)],
        envelope_extra: vec![(V::U(20), install)],
        ..Parts::default()
    };
    let bytes = parts.build();
    let env = Envelope::decode(&bytes, &Policy::default()).unwrap();
    let auth = env
        .authenticate(&[public_key()], &Ed25519Verifier, &Policy::default())
        .unwrap();
    assert_eq!(
        auth.claims(0, None).unwrap().uri,
        Some("https://updates.example/fw.bin")
    );
}

#[test]
fn rejects_tampered_severable_member() {
    let install = install_sequence();
    let digest = V::A(vec![V::N(-16), V::B(sha256(&install.enc()))]);
    let mut tampered = install.enc();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01; // 15 -> 14: a different reporting policy
    let parts = Parts {
        manifest_extra: vec![(V::U(20), digest)],
        envelope_extra: vec![(V::U(20), V::Raw(tampered))],
        ..Parts::default()
    };
    assert_eq!(
        verify(&parts.build()),
        Err(Error::SeverableMemberDigestMismatch {
            member: "install sequence"
        })
    );
}

#[test]
fn severable_digest_covers_bstr_header() {
    let install = install_sequence();
    let V::B(content) = &install else {
        unreachable!()
    };
    let digest = V::A(vec![V::N(-16), V::B(sha256(content))]);
    let parts = Parts {
        manifest_extra: vec![(V::U(20), digest)],
        envelope_extra: vec![(V::U(20), install)],
        ..Parts::default()
    };
    assert!(matches!(
        verify(&parts.build()),
        Err(Error::SeverableMemberDigestMismatch { .. })
    ));
}

#[test]
fn severed_extension_digest_is_found_past_a_digest_at_the_nesting_limit() {
    // The install digest (20) carries a SUIT_Digest extension nested as deep as rota
    // accepts; a severed extension member (14) follows it. Finding 14's digest re-reads
    // the manifest past 20, which must not apply the depth limit a second time.
    let install = install_sequence();
    let mut deep = V::U(0);
    for _ in 0..rota_manifest::MAX_DEPTH {
        deep = V::M(vec![(V::U(1), deep)]);
    }
    let install_digest = V::A(vec![V::N(-16), V::B(sha256(&install.enc())), deep]);
    let member = V::B(b"extension member".to_vec());
    let member_digest = V::A(vec![V::N(-16), V::B(sha256(&member.enc()))]);
    let parts = Parts {
        manifest_extra: vec![(V::U(20), install_digest), (V::U(24), member_digest)],
        envelope_extra: vec![(V::U(20), install), (V::U(24), member)],
        ..Parts::default()
    };
    assert_eq!(verify(&parts.build()), Ok(()));
}

#[test]
fn rejects_severed_member_without_digest() {
    let parts = Parts {
        envelope_extra: vec![(V::U(20), install_sequence())],
        ..Parts::default()
    };
    assert_eq!(
        verify(&parts.build()),
        Err(Error::SeverableMemberWithoutDigest {
            member: "install sequence"
        })
    );
}

#[test]
fn rejects_member_both_inline_and_severed() {
    let parts = Parts {
        manifest_extra: vec![(V::U(20), install_sequence())],
        envelope_extra: vec![(V::U(20), install_sequence())],
        ..Parts::default()
    };
    assert_eq!(
        verify(&parts.build()),
        Err(Error::SeverableMemberTwice {
            member: "install sequence"
        })
    );
}

// ---- strict Ed25519 (RFC 8032 §5.1.7; no malleability) ----

#[test]
fn rejects_malleable_signature_s_plus_l() {
    // Sign, then add the group order L to S: the same signature under the lax check.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let parts = Parts::default();
    let good = parts.build();
    let env = Envelope::decode(&good, &Policy::default()).unwrap();
    let (_, _, mut blocks) = env.authentication_wrapper().unwrap();
    let mut sig = blocks.next().unwrap().unwrap().signature.to_vec();
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = sig[32 + i] as u16 + L[i] as u16 + carry;
        sig[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    let parts = Parts {
        signature: Some(sig),
        ..parts
    };
    assert_eq!(verify(&parts.build()), Err(Error::BadSignature));
}

#[test]
fn rejects_signature_by_another_key_claiming_trusted_kid() {
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let forged = Parts {
        signature: Some(other.sign(b"anything").to_bytes().to_vec()),
        ..Parts::default()
    };
    assert_eq!(verify(&forged.build()), Err(Error::BadSignature));
}

#[test]
fn unknown_kid_reports_no_trusted_key() {
    let parts = Parts {
        protected: V::M(vec![(V::U(1), V::N(-19)), (V::U(4), V::B(vec![1; 32]))]).enc(),
        signature: Some(vec![0; 64]),
        ..Parts::default()
    };
    assert_eq!(verify(&parts.build()), Err(Error::NoTrustedKey));
}

// ---- well-formedness ----

#[test]
fn rejects_indefinite_length_items() {
    let mut manifest = Parts::default().manifest().enc();
    // Re-encode the manifest map header as indefinite (0xbf ... 0xff).
    manifest[0] = 0xbf;
    manifest.push(0xff);
    let parts = Parts {
        manifest: Some(V::Raw(manifest)),
        ..Parts::default()
    };
    assert!(matches!(
        verify(&parts.build()),
        Err(Error::IndefiniteLength { .. })
    ));
}

#[test]
fn malformed_cbor_reports_its_offset() {
    let bytes = [0xd8, 0x6b, 0xa2, 0x02, 0x5f];
    let err = Envelope::decode(&bytes, &Policy::default()).unwrap_err();
    assert_eq!(err, Error::IndefiniteLength { offset: 4 });
    let err = Envelope::decode(&[0xd8, 0x6b, 0xa2, 0x02, 0x01], &Policy::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed CBOR at byte 4: expected authentication-wrapper (bstr)"
    );
}

#[test]
fn truncated_input_is_named_as_such() {
    let whole = Parts::default().build();
    for cut in [4, 40, whole.len() - 1] {
        let err = Envelope::decode(&whole[..cut], &Policy::default()).unwrap_err();
        assert_eq!(err, Error::Truncated { offset: cut }, "cut at {cut}");
    }
}

#[test]
fn input_that_is_not_an_envelope_is_named_as_such() {
    for bytes in [&b""[..], b"hello, world\n", &[0x82, 0x01, 0x02]] {
        let err = Envelope::decode(bytes, &Policy::default()).unwrap_err();
        assert_eq!(err, Error::NotAnEnvelope, "{bytes:?}");
    }
}

#[test]
fn rejects_unsupported_manifest_version() {
    let mut m = Parts::default().manifest();
    if let V::M(entries) = &mut m {
        entries[0].1 = V::U(2);
    }
    let parts = Parts {
        manifest: Some(m),
        ..Parts::default()
    };
    assert_eq!(
        verify(&parts.build()),
        Err(Error::UnsupportedManifestVersion { version: 2 })
    );
}

#[test]
fn rejects_component_index_out_of_range() {
    let mut parts = Parts::default();
    parts.shared_sequence.extend([V::U(12), V::U(1)]);
    assert!(matches!(
        verify(&parts.build()),
        Err(Error::ComponentIndexOutOfRange { index: 1, .. })
    ));
}

#[test]
fn claims_exist_only_for_listed_components() {
    let bytes = Parts::default().build();
    let env = Envelope::decode(&bytes, &Policy::default()).unwrap();
    let auth = env
        .authenticate(&[public_key()], &Ed25519Verifier, &Policy::default())
        .unwrap();
    assert!(auth.claims(0, None).is_ok());
    assert!(matches!(
        auth.claims(1, None),
        Err(Error::ComponentIndexOutOfRange { index: 1, .. })
    ));
}

// ---- the image ----

#[test]
fn image_check_streams_and_detects_tampering() {
    let bytes = Parts::default().build();
    let env = Envelope::decode(&bytes, &Policy::default()).unwrap();
    let auth = env
        .authenticate(&[public_key()], &Ed25519Verifier, &Policy::default())
        .unwrap();
    let claims = auth.claims(0, None).unwrap();
    assert_eq!(claims.security_version, Some(3));
    let digest = claims.image_digest.unwrap();

    let mut d = ImageDigest::new();
    for chunk in IMAGE.chunks(4) {
        d.update(chunk);
    }
    assert_eq!(d.check(&digest, claims.image_size), Ok(()));

    let mut tampered = IMAGE.to_vec();
    tampered[0] ^= 1;
    let mut d = ImageDigest::new();
    d.update(&tampered);
    assert_eq!(
        d.check(&digest, claims.image_size),
        Err(Error::ImageDigestMismatch)
    );

    let mut d = ImageDigest::new();
    d.update(&IMAGE[1..]);
    assert!(matches!(
        d.check(&digest, claims.image_size),
        Err(Error::ImageSizeMismatch { .. })
    ));
}

/// Every single-byte change anywhere in a signed envelope is refused: nothing in it
/// escapes authentication (the unprotected header is empty, the rest is signed or digested).
#[test]
fn every_single_byte_mutation_is_rejected() {
    let good = Parts::default().build();
    for (i, flip, bad) in single_byte_mutations(&good) {
        assert!(
            verify(&bad).is_err(),
            "mutation at byte {i} (xor {flip:#04x}) was accepted"
        );
    }
}
