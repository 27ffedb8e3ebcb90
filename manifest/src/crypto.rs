//! Signature algorithms, trusted public keys and the [`Verifier`] trait.
//!
//! Verification is a trait so that the bootloader can plug in a size-optimised
//! implementation; [`Ed25519Verifier`] (ed25519-dalek, strict) is the default everywhere,
//! and `std` builds add P-256 ([`HostVerifier`]) because TPMs and many secure elements
//! hold P-256 keys.

use crate::error::{Error, Result};
use crate::labels::alg;

pub mod scalar;

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

// The key type is rota-keys' (one key type for signers and verifiers); the bootloader
// links only its `no_std` part.
pub use rota_keys::{ED25519_KEY_LEN, KEY_ID_LEN, P256_KEY_LEN, PublicKey};

impl SignatureAlgorithm {
    /// Whether signatures of this algorithm can be made with this kind of key.
    pub fn fits(self, key: &PublicKey) -> bool {
        use SignatureAlgorithm::*;
        matches!(
            (key, self),
            (PublicKey::Ed25519(_), Ed25519 | EdDsa) | (PublicKey::P256(_), Es256 | Esp256)
        )
    }

    /// The algorithm rota signs with for a key: Ed25519 (-19, RFC 9864) or ES256 (-7,
    /// as in the SUIT examples and what every COSE library verifies).
    pub fn for_key(key: &PublicKey) -> Self {
        match key {
            PublicKey::Ed25519(_) => Self::Ed25519,
            PublicKey::P256(_) => Self::Es256,
        }
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
        Self::verify_raw(ed25519_key(alg, key)?, message, signature)
    }
}

/// The raw key of an Ed25519 signature check: Ed25519 (-19) or, when
/// `Policy::allow_eddsa_8` let it through, EdDSA (-8), with an Ed25519 key.
fn ed25519_key(alg: SignatureAlgorithm, key: &PublicKey) -> Result<&[u8; ED25519_KEY_LEN]> {
    match (alg, key) {
        (SignatureAlgorithm::Ed25519 | SignatureAlgorithm::EdDsa, PublicKey::Ed25519(k)) => Ok(k),
        _ => Err(Error::UnsupportedAlgorithm { alg: alg.cose_id() }),
    }
}

/// Strict Ed25519 on [salty](https://docs.rs/salty): the same verdicts and errors as
/// [`Ed25519Verifier`], in less flash.
///
/// Why it exists: flash. rota's Cortex-M4 bootloader has a 24 KiB budget, and in it
/// ed25519-dalek (`verify_strict`, no tables) costs ~14.7 KB; salty, whose field
/// arithmetic is Cortex-M4 assembly (UMAAL) on thumbv7em and portable TweetNaCl code
/// elsewhere, costs ~10.4 KB for its own verify, ~11.1 KB with the strict checks below
/// (measured alone, opt-level "z"). In the QEMU bootloader (`bootloader/qemu/boot`)
/// switching to it takes .text + .rodata + .data from 38,388 to 32,856 bytes (-5,532:
/// salty also brings its own SHA-512, so sha2's drops out; the strict checks are 340 of
/// them), and the verification's stack high-water mark from ~12.1 KB to ~6.5 KB; the
/// price is time, ~4 million more instructions per signature (bench: verify_slot of a
/// 256 KiB image, 19.6 M -> 23.1 M).
///
/// salty's own `PublicKey::verify` is *not* strict (it accepts `S ≥ L`, small-order
/// keys and `R`, non-canonical `A`), so this type calls only salty's public curve
/// primitives (point decoding and encoding, addition, scalar multiplication, SHA-512;
/// the reduction mod L is [`scalar::reduce_wide`], ~2.2 KB smaller than salty's) and
/// adds every check of ed25519-dalek's `verify_strict` (the "strict" profile of Chalkias
/// et al., "Taming the many EdDSAs", 2020) plus the canonical-`A` check of
/// [`Ed25519Verifier::verify_raw`].
///
/// Opt-in (feature `compact-ed25519`, which rota's QEMU bootloader enables through
/// rota-boot's feature of the same name); the default everywhere stays
/// [`Ed25519Verifier`]. Agreement with it, verdict and error, is tested on every
/// Wycheproof vector, on the strictness cases and on random and mutated signatures
/// (`manifest/tests/compact_ed25519.rs`, `compact_ed25519_differential.rs`), and on
/// the Cortex-M4 under QEMU, where salty's field arithmetic is the assembly one
/// (`compact_ed25519_qemu.rs`, firmware `bootloader/qemu/vectors`).
#[cfg(feature = "compact-ed25519")]
#[derive(Clone, Copy, Debug, Default)]
pub struct CompactEd25519Verifier;

