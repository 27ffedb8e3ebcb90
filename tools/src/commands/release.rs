//! `rota release`: publish a signed firmware image on the update server, as TUF targets
//! signed offline with the repository's targets keys; and `rota repo push`, which puts a
//! repository's root versions on the server and makes it live.
//!
//! The server is not trusted with the list of releases: before the targets keys sign a
//! new version of it, the version the server serves is checked against the repository's
//! own latest root, so a server that altered it is refused rather than countersigned.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use rota_manifest::{Envelope, HostVerifier, Policy};
use rota_protocol::api::{PublishResult, ReleaseInfo};
use rota_repo::{RepoKey, RootChain, RotaTarget, TargetFile, VerifiedTargets};

use crate::client::{Client, ServerArgs};
use crate::commands::{repo, verify};
use crate::files;
use crate::output;

/// The targets metadata file the server serves (always its latest version).
pub(crate) const TARGETS_FILE: &str = "targets.json";

/// Publish firmware releases on the update server, and list them.
///
/// `rota release publish` uploads an image and its SUIT envelope and lists both in a new
/// version of the TUF targets metadata, signed here with the repository's offline targets
/// keys. Roll a release out to devices with `rota rollout create --release ID`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ReleaseCommand,
}

#[derive(Debug, Subcommand)]
enum ReleaseCommand {
    Publish(PublishArgs),
    List(ListArgs),
}

/// Publish a firmware image and its SUIT envelope as a release.
///
/// Reads the envelope for the release's device class (class id), version (sequence
/// number) and security version; an envelope without rota's security version parameter
/// (made by another tool) is published with security version 0, which is what the
/// bootloader takes it for. Checks that the image is the one the envelope signs (SHA-256
/// and size, as `rota verify --image` does), and with --trust-anchor that the envelope
/// is signed by a trusted key.
///
/// Then fetches the targets metadata the server serves and checks it against the latest
/// root of REPO (signatures by the targets keys, structure), so that a list the server
/// altered is never signed again; uploads the image and the envelope (streamed, with a
/// progress bar on a terminal); and signs and uploads the next targets version listing
/// both, as the targets NAME and NAME.suit. Prints the release id.
#[derive(Debug, clap::Args)]
struct PublishArgs {
    /// The TUF repository directory (`rota repo init`): its latest root and its targets
    /// keys (REPO/keys/targets-*.key).
    #[arg(long, value_name = "REPO")]
    repo: PathBuf,

    /// The firmware image.
    #[arg(long, value_name = "FILE")]
    image: PathBuf,

    /// The image's SUIT envelope (`rota sign`).
    #[arg(long, value_name = "FILE.suit")]
    envelope: PathBuf,

    /// The image's target name (default: the image's file name); the envelope is
    /// published as NAME.suit. Letters, digits, '.', '_', '-', '+' and '/' only; a name
    /// already published is refused, since a published name always means the same bytes.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// Days until the new targets metadata expires; devices refuse to update from expired
    /// metadata, so publish again (or `rota repo push` a new root) before then.
    #[arg(long, value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=36500))]
    expires_days: u64,

    /// A targets private key, where it is not in REPO/keys: a key file or a PKCS#11 URI;
    /// repeat for each (default: REPO/keys/targets-*.key, key files or stubs).
    #[arg(long = "targets-key", value_name = "PKCS11-URI|FILE")]
    targets_keys: Vec<rota_keys::KeyAddress>,

    /// Also check that the envelope is signed by this key (PEM, such as the NAME.pub of
    /// `rota keygen`); repeat to accept any of several.
    #[arg(long = "trust-anchor", value_name = "PUB.pem")]
    trust_anchors: Vec<PathBuf>,

    #[command(flatten)]
    server: ServerArgs,
}

/// List the releases the server knows, oldest first.
#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    server: ServerArgs,
}

