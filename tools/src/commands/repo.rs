//! `rota repo`: the TUF repository's offline side, kept in one directory. The directory,
//! its layout and its crash-safe rotation are rota-repo's [`RepoDir`]; this module parses
//! the arguments and prints what was done.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow};
use clap::Subcommand;
use rota_keys::KeyAddress;
use rota_repo::{DirError, GivenKeys, InitOptions, RepoDir, RoleName, RotateOptions};

use crate::output;

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
    CrossSign(CrossSignArgs),
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

    /// How many root keys to make (default: 3, or as many as --root-key names).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=32))]
    root_keys: Option<u64>,

    /// How many root keys must sign a new root version (default: 2, or 1 of 1).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=32))]
    root_threshold: Option<u64>,

    /// How many targets keys to make (default: 1, or as many as --targets-key names).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=32))]
    targets_keys: Option<u64>,

    /// How many targets keys must sign the list of releases.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=32))]
    targets_threshold: u64,

    /// An existing root key to use instead of making one: a PKCS#11 URI (a key in an
    /// HSM, made by `rota keygen --pkcs11`) or a key file; repeat for each. REPO/keys
    /// then holds a stub naming it, never the key.
    #[arg(long = "root-key", value_name = "PKCS11-URI|FILE")]
    root_key: Vec<KeyAddress>,

    /// An existing targets key, likewise; repeat for each.
    #[arg(long = "targets-key", value_name = "PKCS11-URI|FILE")]
    targets_key: Vec<KeyAddress>,

    /// An existing snapshot key (online: the update server signs with it), likewise.
    #[arg(long = "snapshot-key", value_name = "PKCS11-URI|FILE")]
    snapshot_key: Option<KeyAddress>,

    /// An existing timestamp key (online), likewise.
    #[arg(long = "timestamp-key", value_name = "PKCS11-URI|FILE")]
    timestamp_key: Option<KeyAddress>,

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
/// Cross-sign another repository's root with this repository's root keys, for an
/// ownership transfer (`rota device transfer --to-root`): devices that trust this
/// repository accept the new one only with a threshold of this one's root keys on it.
#[derive(Debug, clap::Args)]
struct CrossSignArgs {
    /// This repository (whose devices move).
    #[arg(long, value_name = "REPO")]
    dir: PathBuf,
    /// The new operator's root.json.
    #[arg(long, value_name = "FILE")]
    root: PathBuf,
    /// A current root key (repeatable; default: the keys in REPO/keys).
    #[arg(long = "root-key", value_name = "PKCS11-URI|FILE")]
    root_key_files: Vec<KeyAddress>,
    /// Where to write the cross-signed root.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

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

    /// A current root private key, where it is not in REPO/keys: a key file or a PKCS#11
    /// URI; repeat for each (default: REPO/keys/root-*.key, key files or stubs).
    #[arg(long = "root-key", value_name = "PKCS11-URI|FILE")]
    root_key_files: Vec<KeyAddress>,

    /// An existing key to be a new root key instead of making one (a PKCS#11 URI or a
    /// key file); repeat for each. REPO/keys then holds a stub naming it.
    #[arg(long = "new-root-key", value_name = "PKCS11-URI|FILE")]
    new_root_key: Vec<KeyAddress>,

    /// Also replace the online snapshot and timestamp keys (the old ones move to
    /// REPO/online/old/vN/); give the new ones to the update server with the new root.
    #[arg(long)]
    replace_online: bool,

    /// With --replace-online: an existing key to be the new snapshot key.
    #[arg(
        long = "new-snapshot-key",
        value_name = "PKCS11-URI|FILE",
        requires = "replace_online"
    )]
    new_snapshot_key: Option<KeyAddress>,

    /// With --replace-online: an existing key to be the new timestamp key.
    #[arg(
        long = "new-timestamp-key",
        value_name = "PKCS11-URI|FILE",
        requires = "replace_online"
    )]
    new_timestamp_key: Option<KeyAddress>,

    /// Days until the new root metadata expires.
    #[arg(long, value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=36500))]
    expires_days: u64,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        RepoCommand::Init(args) => init(args),
        RepoCommand::Rotate(args) => rotate(args),
        RepoCommand::CrossSign(args) => cross_sign(args),
        RepoCommand::Push(args) => push(args),
    }
}

/// Opens the repository at `dir` for a command (rotate, publish, push), saying on stdout
/// what it finished or undid of an interrupted rotation.
pub fn open(dir: &Path) -> Result<RepoDir> {
    let repo = RepoDir::open(dir)?;
    for recovery in repo.recovered() {
        output::print(&format!("{}: {recovery}\n", dir.display()))?;
    }
    Ok(repo)
}

