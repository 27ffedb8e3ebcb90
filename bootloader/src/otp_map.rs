//! A root of trust in plain one-time-programmable cells, with a fixed, documented map:
//! what the QEMU board emulates in a host file, and what `rota flash-image` writes for a
//! factory to burn on parts whose OTP is a plain array of bits.
//!
//! ```text
//! offset  size  field                 (unprogrammed bits read 0; programming sets them)
//!      0     4  magic "ROTP"
//!      4     1  map version (1)
//!      5     3  reserved, zero
//!      8    16  vendor id (UUID)
//!     24    16  class id (UUID)
//!     40   128  key hashes: 4 slots × SHA-256; an all-zero slot is unprovisioned
//!    168     1  revocation bits: bit i revokes key slot i
//!    169     8  floor counter: 64 bits, bit n (byte n / 8, bit n % 8) means floor ≥ n + 1
//! ```
//!
//! In the field only two fields change, and each change sets one bit: a revocation bit,
//! or the floor bit `v - 1` when the floor rises to `v` (the floor is the highest set bit
//! plus one, so a raise never depends on earlier bits being intact).

use crate::dice::{CDI_LEN, Secret};
use crate::rot::{KeyHash, RootOfTrust, Uuid};

/// Bytes in the map.
pub const OTP_LEN: usize = 177;
/// Key slots in the map.
pub const KEY_SLOTS: usize = 4;
/// Bits in the floor counter: the highest floor the map can hold.
pub const FLOOR_BITS: u32 = 64;

const MAGIC: [u8; 4] = *b"ROTP";
const VERSION: u8 = 1;
const VENDOR_AT: usize = 8;
const CLASS_AT: usize = 24;
const KEYS_AT: usize = 40;
const REVOKED_AT: usize = 168;
const FLOOR_AT: usize = 169;

/// The storage under the map: byte reads, and programming that can only set bits.
pub trait OtpCells {
    type Error: core::fmt::Debug;
    /// Reads `buf.len()` bytes at `offset`.
    fn read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// Sets the bits of `mask` in the byte at `offset` (bits already set stay set).
    fn program(&mut self, offset: usize, mask: u8) -> Result<(), Self::Error>;
}

/// Why the map cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtpError<E> {
    /// The cells failed.
    Cells(E),
    /// The cells do not hold a provisioned map (wrong magic or version).
    NotProvisioned,
    /// No such key slot.
    NoSuchSlot,
    /// The floor counter has no bit for this floor.
    BudgetExhausted,
}

/// Writes a freshly provisioned map: what a factory burns.
pub fn provision(
    keys: &[Option<KeyHash>],
    vendor_id: &Uuid,
    class_id: &Uuid,
) -> Option<[u8; OTP_LEN]> {
    if keys.len() > KEY_SLOTS {
        return None;
    }
    let mut map = [0u8; OTP_LEN];
    map[..4].copy_from_slice(&MAGIC);
    map[4] = VERSION;
    map[VENDOR_AT..VENDOR_AT + 16].copy_from_slice(vendor_id);
    map[CLASS_AT..CLASS_AT + 16].copy_from_slice(class_id);
    for (slot, key) in keys.iter().enumerate() {
        if let Some(hash) = key {
            map[KEYS_AT + slot * 32..KEYS_AT + (slot + 1) * 32].copy_from_slice(hash);
        }
    }
    Some(map)
}

/// A [`RootOfTrust`] over cells holding the map.
pub struct OtpRot<C> {
    cells: C,
}

impl<C: OtpCells> OtpRot<C> {
    /// Opens the map, checking that it is provisioned.
    pub fn open(mut cells: C) -> Result<Self, OtpError<C::Error>> {
        let mut head = [0u8; 8];
        cells.read(0, &mut head).map_err(OtpError::Cells)?;
        if head[..4] != MAGIC || head[4] != VERSION {
            return Err(OtpError::NotProvisioned);
        }
        Ok(Self { cells })
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

    /// Map version 1 holds no UDS (version 2 adds it, with a cell range hidden until
    /// reset: `docs/design/attestation.md`).
    fn take_uds(&mut self) -> Result<Option<Secret<CDI_LEN>>, Self::Error> {
        Ok(None)
    }
}

/// Cells in a byte array: for tests, and for tools that edit a map before it is burned.
impl OtpCells for &mut [u8; OTP_LEN] {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provisioned_map_reads_back() {
        let mut map = provision(&[Some([7; 32]), None, Some([9; 32])], &[1; 16], &[2; 16]).unwrap();
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
        let mut map = provision(&[Some([7; 32])], &[1; 16], &[2; 16]).unwrap();
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
        assert_eq!(provision(&[None; 5], &[0; 16], &[0; 16]), None);
    }
}