/// Upload the repository's root versions to the update server and make it live.
///
/// Uploads, oldest first, every REPO/metadata/N.root.json the server does not have yet
/// (after `rota repo rotate`, the new version), after checking that the versions it has
/// are the repository's own. If the server has no targets metadata yet, signs an empty
/// targets version 1 with the targets keys and uploads it, so that the repository is
/// complete and TUF clients can refresh it. Needs an admin token.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The repository directory.
    #[arg(long, value_name = "REPO")]
    dir: PathBuf,

    /// Days until the empty targets version 1 (when one is made) expires.
    #[arg(long, value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=36500))]
    targets_expires_days: u64,

    /// A targets private key, where it is not in REPO/keys: a key file or a PKCS#11 URI;
    /// repeat for each (default: REPO/keys/targets-*.key, key files or stubs).
    #[arg(long = "targets-key", value_name = "PKCS11-URI|FILE")]
    targets_keys: Vec<rota_keys::KeyAddress>,

    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        ReleaseCommand::Publish(args) => publish(args),
        ReleaseCommand::List(args) => list(args),
    }
}

pub(crate) fn expiry(days: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(days * 86400)
}

pub(crate) fn date(t: SystemTime) -> String {
    rota_repo::tuf_date_time(t).unwrap_or_else(|_| "(out of range)".into())
}

/// What the targets metadata the server serves says, checked against `root`: signed by
/// a threshold of its targets keys and well-formed. Expired metadata is accepted here
/// (with its expiry in the second value): publishing the next version is how it is fixed.
pub(crate) fn check_server_targets(
    root: &[u8],
    root_version: u64,
    current: &[u8],
) -> Result<(VerifiedTargets, bool)> {
    let now = SystemTime::now();
    let refuse = |e: rota_repo::Error| {
        anyhow!(
            "the targets metadata the server serves does not verify against root version {root_version} of the repository, so it was not signed again: {e}"
        )
    };
    match rota_repo::verify_targets_upload(root, None, current, now) {
        Ok(verified) => Ok((verified, false)),
        // Expiry is checked last: everything else held. Verify as of a moment it held.
        Err(rota_repo::Error::Expired { .. }) => {
            rota_repo::verify_targets_upload(root, None, current, SystemTime::UNIX_EPOCH)
                .map(|verified| (verified, true))
                .map_err(refuse)
        }
        Err(e) => Err(refuse(e)),
    }
}

/// Checks that the server has the repository's latest root version, byte for byte: it
/// serves this repository, and the targets will be checked against the same root.
pub(crate) fn check_server_root(client: &Client, dir: &Path, chain: &RootChain) -> Result<()> {
    let version = chain.latest.version;
    let file = rota_repo::layout::root_file_name(version);
    match client.metadata(&file)? {
        None => bail!(
            "the server does not have root version {version} of {} yet; run `rota repo push --dir {}` first",
            dir.display(),
            dir.display()
        ),
        Some(bytes) if bytes != chain.latest_bytes() => bail!(
            "the server's root version {version} is not the one in {}: it serves another repository",
            dir.display()
        ),
        Some(_) => Ok(()),
    }
}

/// The release's facts, read from its envelope.
struct EnvelopeFacts {
    class_id: uuid::Uuid,
    version: u64,
    security_version: u64,
    image_size: u64,
}

fn read_envelope_facts(args: &PublishArgs, bytes: &[u8]) -> Result<EnvelopeFacts> {
    let path = &args.envelope;
    let policy = Policy::default();
    let invalid = |e| anyhow!("{} is not a valid SUIT envelope: {e}", path.display());
    let envelope = Envelope::decode(bytes, &policy).map_err(invalid)?;
    let (manifest, claims) = if args.trust_anchors.is_empty() {
        // What `rota inspect` reads, after the one check that needs no key: the
        // manifest is the one its digest (the signed bytes) names.
        let (_, digest, _) = envelope.authentication_wrapper().map_err(invalid)?;
        if !matches!(digest.matches(envelope.manifest_bytes()), Ok(true)) {
            bail!(
                "{} is not a valid SUIT envelope: its manifest does not match the manifest digest",
                path.display()
            );
        }
        let manifest = envelope.manifest_unauthenticated().map_err(invalid)?;
        let claims = envelope
            .claims(&manifest, 0, None)
            .map_err(|e| anyhow!("cannot read the manifest of {}: {e}", path.display()))?;
        (manifest, claims)
    } else {
        let anchors = args
            .trust_anchors
            .iter()
            .map(|p| verify::load_anchor(p))
            .collect::<Result<Vec<_>>>()?;
        let auth = envelope
            .authenticate(&anchors, &HostVerifier, &policy)
            .map_err(|e| anyhow!("{} is not authentic: {e}", path.display()))?;
        let claims = auth
            .claims(0, None)
            .map_err(|e| anyhow!("cannot read the manifest of {}: {e}", path.display()))?;
        (auth.manifest, claims)
    };
    let class_id = match claims.class_id {
        Some(id) => uuid::Uuid::from_slice(id).map_err(|_| {
            anyhow!(
                "the class id of {} is not a 16-byte UUID, so devices cannot be matched to it",
                path.display()
            )
        })?,
        None => bail!(
            "{} names no class id; a release needs one to say which devices it is for",
            path.display()
        ),
    };
    let image_size = verify::check_image(&args.image, path, &claims)?;
    Ok(EnvelopeFacts {
        class_id,
        version: manifest.sequence_number,
        // The bootloader takes a manifest without rota's parameter as security version 0.
        security_version: claims.security_version.unwrap_or(0),
        image_size,
    })
}

