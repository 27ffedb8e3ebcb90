//! A root of trust in plain one-time-programmable cells, with a fixed, documented map:
//! what the QEMU board emulates in a host file, and what `rota flash-image` writes for a
//! factory to burn on parts whose OTP is a plain array of bits.
//!
//! ```text
//! offset  size  field                 (unprogrammed bits read 0; programming sets them)
//!      0     4  magic "ROTP"
//!      4     1  map version: 1 (no UDS) or 2
//!      5     3  reserved, zero
//!      8    16  vendor id (UUID)
//!     24    16  class id (UUID)
//!     40   128  key hashes: 4 slots × SHA-256; an all-zero slot is unprovisioned
//!    168     1  revocation bits: bit i revokes key slot i
//!    169     8  floor counter: 64 bits, bit n (byte n / 8, bit n % 8) means floor ≥ n + 1
//!    177    32  version 2 only: the Unique Device Secret (TCG DICE); all zero: none.
//!               Read once per reset, then hidden until the next (`OtpCells::hide_until_reset`)
//! ```
//!
//! Versioning: a reader accepts versions 1 and 2; version 1 maps end at byte 177 and hold
//! no UDS. A map with a UDS is version 2; one without is written as version 1, so that
//! bootloaders older than version 2 still read it.
//!
//! In the field only two fields change, and each change sets one bit: a revocation bit,
//! or the floor bit `v - 1` when the floor rises to `v` (the floor is the highest set bit
//! plus one, so a raise never depends on earlier bits being intact).
//!
//! The UDS is for the first code to run after a reset alone: [`OtpRot::take_uds`] reads
//! it, hides its cells until the next reset and checks that the hide took, so the image
//! the bootloader starts can no longer read it. Cells that cannot hide never give a UDS
//! out ([`OtpError::CannotHide`]).

use crate::dice::{CDI_LEN, Secret};
use crate::rot::{KeyHash, RootOfTrust, Uuid};
use zeroize::Zeroize;

/// Bytes in the map (version 2; a version 1 map is the first [`V1_LEN`] of them).
pub const OTP_LEN: usize = 209;
/// Bytes in a version 1 map.
pub const V1_LEN: usize = 177;
/// Key slots in the map.
pub const KEY_SLOTS: usize = 4;
/// Bits in the floor counter: the highest floor the map can hold.
pub const FLOOR_BITS: u32 = 64;
/// Where the UDS lives (version 2), and its length.
pub const UDS_AT: usize = 177;
pub const UDS_LEN: usize = CDI_LEN;

const MAGIC: [u8; 4] = *b"ROTP";
/// A map without a UDS.
const VERSION_1: u8 = 1;
/// A map with a UDS.
const VERSION_2: u8 = 2;
const VENDOR_AT: usize = 8;
const CLASS_AT: usize = 24;
const KEYS_AT: usize = 40;
const REVOKED_AT: usize = 168;
const FLOOR_AT: usize = 169;

/// The storage under the map: byte reads, programming that can only set bits, and a
/// range hidden until the next reset.
pub trait OtpCells {
    type Error: core::fmt::Debug;
    /// Reads `buf.len()` bytes at `offset`.
    fn read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// Sets the bits of `mask` in the byte at `offset` (bits already set stay set).
    fn program(&mut self, offset: usize, mask: u8) -> Result<(), Self::Error>;
    /// Hides `len` bytes at `offset` until the next reset: reads that touch them fail
    /// from now on, whoever asks. The default hides nothing, and [`Self::is_hidden`]
    /// then says so: cells that cannot hide are never given a secret to keep.
    fn hide_until_reset(&mut self, offset: usize, len: usize) -> Result<(), Self::Error> {
        let _ = (offset, len);
        Ok(())
    }
    /// Whether any of `len` bytes at `offset` is hidden until the next reset.
    fn is_hidden(&self, offset: usize, len: usize) -> bool {
        let _ = (offset, len);
        false
    }
}

/// Why the map cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtpError<E> {
    /// The cells failed.
    Cells(E),
    /// The cells do not hold a provisioned map (wrong magic or version).
    NotProvisioned,
    /// No such key slot.
    NoSuchSlot,
    /// The floor counter has no bit for this floor.
    BudgetExhausted,
    /// The UDS was read since the last reset and stays hidden until the next.
    UdsHidden,
    /// These cells cannot hide the UDS after it is read, so it is not read at all.
    CannotHide,
}

