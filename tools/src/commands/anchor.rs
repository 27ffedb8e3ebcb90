//! `rota anchor`: sign trust-anchor commands, which add and revoke firmware-signing keys
//! in devices' roots of trust (`rota_boot::anchor`: the format and its threat model).

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use rota_boot::anchor::{self, AnchorCommand, Change};
use rota_keys::KeyAddress;
use rota_manifest::{Ed25519Verifier, PublicKey, Sign, public_key_from_pem};

use crate::commands::sign::load_signing_key;
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
            let new_key = load_ed25519(&args.new_key)?;
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
    }
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

/// Reads an Ed25519 public key: what a key slot can hold.
fn load_ed25519(path: &Path) -> Result<[u8; 32]> {
    let pem = files::read_key_file(path)?;
    match public_key_from_pem(&pem).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))? {
        PublicKey::Ed25519(key) => Ok(key),
        _ => bail!(
            "{} is not an Ed25519 key: devices verify firmware with Ed25519 only",
            path.display()
        ),
    }
}
