//! A simulated rota device (NOR flash and OTP on one power rail, any geometry) and
//! signed releases for it: what the bootloader tests and the power-cut sweep share.
#![allow(dead_code)]

use std::marker::PhantomData;

use embedded_storage::nor_flash::NorFlash;
use rota_boot::factory::Provisioning;
use rota_boot::header::SlotHeader;
use rota_boot::sim::{PowerRail, SimFlash, SimOtp};
use rota_boot::{
    BootDecision, BootState, EnvelopeAuth, Error, Journal, Layout, Region, Slot, SuitDecoder,
    Updater,
};
use rota_manifest::PublicKey;
use rota_manifest::builder::ImageManifest;
use rota_manifest::signer::{Sign, SoftwareKey};
use sha2::{Digest, Sha256};

pub const VENDOR: [u8; 16] = *b"rota-test-vendor";
pub const CLASS: [u8; 16] = *b"rota-test-class1";
/// Bits in the floor counter of every simulated device.
pub const FLOOR_BITS: u32 = 32;
/// Key slots provisioned: signer 0 and signer 1. Signer 9 is never trusted.
pub const TRUSTED_SIGNERS: [u8; 2] = [0, 1];
pub const UNTRUSTED_SIGNER: u8 = 9;
/// Image bytes per `Updater::write` call: not a multiple of any write size, so the
/// updater's word buffering is always exercised.
pub const CHUNK: usize = 1000;

pub type SimError<const E: usize, const W: usize> = Error<
    <SimFlash<E, W> as embedded_storage::nor_flash::ErrorType>::Error,
    rota_boot::sim::SimOtpError,
>;

/// Signer `n`: a fixed Ed25519 key.
pub fn signer(n: u8) -> SoftwareKey {
    SoftwareKey::from_ed25519_seed([n.wrapping_mul(37).wrapping_add(1); 32])
}

pub fn public_key(n: u8) -> [u8; 32] {
    match signer(n).public_key() {
        PublicKey::Ed25519(key) => key,
        other => panic!("not an Ed25519 key: {other:?}"),
    }
}

/// Signer `n`'s key id: the SHA-256 of its public key, as key slots hold it.
pub fn key_id(n: u8) -> [u8; 32] {
    PublicKey::Ed25519(public_key(n)).key_id()
}

/// A signed release: the key that goes into the slot header, the envelope, the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub key: [u8; 32],
    pub envelope: Vec<u8>,
    pub image: Vec<u8>,
    pub security_version: u64,
}

/// A release of `size` bytes signed by signer `signer_index`, for the test device.
pub fn release(signer_index: u8, sequence: u64, security_version: u64, size: usize) -> Release {
    release_with(signer_index, sequence, security_version, size, |_| {})
}

/// Like [`release`], with the manifest adjusted by `edit` before signing.
pub fn release_with(
    signer_index: u8,
    sequence: u64,
    security_version: u64,
    size: usize,
    edit: impl FnOnce(&mut ImageManifest),
) -> Release {
    let image: Vec<u8> = (0..size)
        .map(|i| (i as u64 * 131 + sequence * 7 + (i as u64 >> 8)) as u8)
        .collect();
    let mut manifest = ImageManifest {
        vendor_id: VENDOR,
        class_id: CLASS,
        image_digest: Sha256::digest(&image).into(),
        image_size: size as u64,
        sequence_number: sequence,
        security_version,
        ..ImageManifest::default()
    };
    edit(&mut manifest);
    let signer = signer(signer_index);
    let envelope = manifest
        .build_envelope(&[&signer])
        .expect("test envelopes sign");
    Release {
        key: public_key(signer_index),
        envelope,
        image,
        security_version,
    }
}

/// A simulated device of erase size `E` and write size `W`, whose bootloader and updater
/// authenticate envelopes with `A`.
pub struct Device<const E: usize, const W: usize, A = SuitDecoder> {
    pub rail: PowerRail,
    pub flash: SimFlash<E, W>,
    pub otp: SimOtp,
    pub layout: Layout,
    pub scratch: Vec<u8>,
    auth: PhantomData<A>,
}

