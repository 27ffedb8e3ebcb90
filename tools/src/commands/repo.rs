//! `rota repo`: the TUF repository's offline side, kept in one directory.
//!
//! ```text
//! REPO/
//!   root.json              the trusted root devices ship with (version 1, never changed)
//!   metadata/N.root.json   every root version; the highest is the latest
//!   keys/root-I.key        the current root keys (offline; one per holder)
//!   keys/targets-I.key     the targets keys (offline; `rota release publish` signs with them)
//!   keys/old/vN/...        root keys replaced when root version N was rotated
//!   online/snapshot.key    the online keys, for the update server
//!   online/timestamp.key
//!   online/old/vN/...      online keys replaced when root version N was rotated
//! ```
//!
//! Every private key is PKCS#8 PEM, mode 0600, in a 0700 directory.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use rota_repo::{RepoKey, RoleKeys, RoleName, RootInfo, RootParams};

use crate::files;
use crate::output;

/// The largest root metadata file rota reads: what a device downloads, the limit the
/// server also holds uploads to.
fn max_root_size() -> u64 {
    rota_repo::max_metadata_len(RoleName::Root)
}

/// The online keys' files in REPO/online: the snapshot key, then the timestamp key.
const ONLINE_KEY_FILES: [&str; 2] = ["snapshot.key", "timestamp.key"];

/// Manage the TUF repository: its offline root and targets keys and its root metadata.
///
/// `rota repo init` creates a repository; `rota repo rotate` replaces its root keys.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: RepoCommand,
}

#[derive(Debug, Subcommand)]
enum RepoCommand {
    Init(InitArgs),
    Rotate(RotateArgs),
    Push(super::release::PushArgs),
}

/// Create a TUF repository: root, targets, snapshot and timestamp keys and root version 1.
///
/// Writes REPO/keys/root-1.key ... (the root keys: each belongs offline with a different
/// holder), REPO/keys/targets-1.key ... (offline, for signing releases),
/// REPO/online/snapshot.key and REPO/online/timestamp.key (for the update server),
/// REPO/metadata/1.root.json and REPO/root.json (the trusted root to build into device
/// firmware). Never overwrites: REPO must not exist or be an empty directory.
#[derive(Debug, clap::Args)]
struct InitArgs {
    /// The repository directory to create.
    #[arg(long, value_name = "REPO")]
    dir: PathBuf,

    /// How many root keys to make.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=32))]
    root_keys: u64,

    /// How many root keys must sign a new root version.
    #[arg(long, value_name = "K", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=32))]
    root_threshold: u64,

    /// How many targets keys to make.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=32))]
    targets_keys: u64,

    /// How many targets keys must sign the list of releases.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=32))]
    targets_threshold: u64,

    /// Days until the root metadata expires; devices stop updating when it does, until a
    /// new root version (`rota repo rotate`) is published.
    #[arg(long, value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=36500))]
    expires_days: u64,
}

/// Replace the root keys: write root version N+1, signed by the current and the new keys.
///
/// Makes new root keys (the current ones move to REPO/keys/old/vN/) and writes
/// REPO/metadata/{N+1}.root.json, signed by a threshold of the current root keys and a
/// threshold of the new ones, as devices require to trust it. The targets keys stay;
/// the online keys stay unless --replace-online. REPO/root.json is not changed: devices
/// keep it as their trust anchor and walk from it through every N.root.json to the
/// latest, so upload the new version to the update server.
#[derive(Debug, clap::Args)]
struct RotateArgs {
    /// The repository directory.
    #[arg(long, value_name = "REPO")]
    dir: PathBuf,

    /// How many new root keys to make (default: as many as now).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=32))]
    root_keys: Option<u64>,

    /// How many root keys must sign the next root version (default: as now).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=32))]
    root_threshold: Option<u64>,

