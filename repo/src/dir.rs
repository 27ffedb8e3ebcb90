//! A repository directory: the offline side of a rota TUF repository as `rota repo init`
//! creates it and `rota repo rotate` changes it, with crash-safe root key rotation.
//!
//! ```text
//! REPO/
//!   root.json              the trusted root devices ship with (never changed)
//!   metadata/N.root.json   every root version; the highest is the latest
//!   keys/root-I.key        the current root keys (offline; one per holder)
//!   keys/targets-I.key     the targets keys (offline; they sign releases)
//!   keys/old/vN/...        root keys replaced when root version N was rotated
//!   keys/.new-vN/          root keys of version N while it is being written (see below)
//!   online/snapshot.key    the online keys, for the update server
//!   online/timestamp.key
//!   online/old/vN/...      online keys replaced when root version N was rotated
//!   online/.new-vN/        online keys of version N while it is being written
//! ```
//!
//! Every private key is PKCS#8 PEM, mode 0600, in a 0700 directory; metadata is 0644.
//! The layout has no version number of its own: it is the one rota has always written,
//! and a change to it must keep reading repositories written before.
//!
//! # Rotation and power cuts
//!
//! [`RepoDir::rotate`] to version N commits in one step, the atomic write of
//! `metadata/N.root.json`:
//!
//! 1. the new keys are written and synced to `keys/.new-vN/` (and `online/.new-vN/`);
//! 2. `metadata/N.root.json` is written atomically: from here on, version N counts;
//! 3. the keys in `keys/` that are not root keys of version N move to `keys/old/v(N-1)/`,
//!    then the staged keys move into `keys/`, and the staging directory is removed
//!    (likewise for `online/`).
//!
//! A cut can therefore land before step 2 (version N does not exist: its staged keys are
//! garbage) or after it (version N exists: its keys must be moved in). [`RepoDir::open`]
//! finishes either way before anything else reads the directory, and says what it did
//! ([`RepoDir::recovered`]):
//!
//! - `.new-vN` and `metadata/N.root.json` is the latest verified root: roll forward, by
//!   step 3 again. Every move in step 3 is decided by what is on disk (a key in `keys/`
//!   is old unless version N lists it; an online key is old while its staged successor
//!   is still staged), so repeating it after a cut anywhere in it finishes it;
//! - `.new-vN` and no `metadata/N.root.json`: roll back, by removing the staging
//!   directory;
//! - `.new-vN` for an older version: refused; it is not rota's doing.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use crate::files::{self, FileError};
use crate::{Error, RepoKey, RoleKeys, RoleName, RootInfo, RootParams};
use rota_keys::KeyAddress;

/// The online keys' files in `REPO/online`: the snapshot key, then the timestamp key.
pub const ONLINE_KEY_FILES: [&str; 2] = ["snapshot.key", "timestamp.key"];

/// The prefix of a staging directory's name: `.new-vN` holds the keys of version N.
const STAGING_PREFIX: &str = ".new-v";

