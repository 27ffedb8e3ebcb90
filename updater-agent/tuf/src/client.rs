//! The update cycle: TUF 1.0.34 §5.1–§5.7 in order, as python-tuf's `Updater` runs it
//! (which files are read locally, which are downloaded, when each is persisted).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::fetch::{Fetch, FetchError};
use crate::hashes::TargetVerifier;
use crate::model::RoleKeys;
use crate::paths::{self, encode_name};
use crate::store::{MetadataDir, write_atomic};
use crate::trusted::{TimestampUpdate, TrustedSet};
use crate::{Config, Error, TargetInfo};

/// A TUF client for one update cycle (one start time).
pub struct Client<F: Fetch> {
    dir: MetadataDir,
    config: Config,
    fetcher: F,
    trusted: TrustedSet,
    refreshed: bool,
}

impl<F: Fetch> Client<F> {
    /// §5.1 and §5.2: `start` is the update start time used for every expiry check;
    /// `METADATA_DIR/root.json` must verify against a threshold of its own root keys
    /// (its expiry does not matter yet). Nothing is fetched here.
    pub fn new(
        metadata_dir: &Path,
        config: Config,
        fetcher: F,
        start: SystemTime,
    ) -> Result<Self, Error> {
        let dir = MetadataDir::new(metadata_dir, config.durable);
        let root = dir.read("root")?;
        let trusted = TrustedSet::new(&root, start)?;
        Ok(Client {
            dir,
            config,
            fetcher,
            trusted,
            refreshed: false,
        })
    }

    /// §5.3–§5.6 for the top-level roles: root rotation, timestamp, snapshot, targets.
    /// Delegated roles are loaded on demand by [`Client::target_info`].
    pub fn refresh(&mut self) -> Result<(), Error> {
        if self.refreshed {
            return Err(Error::AlreadyRefreshed);
        }
        self.refreshed = true;
        self.load_root()?;
        self.load_timestamp()?;
        self.load_snapshot()?;
        self.load_targets("targets", "root")
    }

    fn fetch(&self, url: &str, limit: u64) -> Result<Vec<u8>, Error> {
        self.fetcher
            .fetch(url, limit)
            .map_err(|e| Error::from_fetch(url, limit, e))
    }

    /// `{metadata_url}{version.}{quote(role)}.json` (§5.3.3, §5.5.1, §5.6.1).
    fn metadata_url(&self, role: &str, version: Option<u64>) -> String {
        match version {
            Some(v) => format!("{}{v}.{}.json", self.config.metadata_url, encode_name(role)),
            None => format!("{}{}.json", self.config.metadata_url, encode_name(role)),
        }
    }

    /// §5.3: root rotation, then the final root checks.
    fn load_root(&mut self) -> Result<(), Error> {
        let roles_at_start = self.fast_forward_roles();
        let first = self.trusted.root.common.version.saturating_add(1);
        // §5.3.3: at most `max_root_rotations` downloads; hitting the limit is not an error.
        for version in (first..).take(self.config.max_root_rotations as usize) {
            let url = self.metadata_url("root", Some(version));
            let bytes = match self.fetcher.fetch(&url, self.config.root_max) {
                Ok(bytes) => bytes,
                // §5.3.3: no N+1 means the trusted root is the newest (403 as python-tuf).
                Err(FetchError::NotFound | FetchError::Status(403)) => break,
                Err(e) => return Err(Error::from_fetch(&url, self.config.root_max, e)),
            };
            self.trusted.update_root(&bytes)?;
            // §5.3.8: persist each verified root before fetching the next one.
            self.dir.write("root", &bytes)?;
        }
        // §5.3.10: the final root must not be expired. (python-tuf checks this when
        // loading the timestamp, after one more request; nothing else differs.)
        self.trusted.check_final_root()?;
        // §5.3.11: new timestamp or snapshot keys → delete the local timestamp and
        // snapshot so a fast-forward attack cannot outlive the key rotation.
        if self.fast_forward_roles() != roles_at_start {
            self.dir.remove("timestamp")?;
            self.dir.remove("snapshot")?;
        }
        Ok(())
    }

    fn fast_forward_roles(&self) -> (Option<RoleKeys>, Option<RoleKeys>) {
        let role = |name: &str| {
            self.trusted.root.roles.get(name).map(|r| {
                let mut keys = r.clone();
                keys.keyids.sort();
                keys
            })
        };
        (role("timestamp"), role("snapshot"))
    }

