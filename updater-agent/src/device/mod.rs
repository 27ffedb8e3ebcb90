//! What the agent needs from the device it runs on, and the two devices it knows: a
//! Linux one (gateways; flash as a file or an MTD partition) and, with the feature `sim`,
//! a simulated one (tests, demos, fleets). Both are provisioned by `rota_boot::factory`.
//!
//! The boot state is never the agent's own: it lives in flash, in rota-boot's journal,
//! and every decision about it goes through rota-boot's [`Updater`] and
//! [`Bootloader`]. The agent only adds what a network client needs on top: who the
//! device is, which firmware keys it trusts, where its files live, and whether the
//! running firmware is healthy.

pub mod file_flash;
pub mod linux;
#[cfg(feature = "sim")]
pub mod sim;

use std::path::Path;

use embedded_storage::nor_flash::NorFlash;
use rota_boot::dice::{Handoff, Mode};
use rota_boot::{BootDecision, Bootloader, KeyHash, Layout, Region, RootOfTrust, Slot, Updater};
use rota_manifest::PublicKey;

use crate::error::{DeviceError, Unhealthy};

/// Who the device is: the identity provisioned at manufacturing.
pub struct Identity {
    pub device_id: String,
    /// The device's identity key (Ed25519 or P-256, in a file or held by a secure
    /// element: any signer of rota's key seam); every request to the server is signed
    /// with it.
    pub key: Box<dyn rota_keys::Sign>,
}

/// What is left of an identity key after [`Device::zeroize`]: its public half, which
/// names it, and no way to sign.
pub struct ErasedKey(pub rota_keys::PublicKey);

impl rota_keys::Sign for ErasedKey {
    fn public_key(&self) -> rota_keys::PublicKey {
        self.0
    }

    fn sign(&self, _: &[u8]) -> Result<Vec<u8>, rota_keys::SignError> {
        Err(rota_keys::SignError::KeyUnavailable(
            "the identity key was erased (the device is decommissioned)".into(),
        ))
    }
}

/// The image that booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Running {
    pub slot: Slot,
    /// The SUIT sequence number: the version the server knows the device by.
    pub version: u64,
    pub security_version: u64,
    /// It was started on trial (a pending image). Whether the trial is still open is
    /// the journal's to say: [`rota_boot::Updater::status`].
    pub trial: bool,
    /// The image's SHA-256, verified against its envelope at boot.
    pub digest: [u8; 32],
    /// The hash of the key that signed it, as the root of trust holds it.
    pub signer: KeyHash,
}

/// What a boot produced: the running image and, where the bootloader ran its DICE layer,
/// what it handed off (the Alias key and certificate).
pub struct Booted {
    pub running: Running,
    pub handoff: Option<Handoff>,
}

/// The flash, the root of trust, the layout and the scratch buffer rota-boot opens on.
pub struct BootParts<'a, F, R> {
    pub flash: &'a mut F,
    pub rot: &'a mut R,
    pub layout: Layout,
    pub scratch: &'a mut [u8],
}

impl<'a, F: NorFlash, R: RootOfTrust> BootParts<'a, F, R> {
    /// rota-boot's application-side API over these parts.
    pub fn updater(self) -> Result<Updater<'a, &'a mut F, &'a mut R>, DeviceError> {
        Updater::new(self.flash, self.rot, self.layout, self.scratch)
            .map_err(|e| DeviceError::Boot(e.to_string()))
    }

    /// Runs rota-boot's boot decision, as the bootloader does at every reset, and, given
    /// the bootloader's own measurement (`dice`), its DICE layer: on a device with a UDS,
    /// the hand-off the booted image receives.
    pub fn boot(self, dice: Option<&[u8; 32]>) -> Result<Option<Booted>, DeviceError> {
        let boot_error = |e: rota_boot::Error<F::Error, R::Error>| DeviceError::Boot(e.to_string());
        let mut bootloader =
            Bootloader::<_, _>::new(self.flash, self.rot, self.layout, self.scratch)
                .map_err(boot_error)?;
        let (image, trial) = match bootloader.decide().map_err(boot_error)? {
            BootDecision::Boot { image, trial } => (image, trial),
            BootDecision::Recovery(_) => return Ok(None),
        };
        let handoff = match dice {
            Some(measurement) => bootloader
                .attest(&image, *measurement, Mode::Normal)
                .map_err(boot_error)?,
            None => None,
        };
        let (_, rot) = bootloader.into_parts();
        let signer = rot
            .key_hash(image.key_slot)
            .map_err(|e| DeviceError::Boot(format!("cannot read the root of trust: {e:?}")))?
            .unwrap_or_default();
        Ok(Some(Booted {
            running: Running {
                slot: image.slot,
                version: image.sequence_number,
                security_version: image.security_version,
                trial,
                digest: image.digest,
                signer,
            },
            handoff,
        }))
    }
}

