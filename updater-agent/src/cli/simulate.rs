//! `rota-agent simulate`: a fleet of simulated devices against a real server, the
//! load-testing tool for a rota server (see `docs/SIMULATOR.md`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rota_agent::Config;
use rota_agent::backoff::Backoff;
use rota_agent::device::sim::Factory;
use rota_agent::fleet::{Fault, Faults, Fleet, FleetSpec};

/// Manufacture a fleet of simulated devices (rota-boot's simulated flash and OTP, a
/// device key certified by the manufacturer CA, the factory image in slot A) and run
/// their agents against a server until stopped, printing a line of fleet status as it
/// changes. Devices are tasks, not threads: a fleet of 100,000 runs in one process.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server's base URL; several (repeated, or comma-separated) spread the devices
    /// over a server's replicas in turn.
    #[arg(
        long = "server",
        env = "ROTA_SERVER",
        required = true,
        value_delimiter = ','
    )]
    servers: Vec<String>,
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
    /// Keep the devices' files (state, TUF metadata, keys) in this directory, to look at
    /// or to start the fleet again from. Without it they are kept in memory (a fresh
    /// directory on the /dev/shm tmpfs) and removed when the simulator stops: simulated
    /// power cuts happen in the simulated flash and the agent's own cut points, never in
    /// the host's file system, so the files need no disk.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The shortest wait between check-ins (the server's hint applies above it).
    #[arg(long, default_value = "1s", value_parser = super::parse_duration)]
    poll_min: Duration,
    /// The most devices in a pass (a check-in, a download, an install) at once: threads
    /// running agent code, and HTTP connections to the server.
    #[arg(long, default_value_t = rota_agent::fleet::DEFAULT_WORKERS, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u32).range(1..=4096), |n| n as usize))]
    workers: usize,
    /// Percent of devices whose power is cut once, mid-download.
    #[arg(long, default_value_t = 0.0, value_name = "PERCENT")]
    power_cuts: f64,
    /// Percent of devices that lose the network once, mid-download, for --outage.
    #[arg(long, default_value_t = 0.0, value_name = "PERCENT")]
    network_drops: f64,
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    outage: Duration,
    /// Percent of devices on a slow link of --slow-rate bytes per second (K, M allowed).
    #[arg(long, default_value_t = 0.0, value_name = "PERCENT")]
    slow_links: f64,
    #[arg(long, default_value = "64K", value_parser = super::parse_size)]
    slow_rate: u32,
    /// Percent of devices whose new firmware fails its self-test (each update rolls back).
    #[arg(long, default_value_t = 0.0, value_name = "PERCENT")]
    self_test_failures: f64,
    /// The seed of the draw that picks the faulty devices.
    #[arg(long, default_value_t = 1)]
    fault_seed: u64,
    /// Write which device meets which fault to FILE (JSON: {"sim-0042": "power-cut", …}).
    #[arg(long, value_name = "FILE")]
    fault_plan: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let anchors = super::read_anchors(&args.trust_anchors)?;
    let envelope = super::read_small(&args.factory_envelope, "the factory envelope")?;
    let image = std::fs::read(&args.factory_image)
        .with_context(|| format!("cannot read {}", args.factory_image.display()))?;
    // `in_memory` is removed when dropped, at the end of this function: after the fleet
    // stopped.
    let (state_root, in_memory) = match args.state_dir.clone() {
        Some(dir) => (dir, None),
        None => {
            let dir = in_memory_dir()?;
            (dir.path().to_path_buf(), Some(dir))
        }
    };
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
        state_root: state_root.clone(),
        agent: Config {
            poll_min: args.poll_min,
            poll_max: args.poll_min.max(Duration::from_secs(60)),
            backoff: Backoff {
                base: Duration::from_millis(200),
                cap: Duration::from_secs(10),
            },
            ..Config::new(&args.servers[0])
        },
        replicas: args.servers[1..].to_vec(),
        workers: args.workers,
        faults: Faults {
            power_cut: args.power_cuts,
            network_drop: args.network_drops,
            outage: args.outage,
            slow_link: args.slow_links,
            slow_rate: args.slow_rate.into(),
            self_test: args.self_test_failures,
            seed: args.fault_seed,
        },
    };
    // One connection per worker (each device in a pass holds one), and one per faulty
    // device's relay.
    let http = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.workers)
        .build()?;
    // SIGINT and SIGTERM are caught from here on, so that one during manufacture also
    // ends in a clean stop (once manufacture is done) and the in-memory files go.
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut terminate, mut interrupt) = {
        use tokio::signal::unix::{SignalKind, signal};
        let _runtime = signals.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    let started = Instant::now();
    let shown = Mutex::new(Instant::now());
    let fleet = Fleet::start_reporting(&spec, &http, &|made| {
        let Ok(mut last) = shown.lock() else { return };
        if made == spec.count || last.elapsed() >= Duration::from_secs(2) {
            *last = Instant::now();
            eprintln!("manufactured {made}/{} devices", spec.count);
        }
    })?;
    println!(
        "{} simulated devices started in {:.1} s, each with its own UDS; their bootloader measures {}",
        fleet.len(),
        started.elapsed().as_secs_f64(),
        hex::encode(spec.factory.bootloader)
    );
    println!(
        "device files in {}{}",
        state_root.display(),
        if in_memory.is_some() {
            " (in memory, removed when the simulator stops)"
        } else {
            ""
        }
    );
    if let Some(path) = &args.fault_plan {
        write_fault_plan(&fleet, path)?;
    }
    // Status lines until SIGINT or SIGTERM, then a clean stop: every pass in progress
    // ends, and the in-memory files go with the fleet.
    signals.block_on(async {
        let mut last = String::new();
        loop {
            tokio::select! {
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    let line = summary(&fleet);
                    if line != last {
                        println!("{line}");
                        last = line;
                    }
                }
            }
        }
        anyhow::Ok(())
    })?;
    eprintln!("stopping the fleet");
    fleet.stop();
    drop(in_memory);
    Ok(())
}

