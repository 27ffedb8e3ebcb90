//! Root metadata: creating version 1, rotating to version N+1, and checking a new version
//! as a client will (TUF 1.0.34 §4.3, §5.3).
//!
//! Every check a device makes is made by the device's own code: roots are read with
//! rota-tuf's model and verified by its `TrustedSet` (§5.2, §5.3.4, §5.3.5, §5.3.10).
//! What is left here is rota's own shape, stricter than TUF ([`check_structure`]).

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU64;
use std::time::SystemTime;

use rota_tuf::TrustedSet;
use rota_tuf::json::Json;
use tough::schema::Root;

use crate::encoding::{self, decoded, only_fields, system_time, to_tuf_time};
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
        Ok(trusted(bytes, SystemTime::now())?.1)
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

/// Reads root metadata as a device does and checks rota's shape (not its signatures).
pub(crate) fn parse(bytes: &[u8]) -> Result<RootInfo> {
    let parsed = encoding::parse(bytes, RoleName::Root)?;
    let root = encoding::typed(&parsed, RoleName::Root, rota_tuf::model::root)?;
    check_structure(&root, &parsed.signed)
}

/// [`parse`], then TUF 1.0.34 §5.2: signed by a threshold of its own root keys, checked by
/// the device's trusted set, which is returned with `now` as its reference time.
pub(crate) fn trusted(bytes: &[u8], now: SystemTime) -> Result<(TrustedSet, RootInfo)> {
    let info = parse(bytes)?;
    let set = TrustedSet::new(bytes, now).map_err(|e| match e {
        rota_tuf::Error::Signature { .. } => Error::RootNotSelfSigned {
            version: info.version,
        },
        other => encoding::refused(RoleName::Root, other),
    })?;
    Ok((set, info))
}

/// The shape rota requires of every root it writes or accepts, on top of what rota-tuf's
/// model already requires (exactly the four top-level roles, distinct key ids per role,
/// thresholds of at least 1):
/// - TUF 1.0.34 §4.3: every key id a role lists is defined in `keys` (a device counts an
///   undefined one as no key at all), each threshold at most the role's key count;
/// - §4.2: keys are Ed25519 with the "ed25519" scheme (rota's only kind) under the key id
///   §4.2 defines (SHA-256 of the key's canonical JSON), no fields TUF does not define;
/// - §6.2: `consistent_snapshot` is true (rota's layout depends on it);
/// - rota's key split ([`check_key_split`]).
fn check_structure(root: &rota_tuf::model::Root, signed: &Json) -> Result<RootInfo> {
    if !root.consistent_snapshot {
        return Err(Error::NotConsistentSnapshot);
    }
    let mut keys = HashMap::new();
    for (id, key) in &root.keys {
        let place = format!("signed.keys.{id}.");
        let fields = encoding::members(signed, &["keys", id]);
        only_fields(
            fields,
            &["keytype", "scheme", "keyval"],
            RoleName::Root,
            &place,
        )?;
        let keyval = encoding::members(signed, &["keys", id, "keyval"]);
        only_fields(
            keyval,
            &["public"],
            RoleName::Root,
            &format!("{place}keyval."),
        )?;
        let unsupported = || Error::UnsupportedKey { key_id: id.clone() };
        let public = key.ed25519_public().ok_or_else(unsupported)?;
        let public = PublicKey::from_bytes(public).map_err(|_| unsupported())?;
        if public.key_id() != id {
            return Err(Error::KeyIdMismatch {
                listed: id.clone(),
                computed: public.key_id().to_owned(),
            });
        }
        keys.insert(id.as_str(), public);
    }
    let role_keys = |role: RoleName| -> Result<RoleKeys> {
        let place = format!("signed.roles.{role}.");
        let fields = encoding::members(signed, &["roles", role.as_str()]);
        only_fields(fields, &["keyids", "threshold"], RoleName::Root, &place)?;
        let entry = root.roles.get(role.as_str()).ok_or_else(|| Error::Parse {
            role: RoleName::Root,
            reason: format!("there is no {role} role"),
        })?;
        let mut listed = Vec::new();
        for id in &entry.keyids {
            let key = keys.get(id.as_str()).ok_or_else(|| Error::RoleKeys {
                role,
                reason: format!("lists key {id}, which the root does not define"),
            })?;
            listed.push(key.clone());
        }
        let role_keys = RoleKeys::new(listed, entry.threshold);
        role_keys.check(role)?;
        Ok(role_keys)
    };
    let info = RootInfo {
        version: root.common.version,
        expires: system_time(root.common.expires),
        root: role_keys(RoleName::Root)?,
        targets: role_keys(RoleName::Targets)?,
        snapshot: role_keys(RoleName::Snapshot)?,
        timestamp: role_keys(RoleName::Timestamp)?,
    };
    check_key_split(|role| info.role(role))?;
    Ok(info)
}