/// Writes a freshly provisioned map: what a factory burns. With a `uds`, a version 2
/// map; without, version 1 (its last [`UDS_LEN`] bytes zero).
pub fn provision(
    keys: &[Option<KeyHash>],
    vendor_id: &Uuid,
    class_id: &Uuid,
    uds: Option<&[u8; UDS_LEN]>,
) -> Option<[u8; OTP_LEN]> {
    if keys.len() > KEY_SLOTS {
        return None;
    }
    let mut map = [0u8; OTP_LEN];
    map[..4].copy_from_slice(&MAGIC);
    map[4] = VERSION_1;
    map[VENDOR_AT..VENDOR_AT + 16].copy_from_slice(vendor_id);
    map[CLASS_AT..CLASS_AT + 16].copy_from_slice(class_id);
    for (slot, key) in keys.iter().enumerate() {
        if let Some(hash) = key {
            map[KEYS_AT + slot * 32..KEYS_AT + (slot + 1) * 32].copy_from_slice(hash);
        }
    }
    if let Some(uds) = uds {
        map[4] = VERSION_2;
        map[UDS_AT..UDS_AT + UDS_LEN].copy_from_slice(uds);
    }
    Some(map)
}

/// A [`RootOfTrust`] over cells holding the map.
pub struct OtpRot<C> {
    cells: C,
    version: u8,
}

impl<C: OtpCells> OtpRot<C> {
    /// Opens the map, checking that it is provisioned (version 1 or 2).
    pub fn open(mut cells: C) -> Result<Self, OtpError<C::Error>> {
        let mut head = [0u8; 8];
        cells.read(0, &mut head).map_err(OtpError::Cells)?;
        let version = head[4];
        if head[..4] != MAGIC || !matches!(version, VERSION_1 | VERSION_2) {
            return Err(OtpError::NotProvisioned);
        }
        Ok(Self { cells, version })
    }

    /// Gives the cells back.
    pub fn into_cells(self) -> C {
        self.cells
    }

    fn byte(&mut self, offset: usize) -> Result<u8, OtpError<C::Error>> {
        let mut b = [0u8];
        self.cells.read(offset, &mut b).map_err(OtpError::Cells)?;
        Ok(b[0])
    }

    fn uuid(&mut self, offset: usize) -> Result<Uuid, OtpError<C::Error>> {
        let mut id = [0u8; 16];
        self.cells.read(offset, &mut id).map_err(OtpError::Cells)?;
        Ok(id)
    }
}

impl<C: OtpCells> RootOfTrust for OtpRot<C> {
    type Error = OtpError<C::Error>;

    fn key_slots(&self) -> usize {
        KEY_SLOTS
    }

    fn key_hash(&mut self, slot: usize) -> Result<Option<KeyHash>, Self::Error> {
        if slot >= KEY_SLOTS {
            return Err(OtpError::NoSuchSlot);
        }
        let mut hash = [0u8; 32];
        self.cells
            .read(KEYS_AT + slot * 32, &mut hash)
            .map_err(OtpError::Cells)?;
        Ok((hash != [0; 32]).then_some(hash))
    }

    fn is_revoked(&mut self, slot: usize) -> Result<bool, Self::Error> {
        if slot >= KEY_SLOTS {
            return Err(OtpError::NoSuchSlot);
        }
        Ok(self.byte(REVOKED_AT)? & (1 << slot) != 0)
    }

    fn revoke(&mut self, slot: usize) -> Result<(), Self::Error> {
        if slot >= KEY_SLOTS {
            return Err(OtpError::NoSuchSlot);
        }
        self.cells
            .program(REVOKED_AT, 1 << slot)
            .map_err(OtpError::Cells)
    }

    fn floor(&mut self) -> Result<u32, Self::Error> {
        let mut bits = [0u8; 8];
        self.cells
            .read(FLOOR_AT, &mut bits)
            .map_err(OtpError::Cells)?;
        let counter = u64::from_le_bytes(bits);
        Ok(64 - counter.leading_zeros())
    }

    fn floor_budget(&self) -> u32 {
        FLOOR_BITS
    }

    fn raise_floor(&mut self, to: u32) -> Result<(), Self::Error> {
        if to <= self.floor()? {
            return Ok(());
        }
        if to > FLOOR_BITS {
            return Err(OtpError::BudgetExhausted);
        }
        let bit = (to - 1) as usize;
        self.cells
            .program(FLOOR_AT + bit / 8, 1 << (bit % 8))
            .map_err(OtpError::Cells)
    }

    fn vendor_id(&mut self) -> Result<Uuid, Self::Error> {
        self.uuid(VENDOR_AT)
    }

    fn class_id(&mut self) -> Result<Uuid, Self::Error> {
        self.uuid(CLASS_AT)
    }