    /// A current root private key, where it is not in REPO/keys; repeat for each
    /// (default: REPO/keys/root-*.key).
    #[arg(long = "root-key", value_name = "FILE")]
    root_key_files: Vec<PathBuf>,

    /// Also replace the online snapshot and timestamp keys (the old ones move to
    /// REPO/online/old/vN/); give the new ones to the update server with the new root.
    #[arg(long)]
    replace_online: bool,

    /// Days until the new root metadata expires.
    #[arg(long, value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=36500))]
    expires_days: u64,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        RepoCommand::Init(args) => init(args),
        RepoCommand::Rotate(args) => rotate(args),
        RepoCommand::Push(args) => push(args),
    }
}

/// The paths of a repository directory.
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
        self.metadata()
            .join(rota_repo::layout::root_file_name(version))
    }
}

/// What this command created, removed again (newest first) if it fails half-way.
#[derive(Default)]
struct Created {
    paths: Vec<PathBuf>,
    done: bool,
}

impl Created {
    fn dir(&mut self, path: &Path, mode: u32) -> Result<()> {
        create_dir(path, mode)?;
        self.paths.push(path.to_path_buf());
        Ok(())
    }
    fn file(&mut self, path: &Path, contents: &[u8], mode: u32) -> Result<()> {
        files::create_new(path, contents, mode)?;
        self.paths.push(path.to_path_buf());
        Ok(())
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        for path in self.paths.iter().rev() {
            // Only what this command made: files, then their (then empty) directories.
            let _ = fs::remove_file(path).or_else(|_| fs::remove_dir(path));
        }
    }
}

/// Creates directory `path` (its parent must exist) with permission bits `mode`.
fn create_dir(path: &Path, mode: u32) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    builder
        .create(path)
        .map_err(|e| anyhow!("cannot create {}: {}", path.display(), files::reason(&e)))
}

fn expiry(days: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(days * 86400)
}

fn date(t: SystemTime) -> String {
    rota_repo::tuf_date_time(t).unwrap_or_else(|_| "(out of range)".into())
}

fn generate(n: u64) -> Result<Vec<RepoKey>> {
    (0..n)
        .map(|_| RepoKey::generate().context("cannot generate a key"))
        .collect()
}

/// Writes `key` as a new PKCS#8 PEM file readable by its owner only.
fn write_key(created: &mut Created, path: &Path, key: &RepoKey) -> Result<()> {
    let pem = key.to_pkcs8_pem().context("cannot encode a private key")?;
    created.file(path, pem.as_bytes(), 0o600)
}

fn role(keys: &[RepoKey], threshold: u64) -> RoleKeys {
    RoleKeys::new(keys.iter().map(|k| k.public().clone()).collect(), threshold)
}

