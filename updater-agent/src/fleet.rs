//! A fleet of simulated devices against one server: what the demo runs, what the
//! end-to-end tests drive, and what `rota-agent simulate` offers as a load-testing tool
//! for a rota server.
//!
//! Each device is a [`SimDevice`] (rota-boot's simulated flash and OTP) with its own
//! [`Agent`]: the agent code real devices run, not a model of it. Devices are tasks on an
//! async runtime: a device waiting for its next check-in is a timer and costs no thread.
//! A device's pass ([`Agent::cycle`]) is the agent's blocking code, run on a pool of
//! [`FleetSpec::workers`] threads, so at most that many devices are in a pass, and hold
//! an HTTP connection, at once. (The agent stays blocking because a device runs one
//! linear sequence of steps, as on an MCU; the simulator runs that same code.)
//!
//! A device whose power is cut is powered on again by its task: it boots through
//! rota-boot, and its agent restarts from what it persisted, as a real device would.
//! [`Faults`] picks devices for power cuts, network drops, slow links and failing
//! self-tests.

pub mod link;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::blocking::Client;
use rota_boot::sim::{CutKind, SectorPool};
use rota_keys::{Algorithm, Sign, SoftwareKey};
use rota_protocol::{DeviceCertificate, certify};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::agent::{Agent, Config, Event, Outcome};
use crate::device::sim::{Factory, SimDevice};
use crate::device::{Device, Identity};
use crate::error::{DeviceError, ProvisionError};
use crate::firmware::SimFirmware;
use crate::state::write_atomically;
use link::Link;

/// What every device of the fleet is made with.
#[derive(Clone)]
pub struct FleetSpec {
    pub count: usize,
    /// Device ids are `{prefix}-{0001…}`.
    pub id_prefix: String,
    /// The manufacturer CA that certifies device keys (the server trusts it): a key in
    /// memory or in an HSM.
    pub ca: std::sync::Arc<dyn Sign>,
    /// The algorithm of the devices' identity keys (Ed25519, or P-256 as on a TPM or a
    /// secure element without Ed25519).
    pub key_algorithm: Algorithm,
    pub tags: Vec<String>,
    pub factory: Factory,
    /// The TUF root the devices trust at first (root.json, from the offline keys).
    pub trusted_root: Vec<u8>,
    /// Each device keeps its files in a directory of its own under this one.
    pub state_root: PathBuf,
    pub agent: Config,
    /// More base URLs of the same server (its replicas): devices are spread over
    /// `agent.server` and these in turn.
    pub replicas: Vec<String>,
    /// The most devices in a pass at once (threads running agent code); 0: [`DEFAULT_WORKERS`].
    /// Devices with a fault run outside this bound, so that slow links cannot hold up
    /// the rest of the fleet.
    pub workers: usize,
    pub faults: Faults,
}

/// The default bound on devices in a pass at once. A pass is mostly waits on the server
/// (a dozen requests, each report committed before it is answered), so the bound is set
/// by latency, not by cores: at 64 a 20,000-device rollout on 2 cores left the cores
/// idle at times and took 134.5 s, at 256 it took 125.1 s (about 50 MiB more).
pub const DEFAULT_WORKERS: usize = 256;

/// Shares of the fleet, in percent, that meet each fault. Each device meets at most one;
/// which ones is a seeded draw, and [`DeviceView::fault`] says who.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Power cut once, mid-download (a torn flash operation at half the image).
    pub power_cut: f64,
    /// The network lost once, mid-download, for `outage`.
    pub network_drop: f64,
    pub outage: Duration,
    /// Every byte from the server at `slow_rate` bytes per second.
    pub slow_link: f64,
    pub slow_rate: u64,
    /// Every new firmware's self-test fails, so each update rolls back.
    pub self_test: f64,
    pub seed: u64,
}

/// A fault a device meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    PowerCut,
    NetworkDrop,
    SlowLink,
    SelfTest,
}

