//! Root metadata: creating version 1, rotating to version N+1, and checking a new version
//! as a client will (TUF 1.0.34 §4.3, §5.3).

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU64;
use std::time::SystemTime;

use tough::schema::{Root, Signed};

use crate::encoding::{self, check_not_expired, decoded, from_tuf_time, to_tuf_time};
use crate::error::{Error, Result};
use crate::keys::{PublicKey, RepoKey};
use crate::{RoleName, SPEC_VERSION, SignedBytes};

/// The keys of one role and how many of them must sign (its threshold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleKeys {
    /// The role's public keys.
    pub keys: Vec<PublicKey>,
    /// How many distinct keys of `keys` must sign the role's metadata.
    pub threshold: u64,
}

impl RoleKeys {
    /// `threshold` of `keys`.
    pub fn new(keys: Vec<PublicKey>, threshold: u64) -> Self {
        Self { keys, threshold }
    }

    /// Whether `key_id` is one of the role's keys.
    pub fn contains(&self, key_id: &str) -> bool {
        self.keys.iter().any(|k| k.key_id() == key_id)
    }

    /// TUF 1.0.34 §4.3 THRESHOLD: at least 1, and no more than the role's distinct keys
    /// (a higher threshold could never be met).
    fn check(&self, role: RoleName) -> Result<()> {
        let mut seen = HashSet::new();
        if let Some(dup) = self.keys.iter().find(|k| !seen.insert(k.key_id())) {
            return Err(Error::RoleKeys {
                role,
                reason: format!("lists key {} twice", dup.key_id()),
            });
        }
        if self.threshold == 0 || self.threshold > self.keys.len() as u64 {
            return Err(Error::RoleKeys {
                role,
                reason: format!(
                    "has threshold {} but {} keys; the threshold must be between 1 and the number of keys",
                    self.threshold,
                    self.keys.len()
                ),
            });
        }
        Ok(())
    }
}

/// What a new root version says: the keys and thresholds of the four roles and its expiry.
#[derive(Debug, Clone)]
pub struct RootParams {
    /// The root role: signs root metadata (offline, typically k of n).
    pub root: RoleKeys,
    /// The targets role: signs the list of released files (offline).
    pub targets: RoleKeys,
    /// The snapshot role (online, the server's key).
    pub snapshot: RoleKeys,
    /// The timestamp role (online, the server's key).
    pub timestamp: RoleKeys,
    /// When the root metadata expires; devices refuse to update past it until a newer root
    /// is published (TUF 1.0.34 §5.3.10).
    pub expires: SystemTime,
}

impl RootParams {
    fn roles(&self) -> [(RoleName, &RoleKeys); 4] {
        [
            (RoleName::Root, &self.root),
            (RoleName::Targets, &self.targets),
            (RoleName::Snapshot, &self.snapshot),
            (RoleName::Timestamp, &self.timestamp),
        ]
    }
}

/// A root metadata file that passed rota's checks, as the server and CLI need it.
#[derive(Debug, Clone)]
pub struct RootInfo {
    /// Its version.
    pub version: u64,
    /// Its expiry.
    pub expires: SystemTime,
    /// The root role's keys and threshold.
    pub root: RoleKeys,
    /// The targets role's keys and threshold.
    pub targets: RoleKeys,
    /// The snapshot role's keys and threshold.
    pub snapshot: RoleKeys,
    /// The timestamp role's keys and threshold.
    pub timestamp: RoleKeys,
}

impl RootInfo {
    /// Parses root metadata and checks that it is signed by a threshold of its own root
    /// keys (TUF 1.0.34 §5.2, as for a trusted root) and has the shape rota requires
    /// (consistent snapshots, Ed25519 keys, usable thresholds). Expiry is not checked.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        Ok(parse_trusted(bytes)?.1)
    }

    /// The keys of `role`.
    pub fn role(&self, role: RoleName) -> &RoleKeys {
        match role {
            RoleName::Root => &self.root,
            RoleName::Targets => &self.targets,
            RoleName::Snapshot => &self.snapshot,
            RoleName::Timestamp => &self.timestamp,
        }
    }
}

/// Parses root metadata strictly and checks its shape (not its signatures).
pub(crate) fn parse(bytes: &[u8]) -> Result<(Signed<Root>, RootInfo)> {
    let root: Signed<Root> = encoding::parse(bytes, RoleName::Root)?;
    let info = check_structure(&root.signed)?;
    Ok((root, info))
}

/// [`parse`], then TUF 1.0.34 §5.2/§5.3.4 (2): signed by a threshold of its own root keys.
pub(crate) fn parse_trusted(bytes: &[u8]) -> Result<(Signed<Root>, RootInfo)> {
    let (root, info) = parse(bytes)?;
    root.signed
        .verify_role(&root)
        .map_err(|_| Error::RootNotSelfSigned {
            version: info.version,
        })?;
    Ok((root, info))
}

