//! `rota anchor`: sign trust-anchor commands, which add and revoke firmware-signing keys
//! in devices' roots of trust (`rota_boot::anchor`: the format and its threat model), and
//! publish them to devices as TUF targets (`rota anchor publish`).

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use rota_boot::anchor::{self, AnchorCommand, Change};
use rota_keys::KeyAddress;
use rota_manifest::{Ed25519Verifier, PublicKey, Sign};

use rota_protocol::api::PublishResult;
use rota_repo::{RepoKey, RotaTarget, TargetFile};

use crate::client::Client;
use crate::commands::sign::load_signing_key;
use crate::commands::{release, repo};
use crate::files;
use crate::output;

/// Sign trust-anchor commands: roll a device class's firmware-signing key over.
///
/// A rollover is two commands, each signed by a key the devices trust at that moment:
/// `rota anchor add` (signed by the current key) puts the new key in a spare key slot;
/// releases are then signed with the new key; once devices run them, `rota anchor
/// revoke` (signed by the new key) revokes the old key's slot. Devices apply commands in
/// counter order, 1 first, each once; they refuse a command for another class, a
/// replayed or out-of-order one, and a revocation of the key of the image they run.
/// `rota anchor publish` delivers a command to the devices through the update server.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: AnchorSubcommand,
}

#[derive(Debug, Subcommand)]
enum AnchorSubcommand {
    /// Add a new firmware-signing key to a spare key slot.
    Add(AddArgs),
    /// Revoke a key slot: images and commands signed by its key are refused from then on.
    Revoke(RevokeArgs),
    Publish(PublishArgs),
}

/// Publish a signed trust-anchor command to devices, through the update server's TUF
/// repository.
///
/// The command is checked with the device's own code against --signer (and, for an add,
/// --new-key against the hash it adds), then listed as the target
/// `anchors/<class>/<counter>.cose` in a new targets version signed here with the
/// repository's offline targets keys, with rota fields naming the signer and the new key
/// (devices need the key itself; they check it against the command's hash). Devices of
/// the class apply it before their next install, in counter order; a revocation of the
/// key of the image a device runs waits until it runs an image signed by another key.
/// Command N is refused here unless command N - 1 is published. Needs a release token.
#[derive(Debug, clap::Args)]
struct PublishArgs {
    /// The command (`rota anchor add` or `rota anchor revoke`).
    #[arg(value_name = "CMD.cose")]
    command: PathBuf,

    /// The public key that signed it (PEM): a key the devices trust now.
    #[arg(long, value_name = "SIGNER.pub")]
    signer: PathBuf,

    /// For a command that adds a key: the new key's public key (PEM, NEW.pub).
    #[arg(long, value_name = "NEW.pub")]
    new_key: Option<PathBuf>,

    /// The TUF repository directory (`rota repo init`): its latest root and its targets
    /// keys (REPO/keys/targets-*.key).
    #[arg(long, value_name = "REPO")]
    repo: PathBuf,

    /// Days until the new targets metadata expires.
    #[arg(long, value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=36500))]
    expires_days: u64,

    /// A targets private key, where it is not in REPO/keys: a key file or a PKCS#11 URI;
    /// repeat for each (default: REPO/keys/targets-*.key, key files or stubs).
    #[arg(long = "targets-key", value_name = "PKCS11-URI|FILE")]
    targets_keys: Vec<rota_keys::KeyAddress>,

    #[command(flatten)]
    server: crate::client::ServerArgs,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// The signing key: a key the devices trust now (a key file, PKCS#8 PEM as `rota
    /// keygen` writes it, or a PKCS#11 URI). Ed25519, as firmware signatures are.
    #[arg(long, value_name = "SIGNER.key|PKCS11-URI")]
    key: KeyAddress,

    /// The key slot to change (0 is the first).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8))]
    slot: u8,

    /// The command counter: 1 for a class's first trust-anchor command, then 2, …
    /// Devices apply command N only after command N - 1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    counter: u32,

