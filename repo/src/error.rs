//! What can go wrong, one plain sentence each: the messages become HTTP 4xx reasons on the
//! server and `error: ...` lines in the CLI, so they name the thing at fault and never
//! carry key material.

use crate::RoleName;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything rota-repo refuses or fails at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key could not be read or generated (rota's key seam).
    #[error(transparent)]
    Key(#[from] rota_keys::KeyError),

    /// A role key could not sign.
    #[error("the role key could not sign: {0}")]
    Sign(#[from] rota_keys::SignError),

    /// A TUF role key that is not Ed25519 (rota's devices verify Ed25519 role keys).
    #[error("TUF role keys are Ed25519; this key is ECDSA P-256")]
    RoleKeyNotEd25519,

    /// A key held in hardware cannot be written to a file.
    #[error("this key is held elsewhere (a token or TPM) and cannot be exported")]
    KeyNotExportable,

    /// Bytes that are not an Ed25519 public key.
    #[error("the bytes are not a valid Ed25519 public key")]
    InvalidPublicKey,

    /// A key listed in metadata is not the kind rota uses.
    #[error(
        "key {key_id} is not an Ed25519 key with the \"ed25519\" scheme, the only kind rota accepts"
    )]
    UnsupportedKey {
        /// The key's id (hex).
        key_id: String,
    },

    /// Metadata is larger than a device downloads (`rota_tuf::limits`).
    #[error("the {role} metadata is {len} bytes, more than the {limit} bytes a device downloads")]
    TooLarge {
        /// The role.
        role: RoleName,
        /// Its length.
        len: usize,
        /// The limit.
        limit: u64,
    },

    /// Metadata is not JSON of the expected shape (includes duplicate object keys).
    #[error("the {role} metadata cannot be parsed: {reason}")]
    Parse {
        /// The role.
        role: RoleName,
        /// What the parser said.
        reason: String,
    },

    /// Metadata of another role was given.
    #[error("expected {expected} metadata, but its \"_type\" is {found:?}")]
    WrongType {
        /// The role that was expected.
        expected: RoleName,
        /// The `_type` found.
        found: String,
    },

    /// Metadata has a field that TUF 1.0 (as rota uses it) does not define.
    #[error("the {role} metadata has the unexpected field {field:?}")]
    UnknownField {
        /// The role.
        role: RoleName,
        /// Where the field is and its name.
        field: String,
    },

    /// A time cannot be written as a TUF date-time.
    #[error("the expiry time is outside the years 1970 to 9999")]
    TimeOutOfRange,

    /// Metadata has expired (or expires now).
    #[error("the {role} metadata version {version} expired at {expires}")]
    Expired {
        /// The role.
        role: RoleName,
        /// Its version.
        version: u64,
        /// When it expired (TUF date-time).
        expires: String,
    },

    /// A root without consistent snapshots.
    #[error("the root metadata does not enable consistent snapshots, which rota requires")]
    NotConsistentSnapshot,

    /// A role's keys or threshold are unusable.
    #[error("the {role} role {reason}")]
    RoleKeys {
        /// The role.
        role: RoleName,
        /// What is wrong, as the end of a sentence starting "the ROLE role ".
        reason: String,
    },

    /// One key would serve an offline and an online role.
    #[error(
        "key {key_id} is both a {offline} key (offline) and a {online} key (online); each needs its own keys"
    )]
    OfflineKeyOnline {
        /// The key's id (hex).
        key_id: String,
        /// The offline role.
        offline: RoleName,
        /// The online role.
        online: RoleName,
    },

    /// A signing key is not one of the role's keys.
    #[error("key {key_id} is not a {role} key of this root")]
    NotARoleKey {
        /// The key's id (hex).
        key_id: String,
        /// The role.
        role: RoleName,
    },

    /// Fewer signing keys than the role's threshold.
    #[error(
        "the {role} role needs {threshold} signatures, but only {given} of its keys were given"
    )]
    TooFewSigners {
        /// The role.
        role: RoleName,
        /// Its threshold.
        threshold: u64,
        /// How many of its keys were given.
        given: usize,
    },

    /// Metadata is not signed by a threshold of the trusted keys for its role (TUF 1.0.34
    /// §5.6.3, as rota-tuf counts them: distinct key ids, exactly as listed).
    #[error(
        "the {role} metadata has {valid} valid signature(s) from the {role} keys of the trusted root, {threshold} required"
    )]
    Signatures {
        /// The role.
        role: RoleName,
        /// How many distinct keys of the role signed validly.
        valid: u64,
        /// The role's threshold.
        threshold: u64,
    },

    /// A new root lacks a threshold of signatures by the previous root's root keys.
    #[error(
        "root version {version} is not signed by a threshold of the root keys of version {trusted}"
    )]
    RootNotSignedByTrusted {
        /// The new root's version.
        version: u64,
        /// The trusted root's version.
        trusted: u64,
    },

    /// A new root lacks a threshold of signatures by its own root keys.
    #[error("root version {version} is not signed by a threshold of its own root keys")]
    RootNotSelfSigned {
        /// The new root's version.
        version: u64,
    },

    /// The first root a server accepts is not version 1.
    #[error("the repository's first root must be version 1, not {version}")]
    FirstRootVersion {
        /// The root's version.
        version: u64,
    },

    /// A key listed under an id other than the one TUF 1.0.34 §4.2 defines for it.
    #[error(
        "key {listed} is listed under an id that is not the SHA-256 of its canonical JSON ({computed})"
    )]
    KeyIdMismatch {
        /// The id the metadata lists the key under.
        listed: String,
        /// The key's id.
        computed: String,
    },

    /// A new root's version is not the trusted version plus one.
    #[error("the new root has version {version}, but the next root after version {trusted} must have version {}", trusted.saturating_add(1))]
    RootVersion {
        /// The trusted root's version.
        trusted: u64,
        /// The new root's version.
        version: u64,
    },

    /// New metadata does not have a version greater than the current one.
    #[error(
        "the new {role} metadata has version {version}, which is not greater than the current version {current}"
    )]
    VersionNotIncreasing {
        /// The role.
        role: RoleName,
        /// The current version.
        current: u64,
        /// The new version.
        version: u64,
    },

    /// A version number would overflow.
    #[error("the {role} version cannot be increased past {current}")]
    VersionOverflow {
        /// The role.
        role: RoleName,
        /// The current version.
        current: u64,
    },

    /// A target name rota would not publish.
    #[error("target name {name:?} is not allowed: {reason}")]
    TargetName {
        /// The name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A target's hashes are missing, malformed or of an algorithm rota does not use.
    #[error("target {name:?} has unusable hashes: {reason}")]
    TargetHashes {
        /// The target's name.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// A target's `custom` field is malformed.
    #[error("target {name:?} has an invalid custom field: {reason}")]
    TargetCustom {
        /// The target's name.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// A target would change its content under the same name.
    #[error(
        "target {name:?} is already published with different content; publish it under a new name"
    )]
    TargetChanged {
        /// The target's name.
        name: String,
    },

    /// An image target and its envelope target do not name each other.
    #[error("target {name:?} {reason}")]
    TargetLink {
        /// The target's name.
        name: String,
        /// What is wrong, as the end of a sentence starting "target NAME ".
        reason: String,
    },

    /// Targets metadata with delegations.
    #[error("the targets metadata delegates to other roles, which rota does not support")]
    Delegations,

    /// A snapshot or timestamp meta entry is missing or wrong.
    #[error("the {role} metadata {reason}")]
    Meta {
        /// The role.
        role: RoleName,
        /// What is wrong, as the end of a sentence starting "the ROLE metadata ".
        reason: String,
    },

    /// An online signing key is not the one the root names for its role.
    #[error("the {role} key {key_id} is not the {role} key of root version {root_version}")]
    OnlineKeyMismatch {
        /// The role.
        role: RoleName,
        /// The key's id (hex).
        key_id: String,
        /// The root's version.
        root_version: u64,
    },

    /// Metadata the device client (rota-tuf) refuses, for a reason with no variant of its
    /// own here.
    #[error("a device would refuse the {role} metadata: {reason}")]
    Device {
        /// The role.
        role: RoleName,
        /// rota-tuf's reason (boxed: it is larger than every other variant).
        reason: Box<rota_tuf::Error>,
    },

    /// Canonical JSON cannot represent a value (floating-point numbers).
    #[error("the {role} metadata cannot be written as canonical JSON: {reason}")]
    Canonical {
        /// The role.
        role: RoleName,
        /// What the encoder said.
        reason: String,
    },
}