/// `error`, with the option that names keys kept outside REPO/keys when too few were
/// found there (`--root-key`, `--targets-key`).
pub fn key_error(error: DirError, option: &str) -> anyhow::Error {
    match error {
        DirError::TooFewKeys {
            role,
            found,
            total,
            version,
            threshold,
            dir,
        } => anyhow!(
            "only {found} of the {total} {role} keys of root version {version} were found ({threshold} {}); put them in {} or name them with {option}",
            if role == RoleName::Root {
                "are needed to sign the next version"
            } else {
                "must sign"
            },
            dir.display()
        ),
        other => other.into(),
    }
}

fn expiry(days: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(days * 86400)
}

fn date(t: SystemTime) -> String {
    rota_repo::tuf_date_time(t).unwrap_or_else(|_| "(out of range)".into())
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn init(args: InitArgs) -> Result<()> {
    let count = |given: &[KeyAddress], option: Option<u64>, default: u64, name: &str| match (
        given.len() as u64,
        option,
    ) {
        (0, n) => Ok(n.unwrap_or(default)),
        (g, None) => Ok(g),
        (g, Some(n)) if g == n => Ok(n),
        (g, Some(n)) => Err(anyhow!("--{name}s {n} but --{name} names {g} keys")),
    };
    let root_keys = count(&args.root_key, args.root_keys, 3, "root-key")?;
    let targets_keys = count(&args.targets_key, args.targets_keys, 1, "targets-key")?;
    let root_threshold = args.root_threshold.unwrap_or(root_keys.min(2));
    let created = RepoDir::init(
        &args.dir,
        &InitOptions {
            root_keys,
            root_threshold,
            targets_keys,
            targets_threshold: args.targets_threshold,
            expires: expiry(args.expires_days),
            given: GivenKeys {
                root: args.root_key,
                targets: args.targets_key,
                snapshot: args.snapshot_key,
                timestamp: args.timestamp_key,
            },
        },
    )?;
    let repo = &created.repo;
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
        dir = repo.path().display(),
        rt = root_threshold,
        rn = root_keys,
        root_paths = list(&created.root_key_files),
        tt = args.targets_threshold,
        tn = targets_keys,
        targets_paths = list(&created.targets_key_files),
        online = repo.online_dir().display(),
        expires = date(repo.root_chain().latest.expires),
        meta = repo.root_metadata_path(1).display(),
        anchor = repo.anchor_path().display(),
        anchor_name = "root.json",
    ))
}

fn cross_sign(args: CrossSignArgs) -> Result<()> {
    let repo = open(&args.dir)?;
    let new_root = rota_repo::files::read_limited(
        &args.root,
        rota_repo::max_metadata_len(RoleName::Root),
        "the new root",
    )?;
    let signed = repo
        .cross_sign(&new_root, &args.root_key_files)
        .map_err(|e| key_error(e, "--root-key"))?;
    rota_repo::files::write_atomically(&args.output, &signed, false)?;
    output::print(&format!(
        "wrote {}: {} cross-signed by this repository's root keys\n\
         next: rota device transfer ID --to-root {} (with the new operator's server and device CA)\n",
        args.output.display(),
        args.root.display(),
        args.output.display()
    ))
}

fn rotate(args: RotateArgs) -> Result<()> {
    let mut repo = open(&args.dir)?;
    let rotated = repo
        .rotate(&RotateOptions {
            // Existing keys given: as many new root keys as were named.
            root_keys: args
                .root_keys
                .or((!args.new_root_key.is_empty()).then_some(args.new_root_key.len() as u64)),
            root_threshold: args.root_threshold,
            root_key_files: args.root_key_files,
            replace_online: args.replace_online,
            expires: expiry(args.expires_days),
            given: GivenKeys {
                root: args.new_root_key,
                targets: Vec::new(),
                snapshot: args.new_snapshot_key,
                timestamp: args.new_timestamp_key,
            },
        })
        .map_err(|e| key_error(e, "--root-key"))?;

    let next = rotated.version;
    let online_line = match &rotated.archived_online_keys {
        Some(archive) => format!(
            "new online keys: {0}/snapshot.key, {0}/timestamp.key (the old ones are in {1}/)\n",
            repo.online_dir().display(),
            archive.display()
        ),
        None => String::new(),
    };
    let old_line = match &rotated.archived_root_keys {
        Some(archive) => format!("the previous root keys are in {}/\n", archive.display()),
        None => String::new(),
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
        expires = date(rotated.expires),
        meta = rotated.metadata.display(),
        old_n = rotated.signed_by_current,
        new_n = rotated.signed_by_new,
        new_threshold = rotated.root_threshold,
        new_count = rotated.root_key_files.len(),
        list = list(&rotated.root_key_files),
        anchor = repo.anchor_path().display(),
        online_hint = if rotated.archived_online_keys.is_some() {
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