    /// The device class's UUID (SUIT class-id): devices of other classes refuse it.
    #[arg(long, value_name = "UUID", value_parser = uuid::Uuid::parse_str)]
    class: uuid::Uuid,

    /// The command to write (conventionally NAME.cose).
    #[arg(long, short = 'o', value_name = "CMD.cose")]
    output: PathBuf,

    /// Replace OUTPUT if it exists (it is replaced atomically).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, clap::Args)]
struct AddArgs {
    #[command(flatten)]
    common: Common,

    /// The new firmware-signing key's public key (PEM, as `rota keygen` writes NAME.pub).
    #[arg(long, value_name = "NEW.pub")]
    new_key: PathBuf,
}

#[derive(Debug, clap::Args)]
struct RevokeArgs {
    #[command(flatten)]
    common: Common,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        AnchorSubcommand::Add(args) => {
            let new_key = super::flash_image::load_ed25519(&args.new_key)?;
            let key_hash = PublicKey::Ed25519(new_key).key_id();
            let change = Change::Add {
                slot: args.common.slot.into(),
                key_hash,
            };
            let what = format!(
                "add the key {} ({}) to key slot {}",
                hex::encode(key_hash),
                args.new_key.display(),
                args.common.slot
            );
            write_command(&args.common, change, &what)
        }
        AnchorSubcommand::Revoke(args) => {
            let change = Change::Revoke {
                slot: args.common.slot.into(),
            };
            let what = format!("revoke key slot {}", args.common.slot);
            write_command(&args.common, change, &what)
        }
        AnchorSubcommand::Publish(args) => publish(args),
    }
}

/// A command's target: its name, its rota fields, and what it does in words.
struct CommandTarget {
    name: String,
    fields: RotaTarget,
    command: AnchorCommand,
    what: String,
}

/// Checks `bytes` as a device will (signature by `signer`, well-formed) and, for an add,
/// that `new_key` is the key it adds; returns the target it is published as.
fn command_target(
    bytes: &[u8],
    signer: [u8; 32],
    new_key: Option<[u8; 32]>,
) -> Result<CommandTarget> {
    let command = anchor::verify::<Ed25519Verifier>(&signer, bytes).map_err(|e| {
        anyhow!("the command does not verify with the signer's key, as devices check it: {e}")
    })?;
    let what = match (command.change, new_key) {
        (Change::Add { slot, key_hash }, Some(key)) => {
            if PublicKey::Ed25519(key).key_id() != key_hash {
                bail!(
                    "the command adds the key {}, not the --new-key given ({})",
                    hex::encode(key_hash),
                    hex::encode(PublicKey::Ed25519(key).key_id())
                );
            }
            format!("add the key {} to key slot {slot}", hex::encode(key_hash))
        }
        (Change::Add { .. }, None) => bail!(
            "the command adds a key: give its public key with --new-key, as devices need the key itself"
        ),
        (Change::Revoke { .. }, Some(_)) => {
            bail!("the command revokes a key slot: it takes no --new-key")
        }
        (Change::Revoke { slot }, None) => format!("revoke key slot {slot}"),
    };
    let class_id = uuid::Uuid::from_bytes(command.class_id);
    Ok(CommandTarget {
        name: RotaTarget::anchor_command_name(&class_id, command.counter),
        fields: RotaTarget::AnchorCommand {
            class_id,
            counter: command.counter,
            signer: hex::encode(signer),
            new_key: new_key.map(hex::encode),
        },
        command,
        what,
    })
}