/// Why a repository directory cannot be created, opened or rotated; one sentence each,
/// naming the path at fault. Causes from rota-repo's metadata checks are the
/// [`std::error::Error::source`] (the CLI prints the chain on one line).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirError {
    /// A file operation failed.
    #[error(transparent)]
    File(#[from] FileError),

    /// `init` was given a directory with something in it.
    #[error(
        "{} already exists and is not empty; a repository is never overwritten (choose a new directory)",
        dir.display()
    )]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
    },

    /// `init` was given a path that is not a directory.
    #[error("{} already exists and is not a directory; choose a new directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },

    /// The operating system's random number generator failed.
    #[error("cannot generate a key")]
    KeyGeneration(#[source] Error),

    /// A key cannot be written as PEM.
    #[error("cannot encode a private key")]
    KeyEncoding(#[source] Error),

    /// Existing keys were given for a role, but not as many as the role has.
    #[error("{given} keys were given for a role of {count} keys")]
    GivenKeyCount {
        /// How many were given.
        given: usize,
        /// How many the role has.
        count: u64,
    },

    /// A key given by address is not a usable private key.
    #[error("cannot use the key {key}")]
    KeyAt {
        /// The address, as given.
        key: String,
        /// Why.
        #[source]
        source: Error,
    },

    /// A key file is not a usable private key.
    #[error("cannot use {}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Error,
    },

    /// Another repository's root cannot be cross-signed with this one's root keys.
    #[error("cannot cross-sign the new root")]
    CrossSign(#[source] Error),

    /// Root version 1 cannot be made from the options (an impossible threshold).
    #[error("cannot create the root")]
    CreateRoot(#[source] Error),

    /// `REPO/root.json` is not a root rota accepts.
    #[error("{} is not a valid trusted root", path.display())]
    InvalidAnchor {
        /// `REPO/root.json`.
        path: PathBuf,
        /// Why.
        #[source]
        source: Error,
    },

    /// A root version is missing between the anchor and the latest.
    #[error(
        "{} is missing: the root versions after {} must follow one another",
        missing.display(),
        anchor.display()
    )]
    MissingRootVersion {
        /// The missing file.
        missing: PathBuf,
        /// `REPO/root.json`.
        anchor: PathBuf,
    },

    /// The root versions do not verify as a chain from the anchor.
    #[error(
        "the root versions in {} do not follow from {}",
        metadata.display(),
        anchor.display()
    )]
    BrokenChain {
        /// `REPO/metadata`.
        metadata: PathBuf,
        /// `REPO/root.json`.
        anchor: PathBuf,
        /// The first check that failed.
        #[source]
        source: Error,
    },

    /// A key given for a role is not one of the role's keys in the latest root.
    #[error("{key} is not a {role} key of root version {version}")]
    NotARoleKey {
        /// The key's address, as given.
        key: String,
        /// The role.
        role: RoleName,
        /// The latest root's version.
        version: u64,
    },

    /// Fewer of a role's keys were found than its threshold.
    #[error(
        "only {found} of the {total} {role} keys of root version {version} were found ({threshold} {}); put them in {} or name their files",
        if *role == RoleName::Root { "are needed to sign the next version" } else { "must sign" },
        dir.display()
    )]
    TooFewKeys {
        /// The role.
        role: RoleName,
        /// How many distinct keys of the role were found.
        found: usize,
        /// How many keys the role has.
        total: usize,
        /// The latest root's version.
        version: u64,
        /// The role's threshold.
        threshold: u64,
        /// Where the keys were looked for (`REPO/keys`).
        dir: PathBuf,
    },

    /// The root version number cannot grow.
    #[error("root version {version} cannot be rotated further")]
    VersionExhausted {
        /// The latest version.
        version: u64,
    },

    /// The next root version cannot be made (an impossible threshold, say).
    #[error("cannot make root version {version}")]
    MakeRoot {
        /// The version that was to be made.
        version: u64,
        /// Why.
        #[source]
        source: Error,
    },

    /// A rotation wrote its root version but could not move its keys into place.
    #[error(
        "{} was written, but its keys could not all be moved into place; the next command that opens {} finishes the move",
        metadata.display(),
        dir.display()
    )]
    RotationUnfinished {
        /// The root version written.
        metadata: PathBuf,
        /// The repository.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: Box<DirError>,
    },

    /// A staging directory for a version that is neither the latest nor the next.
    #[error(
        "{} holds keys for root version {version}, but the latest root is version {latest}; rota did not leave it there, so move it out of the repository by hand",
        path.display()
    )]
    StrayStaging {
        /// The staging directory.
        path: PathBuf,
        /// The version its name gives.
        version: u64,
        /// The latest root's version.
        latest: u64,
    },
}

/// The root versions of a repository: the trusted root devices ship with and every
/// `metadata/N.root.json` after it, checked as a chain the way devices walk it.
#[derive(Debug, Clone)]
pub struct RootChain {
    /// `REPO/root.json`.
    pub anchor: Vec<u8>,
    /// The anchor's version.
    pub anchor_version: u64,
    /// The root versions after the anchor's, in order: (version, file bytes). These are
    /// what the update server needs, oldest first, to serve every device the latest root.
    pub newer: Vec<(u64, Vec<u8>)>,
    /// What the latest root (the anchor when `newer` is empty) says.
    pub latest: RootInfo,
}

impl RootChain {
    /// The latest root metadata file's bytes.
    pub fn latest_bytes(&self) -> &[u8] {
        self.newer
            .last()
            .map(|(_, bytes)| bytes.as_slice())
            .unwrap_or(&self.anchor)
    }

    /// Every root version, the anchor first: (version, file bytes).
    pub fn versions(&self) -> impl Iterator<Item = (u64, &[u8])> {
        std::iter::once((self.anchor_version, self.anchor.as_slice()))
            .chain(self.newer.iter().map(|(v, b)| (*v, b.as_slice())))
    }

    /// The version of the newest `metadata/N.root.json` after the anchor, if any.
    fn newest_after_anchor(&self) -> Option<u64> {
        self.newer.last().map(|(v, _)| *v)
    }
}

/// What [`RepoDir::open`] finished or undid of a rotation a cut interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// Root version `version` had been written: its keys were moved into place.
    Finished {
        /// The version.
        version: u64,
    },
    /// Root version `version` had not been written: its staged keys were removed.
    Undone {
        /// The version.
        version: u64,
    },
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recovery::Finished { version } => write!(
                f,
                "finished the interrupted rotation to root version {version}: its keys are now in place"
            ),
            Recovery::Undone { version } => write!(
                f,
                "undid the interrupted rotation to root version {version}, which was never written: its staged keys were removed"
            ),
        }
    }
}

/// What [`RepoDir::init`] makes.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// How many root keys.
    pub root_keys: u64,
    /// How many root keys must sign a new root version.
    pub root_threshold: u64,
    /// How many targets keys.
    pub targets_keys: u64,
    /// How many targets keys must sign the targets metadata.
    pub targets_threshold: u64,
    /// When root version 1 expires.
    pub expires: SystemTime,
    /// Keys to use instead of new ones (for example in an HSM); the counts above must
    /// match where they are given.
    pub given: GivenKeys,
}