/// A fresh directory on the /dev/shm tmpfs (memory), or in the temporary directory where
/// a system has none.
fn in_memory_dir() -> Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    let mut builder = tempfile::Builder::new();
    builder.prefix("rota-fleet-");
    if shm.is_dir() {
        if let Ok(dir) = builder.tempdir_in(shm) {
            return Ok(dir);
        }
    }
    eprintln!("warning: no /dev/shm; the devices' files go to the temporary directory");
    builder
        .tempdir()
        .context("cannot make a directory for the devices' files")
}

/// `{"sim-0042": "power-cut", …}`: which device meets which fault.
fn write_fault_plan(fleet: &Fleet, path: &std::path::Path) -> Result<()> {
    let plan: BTreeMap<String, &str> = fleet
        .views()
        .into_iter()
        .filter_map(|v| Some((v.id, v.fault?.name())))
        .collect();
    let mut counts: BTreeMap<&str, usize> = Fault::ALL.iter().map(|f| (f.name(), 0)).collect();
    for fault in plan.values() {
        *counts.entry(fault).or_default() += 1;
    }
    println!("faults: {counts:?}");
    std::fs::write(path, serde_json::to_vec_pretty(&plan)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `fleet: 1.0.0 ×80 · 1.1.0 ×20 · downloading 5`
fn summary(fleet: &Fleet) -> String {
    let mut versions: BTreeMap<String, usize> = BTreeMap::new();
    let mut downloading = 0;
    fleet.visit(|view| {
        // A label is copied once per version, not once per device.
        match &view.firmware {
            Some(label) => match versions.get_mut(label) {
                Some(n) => *n += 1,
                None => drop(versions.insert(label.clone(), 1)),
            },
            None => *versions.entry(format!("v{}", view.version)).or_default() += 1,
        }
        downloading += usize::from(view.downloading.is_some());
    });
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