fn init(args: InitArgs) -> Result<()> {
    let repo = Layout::new(&args.dir);
    let mut created = Created::default();
    match fs::symlink_metadata(&repo.dir) {
        Ok(meta) if meta.is_dir() => {
            let mut entries = fs::read_dir(&repo.dir).map_err(|e| {
                anyhow!("cannot read {}: {}", repo.dir.display(), files::reason(&e))
            })?;
            if entries.next().is_some() {
                bail!(
                    "{} already exists and is not empty; rota repo init never overwrites a repository (choose a new --dir)",
                    repo.dir.display()
                );
            }
        }
        Ok(_) => bail!(
            "{} already exists and is not a directory; choose a new --dir",
            repo.dir.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = match repo.dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !parent.is_dir() {
                bail!(
                    "cannot create {}: directory {} does not exist",
                    repo.dir.display(),
                    parent.display()
                );
            }
            created.dir(&repo.dir, 0o755)?;
        }
        Err(e) => bail!("cannot check {}: {}", repo.dir.display(), files::reason(&e)),
    }

    // Everything is made and checked in memory before anything is written.
    let root_keys = generate(args.root_keys)?;
    let targets_keys = generate(args.targets_keys)?;
    let online = generate(2)?;
    let params = RootParams {
        root: role(&root_keys, args.root_threshold),
        targets: role(&targets_keys, args.targets_threshold),
        snapshot: role(&online[..1], 1),
        timestamp: role(&online[1..], 1),
        expires: expiry(args.expires_days),
    };
    let signers: Vec<&RepoKey> = root_keys.iter().collect();
    let root = rota_repo::init_root(&params, &signers).context("cannot create the root")?;

    created.dir(&repo.keys(), 0o700)?;
    let mut root_paths = Vec::new();
    for (i, key) in root_keys.iter().enumerate() {
        let path = repo.keys().join(format!("root-{}.key", i + 1));
        write_key(&mut created, &path, key)?;
        root_paths.push(path);
    }
    let mut targets_paths = Vec::new();
    for (i, key) in targets_keys.iter().enumerate() {
        let path = repo.keys().join(format!("targets-{}.key", i + 1));
        write_key(&mut created, &path, key)?;
        targets_paths.push(path);
    }
    created.dir(&repo.online(), 0o700)?;
    for (name, key) in ONLINE_KEY_FILES.iter().zip(&online) {
        write_key(&mut created, &repo.online().join(name), key)?;
    }
    created.dir(&repo.metadata(), 0o755)?;
    created.file(&repo.root_metadata(1), &root.bytes, 0o644)?;
    created.file(&repo.anchor(), &root.bytes, 0o644)?;
    created.done = true;

    let list = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    output::print(&format!(
        "created TUF repository {dir}\n\
         root keys ({rt} of {rn} sign a new root): {root_paths}\n\
         targets keys ({tt} of {tn} sign releases): {targets_paths}\n\
         online keys (for the update server): {online}/snapshot.key, {online}/timestamp.key\n\
         root version 1 (expires {expires}): {meta}\n\
         trusted root for devices: {anchor}\n\
         next:\n\
         - move each keys/root-*.key to its own holder, offline; rotation needs {rt} of them\n\
         - keep keys/targets-*.key offline, where releases are signed\n\
         - give the online keys and {anchor_name} to the update server\n\
         - build {anchor_name} into the device firmware as its TUF trust anchor\n",
        dir = repo.dir.display(),
        rt = args.root_threshold,
        rn = args.root_keys,
        root_paths = list(&root_paths),
        tt = args.targets_threshold,
        tn = args.targets_keys,
        targets_paths = list(&targets_paths),
        online = repo.online().display(),
        expires = date(root.expires),
        meta = repo.root_metadata(1).display(),
        anchor = repo.anchor().display(),
        anchor_name = "root.json",
    ))
}

/// The root versions of a repository: the trusted root devices ship with and every
/// `metadata/N.root.json` after it, checked as a chain the way devices walk it.
pub struct RootChain {
    /// `REPO/root.json`.
    pub anchor: Vec<u8>,
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
}

/// Reads and checks the root chain of the repository at `dir` (for `rota repo rotate`, and
/// for uploading new root versions to the server).
pub fn read_root_chain(dir: &Path) -> Result<RootChain> {
    let repo = Layout::new(dir);
    let anchor_path = repo.anchor();
    let anchor = files::read_limited(&anchor_path, max_root_size(), "root metadata")?;
    let anchor_info = RootInfo::parse(&anchor)
        .with_context(|| format!("{} is not a valid trusted root", anchor_path.display()))?;
    let mut versions = Vec::new();
    let entries = fs::read_dir(repo.metadata()).map_err(|e| {
        anyhow!(
            "cannot read {}: {}",
            repo.metadata().display(),
            files::reason(&e)
        )
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| {
            anyhow!(
                "cannot read {}: {}",
                repo.metadata().display(),
                files::reason(&e)
            )
        })?;
        let name = entry.file_name();
        let Some(version) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".root.json"))
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        if version > anchor_info.version {
            versions.push(version);
        }
    }
    versions.sort_unstable();
    let mut newer = Vec::new();
    let mut expected = anchor_info.version;
    for version in versions {
        expected += 1;
        if version != expected {
            bail!(
                "{} is missing: the root versions after {} must follow one another",
                repo.root_metadata(expected).display(),
                anchor_path.display()
            );
        }
        let path = repo.root_metadata(version);
        newer.push((
            version,
            files::read_limited(&path, max_root_size(), "root metadata")?,
        ));
    }
    let chain: Vec<&[u8]> = newer.iter().map(|(_, b)| b.as_slice()).collect();
    let latest = rota_repo::verify_root_chain(&anchor, &chain).with_context(|| {
        format!(
            "the root versions in {} do not follow from {}",
            repo.metadata().display(),
            anchor_path.display()
        )
    })?;
    Ok(RootChain {
        anchor,
        newer,
        latest,
    })
}

