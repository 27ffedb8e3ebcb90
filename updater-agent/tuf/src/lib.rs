//! rota's device-side TUF client: TUF specification 1.0.34 §5 ("Detailed client
//! workflow"), every step, with the tuf-conformance command-line interface ([`cli`]).
//!
//! # Use `tough` where it conforms, our own code where it does not
//!
//! Nothing of tough 0.24's client conforms, so this crate uses none of it (the research
//! behind this is docs/design/agent-tuf-client.md §0 and §b):
//!
//! - **Schema** (`tough::schema`): `de::deserialize_keys` (tough-0.24.0/src/schema/de.rs)
//!   rejects every key whose id is not sha256 of its canonical JSON, which both real
//!   repositories of the conformance suite (sigstore, tuf-on-ci) break: key ids are opaque
//!   labels. `Hashes` requires `sha256`, so sha512-only targets fail to parse. Signatures are
//!   checked over a *re-serialised* struct that drops unknown fields of delegations, and
//!   duplicate JSON keys are silently accepted. Here: [`json`] (strict values, own
//!   canonical encoder) and `model` (typed views of the bytes actually signed).
//! - **Client** (`RepositoryLoader`, tough-0.24.0/src/lib.rs): with consistent snapshots it
//!   fetches `HASH.dir/file` instead of `dir/HASH.file` (l.553); `load_timestamp` accepts a
//!   changed timestamp of equal version (`old <= new`, l.936); `load_delegations`
//!   (~l.1317–1445) loads every delegated role eagerly and fails the whole repository when
//!   one role lists a target outside its paths, instead of searching depth-first on demand;
//!   it stores re-serialised metadata, not the bytes received, and allows 1024 root
//!   rotations. Here: `trusted` (python-tuf's `TrustedMetadataSet`) and [`Client`]
//!   (python-tuf's `Updater`).
//! - **Crypto**: aws-lc-rs (tough's backend too) verifies ed25519, ECDSA P-256/P-384
//!   (high-S accepted, as securesystemslib does) and RSA-PSS/PKCS#1 v1.5 directly.
//!
//! Every check cites the step of TUF 1.0.34 §5 it enforces.
//!
//! # One model for the device and the repository
//!
//! The repository side (rota-repo, and through it rota-server and the CLI) reads metadata
//! with this crate's [`model`] and trusts it only through [`TrustedSet`]: the same strict
//! JSON, canonical form, key schemes, date grammar, signature thresholds and expiry rules
//! as every device, so the server can never publish what a device refuses.

#[cfg(feature = "http")]
pub mod cli;
mod client;
mod error;
mod fetch;
#[cfg(fuzzing)]
pub mod fuzzing;
mod hashes;
pub mod json;
mod keys;
pub mod model;
mod paths;
mod store;
mod trusted;

pub use client::Client;
pub use error::Error;
#[cfg(feature = "http")]
pub use fetch::HttpFetcher;
pub use fetch::{Fetch, FetchError};
pub use hashes::TargetVerifier;
pub use keys::Key;
pub use paths::{encode_name, fnmatch, path_matches};
pub use trusted::TrustedSet;

/// The largest metadata files a device downloads ([`Config::new`]'s defaults, python-tuf's
/// `UpdaterConfig` defaults), in bytes.
///
/// One set of limits for both ends: rota-repo, and so the server, refuses to sign or
/// accept metadata larger than these, so the server can never publish metadata every
/// device refuses.
pub mod limits {
    /// §5.3.3: each root version.
    pub const ROOT_MAX: u64 = 512_000;
    /// §5.4.1: the timestamp.
    pub const TIMESTAMP_MAX: u64 = 16_384;
    /// §5.5.1: the snapshot, when the timestamp lists no length for it.
    pub const SNAPSHOT_MAX: u64 = 2_000_000;
    /// §5.6.1: each targets role, when the snapshot lists no length for it.
    pub const TARGETS_MAX: u64 = 5_000_000;
}

/// Where the repository is and how much the client accepts (python-tuf `UpdaterConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Base URL of the metadata, ending in `/`.
    pub metadata_url: String,
    /// Base URL of the targets, ending in `/`.
    pub target_base_url: String,
    /// §5.3.3: the most root versions fetched in one update cycle.
    pub max_root_rotations: u32,
    /// §5.6.7: the most delegated roles visited in one target search.
    pub max_delegations: u32,
    /// Byte limits of root, timestamp, and (when the listing gives no length) snapshot and
    /// targets roles.
    pub root_max: u64,
    pub timestamp_max: u64,
    pub snapshot_max: u64,
    pub targets_max: u64,
    /// Whether every file written is synced to the disk (`fsync`) before it counts, so a
    /// crash of the host cannot lose trusted metadata. On by default; a simulator whose
    /// power cuts are simulated (rota-agent's fleets) turns it off.
    pub durable: bool,
}

impl Config {
    /// python-tuf's defaults: 32 root rotations, 32 delegations, and the byte [`limits`]. A missing trailing `/` is added to both URLs, which are then
    /// extended by plain concatenation (never URL joining, which would interpret `..`).
    pub fn new(metadata_url: impl Into<String>, target_base_url: impl Into<String>) -> Self {
        Config {
            metadata_url: with_slash(metadata_url.into()),
            target_base_url: with_slash(target_base_url.into()),
            max_root_rotations: 32,
            max_delegations: 32,
            root_max: limits::ROOT_MAX,
            timestamp_max: limits::TIMESTAMP_MAX,
            snapshot_max: limits::SNAPSHOT_MAX,
            targets_max: limits::TARGETS_MAX,
            durable: true,
        }
    }
}

fn with_slash(mut url: String) -> String {
    if !url.ends_with('/') {
        url.push('/');
    }
    url
}

/// A target as a trusted targets role lists it (§5.7.1).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetInfo {
    /// The target path, as listed.
    pub name: String,
    pub length: u64,
    /// (algorithm, hex digest) in file order; never empty.
    pub hashes: Vec<(String, String)>,
    /// The target's `custom` object, if any.
    pub custom: Option<serde_json::Value>,
}