impl Fault {
    pub const ALL: [Fault; 4] = [
        Fault::PowerCut,
        Fault::NetworkDrop,
        Fault::SlowLink,
        Fault::SelfTest,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::PowerCut => "power-cut",
            Fault::NetworkDrop => "network-drop",
            Fault::SlowLink => "slow-link",
            Fault::SelfTest => "self-test",
        }
    }
}

impl Faults {
    fn share(&self, fault: Fault) -> f64 {
        match fault {
            Fault::PowerCut => self.power_cut,
            Fault::NetworkDrop => self.network_drop,
            Fault::SlowLink => self.slow_link,
            Fault::SelfTest => self.self_test,
        }
    }

    /// Each device's fault: exactly the rounded share of `count` for each kind, on
    /// devices drawn without replacement (a Fisher–Yates shuffle seeded by `seed`).
    pub fn draw(&self, count: usize) -> Result<Vec<Option<Fault>>, String> {
        let mut wanted = Vec::new();
        for fault in Fault::ALL {
            let share = self.share(fault);
            if !(0.0..=100.0).contains(&share) {
                return Err(format!(
                    "the {} share {share}% is not a percentage",
                    fault.name()
                ));
            }
            wanted.push((fault, (share / 100.0 * count as f64).round() as usize));
        }
        if wanted.iter().map(|(_, n)| n).sum::<usize>() > count {
            return Err("the fault shares add up to more than the fleet".into());
        }
        let mut order: Vec<usize> = (0..count).collect();
        let mut rng = SplitMix(self.seed);
        for i in (1..count).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        let mut faults = vec![None; count];
        let mut picked = order.into_iter();
        for (fault, n) in wanted {
            for index in picked.by_ref().take(n) {
                faults[index] = Some(fault);
            }
        }
        Ok(faults)
    }
}

/// SplitMix64: a seeded, reproducible draw.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// What the fleet view shows of one device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceView {
    pub id: String,
    pub version: u64,
    pub firmware: Option<String>,
    /// Bytes of the image being downloaded on flash, and its size.
    pub downloading: Option<(u64, u64)>,
    pub last: Option<Outcome>,
    pub boots: u64,
    pub power_cuts: u64,
    /// How many times its network was dropped.
    pub network_drops: u64,
    /// The fault this device meets, if any.
    pub fault: Option<Fault>,
}

type Command = Box<dyn FnOnce(&mut Agent<SimDevice>) + Send>;

struct Member {
    view: Arc<Mutex<DeviceView>>,
    commands: mpsc::UnboundedSender<Option<Command>>,
    task: Option<JoinHandle<Option<SimDevice>>>,
    /// The device's relay, where its fault is on its network.
    link: Option<Link>,
}

pub struct Fleet {
    members: Vec<Member>,
    runtime: tokio::runtime::Runtime,
}

/// A new device identity: a fresh key of `algorithm` and a certificate from the CA,
/// binding also the DeviceID of `uds` where the device has one (DICE).
pub fn provision(
    ca: &dyn Sign,
    device_id: &str,
    class_id: [u8; 16],
    tags: &[String],
    algorithm: Algorithm,
    uds: Option<&[u8; 32]>,
) -> Result<(Identity, DeviceCertificate), ProvisionError> {
    let (key, certificate) = provision_key(ca, device_id, class_id, tags, algorithm, uds)?;
    let identity = Identity {
        device_id: device_id.to_string(),
        key: Box::new(key),
    };
    Ok((identity, certificate))
}

/// [`provision`], keeping the key in memory (to write it to a file, as a factory does
/// for a Linux device).
pub fn provision_key(
    ca: &dyn Sign,
    device_id: &str,
    class_id: [u8; 16],
    tags: &[String],
    algorithm: Algorithm,
    uds: Option<&[u8; 32]>,
) -> Result<(SoftwareKey, DeviceCertificate), ProvisionError> {
    let key = SoftwareKey::generate(algorithm)?;
    // The factory computes the DeviceID from the UDS it burns, with rota-boot's own
    // derivation, so the CA certifies the key that will sign every Alias certificate.
    let device_id_key =
        uds.map(|uds| rota_boot::dice::device_id(&rota_boot::dice::Secret::new(*uds)));
    let certificate = certify(
        ca,
        device_id,
        &key.public_key(),
        device_id_key.as_ref(),
        &uuid::Uuid::from_bytes(class_id),
        tags.to_vec(),
    )?;
    Ok((key, certificate))
}