    /// Version 1 maps hold no UDS, nor do version 2 maps whose UDS is all zero. Otherwise
    /// the first call after a reset reads it, hides its cells until the next reset and
    /// checks that they are hidden; later calls get [`OtpError::UdsHidden`].
    fn take_uds(&mut self) -> Result<Option<Secret<CDI_LEN>>, Self::Error> {
        if self.version < VERSION_2 {
            return Ok(None);
        }
        if self.cells.is_hidden(UDS_AT, UDS_LEN) {
            return Err(OtpError::UdsHidden);
        }
        let mut bytes = [0; UDS_LEN];
        let read = self.cells.read(UDS_AT, &mut bytes);
        // Hidden even when the read failed: nothing reads it after this call.
        let hidden = self.cells.hide_until_reset(UDS_AT, UDS_LEN);
        let uds = Secret::new(bytes);
        bytes.zeroize();
        read.and(hidden).map_err(OtpError::Cells)?;
        if !self.cells.is_hidden(UDS_AT, UDS_LEN) {
            return Err(OtpError::CannotHide);
        }
        Ok((*uds.expose() != [0; UDS_LEN]).then_some(uds))
    }
}

impl<T: OtpCells> OtpCells for &mut T {
    type Error = T::Error;

    fn read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), Self::Error> {
        T::read(self, offset, buf)
    }
    fn program(&mut self, offset: usize, mask: u8) -> Result<(), Self::Error> {
        T::program(self, offset, mask)
    }
    fn hide_until_reset(&mut self, offset: usize, len: usize) -> Result<(), Self::Error> {
        T::hide_until_reset(self, offset, len)
    }
    fn is_hidden(&self, offset: usize, len: usize) -> bool {
        T::is_hidden(self, offset, len)
    }
}

/// Cells in a byte array, which cannot hide: for tools that read or edit a map before it
/// is burned (a UDS is never read from them: [`OtpError::CannotHide`]).
impl OtpCells for [u8; OTP_LEN] {
    type Error = core::convert::Infallible;

    fn read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), Self::Error> {
        buf.copy_from_slice(&self[offset..offset + buf.len()]);
        Ok(())
    }

    fn program(&mut self, offset: usize, mask: u8) -> Result<(), Self::Error> {
        self[offset] |= mask;
        Ok(())
    }
}

/// A map in RAM that hides as a part does: a range hidden until [`RamOtp::reset`].
pub struct RamOtp {
    map: [u8; OTP_LEN],
    /// The hidden range, `start..end`; empty when nothing is hidden.
    hidden: core::ops::Range<usize>,
}

/// A read touched cells hidden until the next reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HiddenUntilReset;

impl RamOtp {
    /// `map` as burned, nothing hidden (the state after a reset).
    pub fn new(map: [u8; OTP_LEN]) -> Self {
        Self { map, hidden: 0..0 }
    }

    /// The part is reset: hidden cells read again.
    pub fn reset(&mut self) {
        self.hidden = 0..0;
    }
}

impl OtpCells for RamOtp {
    type Error = HiddenUntilReset;