    /// §5.4: the local timestamp (even an expired one) is the reference for the rollback
    /// checks of the new one; local errors are ignored.
    fn load_timestamp(&mut self) -> Result<(), Error> {
        if let Ok(local) = self.dir.read("timestamp") {
            let _ = self.trusted.update_timestamp(&local);
        }
        // §5.4.1: timestamp.json is never versioned.
        let url = self.metadata_url("timestamp", None);
        let bytes = self.fetch(&url, self.config.timestamp_max)?;
        match self.trusted.update_timestamp(&bytes)? {
            // §5.4.5: persist the new timestamp.
            TimestampUpdate::Trusted => self.dir.write("timestamp", &bytes),
            TimestampUpdate::SameVersion => Ok(()),
        }
    }

    /// §5.5: a local snapshot that is valid as final is used without downloading.
    fn load_snapshot(&mut self) -> Result<(), Error> {
        // §5.4.4: the kept timestamp may be an expired one of equal version.
        let meta = self.trusted.check_final_timestamp()?.snapshot_meta.clone();
        if let Ok(local) = self.dir.read("snapshot") {
            if self.trusted.update_snapshot(&local, true).is_ok() {
                return Ok(());
            }
        }
        // §5.5.1: `V.snapshot.json` with consistent snapshots, at most its listed length.
        let limit = meta
            .length
            .filter(|l| *l > 0)
            .unwrap_or(self.config.snapshot_max);
        let version = self
            .trusted
            .root
            .consistent_snapshot
            .then_some(meta.version);
        let url = self.metadata_url("snapshot", version);
        let bytes = self.fetch(&url, limit)?;
        self.trusted.update_snapshot(&bytes, false)?;
        // §5.5.7: persist.
        self.dir.write("snapshot", &bytes)
    }

    /// §5.6 for `role` (top-level or delegated) as `delegator` delegates it: loaded at
    /// most once per cycle, from the local file if it is valid, else downloaded, and
    /// verified against the keys of every delegator it is reached through (§5.6.7).
    fn load_targets(&mut self, role: &str, delegator: &str) -> Result<(), Error> {
        if self.trusted.has_targets(role) {
            return self.trusted.verify_loaded_targets(role, delegator);
        }
        if let Ok(local) = self.dir.read(role) {
            if self.trusted.update_targets(&local, role, delegator).is_ok() {
                return Ok(());
            }
        }
        let snapshot = self.trusted.check_final_snapshot()?;
        let file = format!("{role}.json");
        // §5.6.1: a delegated role that snapshot does not list cannot be trusted.
        let meta = snapshot.meta.get(&file).ok_or_else(|| Error::MissingMeta {
            file: file.clone(),
            listing: "snapshot".into(),
        })?;
        let limit = meta
            .length
            .filter(|l| *l > 0)
            .unwrap_or(self.config.targets_max);
        let version = self
            .trusted
            .root
            .consistent_snapshot
            .then_some(meta.version);
        let url = self.metadata_url(role, version);
        let bytes = self.fetch(&url, limit)?;
        self.trusted.update_targets(&bytes, role, delegator)?;
        // §5.6.6: persist.
        self.dir.write(role, &bytes)
    }

    /// §5.6.7 and §5.7.1–2: the trusted target info of `name`, found by a lazy pre-order
    /// depth-first search of the delegation graph (python-tuf
    /// `_preorder_depth_first_walk`). Only the roles on the search path are loaded. Runs
    /// [`Client::refresh`] first if it has not run.
    pub fn target_info(&mut self, name: &str) -> Result<TargetInfo, Error> {
        if !self.refreshed {
            self.refresh()?;
        }
        let mut stack: Vec<(String, String)> = vec![("targets".into(), "root".into())];
        let mut visited: Vec<String> = Vec::new();
        // §5.6.7: at most `max_delegations` roles are visited after the top-level one.
        while visited.len() <= self.config.max_delegations as usize {
            let Some((role, delegator)) = stack.pop() else {
                break;
            };
            // A delegation cycle visits each role once.
            if visited.contains(&role) {
                continue;
            }
            self.load_targets(&role, &delegator)?;
            if let Some(info) = self.trusted.target(&role, name) {
                return Ok(info);
            }
            visited.push(role.clone());
            let Some(delegations) = self
                .trusted
                .targets
                .get(&role)
                .and_then(|t| t.delegations.as_ref())
            else {
                continue;
            };
            // §5.6.7.2: children in listed order whose paths cover the target; a matching
            // terminating child ends the search after its subtree (§5.6.7.2.1).
            let mut children = Vec::new();
            let mut terminated = false;
            if let Some(s) = &delegations.succinct {
                // TAP 15: exactly one bin per target, always terminating.
                children.push((paths::succinct_role_for(s, name), role.clone()));
                terminated = true;
            }
            for child in &delegations.roles {
                if paths::role_matches(child, name) {
                    children.push((child.name.clone(), role.clone()));
                    if child.terminating {
                        terminated = true;
                        break;
                    }
                }
            }
            if terminated {
                stack.clear();
            }
            stack.extend(children.into_iter().rev());
        }
        Err(Error::TargetNotFound { name: name.into() })
    }