/// Existing keys a repository is made or rotated with, by address (a key file or a
/// PKCS#11 URI). A key in a token gets a stub in `keys/` or `online/` rather than a copy.
#[derive(Debug, Clone, Default)]
pub struct GivenKeys {
    /// The root keys.
    pub root: Vec<KeyAddress>,
    /// The targets keys (at `init` only: rotation keeps them).
    pub targets: Vec<KeyAddress>,
    /// The snapshot key.
    pub snapshot: Option<KeyAddress>,
    /// The timestamp key.
    pub timestamp: Option<KeyAddress>,
}

impl GivenKeys {
    /// The `role` keys given, opened, or `count` new ones.
    fn role_or_new(given: &[KeyAddress], count: u64) -> Result<Vec<RepoKey>, DirError> {
        if given.is_empty() {
            return generate(count);
        }
        if given.len() as u64 != count {
            return Err(DirError::GivenKeyCount {
                given: given.len(),
                count,
            });
        }
        given.iter().map(open_key).collect()
    }

    /// The online keys (snapshot, timestamp): given or new.
    fn online_or_new(&self) -> Result<Vec<RepoKey>, DirError> {
        [&self.snapshot, &self.timestamp]
            .into_iter()
            .map(|given| match given {
                Some(address) => open_key(address),
                None => RepoKey::generate().map_err(DirError::KeyGeneration),
            })
            .collect()
    }
}

/// A repository [`RepoDir::init`] created, and where its offline keys are.
#[derive(Debug)]
pub struct Initialized {
    /// The repository.
    pub repo: RepoDir,
    /// `keys/root-1.key`, ...
    pub root_key_files: Vec<PathBuf>,
    /// `keys/targets-1.key`, ...
    pub targets_key_files: Vec<PathBuf>,
}

/// What [`RepoDir::rotate`] makes.
#[derive(Debug, Clone)]
pub struct RotateOptions {
    /// How many new root keys (default: as many as now).
    pub root_keys: Option<u64>,
    /// How many root keys must sign the next root version (default: as now).
    pub root_threshold: Option<u64>,
    /// The current root keys (default: `keys/root-*.key`).
    pub root_key_files: Vec<KeyAddress>,
    /// Also replace the online snapshot and timestamp keys.
    pub replace_online: bool,
    /// The new root keys and online keys, where they exist already (for example in an
    /// HSM) rather than being made; `root_keys` must match where given.
    pub given: GivenKeys,
    /// When the new root version expires.
    pub expires: SystemTime,
}

/// What [`RepoDir::rotate`] did.
#[derive(Debug, Clone)]
pub struct Rotated {
    /// The new root version.
    pub version: u64,
    /// `metadata/N.root.json`.
    pub metadata: PathBuf,
    /// When it expires.
    pub expires: SystemTime,
    /// How many current root keys signed it.
    pub signed_by_current: usize,
    /// How many new root keys signed it.
    pub signed_by_new: usize,
    /// The new root threshold.
    pub root_threshold: u64,
    /// The new root keys, `keys/root-1.key`, ...
    pub root_key_files: Vec<PathBuf>,
    /// Where the root keys that were in `keys/` went (`keys/old/vN`), if there were any.
    pub archived_root_keys: Option<PathBuf>,
    /// Where the online keys that were replaced went (`online/old/vN`), if they were.
    pub archived_online_keys: Option<PathBuf>,
}

/// A repository directory, opened: its root chain verified and any interrupted rotation
/// finished or undone. `repo/src/dir.rs` documents the layout and the recovery rules.
#[derive(Debug)]
pub struct RepoDir {
    layout: Layout,
    chain: RootChain,
    recovered: Vec<Recovery>,
    disk: Disk,
}

impl RepoDir {
    /// Creates a repository in `dir`, which must not exist (its parent must) or be an
    /// empty directory: root, targets, snapshot and timestamp keys and root version 1,
    /// as `metadata/1.root.json` and `root.json`. On failure, removes what it created.
    pub fn init(dir: &Path, options: &InitOptions) -> Result<Initialized, DirError> {
        Self::init_on(dir, options, Disk::default())
    }

