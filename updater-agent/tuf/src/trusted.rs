//! The trusted metadata set: python-tuf's `TrustedMetadataSet`, which enforces every
//! metadata rule of TUF 1.0.34 §5.2–§5.6 independent of where the bytes come from.
//!
//! Public for the repository side: rota-repo checks an uploaded root with
//! [`TrustedSet::new`] and [`TrustedSet::update_root`], and uploaded targets with
//! [`TrustedSet::verify_new_targets`], so the server trusts exactly what a device trusts.
//!
//! New metadata that verifies is stored *before* its expiry and version checks
//! ("intermediate"): it still serves as the reference for rollback checks, but as long as
//! those final checks fail it blocks loading the next role, and the caller persists only
//! metadata whose update returned `Ok`.

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::hashes::check_meta;
use crate::keys::Key;
use crate::model::{self, Envelope, RoleKeys, Root, Snapshot, Targets, Timestamp};
use crate::paths;
use crate::{Error, TargetInfo};

/// What [`TrustedSet::update_timestamp`] did with a new timestamp.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TimestampUpdate {
    /// Trusted from now on; persist it.
    Trusted,
    /// Same version as the trusted one: discarded without error, keep the trusted one.
    SameVersion,
}

/// The metadata trusted so far in one update cycle, and the checks that admit more.
#[derive(Clone)]
pub struct TrustedSet {
    /// §5.1: the update start time (Unix seconds) for every expiry check.
    start: i64,
    pub(crate) root: Root,
    pub(crate) timestamp: Option<Timestamp>,
    pub(crate) snapshot: Option<Snapshot>,
    /// "targets" and the delegated roles loaded so far.
    pub(crate) targets: HashMap<String, Targets>,
    /// The signatures and signed bytes of each loaded targets role, kept so that a role
    /// reached again through another delegator can be verified against that one's keys.
    envelopes: HashMap<String, Envelope>,
    /// (delegator, role): the delegators whose keys and threshold each loaded targets role
    /// has been verified against.
    verified_by: HashSet<(String, String)>,
}

/// Counts the distinct key ids of `role` whose key is in `keys` and whose signature on
/// `envelope` verifies, and fails below the threshold (python-tuf
/// `_DelegatorMixin.verify_delegate`). Each key id counts at most once: key ids in a role
/// and in `signatures` are unique by parsing.
fn verify(
    role_name: &str,
    signer: &str,
    role: &RoleKeys,
    keys: &dyn Fn(&str) -> Option<Key>,
    envelope: &Envelope,
) -> Result<(), Error> {
    let valid = role
        .keyids
        .iter()
        .filter(|id| {
            let key = keys(id);
            let sig = envelope.signatures.iter().find(|(k, _)| k == *id);
            match (key, sig) {
                (Some(key), Some((_, sig))) => key.verifies(&envelope.canonical, sig),
                _ => false,
            }
        })
        .count() as u64;
    if valid < role.threshold {
        return Err(Error::Signature {
            role: role_name.to_owned(),
            signer: signer.to_owned(),
            valid,
            threshold: role.threshold,
        });
    }
    Ok(())
}

fn verify_by_root(root: &Root, role: &str, signer: &str, envelope: &Envelope) -> Result<(), Error> {
    let keys = root
        .roles
        .get(role)
        .ok_or_else(|| Error::parse("root", format!("there is no {role} role")))?;
    verify(
        role,
        signer,
        keys,
        &|id| root.keys.get(id).cloned(),
        envelope,
    )
}

fn expired(role: &str, common: &model::Common) -> Error {
    Error::Expired {
        role: role.to_owned(),
        expires: common.expires_text.clone(),
    }
}

/// Unix seconds of `t`, rounded down (so "expired" is `start >= expires` exactly as with
/// python's sub-second datetimes).
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let before = e.duration();
            let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            if before.subsec_nanos() > 0 {
                -secs - 1
            } else {
                -secs
            }
        }
    }
}

impl TrustedSet {
    /// §5.1 and §5.2: the local root, verified by a threshold of its own root keys;
    /// `start` is the reference time of every expiry check. The root's own expiry is not
    /// checked here: an expired trusted root is the start of a rotation chain
    /// ([`TrustedSet::check_final_root`] checks it at the end).
    pub fn new(root_bytes: &[u8], start: SystemTime) -> Result<Self, Error> {
        Self::at(root_bytes, unix_seconds(start))
    }

