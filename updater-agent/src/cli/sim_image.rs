//! `rota-agent sim-image`: firmware for simulated devices.

use std::path::PathBuf;

use anyhow::{Context, Result};
use rota_agent::firmware::SimFirmware;

/// Write a simulated firmware image: what a simulated device "runs". Its first line
/// names it and says on what share of devices its self-test fails.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The version shown by the fleet, e.g. 1.2.0.
    #[arg(long)]
    label: String,
    /// The self-test fails on this percentage of devices (chosen by device id).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    fail_health_percent: u8,
    /// Image size: bytes, or with K or M.
    #[arg(long, default_value = "256K", value_parser = super::parse_size)]
    size: u32,
    #[arg(short, long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let image = SimFirmware {
        label: args.label,
        fail_health_percent: args.fail_health_percent,
    }
    .image(args.size as usize);
    std::fs::write(&args.out, &image)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("wrote {} ({} bytes)", args.out.display(), image.len());
    Ok(())
}
