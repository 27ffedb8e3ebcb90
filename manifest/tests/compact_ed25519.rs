//! [`CompactEd25519Verifier`] (salty, feature `compact-ed25519`) against the default
//! [`Ed25519Verifier`] (ed25519-dalek `verify_strict`): the same verdict, and the same
//! error, for every Wycheproof Ed25519 vector and for each strictness case the default
//! verifier is tested for (`wycheproof_ed25519.rs`, `byte_rules.rs`): small-order keys
//! (universal forgery), the eight small-order points in every encoding, non-canonical
//! keys, `S + L` malleability.
//!
//! The same vectors run on the Cortex-M4 under QEMU, where salty's field arithmetic is
//! assembly instead of the portable code tested here: `compact_ed25519_qemu.rs`.
#![cfg(feature = "compact-ed25519")]

mod assemble;
mod ed25519_cases;

use std::collections::BTreeMap;

use assemble::{Parts, public_key, signing_key, verify_with};
use ed25519_cases::{
    IDENTITY, L, WYCHEPROOF_TESTS, add_le, identity_r_signature, mixed_order_signature,
    small_order_encodings, small_order_key_forgery, wycheproof_cases,
};
use ed25519_dalek::Signer as _;
use rota_manifest::{
    CompactEd25519Verifier, Ed25519Verifier, Envelope, Error, Policy, PublicKey,
    SignatureAlgorithm, Verifier,
};

/// Both verifiers on one input: (compact, default).
fn both(key: &[u8; 32], msg: &[u8], sig: &[u8]) -> (Result<(), Error>, Result<(), Error>) {
    (
        CompactEd25519Verifier::verify_raw(key, msg, sig),
        Ed25519Verifier::verify_raw(key, msg, sig),
    )
}

/// Asserts both verifiers return exactly `expected`.
#[track_caller]
fn assert_both(key: &[u8; 32], msg: &[u8], sig: &[u8], expected: Result<(), Error>, what: &str) {
    let (compact, default) = both(key, msg, sig);
    assert_eq!(default, expected, "ed25519-dalek on {what}");
    assert_eq!(compact, expected, "salty on {what}");
}

