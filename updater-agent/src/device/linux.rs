//! A Linux device (a gateway): the slots on a flash image file or an MTD partition, the
//! root of trust in OTP cells (rota's [`otp_map`]; here a file standing in for the
//! fuse bank), the identity key in a PEM file or a PKCS#11 token ([`IdentityFiles`]:
//! rotated and erased there, power cuts included), and the health check a command.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{FileExt, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use rota_boot::otp_map::{self, OtpCells, OtpRot};
use rota_boot::{Layout, RootOfTrust as _};
use rota_keys::pkcs11::{self, Pkcs11Key, Pkcs11Uri};
use rota_keys::{Algorithm, KeyAddress, Sign, SoftwareKey};
use rota_manifest::PublicKey;
use rota_protocol::DeviceCertificate;
use serde::{Deserialize, Serialize};

use super::file_flash::{ERASE_SIZE, FileFlash};
use super::{BootParts, Device, Identity, Running, standard_layout};
use crate::error::{DeviceError, StateError, Unhealthy};

/// Bytes before the image in a slot.
pub const HEADER_SIZE: u32 = 4096;

/// OTP cells kept in a file: programming only ever sets bits, as in a fuse bank.
pub struct FileOtp {
    file: File,
}

impl FileOtp {
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Self { file })
    }

    /// Burns a freshly provisioned map (what a factory does once).
    pub fn provision(path: &Path, map: &[u8; otp_map::OTP_LEN]) -> io::Result<()> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        file.write_all_at(map, 0)?;
        file.sync_all()
    }
}

impl OtpCells for FileOtp {
    type Error = io::Error;

    fn read(&mut self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset as u64)
    }

    fn program(&mut self, offset: usize, mask: u8) -> io::Result<()> {
        let mut byte = [0u8];
        self.file.read_exact_at(&mut byte, offset as u64)?;
        self.file.write_all_at(&[byte[0] | mask], offset as u64)?;
        self.file.sync_data()
    }
}

/// Where a Linux device's parts are.
pub struct LinuxConfig {
    pub identity: Identity,
    pub anchors: Vec<PublicKey>,
    pub state_dir: PathBuf,
    /// The flash image file or MTD partition holding the journal and both slots.
    pub flash: PathBuf,
    pub otp: PathBuf,
    /// The largest image a slot holds.
    pub image_capacity: u32,
    /// Run after a trial boot; exit status 0 means healthy. `None`: always healthy.
    pub health_command: Option<String>,
}

impl LinuxConfig {
    pub fn layout(&self) -> Layout {
        standard_layout(ERASE_SIZE as u32, HEADER_SIZE, self.image_capacity)
    }
}

pub struct LinuxDevice {
    identity: Identity,
    anchors: Vec<PublicKey>,
    state_dir: PathBuf,
    flash: FileFlash,
    rot: OtpRot<FileOtp>,
    layout: Layout,
    scratch: Vec<u8>,
    running: Option<Running>,
    health_command: Option<String>,
    boots: u64,
    /// Where the identity lives: what a rotation and a decommission change. `None`: the
    /// device was opened without it ([`LinuxDevice::open`]) and can do neither.
    store: Option<IdentityStore>,
}

impl LinuxDevice {
    /// Opens the device's parts and runs rota-boot's boot decision on them: on a
    /// file-backed flash this process plays the bootloader's part at power-on.
    pub fn open(config: LinuxConfig) -> Result<Self, DeviceError> {
        Self::open_parts(config, None)
    }

    /// [`LinuxDevice::open`] for a device whose identity `files` hold: it can rotate its
    /// identity key and erase it. Run [`recover_identity`] first: `config.identity` must be
    /// what the files hold once an interrupted rotation is finished.
    pub fn open_with_identity(
        config: LinuxConfig,
        files: IdentityFiles,
    ) -> Result<Self, DeviceError> {
        let store = IdentityStore::new(files, &config.state_dir);
        Self::open_parts(config, Some(store))
    }

    /// A rotation whose new key is made (and maybe certified by the server, its answer
    /// lost) but not committed: the agent resumes it ([`crate::rotate::rotate`] finds
    /// the same pending key) before anything else, as the old key may be refused already.
    pub fn rotation_pending(&self) -> bool {
        self.store.as_ref().is_some_and(
            |store| matches!(store.read_phase(), Ok(Some(p)) if p.phase == Phase::Generated),
        )
    }