/// Reads a private key file.
fn load_key(path: &Path) -> Result<RepoKey> {
    let text = files::read_key_file(path)?;
    RepoKey::from_pkcs8_pem(&text).with_context(|| format!("cannot use {}", path.display()))
}

/// The `ROLE-N.key` files in `dir` (`root-1.key`, `targets-2.key`, …), by name; none
/// when `dir` does not exist.
pub(crate) fn role_key_files(dir: &Path, role: &str) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => bail!("cannot read {}: {}", dir.display(), files::reason(&e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| anyhow!("cannot read {}: {}", dir.display(), files::reason(&e)))?;
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

/// Moves `from` to `to` (same file system), naming both on failure.
fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| {
        anyhow!(
            "cannot move {} to {}: {}",
            from.display(),
            to.display(),
            files::reason(&e)
        )
    })
}

fn rotate(args: RotateArgs) -> Result<()> {
    let repo = Layout::new(&args.dir);
    let chain = read_root_chain(&repo.dir)?;
    let current = &chain.latest;
    let version = current.version;
    let next = version
        .checked_add(1)
        .ok_or_else(|| anyhow!("root version {version} cannot be rotated further"))?;

    // The current root keys: from --root-key, or REPO/keys/root-*.key.
    let in_keys_dir = role_key_files(&repo.keys(), "root")?;
    let key_files = if args.root_key_files.is_empty() {
        in_keys_dir.clone()
    } else {
        args.root_key_files.clone()
    };
    let mut old_keys: HashMap<String, RepoKey> = HashMap::new();
    for path in &key_files {
        let key = load_key(path)?;
        if !current.root.contains(key.key_id()) {
            bail!(
                "{} is not a root key of root version {version}",
                path.display()
            );
        }
        old_keys.insert(key.key_id().to_owned(), key);
    }
    if (old_keys.len() as u64) < current.root.threshold {
        bail!(
            "only {} of the {} root keys of root version {version} were found ({} are needed to sign the next version); put them in {} or name them with --root-key",
            old_keys.len(),
            current.root.keys.len(),
            current.root.threshold,
            repo.keys().display()
        );
    }

    let new_count = args.root_keys.unwrap_or(current.root.keys.len() as u64);
    let new_threshold = args.root_threshold.unwrap_or(current.root.threshold);
    let new_root_keys = generate(new_count)?;
    let new_online = if args.replace_online {
        Some(generate(2)?)
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
        expires: expiry(args.expires_days),
    };
    let old_signers: Vec<&RepoKey> = old_keys.values().collect();
    let new_signers: Vec<&RepoKey> = new_root_keys.iter().collect();
    let root = rota_repo::rotate_root(chain.latest_bytes(), &params, &old_signers, &new_signers)
        .with_context(|| format!("cannot make root version {next}"))?;

    // 1. The new keys, staged beside the current ones (nothing current is touched yet).
    let staging = repo.keys().join(format!(".new-v{next}"));
    let online_staging = repo.online().join(format!(".new-v{next}"));
    let mut created = Created::default();
    created.dir(&staging, 0o700)?;
    for (i, key) in new_root_keys.iter().enumerate() {
        write_key(
            &mut created,
            &staging.join(format!("root-{}.key", i + 1)),
            key,
        )?;
    }
    if let Some(online) = &new_online {
        created.dir(&online_staging, 0o700)?;
        for (name, key) in ONLINE_KEY_FILES.iter().zip(online) {
            write_key(&mut created, &online_staging.join(name), key)?;
        }
    }
    // 2. The new root version: from here on, the new keys are the ones that count.
    let meta_path = repo.root_metadata(next);
    files::write_atomically(&meta_path, &root.bytes, false)?;
    created.done = true;

    // 3. The current keys to keys/old/vN/, the new ones in their place.
    let finish = || -> Result<Vec<PathBuf>> {
        let old_dir = repo.keys().join("old");
        if !old_dir.is_dir() {
            create_dir(&old_dir, 0o700)?;
        }
        let archive = old_dir.join(format!("v{version}"));
        create_dir(&archive, 0o700)?;
        for path in &in_keys_dir {
            if let Some(name) = path.file_name() {
                rename(path, &archive.join(name))?;
            }
        }
        let mut new_paths = Vec::new();
        for i in 1..=new_root_keys.len() {
            let name = format!("root-{i}.key");
            let to = repo.keys().join(&name);
            rename(&staging.join(&name), &to)?;
            new_paths.push(to);
        }
        fs::remove_dir(&staging)
            .map_err(|e| anyhow!("cannot remove {}: {}", staging.display(), files::reason(&e)))?;
        if new_online.is_some() {
            let old_dir = repo.online().join("old");
            if !old_dir.is_dir() {
                create_dir(&old_dir, 0o700)?;
            }
            let archive = old_dir.join(format!("v{version}"));
            create_dir(&archive, 0o700)?;
            for name in ONLINE_KEY_FILES {
                let current = repo.online().join(name);
                if current.exists() {
                    rename(&current, &archive.join(name))?;
                }
                rename(&online_staging.join(name), &current)?;
            }
            fs::remove_dir(&online_staging).map_err(|e| {
                anyhow!(
                    "cannot remove {}: {}",
                    online_staging.display(),
                    files::reason(&e)
                )
            })?;
        }
        Ok(new_paths)
    };
    let new_paths = finish().with_context(|| {
        format!(
            "{} was written, but its keys are still in {}; move them in by hand",
            meta_path.display(),
            staging.display()
        )
    })?;

    let list = new_paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let online_line = if new_online.is_some() {
        format!(
            "new online keys: {0}/snapshot.key, {0}/timestamp.key (the old ones are in {0}/old/v{version}/)\n",
            repo.online().display()
        )
    } else {
        String::new()
    };
    output::print(&format!(
        "wrote root version {next} (expires {expires}): {meta}\n\
         signed by {old_n} current root keys and {new_n} new ones\n\
         new root keys ({new_threshold} of {new_count} sign the next root): {list}\n\
         {old_line}\
         {online_line}\
         {anchor} is unchanged: devices trust it and walk every N.root.json to version {next}\n\
         next:\n\
         - upload {meta} to the update server{online_hint}\n\
         - move each new keys/root-*.key to its own holder, offline\n",
        expires = date(root.expires),
        meta = meta_path.display(),
        old_n = old_signers.len(),
        new_n = new_signers.len(),
        old_line = if in_keys_dir.is_empty() {
            String::new()
        } else {
            format!(
                "the previous root keys are in {}/old/v{version}/\n",
                repo.keys().display()
            )
        },
        anchor = repo.anchor().display(),
        online_hint = if new_online.is_some() {
            ", with the new online keys"
        } else {
            ""
        },
    ))
}

/// `rota repo push`: in `release.rs`, beside publishing, which talks to the same server.
fn push(args: super::release::PushArgs) -> Result<()> {
    super::release::push(args)
}