    fn init_on(dir: &Path, options: &InitOptions, disk: Disk) -> Result<Initialized, DirError> {
        let layout = Layout::new(dir);
        let exists = match fs::symlink_metadata(dir) {
            Ok(meta) if meta.is_dir() => {
                let mut entries = fs::read_dir(dir).map_err(|e| read_error(dir, &e))?;
                if entries.next().is_some() {
                    return Err(DirError::NotEmpty {
                        dir: dir.to_path_buf(),
                    });
                }
                true
            }
            Ok(_) => {
                return Err(DirError::NotADirectory {
                    path: dir.to_path_buf(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                return Err(FileError::Check {
                    path: dir.to_path_buf(),
                    reason: files::reason(&e),
                }
                .into());
            }
        };

        // Everything is made and checked in memory before anything is written.
        let root_keys = GivenKeys::role_or_new(&options.given.root, options.root_keys)?;
        let targets_keys = GivenKeys::role_or_new(&options.given.targets, options.targets_keys)?;
        let online = options.given.online_or_new()?;
        let params = RootParams {
            root: role(&root_keys, options.root_threshold),
            targets: role(&targets_keys, options.targets_threshold),
            snapshot: role(&online[..1], 1),
            timestamp: role(&online[1..], 1),
            expires: options.expires,
        };
        let signers: Vec<&RepoKey> = root_keys.iter().collect();
        let root = crate::init_root(&params, &signers).map_err(DirError::CreateRoot)?;

        let mut created = Created::new(&disk);
        if !exists {
            created.dir(dir, 0o755)?;
        }
        created.dir(&layout.keys(), 0o700)?;
        let mut root_key_files = Vec::new();
        for (i, key) in root_keys.iter().enumerate() {
            let path = layout.keys().join(format!("root-{}.key", i + 1));
            created.key(&path, key)?;
            root_key_files.push(path);
        }
        let mut targets_key_files = Vec::new();
        for (i, key) in targets_keys.iter().enumerate() {
            let path = layout.keys().join(format!("targets-{}.key", i + 1));
            created.key(&path, key)?;
            targets_key_files.push(path);
        }
        created.dir(&layout.online(), 0o700)?;
        for (name, key) in ONLINE_KEY_FILES.iter().zip(&online) {
            created.key(&layout.online().join(name), key)?;
        }
        created.dir(&layout.metadata(), 0o755)?;
        created.file(&layout.root_metadata(1), &root.bytes, 0o644)?;
        created.file(&layout.anchor(), &root.bytes, 0o644)?;
        for synced in [layout.keys(), layout.online(), layout.metadata()] {
            files::sync_dir(&synced)?;
        }
        files::sync_dir(dir)?;
        // What was written reads back as a repository, or it is removed again.
        let chain = read_chain(&layout)?;
        created.keep();
        drop(created);
        Ok(Initialized {
            repo: RepoDir {
                layout,
                chain,
                recovered: Vec::new(),
                disk,
            },
            root_key_files,
            targets_key_files,
        })
    }

    /// Opens the repository in `dir`: reads and verifies its root chain (as devices walk
    /// it, each file at most [`crate::max_metadata_len`] bytes), then finishes or undoes a
    /// rotation that a cut interrupted (the recovery rules are in `repo/src/dir.rs`).
    pub fn open(dir: &Path) -> Result<RepoDir, DirError> {
        Self::open_on(dir, Disk::default())
    }

    fn open_on(dir: &Path, disk: Disk) -> Result<RepoDir, DirError> {
        let layout = Layout::new(dir);
        let chain = read_chain(&layout)?;
        let mut repo = RepoDir {
            layout,
            chain,
            recovered: Vec::new(),
            disk,
        };
        repo.recovered = repo.recover()?;
        Ok(repo)
    }

    /// The repository directory.
    pub fn path(&self) -> &Path {
        &self.layout.dir
    }

    /// `REPO/root.json`, the trusted root devices ship with.
    pub fn anchor_path(&self) -> PathBuf {
        self.layout.anchor()
    }

    /// `REPO/metadata/N.root.json`.
    pub fn root_metadata_path(&self, version: u64) -> PathBuf {
        self.layout.root_metadata(version)
    }

    /// `REPO/keys`, the offline keys.
    pub fn keys_dir(&self) -> PathBuf {
        self.layout.keys()
    }

    /// `REPO/online`, the online keys.
    pub fn online_dir(&self) -> PathBuf {
        self.layout.online()
    }

    /// The verified root chain.
    pub fn root_chain(&self) -> &RootChain {
        &self.chain
    }

    /// What opening the repository finished or undid; empty when nothing was interrupted.
    pub fn recovered(&self) -> &[Recovery] {
        &self.recovered
    }

    /// The `ROLE-N.key` files in `REPO/keys` (`root-1.key`, `targets-2.key`, ...), sorted
    /// by name; none when the directory does not exist.
    pub fn role_key_files(&self, role: RoleName) -> Result<Vec<PathBuf>, DirError> {
        role_key_files(&self.layout.keys(), role.as_str())
    }

    /// The targets keys to sign with: the files `given`, or `REPO/keys/targets-*.key`;
    /// each must be a targets key of the latest root, and together they must meet its
    /// threshold. A key given twice counts once.
    pub fn targets_keys(&self, given: &[KeyAddress]) -> Result<Vec<RepoKey>, DirError> {
        self.role_keys(RoleName::Targets, given)
    }

    /// The keys of `role` (root or targets) from `given` or `REPO/keys`, checked against
    /// the latest root: [`DirError::NotARoleKey`], [`DirError::TooFewKeys`].
    fn role_keys(&self, role: RoleName, given: &[KeyAddress]) -> Result<Vec<RepoKey>, DirError> {
        let latest = &self.chain.latest;
        let addresses: Vec<KeyAddress> = if given.is_empty() {
            self.role_key_files(role)?
                .into_iter()
                .map(KeyAddress::from)
                .collect()
        } else {
            given.to_vec()
        };
        let role_keys = latest.role(role);
        let mut keys: Vec<RepoKey> = Vec::new();
        for address in &addresses {
            let key = open_key(address)?;
            if !role_keys.contains(key.key_id()) {
                return Err(DirError::NotARoleKey {
                    key: address.to_string(),
                    role,
                    version: latest.version,
                });
            }
            if !keys.iter().any(|k| k.key_id() == key.key_id()) {
                keys.push(key);
            }
        }
        if (keys.len() as u64) < role_keys.threshold {
            return Err(DirError::TooFewKeys {
                role,
                found: keys.len(),
                total: role_keys.keys.len(),
                version: latest.version,
                threshold: role_keys.threshold,
                dir: self.layout.keys(),
            });
        }
        Ok(keys)
    }

    /// `new_root`, another repository's root, cross-signed with this repository's root
    /// keys (a threshold of the latest root's, from `root_key_files` or `REPO/keys`): what
    /// an ownership transfer hands devices so that they can trust the new repository
    /// (`rota_repo::cross_sign_root`). Nothing in this directory changes.
    pub fn cross_sign(
        &self,
        new_root: &[u8],
        root_key_files: &[KeyAddress],
    ) -> Result<Vec<u8>, DirError> {
        let keys = self.role_keys(RoleName::Root, root_key_files)?;
        let signers: Vec<&RepoKey> = keys.iter().collect();
        crate::cross_sign_root(self.chain.latest_bytes(), new_root, &signers)
            .map_err(DirError::CrossSign)
    }

    /// Replaces the root keys: writes root version N+1, signed by a threshold of the
    /// current root keys and a threshold of the new ones, moves the current keys in
    /// `REPO/keys` to `keys/old/vN/` and puts the new ones in their place; with
    /// `replace_online`, likewise for the online keys. `root.json` is not changed.
    ///
    /// A cut at any point leaves a repository that [`RepoDir::open`] makes whole again.
    pub fn rotate(&mut self, options: &RotateOptions) -> Result<Rotated, DirError> {
        let current = self.chain.latest.clone();
        let version = current.version;
        let next = version
            .checked_add(1)
            .ok_or(DirError::VersionExhausted { version })?;
        let old_keys = self.role_keys(RoleName::Root, &options.root_key_files)?;

        let new_count = options.root_keys.unwrap_or(current.root.keys.len() as u64);
        let new_threshold = options.root_threshold.unwrap_or(current.root.threshold);
        let new_root_keys = GivenKeys::role_or_new(&options.given.root, new_count)?;
        let new_online = if options.replace_online {
            Some(options.given.online_or_new()?)
        } else {
            None
        };
        let (snapshot, timestamp) = match &new_online {
            Some(online) => (role(&online[..1], 1), role(&online[1..], 1)),
            None => (current.snapshot.clone(), current.timestamp.clone()),
        };
        let params = RootParams {
            root: role(&new_root_keys, new_threshold),
            targets: current.targets.clone(),
            snapshot,
            timestamp,
            expires: options.expires,
        };
        let old_signers: Vec<&RepoKey> = old_keys.iter().collect();
        let new_signers: Vec<&RepoKey> = new_root_keys.iter().collect();
        let make_root = |source| DirError::MakeRoot {
            version: next,
            source,
        };
        let root = crate::rotate_root(
            self.chain.latest_bytes(),
            &params,
            &old_signers,
            &new_signers,
        )
        .map_err(make_root)?;
        let info = RootInfo::parse(&root.bytes).map_err(make_root)?;

        // 1. The new keys, staged beside the current ones, and synced: once version N is
        //    written, they are the only copy of the keys that count.
        let keys_dir = self.layout.keys();
        let online_dir = self.layout.online();
        let staging = self.layout.staging(&keys_dir, next);
        let online_staging = self.layout.staging(&online_dir, next);
        let mut created = Created::new(&self.disk);
        created.dir(&staging, 0o700)?;
        for (i, key) in new_root_keys.iter().enumerate() {
            created.key(&staging.join(format!("root-{}.key", i + 1)), key)?;
        }
        files::sync_dir(&staging)?;
        files::sync_dir(&keys_dir)?;
        if let Some(online) = &new_online {
            created.dir(&online_staging, 0o700)?;
            for (name, key) in ONLINE_KEY_FILES.iter().zip(online) {
                created.key(&online_staging.join(name), key)?;
            }
            files::sync_dir(&online_staging)?;
            files::sync_dir(&online_dir)?;
        }
        // 2. The commit: from here on, the new keys are the ones that count.
        let metadata = self.layout.root_metadata(next);
        self.disk.write_atomically(&metadata, &root.bytes)?;
        created.keep();
        drop(created);
        self.chain.newer.push((next, root.bytes));
        self.chain.latest = info;

        // 3. The current keys to keys/old/vN/, the new ones in their place.
        let finished = self
            .finish_rotation(next)
            .map_err(|e| DirError::RotationUnfinished {
                metadata: metadata.clone(),
                dir: self.layout.dir.clone(),
                source: Box::new(e),
            })?;

        Ok(Rotated {
            version: next,
            metadata,
            expires: root.expires,
            signed_by_current: old_signers.len(),
            signed_by_new: new_signers.len(),
            root_threshold: new_threshold,
            root_key_files: (1..=new_root_keys.len())
                .map(|i| keys_dir.join(format!("root-{i}.key")))
                .collect(),
            archived_root_keys: (finished.archived_root_keys > 0)
                .then(|| self.layout.archive(&keys_dir, version)),
            archived_online_keys: finished
                .online_replaced
                .then(|| self.layout.archive(&online_dir, version)),
        })
    }

    /// Finishes or undoes every rotation whose staging directory is still there.
    fn recover(&self) -> Result<Vec<Recovery>, DirError> {
        let latest = self.chain.latest.version;
        let keys_dir = self.layout.keys();
        let online_dir = self.layout.online();
        let mut staged = BTreeSet::new();
        for dir in [&keys_dir, &online_dir] {
            staged.extend(staging_versions(dir)?);
        }
        let mut recovered = Vec::new();
        for version in staged {
            if self.chain.newest_after_anchor() == Some(version) {
                self.finish_rotation(version)?;
                recovered.push(Recovery::Finished { version });
                continue;
            }
            let metadata = self.layout.root_metadata(version);
            match fs::symlink_metadata(&metadata) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    for dir in [&keys_dir, &online_dir] {
                        self.remove_staging(&self.layout.staging(dir, version))?;
                    }
                    recovered.push(Recovery::Undone { version });
                }
                Err(e) => {
                    return Err(FileError::Check {
                        path: metadata,
                        reason: files::reason(&e),
                    }
                    .into());
                }
                Ok(_) => {
                    let dir = if self.layout.staging(&keys_dir, version).exists() {
                        &keys_dir
                    } else {
                        &online_dir
                    };
                    return Err(DirError::StrayStaging {
                        path: self.layout.staging(dir, version),
                        version,
                        latest,
                    });
                }
            }
        }
        Ok(recovered)
    }

    /// Step 3 of a rotation to `version`, the latest root: the keys in `keys/` that
    /// `version` does not list go to `keys/old/v(version-1)/`, then the staged keys into
    /// `keys/`; the online keys likewise, each replaced only while its successor is still
    /// staged. Each move is decided by what is on disk, so this finishes what a cut at
    /// any point of an earlier run left.
    fn finish_rotation(&self, version: u64) -> Result<Finished, DirError> {
        let previous = version.saturating_sub(1);
        let mut finished = Finished::default();
        let keys_dir = self.layout.keys();
        let staging = self.layout.staging(&keys_dir, version);
        if exists(&staging)? {
            let archive = self.layout.archive(&keys_dir, previous);
            self.ensure_dir(&keys_dir.join("old"))?;
            self.ensure_dir(&archive)?;
            let new_root = &self.chain.latest.root;
            for path in role_key_files(&keys_dir, "root")? {
                // A key this version lists was moved in by an earlier run. A key that
                // cannot be opened (a token that is absent) stops the recovery rather
                // than being archived unseen: it may be one of the new keys.
                let is_new = new_root.contains(load_key(&path)?.key_id());
                if !is_new && let Some(name) = path.file_name() {
                    self.disk.rename(&path, &archive.join(name))?;
                    finished.archived_root_keys += 1;
                }
            }
            for path in role_key_files(&staging, "root")? {
                if let Some(name) = path.file_name() {
                    self.disk.rename(&path, &keys_dir.join(name))?;
                }
            }
            self.disk.remove_dir(&staging)?;
        }
        let online_dir = self.layout.online();
        let staging = self.layout.staging(&online_dir, version);
        if exists(&staging)? {
            let archive = self.layout.archive(&online_dir, previous);
            self.ensure_dir(&online_dir.join("old"))?;
            self.ensure_dir(&archive)?;
            for name in ONLINE_KEY_FILES {
                let staged = staging.join(name);
                if !exists(&staged)? {
                    continue;
                }
                let current = online_dir.join(name);
                if exists(&current)? {
                    self.disk.rename(&current, &archive.join(name))?;
                }
                self.disk.rename(&staged, &current)?;
            }
            self.disk.remove_dir(&staging)?;
            finished.online_replaced = true;
        }
        Ok(finished)
    }

    /// Removes a staging directory and the keys in it, if it exists.
    fn remove_staging(&self, staging: &Path) -> Result<(), DirError> {
        if !exists(staging)? {
            return Ok(());
        }
        let entries = fs::read_dir(staging).map_err(|e| read_error(staging, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| read_error(staging, &e))?;
            self.disk.remove_file(&entry.path())?;
        }
        self.disk.remove_dir(staging)?;
        Ok(())
    }

    /// Creates directory `path` (mode 0700) unless it is there.
    fn ensure_dir(&self, path: &Path) -> Result<(), DirError> {
        if !fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            self.disk.create_dir(path, 0o700)?;
        }
        Ok(())
    }
}