    /// §5.7.3: the target's URL: `base + dir/HASH.file` with consistent snapshots (HASH is
    /// the first listed hash, in file order), else `base + path`. tough 0.24 builds
    /// `HASH.dir/file` here (tough-0.24.0/src/lib.rs l.553), which fails for targets in
    /// sub-directories.
    pub fn target_url(&self, info: &TargetInfo) -> Result<String, Error> {
        let path = if self.trusted.root.consistent_snapshot {
            let (_, hash) = info.hashes.first().ok_or_else(|| Error::LengthOrHash {
                file: info.name.clone(),
                reason: "no hash is listed to name it in a consistent snapshot".into(),
            })?;
            match info.name.rsplit_once('/') {
                Some((dir, base)) => format!("{dir}/{hash}.{base}"),
                None => format!("{hash}.{}", info.name),
            }
        } else {
            info.name.clone()
        };
        Ok(format!(
            "{}{}",
            self.config.target_base_url,
            paths::encode_url_path(&path)
        ))
    }

    /// Downloads the target (at most `length` bytes) and checks its length and every
    /// listed hash in memory (§5.7.3) before returning the bytes.
    pub fn fetch_target(&self, info: &TargetInfo) -> Result<Vec<u8>, Error> {
        let mut verifier = TargetVerifier::new(info)?;
        let url = self.target_url(info)?;
        let bytes = self.fetch(&url, info.length)?;
        verifier.update(&bytes);
        verifier.finish()?;
        Ok(bytes)
    }

    /// §5.7.3 with python-tuf's cache rule: the target is stored as
    /// `target_dir/quote(name)`; a file already there with the right length and hashes is
    /// used without a request. Nothing is written unless the download verified.
    pub fn download_target(&self, info: &TargetInfo, target_dir: &Path) -> Result<PathBuf, Error> {
        let file_name = encode_name(&info.name);
        // `quote` leaves dots alone: `.`, `..` and "" would name a directory.
        if file_name.is_empty() || file_name == "." || file_name == ".." {
            return Err(Error::InvalidTargetPath {
                name: info.name.clone(),
            });
        }
        let path = target_dir.join(file_name);
        if cached_is_valid(&path, info) {
            return Ok(path);
        }
        let bytes = self.fetch_target(info)?;
        fs::create_dir_all(target_dir).map_err(|e| Error::storage(target_dir, e))?;
        write_atomic(&path, &bytes, self.config.durable)?;
        Ok(path)
    }

    /// Whether `refresh` has run (successfully or not).
    pub fn is_refreshed(&self) -> bool {
        self.refreshed
    }

    pub fn trusted_root_version(&self) -> u64 {
        self.trusted.root.common.version
    }

    pub fn consistent_snapshot(&self) -> bool {
        self.trusted.root.consistent_snapshot
    }

    pub fn trusted_timestamp_version(&self) -> Option<u64> {
        self.trusted.timestamp.as_ref().map(|t| t.common.version)
    }

    pub fn trusted_snapshot_version(&self) -> Option<u64> {
        self.trusted.snapshot.as_ref().map(|s| s.common.version)
    }

    /// The version of a trusted targets role ("targets" or a delegated role) loaded in
    /// this cycle.
    pub fn trusted_targets_version(&self, role: &str) -> Option<u64> {
        self.trusted.targets.get(role).map(|t| t.common.version)
    }
}

/// python-tuf `find_cached_target`: the file exists and matches length and all hashes.
fn cached_is_valid(path: &Path, info: &TargetInfo) -> bool {
    let Ok(mut verifier) = TargetVerifier::new(info) else {
        return false;
    };
    let Ok(file) = fs::File::open(path) else {
        return false;
    };
    // Reading one byte past the listed length is enough to reject a longer file.
    let mut reader = file.take(info.length.saturating_add(1));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => verifier.update(buf.get(..n).unwrap_or_default()),
            Err(_) => return false,
        }
    }
    verifier.finish().is_ok()
}
