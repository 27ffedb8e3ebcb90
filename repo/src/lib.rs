//! rota's TUF repository (The Update Framework, specification 1.0.34): metadata built with
//! the schema types of [`tough`], read and verified with the device's own TUF client,
//! rota-tuf, so that the server and the CLI never accept or publish what a device refuses.
//!
//! The keys are split as Uptane splits them (see docs/ARCHITECTURE.md, "Trust model"):
//!
//! | role | keys | held by | made with |
//! |---|---|---|---|
//! | root | k of n, offline | release owners | [`init_root`], [`rotate_root`] |
//! | targets | k of n, offline | release engineers | [`sign_targets`] |
//! | snapshot, timestamp | one each, online | the update server | [`OnlineSigner`] |
//!
//! so a compromised server can re-sign freshness (snapshot, timestamp) but never list a
//! target that the offline targets keys did not sign.
//!
//! All keys are Ed25519 (TUF keytype and scheme "ed25519"); consistent snapshots are always
//! on, so every metadata file but `timestamp.json` is served under a versioned name and
//! every target under its SHA-256 ([`layout`]). The metadata is TUF 1.0 JSON that both
//! tough's client and python-tuf's `ngclient` load (the tests run both).
//!
//! # Server side
//!
//! - [`verify_targets_upload`]: targets metadata uploaded by the CLI, checked against the
//!   trusted root (signature threshold, version, expiry, target names and rota's custom
//!   fields) before the server records it;
//! - [`verify_first_root`], [`verify_root_update`]: the first root and each new root
//!   version, checked as a client will check them;
//!
//! One model for both ends: every file is read with rota-tuf's strict JSON and model
//! (`rota_tuf::model`: canonical form, key schemes, `spec_version`, the §4.2 date
//! grammar) at most at the device's size limits (`rota_tuf::limits`), and trusted only
//! through rota-tuf's `TrustedSet` (signature thresholds over distinct key ids, §5.3.4's
//! two thresholds for a new root, version and expiry rules). rota-repo adds only rota's own,
//! stricter shape on top (Ed25519 keys under their §4.2 key ids, consistent snapshots, the
//! key split, target names, hashes and custom fields); signatures it makes cover rota-tuf's
//! canonical form.
//! - [`OnlineSigner`]: the snapshot and timestamp the server signs after each change.
//!
//! # Offline side
//!
//! [`RepoDir`]: the repository directory the CLI keeps (`rota repo init`, `rota repo
//! rotate`): its keys, its root versions, and root key rotation that a power cut at any
//! point cannot leave half done.
//!
//! Every check cites the section of the TUF specification it enforces; [`Error`] says in
//! one sentence which one failed.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use rota_repo::{OnlineSigner, RepoKey, RoleKeys, RootParams, TargetFile};
//!
//! # fn main() -> Result<(), rota_repo::Error> {
//! let in_a_year = SystemTime::now() + Duration::from_secs(365 * 86400);
//! let root_key = RepoKey::generate()?;
//! let targets_key = RepoKey::generate()?;
//! let online = OnlineSigner::new(RepoKey::generate()?, RepoKey::generate()?);
//! let params = RootParams {
//!     root: RoleKeys::new(vec![root_key.public().clone()], 1),
//!     targets: RoleKeys::new(vec![targets_key.public().clone()], 1),
//!     snapshot: RoleKeys::new(vec![online.snapshot_key().clone()], 1),
//!     timestamp: RoleKeys::new(vec![online.timestamp_key().clone()], 1),
//!     expires: in_a_year,
//! };
//! let root = rota_repo::init_root(&params, &[&root_key])?;
//! assert_eq!(root.file_name(), "1.root.json");
//!
//! // Offline: the release engineer signs targets.
//! let image = TargetFile::from_bytes("fw.bin", b"firmware", serde_json::json!({}));
//! let targets = rota_repo::sign_targets(None, &[image], &[&targets_key], in_a_year)?;
//!
//! // Online: the server checks the upload, then signs snapshot and timestamp.
//! let now = SystemTime::now();
//! let verified = rota_repo::verify_targets_upload(&root.bytes, None, &targets.bytes, now)?;
//! assert_eq!(verified.targets[0].name, "fw.bin");
//! online.check_against_root(&root.bytes)?;
//! let snapshot = online.snapshot(&targets.bytes, 1, now + Duration::from_secs(86400))?;
//! let timestamp = online.timestamp(&snapshot.bytes, 1, now + Duration::from_secs(3600))?;
//! assert_eq!(timestamp.file_name(), "timestamp.json");
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod dir;
mod encoding;
mod error;
pub mod files;
mod keys;
pub mod layout;
mod online;
mod root;
mod targets;