/// What step 3 of a rotation moved.
#[derive(Debug, Default)]
struct Finished {
    archived_root_keys: usize,
    online_replaced: bool,
}

/// Reads a private key file: a PEM key, or a stub naming a key in a PKCS#11 token
/// (`rota_keys::KeyFile`), which is then opened there.
pub fn load_key(path: &Path) -> Result<RepoKey, DirError> {
    let key_error = |source| DirError::Key {
        path: path.to_path_buf(),
        source,
    };
    let key = rota_keys::KeyFile::new(path)
        .open()
        .map_err(|e| key_error(e.into()))?;
    RepoKey::from_private(key).map_err(key_error)
}

/// Opens a key by address: a key file ([`load_key`]) or a PKCS#11 URI.
pub fn open_key(address: &KeyAddress) -> Result<RepoKey, DirError> {
    let key_error = |source| DirError::KeyAt {
        key: address.to_string(),
        source,
    };
    let key = address.open().map_err(|e| key_error(e.into()))?;
    RepoKey::from_private(key).map_err(key_error)
}

/// The paths of a repository directory.
#[derive(Debug, Clone)]
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }
    fn anchor(&self) -> PathBuf {
        self.dir.join("root.json")
    }
    fn metadata(&self) -> PathBuf {
        self.dir.join("metadata")
    }
    fn keys(&self) -> PathBuf {
        self.dir.join("keys")
    }
    fn online(&self) -> PathBuf {
        self.dir.join("online")
    }
    fn root_metadata(&self, version: u64) -> PathBuf {
        self.metadata().join(crate::layout::root_file_name(version))
    }
    /// `keys/.new-vN` or `online/.new-vN`.
    fn staging(&self, keys: &Path, version: u64) -> PathBuf {
        keys.join(format!("{STAGING_PREFIX}{version}"))
    }
    /// `keys/old/vN` or `online/old/vN`: the keys replaced when version N was rotated.
    fn archive(&self, keys: &Path, version: u64) -> PathBuf {
        keys.join("old").join(format!("v{version}"))
    }
}