    /// Simulates a power cut: the identity-file operation `steps` from now (0: the next)
    /// and every one after it fail, as if the power went there. Reopen the device (after
    /// [`recover_identity`]) to see what a restart finds.
    fn store(&self) -> Result<&IdentityStore, DeviceError> {
        self.store.as_ref().ok_or_else(|| {
            DeviceError::Rotation(
                "the device was opened without knowing where its identity key is".into(),
            )
        })
    }

    #[cfg(feature = "sim")]
    pub fn cut_power_after(&self, steps: u64) {
        if let Some(store) = &self.store {
            store.cut.set(Some(steps));
        }
    }

    fn open_parts(config: LinuxConfig, store: Option<IdentityStore>) -> Result<Self, DeviceError> {
        let layout = config.layout();
        let open = |what, path: &std::path::Path, detail: String| DeviceError::Open {
            what,
            path: path.to_path_buf(),
            detail,
        };
        let flash = FileFlash::open(&config.flash, layout.erased)
            .map_err(|e| open("the flash", &config.flash, e.to_string()))?;
        let cells =
            FileOtp::open(&config.otp).map_err(|e| open("the OTP", &config.otp, e.to_string()))?;
        let rot = OtpRot::open(cells).map_err(|e| {
            open(
                "the OTP",
                &config.otp,
                format!("it is not provisioned ({e:?})"),
            )
        })?;
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|e| open("the state directory", &config.state_dir, e.to_string()))?;
        // The firmware keys given, and those trust-anchor commands added since.
        let mut anchors = config.anchors;
        for key in crate::anchors::load_added(&config.state_dir)? {
            if !anchors.contains(&key) {
                anchors.push(key);
            }
        }
        let mut device = Self {
            identity: config.identity,
            anchors,
            state_dir: config.state_dir,
            flash,
            rot,
            scratch: vec![0; layout.header_size as usize - rota_boot::header::FIXED_LEN],
            layout,
            running: None,
            health_command: config.health_command,
            boots: 0,
            store,
        };
        device.reboot()?;
        Ok(device)
    }
}

impl Device for LinuxDevice {
    type Flash = FileFlash;
    type Rot = OtpRot<FileOtp>;

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn trust_anchors(&self) -> &[PublicKey] {
        &self.anchors
    }

    /// Kept in the state directory (`crate::anchors::save_added`), so that the key is
    /// trusted after a restart although `--trust-anchor` does not name it.
    fn add_trust_anchor(&mut self, key: PublicKey) -> Result<(), DeviceError> {
        if self.anchors.contains(&key) {
            return Ok(());
        }
        let mut added = crate::anchors::load_added(&self.state_dir)?;
        added.push(key);
        crate::anchors::save_added(&self.state_dir, &added)?;
        self.anchors.push(key);
        Ok(())
    }

    fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    fn boot_parts(&mut self) -> BootParts<'_, FileFlash, OtpRot<FileOtp>> {
        BootParts {
            flash: &mut self.flash,
            rot: &mut self.rot,
            layout: self.layout,
            scratch: &mut self.scratch,
        }
    }

    fn running(&self) -> Option<Running> {
        self.running
    }

    /// The pending key if a rotation made one (the phase file names it: a restart reuses
    /// it, and the server's idempotency covers a certificate whose answer was lost); else
    /// a new one, `<key>.next` (mode 0600, written atomically) or `<label>-next` in the
    /// token, recorded in the phase file before it is returned.
    fn new_identity_key(&mut self, algorithm: Algorithm) -> Result<Box<dyn Sign>, DeviceError> {
        self.store()?.new_key(algorithm)
    }

    /// Writes `<cert>.next`, then moves the new key and the certificate into place and
    /// destroys the old key, the phase file recording each step (see `IdentityStore`).
    fn commit_identity(
        &mut self,
        key: Box<dyn Sign>,
        certificate: &DeviceCertificate,
    ) -> Result<(), DeviceError> {
        let store = self.store()?;
        store.commit(key.public_key(), certificate)?;
        // The key the files now hold, opened as the next start will open it.
        let committed = store.open_identity()?;
        if committed.public_key() != key.public_key() {
            return Err(DeviceError::Rotation(format!(
                "{} does not hold the new key after the commit",
                store.files.key
            )));
        }
        self.identity.key = committed;
        Ok(())
    }

    /// The phase file first (a restart finishes the job: [`recover_identity`]), then
    /// the UDS kill bit where the OTP map has one, every key (current, pending, old) and
    /// its stub, the certificate, and everything in the state directory; the phase file
    /// last. The key in memory is dropped (a `SoftwareKey` zeroizes on drop).
    fn zeroize(&mut self) -> Result<(), DeviceError> {
        let Some(store) = &self.store else {
            return Err(DeviceError::Zeroize(
                "the device was opened without knowing where its identity key is".into(),
            ));
        };
        store.begin_zeroize()?;
        let public = self.identity.key.public_key();
        self.identity.key = Box::new(super::ErasedKey(public));
        store.step()?;
        self.rot
            .kill_uds()
            .map_err(|e| DeviceError::Zeroize(format!("cannot kill the UDS: {e:?}")))?;
        store.finish_zeroize()
    }

    fn reboot(&mut self) -> Result<(), DeviceError> {
        self.running = None;
        self.boots = count_boot(&self.state_dir)?;
        // No DICE here: a Linux device's firmware is measured by the agent (software).
        self.running = self.boot_parts().boot(None)?.map(|b| b.running);
        Ok(())
    }

    fn boots(&self) -> u64 {
        self.boots
    }

    fn health_check(&mut self) -> Result<(), Unhealthy> {
        let Some(command) = &self.health_command else {
            return Ok(());
        };
        let version = self.running.map(|r| r.version).unwrap_or(0);
        let status = Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("ROTA_VERSION", version.to_string())
            .status()
            .map_err(|e| Unhealthy(format!("cannot run the health check {command:?}: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(Unhealthy(format!(
                "the health check {command:?} failed ({status})"
            )))
        }
    }
}

/// Adds one to the boot count kept in `state_dir/boot-count` and returns it: the boots
/// the agent has seen, which its attestation evidence reports.
fn count_boot(state_dir: &Path) -> Result<u64, DeviceError> {
    let path = state_dir.join("boot-count");
    let boots = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().unwrap_or(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            return Err(DeviceError::Open {
                what: "the boot count",
                path,
                detail: e.to_string(),
            });
        }
    } + 1;
    crate::state::write_atomically(&path, boots.to_string().as_bytes()).map_err(|e| {
        DeviceError::Open {
            what: "the boot count",
            path: path.clone(),
            detail: e.to_string(),
        }
    })?;
    Ok(boots)
}

/// Where a Linux device's identity lives: its key (a PKCS#8 PEM file; a stub file naming a
/// key in a PKCS#11 token; or a PKCS#11 URI) and its certificate.
#[derive(Debug, Clone)]
pub struct IdentityFiles {
    pub key: KeyAddress,
    pub certificate: PathBuf,
}

/// Finishes what a power cut interrupted in the identity files: a rotation whose new
/// certificate had arrived (its key and certificate are moved in, the old key destroyed),
/// or a decommission (everything is erased, and this fails: the device has no identity
/// left). A rotation still waiting for its certificate is left to the agent
/// ([`LinuxDevice::rotation_pending`]). Run before the key and certificate are read.
pub fn recover_identity(
    files: &IdentityFiles,
    state_dir: &Path,
    otp: &Path,
) -> Result<(), DeviceError> {
    let store = IdentityStore::new(files.clone(), state_dir);
    match store.read_phase()?.map(|p| p.phase) {
        None | Some(Phase::Generated) => Ok(()),
        Some(Phase::Certified | Phase::Committed) => store.finish_commit(),
        Some(Phase::Zeroizing) => {
            let cells = FileOtp::open(otp).map_err(|e| DeviceError::Open {
                what: "the OTP",
                path: otp.to_path_buf(),
                detail: e.to_string(),
            })?;
            OtpRot::open(cells)
                .and_then(|mut rot| rot.kill_uds())
                .map_err(|e| DeviceError::Zeroize(format!("cannot kill the UDS: {e:?}")))?;
            store.finish_zeroize()?;
            Err(DeviceError::Zeroize(
                "this device was decommissioned: its identity key, certificate and state are \
                 erased"
                    .into(),
            ))
        }
    }
}