/// rota's key split (docs/ARCHITECTURE.md): no key serves both an offline role (root,
/// targets) and an online role (snapshot, timestamp), so the server's keys never carry
/// offline authority.
fn check_key_split<'a>(role: impl Fn(RoleName) -> &'a RoleKeys) -> Result<()> {
    for offline in [RoleName::Root, RoleName::Targets] {
        for online in [RoleName::Snapshot, RoleName::Timestamp] {
            if let Some(key) = role(offline)
                .keys
                .iter()
                .find(|k| role(online).contains(k.key_id()))
            {
                return Err(Error::OfflineKeyOnline {
                    key_id: key.key_id().to_owned(),
                    offline,
                    online,
                });
            }
        }
    }
    Ok(())
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
    check_key_split(|role| match role {
        RoleName::Root => &params.root,
        RoleName::Targets => &params.targets,
        RoleName::Snapshot => &params.snapshot,
        RoleName::Timestamp => &params.timestamp,
    })?;
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
    let (_, info) = trusted(&bytes, SystemTime::now())?;
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
    let now = SystemTime::now();
    let (_, old) = trusted(old_root, now)?;
    let version = old.version.checked_add(1).ok_or(Error::VersionOverflow {
        role: RoleName::Root,
        current: old.version,
    })?;
    let root = build(params, version)?;
    check_signers(RoleName::Root, &old.root, old_signers)?;
    check_signers(RoleName::Root, &params.root, new_signers)?;
    let signers: Vec<&RepoKey> = old_signers.iter().chain(new_signers).copied().collect();
    let bytes = encoding::sign(&root, RoleName::Root, &signers)?;
    let (_, info) = check_update(old_root, &bytes, now)?;
    Ok(SignedBytes {
        role: RoleName::Root,
        version: info.version,
        expires: info.expires,
        bytes,
    })
}

/// `new_root` (another repository's root) cross-signed with `trusted_root`'s root keys
/// `old_signers`, for devices that trust `trusted_root` to move to it (an ownership
/// transfer): the result is what rota-tuf's `TrustedSet::cross_signed_root` accepts —
/// signed by a threshold of `trusted_root`'s root keys and of its own (TUF §5.3.4's two
/// rules, across repositories), and not expired — and is checked so before it is returned.
pub fn cross_sign_root(
    trusted_root: &[u8],
    new_root: &[u8],
    old_signers: &[&RepoKey],
) -> Result<Vec<u8>> {
    let trusted_info = parse(trusted_root)?;
    check_signers(RoleName::Root, &trusted_info.root, old_signers)?;
    let bytes = encoding::add_signatures(new_root, RoleName::Root, old_signers)?;
    verify_cross_signed_root(trusted_root, &bytes, SystemTime::now())?;
    Ok(bytes)
}

/// Checks `new_root`, another repository's root, as a device that trusts
/// `trusted_root` checks it before it moves (rota-tuf's `TrustedSet::cross_signed_root`):
/// signed by a threshold of `trusted_root`'s root keys and of its own, and not expired
/// at `now`. Returns what `new_root` says.
pub fn verify_cross_signed_root(
    trusted_root: &[u8],
    new_root: &[u8],
    now: SystemTime,
) -> Result<RootInfo> {
    let (set, _) = trusted(trusted_root, now)?;
    let info = parse(new_root)?;
    set.cross_signed_root(new_root)
        .map_err(|e| encoding::refused(RoleName::Root, e))?;
    Ok(info)
}

/// Checks the first root a repository publishes: what devices are provisioned with and
/// trust as shipped (TUF 1.0.34 §5.2), so it must be self-signed by its threshold, rota's
/// shape ([`RootInfo::parse`]), version 1 (clients walk 1, 2, 3, …) and not expired at
/// `now` (§5.3.10). Returns what it says.
pub fn verify_first_root(root: &[u8], now: SystemTime) -> Result<RootInfo> {
    let (set, info) = trusted(root, now)?;
    if info.version != 1 {
        return Err(Error::FirstRootVersion {
            version: info.version,
        });
    }
    check_final(&set, &info)?;
    Ok(info)
}

/// Checks `new_root` as the successor of `trusted_root`, with the device's own trusted set
/// (rota-tuf's `TrustedSet::update_root`), and that it is not expired at `now` (it
/// becomes the root clients end on, TUF 1.0.34 §5.3.10). Returns what `new_root` says.
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
    let (set, info) = check_update(trusted_root, new_root, now)?;
    check_final(&set, &info)?;
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
    let now = SystemTime::now();
    let mut info = RootInfo::parse(trusted_root)?;
    let mut trusted = trusted_root;
    for new_root in newer_roots {
        info = check_update(trusted, new_root, now)?.1;
        trusted = new_root;
    }
    Ok(info)
}

/// [`verify_root_update`] without the expiry check: the trusted set after the rotation.
fn check_update(
    trusted_root: &[u8],
    new_root: &[u8],
    now: SystemTime,
) -> Result<(TrustedSet, RootInfo)> {
    let (mut set, trusted_info) = trusted(trusted_root, now)?;
    let new_info = parse(new_root)?;
    set.update_root(new_root).map_err(|e| match e {
        // TUF 1.0.34 §5.3.4 (1): a threshold of the keys the client already trusts.
        rota_tuf::Error::Signature { signer, .. } if signer == "trusted root" => {
            Error::RootNotSignedByTrusted {
                version: new_info.version,
                trusted: trusted_info.version,
            }
        }
        // §5.3.4 (2): a threshold of the new root's own keys.
        rota_tuf::Error::Signature { .. } => Error::RootNotSelfSigned {
            version: new_info.version,
        },
        // §5.3.5: exactly N+1 (clients fetch N+1.root.json and nothing else).
        rota_tuf::Error::RootVersion { trusted, got } => Error::RootVersion {
            trusted,
            version: got,
        },
        other => encoding::refused(RoleName::Root, other),
    })?;
    Ok((set, new_info))
}

/// TUF 1.0.34 §5.3.10 (freeze attacks): the root devices end on must not be expired.
fn check_final(set: &TrustedSet, info: &RootInfo) -> Result<()> {
    set.check_final_root()
        .map_err(|e| expired(RoleName::Root, info.version, e))
}

/// rota-tuf's expiry error (TUF 1.0.34 §5.3.10, §5.6.5) for `role` at `version`.
pub(crate) fn expired(role: RoleName, version: u64, e: rota_tuf::Error) -> Error {
    match e {
        rota_tuf::Error::Expired { expires, .. } => Error::Expired {
            role,
            version,
            expires,
        },
        other => encoding::refused(role, other),
    }
}