/// Reads and verifies the root chain of the repository at `layout`.
fn read_chain(layout: &Layout) -> Result<RootChain, DirError> {
    let limit = crate::max_metadata_len(RoleName::Root);
    let anchor_path = layout.anchor();
    let anchor = files::read_limited(&anchor_path, limit, "root metadata")?;
    let anchor_version = RootInfo::parse(&anchor)
        .map_err(|source| DirError::InvalidAnchor {
            path: anchor_path.clone(),
            source,
        })?
        .version;
    let metadata = layout.metadata();
    let mut versions = Vec::new();
    for entry in fs::read_dir(&metadata).map_err(|e| read_error(&metadata, &e))? {
        let entry = entry.map_err(|e| read_error(&metadata, &e))?;
        let name = entry.file_name();
        // Only the names rota writes: `01.root.json` is not version 1.
        let Some(version) = name
            .to_str()
            .and_then(|n| Some((n, n.strip_suffix(".root.json")?.parse::<u64>().ok()?)))
            .filter(|(n, v)| *n == crate::layout::root_file_name(*v))
            .map(|(_, v)| v)
        else {
            continue;
        };
        if version > anchor_version {
            versions.push(version);
        }
    }
    versions.sort_unstable();
    let mut newer = Vec::new();
    let mut expected = anchor_version;
    for version in versions {
        expected = expected.saturating_add(1);
        if version != expected {
            return Err(DirError::MissingRootVersion {
                missing: layout.root_metadata(expected),
                anchor: anchor_path,
            });
        }
        let bytes = files::read_limited(&layout.root_metadata(version), limit, "root metadata")?;
        newer.push((version, bytes));
    }
    let chain: Vec<&[u8]> = newer.iter().map(|(_, b)| b.as_slice()).collect();
    let latest =
        crate::verify_root_chain(&anchor, &chain).map_err(|source| DirError::BrokenChain {
            metadata,
            anchor: anchor_path,
            source,
        })?;
    Ok(RootChain {
        anchor,
        anchor_version,
        newer,
        latest,
    })
}