fn publish(args: PublishArgs) -> Result<()> {
    let client = Client::connect(&args.server)?;
    let repo = repo::open(&args.repo)?;
    let chain = repo.root_chain();
    let keys = repo
        .targets_keys(&args.targets_keys)
        .map_err(|e| repo::key_error(e, "--targets-key"))?;

    let envelope_bytes = files::read_envelope(&args.envelope)?;
    let facts = read_envelope_facts(&args, &envelope_bytes)?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => args
            .image
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow!(
                    "{} has no usable file name; give the target name with --name",
                    args.image.display()
                )
            })?,
    };
    let envelope_name = format!("{name}.suit");

    // Hashed again as the target lists it (SHA-256 and SHA-512); the same file, or the
    // SHA-256 tells.
    let image_file = files::open_regular(&args.image)?;
    let image_target = TargetFile::from_reader(
        name.clone(),
        image_file,
        RotaTarget::Image {
            class_id: facts.class_id,
            version: facts.version,
            security_version: facts.security_version,
            envelope: envelope_name.clone(),
        }
        .to_custom(),
    )
    .map_err(|e| {
        anyhow!(
            "cannot read {}: {}",
            args.image.display(),
            files::reason(&e)
        )
    })?;
    if image_target.length != facts.image_size {
        bail!(
            "{} changed while it was read; publish it again when it is complete",
            args.image.display()
        );
    }
    let envelope_target = TargetFile::from_bytes(
        envelope_name.clone(),
        &envelope_bytes,
        RotaTarget::Envelope {
            image: name.clone(),
        }
        .to_custom(),
    );

    check_server_root(&client, &args.repo, chain)?;
    let current = client.metadata(TARGETS_FILE)?.ok_or_else(|| {
        anyhow!(
            "the server has no targets metadata yet; run `rota repo push --dir {}` first",
            args.repo.display()
        )
    })?;
    let (verified, expired) =
        check_server_targets(chain.latest_bytes(), chain.latest.version, &current)?;
    for taken in [&name, &envelope_name] {
        if verified.targets.iter().any(|t| &t.name == taken) {
            bail!(
                "{taken} is already published (targets version {}); a published name always means the same file, so choose another --name",
                verified.version
            );
        }
    }
    let signers: Vec<&RepoKey> = keys.iter().collect();
    let signed = rota_repo::sign_targets(
        Some(&current),
        &[image_target.clone(), envelope_target.clone()],
        &signers,
        expiry(args.expires_days),
    )
    .with_context(|| format!("cannot sign targets version {}", verified.version + 1))?;

    client.upload(&args.image, image_target.length, &image_target.sha256)?;
    client.upload(
        &args.envelope,
        envelope_target.length,
        &envelope_target.sha256,
    )?;
    let result: PublishResult = client.put_json(
        "/api/v1/repo/targets",
        &signed.bytes,
        &format!("targets version {}", signed.version),
    )?;
    let releases: Vec<ReleaseInfo> = client.get("/api/v1/releases", "to list the releases")?;
    let release = releases.iter().find(|r| r.target == name).ok_or_else(|| {
        anyhow!(
            "targets version {} was published, but the server lists no release {name}",
            result.targets_version
        )
    })?;

    let expired_note = if expired {
        format!(
            "targets version {} had expired; version {} replaces it\n",
            verified.version, result.targets_version
        )
    } else {
        String::new()
    };
    output::print(&format!(
        "published {name} ({size} bytes) and {envelope_name} on {server}\n\
         class {class}, version {version}, security version {security}\n\
         {expired_note}\
         targets version {targets} (expires {expires}) lists {count} targets\n\
         release id: {id}\n\
         next: rota rollout create --release {id} --stages 10%,50%,100%\n",
        size = image_target.length,
        server = client.base(),
        class = facts.class_id.hyphenated(),
        version = facts.version,
        security = facts.security_version,
        targets = result.targets_version,
        expires = date(signed.expires),
        count = result.targets.len(),
        id = release.id,
    ))
}