/// Where an identity change stands: the phase file `rotation.json` in the state
/// directory (JSON, replaced atomically; absent when nothing is in progress).
///
/// | field            | meaning                                                         |
/// |------------------|-----------------------------------------------------------------|
/// | `version`        | 1; a reader refuses another                                     |
/// | `phase`          | `generated`, `certified`, `committed` (a rotation), `zeroizing` |
/// | `next`           | the new key's address: `<key>.next`, or its token URI (`<label>-next`, `id=`) |
/// | `new_public_key` | the new key, lowercase hex                                      |
///
/// A rotation, one file operation at a time (each a point a cut can land on):
///
/// | step | key file                              | token key (label L)                    | phase after |
/// |------|---------------------------------------|----------------------------------------|-------------|
/// | 1    | write `<key>.next` (0600, atomic)     | generate L-next (fresh id)             |             |
/// | 2    | phase file                            | phase file                             | generated   |
/// | 3    | write `<cert>.next` (atomic)          | same                                   |             |
/// | 4    | phase file                            | phase file                             | certified   |
/// | 5    | link `<key>` to `<key>.old`           | relabel L (not the new id) to L-old    |             |
/// | 6    | rename `<key>.next` to `<key>`        | relabel L-next to L                    |             |
/// | 7    | rename `<cert>.next` to `<cert>`      | same                                   |             |
/// | 8    | phase file                            | phase file                             | committed   |
/// | 9    | overwrite `<key>.old` with zeros, sync, remove | destroy L-old (`C_DestroyObject`) |       |
/// | 10   | remove the phase file                 | same                                   | (none)      |
///
/// Why a cut anywhere converges: before step 2 nothing names the new key and a restart
/// discards it (the server never saw it). From step 2 to 4 the agent resumes with the same
/// key (the server certifies it, or answers with the certificate it issued). From step 4
/// on, every step is repeatable from what is on disk: a link or a rename already done is
/// skipped, a relabel finds nothing left to move, a destroy nothing left to destroy. A
/// device key in a token is named by its label: a key address naming an `id=` cannot
/// follow a rotation (the new key has its own id) and is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PhaseFile {
    version: u32,
    phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    new_public_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    Generated,
    Certified,
    Committed,
    Zeroizing,
}

const PHASE_FILE: &str = "rotation.json";
const PHASE_VERSION: u32 = 1;

/// What holds the key an address names.
enum Holder {
    File(PathBuf),
    /// A key in a token: by URI, or through a stub file (which stays as it is: the key it
    /// names keeps its label).
    Token {
        uri: Box<Pkcs11Uri>,
        stub: Option<PathBuf>,
    },
}

/// The identity files of one device, and the phase file that makes changing them safe.
struct IdentityStore {
    files: IdentityFiles,
    state_dir: PathBuf,
    /// Operations left before a simulated power cut (`None`: no cut scheduled).
    #[cfg(feature = "sim")]
    cut: std::cell::Cell<Option<u64>>,
}

impl IdentityStore {
    fn new(files: IdentityFiles, state_dir: &Path) -> Self {
        Self {
            files,
            state_dir: state_dir.to_path_buf(),
            #[cfg(feature = "sim")]
            cut: std::cell::Cell::new(None),
        }
    }

    /// Called before every operation on the identity files: where a simulated cut lands.
    fn step(&self) -> Result<(), DeviceError> {
        #[cfg(feature = "sim")]
        match self.cut.get() {
            Some(0) => {
                return Err(DeviceError::Rotation(
                    "the power was cut (simulated)".into(),
                ));
            }
            Some(n) => self.cut.set(Some(n - 1)),
            None => {}
        }
        Ok(())
    }

    fn phase_path(&self) -> PathBuf {
        self.state_dir.join(PHASE_FILE)
    }

