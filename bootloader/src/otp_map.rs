//! A root of trust in plain one-time-programmable cells, with a fixed, documented map:
//! what the QEMU board emulates in a host file, and what `rota flash-image` writes for a
//! factory to burn on parts whose OTP is a plain array of bits.
//!
//! ```text
//! offset  size  field                 (unprogrammed bits read 0; programming sets them)
//!      0     4  magic "ROTP"
//!      4     1  map version: 1 (no UDS), 2 or 3
//!      5     3  reserved, zero
//!      8    16  vendor id (UUID)
//!     24    16  class id (UUID)
//!     40   128  key hashes: 4 slots × SHA-256 (versions 1 and 2: an all-zero slot is
//!               unprovisioned, any other is a trusted key; version 3: see byte 209)
//!    168     1  revocation bits: bit i revokes key slot i
//!    169     8  floor counter: 64 bits, bit n (byte n / 8, bit n % 8) means floor ≥ n + 1
//!    177    32  versions 2 and 3: the Unique Device Secret (TCG DICE); all zero: none.
//!               Read once per reset, then hidden until the next (`OtpCells::hide_until_reset`)
//!    209     1  version 3: key valid bits: bit i says slot i's hash is complete. Burned
//!               after the hash, so a hash torn by a power cut is never a trusted key
//!    210     1  version 3: trust-anchor command counter: 8 bits, bit n means command
//!               n + 1 was applied (`crate::anchor`)
//!    211     1  version 3: bit 0: the UDS is killed (section 7 of the lifecycle design)
//! ```
//!
//! Versioning: a reader accepts versions 1, 2 and 3; a version 1 map ends at byte 177
//! and holds no UDS, a version 2 map at byte 209. [`provision`] writes version 3 (an
//! all-zero UDS when the part has none). Versions 1 and 2 keep working as they did, but
//! take no new keys (a torn hash burn would be a trusted key there: they have no valid
//! bits), no trust-anchor commands and no UDS kill ([`OtpError::NeedsVersion3`]).
//!
//! In the field each change sets bits of one field, in an order that makes every prefix
//! of it safe:
//! - a revocation bit; or the floor bit `v - 1` when the floor rises to `v` (the floor is
//!   the highest set bit plus one, so a raise never depends on earlier bits being intact);
//! - a new key ([`RootOfTrust::add_key`]): the hash bytes of a spare slot, read back, then
//!   the slot's valid bit; the trust-anchor counter bit `n - 1` after command `n` (the
//!   same thermometer code as the floor). The counter has `2 × KEY_SLOTS` bits: a slot
//!   is added at most once and revoked at most once, and a command that changes nothing
//!   spends no bit, so it can never run out before the slots do;
//! - the UDS kill bit: from then on [`OtpRot::take_uds`] returns `Ok(None)`.
//!
//! The UDS is for the first code to run after a reset alone: [`OtpRot::take_uds`] reads
//! it, hides its cells until the next reset and checks that the hide took, so the image
//! the bootloader starts can no longer read it. Cells that cannot hide never give a UDS
//! out ([`OtpError::CannotHide`]).

use crate::dice::{CDI_LEN, Secret};
use crate::rot::{KeyHash, RootOfTrust, Uuid};
use zeroize::Zeroize;

/// Bytes in the map (version 3; versions 1 and 2 are the first [`V1_LEN`], [`V2_LEN`]).
pub const OTP_LEN: usize = 212;
/// Bytes in a version 1 map.
pub const V1_LEN: usize = 177;
/// Bytes in a version 2 map.
pub const V2_LEN: usize = 209;
/// Key slots in the map.
pub const KEY_SLOTS: usize = 4;
/// Bits in the floor counter: the highest floor the map can hold.
pub const FLOOR_BITS: u32 = 64;
/// Bits in the trust-anchor command counter (version 3): two commands per key slot.
pub const ANCHOR_BITS: u32 = 2 * KEY_SLOTS as u32;
/// Where the UDS lives (versions 2 and 3), and its length.
pub const UDS_AT: usize = 177;
pub const UDS_LEN: usize = CDI_LEN;

