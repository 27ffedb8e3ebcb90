//! Differential test of [`CompactEd25519Verifier`] (salty) against [`Ed25519Verifier`]
//! (ed25519-dalek `verify_strict`): random keys, messages and signatures, and genuine
//! signatures mutated in the ways a strict verifier must notice, get the same result
//! (verdict and error) from both.
#![cfg(feature = "compact-ed25519")]

use ed25519_dalek::{Signer as _, SigningKey};
use proptest::prelude::*;
use rota_manifest::{CompactEd25519Verifier, Ed25519Verifier};

mod ed25519_cases;

use ed25519_cases::{
    L, add_le, identity_r_signature, mixed_order_signature, small_order_encodings,
    small_order_key_forgery,
};

#[track_caller]
fn same_verdict(key: &[u8; 32], msg: &[u8], sig: &[u8]) -> Result<(), TestCaseError> {
    let compact = CompactEd25519Verifier::verify_raw(key, msg, sig);
    let default = Ed25519Verifier::verify_raw(key, msg, sig);
    prop_assert_eq!(
        compact,
        default,
        "key {} msg {} sig {}",
        hex::encode(key),
        hex::encode(msg),
        hex::encode(sig)
    );
    Ok(())
}

/// A way to damage a genuine (key, message, signature).
#[derive(Clone, Debug)]
enum Mutation {
    /// None: the genuine signature (must verify under both).
    Keep,
    FlipSignatureBit(usize),
    FlipKeyBit(usize),
    FlipMessageBit(usize),
    /// S + L: the malleable twin.
    AddLToS,
    /// One of the top three bits of S set (what the lax "legacy" check looks at).
    SetHighBitOfS(u8),
    /// R replaced by a small-order point (any of its 14 encodings).
    SmallOrderR(usize),
    /// A replaced by a small-order point, S = 0 and R = that point: the forgery.
    SmallOrderKeyForgery(usize),
    /// A replaced by a small-order point, R = [s]B and S = s: the forgery with an R of
    /// large order.
    SmallOrderKeyLargeR(usize, u64),
    /// A re-encoded with the sign bit flipped (-A), R kept.
    NegateKey,
    /// R and S swapped, or S random below L with the genuine R.
    SwapRandS,
    RandomS([u8; 32]),
    /// A truncated or extended signature.
    Truncate(usize),
    Extend(u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        Just(Mutation::Keep),
        (0..512usize).prop_map(Mutation::FlipSignatureBit),
        (0..256usize).prop_map(Mutation::FlipKeyBit),
        (0..64usize).prop_map(Mutation::FlipMessageBit),
        Just(Mutation::AddLToS),
        (5..8u8).prop_map(Mutation::SetHighBitOfS),
        (0..14usize).prop_map(Mutation::SmallOrderR),
        (0..14usize).prop_map(Mutation::SmallOrderKeyForgery),
        (0..14usize, any::<u64>()).prop_map(|(i, s)| Mutation::SmallOrderKeyLargeR(i, s)),
        Just(Mutation::NegateKey),
        Just(Mutation::SwapRandS),
        any::<[u8; 32]>().prop_map(|mut s| {
            s[31] &= 0x0f; // below 2^252 < L
            Mutation::RandomS(s)
        }),
        (0..64usize).prop_map(Mutation::Truncate),
        any::<u8>().prop_map(Mutation::Extend),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes: mostly keys off the curve, R off the curve or S ≥ L, refused
    /// early; the two must refuse them with the same error.
    #[test]
    fn random_keys_messages_and_signatures_get_the_same_verdict(
        key in any::<[u8; 32]>(),
        msg in proptest::collection::vec(any::<u8>(), 0..64),
        sig in proptest::collection::vec(any::<u8>(), 64..=64),
    ) {
        same_verdict(&key, &msg, &sig)?;
    }

    /// Arbitrary R, with a genuine key and S below L: the cases that reach the equation.
    #[test]
    fn random_r_and_small_s_under_a_genuine_key_get_the_same_verdict(
        seed in any::<[u8; 32]>(),
        r in any::<[u8; 32]>(),
        mut s in any::<[u8; 32]>(),
        msg in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        s[31] &= 0x0f;
        let key = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        same_verdict(&key, &msg, &[&r[..], &s[..]].concat())?;
    }

    /// Genuine signatures by random keys over random messages, then damaged.
    #[test]
    fn mutated_genuine_signatures_get_the_same_verdict(
        seed in any::<[u8; 32]>(),
        mut msg in proptest::collection::vec(any::<u8>(), 1..64),
        mutation in mutation(),
    ) {
        let signing = SigningKey::from_bytes(&seed);
        let mut key = signing.verifying_key().to_bytes();
        let mut sig = signing.sign(&msg).to_bytes().to_vec();
        match mutation {
            Mutation::Keep => {
                prop_assert!(CompactEd25519Verifier::verify_raw(&key, &msg, &sig).is_ok());
            }
            Mutation::FlipSignatureBit(bit) => sig[bit / 8] ^= 1 << (bit % 8),
            Mutation::FlipKeyBit(bit) => key[bit / 8] ^= 1 << (bit % 8),
            Mutation::FlipMessageBit(bit) => {
                let at = (bit / 8) % msg.len();
                msg[at] ^= 1 << (bit % 8);
            }
            Mutation::AddLToS => {
                let s = add_le(&sig[32..], &L);
                sig[32..].copy_from_slice(&s);
            }
            Mutation::SetHighBitOfS(bit) => sig[63] |= 1 << bit,
            Mutation::SmallOrderR(i) => sig[..32].copy_from_slice(&small_order_encodings()[i]),
            Mutation::SmallOrderKeyForgery(i) => {
                key = small_order_encodings()[i];
                sig[..32].copy_from_slice(&key);
                sig[32..].fill(0);
            }
            Mutation::SmallOrderKeyLargeR(i, s) => {
                (key, sig) = small_order_key_forgery(small_order_encodings()[i], s);
            }
            Mutation::NegateKey => key[31] ^= 0x80,
            Mutation::SwapRandS => {
                let (r, s) = sig.split_at_mut(32);
                r.swap_with_slice(s);
            }
            Mutation::RandomS(s) => sig[32..].copy_from_slice(&s),
            Mutation::Truncate(len) => sig.truncate(len),
            Mutation::Extend(byte) => sig.push(byte),
        }
        same_verdict(&key, &msg, &sig)?;
    }
}

// Built with salty's (portable, slow) curve arithmetic on the host: fewer cases.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// R = identity with S = k·a passes the cofactorless equation; both refuse it.
    #[test]
    fn identity_r_signatures_by_random_keys_are_refused_alike(
        secret in any::<u64>(),
        msg in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (key, sig) = identity_r_signature(secret, &msg);
        prop_assert!(Ed25519Verifier::verify_raw(&key, &msg, &sig).is_err());
        same_verdict(&key, &msg, &sig)?;
    }

    /// Mixed-order keys and R: valid for both; and with one bit flipped, refused alike.
    #[test]
    fn mixed_order_signatures_get_the_same_verdict(
        secret in any::<u64>(),
        nonce in any::<u64>(),
        msg in proptest::collection::vec(any::<u8>(), 0..64),
        flip in proptest::option::of(0..768usize),
    ) {
        let (mut key, mut sig) = mixed_order_signature(secret, nonce, &msg);
        prop_assert!(Ed25519Verifier::verify_raw(&key, &msg, &sig).is_ok());
        match flip {
            Some(bit) if bit < 512 => sig[bit / 8] ^= 1 << (bit % 8),
            Some(bit) => key[(bit - 512) / 8] ^= 1 << (bit % 8),
            None => {}
        }
        same_verdict(&key, &msg, &sig)?;
    }
}
