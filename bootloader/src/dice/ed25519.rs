//! The DICE layer's Ed25519 signing keys (RFC 8032 §5.1.5 and §5.1.6), on the salty
//! primitives the Cortex-M4 bootloader already links to verify images: SHA-512, the
//! base-point multiplication and the reduction of a 512-bit integer mod L
//! (`Scalar::from_u512_le`).
//!
//! Not salty's `Keypair`: its signing computes `S = r + h·a mod L` with salty's scalar
//! addition and multiplication, which verification never uses (~0.5 KB of the bootloader's
//! flash). Here `h·a + r` is computed as a plain 512-bit integer (h, r < L < 2^253 and
//! a < 2^255, so it stays below 2^509) and reduced by the same `from_u512_le` that
//! verification uses for its `k`. The arithmetic is branch-free and indexes nothing by
//! secret data. Ed25519 is deterministic, so the signatures are exactly those of any
//! other RFC 8032 implementation: the tests compare them with ed25519-dalek's.

use salty::{EdwardsPoint, Scalar, Sha512};
use zeroize::Zeroize;

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
        let public = base_times(Scalar(scalar.0));
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
        let r = Scalar::from_u512_le(
            &Sha512::new()
                .updated(self.prefix.expose())
                .updated(message)
                .finalize(),
        );
        let big_r = base_times(Scalar(r.0));
        // h = SHA-512(R ‖ A ‖ M) mod L; S = (r + h·a) mod L.
        let h = Scalar::from_u512_le(
            &Sha512::new()
                .updated(&big_r)
                .updated(&self.public)
                .updated(message)
                .finalize(),
        );
        let wide = Secret::new(mul_add(&h.0, self.scalar.expose(), &r.0));
        let s = Scalar::from_u512_le(wide.expose());
        let mut signature = [0; 64];
        signature[..32].copy_from_slice(&big_r);
        signature[32..].copy_from_slice(&s.0);
        signature
    }
}

/// `[k]B`, encoded (salty's scalars wipe themselves when dropped).
fn base_times(k: Scalar) -> [u8; 32] {
    (&k * &EdwardsPoint::basepoint()).compressed().0
}

/// `a·b + c` of 256-bit little-endian integers, as a 512-bit little-endian integer:
/// schoolbook over bytes into 32-bit column sums (each at most 32·255² + 255 < 2^21, so
/// none overflows), then one carry pass.
fn mul_add(a: &[u8; 32], b: &[u8; 32], c: &[u8; 32]) -> [u8; 64] {
    let mut columns = [0u32; 64];
    for (column, &c) in columns.iter_mut().zip(c) {
        *column = u32::from(c);
    }
    for (i, &a) in a.iter().enumerate() {
        for (j, &b) in b.iter().enumerate() {
            columns[i + j] += u32::from(a) * u32::from(b);
        }
    }
    let mut out = [0; 64];
    let mut carry = 0;
    for (byte, &column) in out.iter_mut().zip(&columns) {
        carry += column;
        *byte = carry as u8;
        carry >>= 8;
    }
    columns.zeroize();
    out
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

    /// The largest operands lose no carry: (2^256 - 1)^2 + (2^256 - 1) = 2^512 - 2^256.
    #[test]
    fn mul_add_keeps_every_carry() {
        let max = [0xff; 32];
        let mut expected = [0xff; 64];
        expected[..32].fill(0);
        assert_eq!(mul_add(&max, &max, &max), expected);
        let mut two = [0; 32];
        two[0] = 2;
        let mut seven = [0; 32];
        seven[0] = 7;
        let mut expected = [0; 64];
        expected[0] = 2 * 7 + 2;
        assert_eq!(mul_add(&two, &seven, &two), expected);
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
    }
}