fn publish(args: PublishArgs) -> Result<()> {
    let bytes = files::read_limited(
        &args.command,
        anchor::MAX_COMMAND_LEN as u64,
        "a trust-anchor command",
    )?;
    let signer = super::flash_image::load_ed25519(&args.signer)?;
    let new_key = args
        .new_key
        .as_deref()
        .map(super::flash_image::load_ed25519)
        .transpose()?;
    let target = command_target(&bytes, signer, new_key)?;
    let file = TargetFile::from_bytes(target.name.clone(), &bytes, target.fields.to_custom());

    let client = Client::connect(&args.server)?;
    let repo = repo::open(&args.repo)?;
    let chain = repo.root_chain();
    let keys = repo
        .targets_keys(&args.targets_keys)
        .map_err(|e| repo::key_error(e, "--targets-key"))?;
    release::check_server_root(&client, &args.repo, chain)?;
    let current = client.metadata(release::TARGETS_FILE)?.ok_or_else(|| {
        anyhow!(
            "the server has no targets metadata yet; run `rota repo push --dir {}` first",
            args.repo.display()
        )
    })?;
    let (verified, _) =
        release::check_server_targets(chain.latest_bytes(), chain.latest.version, &current)?;
    if verified.targets.iter().any(|t| t.name == target.name) {
        bail!(
            "{} is already published (targets version {}): devices apply one command per counter, so sign the next one with --counter {}",
            target.name,
            verified.version,
            target.command.counter + 1
        );
    }
    let counter = target.command.counter;
    if counter > 1 {
        let previous = RotaTarget::anchor_command_name(
            &uuid::Uuid::from_bytes(target.command.class_id),
            counter - 1,
        );
        if !verified.targets.iter().any(|t| t.name == previous) {
            bail!(
                "command {} is not published ({previous}): devices apply commands in counter order, so publish it first",
                counter - 1
            );
        }
    }
    let signers: Vec<&RepoKey> = keys.iter().collect();
    let signed = rota_repo::sign_targets(
        Some(&current),
        std::slice::from_ref(&file),
        &signers,
        release::expiry(args.expires_days),
    )
    .with_context(|| format!("cannot sign targets version {}", verified.version + 1))?;
    client.upload(&args.command, file.length, &file.sha256)?;
    let result: PublishResult = client.put_json(
        "/api/v1/repo/targets",
        &signed.bytes,
        &format!("targets version {}", signed.version),
    )?;
    output::print(&format!(
        "published {name} on {server}: trust-anchor command {counter} for class {class}: {what}, \
         signed by the key {signer}\n\
         targets version {targets} (expires {expires})\n\
         devices of the class apply it before their next install\n",
        name = target.name,
        server = client.base(),
        class = uuid::Uuid::from_bytes(target.command.class_id),
        what = target.what,
        signer = hex::encode(PublicKey::Ed25519(signer).key_id()),
        targets = result.targets_version,
        expires = release::date(signed.expires),
    ))
}

fn write_command(args: &Common, change: Change, what: &str) -> Result<()> {
    if !args.force {
        files::refuse_existing(
            &args.output,
            "pass --force to replace it, or choose another -o",
        )?;
    }
    let signer = load_signing_key(&args.key)?;
    let PublicKey::Ed25519(signer_key) = signer.public_key() else {
        bail!(
            "{} is not an Ed25519 key: devices verify trust-anchor commands as they verify \
             firmware, with Ed25519",
            args.key
        );
    };
    let command = AnchorCommand {
        class_id: *args.class.as_bytes(),
        counter: args.counter,
        change,
    };
    let signed = command.sign(&signer_key, |message| {
        let signature = signer
            .sign(message)
            .map_err(|e| anyhow!("signing with {} failed: {e}", args.key))?;
        <[u8; 64]>::try_from(signature)
            .map_err(|_| anyhow!("{} gave a signature that is not 64 bytes", args.key))
    })?;
    // The device's own check, before anything leaves this machine.
    let decoded = anchor::verify::<Ed25519Verifier>(&signer_key, signed.as_bytes())
        .map_err(|e| anyhow!("the signed command does not verify: {e}"))?;
    if decoded != command {
        bail!("the signed command does not decode to what was signed");
    }
    files::write_atomically(&args.output, signed.as_bytes(), args.force)?;
    output::print(&format!(
        "{}: trust-anchor command {} for class {}: {what}, signed by the key {} \
         (its public key {}: the signer a device applies it with)\n",
        args.output.display(),
        args.counter,
        args.class,
        hex::encode(PublicKey::Ed25519(signer_key).key_id()),
        hex::encode(signer_key),
    ))
}