/// The `ROLE-N.key` files in `dir`, sorted by name; none when `dir` does not exist.
fn role_key_files(dir: &Path, role: &str) -> Result<Vec<PathBuf>, DirError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_error(dir, &e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| read_error(dir, &e))?;
        let name = entry.file_name();
        let is_role_key = name
            .to_str()
            .and_then(|n| n.strip_prefix(role))
            .and_then(|n| n.strip_prefix('-'))
            .and_then(|n| n.strip_suffix(".key"))
            .is_some_and(|n| n.parse::<u32>().is_ok());
        if is_role_key && entry.path().is_file() {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

/// The versions of the staging directories (`.new-vN`) in `dir`.
fn staging_versions(dir: &Path) -> Result<Vec<u64>, DirError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_error(dir, &e)),
    };
    let mut versions = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| read_error(dir, &e))?;
        let version = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix(STAGING_PREFIX))
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(version) = version {
            versions.push(version);
        }
    }
    Ok(versions)
}

/// Whether something is at `path`.
fn exists(path: &Path) -> Result<bool, DirError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(FileError::Check {
            path: path.to_path_buf(),
            reason: files::reason(&e),
        }
        .into()),
    }
}

fn read_error(path: &Path, e: &io::Error) -> DirError {
    FileError::Read {
        path: path.to_path_buf(),
        reason: files::reason(e),
    }
    .into()
}

fn generate(n: u64) -> Result<Vec<RepoKey>, DirError> {
    (0..n)
        .map(|_| RepoKey::generate().map_err(DirError::KeyGeneration))
        .collect()
}

fn role(keys: &[RepoKey], threshold: u64) -> RoleKeys {
    RoleKeys::new(keys.iter().map(|k| k.public().clone()).collect(), threshold)
}