    fn read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), HiddenUntilReset> {
        if self.is_hidden(offset, buf.len()) {
            return Err(HiddenUntilReset);
        }
        buf.copy_from_slice(&self.map[offset..offset + buf.len()]);
        Ok(())
    }

    fn program(&mut self, offset: usize, mask: u8) -> Result<(), HiddenUntilReset> {
        self.map[offset] |= mask;
        Ok(())
    }

    /// Hiding more than one range hides everything between them too: never less.
    fn hide_until_reset(&mut self, offset: usize, len: usize) -> Result<(), HiddenUntilReset> {
        self.hidden = if self.hidden.is_empty() {
            offset..offset + len
        } else {
            self.hidden.start.min(offset)..self.hidden.end.max(offset + len)
        };
        Ok(())
    }

    fn is_hidden(&self, offset: usize, len: usize) -> bool {
        offset < self.hidden.end && self.hidden.start < offset + len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provisioned_map_reads_back() {
        let mut map = provision(
            &[Some([7; 32]), None, Some([9; 32])],
            &[1; 16],
            &[2; 16],
            None,
        )
        .unwrap();
        let mut rot = OtpRot::open(&mut map).unwrap();
        assert_eq!(rot.key_hash(0), Ok(Some([7; 32])));
        assert_eq!(rot.key_hash(1), Ok(None));
        assert_eq!(rot.key_hash(2), Ok(Some([9; 32])));
        assert_eq!(rot.key_hash(4), Err(OtpError::NoSuchSlot));
        assert_eq!(rot.vendor_id(), Ok([1; 16]));
        assert_eq!(rot.class_id(), Ok([2; 16]));
        assert_eq!(rot.floor(), Ok(0));
    }

    #[test]
    fn floor_and_revocation_only_move_one_way_each_by_one_bit() {
        let mut map = provision(&[Some([7; 32])], &[1; 16], &[2; 16], None).unwrap();
        {
            let mut rot = OtpRot::open(&mut map).unwrap();
            rot.raise_floor(9).unwrap();
            rot.raise_floor(3).unwrap();
            assert_eq!(rot.floor(), Ok(9));
            rot.raise_floor(64).unwrap();
            assert_eq!(rot.raise_floor(65), Err(OtpError::BudgetExhausted));
            rot.revoke(2).unwrap();
            assert_eq!(rot.is_revoked(2), Ok(true));
            assert_eq!(rot.is_revoked(0), Ok(false));
        }
        let ones: u32 = map.iter().skip(REVOKED_AT).map(|b| b.count_ones()).sum();
        assert_eq!(ones, 3, "one bit per raise, one per revocation");
    }

    #[test]
    fn an_unprovisioned_map_is_refused() {
        let mut blank = [0u8; OTP_LEN];
        assert!(matches!(
            OtpRot::open(&mut blank),
            Err(OtpError::NotProvisioned)
        ));
        assert_eq!(provision(&[None; 5], &[0; 16], &[0; 16], None), None);
    }
    fn with_uds(uds: [u8; 32]) -> [u8; OTP_LEN] {
        provision(&[Some([7; 32])], &[1; 16], &[2; 16], Some(&uds)).unwrap()
    }

    #[test]
    fn the_uds_is_read_once_then_hidden_from_everyone_until_reset() {
        let map = with_uds([5; 32]);
        assert_eq!((map[4], &map[UDS_AT..]), (2, &[5; 32][..]));
        let mut cells = RamOtp::new(map);
        let mut boot = OtpRot::open(&mut cells).unwrap();
        assert_eq!(boot.take_uds().unwrap().unwrap().expose(), &[5; 32]);
        assert_eq!(boot.take_uds().err(), Some(OtpError::UdsHidden));
        // What the bootloader starts opens the same cells: still hidden, whichever way
        // it asks, while the rest of the map reads as before.
        let mut app = OtpRot::open(boot.into_cells()).unwrap();
        assert_eq!(app.take_uds().err(), Some(OtpError::UdsHidden));
        assert_eq!(app.key_hash(0), Ok(Some([7; 32])));
        let cells = app.into_cells();
        let mut byte = [0u8];
        for at in [UDS_AT, UDS_AT + 31] {
            assert_eq!(cells.read(at, &mut byte), Err(HiddenUntilReset));
        }
        let mut across = [0u8; 16];
        assert_eq!(cells.read(UDS_AT - 8, &mut across), Err(HiddenUntilReset));
        // Programming and time do not clear the hide; only a reset does.
        OtpRot::open(&mut *cells).unwrap().raise_floor(3).unwrap();
        assert_eq!(cells.read(UDS_AT, &mut byte), Err(HiddenUntilReset));
        cells.reset();
        let mut next_boot = OtpRot::open(&mut *cells).unwrap();
        assert_eq!(next_boot.take_uds().unwrap().unwrap().expose(), &[5; 32]);
    }

    #[test]
    fn version_1_maps_still_open_and_hold_no_uds() {
        let map = provision(&[Some([7; 32])], &[1; 16], &[2; 16], None).unwrap();
        assert_eq!(map[4], 1);
        assert!(map[V1_LEN..].iter().all(|&b| b == 0));
        let mut cells = RamOtp::new(map);
        let mut rot = OtpRot::open(&mut cells).unwrap();
        assert_eq!(rot.key_hash(0), Ok(Some([7; 32])));
        assert!(rot.take_uds().unwrap().is_none());
        assert!(rot.take_uds().unwrap().is_none());
    }

    #[test]
    fn an_all_zero_uds_is_none() {
        let mut cells = RamOtp::new(with_uds([0; 32]));
        assert!(
            OtpRot::open(&mut cells)
                .unwrap()
                .take_uds()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn cells_that_cannot_hide_never_give_the_uds_out() {
        let mut map = with_uds([5; 32]);
        let mut rot = OtpRot::open(&mut map).unwrap();
        assert_eq!(rot.take_uds().err(), Some(OtpError::CannotHide));
        assert_eq!(
            rot.key_hash(0),
            Ok(Some([7; 32])),
            "the rest of the map reads"
        );
    }

    #[test]
    fn an_unknown_map_version_is_refused() {
        let mut map = with_uds([5; 32]);
        map[4] = 3;
        assert!(matches!(
            OtpRot::open(&mut map),
            Err(OtpError::NotProvisioned)
        ));
    }
}
