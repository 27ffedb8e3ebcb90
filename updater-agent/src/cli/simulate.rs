//! `rota-agent simulate`: a fleet of simulated devices against a real server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use rota_agent::Config;
use rota_agent::backoff::Backoff;
use rota_agent::device::sim::Factory;
use rota_agent::fleet::{Fleet, FleetSpec};

/// Manufacture a fleet of simulated devices (rota-boot's simulated flash and OTP, a
/// device key certified by the manufacturer CA, the factory image in slot A) and run
/// their agents against a server until stopped, printing a line of fleet status as it
/// changes.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, env = "ROTA_SERVER")]
    server: String,
    /// How many devices.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Device ids are PREFIX-0001, PREFIX-0002, …
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// The manufacturer CA's private key (the server trusts its public key): a key file
    /// or a PKCS#11 URI.
    #[arg(long, value_name = "FILE|PKCS11-URI")]
    ca_key: rota_keys::KeyAddress,
    /// Tags in every device certificate (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// The algorithm of the devices' identity keys: ed25519, or p256 (as a TPM or a
    /// secure element without Ed25519 holds).
    #[arg(long, default_value = "ed25519")]
    key_algorithm: rota_keys::Algorithm,
    /// The firmware-signing public keys devices trust (repeatable).
    #[arg(long = "trust-anchor", required = true)]
    trust_anchors: Vec<PathBuf>,
    /// The factory image's SUIT envelope and the image.
    #[arg(long)]
    factory_envelope: PathBuf,
    #[arg(long)]
    factory_image: PathBuf,
    /// The largest image a slot holds: bytes, or with K or M.
    #[arg(long, default_value = "512K", value_parser = super::parse_size)]
    image_capacity: u32,
    /// The repository's root.json devices trust at first.
    #[arg(long)]
    tuf_root: PathBuf,
    /// Where the devices keep their files.
    #[arg(long)]
    state_dir: PathBuf,
    /// The shortest wait between check-ins (the server's hint applies above it).
    #[arg(long, default_value = "1s", value_parser = super::parse_duration)]
    poll_min: Duration,
}

pub fn run(args: Args) -> Result<()> {
    let anchors = super::read_anchors(&args.trust_anchors)?;
    let envelope = super::read_small(&args.factory_envelope, "the factory envelope")?;
    let image = std::fs::read(&args.factory_image)
        .with_context(|| format!("cannot read {}", args.factory_image.display()))?;
    let spec = FleetSpec {
        count: args.devices,
        id_prefix: args.prefix,
        ca: super::open_signing_key(&args.ca_key, "the CA key")?
            .boxed()
            .into(),
        key_algorithm: args.key_algorithm,
        tags: args.tags,
        factory: Factory::signed(anchors, envelope, image, args.image_capacity)?,
        trusted_root: super::read_small(&args.tuf_root, "the TUF root")?,
        state_root: args.state_dir,
        agent: Config {
            poll_min: args.poll_min,
            poll_max: args.poll_min.max(Duration::from_secs(60)),
            backoff: Backoff {
                base: Duration::from_millis(200),
                cap: Duration::from_secs(10),
            },
            ..Config::new(&args.server)
        },
    };
    let http = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.devices.max(1))
        .build()?;
    let fleet = Fleet::start(&spec, &http)?;
    println!(
        "{} simulated devices started, each with its own UDS; their bootloader measures {}",
        fleet.len(),
        hex::encode(spec.factory.bootloader)
    );
    let mut last = String::new();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let line = summary(&fleet);
        if line != last {
            println!("{line}");
            last = line;
        }
    }
}

/// `fleet: 1.0.0 ×80 · 1.1.0 ×20 · downloading 5`
fn summary(fleet: &Fleet) -> String {
    let views = fleet.views();
    let mut versions: BTreeMap<String, usize> = BTreeMap::new();
    let mut downloading = 0;
    for view in &views {
        *versions
            .entry(
                view.firmware
                    .clone()
                    .unwrap_or_else(|| format!("v{}", view.version)),
            )
            .or_default() += 1;
        downloading += usize::from(view.downloading.is_some());
    }
    let mut line = String::from("fleet:");
    for (i, (label, n)) in versions.iter().enumerate() {
        line.push_str(if i == 0 { " " } else { " · " });
        line.push_str(&format!("{label} ×{n}"));
    }
    if downloading > 0 {
        line.push_str(&format!(" · downloading {downloading}"));
    }
    line
}