/// A device the agent can update.
pub trait Device {
    type Flash: NorFlash;
    type Rot: RootOfTrust;

    fn identity(&self) -> &Identity;

    /// The firmware-signing keys whose hashes the root of trust holds: the agent needs
    /// the key itself for the slot header (rota-boot checks it against the hash).
    fn trust_anchors(&self) -> &[PublicKey];

    /// Adds `key` to [`Device::trust_anchors`]: a firmware key that a trust-anchor command
    /// has just added to the root of trust (`crate::anchors`, which checked it against the
    /// hash the root of trust holds). Keeps it across restarts; adding a key already there
    /// changes nothing.
    fn add_trust_anchor(&mut self, key: PublicKey) -> Result<(), DeviceError> {
        let _ = key;
        Err(DeviceError::TrustAnchor(
            "this device cannot add a firmware trust anchor yet".into(),
        ))
    }

    /// Where the agent keeps its files (TUF metadata, its journal of the update).
    fn state_dir(&self) -> &Path;

    fn boot_parts(&mut self) -> BootParts<'_, Self::Flash, Self::Rot>;

    /// What the bootloader started at the last reset; `None` if nothing was bootable.
    fn running(&self) -> Option<Running>;

    /// What the bootloader's DICE layer handed the running image at the last reset; `None`
    /// on a device without a UDS (its evidence is software-measured).
    fn handoff(&self) -> Option<&Handoff> {
        None
    }

    /// Boots since manufacture (the attestation evidence reports it).
    fn boots(&self) -> u64;

    /// A new identity key of `algorithm`, made where the device keeps its identity, not
    /// yet in use: the first step of a key rotation (`crate::rotate`).
    fn new_identity_key(
        &mut self,
        algorithm: rota_keys::Algorithm,
    ) -> Result<Box<dyn rota_keys::Sign>, DeviceError> {
        let _ = algorithm;
        Err(DeviceError::Rotation(
            "this device cannot rotate its identity key yet".into(),
        ))
    }

    /// Makes `key` the device's identity and `certificate` (the device CA's, for `key`)
    /// its certificate, and destroys the old key: the last step of a key rotation.
    fn commit_identity(
        &mut self,
        key: Box<dyn rota_keys::Sign>,
        certificate: &rota_protocol::DeviceCertificate,
    ) -> Result<(), DeviceError> {
        let _ = (key, certificate);
        Err(DeviceError::Rotation(
            "this device cannot rotate its identity key yet".into(),
        ))
    }

    /// Destroys everything that lets this device authenticate or be identified: its
    /// identity key (the file overwritten and removed, or the token object destroyed),
    /// its pending key, the agent's state directory (TUF metadata, journal, certificate)
    /// and, where the part allows, its UDS for good (rota-boot's UDS kill bit). The last
    /// step of a decommission (`docs/design/lifecycle.md`, section 7); repeating it
    /// after a power cut finishes what is left.
    fn zeroize(&mut self) -> Result<(), DeviceError> {
        Err(DeviceError::Zeroize(
            "this device cannot erase its credentials".into(),
        ))
    }

    /// Resets the device: the bootloader decides what runs next.
    fn reboot(&mut self) -> Result<(), DeviceError>;

    /// The running firmware's self-test, after a trial boot: `Err(why)` if it is not fit
    /// to be confirmed.
    fn health_check(&mut self) -> Result<(), Unhealthy>;
}

/// rota's layout for a device: a two-sector journal, then slot A and slot B, each a
/// `header_size` header area plus room for an image of `image_capacity` bytes.
pub fn standard_layout(erase_size: u32, header_size: u32, image_capacity: u32) -> Layout {
    let journal = 2 * erase_size;
    let slot = (header_size + image_capacity).next_multiple_of(erase_size);
    Layout {
        journal: Region::new(0, journal),
        slots: [
            Region::new(journal, slot),
            Region::new(journal + slot, slot),
        ],
        header_size,
        erased: 0xFF,
        max_trial_boots: 3,
    }
}
