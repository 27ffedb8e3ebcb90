//! Signature checks for host code (the server, the CLI, the repository tools).
//!
//! The bootloader verifies SUIT envelopes through rota-manifest's `Verifier` seam
//! instead, which can swap in a smaller Ed25519; the rules are the same.

use crate::{PublicKey, VerifyError};

impl PublicKey {
    /// Whether the key is usable: Ed25519 a canonically encoded point not of small order
    /// (a small-order key admits signatures that verify for many messages); P-256 a point
    /// on the curve (SEC 1 §2.3.4).
    pub fn validate(&self) -> Result<(), VerifyError> {
        match self {
            Self::Ed25519(k) => ed25519_key(k).map(drop),
            Self::P256(k) => p256_key(k).map(drop),
        }
    }

    /// Verifies a 64-byte `signature` over `message`: Ed25519 with ed25519-dalek's
    /// `verify_strict` (RFC 8032 §5.1.7 plus the strict profile: `S < L`, canonical and
    /// not small-order `R` and `A`), ECDSA P-256 with SHA-256 over `r || s`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
        match self {
            Self::Ed25519(k) => {
                let key = ed25519_key(k)?;
                let signature = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|_| VerifyError::BadSignature)?;
                key.verify_strict(message, &signature)
                    .map_err(|_| VerifyError::BadSignature)
            }
            Self::P256(k) => {
                use p256::ecdsa::signature::Verifier as _;
                let key = p256_key(k)?;
                let signature = p256::ecdsa::Signature::from_slice(signature)
                    .map_err(|_| VerifyError::BadSignature)?;
                key.verify(message, &signature)
                    .map_err(|_| VerifyError::BadSignature)
            }
        }
    }
}

fn ed25519_key(bytes: &[u8; 32]) -> Result<ed25519_dalek::VerifyingKey, VerifyError> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
        .map_err(|_| VerifyError::InvalidPublicKey)?;
    // RFC 8032 §5.1.3: a y ≥ p decodes but is a second encoding of the point, and one key
    // would have two key ids.
    if key.to_edwards().compress().as_bytes() != bytes || key.is_weak() {
        return Err(VerifyError::InvalidPublicKey);
    }
    Ok(key)
}

fn p256_key(bytes: &[u8; 65]) -> Result<p256::ecdsa::VerifyingKey, VerifyError> {
    // Only the uncompressed form (0x04 || x || y) is a rota P-256 key: one key, one id.
    if bytes[0] != 0x04 {
        return Err(VerifyError::InvalidPublicKey);
    }
    p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map_err(|_| VerifyError::InvalidPublicKey)
}
