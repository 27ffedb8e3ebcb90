//! `rota flash-image`: a device's complete flash contents and OTP map, ready to program.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use embedded_storage::nor_flash::NorFlash;
use rota_boot::board::BOARDS;
use rota_boot::dice::{self, Secret};
use rota_boot::factory::{self, Provisioning, RamFlash};
use rota_boot::header::FIXED_LEN;
use rota_boot::otp_map::{self, OtpRot};
use rota_boot::{BootProfile, Slot, verify_slot};
use rota_manifest::{PublicKey, public_key_from_pem};
use zeroize::Zeroize;

use crate::files;
use crate::output;

/// The flash of every preset board: 4 KiB sectors, 4-byte words.
type ImageFlash = RamFlash<4096, 4>;

/// Assemble a device's flash image (bootloader, journal, slot A with the factory image)
/// and its OTP map (trusted keys, vendor and class, and a new random Unique Device Secret),
/// for a board preset.
///
/// The factory image's envelope must be signed by one of the trust anchors, for its
/// vendor and class (which the OTP map takes from it). Before anything is written the
/// result is checked with the bootloader's own verification: a device programmed with
/// it boots the factory image. Slot B is left erased and the journal blank (the
/// factory state: slot A confirmed). The OTP map's format is documented in
/// `rota_boot::otp_map`; on QEMU it is the file otp.bin.
///
/// The UDS (TCG DICE) is 32 bytes from the operating system's random source, written
/// only into the OTP map: never to another file, never printed. What leaves with it is
/// the device's DeviceID public key, derived from it as the bootloader derives it, for
/// the manufacturer CA to certify (`--out-device-id`, and printed).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The board preset.
    #[arg(long, value_name = "NAME", default_value = "qemu-mps2-an386", value_parser = board_names())]
    board: String,

    /// The bootloader, as a raw binary (for example `llvm-objcopy -O binary`).
    #[arg(long, value_name = "FILE")]
    bootloader: PathBuf,

    /// The factory image for slot A (raw binary, linked at slot A's image address).
    #[arg(long, value_name = "FILE")]
    image: PathBuf,

    /// The factory image's signed envelope (`rota sign`).
    #[arg(long, value_name = "ENVELOPE")]
    envelope: PathBuf,

    /// An Ed25519 public key the device trusts (PEM), in OTP key-slot order. Repeat for
    /// up to four keys: spare slots let a device move to a new key after revoking one.
    #[arg(long = "trust-anchor", value_name = "PUB.pem", required = true)]
    trust_anchors: Vec<PathBuf>,

    /// Where to write the flash image.
    #[arg(long, value_name = "FILE")]
    out_flash: PathBuf,

    /// Where to write the OTP map.
    #[arg(long, value_name = "FILE")]
    out_otp: PathBuf,

    /// Where to write the DeviceID public key (Ed25519, 64 lowercase hex digits) [default:
    /// device-id.pub beside the OTP map].
    #[arg(long, value_name = "FILE", conflicts_with = "no_uds")]
    out_device_id: Option<PathBuf>,

    /// The part has no UDS: write a version 1 OTP map, and no DeviceID (its devices boot
    /// without DICE).
    #[arg(long)]
    no_uds: bool,

    /// Overwrite existing output files.
    #[arg(long)]
    force: bool,
}

fn board_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(BOARDS.iter().map(|b| b.name))
}

