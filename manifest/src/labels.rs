//! Every integer label rota reads or writes, with the section that assigns it.
//!
//! SUIT labels are from draft-ietf-suit-manifest-37 (§8 and the IANA considerations, §11),
//! COSE labels from RFC 9052 §3.1 and the IANA COSE registries.

/// CBOR tag of SUIT_Envelope_Tagged (§8.2).
pub const TAG_ENVELOPE: u64 = 107;
/// CBOR tag of COSE_Sign1_Tagged (RFC 9052 §4.2).
pub const TAG_COSE_SIGN1: u64 = 18;

/// SUIT_Envelope members (§8.2, §8.4.11).
pub mod envelope {
    pub const DELEGATION: i64 = 1;
    pub const AUTHENTICATION_WRAPPER: i64 = 2;
    pub const MANIFEST: i64 = 3;
}

/// SUIT_Manifest members (§8.4).
pub mod manifest {
    pub const VERSION: i64 = 1;
    pub const SEQUENCE_NUMBER: i64 = 2;
    pub const COMMON: i64 = 3;
    pub const REFERENCE_URI: i64 = 4;
    pub const VALIDATE: i64 = 7;
    pub const LOAD: i64 = 8;
    pub const INVOKE: i64 = 9;
    /// Severable (§8.4.11): may live in the envelope, with its digest in the manifest.
    pub const PAYLOAD_FETCH: i64 = 16;
    /// Severable.
    pub const INSTALL: i64 = 20;
    /// Severable.
    pub const TEXT: i64 = 23;
}

/// SUIT_Common members (§8.4.5).
pub mod common {
    pub const DEPENDENCIES: i64 = 1;
    pub const COMPONENTS: i64 = 2;
    pub const SHARED_SEQUENCE: i64 = 4;
}

/// Conditions and directives (§8.4.8, §8.4.10).
pub mod command {
    pub const CONDITION_VENDOR_IDENTIFIER: i64 = 1;
    pub const CONDITION_CLASS_IDENTIFIER: i64 = 2;
    pub const CONDITION_IMAGE_MATCH: i64 = 3;
    pub const CONDITION_COMPONENT_SLOT: i64 = 5;
    pub const CONDITION_CHECK_CONTENT: i64 = 6;
    pub const CONDITION_ABORT: i64 = 14;
    pub const CONDITION_DEVICE_IDENTIFIER: i64 = 24;
    pub const DIRECTIVE_SET_COMPONENT_INDEX: i64 = 12;
    pub const DIRECTIVE_TRY_EACH: i64 = 15;
    pub const DIRECTIVE_WRITE: i64 = 18;
    pub const DIRECTIVE_OVERRIDE_PARAMETERS: i64 = 20;
    pub const DIRECTIVE_FETCH: i64 = 21;
    pub const DIRECTIVE_COPY: i64 = 22;
    pub const DIRECTIVE_INVOKE: i64 = 23;
    pub const DIRECTIVE_SWAP: i64 = 31;
    pub const DIRECTIVE_RUN_SEQUENCE: i64 = 32;
}

/// SUIT_Parameters (§8.4.8).
pub mod parameter {
    pub const VENDOR_IDENTIFIER: i64 = 1;
    pub const CLASS_IDENTIFIER: i64 = 2;
    pub const IMAGE_DIGEST: i64 = 3;
    pub const COMPONENT_SLOT: i64 = 5;
    pub const STRICT_ORDER: i64 = 12;
    pub const SOFT_FAILURE: i64 = 13;
    pub const IMAGE_SIZE: i64 = 14;
    pub const CONTENT: i64 = 18;
    pub const URI: i64 = 21;
    pub const SOURCE_COMPONENT: i64 = 22;
    pub const INVOKE_ARGS: i64 = 23;
    pub const DEVICE_IDENTIFIER: i64 = 24;
    /// rota's security version: the anti-rollback level of the image.
    ///
    /// A `suit-parameter-custom` (negative labels, §8.4.8.13) from the range the
    /// IANA SUIT Parameters registry reserves for private use (below -255), so that no
    /// future standard parameter collides with it. A standard SUIT processor stores it
    /// with the other parameters and, since no standard command consumes it, ignores it;
    /// rota's bootloader and agent compare it to the device's floor. It is distinct from
    /// `suit-manifest-sequence-number`, which orders *manifests* (every release bumps it),
    /// while the security version moves only when an old image must stop booting.
    pub const ROTA_SECURITY_VERSION: i64 = -256;
}

/// SUIT_Text_Map keys (§8.4.4).
pub mod text {
    pub const MANIFEST_DESCRIPTION: i64 = 1;
    pub const UPDATE_DESCRIPTION: i64 = 2;
}

/// COSE header labels (RFC 9052 §3.1).
pub mod cose_header {
    pub const ALG: i64 = 1;
    pub const CRIT: i64 = 2;
    pub const CONTENT_TYPE: i64 = 3;
    pub const KID: i64 = 4;
    pub const IV: i64 = 5;
    pub const PARTIAL_IV: i64 = 6;
}

/// COSE algorithm identifiers (IANA COSE Algorithms; RFC 9053, RFC 9864).
pub mod alg {
    /// SHA-256 (RFC 9054), the SUIT digest algorithm rota uses.
    pub const SHA256: i64 = -16;
    pub const SHA384: i64 = -43;
    pub const SHA512: i64 = -44;
    /// Ed25519, fully specified (RFC 9864).
    pub const ED25519: i64 = -19;
    /// EdDSA, polymorphic (RFC 9053); accepted as Ed25519 only by explicit policy.
    pub const EDDSA: i64 = -8;
    /// ECDSA with SHA-256 (RFC 9053); in SUIT profiles always on P-256.
    pub const ES256: i64 = -7;
    /// ECDSA P-256 with SHA-256, fully specified (RFC 9864).
    pub const ESP256: i64 = -9;
}
