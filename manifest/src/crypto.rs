//! Signature algorithms, trusted public keys and the [`Verifier`] trait.
//!
//! Verification is a trait so that the bootloader can plug in a size-optimised
//! implementation; [`Ed25519Verifier`] (ed25519-dalek, strict) is the default everywhere,
//! and `std` builds add P-256 ([`HostVerifier`]) because TPMs and many secure elements
//! hold P-256 keys.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::labels::alg;

/// A COSE signature algorithm rota knows (IANA COSE Algorithms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// Ed25519 (-19, RFC 9864): what rota signs with.
    Ed25519,
    /// EdDSA (-8, RFC 9053): polymorphic; verified as Ed25519 only under
    /// [`crate::Policy::allow_eddsa_8`].
    EdDsa,
    /// ECDSA with SHA-256 (-7); on P-256, as in the SUIT examples.
    Es256,
    /// ECDSA P-256 with SHA-256 (-9, RFC 9864).
    Esp256,
}

impl SignatureAlgorithm {
    /// The algorithm for a COSE algorithm id, if rota knows it.
    pub fn from_cose(id: i64) -> Option<Self> {
        match id {
            alg::ED25519 => Some(Self::Ed25519),
            alg::EDDSA => Some(Self::EdDsa),
            alg::ES256 => Some(Self::Es256),
            alg::ESP256 => Some(Self::Esp256),
            _ => None,
        }
    }

    /// The COSE algorithm id.
    pub fn cose_id(self) -> i64 {
        match self {
            Self::Ed25519 => alg::ED25519,
            Self::EdDsa => alg::EDDSA,
            Self::Es256 => alg::ES256,
            Self::Esp256 => alg::ESP256,
        }
    }

    /// The registered name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "Ed25519",
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Esp256 => "ESP256",
        }
    }
}

/// Length of an Ed25519 public key.
pub const ED25519_KEY_LEN: usize = 32;
/// Length of an uncompressed SEC1 P-256 public key (`04 || x || y`).
pub const P256_KEY_LEN: usize = 65;

/// A public key a device or tool trusts to sign manifests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519([u8; ED25519_KEY_LEN]),
    /// Uncompressed SEC1 encoding.
    P256([u8; P256_KEY_LEN]),
}

/// Length of a [`PublicKey::key_id`].
pub const KEY_ID_LEN: usize = 32;

impl PublicKey {
    /// The key's raw encoding (the bytes its key id hashes).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Ed25519(k) => k,
            Self::P256(k) => k,
        }
    }

    /// SHA-256 of the raw key: the COSE `kid` rota writes, and the hash a device's
    /// root of trust stores in place of the key.
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        Sha256::digest(self.as_bytes()).into()
    }

    /// Whether signatures of `alg` can be made with this kind of key.
    pub fn fits(&self, alg: SignatureAlgorithm) -> bool {
        use SignatureAlgorithm::*;
        matches!(
            (self, alg),
            (Self::Ed25519(_), Ed25519 | EdDsa) | (Self::P256(_), Es256 | Esp256)
        )
    }
}

/// Checks one signature. Implementations must be strict: reject non-canonical
/// encodings and malleable signatures rather than accept them.
pub trait Verifier {
    /// Verifies `signature` over `message` with `key` under `alg`.
    ///
    /// Returns [`Error::BadSignature`] for a signature that does not verify,
    /// [`Error::InvalidPublicKey`] for a key that cannot be used, and
    /// [`Error::UnsupportedAlgorithm`] for an algorithm the implementation lacks.
    fn verify(
        &self,
        alg: SignatureAlgorithm,
        key: &PublicKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<()>;
}

/// Ed25519 through ed25519-dalek's `verify_strict`, with canonical key encodings.
///
/// This is the exact call the bootloader and the agent use; it rejects what RFC 8032
/// §5.1.7 and the "strict" profile reject: `S ≥ L` (malleability), non-canonical or
/// small-order `R` and `A`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ed25519Verifier;

impl Ed25519Verifier {
    /// Verifies an Ed25519 `signature` of `message` by the raw public `key`.
    // Not inlined: its ~5.6 KB of curve arithmetic (Cortex-M4) would otherwise stay in
    // the caller's frame under the nested walks of the manifest and its claims.
    #[inline(never)]
    pub fn verify_raw(key: &[u8; ED25519_KEY_LEN], message: &[u8], signature: &[u8]) -> Result<()> {
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(key).map_err(|_| Error::InvalidPublicKey)?;
        // A non-canonical encoding of A (y ≥ p) decompresses to a valid point but is a
        // second encoding of it; RFC 8032 §5.1.3 requires rejecting it.
        if key.to_edwards().compress().as_bytes() != key.as_bytes() {
            return Err(Error::InvalidPublicKey);
        }
        let signature =
            ed25519_dalek::Signature::from_slice(signature).map_err(|_| Error::BadSignature)?;
        key.verify_strict(message, &signature)
            .map_err(|_| Error::BadSignature)
    }
}

impl Verifier for Ed25519Verifier {
    fn verify(
        &self,
        alg: SignatureAlgorithm,
        key: &PublicKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        match (alg, key) {
            (SignatureAlgorithm::Ed25519 | SignatureAlgorithm::EdDsa, PublicKey::Ed25519(k)) => {
                Self::verify_raw(k, message, signature)
            }
            _ => Err(Error::UnsupportedAlgorithm { alg: alg.cose_id() }),
        }
    }
}

/// Ed25519 and ECDSA P-256 (ES256, ESP256): the verifier for tools, server and agent.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, Default)]
pub struct HostVerifier;

#[cfg(feature = "std")]
impl Verifier for HostVerifier {
    fn verify(
        &self,
        alg: SignatureAlgorithm,
        key: &PublicKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        use p256::ecdsa::signature::Verifier as _;
        match (alg, key) {
            (SignatureAlgorithm::Es256 | SignatureAlgorithm::Esp256, PublicKey::P256(k)) => {
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(k)
                    .map_err(|_| Error::InvalidPublicKey)?;
                // COSE carries ECDSA signatures as fixed-size r || s (RFC 9053 §2.1).
                let signature = p256::ecdsa::Signature::from_slice(signature)
                    .map_err(|_| Error::BadSignature)?;
                key.verify(message, &signature)
                    .map_err(|_| Error::BadSignature)
            }
            _ => Ed25519Verifier.verify(alg, key, message, signature),
        }
    }
}