    fn read_phase(&self) -> Result<Option<PhaseFile>, DeviceError> {
        let path = self.phase_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }.into()),
        };
        let phase: PhaseFile =
            serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                path: path.clone(),
                source,
            })?;
        if phase.version != PHASE_VERSION {
            return Err(DeviceError::Rotation(format!(
                "{} is version {}; this agent reads version {PHASE_VERSION}",
                path.display(),
                phase.version
            )));
        }
        Ok(Some(phase))
    }

    fn write_phase(
        &self,
        phase: Phase,
        next: Option<String>,
        new_public_key: Option<&PublicKey>,
    ) -> Result<(), DeviceError> {
        self.step()?;
        let file = PhaseFile {
            version: PHASE_VERSION,
            phase,
            next,
            new_public_key: new_public_key.map(|k| hex::encode(k.as_bytes())),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|source| StateError::Corrupt {
            path: self.phase_path(),
            source,
        })?;
        Ok(crate::state::write_atomically(&self.phase_path(), &bytes)?)
    }

    fn remove_phase(&self) -> Result<(), DeviceError> {
        self.step()?;
        remove(&self.phase_path())
    }

    fn holder(&self) -> Result<Holder, DeviceError> {
        let path = match &self.files.key {
            KeyAddress::Pkcs11(uri) => {
                return Ok(Holder::Token {
                    uri: uri.clone(),
                    stub: None,
                });
            }
            KeyAddress::File(file) => file.path().to_path_buf(),
        };
        // Only a stub is read whole: a PEM key is never read here.
        let mut file = match File::open(&path) {
            Ok(file) => file,
            // Nothing there (erased, or never written): what is left is the file's.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Holder::File(path)),
            Err(e) => return Err(open_error("the device key", &path, e)),
        };
        let mut head = [0u8; 7];
        let is_stub = io::Read::read_exact(&mut file, &mut head).is_ok() && &head == b"pkcs11:";
        if is_stub {
            let text = fs::read_to_string(&path)
                .map_err(|e| open_error("the device key stub", &path, e))?;
            let uri =
                text.trim_end()
                    .parse()
                    .map_err(|e: pkcs11::Pkcs11Error| DeviceError::Open {
                        what: "the device key stub",
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
            return Ok(Holder::Token {
                uri: Box::new(uri),
                stub: Some(path),
            });
        }
        Ok(Holder::File(path))
    }

    /// The identity key as the files hold it now.
    fn open_identity(&self) -> Result<Box<dyn Sign>, DeviceError> {
        self.files
            .key
            .open()
            .map(rota_keys::PrivateKey::boxed)
            .map_err(|e| DeviceError::Rotation(format!("cannot open {}: {e}", self.files.key)))
    }

    fn new_key(&self, algorithm: Algorithm) -> Result<Box<dyn Sign>, DeviceError> {
        match self.read_phase()? {
            None => {}
            Some(PhaseFile {
                phase: Phase::Generated,
                next: Some(next),
                ..
            }) => match open_address(&next) {
                Ok(key) if key.algorithm() == algorithm => return Ok(key),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    key = %next, error = %e,
                    "the pending identity key cannot be opened: making another"
                ),
            },
            Some(PhaseFile {
                phase: Phase::Generated,
                ..
            }) => {}
            Some(other) => {
                return Err(DeviceError::Rotation(format!(
                    "an identity change is in progress ({:?}): the agent finishes it at its \
                     next start",
                    other.phase
                )));
            }
        }
        // Whatever a cut left of a key no phase file names, nobody has seen: discard it.
        self.discard_next()?;
        let (key, next): (Box<dyn Sign>, String) = match self.holder()? {
            Holder::File(path) => {
                let key = SoftwareKey::generate(algorithm)
                    .map_err(|e| DeviceError::Rotation(e.to_string()))?;
                let pem = key
                    .to_pkcs8_pem()
                    .map_err(|e| DeviceError::Rotation(e.to_string()))?;
                let next = with_suffix(&path, "next");
                self.step()?;
                write_secret(&next, pem.as_bytes())?;
                (Box::new(key), next.display().to_string())
            }
            Holder::Token { uri, .. } => {
                let label = token_label(&uri)?;
                self.step()?;
                let key =
                    Pkcs11Key::generate(&uri.with_key(&format!("{label}-next"), None), algorithm)
                        .map_err(|e| DeviceError::Rotation(e.to_string()))?;
                let next = key.uri().to_string();
                (Box::new(key), next)
            }
        };
        self.write_phase(Phase::Generated, Some(next), Some(&key.public_key()))?;
        Ok(key)
    }

    /// Removes a new key no phase file names (a cut between making and recording it).
    fn discard_next(&self) -> Result<(), DeviceError> {
        match self.holder()? {
            Holder::File(path) => {
                let next = with_suffix(&path, "next");
                for leftover in [temp_of(&next), next] {
                    if leftover.exists() {
                        self.step()?;
                        shred(&leftover)?;
                    }
                }
            }
            Holder::Token { uri, .. } => {
                let label = token_label(&uri)?;
                self.step()?;
                destroy(&uri.with_key(&format!("{label}-next"), None))?;
            }
        }
        Ok(())
    }

    /// Steps 3 to 10 of a rotation (see [`PhaseFile`]).
    fn commit(&self, new: PublicKey, certificate: &DeviceCertificate) -> Result<(), DeviceError> {
        match self.read_phase()? {
            Some(PhaseFile {
                phase: Phase::Generated,
                new_public_key: Some(pending),
                ..
            }) if pending == hex::encode(new.as_bytes()) => {}
            _ => {
                return Err(DeviceError::Rotation(
                    "the key to commit is not this device's pending key".into(),
                ));
            }
        }
        let bytes =
            serde_json::to_vec_pretty(certificate).map_err(|source| StateError::Corrupt {
                path: self.files.certificate.clone(),
                source,
            })?;
        self.step()?;
        crate::state::write_atomically(&with_suffix(&self.files.certificate, "next"), &bytes)?;
        let next = self.read_phase()?.and_then(|p| p.next);
        self.write_phase(Phase::Certified, next, Some(&new))?;
        self.finish_commit()
    }

    /// Steps 5 to 10 of a rotation: each repeatable from what is on disk.
    fn finish_commit(&self) -> Result<(), DeviceError> {
        let phase = match self.read_phase()? {
            Some(phase) if matches!(phase.phase, Phase::Certified | Phase::Committed) => phase,
            _ => return Ok(()),
        };
        let holder = self.holder()?;
        if phase.phase == Phase::Certified {
            match &holder {
                Holder::File(path) => {
                    let next = with_suffix(path, "next");
                    let old = with_suffix(path, "old");
                    if next.exists() {
                        if !old.exists() {
                            self.step()?;
                            fs::hard_link(path, &old).map_err(|e| write_error(&old, e))?;
                            sync_parent(&old)?;
                        }
                        self.step()?;
                        fs::rename(&next, path).map_err(|e| write_error(path, e))?;
                        sync_parent(path)?;
                    }
                }
                Holder::Token { uri, .. } => {
                    let label = token_label(uri)?;
                    let next: Pkcs11Uri =
                        phase.next.as_deref().unwrap_or_default().parse().map_err(
                            |e: pkcs11::Pkcs11Error| DeviceError::Rotation(e.to_string()),
                        )?;
                    let Some(new_id) = next.id.clone() else {
                        return Err(DeviceError::Rotation(format!(
                            "the phase file names the new key without its id: {next}"
                        )));
                    };
                    let mut old_ids: Vec<Vec<u8>> = token_objects(&uri.with_key(&label, None))?
                        .into_iter()
                        .map(|o| o.id)
                        .filter(|id| *id != new_id)
                        .collect();
                    old_ids.dedup();
                    for id in old_ids {
                        self.step()?;
                        relabel(&uri.with_key(&label, Some(&id)), &format!("{label}-old"))?;
                    }
                    self.step()?;
                    relabel(
                        &uri.with_key(&format!("{label}-next"), Some(&new_id)),
                        &label,
                    )?;
                }
            }
            let certificate_next = with_suffix(&self.files.certificate, "next");
            if certificate_next.exists() {
                self.step()?;
                fs::rename(&certificate_next, &self.files.certificate)
                    .map_err(|e| write_error(&self.files.certificate, e))?;
                sync_parent(&self.files.certificate)?;
            }
            self.write_phase(Phase::Committed, phase.next.clone(), None)?;
        }
        match &holder {
            Holder::File(path) => {
                let old = with_suffix(path, "old");
                if old.exists() {
                    self.step()?;
                    shred(&old)?;
                }
            }
            Holder::Token { uri, .. } => {
                let label = token_label(uri)?;
                self.step()?;
                destroy(&uri.with_key(&format!("{label}-old"), None))?;
            }
        }
        self.remove_phase()
    }

    fn begin_zeroize(&self) -> Result<(), DeviceError> {
        self.write_phase(Phase::Zeroizing, None, None)
    }

    /// Every key the address may hold (current, pending, old, a temporary file), the
    /// certificate, the state directory's contents, then the phase file.
    fn finish_zeroize(&self) -> Result<(), DeviceError> {
        let zeroize = |e: DeviceError| DeviceError::Zeroize(e.to_string());
        match self.holder().map_err(zeroize)? {
            Holder::File(path) => {
                let (next, old) = (with_suffix(&path, "next"), with_suffix(&path, "old"));
                for file in [temp_of(&next), next, old, path] {
                    if file.exists() {
                        self.step()?;
                        shred(&file).map_err(zeroize)?;
                    }
                }
            }
            Holder::Token { uri, stub } => {
                let labels = match &uri.object {
                    Some(label) => vec![
                        uri.with_key(label, None),
                        uri.with_key(&format!("{label}-next"), None),
                        uri.with_key(&format!("{label}-old"), None),
                    ],
                    None => vec![(*uri).clone()],
                };
                for objects in labels {
                    self.step()?;
                    destroy(&objects).map_err(zeroize)?;
                }
                if let Some(stub) = stub {
                    self.step()?;
                    shred(&stub).map_err(zeroize)?;
                }
            }
        }
        let certificate = &self.files.certificate;
        let certificate_next = with_suffix(certificate, "next");
        for file in [
            temp_of(&certificate_next),
            certificate_next,
            certificate.clone(),
        ] {
            if file.exists() {
                self.step()?;
                shred(&file).map_err(zeroize)?;
            }
        }
        let entries = fs::read_dir(&self.state_dir).map_err(|e| {
            DeviceError::Zeroize(format!("cannot read {}: {e}", self.state_dir.display()))
        })?;
        for entry in entries {
            let path = entry
                .map_err(|e| {
                    DeviceError::Zeroize(format!("cannot read {}: {e}", self.state_dir.display()))
                })?
                .path();
            if path == self.phase_path() {
                continue;
            }
            self.step()?;
            erase(&path).map_err(zeroize)?;
        }
        self.remove_phase()
    }
}

