//! `rota-agent provision`: what a factory does to a Linux device before it ships.

use std::path::PathBuf;

use anyhow::{Context, Result};
use rota_agent::device::file_flash::FileFlash;
use rota_agent::device::linux::{FileOtp, HEADER_SIZE};
use rota_agent::device::standard_layout;
use rota_boot::factory::{self, Provisioning};
use rota_boot::otp_map;

/// Program a Linux device's flash (a file, created here) with a factory image in slot A,
/// burn its OTP map (trusted firmware keys, vendor and class from the factory envelope),
/// and install the TUF root it trusts at first.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The flash image file to create.
    #[arg(long)]
    flash: PathBuf,
    /// The OTP file to create.
    #[arg(long)]
    otp: PathBuf,
    /// The largest image a slot holds: bytes, or with K or M.
    #[arg(long, value_parser = super::parse_size)]
    image_capacity: u32,
    /// A firmware-signing public key to trust (repeatable; at most 4).
    #[arg(long = "trust-anchor", required = true)]
    trust_anchors: Vec<PathBuf>,
    /// The factory image's SUIT envelope, signed by a trust anchor.
    #[arg(long)]
    envelope: PathBuf,
    /// The factory image.
    #[arg(long)]
    image: PathBuf,
    /// The repository's root.json the device trusts at first.
    #[arg(long)]
    tuf_root: PathBuf,
    /// The agent's state directory, where the TUF root goes.
    #[arg(long)]
    state_dir: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let anchors = super::read_anchors(&args.trust_anchors)?;
    let envelope = super::read_small(&args.envelope, "the envelope")?;
    let image = std::fs::read(&args.image)
        .with_context(|| format!("cannot read {}", args.image.display()))?;
    let root = super::read_small(&args.tuf_root, "the TUF root")?;

    let claims = factory::claims(&envelope, &anchors)?;
    let map = Provisioning::new(&anchors, &claims, otp_map::FLOOR_BITS).otp_map()?;
    let layout = standard_layout(
        rota_agent::device::file_flash::ERASE_SIZE as u32,
        HEADER_SIZE,
        args.image_capacity,
    );
    let mut flash = FileFlash::create(&args.flash, layout.slots[1].end() as usize, layout.erased)
        .with_context(|| format!("cannot create the flash {}", args.flash.display()))?;
    factory::program_first_image(&mut flash, &layout, &claims.signer, &envelope, &image)
        .context("programming the factory image failed")?;
    FileOtp::provision(&args.otp, &map)
        .with_context(|| format!("cannot create the OTP {}", args.otp.display()))?;
    super::install_trusted_root(&args.state_dir, &root)?;
    println!(
        "provisioned {} ({} bytes: journal, slot A with the factory image, slot B), {} ({} trusted keys), TUF root in {}",
        args.flash.display(),
        layout.slots[1].end(),
        args.otp.display(),
        anchors.len(),
        args.state_dir.display()
    );
    Ok(())
}