/// Every change a repository directory makes goes through here: create a directory,
/// create a file, write one atomically, rename, remove. A test can cut the power at the
/// k-th change: it and every later one fail, so nothing more reaches the disk, not even
/// cleanup (`a_cut_at_any_step_of_rotation_leaves_a_usable_repository`).
#[derive(Debug, Default)]
struct Disk {
    cut: Option<Cut>,
}

#[derive(Debug)]
struct Cut {
    /// The change that fails first (0 is the first change).
    at: usize,
    /// Changes asked for so far.
    asked: AtomicUsize,
    /// Only change `at` fails (a fault), not every one after it (a cut).
    once: bool,
}

impl Disk {
    /// The `at`-th change and every one after it fail.
    #[cfg(test)]
    fn cut_at(at: usize) -> Self {
        Self {
            cut: Some(Cut {
                at,
                asked: AtomicUsize::new(0),
                once: false,
            }),
        }
    }

    /// Only the `at`-th change fails.
    #[cfg(test)]
    fn fault_at(at: usize) -> Self {
        Self {
            cut: Some(Cut {
                at,
                asked: AtomicUsize::new(0),
                once: true,
            }),
        }
    }

    /// Whether a change was refused.
    #[cfg(test)]
    fn was_cut(&self) -> bool {
        self.cut
            .as_ref()
            .is_some_and(|c| c.asked.load(Ordering::SeqCst) > c.at)
    }

    /// Allows the next change, or fails it as a cut does.
    fn gate(&self) -> io::Result<()> {
        let Some(cut) = &self.cut else {
            return Ok(());
        };
        let n = cut.asked.fetch_add(1, Ordering::SeqCst);
        if n == cut.at || (!cut.once && n > cut.at) {
            return Err(io::Error::other("the power was cut (simulated)"));
        }
        Ok(())
    }

    fn create_dir(&self, path: &Path, mode: u32) -> Result<(), FileError> {
        self.gate().map_err(|e| FileError::Create {
            path: path.to_path_buf(),
            reason: files::reason(&e),
        })?;
        files::create_dir(path, mode)
    }

    fn create_new(&self, path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
        self.gate().map_err(|e| FileError::Create {
            path: path.to_path_buf(),
            reason: files::reason(&e),
        })?;
        files::create_new(path, contents, mode)
    }

    /// A new file, written atomically (never over an existing one).
    fn write_atomically(&self, path: &Path, contents: &[u8]) -> Result<(), FileError> {
        files::write_atomically_gated(path, contents, false, &mut || self.gate())
    }

    /// Moves `from` to `to`, which must not exist (a key is never overwritten), and
    /// syncs both directories.
    fn rename(&self, from: &Path, to: &Path) -> Result<(), FileError> {
        let move_error = |reason: String| FileError::Move {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            reason,
        };
        match fs::symlink_metadata(to) {
            Ok(_) => return Err(move_error("it already exists".into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(move_error(files::reason(&e))),
        }
        self.gate().map_err(|e| move_error(files::reason(&e)))?;
        fs::rename(from, to).map_err(|e| move_error(files::reason(&e)))?;
        for dir in [from.parent(), to.parent()].into_iter().flatten() {
            files::sync_dir(dir)?;
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> Result<(), FileError> {
        self.gate()
            .and_then(|()| fs::remove_file(path))
            .map_err(|e| FileError::Remove {
                path: path.to_path_buf(),
                reason: files::reason(&e),
            })
    }

    fn remove_dir(&self, path: &Path) -> Result<(), FileError> {
        self.gate()
            .and_then(|()| fs::remove_dir(path))
            .map_err(|e| FileError::Remove {
                path: path.to_path_buf(),
                reason: files::reason(&e),
            })?;
        if let Some(parent) = path.parent() {
            files::sync_dir(parent)?;
        }
        Ok(())
    }
}

/// What an operation created, removed again (newest first) unless it is kept.
struct Created<'a> {
    disk: &'a Disk,
    paths: Vec<PathBuf>,
    keep: bool,
}

impl<'a> Created<'a> {
    fn new(disk: &'a Disk) -> Self {
        Self {
            disk,
            paths: Vec::new(),
            keep: false,
        }
    }
    fn dir(&mut self, path: &Path, mode: u32) -> Result<(), DirError> {
        self.disk.create_dir(path, mode)?;
        self.paths.push(path.to_path_buf());
        Ok(())
    }
    fn file(&mut self, path: &Path, contents: &[u8], mode: u32) -> Result<(), DirError> {
        self.disk.create_new(path, contents, mode)?;
        self.paths.push(path.to_path_buf());
        Ok(())
    }
    /// Writes `key`'s file (PKCS#8 PEM, or the stub of a token key), readable by its
    /// owner only.
    fn key(&mut self, path: &Path, key: &RepoKey) -> Result<(), DirError> {
        let text = key.key_file_text().map_err(DirError::KeyEncoding)?;
        self.file(path, text.as_bytes(), 0o600)
    }
    fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Created<'_> {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for path in self.paths.iter().rev() {
            // Only what this operation made: files, then their (then empty) directories.
            let _ = self
                .disk
                .remove_file(path)
                .or_else(|_| self.disk.remove_dir(path));
        }
    }
}

#[cfg(test)]
mod tests;