/// A key's label in its token: a device key there is named by its label alone, as its
/// rotated successor takes the same label and a new id.
fn token_label(uri: &Pkcs11Uri) -> Result<String, DeviceError> {
    match (&uri.object, &uri.id) {
        (Some(label), None) => Ok(label.clone()),
        _ => Err(DeviceError::Rotation(format!(
            "{uri} must name the device key by its label alone (object=, no id=): a rotated \
             key keeps the label and has a new id"
        ))),
    }
}

fn open_address(address: &str) -> Result<Box<dyn Sign>, rota_keys::KeyError> {
    address
        .parse::<KeyAddress>()?
        .open()
        .map(rota_keys::PrivateKey::boxed)
}

fn token_objects(uri: &Pkcs11Uri) -> Result<Vec<pkcs11::TokenObject>, DeviceError> {
    pkcs11::objects(uri).map_err(|e| DeviceError::Rotation(e.to_string()))
}

fn relabel(uri: &Pkcs11Uri, label: &str) -> Result<(), DeviceError> {
    pkcs11::relabel(uri, label)
        .map(drop)
        .map_err(|e| DeviceError::Rotation(e.to_string()))
}

fn destroy(uri: &Pkcs11Uri) -> Result<(), DeviceError> {
    pkcs11::destroy(uri)
        .map(drop)
        .map_err(|e| DeviceError::Rotation(e.to_string()))
}