/// The time of a server timestamp (unix seconds, as every API time is).
pub fn time_text(t: u64) -> String {
    date(SystemTime::UNIX_EPOCH + Duration::from_secs(t))
}

/// A table: `rows` under `header`, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        text.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn list(args: ListArgs) -> Result<()> {
    let client = Client::connect(&args.server)?;
    let releases: Vec<ReleaseInfo> = client.get("/api/v1/releases", "to list the releases")?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&releases)?;
        text.push('\n');
        return output::print(&text);
    }
    if releases.is_empty() {
        return output::print("no releases\n");
    }
    let rows: Vec<Vec<String>> = releases
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.target.clone(),
                r.class_id.clone(),
                r.version.to_string(),
                r.security_version.to_string(),
                r.length.to_string(),
                time_text(r.created_at),
            ]
        })
        .collect();
    output::print(&table(
        &[
            "ID", "TARGET", "CLASS", "VERSION", "SECURITY", "BYTES", "CREATED",
        ],
        &rows,
    ))
}

/// `rota repo push`.
pub fn push(args: PushArgs) -> Result<()> {
    let client = Client::connect(&args.server)?;
    let dir = &args.dir;
    let repo = repo::open(dir)?;
    let chain = repo.root_chain();

    let mut uploaded = Vec::new();
    let mut present = Vec::new();
    for (version, bytes) in chain.versions() {
        let file = rota_repo::layout::root_file_name(version);
        match client.metadata(&file)? {
            Some(theirs) if theirs == bytes => present.push(version),
            Some(_) => bail!(
                "the server's root version {version} is not the one in {}: it serves another repository",
                dir.display()
            ),
            None => {
                client.put_json_bytes(
                    "/api/v1/repo/root",
                    bytes,
                    &format!("root version {version}"),
                )?;
                uploaded.push(version);
            }
        }
    }

    let targets_line = match client.metadata(TARGETS_FILE)? {
        None => {
            let keys = repo
                .targets_keys(&args.targets_keys)
                .map_err(|e| repo::key_error(e, "--targets-key"))?;
            let signers: Vec<&RepoKey> = keys.iter().collect();
            let signed =
                rota_repo::sign_targets(None, &[], &signers, expiry(args.targets_expires_days))
                    .context("cannot sign the empty targets metadata")?;
            let result: PublishResult =
                client.put_json("/api/v1/repo/targets", &signed.bytes, "targets version 1")?;
            format!(
                "published empty targets version {} (expires {})\n",
                result.targets_version,
                date(signed.expires)
            )
        }
        Some(current) => {
            let (verified, expired) =
                check_server_targets(chain.latest_bytes(), chain.latest.version, &current)?;
            format!(
                "the server serves targets version {} with {} targets{}\n",
                verified.version,
                verified.targets.len(),
                if expired {
                    " (EXPIRED: publish a release to replace it)"
                } else {
                    ""
                }
            )
        }
    };

    let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    let mut text = String::new();
    if !uploaded.is_empty() {
        text.push_str(&format!("uploaded root versions {}\n", list(&uploaded)));
    }
    if !present.is_empty() {
        text.push_str(&format!(
            "the server already had root versions {}\n",
            list(&present)
        ));
    }
    text.push_str(&targets_line);
    text.push_str(&format!(
        "the repository is live: TUF clients trust {} and refresh from {}/tuf/metadata/\n",
        repo.anchor_path().display(),
        client.base()
    ));
    output::print(&text)
}
