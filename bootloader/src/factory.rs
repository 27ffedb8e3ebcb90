//! Factory provisioning: what a production line writes on a device before its first boot,
//! once for every way rota makes one: `rota flash-image` (a board's whole flash, in a
//! [`RamFlash`], and its OTP map), `rota-agent provision` (a Linux device's flash file and
//! OTP file) and simulated devices (rota-agent's fleets, on `rota_boot::sim`).
//!
//! A factory-fresh device holds:
//!
//! | where | what | written by |
//! |---|---|---|
//! | root of trust | every trusted firmware key's hash in key-slot order, the vendor and class ids the first image's manifest names, no key revoked, floor 0, and the device's random UDS where the part has one | [`Provisioning`]; as OTP cells, [`Provisioning::otp_map`] ([`crate::otp_map`]) |
//! | bootloader region (boards) | the bootloader, padded to the write size | [`program_bootloader`] |
//! | journal | nothing: a blank journal is the factory state (slot A confirmed); the first boot commits the image's security version to the floor | — |
//! | slot A | the header (the signer's key, the envelope), then the first image | [`program_first_image`] |
//! | slot B | nothing | — |
//!
//! The first image's vendor, class and signer come from its envelope, authenticated
//! against the trust anchors ([`claims`]), so the root of trust binds the device to the
//! image it ships with. None of this is on the boot path: the feature `factory` (alloc,
//! and rota-manifest's `std` to authenticate envelopes as the host tools do) keeps it out
//! of the bootloader.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash, check_erase, check_read,
    check_write,
};
use rota_manifest::{Envelope, HostVerifier, Policy, PublicKey};

use crate::header::SlotHeader;
use crate::layout::{Layout, Region, Slot};
use crate::otp_map::{self, OTP_LEN};
use crate::rot::{KeyHash, Uuid};

/// Why a device cannot be provisioned as asked. `E` is the flash's error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FactoryError<E = core::convert::Infallible> {
    /// The first image's envelope is not a SUIT envelope signed by a trust anchor.
    NotSignedByAnchor(rota_manifest::Error),
    /// Its manifest cannot be read.
    Manifest(rota_manifest::Error),
    /// Its manifest names no 16-byte id of this kind ("vendor-id", "class-id").
    NoId(&'static str),
    /// The anchor that signed it is not Ed25519: the slot header carries an Ed25519 key.
    SignerNotEd25519,
    /// More trusted keys than the OTP map has key slots.
    TooManyKeys { given: usize },
    /// The OTP map's floor counter has [`otp_map::FLOOR_BITS`] bits, no other number.
    FloorBits { given: u32 },
    /// The first image is larger than slot A's image area.
    ImageTooLarge { size: usize, capacity: u32 },
    /// The envelope and the fixed header fields do not fit slot A's header area.
    EnvelopeTooLarge { size: usize, header_size: u32 },
    /// The bootloader is larger than its region.
    BootloaderTooLarge { size: usize, region: u32 },
    /// The flash failed.
    Flash(E),
}

impl<E: fmt::Debug> fmt::Display for FactoryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSignedByAnchor(e) => {
                write!(
                    f,
                    "the factory envelope is not signed by a trust anchor: {e}"
                )
            }
            Self::Manifest(e) => write!(f, "cannot read the factory manifest: {e}"),
            Self::NoId(what) => write!(f, "the factory manifest names no 16-byte {what}"),
            Self::SignerNotEd25519 => {
                f.write_str("the factory envelope must be signed with an Ed25519 key")
            }
            Self::TooManyKeys { given } => write!(
                f,
                "the OTP map has {} key slots; {given} trust anchors given",
                otp_map::KEY_SLOTS
            ),
            Self::FloorBits { given } => write!(
                f,
                "the OTP map's floor counter has {} bits, not {given}",
                otp_map::FLOOR_BITS
            ),
            Self::ImageTooLarge { size, capacity } => write!(
                f,
                "the factory image ({size} bytes) does not fit slot A ({capacity} bytes)"
            ),
            Self::EnvelopeTooLarge { size, header_size } => write!(
                f,
                "the factory envelope ({size} bytes) does not fit the slot header area ({header_size} bytes)"
            ),
            Self::BootloaderTooLarge { size, region } => write!(
                f,
                "the bootloader ({size} bytes) does not fit its region ({region} bytes)"
            ),
            Self::Flash(e) => write!(f, "the flash failed: {e:?}"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for FactoryError<E> {}

/// What the first image's envelope says about the devices it is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claims {
    pub vendor_id: Uuid,
    pub class_id: Uuid,
    /// The trust anchor that signed it: the key slot A's header carries.
    pub signer: [u8; 32],
    /// Its index in the anchors, which is its key slot in the root of trust.
    pub signer_slot: usize,
}

