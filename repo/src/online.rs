//! The online roles, held by the update server: snapshot and timestamp
//! (TUF 1.0.34 §4.4, §4.6).

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::time::SystemTime;

use rota_tuf::json::Json;
use sha2::Digest as _;
use tough::schema::{Hashes, Metafile, Snapshot, Timestamp};

use crate::encoding::{self, decoded, from_tuf_time, only_fields, to_tuf_time};
use crate::error::{Error, Result};
use crate::keys::{PublicKey, RepoKey};
use crate::root::RootInfo;
use crate::{RoleName, SPEC_VERSION, SignedBytes, targets};

/// The server's snapshot and timestamp keys, and the metadata it signs with them.
///
/// The server signs a new snapshot (and timestamp) after every targets upload, and a new
/// timestamp before the current one expires; the versions are the server's to keep, each
/// greater than the last it published (clients refuse lower ones, TUF 1.0.34 §5.4.3,
/// §5.5.5).
#[derive(Debug)]
pub struct OnlineSigner {
    snapshot: RepoKey,
    timestamp: RepoKey,
}

impl OnlineSigner {
    /// The signer with these keys.
    pub fn new(snapshot: RepoKey, timestamp: RepoKey) -> Self {
        Self {
            snapshot,
            timestamp,
        }
    }

    /// The signer with keys read from PKCS#8 PEM files (`rota repo init` writes them as
    /// `online/snapshot.key` and `online/timestamp.key`).
    pub fn from_pem(snapshot_pem: &str, timestamp_pem: &str) -> Result<Self> {
        Ok(Self::new(
            RepoKey::from_pkcs8_pem(snapshot_pem)?,
            RepoKey::from_pkcs8_pem(timestamp_pem)?,
        ))
    }

    /// The snapshot public key.
    pub fn snapshot_key(&self) -> &PublicKey {
        self.snapshot.public()
    }

    /// The timestamp public key.
    pub fn timestamp_key(&self) -> &PublicKey {
        self.timestamp.public()
    }

    /// Checks that `root` (verified as in [`RootInfo::parse`]) names these keys for the
    /// snapshot and timestamp roles with threshold 1, so that the single signature the
    /// server makes meets the role's threshold for clients (TUF 1.0.34 §5.4.2, §5.5.3).
    /// Run it at start-up and after every root update.
    pub fn check_against_root(&self, root: &[u8]) -> Result<RootInfo> {
        let info = RootInfo::parse(root)?;
        for (role, key) in [
            (RoleName::Snapshot, &self.snapshot),
            (RoleName::Timestamp, &self.timestamp),
        ] {
            let keys = info.role(role);
            if !keys.contains(key.key_id()) {
                return Err(Error::OnlineKeyMismatch {
                    role,
                    key_id: key.key_id().to_owned(),
                    root_version: info.version,
                });
            }
            if keys.threshold != 1 {
                return Err(Error::RoleKeys {
                    role,
                    reason: format!(
                        "has threshold {}, but the server signs with one key",
                        keys.threshold
                    ),
                });
            }
        }
        Ok(info)
    }

    /// Snapshot metadata `version` listing the targets metadata `targets_bytes` (the
    /// exact bytes served as `N.targets.json`): its version, length, SHA-256 and SHA-512
    /// (TUF 1.0.34 §4.4 METAFILES; clients check them, §5.6.2 and §5.6.4).
    ///
    /// `targets_bytes` must be targets metadata that passes rota's checks; its signatures
    /// are [`verify_targets_upload`](crate::verify_targets_upload)'s business.
    pub fn snapshot(
        &self,
        targets_bytes: &[u8],
        version: u64,
        expires: SystemTime,
    ) -> Result<SignedBytes> {
        let (targets, _) = targets::parse(targets_bytes)?;
        let mut snapshot = Snapshot::new(
            SPEC_VERSION.to_owned(),
            nonzero(RoleName::Snapshot, version)?,
            to_tuf_time(expires)?,
        );
        snapshot.meta.insert(
            "targets.json".to_owned(),
            metafile(
                targets_bytes,
                nonzero(RoleName::Targets, targets.common.version)?,
            ),
        );
        let bytes = encoding::sign(&snapshot, RoleName::Snapshot, &[&self.snapshot])?;
        Ok(SignedBytes {
            role: RoleName::Snapshot,
            version,
            expires: from_tuf_time(snapshot.expires),
            bytes,
        })
    }