use std::fmt;
use std::time::SystemTime;

pub use dir::{
    DirError, GivenKeys, InitOptions, Initialized, ONLINE_KEY_FILES, Recovery, RepoDir, RootChain,
    RotateOptions, Rotated, load_key, open_key,
};
pub use encoding::{max_len as max_metadata_len, tuf_date_time};
pub use error::{Error, Result};
pub use keys::{PublicKey, RepoKey};
pub use online::OnlineSigner;
pub use root::{
    RoleKeys, RootInfo, RootParams, cross_sign_root, init_root, rotate_root,
    verify_cross_signed_root, verify_first_root, verify_root_chain, verify_root_update,
};
pub use targets::{
    RotaTarget, TargetEntry, TargetFile, VerifiedTargets, listed_targets, sign_targets,
    verify_targets_upload,
};
/// The TUF library rota-repo builds on, for its client (`tough::RepositoryLoader`) and types.
pub use tough;

/// The TUF specification version rota writes in `spec_version` (TUF 1.0.34 §4.3). rota
/// reads any 1.x version, as python-tuf does.
pub const SPEC_VERSION: &str = "1.0.34";

/// One of the four top-level TUF roles (TUF 1.0.34 §2.1); rota has no delegated roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleName {
    /// Root: the keys and thresholds of every role.
    Root,
    /// Targets: the released files, their hashes, lengths and rota's custom fields.
    Targets,
    /// Snapshot: the version (and hashes) of the targets metadata.
    Snapshot,
    /// Timestamp: the version (and hashes) of the snapshot metadata; the freshness proof.
    Timestamp,
}

impl RoleName {
    /// The role's name as TUF writes it in `_type` and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleName::Root => "root",
            RoleName::Targets => "targets",
            RoleName::Snapshot => "snapshot",
            RoleName::Timestamp => "timestamp",
        }
    }

    /// tough's name for the role.
    pub(crate) fn role_type(self) -> tough::schema::RoleType {
        use tough::schema::RoleType;
        match self {
            RoleName::Root => RoleType::Root,
            RoleName::Targets => RoleType::Targets,
            RoleName::Snapshot => RoleType::Snapshot,
            RoleName::Timestamp => RoleType::Timestamp,
        }
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signed metadata file: the exact bytes to store and serve, with what names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBytes {
    /// Which role signed it.
    pub role: RoleName,
    /// Its `version`.
    pub version: u64,
    /// Its `expires`.
    pub expires: SystemTime,
    /// The file's bytes (pretty JSON, keys sorted). Hashes and lengths in snapshot and
    /// timestamp metadata are computed over exactly these bytes: store and serve them
    /// unchanged.
    pub bytes: Vec<u8>,
}

impl SignedBytes {
    /// The file name under consistent snapshots (TUF 1.0.34 §6.2): `N.root.json`,
    /// `N.targets.json`, `N.snapshot.json`, or `timestamp.json`.
    pub fn file_name(&self) -> String {
        match self.role {
            RoleName::Root => layout::root_file_name(self.version),
            RoleName::Targets => layout::targets_file_name(self.version),
            RoleName::Snapshot => layout::snapshot_file_name(self.version),
            RoleName::Timestamp => layout::TIMESTAMP_FILE_NAME.to_owned(),
        }
    }
}