/// Authenticates the first image's `envelope` against `anchors` (draft-ietf-suit-manifest
/// §8.3) and reads its vendor and class (§8.4.8.3, §8.4.8.4).
pub fn claims(envelope: &[u8], anchors: &[PublicKey]) -> Result<Claims, FactoryError> {
    let policy = Policy::default();
    let authenticated = Envelope::decode(envelope, &policy)
        .and_then(|e| e.authenticate(anchors, &HostVerifier, &policy))
        .map_err(FactoryError::NotSignedByAnchor)?;
    let claims = authenticated
        .claims(0, None)
        .map_err(FactoryError::Manifest)?;
    let id = |claim: Option<&[u8]>, what| {
        claim
            .and_then(|id| id.try_into().ok())
            .ok_or(FactoryError::NoId(what))
    };
    let vendor_id = id(claims.vendor_id, "vendor-id")?;
    let class_id = id(claims.class_id, "class-id")?;
    let Some(PublicKey::Ed25519(signer)) = anchors.get(authenticated.signer) else {
        return Err(FactoryError::SignerNotEd25519);
    };
    Ok(Claims {
        vendor_id,
        class_id,
        signer: *signer,
        signer_slot: authenticated.signer,
    })
}

/// What a factory writes into a device's root of trust.
#[derive(Clone, PartialEq, Eq)]
pub struct Provisioning {
    /// Trusted key hashes, one per slot; `None` leaves a slot blank.
    pub keys: Vec<Option<KeyHash>>,
    pub vendor_id: Uuid,
    pub class_id: Uuid,
    /// Bits in the floor counter: the highest floor the device can ever reach.
    pub floor_bits: u32,
    /// The Unique Device Secret (TCG DICE), random per device; `None`: a part without one.
    pub uds: Option<[u8; crate::dice::CDI_LEN]>,
}

impl fmt::Debug for Provisioning {
    /// Everything but the UDS, which is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provisioning")
            .field("keys", &self.keys)
            .field("vendor_id", &self.vendor_id)
            .field("class_id", &self.class_id)
            .field("floor_bits", &self.floor_bits)
            .field("uds", &self.uds.map(|_| "…"))
            .finish()
    }
}

impl Provisioning {
    /// A root of trust that holds `anchors` in key-slot order, for the vendor and class
    /// of `claims`, with a floor counter of `floor_bits`.
    pub fn new(anchors: &[PublicKey], claims: &Claims, floor_bits: u32) -> Self {
        Self {
            keys: anchors.iter().map(|k| Some(k.key_id())).collect(),
            vendor_id: claims.vendor_id,
            class_id: claims.class_id,
            floor_bits,
            uds: None,
        }
    }

    /// The OTP map to burn ([`crate::otp_map`]): version 3, with the UDS when there is
    /// one (all zero otherwise), every given key's slot valid, the others spare.
    pub fn otp_map(&self) -> Result<[u8; OTP_LEN], FactoryError> {
        if self.floor_bits != otp_map::FLOOR_BITS {
            return Err(FactoryError::FloorBits {
                given: self.floor_bits,
            });
        }
        otp_map::provision(
            &self.keys,
            &self.vendor_id,
            &self.class_id,
            self.uds.as_ref(),
        )
        .ok_or(FactoryError::TooManyKeys {
            given: self.keys.len(),
        })
    }
}

/// Programs the first image into slot A: the slot is erased, then the header (`signer`
/// and `envelope`), then the image, its last write word padded with the erased value.
/// The journal is left as it is: blank, it says slot A is confirmed.
pub fn program_first_image<F: NorFlash>(
    flash: &mut F,
    layout: &Layout,
    signer: &[u8; 32],
    envelope: &[u8],
    image: &[u8],
) -> Result<(), FactoryError<F::Error>> {
    let slot = Slot::A;
    let capacity = layout.image_capacity(slot);
    if image.len() as u64 > u64::from(capacity) {
        return Err(FactoryError::ImageTooLarge {
            size: image.len(),
            capacity,
        });
    }
    let header = SlotHeader {
        key: *signer,
        envelope,
    };
    if !header.fits(layout) {
        return Err(FactoryError::EnvelopeTooLarge {
            size: envelope.len(),
            header_size: layout.header_size,
        });
    }
    let region = layout.slot(slot);
    flash
        .erase(region.offset, region.end() as u32)
        .map_err(FactoryError::Flash)?;
    header
        .write(flash, layout, slot)
        .map_err(FactoryError::Flash)?;
    program_padded(flash, layout.image_address(slot), image, layout.erased)
}

