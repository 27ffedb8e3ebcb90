//! A simulated device: rota-boot's simulated NOR flash and OTP on one power rail, where
//! "reboot" runs the real rota-boot boot decision, power can be cut at any flash
//! operation, and the firmware's health check can be told to fail.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rota_boot::Layout;
use rota_boot::dice::Handoff;
use rota_boot::factory::{Provisioning, program_first_image};
use rota_boot::sim::{CutKind, PowerCut, PowerRail, SectorPool, SimFlash, SimOtp};
use rota_manifest::PublicKey;
use sha2::{Digest as _, Sha256};

use super::{BootParts, Device, Identity, Running, standard_layout};
use crate::error::{DeviceError, Unhealthy};
use crate::firmware::{DESCRIPTION_MAX, SimFirmware};

/// A common MCU NOR geometry: 4 KiB sectors, 8-byte (ECC) words.
pub const ERASE_SIZE: usize = 4096;
pub const WRITE_SIZE: usize = 8;
/// Bytes before the image in a slot: the slot header (key, envelope).
pub const HEADER_SIZE: u32 = 2048;
/// Bits in the simulated floor counter.
pub const FLOOR_BITS: u32 = 32;

pub type Flash = SimFlash<ERASE_SIZE, WRITE_SIZE>;

/// The measurement of the simulated bootloader: what a board's bootloader measures of its
/// own flash region. Simulated devices run rota-boot's code as the host built it, so this
/// names that code by its crate version.
pub fn sim_bootloader() -> [u8; 32] {
    Sha256::digest(concat!(
        "rota-boot ",
        env!("CARGO_PKG_VERSION"),
        " (simulated)"
    ))
    .into()
}

/// What a production line puts on every device of a class.
#[derive(Clone)]
pub struct Factory {
    pub vendor_id: [u8; 16],
    pub class_id: [u8; 16],
    /// Firmware-signing keys the device trusts; their hashes go into OTP.
    pub anchors: Vec<PublicKey>,
    /// The factory image's signing key (one of `anchors`), its envelope and the image.
    pub signer: [u8; 32],
    pub envelope: Vec<u8>,
    pub image: Vec<u8>,
    /// The largest image a slot must hold.
    pub image_capacity: u32,
    /// The measurement of the bootloader the devices run ([`sim_bootloader`]).
    pub bootloader: [u8; 32],
}

impl Factory {
    /// The production line for the factory image `image` and its `envelope`, which a
    /// key among `anchors` must sign: vendor, class and signer are the envelope's.
    pub fn signed(
        anchors: Vec<PublicKey>,
        envelope: Vec<u8>,
        image: Vec<u8>,
        image_capacity: u32,
    ) -> Result<Self, rota_boot::factory::FactoryError> {
        let claims = rota_boot::factory::claims(&envelope, &anchors)?;
        Ok(Self {
            vendor_id: claims.vendor_id,
            class_id: claims.class_id,
            anchors,
            signer: claims.signer,
            envelope,
            image,
            image_capacity,
            bootloader: sim_bootloader(),
        })
    }

    pub fn layout(&self) -> Layout {
        standard_layout(ERASE_SIZE as u32, HEADER_SIZE, self.image_capacity)
    }
}

pub struct SimDevice {
    identity: Identity,
    anchors: Vec<PublicKey>,
    state_dir: PathBuf,
    rail: PowerRail,
    flash: Flash,
    otp: SimOtp,
    layout: Layout,
    scratch: Vec<u8>,
    running: Option<Running>,
    handoff: Option<Handoff>,
    bootloader: [u8; 32],
    /// A new identity key made for a rotation not yet committed.
    pending_key: Option<rota_keys::SoftwareKey>,
    force_unhealthy: bool,
    boots: u64,
}

impl SimDevice {
    /// A device fresh from the factory, booted once. `state_dir` is its file system;
    /// `uds`, its Unique Device Secret (DICE), burned into its OTP (`None`: a part without).
    pub fn manufacture(
        identity: Identity,
        factory: &Factory,
        state_dir: PathBuf,
        uds: Option<[u8; 32]>,
    ) -> Result<Self, DeviceError> {
        Self::manufacture_with_pool(identity, factory, state_dir, uds, None)
    }

