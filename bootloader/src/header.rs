//! The slot header: what precedes the image in each slot.
//!
//! On flash, at the start of the slot (little-endian integers):
//!
//! ```text
//! offset  size  field
//!      0     4  magic "ROTA"
//!      4     4  envelope length N
//!      8    24  reserved, zero
//!     32    32  the signer's Ed25519 public key
//!     64     N  the SUIT envelope (COSE_Sign1-authenticated), padded to the write size
//! ```
//!
//! The key is carried because the root of trust holds only key *hashes*; the bootloader
//! trusts it only if its SHA-256 is in a non-revoked key slot. The header is written
//! first when a slot is staged, so an interrupted download can recognise its own
//! envelope and resume (see [`crate::Updater::stage`]). Nothing here is trusted before
//! verification: a torn or forged header simply fails it.

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};

use crate::layout::{Layout, Slot};
use crate::verify::Rejection;

/// "ROTA".
pub const MAGIC: [u8; 4] = *b"ROTA";
/// Bytes before the envelope: a multiple of every supported write size.
pub const FIXED_LEN: usize = 64;
const KEY_AT: usize = 32;
/// Ed25519 public key length.
pub const KEY_LEN: usize = 32;

/// A slot header, as written or as read back into a scratch buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotHeader<'a> {
    pub key: [u8; KEY_LEN],
    pub envelope: &'a [u8],
}

impl<'a> SlotHeader<'a> {
    fn fixed(&self) -> [u8; FIXED_LEN] {
        let mut fixed = [0u8; FIXED_LEN];
        fixed[..4].copy_from_slice(&MAGIC);
        fixed[4..8].copy_from_slice(&(self.envelope.len() as u32).to_le_bytes());
        fixed[KEY_AT..].copy_from_slice(&self.key);
        fixed
    }

    /// Bytes the header takes on flash, padding included.
    pub fn len_on_flash<F: NorFlash>(&self) -> u32 {
        (FIXED_LEN + self.envelope.len()).next_multiple_of(F::WRITE_SIZE) as u32
    }

    /// Whether the header fits `layout`'s header area.
    pub fn fits(&self, layout: &Layout) -> bool {
        FIXED_LEN + self.envelope.len() <= layout.header_size as usize
    }

    /// Reads the header of `slot`, its envelope into `scratch`.
    pub fn read<F: ReadNorFlash>(
        flash: &mut F,
        layout: &Layout,
        slot: Slot,
        scratch: &'a mut [u8],
    ) -> Result<Result<Self, Rejection>, F::Error> {
        let base = layout.slot(slot).offset;
        let mut fixed = [0u8; FIXED_LEN];
        flash.read(base, &mut fixed)?;
        if fixed[..4] != MAGIC {
            return Ok(Err(Rejection::EmptySlot));
        }
        let len = u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]) as usize;
        if fixed[8..KEY_AT].iter().any(|&b| b != 0)
            || len > layout.header_size as usize - FIXED_LEN
            || len > scratch.len()
        {
            return Ok(Err(Rejection::MalformedHeader));
        }
        let envelope = &mut scratch[..len];
        flash.read(base + FIXED_LEN as u32, envelope)?;
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&fixed[KEY_AT..]);
        Ok(Ok(Self { key, envelope }))
    }

    /// Whether `slot` holds exactly this header (envelope bytes included).
    pub fn is_on<F: ReadNorFlash>(
        &self,
        flash: &mut F,
        layout: &Layout,
        slot: Slot,
    ) -> Result<bool, F::Error> {
        let base = layout.slot(slot).offset;
        let mut fixed = [0u8; FIXED_LEN];
        flash.read(base, &mut fixed)?;
        if fixed != self.fixed() {
            return Ok(false);
        }
        let mut chunk = [0u8; 64];
        for (i, expected) in self.envelope.chunks(chunk.len()).enumerate() {
            let got = &mut chunk[..expected.len()];
            flash.read(base + (FIXED_LEN + i * 64) as u32, got)?;
            if got != expected {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes the header into `slot`, whose header words must be erased.
    pub fn write<F: NorFlash>(
        &self,
        flash: &mut F,
        layout: &Layout,
        slot: Slot,
    ) -> Result<(), F::Error> {
        let base = layout.slot(slot).offset;
        flash.write(base, &self.fixed())?;
        let whole = self.envelope.len() / F::WRITE_SIZE * F::WRITE_SIZE;
        let at = base + FIXED_LEN as u32;
        if whole > 0 {
            flash.write(at, &self.envelope[..whole])?;
        }
        let tail = &self.envelope[whole..];
        if !tail.is_empty() {
            let mut word = [layout.erased; 32];
            word[..tail.len()].copy_from_slice(tail);
            flash.write(at + whole as u32, &word[..F::WRITE_SIZE])?;
        }
        Ok(())
    }
}
