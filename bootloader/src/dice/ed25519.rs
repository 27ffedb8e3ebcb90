//! The DICE layer's Ed25519 signing keys (RFC 8032 §5.1.5 and §5.1.6), on the primitives
//! the Cortex-M4 bootloader already links to verify images: salty's SHA-512 and
//! base-point multiplication, and rota-manifest's reduction mod L
//! ([`rota_manifest::crypto::scalar`], TweetNaCl's `modL`).
//!
//! Not salty's `Keypair`: its signing computes `S = r + h·a mod L` with salty's scalar
//! addition and multiplication, which verification never uses (~0.5 KB of the bootloader's
//! flash). Here `S = (h·a + r) mod L` is one product in column sums reduced once
//! ([`scalar::mul_add`]). The arithmetic is branch-free and indexes nothing by secret
//! data. Ed25519 is deterministic, so the signatures are exactly those of any other RFC
//! 8032 implementation: the tests compare them with ed25519-dalek's.
//!
//! With the `fast-dice` feature (hosts), the base-point multiplications are
//! curve25519-dalek's, on its precomputed tables: the same points, ~40 times faster.

use rota_manifest::crypto::scalar;
use salty::Sha512;

use super::cert::DiceSigner;
use super::{SEED_LEN, Secret};

/// An Ed25519 key pair from its 32-byte seed; the secret halves are wiped when dropped.
pub(super) struct SigningKey {
    /// The secret scalar `a`: the first half of SHA-512(seed), clamped.
    scalar: Secret<32>,
    /// The second half of SHA-512(seed): what the nonces are derived from.
    prefix: Secret<32>,
    /// `[a]B`, encoded.
    public: [u8; 32],
}

impl SigningKey {
    /// The key pair of `seed` (RFC 8032 §5.1.5).
    pub(super) fn from_seed(seed: &Secret<SEED_LEN>) -> Self {
        let hash = Secret::new(Sha512::new().updated(seed.expose()).finalize());
        let (mut scalar, mut prefix) = (Secret::new([0; 32]), Secret::new([0; 32]));
        scalar.0.copy_from_slice(&hash.expose()[..32]);
        prefix.0.copy_from_slice(&hash.expose()[32..]);
        scalar.0[0] &= 248;
        scalar.0[31] &= 127;
        scalar.0[31] |= 64;
        let public = base_times(scalar.expose());
        Self {
            scalar,
            prefix,
            public,
        }
    }
}

impl DiceSigner for SigningKey {
    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// RFC 8032 §5.1.6.
    fn sign(&self, message: &[u8]) -> [u8; 64] {
        // r = SHA-512(prefix ‖ M) mod L; R = [r]B.
        let r = Secret::new(scalar::reduce_wide(
            &Sha512::new()
                .updated(self.prefix.expose())
                .updated(message)
                .finalize(),
        ));
        let big_r = base_times(r.expose());
        // h = SHA-512(R ‖ A ‖ M) mod L; S = (h·a + r) mod L.
        let h = scalar::reduce_wide(
            &Sha512::new()
                .updated(&big_r)
                .updated(&self.public)
                .updated(message)
                .finalize(),
        );
        let s = scalar::mul_add(&h, self.scalar.expose(), r.expose());
        let mut signature = [0; 64];
        signature[..32].copy_from_slice(&big_r);
        signature[32..].copy_from_slice(&s);
        signature
    }
}

/// `[k]B`, encoded.
fn base_times(k: &[u8; 32]) -> [u8; 32] {
    #[cfg(not(feature = "fast-dice"))]
    return salty_base_times(k);
    #[cfg(feature = "fast-dice")]
    return dalek_base_times(k);
}

/// `[k]B` by salty (what the MCU bootloader links; its scalars wipe themselves when
/// dropped).
#[cfg(any(test, not(feature = "fast-dice")))]
fn salty_base_times(k: &[u8; 32]) -> [u8; 32] {
    use salty::{EdwardsPoint, Scalar};
    (&Scalar(*k) * &EdwardsPoint::basepoint()).compressed().0
}

/// `[k]B` by curve25519-dalek. `k` (a clamped secret scalar may exceed L) is reduced mod L
/// first, which changes nothing: B has order L (RFC 8032 §5.1).
#[cfg(feature = "fast-dice")]
fn dalek_base_times(k: &[u8; 32]) -> [u8; 32] {
    use zeroize::Zeroize as _;
    let mut k = curve25519_dalek::Scalar::from_bytes_mod_order(*k);
    let point = curve25519_dalek::EdwardsPoint::mul_base(&k);
    k.zeroize();
    point.compress().to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dalek(seed: &[u8; 32], message: &[u8]) -> ([u8; 32], [u8; 64]) {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        (
            key.verifying_key().to_bytes(),
            ed25519_dalek::Signer::sign(&key, message).to_bytes(),
        )
    }

    /// RFC 8032 §7.1, TEST 2 (one-byte message).
    #[test]
    fn signs_the_rfc_8032_test_vector() {
        let unhex = |s: &str| -> alloc::vec::Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let seed = unhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");
        let key = SigningKey::from_seed(&Secret::new(seed.try_into().unwrap()));
        assert_eq!(
            key.public_key().to_vec(),
            unhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
        );
        assert_eq!(
            key.sign(&[0x72]).to_vec(),
            unhex(concat!(
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da",
                "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
            ))
        );
    }

    proptest! {
        /// Keys and signatures are ed25519-dalek's for any seed and message.
        #[test]
        fn keys_and_signatures_are_ed25519_dalek_s(
            seed in any::<[u8; 32]>(),
            message in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let ours = SigningKey::from_seed(&Secret::new(seed));
            let (public, signature) = dalek(&seed, &message);
            prop_assert_eq!(ours.public_key(), public);
            prop_assert_eq!(ours.sign(&message), signature);
        }

        /// Both base-point multiplications give the same point for any 32 bytes,
        /// clamped secret scalars (which may exceed L) included.
        #[cfg(feature = "fast-dice")]
        #[test]
        fn salty_and_curve25519_dalek_agree_on_base_point_multiples(k in any::<[u8; 32]>()) {
            let mut clamped = k;
            clamped[0] &= 248;
            clamped[31] &= 127;
            clamped[31] |= 64;
            prop_assert_eq!(salty_base_times(&clamped), dalek_base_times(&clamped));
            let mut reduced = k;
            reduced[31] &= 15;
            prop_assert_eq!(salty_base_times(&reduced), dalek_base_times(&reduced));
        }
    }
}
