//! What can go wrong when decoding or verifying an envelope, in domain words.
//!
//! Every variant names the check that failed; [`core::fmt::Display`] turns it into
//! one sentence a release engineer can act on.

use core::fmt;

/// The result of every fallible operation in this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// A SUIT member, named for error messages.
pub type Member = &'static str;

/// Whether errors go without their names (`expected`, `member`, `limit`, `structure`):
/// set by `--cfg rota_terse_errors` in firmware that maps every error to a reason code
/// and prints none (rota's bootloader), where the names cost ~3 KB of flash.
pub(crate) const TERSE: bool = cfg!(rota_terse_errors);

/// A name for an error: the literal, or `""` when [`TERSE`].
macro_rules! msg {
    ($name:literal) => {
        if crate::error::TERSE { "" } else { $name }
    };
}
pub(crate) use msg;

/// Why an envelope was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    // ---- CBOR well-formedness (RFC 8949) ----
    /// The bytes at `offset` are not the CBOR item the structure requires.
    Malformed {
        offset: usize,
        expected: &'static str,
    },
    /// The input (or a byte string holding a structure) ends inside an item.
    Truncated { offset: usize },
    /// A structure ended before the byte string (or file) holding it (RFC 8949 §5.3).
    TrailingBytes { offset: usize },
    /// A map holds the same key twice (RFC 8949 §5.6).
    DuplicateKey { offset: usize },
    /// An indefinite-length item, which no rota structure allows.
    IndefiniteLength { offset: usize },
    /// A size limit that bounds memory or stack use was exceeded.
    LimitExceeded { offset: usize, limit: &'static str },

    // ---- SUIT structure (draft-ietf-suit-manifest-37) ----
    /// The input is not an envelope at all: no tag 107 and no map.
    NotAnEnvelope,
    /// The envelope is not wrapped in tag 107 (SUIT_Envelope_Tagged, §8.2).
    UntaggedEnvelope,
    /// The input carries a tag other than 107 where the envelope should start.
    WrongEnvelopeTag { tag: u64 },
    /// A member other than `suit-delegation` comes before the authentication wrapper, at
    /// `offset` (§8.3: the wrapper comes first, so a processor authenticates before it
    /// processes).
    AuthenticationWrapperNotFirst { offset: usize },
    /// A required member is absent.
    MissingMember {
        structure: &'static str,
        member: Member,
    },
    /// A member appears in a form the draft does not allow there.
    InvalidMember { offset: usize, member: Member },
    /// `suit-manifest-version` is not 1 (§8.4.1).
    UnsupportedManifestVersion { version: u64 },
    /// A command sequence refers to a component that `suit-components` does not list.
    ComponentIndexOutOfRange { offset: usize, index: u64 },
    /// The manifest lists `suit-dependencies` (draft-ietf-suit-trust-domains §5): rota does
    /// not process dependency manifests, and that draft requires aborting rather than
    /// ignoring them.
    UnsupportedDependencies,
    /// The envelope departs, at `offset`, from the one layout rota's boot profile
    /// accepts (what `rota sign` writes; [`crate::profile`]). It may be valid SUIT.
    NotBootProfile { offset: usize },
    /// A severable member is in the envelope but the manifest holds no digest for it (§8.4.11).
    SeverableMemberWithoutDigest { member: Member },
    /// A severable member is both inline in the manifest and in the envelope.
    SeverableMemberTwice { member: Member },
    /// A severable member's bytes do not match the digest the manifest holds for it (§8.4.11).
    SeverableMemberDigestMismatch { member: Member },

    // ---- Digests (SUIT_Digest, §10) ----
    /// A digest algorithm rota does not implement (COSE algorithm id).
    UnsupportedDigestAlgorithm { alg: i64 },
    /// The digest bytes are not as long as the algorithm's output.
    DigestLengthMismatch { alg: i64, len: usize },
    /// The manifest does not hash to the digest in the authentication wrapper (§8.3).
    ManifestDigestMismatch,

    // ---- Authentication (§8.3, RFC 9052) ----
    /// The authentication wrapper holds a digest but no authentication block.
    Unauthenticated,
    /// An authentication block that is not a tagged COSE_Sign1 (for example COSE_Mac0).
    UnsupportedAuthenticationBlock { tag: Option<u64> },
    /// The COSE_Sign1 is not wrapped in tag 18 (RFC 9052 §4.2; SUIT §8.3 requires tagged).
    UntaggedCose,
    /// The signature algorithm is not one rota accepts (COSE algorithm id).
    UnsupportedAlgorithm { alg: i64 },
    /// The protected header names no algorithm (RFC 9052 §3.1: `alg` must be protected).
    AlgorithmNotProtected,
    /// `alg` appears in the unprotected header (RFC 9052 §3: a label appears in one bucket only).
    AlgorithmInUnprotectedHeader,
    /// A label appears in both the protected and the unprotected header (RFC 9052 §3).
    HeaderInBothBuckets { label: i64 },
    /// A `crit` label the verifier does not understand (RFC 9052 §3.1); `None` for a
    /// text label.
    UnknownCriticalHeader { label: Option<i64> },
    /// The COSE_Sign1 carries its payload instead of detaching it (SUIT §8.3).
    AttachedPayload,
    /// No trust anchor holds a key for this signature's algorithm and key id.
    NoTrustedKey,
    /// A trusted key was found but the signature does not verify with it.
    BadSignature,
    /// The public key bytes are not a valid, canonically encoded key.
    InvalidPublicKey,

    // ---- Payload ----
    /// The image does not hash to the manifest's `image-digest`.
    ImageDigestMismatch,
    /// The image is not as long as the manifest's `image-size`.
    ImageSizeMismatch { expected: u64, actual: u64 },
    /// The manifest names no `image-digest` for the component.
    NoImageDigest,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match *self {
            Malformed { offset, expected } => {
                write!(f, "malformed CBOR at byte {offset}: expected {expected}")
            }
            Truncated { offset } => {
                write!(f, "the data ends early, at byte {offset} (truncated?)")
            }
            TrailingBytes { offset } => write!(f, "unexpected trailing bytes at byte {offset}"),
            DuplicateKey { offset } => write!(f, "duplicate map key at byte {offset}"),
            IndefiniteLength { offset } => {
                write!(
                    f,
                    "indefinite-length CBOR item at byte {offset} is not allowed"
                )
            }
            LimitExceeded { offset, limit } => {
                write!(f, "too many {limit} at byte {offset}")
            }
            NotAnEnvelope => {
                f.write_str("the input does not start with the SUIT envelope tag (CBOR tag 107)")
            }
            UntaggedEnvelope => {
                f.write_str("the envelope is not tagged as a SUIT envelope (tag 107)")
            }
            WrongEnvelopeTag { tag } => {
                write!(
                    f,
                    "not a SUIT envelope: found CBOR tag {tag} instead of 107"
                )
            }
            AuthenticationWrapperNotFirst { offset } => write!(
                f,
                "the envelope member at byte {offset} comes before the authentication wrapper, which must come first (SUIT §8.3)"
            ),
            MissingMember { structure, member } => {
                write!(f, "the {structure} has no {member}")
            }
            InvalidMember { offset, member } => {
                write!(f, "invalid {member} at byte {offset}")
            }
            UnsupportedManifestVersion { version } => {
                write!(
                    f,
                    "unsupported SUIT manifest version {version} (only 1 is defined)"
                )
            }
            ComponentIndexOutOfRange { offset, index } => {
                write!(
                    f,
                    "component index {index} at byte {offset} names no listed component"
                )
            }
            UnsupportedDependencies => f.write_str(
                "the manifest depends on other manifests (SUIT trust domains), which rota does not process",
            ),
            NotBootProfile { offset } => write!(
                f,
                "the envelope departs from rota's boot profile at byte {offset} (the bootloader accepts only the layout `rota sign` writes)"
            ),
            SeverableMemberWithoutDigest { member } => write!(
                f,
                "the envelope carries a severed {member} that the manifest holds no digest for"
            ),
            SeverableMemberTwice { member } => write!(
                f,
                "the {member} is both in the manifest and severed into the envelope"
            ),
            SeverableMemberDigestMismatch { member } => write!(
                f,
                "the severed {member} does not match its digest in the manifest (tampered)"
            ),
            UnsupportedDigestAlgorithm { alg } => {
                write!(f, "unsupported digest algorithm {alg}")
            }
            DigestLengthMismatch { alg, len } => write!(
                f,
                "digest of {len} bytes does not match its algorithm {alg}"
            ),
            ManifestDigestMismatch => f.write_str(
                "manifest digest mismatch: the manifest does not match the digest that was signed",
            ),
            Unauthenticated => f.write_str("the envelope is not signed (no authentication block)"),
            UnsupportedAuthenticationBlock { tag: Some(tag) } => write!(
                f,
                "unsupported authentication block (CBOR tag {tag}); only COSE_Sign1 is accepted"
            ),
            UnsupportedAuthenticationBlock { tag: None } => f.write_str(
                "unsupported authentication block; only a tagged COSE_Sign1 is accepted",
            ),
            UntaggedCose => f.write_str("the COSE_Sign1 is not tagged (tag 18)"),
            UnsupportedAlgorithm { alg } => {
                write!(f, "unsupported signature algorithm {alg}{}", alg_name(alg))
            }
            AlgorithmNotProtected => {
                f.write_str("the signature algorithm is not in the protected header")
            }
            AlgorithmInUnprotectedHeader => {
                f.write_str("the signature algorithm appears in the unprotected header")
            }
            HeaderInBothBuckets { label } => write!(
                f,
                "COSE header {label} appears in both the protected and unprotected header"
            ),
            UnknownCriticalHeader { label: Some(label) } => {
                write!(f, "unknown critical COSE header {label}")
            }
            UnknownCriticalHeader { label: None } => {
                f.write_str("unknown critical COSE header (a text label)")
            }
            AttachedPayload => {
                f.write_str("the COSE_Sign1 payload must be detached (nil) in a SUIT envelope")
            }
            NoTrustedKey => f.write_str("no trusted key matches the signature"),
            BadSignature => f.write_str("bad signature: it does not verify with the trusted key"),
            InvalidPublicKey => f.write_str("invalid public key"),
            ImageDigestMismatch => {
                f.write_str("image digest mismatch: the image is not the one the manifest signs")
            }
            ImageSizeMismatch { expected, actual } => write!(
                f,
                "image size mismatch: the manifest says {expected} bytes, the image has {actual}"
            ),
            NoImageDigest => f.write_str("the manifest names no image digest for the component"),
        }
    }
}

/// " (NAME)" for a known COSE algorithm id, for messages.
fn alg_name(alg: i64) -> &'static str {
    match alg {
        -8 => " (EdDSA; accepted only where policy allows -8, e.g. `rota verify --allow-eddsa-8`)",
        -7 => " (ES256)",
        -9 => " (ESP256)",
        -19 => " (Ed25519)",
        -35 => " (ES384)",
        -36 => " (ES512)",
        -37 => " (PS256)",
        5 => " (HMAC 256/256)",
        _ => "",
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}