    /// [`Self::manufacture`], the device's flash sharing identical sectors through
    /// `sectors` (when given) with every other device made with the same pool: a fleet
    /// holds each image once, not once per device. What any device reads is unchanged.
    pub fn manufacture_with_pool(
        identity: Identity,
        factory: &Factory,
        state_dir: PathBuf,
        uds: Option<[u8; 32]>,
        sectors: Option<Arc<SectorPool>>,
    ) -> Result<Self, DeviceError> {
        let layout = factory.layout();
        let rail = PowerRail::new();
        let sector_count = (layout.slots[1].end() / ERASE_SIZE as u64) as usize;
        let mut flash = Flash::on_rail(rail.clone(), sector_count, layout.erased);
        if let Some(pool) = sectors {
            flash = flash.with_sector_pool(pool);
        }
        program_first_image(
            &mut flash,
            &layout,
            &factory.signer,
            &factory.envelope,
            &factory.image,
        )
        .map_err(|e| DeviceError::Factory(e.to_string()))?;
        // The factory's keys in the first slots, the rest of the v3 map's slots spare
        // for trust-anchor commands.
        let mut keys: Vec<_> = factory.anchors.iter().map(|k| Some(k.key_id())).collect();
        keys.resize(keys.len().max(rota_boot::otp_map::KEY_SLOTS), None);
        let otp = SimOtp::provision(
            rail.clone(),
            &Provisioning {
                keys,
                vendor_id: factory.vendor_id,
                class_id: factory.class_id,
                floor_bits: FLOOR_BITS,
                uds,
            },
        );
        std::fs::create_dir_all(&state_dir).map_err(|e| DeviceError::Open {
            what: "the state directory",
            path: state_dir.clone(),
            detail: e.to_string(),
        })?;
        let mut device = Self {
            identity,
            anchors: factory.anchors.clone(),
            state_dir,
            rail,
            flash,
            otp,
            scratch: vec![0; (layout.header_size as usize).saturating_sub(64)],
            layout,
            running: None,
            handoff: None,
            bootloader: factory.bootloader,
            pending_key: None,
            force_unhealthy: false,
            boots: 0,
        };
        device.reboot()?;
        Ok(device)
    }

    /// Whether the OTP's UDS is killed for good (a decommissioned device).
    pub fn uds_killed(&self) -> bool {
        self.otp.uds_killed_now()
    }

    /// Cuts the power at the `after`-th flash or OTP operation from now (0: the next).
    pub fn schedule_power_cut(&self, after: u64, kind: CutKind, seed: u64) {
        self.rail.schedule_cut(PowerCut {
            at: self.rail.operations() + after,
            kind,
            seed,
        });
    }

    /// The device's power rail, to cut its power from outside (a fleet's fault plan).
    pub fn power_rail(&self) -> PowerRail {
        self.rail.clone()
    }

    /// Whether the power is on (a scheduled cut has not happened).
    pub fn is_powered(&self) -> bool {
        self.rail.is_powered()
    }

    /// Flash writes and erases and OTP burns so far.
    pub fn operations(&self) -> u64 {
        self.rail.operations()
    }

    /// Restores power; the device boots.
    pub fn power_on(&mut self) -> Result<(), DeviceError> {
        self.rail.power_on();
        self.reboot()
    }

    /// Makes every health check fail (or pass again), whatever the firmware.
    pub fn set_unhealthy(&mut self, unhealthy: bool) {
        self.force_unhealthy = unhealthy;
    }

    /// The running firmware's description, read from its slot.
    pub fn firmware(&mut self) -> Option<SimFirmware> {
        let running = self.running?;
        let mut start = [0u8; DESCRIPTION_MAX];
        let at = self.layout.image_address(running.slot);
        embedded_storage::nor_flash::ReadNorFlash::read(&mut self.flash, at, &mut start).ok()?;
        SimFirmware::parse(&start)
    }

    /// The security-version floor burned into OTP.
    pub fn floor(&self) -> u32 {
        self.otp.floor_now()
    }

