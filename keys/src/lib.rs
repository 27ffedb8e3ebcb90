//! rota's one key seam.
//!
//! Every signer in rota (SUIT envelopes, the four TUF roles, the manufacturer CA, device
//! identities and their signed requests) signs through the same two traits, in the
//! style of tough's `KeySource` → `Sign`:
//!
//! - a [`KeySource`] says where a key lives and yields a signer: a [`KeyAddress`] is a
//!   PEM file ([`KeyFile`]) or a key inside a PKCS#11 token ([`pkcs11`]: HSMs, secure
//!   elements, TPMs through tpm2-pkcs11), as every `--key` argument takes it;
//! - a [`Sign`] knows its [`PublicKey`] (and so its [`Algorithm`]) and signs bytes.
//!
//! Algorithms: Ed25519 (RFC 8032) and ECDSA P-256 with SHA-256 (FIPS 186-5; many
//! secure elements and TPMs have no Ed25519). Signatures are always the fixed 64-byte
//! form: `R || S` for Ed25519, `r || s` for ECDSA (RFC 9053 §2.1, as COSE carries it);
//! a format that wants DER (TUF's `ecdsa-sha2-nistp256`) converts at its own edge.
//!
//! Key files are the formats every other tool reads ([`pem`]): private keys as PKCS#8
//! PEM (RFC 5958, RFC 8410 for Ed25519, RFC 5915 inside for EC), public keys as
//! SubjectPublicKeyInfo PEM (RFC 5280), so `openssl pkey -in k.key -pubout` gives the
//! same `.pub` that `rota keygen` writes.
//!
//! Without the `std` feature the crate is `#![no_std]` and holds only [`PublicKey`]:
//! the type the bootloader's verifier and its root of trust compare key ids with.

#![cfg_attr(not(feature = "std"), no_std)]

use sha2::{Digest as _, Sha256};

#[cfg(feature = "std")]
mod error;
#[cfg(feature = "std")]
pub mod pem;
#[cfg(feature = "std")]
pub mod pkcs11;
#[cfg(feature = "std")]
mod sign;
#[cfg(feature = "std")]
mod software;
#[cfg(feature = "test-tokens")]
pub mod test_tokens;
#[cfg(feature = "std")]
mod verify;

#[cfg(feature = "std")]
pub use error::{KeyError, SignError, VerifyError, io_reason};
#[cfg(feature = "std")]
pub use pem::{private_key_from_pem, public_key_from_pem};
#[cfg(feature = "std")]
pub use sign::{KeyAddress, KeyFile, KeySource, MAX_KEY_FILE_LEN, PrivateKey, Sign, stub_text};
#[cfg(feature = "std")]
pub use software::SoftwareKey;

/// Length of an Ed25519 public key.
pub const ED25519_KEY_LEN: usize = 32;
/// Length of an uncompressed SEC1 P-256 public key (`04 || x || y`).
pub const P256_KEY_LEN: usize = 65;
/// Length of a [`PublicKey::key_id`].
pub const KEY_ID_LEN: usize = 32;
/// Length of every signature rota makes: Ed25519 `R || S`, ECDSA P-256 `r || s`.
pub const SIGNATURE_LEN: usize = 64;

/// The signature algorithms of rota's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Ed25519 (RFC 8032), pure, no context.
    Ed25519,
    /// ECDSA over NIST P-256 with SHA-256 (FIPS 186-5), RFC 6979 nonces when rota signs.
    EcdsaP256Sha256,
}

impl core::str::FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// `ed25519` or `p256` (also `ecdsa-p256`, `es256`).
    fn from_str(name: &str) -> Result<Self, UnknownAlgorithm> {
        let is = |names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(name));
        if is(&["ed25519"]) {
            Ok(Self::Ed25519)
        } else if is(&["p256", "p-256", "ecdsa-p256", "es256"]) {
            Ok(Self::EcdsaP256Sha256)
        } else {
            Err(UnknownAlgorithm)
        }
    }
}

/// A key algorithm name other than `ed25519` and `p256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownAlgorithm;

impl core::fmt::Display for UnknownAlgorithm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("unknown key algorithm: rota uses ed25519 and p256")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for UnknownAlgorithm {}

/// A public key rota trusts: a release key, a TUF role key, a CA or a device identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PublicKey {
    Ed25519([u8; ED25519_KEY_LEN]),
    /// Uncompressed SEC1 encoding.
    P256([u8; P256_KEY_LEN]),
}

impl PublicKey {
    /// The key's raw encoding (the bytes its key id hashes).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Ed25519(k) => k,
            Self::P256(k) => k,
        }
    }

    /// The key from its raw encoding: 32 bytes are an Ed25519 key, 65 bytes an
    /// uncompressed P-256 point. Only the length is checked here; [`PublicKey::verify`]
    /// (and `validate`, with `std`) check the point.
    pub fn from_raw(bytes: &[u8]) -> Option<Self> {
        match bytes.len() {
            ED25519_KEY_LEN => bytes.try_into().ok().map(Self::Ed25519),
            P256_KEY_LEN => bytes.try_into().ok().map(Self::P256),
            _ => None,
        }
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Ed25519(_) => Algorithm::Ed25519,
            Self::P256(_) => Algorithm::EcdsaP256Sha256,
        }
    }

    /// SHA-256 of the raw key: the COSE `kid` rota writes, the hash a device's root of
    /// trust stores in place of the key, and a CA's issuer id.
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        Sha256::digest(self.as_bytes()).into()
    }
}