/// Observable state: what the journal says and what the OTP holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub state: BootState,
    pub floor: u32,
    pub revoked: Vec<bool>,
}

impl<const E: usize, const W: usize, A: EnvelopeAuth> Device<E, W, A> {
    /// A factory-fresh device: `journal_sectors` journal sectors, two slots of
    /// `slot_sectors` sectors, a 1 KiB header area, and `factory` programmed in slot A.
    pub fn new(erased: u8, journal_sectors: u32, slot_sectors: u32, factory: &Release) -> Self {
        let keys = TRUSTED_SIGNERS.map(Some);
        Self::with_key_slots(erased, journal_sectors, slot_sectors, factory, &keys)
    }

    /// Like [`Self::new`], with one key slot per entry of `keys`: `Some(n)` holds signer
    /// `n`'s key, `None` is a spare slot.
    pub fn with_key_slots(
        erased: u8,
        journal_sectors: u32,
        slot_sectors: u32,
        factory: &Release,
        keys: &[Option<u8>],
    ) -> Self {
        let e = E as u32;
        let layout = Layout {
            journal: Region::new(0, journal_sectors * e),
            slots: [
                Region::new(journal_sectors * e, slot_sectors * e),
                Region::new((journal_sectors + slot_sectors) * e, slot_sectors * e),
            ],
            header_size: 1024,
            erased,
            max_trial_boots: 3,
        };
        let rail = PowerRail::new();
        let sectors = (journal_sectors + 2 * slot_sectors) as usize;
        let mut flash = SimFlash::on_rail(rail.clone(), sectors, erased);
        program_slot(&mut flash, &layout, Slot::A, factory);
        let otp = SimOtp::provision(
            rail.clone(),
            &Provisioning {
                keys: keys.iter().map(|key| key.map(key_id)).collect(),
                vendor_id: VENDOR,
                class_id: CLASS,
                floor_bits: FLOOR_BITS,
                uds: Some([0x5d; 32]),
            },
        );
        Self {
            rail,
            flash,
            otp,
            layout,
            scratch: vec![0; 1024],
            auth: PhantomData,
        }
    }

    /// An independent copy on a rail of its own.
    pub fn fork(&self) -> Self {
        let rail = PowerRail::new();
        Self {
            flash: self.flash.fork(rail.clone()),
            otp: self.otp.fork(rail.clone()),
            rail,
            layout: self.layout,
            scratch: vec![0; self.scratch.len()],
            auth: PhantomData,
        }
    }

    /// Runs the bootloader once.
    pub fn boot(&mut self) -> Result<BootDecision, SimError<E, W>> {
        // A boot follows a reset.
        self.otp.reset();
        rota_boot::Bootloader::<_, _, A>::new(
            &mut self.flash,
            &mut self.otp,
            self.layout,
            &mut self.scratch,
        )?
        .decide()
    }

    /// Runs the bootloader once and, when it boots an image, its DICE layer: the hand-off
    /// the image would receive (`bootloader`: the bootloader's own measurement).
    pub fn boot_attested(
        &mut self,
        bootloader: [u8; 32],
    ) -> Result<(BootDecision, Option<rota_boot::dice::Handoff>), SimError<E, W>> {
        self.otp.reset();
        let mut boot = rota_boot::Bootloader::<_, _, A>::new(
            &mut self.flash,
            &mut self.otp,
            self.layout,
            &mut self.scratch,
        )?;
        let decision = boot.decide()?;
        let handoff = match &decision {
            BootDecision::Boot { image, .. } => {
                boot.attest(image, bootloader, rota_boot::dice::Mode::Normal)?
            }
            BootDecision::Recovery(_) => None,
        };
        Ok((decision, handoff))
    }