/// Programs the bootloader at the start of `region` (erased), padded to the write size.
pub fn program_bootloader<F: NorFlash>(
    flash: &mut F,
    region: Region,
    bootloader: &[u8],
    erased: u8,
) -> Result<(), FactoryError<F::Error>> {
    if bootloader.len() as u64 > u64::from(region.size) {
        return Err(FactoryError::BootloaderTooLarge {
            size: bootloader.len(),
            region: region.size,
        });
    }
    program_padded(flash, region.offset, bootloader, erased)
}

/// Writes `bytes` at `at` a sector at a time, the last write word padded with `erased`.
fn program_padded<F: NorFlash>(
    flash: &mut F,
    at: u32,
    bytes: &[u8],
    erased: u8,
) -> Result<(), FactoryError<F::Error>> {
    let word = F::WRITE_SIZE;
    let whole = bytes.len() / word * word;
    for (i, chunk) in bytes[..whole].chunks(F::ERASE_SIZE).enumerate() {
        flash
            .write(at + (i * F::ERASE_SIZE) as u32, chunk)
            .map_err(FactoryError::Flash)?;
    }
    let tail = &bytes[whole..];
    if !tail.is_empty() {
        // Layout::check bounds the write size to 32 bytes.
        let mut last = [erased; 32];
        last[..tail.len()].copy_from_slice(tail);
        flash
            .write(at + whole as u32, &last[..word])
            .map_err(FactoryError::Flash)?;
    }
    Ok(())
}

/// Why a [`RamFlash`] operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RamFlashError {
    /// Misaligned or out of bounds.
    Kind(NorFlashErrorKind),
    /// A write to a byte that is not erased, at this offset: NOR cannot do it.
    NotErased { offset: u32 },
}

impl NorFlashError for RamFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::Kind(kind) => *kind,
            Self::NotErased { .. } => NorFlashErrorKind::Other,
        }
    }
}

impl From<NorFlashErrorKind> for RamFlashError {
    fn from(kind: NorFlashErrorKind) -> Self {
        Self::Kind(kind)
    }
}

/// A whole flash image in memory, under NOR's programming rules (erase by sectors, write
/// aligned words onto erased bytes only), so an image assembled here is one the part
/// accepts. No power cuts: that is `rota_boot::sim::SimFlash`, for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamFlash<const ERASE_SIZE: usize, const WRITE_SIZE: usize> {
    bytes: Vec<u8>,
    erased: u8,
}

impl<const E: usize, const W: usize> RamFlash<E, W> {
    /// `sectors` erased sectors.
    pub fn new(sectors: usize, erased: u8) -> Self {
        Self {
            bytes: vec![erased; sectors * E],
            erased,
        }
    }

    /// Every byte of the flash.
    pub fn contents(&self) -> &[u8] {
        &self.bytes
    }
}

impl<const E: usize, const W: usize> ErrorType for RamFlash<E, W> {
    type Error = RamFlashError;
}

impl<const E: usize, const W: usize> ReadNorFlash for RamFlash<E, W> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), RamFlashError> {
        check_read(self, offset, bytes.len())?;
        let at = offset as usize;
        bytes.copy_from_slice(&self.bytes[at..at + bytes.len()]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.bytes.len()
    }
}

impl<const E: usize, const W: usize> NorFlash for RamFlash<E, W> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), RamFlashError> {
        check_erase(self, from, to)?;
        self.bytes[from as usize..to as usize].fill(self.erased);
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), RamFlashError> {
        check_write(self, offset, bytes.len())?;
        let at = offset as usize;
        let target = &mut self.bytes[at..at + bytes.len()];
        if let Some(i) = target.iter().position(|&b| b != self.erased) {
            return Err(RamFlashError::NotErased {
                offset: offset + i as u32,
            });
        }
        target.copy_from_slice(bytes);
        Ok(())
    }
}