    /// Timestamp metadata `version` listing the snapshot metadata `snapshot_bytes` (the
    /// exact bytes served as `N.snapshot.json`): its version, length, SHA-256 and SHA-512
    /// (TUF 1.0.34 §4.6: exactly one entry, `snapshot.json`; clients check it, §5.5.2 and
    /// §5.5.4).
    ///
    /// `snapshot_bytes` must be snapshot metadata signed by this signer's snapshot key
    /// and listing `targets.json`.
    pub fn timestamp(
        &self,
        snapshot_bytes: &[u8],
        version: u64,
        expires: SystemTime,
    ) -> Result<SignedBytes> {
        let parsed = encoding::parse(snapshot_bytes, RoleName::Snapshot)?;
        let snapshot = encoding::typed(&parsed, RoleName::Snapshot, rota_tuf::model::snapshot)?;
        if !encoding::signed_by(&parsed, self.snapshot.public()) {
            return Err(Error::Meta {
                role: RoleName::Snapshot,
                reason: "is not signed by this server's snapshot key".into(),
            });
        }
        check_snapshot_meta(&snapshot, &parsed.signed)?;
        let mut timestamp = Timestamp::new(
            SPEC_VERSION.to_owned(),
            nonzero(RoleName::Timestamp, version)?,
            to_tuf_time(expires)?,
        );
        timestamp.meta.insert(
            "snapshot.json".to_owned(),
            metafile(
                snapshot_bytes,
                nonzero(RoleName::Snapshot, snapshot.common.version)?,
            ),
        );
        let bytes = encoding::sign(&timestamp, RoleName::Timestamp, &[&self.timestamp])?;
        Ok(SignedBytes {
            role: RoleName::Timestamp,
            version,
            expires: from_tuf_time(timestamp.expires),
            bytes,
        })
    }
}

/// TUF 1.0.34 §4.4: rota's snapshot lists exactly `targets.json` (no delegated roles),
/// with no fields beyond version, length and hashes.
fn check_snapshot_meta(snapshot: &rota_tuf::model::Snapshot, signed: &Json) -> Result<()> {
    let bad = |reason: &str| Error::Meta {
        role: RoleName::Snapshot,
        reason: reason.to_owned(),
    };
    if !snapshot.meta.contains_key("targets.json") {
        return Err(bad("does not list targets.json"));
    }
    if snapshot.meta.len() != 1 {
        return Err(bad("lists more than targets.json"));
    }
    only_fields(
        encoding::members(signed, &["meta", "targets.json"]),
        &["version", "length", "hashes"],
        RoleName::Snapshot,
        "signed.meta.targets.json.",
    )
}

/// The METAFILES entry for a metadata file (TUF 1.0.34 §4.4).
fn metafile(bytes: &[u8], version: NonZeroU64) -> Metafile {
    let mut other_hashes = HashMap::new();
    other_hashes.insert(
        "sha512".to_owned(),
        serde_json::Value::String(hex::encode(sha2::Sha512::digest(bytes))),
    );
    Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(Hashes {
            sha256: decoded(&sha2::Sha256::digest(bytes)),
            _extra: other_hashes,
        }),
        version,
        _extra: HashMap::new(),
    }
}

/// TUF 1.0.34 §4.3 VERSION: "an integer that is greater than 0".
fn nonzero(role: RoleName, version: u64) -> Result<NonZeroU64> {
    NonZeroU64::new(version).ok_or(Error::Meta {
        role,
        reason: "cannot have version 0; versions start at 1".into(),
    })
}