/// `path` with `.suffix` added to its file name: `device.key.next`.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

/// The temporary file [`write_secret`] and `state::write_atomically` write `path` through.
fn temp_of(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    path.with_file_name(format!(".{name}.tmp"))
}

fn open_error(what: &'static str, path: &Path, e: io::Error) -> DeviceError {
    DeviceError::Open {
        what,
        path: path.to_path_buf(),
        detail: rota_keys::io_reason(&e),
    }
}

fn write_error(path: &Path, source: io::Error) -> DeviceError {
    StateError::Write {
        path: path.to_path_buf(),
        source,
    }
    .into()
}

/// Writes a secret to `path` so that a crash leaves no file or the whole one, readable by
/// its owner only (mode 0600 from the start: it is never briefly readable by others).
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), DeviceError> {
    let temp = temp_of(path);
    let failed = |e| write_error(path, e);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    fs::rename(&temp, path).map_err(failed)?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> Result<(), DeviceError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| write_error(dir, e))
}

/// [`crate::state::shred`], its failure the device's.
fn shred(path: &Path) -> Result<(), DeviceError> {
    crate::state::shred(path).map_err(|e| write_error(path, e))
}

/// [`crate::state::remove`], its failure the device's.
fn remove(path: &Path) -> Result<(), DeviceError> {
    crate::state::remove(path).map_err(|e| write_error(path, e))
}

/// [`crate::state::erase`], its failure the device's.
fn erase(path: &Path) -> Result<(), DeviceError> {
    crate::state::erase(path).map_err(|e| write_error(path, e))
}