    /// The simulated flash, for measurements such as [`Flash::resident_bytes`] and, over
    /// a fleet, [`Flash::distinct_resident_bytes`].
    pub fn flash(&self) -> &Flash {
        &self.flash
    }
}

impl Device for SimDevice {
    type Flash = Flash;
    type Rot = SimOtp;

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn trust_anchors(&self) -> &[PublicKey] {
        &self.anchors
    }

    /// In memory, as the OTP and flash are: a simulated device keeps its keys for its life.
    fn add_trust_anchor(&mut self, key: PublicKey) -> Result<(), DeviceError> {
        if !self.anchors.contains(&key) {
            self.anchors.push(key);
        }
        Ok(())
    }

    fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    fn boot_parts(&mut self) -> BootParts<'_, Flash, SimOtp> {
        BootParts {
            flash: &mut self.flash,
            rot: &mut self.otp,
            layout: self.layout,
            scratch: &mut self.scratch,
        }
    }

    fn running(&self) -> Option<Running> {
        self.running
    }

    /// The pending key, made once and kept (as a device keeps it in its key store) until
    /// it is committed, so a rotation retried after a lost answer uses the same key.
    fn new_identity_key(
        &mut self,
        algorithm: rota_keys::Algorithm,
    ) -> Result<Box<dyn rota_keys::Sign>, DeviceError> {
        let pending = match self.pending_key.take() {
            Some(key) if rota_keys::Sign::algorithm(&key) == algorithm => key,
            _ => rota_keys::SoftwareKey::generate(algorithm)
                .map_err(|e| DeviceError::Rotation(e.to_string()))?,
        };
        self.pending_key = Some(pending.clone());
        Ok(Box::new(pending))
    }

    /// The old key is dropped (a `SoftwareKey` zeroizes on drop), the pending one cleared.
    fn commit_identity(
        &mut self,
        key: Box<dyn rota_keys::Sign>,
        _certificate: &rota_protocol::DeviceCertificate,
    ) -> Result<(), DeviceError> {
        self.identity.key = key;
        self.pending_key = None;
        Ok(())
    }

    /// In the order that lets a cut anywhere be finished by repeating: the UDS killed in
    /// OTP, the key dropped (a `SoftwareKey` zeroizes on drop; its public half kept to
    /// name it), then the state directory — last, as it holds the order being carried out.
    fn zeroize(&mut self) -> Result<(), DeviceError> {
        self.boot_parts()
            .updater()?
            .kill_uds()
            .map_err(|e| DeviceError::Zeroize(format!("cannot kill the UDS: {e}")))?;
        let public = self.identity.key.public_key();
        self.identity.key = Box::new(super::ErasedKey(public));
        self.pending_key = None;
        crate::state::erase(&self.state_dir).map_err(|e| {
            DeviceError::Zeroize(format!("cannot erase {}: {e}", self.state_dir.display()))
        })
    }

    fn handoff(&self) -> Option<&Handoff> {
        self.handoff.as_ref()
    }

    fn boots(&self) -> u64 {
        self.boots
    }

    fn reboot(&mut self) -> Result<(), DeviceError> {
        self.running = None;
        self.handoff = None;
        self.boots += 1;
        // A reset: the OTP's UDS is readable again, once, by the bootloader.
        self.otp.reset();
        // What the last run left mid-sector (an image's end, the journal) joins the
        // fleet's shared sectors, when there is a pool.
        self.flash.share_sectors();
        let bootloader = self.bootloader;
        let booted = self.boot_parts().boot(Some(&bootloader))?;
        (self.running, self.handoff) = match booted {
            Some(b) => (Some(b.running), b.handoff),
            None => (None, None),
        };
        Ok(())
    }

    fn health_check(&mut self) -> Result<(), Unhealthy> {
        if self.force_unhealthy {
            return Err(Unhealthy(
                "the self-test failed (forced by the simulation)".into(),
            ));
        }
        let firmware = self
            .firmware()
            .ok_or_else(|| Unhealthy("the running image is not simulated rota firmware".into()))?;
        if firmware.fails_on(&self.identity.device_id) {
            return Err(Unhealthy(format!(
                "the self-test of firmware {} failed on this device",
                firmware.label
            )));
        }
        Ok(())
    }
}