#[cfg(feature = "compact-ed25519")]
impl CompactEd25519Verifier {
    /// Verifies an Ed25519 `signature` of `message` by the raw public `key`, strictly.
    ///
    /// Errors exactly as [`Ed25519Verifier::verify_raw`]: [`Error::InvalidPublicKey`]
    /// for a key that does not decode to a curve point or is not canonically encoded,
    /// [`Error::BadSignature`] for everything else (small-order keys included, as
    /// `verify_strict` refuses those at verification).
    // Not inlined, like `Ed25519Verifier::verify_raw`: its points (128 bytes each on the
    // Cortex-M4) stay out of the caller's frame.
    #[inline(never)]
    pub fn verify_raw(key: &[u8; ED25519_KEY_LEN], message: &[u8], signature: &[u8]) -> Result<()> {
        use salty::{CompressedY, EdwardsPoint, Scalar, Sha512};

        // A decodes to a curve point (RFC 8032 §5.1.3, decoding steps 2–3: (y² - 1) /
        // (dy² + 1) has a square root).
        let a = CompressedY(*key)
            .decompressed()
            .map_err(|_| Error::InvalidPublicKey)?;
        // A is canonically encoded (§5.1.3 step 1: y < p; step 4: no x = 0 with the sign
        // bit set): salty, like ed25519-dalek, decodes y mod p and lets a "negative zero"
        // through, so such bytes name a point that has another encoding, and one key
        // would have two key ids. Re-encoding must give the bytes back, as in
        // `Ed25519Verifier::verify_raw`.
        if a.compressed().0 != *key {
            return Err(Error::InvalidPublicKey);
        }
        // A signature is exactly R || S, 64 bytes (§5.1.7 step 1).
        let signature: &[u8; 64] = signature.try_into().map_err(|_| Error::BadSignature)?;
        let (r_bytes, s_bytes) = signature.split_at(32);
        let r_bytes: [u8; 32] = r_bytes.try_into().map_err(|_| Error::BadSignature)?;
        let s_bytes: [u8; 32] = s_bytes.try_into().map_err(|_| Error::BadSignature)?;
        // S < L (§5.1.7 step 1: "if 0 ≤ S < L fails, the signature is invalid"): without
        // it S + L verifies too, a second valid signature (malleability). Compared as
        // 256-bit little-endian integers, most significant byte first.
        if !s_bytes.iter().rev().lt(Scalar::ell().iter().rev()) {
            return Err(Error::BadSignature);
        }
        // R decodes to a curve point (§5.1.7 step 1) …
        let r = CompressedY(r_bytes)
            .decompressed()
            .map_err(|_| Error::BadSignature)?;
        // … canonically encoded (y < p, §5.1.3). verify_strict gets this from its final
        // comparison of encodings (below), which a non-canonical R can never pass;
        // checked here too so that the rule stands on its own.
        if r.compressed().0 != r_bytes {
            return Err(Error::BadSignature);
        }
        // Neither R nor A of small order (verify_strict; the strict profile of "Taming the
        // many EdDSAs"): with A of small order, R = [s]B and S = s (or A = R = identity
        // and S = 0) verify for every message, a universal forgery; an R of small order
        // commits to no nonce (S = k·a satisfies the equation for R = identity, and for
        // every small-order R under a verifier that multiplies by the cofactor, so
        // verifiers would disagree), which the strict profile rules out. [8]P = identity
        // finds all eight small-order points (their non-canonical encodings were refused
        // above). Mixed-order points pass, as in verify_strict.
        if is_small_order(&r) || is_small_order(&a) {
            return Err(Error::BadSignature);
        }
        // k = SHA-512(R || A || M) mod L (§5.1.7 step 2), over the encodings as received
        // (both canonical by now).
        let k = Scalar(scalar::reduce_wide(
            &Sha512::new()
                .updated(&r_bytes)
                .updated(key)
                .updated(message)
                .finalize(),
        ));
        // The cofactorless equation [S]B = R + [k]A, checked as verify_strict (and
        // salty's own verify) do: compute [S]B - [k]A and require that its canonical
        // encoding equal the bytes of R (§5.1.7 step 3 without the factor 8).
        let s = Scalar(s_bytes);
        let expected = &(&s * &EdwardsPoint::basepoint()) + &(&k * &(-&a));
        if expected.compressed().0 == r_bytes {
            Ok(())
        } else {
            Err(Error::BadSignature)
        }
    }
}