    /// The updater, as the running firmware opens it.
    pub fn updater(
        &mut self,
    ) -> Result<Updater<'_, &mut SimFlash<E, W>, &mut SimOtp, A>, SimError<E, W>> {
        Updater::new(
            &mut self.flash,
            &mut self.otp,
            self.layout,
            &mut self.scratch,
        )
    }

    /// Stages `release` and writes its whole image (resuming if the slot holds part of
    /// it already), without marking it pending.
    pub fn download(&mut self, release: &Release) -> Result<(), SimError<E, W>> {
        let mut updater = self.updater()?;
        let from = updater.stage(&release.key, &release.envelope)? as usize;
        for (i, chunk) in release.image[from..].chunks(CHUNK).enumerate() {
            updater.write((from + i * CHUNK) as u32, chunk)?;
        }
        Ok(())
    }

    /// Downloads `release` and marks it pending.
    pub fn install(&mut self, release: &Release) -> Result<(), SimError<E, W>> {
        self.download(release)?;
        self.updater()?.mark_pending().map(|_| ())
    }

    /// The journal state and OTP contents (power must be on).
    pub fn observe(&mut self) -> Observed {
        let state = Journal::open(&mut self.flash, &self.layout)
            .expect("journal reads")
            .state();
        Observed {
            state,
            floor: self.otp.floor_now(),
            revoked: self.otp.revoked_now().to_vec(),
        }
    }

    /// Whether `slot` holds exactly `release` (header and image), read raw.
    pub fn holds(&self, slot: Slot, release: &Release) -> bool {
        let region = self.layout.slot(slot);
        let read = self.layout.header_size as usize + release.image.len();
        let mut mem = vec![0; read.min(region.size as usize)];
        self.flash.peek(region.offset, &mut mem);
        let mut header = Vec::new();
        header.extend_from_slice(b"ROTA");
        header.extend_from_slice(&(release.envelope.len() as u32).to_le_bytes());
        header.extend_from_slice(&[0; 24]);
        header.extend_from_slice(&release.key);
        header.extend_from_slice(&release.envelope);
        let image_at = self.layout.header_size as usize;
        mem[..header.len()] == header[..]
            && mem[image_at..image_at + release.image.len()] == release.image[..]
    }

    /// Marks `slot` pending in the journal directly, as a compromised application could.
    pub fn force_pending(&mut self) {
        let mut journal = Journal::open(&mut self.flash, &self.layout).unwrap();
        let state = BootState {
            pending: true,
            trial_boots: 0,
            ..journal.state()
        };
        journal.commit(&mut self.flash, state).unwrap();
    }
}

/// Programs `release` into `slot` as a factory (or an attacker with flash access)
/// would: erase the slot, write the header and the image, no checks.
pub fn program_slot<const E: usize, const W: usize>(
    flash: &mut SimFlash<E, W>,
    layout: &Layout,
    slot: Slot,
    release: &Release,
) {
    program_raw(
        flash,
        layout,
        slot,
        &release.key,
        &release.envelope,
        &release.image,
    );
}

/// Programs arbitrary header fields and image bytes into `slot`.
pub fn program_raw<const E: usize, const W: usize>(
    flash: &mut SimFlash<E, W>,
    layout: &Layout,
    slot: Slot,
    key: &[u8; 32],
    envelope: &[u8],
    image: &[u8],
) {
    let region = layout.slot(slot);
    flash.erase(region.offset, region.end() as u32).unwrap();
    SlotHeader {
        key: *key,
        envelope,
    }
    .write(flash, layout, slot)
    .unwrap();
    let mut padded = image.to_vec();
    padded.resize(image.len().next_multiple_of(W), layout.erased);
    if !padded.is_empty() {
        flash.write(layout.image_address(slot), &padded).unwrap();
    }
}

/// The slot and trial flag of a boot decision, or `None` for recovery.
pub fn booted(decision: &BootDecision) -> Option<(Slot, bool)> {
    match decision {
        BootDecision::Boot { image, trial } => Some((image.slot, *trial)),
        BootDecision::Recovery(_) => None,
    }
}