pub fn run(args: Args) -> Result<()> {
    let board = *BOARDS
        .iter()
        .find(|b| b.name == args.board)
        .ok_or_else(|| anyhow!("unknown board {}", args.board))?;
    if (board.erase_size as usize, board.write_size as usize)
        != (ImageFlash::ERASE_SIZE, ImageFlash::WRITE_SIZE)
    {
        bail!(
            "board {} has a flash geometry this tool cannot assemble yet",
            board.name
        );
    }

    let anchors = args
        .trust_anchors
        .iter()
        .map(|path| load_ed25519(path).map(PublicKey::Ed25519))
        .collect::<Result<Vec<_>>>()?;
    let bootloader = files::read_limited(
        &args.bootloader,
        board.bootloader.size.into(),
        "the bootloader of this board",
    )?;
    let envelope = files::read_envelope(&args.envelope)?;
    let image = files::read_limited(
        &args.image,
        board.layout.image_capacity(Slot::A).into(),
        "an image for slot A",
    )?;

    let layout = &board.layout;
    let claims = factory::claims(&envelope, &anchors)
        .with_context(|| args.envelope.display().to_string())?;
    let mut provisioning = Provisioning::new(&anchors, &claims, otp_map::FLOOR_BITS);
    if !args.no_uds {
        provisioning.uds = Some(new_uds()?);
    }
    let device_id = provisioning
        .uds
        .map(|uds| dice::device_id(&Secret::new(uds)));
    let otp = provisioning.otp_map();
    provisioning.uds.zeroize();
    // Wiped however this function returns: it holds the UDS.
    let mut otp = zeroize::Zeroizing::new(otp?);
    let mut flash = ImageFlash::new(
        (board.flash_size / board.erase_size) as usize,
        layout.erased,
    );
    let assembling = "assembling the flash image failed";
    factory::program_bootloader(&mut flash, board.bootloader, &bootloader, layout.erased)
        .context(assembling)?;
    factory::program_first_image(&mut flash, layout, &claims.signer, &envelope, &image)
        .context(assembling)?;

    // The device's own check, on the device's own bytes.
    let mut rot = OtpRot::open(&mut *otp).expect("just provisioned");
    let mut scratch = vec![0u8; layout.header_size as usize - FIXED_LEN];
    // rota's board bootloaders read envelopes with the boot profile (`CompactBootAuth`:
    // only the layout `rota sign` writes, a subset of the general decoder); the same
    // profile with ed25519-dalek gives the same verdicts on the host.
    let verified =
        verify_slot::<BootProfile, _, _>(&mut flash, &mut rot, layout, Slot::A, &mut scratch)
            .map_err(|e| anyhow!("a device programmed with this image would not boot it: {e}"))?;

    files::write_atomically(&args.out_flash, flash.contents(), args.force)?;
    files::write_atomically(&args.out_otp, &*otp, args.force)?;
    let device_id_line = match device_id {
        Some(key) => {
            let path = args.out_device_id.clone().unwrap_or_else(|| {
                args.out_otp
                    .parent()
                    .unwrap_or(Path::new(""))
                    .join("device-id.pub")
            });
            let key = hex::encode(key);
            files::write_atomically(&path, format!("{key}\n").as_bytes(), args.force)?;
            format!(
                "{}: DeviceID public key {key} (Ed25519, from the UDS in the OTP map; for the manufacturer CA to certify)\n",
                path.display()
            )
        }
        None => "no UDS: the device boots without DICE\n".to_owned(),
    };
    output::print(&format!(
        "{}: {} bytes for {} (bootloader {} bytes at {:#x}; slot A: sequence {}, security version {}, {} image bytes)\n\
         {}: OTP map, {} trusted keys (the signer in slot {}), vendor and class from the manifest{}\n{}",
        args.out_flash.display(),
        flash.contents().len(),
        board.name,
        bootloader.len(),
        board.bootloader.offset,
        verified.sequence_number,
        verified.security_version,
        verified.size,
        args.out_otp.display(),
        anchors.len(),
        claims.signer_slot,
        if device_id.is_some() {
            ", a new random UDS"
        } else {
            ""
        },
        device_id_line,
    ))
}

/// A new Unique Device Secret from the operating system's random source.
fn new_uds() -> Result<[u8; dice::CDI_LEN]> {
    let mut uds = [0u8; dice::CDI_LEN];
    getrandom::fill(&mut uds).map_err(|e| anyhow!("no random bytes for the UDS: {e}"))?;
    // All zero reads as "no UDS" (`rota_boot::otp_map`); 2^-256 from a working source.
    if uds == [0; dice::CDI_LEN] {
        bail!("the random source gave 32 zero bytes: refusing them as a UDS");
    }
    Ok(uds)
}

/// Reads a trust anchor that the bootloader can use: an Ed25519 public key.
pub(crate) fn load_ed25519(path: &Path) -> Result<[u8; 32]> {
    let pem = files::read_key_file(path)?;
    match public_key_from_pem(&pem)
        .with_context(|| format!("cannot use {} as a trust anchor", path.display()))?
    {
        PublicKey::Ed25519(key) => Ok(key),
        _ => bail!(
            "{} is not an Ed25519 key: the bootloader verifies Ed25519 signatures only",
            path.display()
        ),
    }
}
