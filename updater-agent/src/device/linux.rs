//! A Linux device (a gateway): the slots on a flash image file or an MTD partition, the
//! root of trust in OTP cells (rota's [`otp_map`]; here a file standing in for the
//! fuse bank), the identity key in a PEM file, and the health check a command.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rota_boot::Layout;
use rota_boot::otp_map::{self, OtpCells, OtpRot};
use rota_manifest::PublicKey;

use super::file_flash::{ERASE_SIZE, FileFlash};
use super::{BootParts, Device, Identity, Running, standard_layout};
use crate::error::{DeviceError, Unhealthy};

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
}

impl LinuxDevice {
    /// Opens the device's parts and runs rota-boot's boot decision on them: on a
    /// file-backed flash this process plays the bootloader's part at power-on.
    pub fn open(config: LinuxConfig) -> Result<Self, DeviceError> {
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
        let mut device = Self {
            identity: config.identity,
            anchors: config.anchors,
            state_dir: config.state_dir,
            flash,
            rot,
            scratch: vec![0; layout.header_size as usize - rota_boot::header::FIXED_LEN],
            layout,
            running: None,
            health_command: config.health_command,
            boots: 0,
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