impl Fleet {
    /// Manufactures `spec.count` devices, each with a random UDS (so each attests with
    /// DICE, as the simulated devices must), and starts their agents.
    pub fn start(spec: &FleetSpec, http: &Client) -> Result<Fleet, ProvisionError> {
        Self::start_reporting(spec, http, &|_| {})
    }

    /// [`Self::start`], calling `progress` with the number of devices made so far as the
    /// production line goes (on every core: making a device is CPU work, keys and boot).
    pub fn start_reporting(
        spec: &FleetSpec,
        http: &Client,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Fleet, ProvisionError> {
        let faults = spec
            .faults
            .draw(spec.count)
            .map_err(ProvisionError::Fleet)?;
        // Simulated devices lose power in their simulated flash, never in the host's
        // page cache: syncing their files would test nothing (`state::SYNC_FILES`).
        crate::state::sync_files(false);
        let workers = if spec.workers == 0 {
            DEFAULT_WORKERS
        } else {
            spec.workers
        };
        let faulty = faults.iter().filter(|f| f.is_some()).count();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(workers + faulty)
            .thread_name("fleet")
            .enable_all()
            .build()
            .map_err(|e| ProvisionError::Fleet(format!("cannot start the fleet's runtime: {e}")))?;
        let links = runtime.block_on(open_links(spec, &faults))?;
        // One pool of flash sectors for the fleet: a sector of equal bytes (the factory
        // image, a release) is held once, however many devices hold it.
        let sectors = Arc::new(SectorPool::new());
        let agents = manufacture_all(spec, http, &links, &sectors, progress)?;
        let passes = Arc::new(Semaphore::new(workers));
        let mut members = Vec::with_capacity(spec.count);
        // Each device's task is spawned on the fleet's runtime.
        let entered = runtime.enter();
        for (n, ((agent, fault), link)) in agents.into_iter().zip(faults).zip(links).enumerate() {
            let permits = fault.is_none().then(|| passes.clone());
            members.push(Member::start(
                device_id(spec, n),
                agent,
                fault,
                link,
                permits,
                &spec.faults,
            ));
        }
        drop(entered);
        Ok(Fleet { members, runtime })
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Calls `f` with each device's view in turn, copying nothing: for a status line over
    /// a large fleet, where [`Fleet::views`] (a copy of every view, twice a second) was a
    /// tenth of a 100,000-device simulator's CPU. `network_drops` is not filled in.
    pub fn visit(&self, mut f: impl FnMut(&DeviceView)) {
        for member in &self.members {
            if let Ok(view) = member.view.lock() {
                f(&view);
            }
        }
    }

    /// Every device's view, in id order.
    pub fn views(&self) -> Vec<DeviceView> {
        self.members
            .iter()
            .map(|m| {
                let mut view = m.view.lock().map(|v| v.clone()).unwrap_or_default();
                view.network_drops = m.link.as_ref().map_or(0, Link::drops);
                view
            })
            .collect()
    }

    /// Runs `f` on device `index`'s agent before its next pass, and wakes it.
    pub fn command(&self, index: usize, f: impl FnOnce(&mut Agent<SimDevice>) + Send + 'static) {
        if let Some(member) = self.members.get(index) {
            let _ = member.commands.send(Some(Box::new(f)));
        }
    }

    /// Wakes every device now, instead of at its next poll.
    pub fn wake_all(&self) {
        for member in &self.members {
            let _ = member.commands.send(Some(Box::new(|_| {})));
        }
    }

    /// Stops every agent (after its pass in progress) and hands the devices back.
    pub fn stop(mut self) -> Vec<SimDevice> {
        for member in &self.members {
            let _ = member.commands.send(None);
        }
        let tasks: Vec<_> = self
            .members
            .iter_mut()
            .filter_map(|m| m.task.take())
            .collect();
        self.runtime.block_on(async {
            let mut devices = Vec::with_capacity(tasks.len());
            for task in tasks {
                if let Ok(Some(device)) = task.await {
                    devices.push(device);
                }
            }
            devices
        })
    }
}

fn device_id(spec: &FleetSpec, n: usize) -> String {
    format!("{}-{:04}", spec.id_prefix, n + 1)
}

/// The server (or replica) device `n` talks to.
fn server_of(spec: &FleetSpec, n: usize) -> &str {
    match n % (1 + spec.replicas.len()) {
        0 => &spec.agent.server,
        r => &spec.replicas[r - 1],
    }
}

/// A relay for each device whose fault is on its network.
async fn open_links(
    spec: &FleetSpec,
    faults: &[Option<Fault>],
) -> Result<Vec<Option<Link>>, ProvisionError> {
    let mut links = Vec::with_capacity(faults.len());
    for (n, fault) in faults.iter().enumerate() {
        let rate = match fault {
            Some(Fault::SlowLink) => Some(spec.faults.slow_rate),
            Some(Fault::NetworkDrop) => None,
            _ => {
                links.push(None);
                continue;
            }
        };
        let upstream = upstream_address(server_of(spec, n))?;
        let link = Link::start(upstream, rate)
            .await
            .map_err(|e| ProvisionError::Fleet(format!("cannot open a link: {e}")))?;
        links.push(Some(link));
    }
    Ok(links)
}

/// What one production line made: devices by their index in the fleet.
type Made = Vec<(usize, Agent<SimDevice>)>;

/// Makes every device on every core, in id order; the first failure stops the line.
fn manufacture_all(
    spec: &FleetSpec,
    http: &Client,
    links: &[Option<Link>],
    sectors: &Arc<SectorPool>,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<Agent<SimDevice>>, ProvisionError> {
    let next = AtomicUsize::new(0);
    let made = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let lines = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(spec.count.max(1));
    let batches: Vec<Result<Made, ProvisionError>> = std::thread::scope(|scope| {
        let line = || {
            let mut agents = Vec::new();
            while !failed.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= spec.count {
                    break;
                }
                match manufacture(spec, http, n, links[n].as_ref(), sectors) {
                    Ok(agent) => agents.push((n, agent)),
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                progress(made.fetch_add(1, Ordering::Relaxed) + 1);
            }
            Ok(agents)
        };
        let handles: Vec<_> = (0..lines).map(|_| scope.spawn(line)).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a production line panicked"))
            .collect()
    });
    let mut agents = Vec::with_capacity(spec.count);
    for batch in batches {
        agents.extend(batch?);
    }
    agents.sort_by_key(|(n, _)| *n);
    Ok(agents.into_iter().map(|(_, agent)| agent).collect())
}

/// Device `n`: a key and certificate, a UDS, its files, its flash (sharing equal sectors
/// through `sectors`) and OTP, one boot; an agent that reaches the server through `link`
/// where it has one.
fn manufacture(
    spec: &FleetSpec,
    http: &Client,
    n: usize,
    link: Option<&Link>,
    sectors: &Arc<SectorPool>,
) -> Result<Agent<SimDevice>, ProvisionError> {
    let id = device_id(spec, n);
    let uds = new_uds()?;
    let (identity, certificate) = provision(
        &*spec.ca,
        &id,
        spec.factory.class_id,
        &spec.tags,
        spec.key_algorithm,
        Some(&uds),
    )?;
    let state_dir = spec.state_root.join(&id);
    let tuf_dir = state_dir.join("tuf");
    std::fs::create_dir_all(&tuf_dir).map_err(|e| DeviceError::Open {
        what: "the TUF directory",
        path: tuf_dir.clone(),
        detail: e.to_string(),
    })?;
    write_atomically(&tuf_dir.join("root.json"), &spec.trusted_root)?;
    let device = SimDevice::manufacture_with_pool(
        identity,
        &spec.factory,
        state_dir,
        Some(uds),
        Some(sectors.clone()),
    )?;
    let mut config = spec.agent.clone();
    config.server = match link {
        Some(link) => with_address(server_of(spec, n), link.address()),
        None => server_of(spec, n).trim_end_matches('/').to_owned(),
    };
    Ok(Agent::new(device, config, http.clone(), Some(certificate))?)
}

/// The socket address of the server's URL (`http://host:port`), for the relays.
fn upstream_address(server: &str) -> Result<std::net::SocketAddr, ProvisionError> {
    let url = reqwest::Url::parse(server)
        .map_err(|e| ProvisionError::Fleet(format!("the server URL {server} is not valid: {e}")))?;
    if url.scheme() != "http" {
        return Err(ProvisionError::Fleet(format!(
            "network faults relay plain TCP, so they need an http:// server URL, not {server}"
        )));
    }
    url.socket_addrs(|| Some(80))
        .ok()
        .and_then(|a| a.into_iter().next())
        .ok_or_else(|| ProvisionError::Fleet(format!("cannot resolve the server {server}")))
}

/// `server` with its host and port replaced by `address`.
fn with_address(server: &str, address: std::net::SocketAddr) -> String {
    let mut url = reqwest::Url::parse(server).expect("checked by upstream_address");
    let _ = url.set_ip_host(address.ip());
    let _ = url.set_port(Some(address.port()));
    url.as_str().trim_end_matches('/').to_string()
}

impl Member {
    /// Starts the device's task on the runtime entered.
    fn start(
        id: String,
        mut agent: Agent<SimDevice>,
        fault: Option<Fault>,
        link: Option<Link>,
        permits: Option<Arc<Semaphore>>,
        faults: &Faults,
    ) -> Member {
        let view = Arc::new(Mutex::new(DeviceView {
            id,
            fault,
            ..DeviceView::default()
        }));
        refresh_view(&view, &mut agent);
        if fault == Some(Fault::SelfTest) {
            agent.device_mut().set_unhealthy(true);
        }
        // Faults that strike mid-download: once, at the first progress past half the image.
        let mut strike = match fault {
            Some(Fault::PowerCut) => {
                let rail = agent.device().power_rail();
                let seed = faults.seed;
                Some(Box::new(move || {
                    rail.schedule_cut(rota_boot::sim::PowerCut {
                        at: rail.operations() + 1,
                        kind: CutKind::Torn,
                        seed,
                    })
                }) as Box<dyn FnOnce() + Send>)
            }
            Some(Fault::NetworkDrop) => {
                let link = link.clone().expect("a network fault has a link");
                let outage = faults.outage;
                Some(Box::new(move || link.drop_for(outage)) as Box<dyn FnOnce() + Send>)
            }
            _ => None,
        };
        let events = view.clone();
        agent.on_event(move |event| {
            if let Event::Downloading { at, of, .. } = event {
                if let Ok(mut v) = events.lock() {
                    v.downloading = Some((*at, *of));
                }
                if at.saturating_mul(2) >= *of {
                    if let Some(strike) = strike.take() {
                        strike();
                    }
                }
            }
        });
        let (commands, inbox) = mpsc::unbounded_channel();
        let task = tokio::spawn(live(agent, inbox, view.clone(), permits));
        Member {
            view,
            commands,
            task: Some(task),
            link,
        }
    }
}

/// A device's life: wait for its next pass (or a command), run the pass on the
/// blocking pool, repeat until told to stop. A pass that panics ends the device.
async fn live(
    mut agent: Agent<SimDevice>,
    mut inbox: mpsc::UnboundedReceiver<Option<Command>>,
    view: Arc<Mutex<DeviceView>>,
    permits: Option<Arc<Semaphore>>,
) -> Option<SimDevice> {
    let mut wait = Duration::ZERO;
    loop {
        let command = tokio::select! {
            biased;
            command = inbox.recv() => match command {
                Some(Some(command)) => Some(command),
                // Told to stop, or the fleet is gone.
                Some(None) | None => break,
            },
            () = tokio::time::sleep(wait) => None,
        };
        let _permit = match &permits {
            Some(permits) => Some(permits.clone().acquire_owned().await.ok()?),
            None => None,
        };
        let shown = view.clone();
        let (back, next) = tokio::task::spawn_blocking(move || {
            if let Some(command) = command {
                command(&mut agent);
            }
            let next = pass(&mut agent, &shown);
            (agent, next)
        })
        .await
        .ok()?;
        agent = back;
        wait = next;
    }
    // The agent holds a blocking HTTP client, which must not be dropped in async code.
    tokio::task::spawn_blocking(move || agent.into_device())
        .await
        .ok()
}

/// One pass of the agent; what it did goes to the view. Returns the wait until the next.
fn pass(agent: &mut Agent<SimDevice>, view: &Mutex<DeviceView>) -> Duration {
    let wait = match agent.cycle() {
        Ok((outcome, wait)) => {
            if let Ok(mut v) = view.lock() {
                v.last = Some(outcome);
                v.downloading = None;
            }
            wait
        }
        Err(failure) => power_cycle(agent, view, &failure),
    };
    refresh_view(view, agent);
    wait
}

/// A device failure in the simulation is a power cut (or a fault that a reset
/// clears): power comes back, the device boots, the agent restarts from its files.
fn power_cycle(
    agent: &mut Agent<SimDevice>,
    view: &Mutex<DeviceView>,
    why: &DeviceError,
) -> Duration {
    tracing::debug!(device = %agent.device().identity().device_id, %why, "device reset");
    if let Ok(mut v) = view.lock() {
        v.power_cuts += 1;
        v.downloading = None;
    }
    if let Err(e) = agent.device_mut().power_on() {
        tracing::error!(error = %e, "the device does not boot");
        return Duration::from_secs(1);
    }
    if let Err(e) = agent.restart() {
        tracing::error!(error = %e, "the agent cannot restart");
    }
    Duration::ZERO
}

fn refresh_view(view: &Mutex<DeviceView>, agent: &mut Agent<SimDevice>) {
    let device = agent.device_mut();
    let version = device_version(device);
    let firmware = device.firmware().map(|f: SimFirmware| f.label);
    let boots = device.boots();
    if let Ok(mut v) = view.lock() {
        v.version = version;
        v.firmware = firmware;
        v.boots = boots;
    }
}

fn device_version(device: &SimDevice) -> u64 {
    device.running().map(|r| r.version).unwrap_or(0)
}

/// A Unique Device Secret from the operating system's random number generator, as a
/// factory draws one per device.
pub fn new_uds() -> Result<[u8; 32], ProvisionError> {
    let mut uds = [0u8; 32];
    getrandom::fill(&mut uds).map_err(|e| ProvisionError::Random(e.to_string()))?;
    Ok(uds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_drawn_in_exact_shares_on_distinct_devices() {
        let faults = Faults {
            power_cut: 1.0,
            network_drop: 1.0,
            slow_link: 0.5,
            self_test: 0.5,
            seed: 7,
            ..Faults::default()
        };
        let drawn = faults.draw(2000).unwrap();
        let count = |f| drawn.iter().filter(|d| **d == Some(f)).count();
        assert_eq!(count(Fault::PowerCut), 20);
        assert_eq!(count(Fault::NetworkDrop), 20);
        assert_eq!(count(Fault::SlowLink), 10);
        assert_eq!(count(Fault::SelfTest), 10);
        assert_eq!(drawn.iter().filter(|d| d.is_none()).count(), 1940);
        // Reproducible from its seed, and another seed picks other devices.
        assert_eq!(faults.draw(2000).unwrap(), drawn);
        let other = Faults {
            seed: 8,
            ..faults.clone()
        }
        .draw(2000)
        .unwrap();
        assert_ne!(other, drawn);
    }

    #[test]
    fn impossible_fault_shares_are_refused() {
        let over = Faults {
            power_cut: 60.0,
            self_test: 50.0,
            ..Faults::default()
        };
        assert!(over.draw(100).unwrap_err().contains("more than the fleet"));
        let negative = Faults {
            slow_link: -1.0,
            ..Faults::default()
        };
        assert!(negative.draw(100).unwrap_err().contains("not a percentage"));
    }
}