#[test]
fn wycheproof_ed25519_compact_verifier_agrees_with_the_default_on_every_vector() {
    let mut counts: BTreeMap<(bool, bool), usize> = BTreeMap::new();
    let mut disagreements = Vec::new();
    for case in wycheproof_cases() {
        let (compact, default) = both(&case.key, &case.msg, &case.sig);
        *counts.entry((case.valid, compact.is_ok())).or_default() += 1;
        if compact != default || compact.is_ok() != case.valid {
            disagreements.push(format!(
                "tcId {} ({}): expected valid={}, salty {compact:?}, ed25519-dalek {default:?}",
                case.tc_id, case.comment, case.valid
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{counts:?}\n{}",
        disagreements.join("\n")
    );
    // (valid, accepted): every valid vector accepted, every invalid one refused.
    assert_eq!(counts.get(&(true, true)), Some(&88), "{counts:?}");
    assert_eq!(counts.get(&(false, false)), Some(&63), "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), WYCHEPROOF_TESTS);
}

/// A = R = identity, S = 0 satisfies `[S]B = R + [k]A` for every message. salty's own
/// `verify` accepts it (which is why the compact verifier adds its checks); neither rota
/// verifier does.
#[test]
fn compact_small_order_key_universal_forgery_is_rejected() {
    let key = IDENTITY;
    let signature = [&IDENTITY[..], &[0u8; 32]].concat();
    let lax = salty::PublicKey::try_from(&key).unwrap();
    let lax_sig = salty::Signature::from(&<[u8; 64]>::try_from(&signature[..]).unwrap());
    for msg in [&b""[..], b"any firmware", b"\x00\xff"] {
        assert!(
            lax.verify(msg, &lax_sig).is_ok(),
            "salty's lax verify accepts"
        );
        assert_both(
            &key,
            msg,
            &signature,
            Err(Error::BadSignature),
            "small-order key",
        );
    }
}

/// Whether salty's own (lax) verify and ed25519-dalek's lenient `verify` accept: the
/// input passes the cofactorless equation, so a strict check is what refuses it.
#[track_caller]
fn lax_verifiers_accept(key: &[u8; 32], msg: &[u8], sig: &[u8]) {
    let sig: [u8; 64] = sig.try_into().unwrap();
    let salty_key = salty::PublicKey::try_from(key).unwrap();
    assert!(
        salty_key.verify(msg, &salty::Signature::from(&sig)).is_ok(),
        "salty's verify accepts"
    );
    use ed25519_dalek::Verifier as _;
    let dalek_key = ed25519_dalek::VerifyingKey::from_bytes(key).unwrap();
    assert!(
        dalek_key
            .verify(msg, &ed25519_dalek::Signature::from_bytes(&sig))
            .is_ok(),
        "ed25519-dalek's lenient verify accepts"
    );
}

/// A small-order key with an R of *large* order ([s]B, S = s): only the small-order-A
/// check refuses it (the R check cannot).
#[test]
fn compact_small_order_key_forgery_with_large_order_r_is_rejected() {
    for s in [1, 2, 0xdead_beef] {
        let (key, sig) = small_order_key_forgery(IDENTITY, s);
        for msg in [&b""[..], b"any firmware"] {
            lax_verifiers_accept(&key, msg, &sig);
            assert_both(
                &key,
                msg,
                &sig,
                Err(Error::BadSignature),
                "small-order key, R = [s]B",
            );
        }
    }
    // Keys of order 2, 4 and 8: the same forgery works for the messages whose k is a
    // multiple of the key's order; whatever the message, both refuse it alike.
    for key in small_order_encodings() {
        let (key, sig) = small_order_key_forgery(key, 3);
        for msg in [&b""[..], b"a", b"b", b"c", b"d", b"e", b"f", b"g"] {
            let (compact, default) = both(&key, msg, &sig);
            assert!(default.is_err());
            assert_eq!(compact, default, "{}", hex::encode(key));
        }
    }
}

/// R = identity under a genuine key, S = k·a: only the small-order-R check refuses it
/// (the key is sound).
#[test]
fn compact_identity_r_signature_under_a_genuine_key_is_rejected() {
    for secret in [5, 1 << 40, 0x0123_4567_89ab_cdef] {
        for msg in [&b""[..], b"firmware"] {
            let (key, sig) = identity_r_signature(secret, msg);
            lax_verifiers_accept(&key, msg, &sig);
            assert_both(&key, msg, &sig, Err(Error::BadSignature), "R = identity");
        }
    }
}

/// Mixed-order A and R (a prime-order point plus one of order 8) are not of small order:
/// `verify_strict` accepts a signature with them that satisfies the cofactorless
/// equation, and so must the compact verifier (no stricter than the default: it must
/// not refuse what the default accepts either).
#[test]
fn compact_accepts_mixed_order_key_and_r_as_verify_strict_does() {
    for (secret, nonce) in [(7, 11), (1 << 33, 99), (0xfeed, 0xface)] {
        for msg in [&b""[..], b"firmware"] {
            let (key, sig) = mixed_order_signature(secret, nonce, msg);
            assert!(
                !ed25519_dalek::VerifyingKey::from_bytes(&key)
                    .unwrap()
                    .to_edwards()
                    .is_torsion_free(),
                "the key has a torsion component"
            );
            assert_both(&key, msg, &sig, Ok(()), "mixed-order A and R");
        }
    }
}

#[test]
fn compact_rejects_the_eight_small_order_points_in_every_encoding_as_key_and_as_r() {
    let encodings = small_order_encodings();
    // 5 y values x 2 signs, plus y + p for y = 0 and y = 1 x 2 signs.
    assert_eq!(encodings.len(), 14);
    let mut canonical_points = 0;
    for e in &encodings {
        // Each decodes to a small-order point (so the vector is meaningful) …
        let point = ed25519_dalek::VerifyingKey::from_bytes(e).expect("decodes");
        assert!(point.is_weak(), "{}", hex::encode(e));
        // (`to_bytes` would give back the input: re-encode the decoded point.)
        let canonical = point.to_edwards().compress().to_bytes() == *e;
        canonical_points += usize::from(canonical);

        // … as the key: refused, with ed25519-dalek's error (InvalidPublicKey for a
        // non-canonical encoding, BadSignature for a canonical one, refused at
        // verification), whatever R and S.
        let expected = if canonical {
            Err(Error::BadSignature)
        } else {
            Err(Error::InvalidPublicKey)
        };
        for r in &encodings {
            for s in [[0u8; 32], [1u8; 32], {
                let mut one = [0u8; 32];
                one[0] = 1;
                one
            }] {
                let sig = [&r[..], &s[..]].concat();
                assert_both(e, b"m", &sig, expected, "small-order key");
            }
        }

        // As R, with the real key: refused. S = 0 is what a forger who knows that the
        // key has a small-order component would try; any S will do here.
        let key = signing_key().verifying_key().to_bytes();
        for s in [[0u8; 32], [7u8; 32]] {
            let sig = [&e[..], &s[..]].concat();
            assert_both(&key, b"m", &sig, Err(Error::BadSignature), "small-order R");
        }
    }
    // The eight points (x = 0 has one encoding with the sign bit clear: 8 canonical).
    assert_eq!(canonical_points, 8);
}

/// A key encoded with y + p (≥ p) names the same point as its canonical encoding and is
/// refused as a key (RFC 8032 §5.1.3); as in `wycheproof_ed25519.rs`.
#[test]
fn compact_non_canonical_public_key_encoding_is_rejected() {
    let mut tested = 0;
    for y in 2u8..=18 {
        let mut canonical = [0u8; 32];
        canonical[0] = y;
        let Ok(point) = ed25519_dalek::VerifyingKey::from_bytes(&canonical) else {
            // No curve point with this y: both refuse the key.
            assert_both(
                &canonical,
                b"m",
                &[0x11; 64],
                Err(Error::InvalidPublicKey),
                "y off the curve",
            );
            continue;
        };
        if point.is_weak() {
            continue;
        }
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xed + y;
        non_canonical[31] = 0x7f;
        let signature = [0x11u8; 64];
        assert_both(
            &canonical,
            b"m",
            &signature,
            Err(Error::BadSignature),
            "canonical key",
        );
        assert_both(
            &non_canonical,
            b"m",
            &signature,
            Err(Error::InvalidPublicKey),
            "y + p",
        );
        // The same with the sign bit set.
        let (mut canonical_neg, mut non_canonical_neg) = (canonical, non_canonical);
        canonical_neg[31] |= 0x80;
        non_canonical_neg[31] |= 0x80;
        assert_both(
            &canonical_neg,
            b"m",
            &signature,
            Err(Error::BadSignature),
            "canonical key, x negative",
        );
        assert_both(
            &non_canonical_neg,
            b"m",
            &signature,
            Err(Error::InvalidPublicKey),
            "y + p, x negative",
        );
        tested += 1;
    }
    assert!(tested > 0, "some y in 2..=18 is on the curve");
}

/// `S + L` verifies under a lax check (salty's own `verify` accepts it); both rota
/// verifiers refuse it (RFC 8032 §5.1.7: S < L), as does `S + 2L`, … while S verifies.
#[test]
fn compact_rejects_malleable_signature_s_plus_multiples_of_l() {
    let key = signing_key();
    let pk = key.verifying_key().to_bytes();
    for msg in [&b""[..], b"firmware", &[0xa5; 1000]] {
        let good = key.sign(msg).to_bytes();
        assert_both(&pk, msg, &good, Ok(()), "the genuine signature");
        let mut s: [u8; 32] = good[32..].try_into().unwrap();
        let mut multiple = 0;
        // S + kL for every k that keeps it below 2^256.
        loop {
            let next = add_le(&s, &L);
            if next.iter().rev().lt(s.iter().rev()) {
                break; // wrapped past 2^256
            }
            s = next;
            multiple += 1;
            let sig = [&good[..32], &s[..]].concat();
            if multiple == 1 {
                let lax = salty::PublicKey::try_from(&pk).unwrap();
                let lax_sig = salty::Signature::from(&<[u8; 64]>::try_from(&sig[..]).unwrap());
                assert!(
                    lax.verify(msg, &lax_sig).is_ok(),
                    "salty's lax verify accepts"
                );
            }
            assert_both(&pk, msg, &sig, Err(Error::BadSignature), "S + kL");
        }
        assert_eq!(
            multiple, 15,
            "S + kL < 2^256 for k up to 15 (S < L < 2^253)"
        );
        // S = L exactly, with the genuine R: the boundary of the rule.
        let sig = [&good[..32], &L[..]].concat();
        assert_both(&pk, msg, &sig, Err(Error::BadSignature), "S = L");
    }
}

/// The envelope path with the compact verifier, as in `byte_rules.rs`: a well-formed
/// envelope authenticates, and S + L in its COSE signature is a bad signature.
#[test]
fn compact_verifier_authenticates_envelopes_and_rejects_s_plus_l_in_one() {
    let authenticate = |bytes: &[u8]| {
        let policy = Policy::default();
        Envelope::decode(bytes, &policy)?
            .authenticate(&[public_key()], &CompactEd25519Verifier, &policy)
            .map(|_| ())
    };
    let parts = Parts::default();
    let good = parts.build();
    assert_eq!(authenticate(&good), Ok(()));
    assert_eq!(verify_with(&good, &Policy::default()), Ok(()));

    let env = Envelope::decode(&good, &Policy::default()).unwrap();
    let (_, _, mut blocks) = env.authentication_wrapper().unwrap();
    let mut sig = blocks.next().unwrap().unwrap().signature.to_vec();
    let s_plus_l = add_le(&sig[32..], &L);
    sig[32..].copy_from_slice(&s_plus_l);
    let bad = Parts {
        signature: Some(sig),
        ..parts
    }
    .build();
    assert_eq!(authenticate(&bad), Err(Error::BadSignature));
    assert_eq!(
        verify_with(&bad, &Policy::default()),
        Err(Error::BadSignature)
    );
}

/// The `Verifier` trait: same answer for every algorithm and key kind, EdDSA (-8)
/// verified as Ed25519 (the envelope's policy decides whether -8 gets this far).
#[test]
fn compact_verifier_trait_mirrors_the_default_for_every_algorithm_and_key_kind() {
    let key = signing_key();
    let msg = b"manifest";
    let good = key.sign(msg).to_bytes();
    let mut bad = good;
    bad[0] ^= 1;
    let ed = PublicKey::Ed25519(key.verifying_key().to_bytes());
    let p256 = PublicKey::P256([4; 65]);
    let mut off_curve = [0u8; 32];
    off_curve[0] = 2; // y = 2 is not on the curve
    let off = PublicKey::Ed25519(off_curve);
    use SignatureAlgorithm::*;
    for alg in [Ed25519, EdDsa, Es256, Esp256] {
        for pk in [&ed, &p256, &off] {
            for sig in [&good[..], &bad[..], &good[..63], &[0u8; 0][..]] {
                let compact = CompactEd25519Verifier.verify(alg, pk, msg, sig);
                let default = Ed25519Verifier.verify(alg, pk, msg, sig);
                assert_eq!(compact, default, "{alg:?} {pk:?} {}", hex::encode(sig));
            }
        }
    }
    assert_eq!(
        CompactEd25519Verifier.verify(Ed25519, &ed, msg, &good),
        Ok(())
    );
    assert_eq!(
        CompactEd25519Verifier.verify(EdDsa, &ed, msg, &good),
        Ok(())
    );
    assert_eq!(
        CompactEd25519Verifier.verify(Es256, &ed, msg, &good),
        Err(Error::UnsupportedAlgorithm { alg: -7 })
    );
    assert_eq!(
        CompactEd25519Verifier.verify(Ed25519, &p256, msg, &good),
        Err(Error::UnsupportedAlgorithm { alg: -19 })
    );
    assert_eq!(
        CompactEd25519Verifier.verify(Ed25519, &off, msg, &good),
        Err(Error::InvalidPublicKey)
    );
    assert_eq!(
        CompactEd25519Verifier.verify(Ed25519, &ed, msg, &bad),
        Err(Error::BadSignature)
    );
    // Wrong lengths: too short, and with a byte appended (RFC 8032 §5.1.7).
    assert_eq!(
        CompactEd25519Verifier.verify(Ed25519, &ed, msg, &good[..63]),
        Err(Error::BadSignature)
    );
    let long = [&good[..], &[0]].concat();
    assert_eq!(
        CompactEd25519Verifier.verify(Ed25519, &ed, msg, &long),
        Err(Error::BadSignature)
    );
}