/// The shape rota requires of every root it writes or accepts:
/// - TUF 1.0.34 §4.3: exactly the roles root, targets, snapshot and timestamp (python-tuf
///   refuses any other set), every listed key id present in `keys`, each threshold
///   between 1 and the role's key count;
/// - §4.2: keys are Ed25519 with the "ed25519" scheme (rota's only kind), no extra fields;
/// - §6.2: `consistent_snapshot` is true (rota's layout depends on it);
/// - rota's key split (docs/ARCHITECTURE.md): no key serves both an offline role (root,
///   targets) and an online role (snapshot, timestamp), so the server's keys never carry
///   offline authority.
fn check_structure(root: &Root) -> Result<RootInfo> {
    if let Some(field) = root._extra.keys().next() {
        return Err(Error::UnknownField {
            role: RoleName::Root,
            field: format!("signed.{field}"),
        });
    }
    if !root.consistent_snapshot {
        return Err(Error::NotConsistentSnapshot);
    }
    let wanted = [
        RoleName::Root,
        RoleName::Targets,
        RoleName::Snapshot,
        RoleName::Timestamp,
    ];
    if root.roles.len() != wanted.len()
        || !wanted
            .iter()
            .all(|r| root.roles.contains_key(&r.role_type()))
    {
        return Err(Error::RootRoles);
    }
    let mut keys = HashMap::new();
    for (id, key) in &root.keys {
        keys.insert(hex::encode(&**id), PublicKey::from_tuf_key(key)?);
    }
    let role_keys = |role: RoleName| -> Result<RoleKeys> {
        let entry = root.roles.get(&role.role_type()).ok_or(Error::RootRoles)?;
        if let Some(field) = entry._extra.keys().next() {
            return Err(Error::UnknownField {
                role: RoleName::Root,
                field: format!("signed.roles.{role}.{field}"),
            });
        }
        let mut listed = Vec::new();
        for id in &entry.keyids {
            let id = hex::encode(&**id);
            let key = keys.get(&id).ok_or_else(|| Error::RoleKeys {
                role,
                reason: format!("lists key {id}, which the root does not define"),
            })?;
            listed.push(key.clone());
        }
        let role_keys = RoleKeys::new(listed, entry.threshold.get());
        role_keys.check(role)?;
        Ok(role_keys)
    };
    let info = RootInfo {
        version: root.version.get(),
        expires: from_tuf_time(root.expires),
        root: role_keys(RoleName::Root)?,
        targets: role_keys(RoleName::Targets)?,
        snapshot: role_keys(RoleName::Snapshot)?,
        timestamp: role_keys(RoleName::Timestamp)?,
    };
    for offline in [RoleName::Root, RoleName::Targets] {
        for online in [RoleName::Snapshot, RoleName::Timestamp] {
            if let Some(key) = info
                .role(offline)
                .keys
                .iter()
                .find(|k| info.role(online).contains(k.key_id()))
            {
                return Err(Error::OfflineKeyOnline {
                    key_id: key.key_id().to_owned(),
                    offline,
                    online,
                });
            }
        }
    }
    Ok(info)
}

/// The unsigned root metadata for `params` at `version`.
fn build(params: &RootParams, version: u64) -> Result<Root> {
    let version = NonZeroU64::new(version).ok_or(Error::VersionOverflow {
        role: RoleName::Root,
        current: 0,
    })?;
    let mut keys = HashMap::new();
    let mut roles = HashMap::new();
    for (role, role_keys) in params.roles() {
        role_keys.check(role)?;
        for key in &role_keys.keys {
            keys.insert(decoded(&hex_bytes(key.key_id())), key.tuf_key());
        }
        let threshold = NonZeroU64::new(role_keys.threshold).ok_or(Error::RoleKeys {
            role,
            reason: "has threshold 0; the threshold must be at least 1".into(),
        })?;
        roles.insert(
            role.role_type(),
            tough::schema::RoleKeys {
                keyids: role_keys
                    .keys
                    .iter()
                    .map(|k| decoded(&hex_bytes(k.key_id())))
                    .collect(),
                threshold,
                _extra: HashMap::new(),
            },
        );
    }
    let root = Root {
        spec_version: SPEC_VERSION.to_owned(),
        consistent_snapshot: true,
        version,
        expires: to_tuf_time(params.expires)?,
        keys,
        roles,
        _extra: HashMap::new(),
    };
    check_structure(&root)?;
    Ok(root)
}

/// A key id's bytes (key ids come from [`PublicKey::key_id`], always valid hex).
fn hex_bytes(key_id: &str) -> Vec<u8> {
    hex::decode(key_id).unwrap_or_default()
}

/// Fails unless every key of `signers` is a key of `role` and at least its threshold of
/// distinct keys are given.
fn check_signers(role: RoleName, keys: &RoleKeys, signers: &[&RepoKey]) -> Result<()> {
    if let Some(stranger) = signers.iter().find(|s| !keys.contains(s.key_id())) {
        return Err(Error::NotARoleKey {
            key_id: stranger.key_id().to_owned(),
            role,
        });
    }
    let distinct: HashSet<&str> = signers.iter().map(|s| s.key_id()).collect();
    if (distinct.len() as u64) < keys.threshold {
        return Err(Error::TooFewSigners {
            role,
            threshold: keys.threshold,
            given: distinct.len(),
        });
    }
    Ok(())
}