    /// [`TrustedSet::new`] with the start time in Unix seconds.
    pub(crate) fn at(root_bytes: &[u8], start: i64) -> Result<Self, Error> {
        let (envelope, signed) = model::parse_envelope(root_bytes, "root", "root")?;
        let root = model::root(&signed).map_err(|r| Error::parse("root", r))?;
        verify_by_root(&root, "root", "trusted root", &envelope)?;
        Ok(TrustedSet {
            start,
            root,
            timestamp: None,
            snapshot: None,
            targets: HashMap::new(),
            envelopes: HashMap::new(),
            verified_by: HashSet::new(),
        })
    }

    /// The trusted root: the one given to [`TrustedSet::new`], or the last one
    /// [`TrustedSet::update_root`] accepted.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// §5.3.4–§5.3.8: one step of root rotation.
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let (envelope, signed) = model::parse_envelope(bytes, "root", "root")?;
        let new = model::root(&signed).map_err(|r| Error::parse("root", r))?;
        // §5.3.4 (1): signed by a threshold of the trusted root's root keys.
        verify_by_root(&self.root, "root", "trusted root", &envelope)?;
        // §5.3.5: the version is exactly N+1.
        if Some(new.common.version) != self.root.common.version.checked_add(1) {
            return Err(Error::RootVersion {
                trusted: self.root.common.version,
                got: new.common.version,
            });
        }
        // §5.3.4 (2): and by a threshold of its own root keys.
        verify_by_root(&new, "root", "new root", &envelope)?;
        // §5.3.6: the expiry of intermediate roots does not matter.
        self.root = new;
        Ok(())
    }

    /// A root of another repository that this one hands its devices over to (an
    /// ownership transfer, `docs/design/lifecycle.md` section 6): TUF §5.3.4's two rules
    /// across repositories — signed by a threshold of the trusted root's root keys and by
    /// a threshold of its own — and not expired (§5.3.10). §5.3.5's version rule does not
    /// apply: the new repository numbers its own roots. Returns a trusted set that starts
    /// from the new root.
    pub fn cross_signed_root(&self, bytes: &[u8]) -> Result<TrustedSet, Error> {
        let (envelope, signed) = model::parse_envelope(bytes, "root", "root")?;
        let new = model::root(&signed).map_err(|r| Error::parse("root", r))?;
        verify_by_root(&self.root, "root", "trusted root", &envelope)?;
        verify_by_root(&new, "root", "new root", &envelope)?;
        let set = TrustedSet::at(bytes, self.start)?;
        set.check_final_root()?;
        Ok(set)
    }

    /// §5.3.10: the final root must not be expired.
    pub fn check_final_root(&self) -> Result<(), Error> {
        if self.root.common.is_expired(self.start) {
            return Err(expired("root", &self.root.common));
        }
        Ok(())
    }

    /// §5.4.2–§5.4.4.
    pub(crate) fn update_timestamp(&mut self, bytes: &[u8]) -> Result<TimestampUpdate, Error> {
        self.check_final_root()?;
        let (envelope, signed) = model::parse_envelope(bytes, "timestamp", "timestamp")?;
        let new = model::timestamp(&signed).map_err(|r| Error::parse("timestamp", r))?;
        // §5.4.2: signed by a threshold of the root's timestamp keys.
        verify_by_root(&self.root, "timestamp", "root", &envelope)?;
        if let Some(old) = &self.timestamp {
            // §5.4.3.1: no rollback of the timestamp version.
            if new.common.version < old.common.version {
                return Err(Error::Rollback {
                    role: "timestamp".into(),
                    trusted: old.common.version,
                    new: new.common.version,
                });
            }
            // An equal version changes nothing: keep the trusted timestamp (python-tuf
            // `EqualVersionNumberError`; tough 0.24 instead accepts changed content here).
            if new.common.version == old.common.version {
                return Ok(TimestampUpdate::SameVersion);
            }
            // §5.4.3.2: no rollback of the snapshot version it lists.
            if new.snapshot_meta.version < old.snapshot_meta.version {
                return Err(Error::Rollback {
                    role: "snapshot".into(),
                    trusted: old.snapshot_meta.version,
                    new: new.snapshot_meta.version,
                });
            }
        }
        self.timestamp = Some(new);
        self.check_final_timestamp()?;
        Ok(TimestampUpdate::Trusted)
    }

    /// §5.4.4: the trusted timestamp must not be expired.
    pub(crate) fn check_final_timestamp(&self) -> Result<&Timestamp, Error> {
        let ts = self.timestamp.as_ref().ok_or_else(|| Error::MissingMeta {
            file: "timestamp.json".into(),
            listing: "trusted".into(),
        })?;
        if ts.common.is_expired(self.start) {
            return Err(expired("timestamp", &ts.common));
        }
        Ok(ts)
    }

    /// §5.5.2–§5.5.6. `local` is the snapshot from `METADATA_DIR`: its hashes were checked
    /// when it was downloaded and the timestamp may list newer ones, so they are skipped.
    pub(crate) fn update_snapshot(&mut self, bytes: &[u8], local: bool) -> Result<(), Error> {
        let meta = self.check_final_timestamp()?.snapshot_meta.clone();
        // §5.5.2: length and every hash the timestamp lists.
        if !local {
            check_meta("snapshot.json", bytes, meta.length, meta.hashes.as_deref())?;
        }
        let (envelope, signed) = model::parse_envelope(bytes, "snapshot", "snapshot")?;
        let new = model::snapshot(&signed).map_err(|r| Error::parse("snapshot", r))?;
        // §5.5.3: signed by a threshold of the root's snapshot keys.
        verify_by_root(&self.root, "snapshot", "root", &envelope)?;
        // §5.5.5: every file the trusted snapshot lists is still listed, at no lower version.
        if let Some(old) = &self.snapshot {
            for (file, old_meta) in &old.meta {
                let Some(new_meta) = new.meta.get(file) else {
                    return Err(Error::MissingMeta {
                        file: file.clone(),
                        listing: "the new snapshot".into(),
                    });
                };
                if new_meta.version < old_meta.version {
                    return Err(Error::Rollback {
                        role: file.clone(),
                        trusted: old_meta.version,
                        new: new_meta.version,
                    });
                }
            }
        }
        self.snapshot = Some(new);
        self.check_final_snapshot()?;
        Ok(())
    }

    /// §5.5.4 and §5.5.6: the trusted snapshot has the version the timestamp lists and is
    /// not expired.
    pub(crate) fn check_final_snapshot(&self) -> Result<&Snapshot, Error> {
        let ts = self.check_final_timestamp()?;
        let snapshot = self.snapshot.as_ref().ok_or_else(|| Error::MissingMeta {
            file: "snapshot.json".into(),
            listing: "trusted".into(),
        })?;
        if snapshot.common.is_expired(self.start) {
            return Err(expired("snapshot", &snapshot.common));
        }
        if snapshot.common.version != ts.snapshot_meta.version {
            return Err(Error::VersionMismatch {
                role: "snapshot".into(),
                listing: "timestamp".into(),
                expected: ts.snapshot_meta.version,
                got: snapshot.common.version,
            });
        }
        Ok(snapshot)
    }

    /// §5.6.2–§5.6.5 for `role`, delegated by `delegator` ("root" for top-level targets).
    pub(crate) fn update_targets(
        &mut self,
        bytes: &[u8],
        role: &str,
        delegator: &str,
    ) -> Result<(), Error> {
        let snapshot = self.check_final_snapshot()?;
        let file = format!("{role}.json");
        // §5.6.1: the role must be listed in snapshot.
        let meta = snapshot.meta.get(&file).ok_or_else(|| Error::MissingMeta {
            file: file.clone(),
            listing: "snapshot".into(),
        })?;
        // §5.6.2: length and every hash snapshot lists.
        check_meta(&file, bytes, meta.length, meta.hashes.as_deref())?;
        let (envelope, new) = self.signed_targets(bytes, role, delegator)?;
        // §5.6.4: the version snapshot lists.
        if new.common.version != meta.version {
            return Err(Error::VersionMismatch {
                role: role.to_owned(),
                listing: "snapshot".into(),
                expected: meta.version,
                got: new.common.version,
            });
        }
        self.check_targets_expiry(role, &new)?;
        self.targets.insert(role.to_owned(), new);
        self.envelopes.insert(role.to_owned(), envelope);
        self.verified_by
            .insert((delegator.to_owned(), role.to_owned()));
        Ok(())
    }

    /// §5.6.3 and §5.6.5 for top-level targets that no snapshot lists yet: what a
    /// repository checks before it signs the snapshot that will list them (§5.6.1,
    /// §5.6.2 and §5.6.4 then hold by construction). Nothing is added to the set.
    ///
    /// §5.3.10 first: a device stops at an expired root, so nothing published under one
    /// would ever be read.
    pub fn verify_new_targets(&self, bytes: &[u8]) -> Result<Targets, Error> {
        self.check_final_root()?;
        let (_, targets) = self.signed_targets(bytes, "targets", "root")?;
        self.check_targets_expiry("targets", &targets)?;
        Ok(targets)
    }

    /// Parses targets role `role` and checks §5.6.3: signed by a threshold of the keys
    /// its delegator trusts it with.
    fn signed_targets(
        &self,
        bytes: &[u8],
        role: &str,
        delegator: &str,
    ) -> Result<(Envelope, Targets), Error> {
        let (envelope, signed) = model::parse_envelope(bytes, role, "targets")?;
        let new = model::targets(&signed).map_err(|r| Error::parse(role, r))?;
        self.verify_delegate(role, delegator, &envelope)?;
        Ok((envelope, new))
    }

    /// §5.6.5: not expired, with the same start time as every other role.
    fn check_targets_expiry(&self, role: &str, targets: &Targets) -> Result<(), Error> {
        if targets.common.is_expired(self.start) {
            return Err(expired(role, &targets.common));
        }
        Ok(())
    }

    /// Whether the targets role `role` has been loaded in this cycle (through any
    /// delegator).
    pub(crate) fn has_targets(&self, role: &str) -> bool {
        self.targets.contains_key(role)
    }

    /// §5.6.3 and §5.6.7 for a targets role already loaded in this cycle and reached again
    /// through `delegator`. The search follows one delegation at a time, and a delegated
    /// role is trusted only with the keys and threshold of the delegator being followed
    /// (python-tuf `_preorder_depth_first_walk` → `verify_delegate(parent, role)`): a copy
    /// verified through another delegator says nothing about this one's keys. The version
    /// and expiry were checked when the role was loaded (§5.6.4–§5.6.5).
    pub(crate) fn verify_loaded_targets(
        &mut self,
        role: &str,
        delegator: &str,
    ) -> Result<(), Error> {
        let pair = (delegator.to_owned(), role.to_owned());
        if self.verified_by.contains(&pair) {
            return Ok(());
        }
        let envelope = self.envelopes.get(role).ok_or_else(|| Error::MissingMeta {
            file: format!("{role}.json"),
            listing: "trusted".into(),
        })?;
        self.verify_delegate(role, delegator, envelope)?;
        self.verified_by.insert(pair);
        Ok(())
    }

    /// §5.6.3: `envelope` of `role` is signed by a threshold of the keys `delegator`
    /// ("root" for the top-level targets role) trusts it with.
    fn verify_delegate(
        &self,
        role: &str,
        delegator: &str,
        envelope: &Envelope,
    ) -> Result<(), Error> {
        if delegator == "root" {
            return verify_by_root(&self.root, role, "root", envelope);
        }
        let parent = self
            .targets
            .get(delegator)
            .and_then(|t| t.delegations.as_ref())
            .ok_or_else(|| Error::parse(role, format!("{delegator} delegates nothing")))?;
        let keys = match parent.roles.iter().find(|r| r.name == role) {
            Some(r) => &r.keys,
            None => match &parent.succinct {
                Some(s) if paths::succinct_has_role(s, role) => &s.keys,
                _ => {
                    return Err(Error::parse(
                        role,
                        format!("{delegator} does not delegate to it"),
                    ));
                }
            },
        };
        verify(
            role,
            delegator,
            keys,
            &|id| parent.keys.get(id).cloned(),
            envelope,
        )
    }

    /// The target `name` as listed by the trusted role `role`.
    pub(crate) fn target(&self, role: &str, name: &str) -> Option<TargetInfo> {
        self.targets.get(role)?.targets.get(name).cloned()
    }
}