/// Whether `[8]P` is the identity: `P` is one of the eight points of small order.
#[cfg(feature = "compact-ed25519")]
fn is_small_order(point: &salty::EdwardsPoint) -> bool {
    // The identity (0, 1): y = 1, sign bit clear.
    const IDENTITY: [u8; 32] = {
        let mut y = [0u8; 32];
        y[0] = 1;
        y
    };
    // Three doublings; salty's addition formula is complete (a = -1 a square, d not),
    // so doubling and small-order inputs need no special case.
    let p2 = point + point;
    let p4 = &p2 + &p2;
    let p8 = &p4 + &p4;
    p8.compressed().0 == IDENTITY
}

#[cfg(feature = "compact-ed25519")]
impl Verifier for CompactEd25519Verifier {
    fn verify(
        &self,
        alg: SignatureAlgorithm,
        key: &PublicKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        Self::verify_raw(ed25519_key(alg, key)?, message, signature)
    }
}

/// ECDSA P-256 with SHA-256 (ES256 -7, ESP256 -9), `no_std` and allocation-free: the
/// bootloader-side verifier for anchors held where Ed25519 is not (many secure elements
/// and TPMs). Other algorithms are [`Error::UnsupportedAlgorithm`].
#[cfg(feature = "p256")]
#[derive(Clone, Copy, Debug, Default)]
pub struct EcdsaP256Verifier;

#[cfg(feature = "p256")]
impl Verifier for EcdsaP256Verifier {
    fn verify(
        &self,
        alg: SignatureAlgorithm,
        key: &PublicKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        use p256::ecdsa::signature::Verifier as _;
        let (SignatureAlgorithm::Es256 | SignatureAlgorithm::Esp256, PublicKey::P256(k)) =
            (alg, key)
        else {
            return Err(Error::UnsupportedAlgorithm { alg: alg.cose_id() });
        };
        // Only the uncompressed form (SEC 1 §2.3.3, 0x04 || x || y): one key, one key id.
        if k[0] != 0x04 {
            return Err(Error::InvalidPublicKey);
        }
        let key =
            p256::ecdsa::VerifyingKey::from_sec1_bytes(k).map_err(|_| Error::InvalidPublicKey)?;
        // COSE carries ECDSA signatures as fixed-size r || s (RFC 9053 §2.1).
        let signature =
            p256::ecdsa::Signature::from_slice(signature).map_err(|_| Error::BadSignature)?;
        key.verify(message, &signature)
            .map_err(|_| Error::BadSignature)
    }
}

/// Ed25519 and ECDSA P-256 (ES256, ESP256): the verifier for the CLI and the agent.
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
        match key {
            PublicKey::P256(_) => EcdsaP256Verifier.verify(alg, key, message, signature),
            PublicKey::Ed25519(_) => Ed25519Verifier.verify(alg, key, message, signature),
        }
    }
}