/// Root metadata version 1 for `params`, signed by `signers`, which must be at least the
/// root threshold of the root keys in `params`.
///
/// Consistent snapshots are on and `spec_version` is [`SPEC_VERSION`]. The result is
/// checked as a client checks a trusted root (TUF 1.0.34 §5.2) before it is returned.
pub fn init_root(params: &RootParams, signers: &[&RepoKey]) -> Result<SignedBytes> {
    let root = build(params, 1)?;
    check_signers(RoleName::Root, &params.root, signers)?;
    let bytes = encoding::sign(&root, RoleName::Root, signers)?;
    let (_, info) = parse_trusted(&bytes)?;
    Ok(SignedBytes {
        role: RoleName::Root,
        version: info.version,
        expires: info.expires,
        bytes,
    })
}

/// Root metadata version N+1 after `old_root` (version N) with the keys of `params`.
///
/// TUF 1.0.34 §5.3.4: it is signed by a threshold of the root keys of `old_root`
/// (`old_signers`) and by a threshold of its own root keys (`new_signers`); a key in both
/// sets signs once and counts for both. The result passes [`verify_root_update`] against
/// `old_root` (expiry aside) before it is returned.
pub fn rotate_root(
    old_root: &[u8],
    params: &RootParams,
    old_signers: &[&RepoKey],
    new_signers: &[&RepoKey],
) -> Result<SignedBytes> {
    let (_, old) = parse_trusted(old_root)?;
    let version = old.version.checked_add(1).ok_or(Error::VersionOverflow {
        role: RoleName::Root,
        current: old.version,
    })?;
    let root = build(params, version)?;
    check_signers(RoleName::Root, &old.root, old_signers)?;
    check_signers(RoleName::Root, &params.root, new_signers)?;
    let signers: Vec<&RepoKey> = old_signers.iter().chain(new_signers).copied().collect();
    let bytes = encoding::sign(&root, RoleName::Root, &signers)?;
    let info = check_update(old_root, &bytes)?;
    Ok(SignedBytes {
        role: RoleName::Root,
        version: info.version,
        expires: info.expires,
        bytes,
    })
}

/// Checks `new_root` as the successor of `trusted_root`, as a client will when it walks
/// from one to the other, and that it is not expired at `now` (it becomes the root
/// clients end on, TUF 1.0.34 §5.3.10). Returns what `new_root` says.
///
/// - TUF 1.0.34 §4.3: `_type` is "root", the shape is rota's (see [`RootInfo::parse`]);
/// - §5.3.4 (1): signed by a threshold of the root keys of `trusted_root`;
/// - §5.3.4 (2): signed by a threshold of its own root keys;
/// - §5.3.5: its version is exactly the trusted version plus one.
pub fn verify_root_update(
    trusted_root: &[u8],
    new_root: &[u8],
    now: SystemTime,
) -> Result<RootInfo> {
    let info = check_update(trusted_root, new_root)?;
    let expires = to_tuf_time(info.expires)?;
    check_not_expired(RoleName::Root, info.version, expires, now)?;
    Ok(info)
}

/// Checks a chain of root versions from `trusted_root` through `newer_roots` (in version
/// order), each against the one before as [`verify_root_update`] does, as a client walks
/// them (TUF 1.0.34 §5.3.3–§5.3.9). Returns what the last root says (or `trusted_root`,
/// when `newer_roots` is empty).
///
/// No expiry is checked: intermediate roots may have expired (TUF 1.0.34 §5.3.6), and a
/// repository whose latest root expired is repaired by rotating it. Clients refuse to go
/// on from an expired final root (§5.3.10): check [`RootInfo::expires`] before publishing.
pub fn verify_root_chain(trusted_root: &[u8], newer_roots: &[&[u8]]) -> Result<RootInfo> {
    let mut info = RootInfo::parse(trusted_root)?;
    let mut trusted = trusted_root;
    for new_root in newer_roots {
        info = check_update(trusted, new_root)?;
        trusted = new_root;
    }
    Ok(info)
}

/// [`verify_root_update`] without the expiry check.
fn check_update(trusted_root: &[u8], new_root: &[u8]) -> Result<RootInfo> {
    let (trusted, trusted_info) = parse_trusted(trusted_root)?;
    let (new, new_info) = parse(new_root)?;
    // TUF 1.0.34 §5.3.4 (1): a threshold of the keys the client already trusts.
    trusted
        .signed
        .verify_role(&new)
        .map_err(|_| Error::RootNotSignedByTrusted {
            version: new_info.version,
            trusted: trusted_info.version,
        })?;
    // TUF 1.0.34 §5.3.4 (2): a threshold of the new root's own keys.
    new.signed
        .verify_role(&new)
        .map_err(|_| Error::RootNotSelfSigned {
            version: new_info.version,
        })?;
    // TUF 1.0.34 §5.3.5: exactly N+1 (clients fetch N+1.root.json and nothing else).
    if trusted_info.version.checked_add(1) != Some(new_info.version) {
        return Err(Error::RootVersion {
            trusted: trusted_info.version,
            version: new_info.version,
        });
    }
    Ok(new_info)
}
