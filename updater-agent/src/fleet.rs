//! A fleet of simulated devices, each a [`SimDevice`] with its own agent on its own
//! thread, all against one server: what the demo runs and the end-to-end tests drive.
//!
//! A device whose power is cut (see [`SimDevice::schedule_power_cut`]) is powered on
//! again by its thread: it boots through rota-boot, and its agent restarts from what it
//! persisted, as a real device would.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use reqwest::blocking::Client;
use rota_keys::{Algorithm, Sign, SoftwareKey};
use rota_protocol::{DeviceCertificate, certify};

use crate::agent::{Agent, Config, Event, Outcome};
use crate::device::sim::{Factory, SimDevice};
use crate::device::{Device, Identity};
use crate::error::{DeviceError, ProvisionError};
use crate::firmware::SimFirmware;
use crate::state::write_atomically;

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
}

type Command = Box<dyn FnOnce(&mut Agent<SimDevice>) + Send>;

struct Member {
    view: Arc<Mutex<DeviceView>>,
    commands: Sender<Option<Command>>,
    thread: Option<JoinHandle<SimDevice>>,
}

pub struct Fleet {
    members: Vec<Member>,
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
        let mut members = Vec::with_capacity(spec.count);
        for n in 1..=spec.count {
            let id = format!("{}-{n:04}", spec.id_prefix);
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
            let device = SimDevice::manufacture(identity, &spec.factory, state_dir, Some(uds))?;
            let agent = Agent::new(device, spec.agent.clone(), http.clone(), Some(certificate))?;
            members.push(Member::start(id, agent));
        }
        Ok(Fleet { members })
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every device's view, in id order.
    pub fn views(&self) -> Vec<DeviceView> {
        self.members
            .iter()
            .map(|m| m.view.lock().map(|v| v.clone()).unwrap_or_default())
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

    /// Stops every agent and hands the devices back.
    pub fn stop(mut self) -> Vec<SimDevice> {
        for member in &self.members {
            let _ = member.commands.send(None);
        }
        self.members
            .iter_mut()
            .filter_map(|m| m.thread.take()?.join().ok())
            .collect()
    }
}

impl Member {
    fn start(id: String, mut agent: Agent<SimDevice>) -> Member {
        let view = Arc::new(Mutex::new(DeviceView {
            id: id.clone(),
            ..DeviceView::default()
        }));
        refresh_view(&view, &mut agent);
        let events = view.clone();
        agent.on_event(move |event| {
            if let (Event::Downloading { at, of, .. }, Ok(mut v)) = (event, events.lock()) {
                v.downloading = Some((*at, *of));
            }
        });
        let (commands, inbox) = mpsc::channel::<Option<Command>>();
        let shown = view.clone();
        let thread = std::thread::Builder::new()
            .name(id)
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut wait = Duration::ZERO;
                loop {
                    match inbox.recv_timeout(wait) {
                        Ok(Some(command)) => command(&mut agent),
                        Ok(None) | Err(RecvTimeoutError::Disconnected) => break,
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                    wait = match agent.cycle() {
                        Ok((outcome, wait)) => {
                            if let Ok(mut v) = shown.lock() {
                                v.last = Some(outcome);
                                v.downloading = None;
                            }
                            wait
                        }
                        Err(failure) => power_cycle(&mut agent, &shown, &failure),
                    };
                    refresh_view(&shown, &mut agent);
                }
                agent.into_device()
            })
            .expect("spawning a device thread");
        Member {
            view,
            commands,
            thread: Some(thread),
        }
    }
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