const MAGIC: [u8; 4] = *b"ROTP";
/// A map without a UDS.
const VERSION_1: u8 = 1;
/// A map with a UDS.
const VERSION_2: u8 = 2;
/// A map with key valid bits, the trust-anchor counter and the UDS kill bit.
const VERSION_3: u8 = 3;
const VENDOR_AT: usize = 8;
const CLASS_AT: usize = 24;
const KEYS_AT: usize = 40;
const REVOKED_AT: usize = 168;
const FLOOR_AT: usize = 169;
const VALID_AT: usize = 209;
const ANCHOR_AT: usize = 210;
const UDS_KILL_AT: usize = 211;

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
    /// The counter (the floor's, or the trust-anchor commands') has no bit for this value.
    BudgetExhausted,
    /// The UDS was read since the last reset and stays hidden until the next.
    UdsHidden,
    /// These cells cannot hide the UDS after it is read, so it is not read at all.
    CannotHide,
    /// Versions 1 and 2 of the map take no new keys, no trust-anchor commands and no UDS
    /// kill: they have no bits for them.
    NeedsVersion3,
    /// After burning a new key's hash, the slot reads back other bits (a slot some
    /// earlier burn left holding bits outside this hash): its valid bit is not burned.
    KeyReadBack,
}

/// Writes a freshly provisioned map, version 3: what a factory burns. Every given key's
/// slot has its valid bit; without a `uds` the UDS cells stay zero (no UDS).
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
    map[4] = VERSION_3;
    map[VENDOR_AT..VENDOR_AT + 16].copy_from_slice(vendor_id);
    map[CLASS_AT..CLASS_AT + 16].copy_from_slice(class_id);
    for (slot, key) in keys.iter().enumerate() {
        if let Some(hash) = key {
            map[KEYS_AT + slot * 32..KEYS_AT + (slot + 1) * 32].copy_from_slice(hash);
            map[VALID_AT] |= 1 << slot;
        }
    }
    if let Some(uds) = uds {
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
    /// Opens the map, checking that it is provisioned (version 1, 2 or 3).
    pub fn open(mut cells: C) -> Result<Self, OtpError<C::Error>> {
        let mut head = [0u8; 8];
        cells.read(0, &mut head).map_err(OtpError::Cells)?;
        let version = head[4];
        if head[..4] != MAGIC || !matches!(version, VERSION_1 | VERSION_2 | VERSION_3) {
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

    /// The version 3 fields exist, or [`OtpError::NeedsVersion3`].
    fn v3(&self) -> Result<(), OtpError<C::Error>> {
        match self.version {
            VERSION_3 => Ok(()),
            _ => Err(OtpError::NeedsVersion3),
        }
    }

    fn program(&mut self, offset: usize, mask: u8) -> Result<(), OtpError<C::Error>> {
        self.cells.program(offset, mask).map_err(OtpError::Cells)
    }
}

/// The value of a thermometer counter: its highest set bit, plus one.
fn thermometer(bits: &[u8]) -> u32 {
    bits.iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i as u32 * 8 + 8 - bits[i].leading_zeros())
}

impl<C: OtpCells> RootOfTrust for OtpRot<C> {
    type Error = OtpError<C::Error>;

    fn key_slots(&self) -> usize {
        KEY_SLOTS
    }

    /// Version 3: the hash when the slot's valid bit is burned. Versions 1 and 2: any
    /// hash that is not all zero.
    fn key_hash(&mut self, slot: usize) -> Result<Option<KeyHash>, Self::Error> {
        let hash = self.key_cells(slot)?;
        let valid = match self.version {
            VERSION_3 => self.byte(VALID_AT)? & (1 << slot) != 0,
            _ => hash != [0; 32],
        };
        Ok(valid.then_some(hash))
    }

    fn key_cells(&mut self, slot: usize) -> Result<KeyHash, Self::Error> {
        if slot >= KEY_SLOTS {
            return Err(OtpError::NoSuchSlot);
        }
        let mut hash = [0u8; 32];
        self.cells
            .read(KEYS_AT + slot * 32, &mut hash)
            .map_err(OtpError::Cells)?;
        Ok(hash)
    }

    fn add_key(&mut self, slot: usize, hash: &KeyHash) -> Result<(), Self::Error> {
        self.v3()?;
        let cells = self.key_cells(slot)?;
        for (i, (&want, &have)) in hash.iter().zip(&cells).enumerate() {
            if want & !have != 0 {
                self.program(KEYS_AT + slot * 32 + i, want & !have)?;
            }
        }
        if self.key_cells(slot)? != *hash {
            return Err(OtpError::KeyReadBack);
        }
        self.program(VALID_AT, 1 << slot)
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
        Ok(thermometer(&bits))
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

    fn anchor_counter(&mut self) -> Result<u32, Self::Error> {
        if self.v3().is_err() {
            return Ok(0);
        }
        Ok(thermometer(&[self.byte(ANCHOR_AT)?]))
    }

    /// Versions 1 and 2: 0, no trust-anchor command is ever applied.
    fn anchor_budget(&self) -> u32 {
        match self.version {
            VERSION_3 => ANCHOR_BITS,
            _ => 0,
        }
    }

    fn advance_anchor_counter(&mut self, to: u32) -> Result<(), Self::Error> {
        self.v3()?;
        if to <= self.anchor_counter()? {
            return Ok(());
        }
        if to > ANCHOR_BITS {
            return Err(OtpError::BudgetExhausted);
        }
        self.program(ANCHOR_AT, 1 << (to - 1))
    }

    /// Version 1 holds no UDS: nothing to kill. Version 2 has no kill bit.
    fn kill_uds(&mut self) -> Result<(), Self::Error> {
        match self.version {
            VERSION_1 => Ok(()),
            VERSION_2 => Err(OtpError::NeedsVersion3),
            _ => self.program(UDS_KILL_AT, 1),
        }
    }

    fn vendor_id(&mut self) -> Result<Uuid, Self::Error> {
        self.uuid(VENDOR_AT)
    }

    fn class_id(&mut self) -> Result<Uuid, Self::Error> {
        self.uuid(CLASS_AT)
    }

    /// Version 1 maps hold no UDS, nor do maps whose UDS is all zero, nor version 3 maps
    /// whose kill bit is burned (their UDS cells are still hidden, every boot, so that
    /// nothing after the bootloader reads them). Otherwise the first call after a reset
    /// reads it, hides its cells until the next reset and checks that they are hidden;
    /// later calls get [`OtpError::UdsHidden`].
    fn take_uds(&mut self) -> Result<Option<Secret<CDI_LEN>>, Self::Error> {
        if self.version < VERSION_2 {
            return Ok(None);
        }
        if self.cells.is_hidden(UDS_AT, UDS_LEN) {
            return Err(OtpError::UdsHidden);
        }
        if self.version >= VERSION_3 && self.byte(UDS_KILL_AT)? & 1 != 0 {
            self.cells
                .hide_until_reset(UDS_AT, UDS_LEN)
                .map_err(OtpError::Cells)?;
            return Ok(None);
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
        let ones: u32 = map[REVOKED_AT..]
            .iter()
            .map(|b| b.count_ones())
            .sum::<u32>()
            - map[VALID_AT].count_ones();
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

    /// `map` as an older factory wrote it: version 1 (no UDS) or 2, its later bytes zero.
    fn legacy(mut map: [u8; OTP_LEN], version: u8) -> [u8; OTP_LEN] {
        map[4] = version;
        let end = if version == 1 { V1_LEN } else { V2_LEN };
        map[end..].fill(0);
        map
    }

    #[test]
    fn the_uds_is_read_once_then_hidden_from_everyone_until_reset() {
        let map = with_uds([5; 32]);
        assert_eq!((map[4], &map[UDS_AT..V2_LEN]), (3, &[5; 32][..]));
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
        let map = legacy(with_uds([5; 32]), 1);
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
        map[4] = 4;
        assert!(matches!(
            OtpRot::open(&mut map),
            Err(OtpError::NotProvisioned)
        ));
    }

    #[test]
    fn version_2_maps_still_open_trust_every_non_zero_hash_and_take_no_new_keys() {
        let mut map = legacy(with_uds([5; 32]), 2);
        map[KEYS_AT + 32] = 1; // Slot 1: a v2 hash, trusted without a valid bit.
        let mut cells = RamOtp::new(map);
        let mut rot = OtpRot::open(&mut cells).unwrap();
        assert_eq!(rot.key_hash(0), Ok(Some([7; 32])));
        assert!(rot.key_hash(1).unwrap().is_some());
        assert_eq!(rot.key_hash(2), Ok(None));
        assert_eq!(rot.take_uds().unwrap().unwrap().expose(), &[5; 32]);
        assert_eq!(rot.anchor_budget(), 0);
        assert_eq!(rot.anchor_counter(), Ok(0));
        assert_eq!(rot.free_key_slots(), Ok(0));
        assert_eq!(rot.add_key(2, &[3; 32]), Err(OtpError::NeedsVersion3));
        assert_eq!(rot.advance_anchor_counter(1), Err(OtpError::NeedsVersion3));
        assert_eq!(rot.kill_uds(), Err(OtpError::NeedsVersion3));
        assert_eq!(rot.key_hash(2), Ok(None), "nothing burned");
    }

    #[test]
    fn a_version_3_key_is_trusted_only_once_its_valid_bit_is_burned() {
        let mut map = provision(&[Some([7; 32]), None, None], &[1; 16], &[2; 16], None).unwrap();
        assert_eq!((map[4], map[VALID_AT]), (3, 0b1));
        let mut rot = OtpRot::open(&mut map).unwrap();
        assert_eq!(rot.free_key_slots(), Ok(3));
        rot.add_key(2, &[0x5a; 32]).unwrap();
        assert_eq!(rot.key_hash(2), Ok(Some([0x5a; 32])));
        assert_eq!(rot.free_key_slots(), Ok(2));
        // Repeating it burns nothing more; another hash over it is refused before its
        // valid bit (the slot is already valid here: the caller refuses that earlier).
        let before = map;
        OtpRot::open(&mut map)
            .unwrap()
            .add_key(2, &[0x5a; 32])
            .unwrap();
        assert_eq!(map, before);
        // A complete hash without its valid bit is no key.
        map[KEYS_AT + 32..KEYS_AT + 64].copy_from_slice(&[0x11; 32]);
        let mut rot = OtpRot::open(&mut map).unwrap();
        assert_eq!(rot.key_hash(1), Ok(None));
        assert_eq!(rot.key_cells(1), Ok([0x11; 32]));
        assert_eq!(
            rot.free_key_slots(),
            Ok(1),
            "a slot with bits burned is not free"
        );
        assert_eq!(rot.add_key(1, &[0x22; 32]), Err(OtpError::KeyReadBack));
        assert_eq!(
            rot.key_hash(1),
            Ok(None),
            "never valid with bits it was not given"
        );
    }

    #[test]
    fn the_anchor_counter_counts_one_bit_per_command_within_its_budget() {
        let mut map = with_uds([5; 32]);
        let mut rot = OtpRot::open(&mut map).unwrap();
        assert_eq!((rot.anchor_counter(), rot.anchor_budget()), (Ok(0), 8));
        rot.advance_anchor_counter(1).unwrap();
        rot.advance_anchor_counter(2).unwrap();
        rot.advance_anchor_counter(1).unwrap();
        assert_eq!(rot.anchor_counter(), Ok(2));
        rot.advance_anchor_counter(8).unwrap();
        assert_eq!(
            rot.advance_anchor_counter(9),
            Err(OtpError::BudgetExhausted)
        );
        assert_eq!(rot.anchor_counter(), Ok(8));
        assert_eq!(map[ANCHOR_AT], 0b1000_0011);
    }

    #[test]
    fn a_killed_uds_is_never_given_out_again_and_stays_hidden() {
        let mut cells = RamOtp::new(with_uds([5; 32]));
        OtpRot::open(&mut cells).unwrap().kill_uds().unwrap();
        for _ in 0..2 {
            cells.reset();
            let mut boot = OtpRot::open(&mut cells).unwrap();
            assert!(boot.take_uds().unwrap().is_none());
            let mut byte = [0u8];
            assert_eq!(cells.read(UDS_AT, &mut byte), Err(HiddenUntilReset));
        }
        let mut v1 = legacy(with_uds([5; 32]), 1);
        assert_eq!(
            OtpRot::open(&mut v1).unwrap().kill_uds(),
            Ok(()),
            "no UDS to kill"
        );
    }

    /// Cells whose power fails at the `at`-th program: before it, after it, or torn
    /// (`Some(bits)`: the bits of the mask that are set).
    struct CutCells {
        map: [u8; OTP_LEN],
        programs: usize,
        at: usize,
        torn: Option<u8>,
        after: bool,
    }

    #[derive(Debug)]
    struct PowerLoss;

    impl OtpCells for CutCells {
        type Error = PowerLoss;
        fn read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), PowerLoss> {
            if self.programs > self.at {
                return Err(PowerLoss);
            }
            buf.copy_from_slice(&self.map[offset..offset + buf.len()]);
            Ok(())
        }
        fn program(&mut self, offset: usize, mask: u8) -> Result<(), PowerLoss> {
            if self.programs > self.at {
                return Err(PowerLoss);
            }
            let this = self.programs;
            self.programs += 1;
            if this < self.at {
                self.map[offset] |= mask;
                return Ok(());
            }
            self.map[offset] |= match (self.after, self.torn) {
                (true, _) => mask,
                (false, Some(bits)) => mask & bits,
                (false, None) => 0,
            };
            Err(PowerLoss)
        }
    }

    /// A new key cut at every program (before, after, torn both ways), then added again:
    /// between the two, the slot holds no key or the whole one; after, the whole one.
    #[test]
    fn a_key_burn_cut_at_any_program_is_no_key_or_the_whole_key_and_completes() {
        let hash: KeyHash = core::array::from_fn(|i| (i as u8).wrapping_mul(73) | 1);
        let fresh = provision(&[Some([7; 32]), None], &[1; 16], &[2; 16], None).unwrap();
        let mut whole = fresh;
        OtpRot::open(&mut whole).unwrap().add_key(1, &hash).unwrap();
        let programs = 33;
        for at in 0..programs {
            for (after, torn) in [
                (false, None),
                (true, None),
                (false, Some(0x55)),
                (false, Some(0xaa)),
            ] {
                let mut cells = CutCells {
                    map: fresh,
                    programs: 0,
                    at,
                    torn,
                    after,
                };
                assert!(OtpRot::open(&mut cells).unwrap().add_key(1, &hash).is_err());
                let mut map = cells.map;
                let mut rot = OtpRot::open(&mut map).unwrap();
                let key = rot.key_hash(1).unwrap();
                assert!(key.is_none() || key == Some(hash), "cut at {at}: {key:?}");
                if at < programs - 1 {
                    assert_eq!(key, None, "cut at {at}, before the valid bit");
                }
                rot.add_key(1, &hash).unwrap();
                assert_eq!(map, whole, "cut at {at}, then completed");
            }
        }
    }
}
