//! Where everything lives on the flash, and the geometry rules a layout must meet.
//!
//! ```text
//! | journal (≥ 2 sectors) | slot A: header area | image A … | slot B: header area | image B … |
//! ```
//!
//! Each slot starts with a header area of `header_size` bytes ([`crate::header`]: the
//! signer's public key and the SUIT envelope), then the image at the fixed offset
//! `slot.offset + header_size`, so firmware is linked to run from one slot's image
//! address (on Cortex-M, choose `header_size` so that address suits the vector table's
//! alignment).

use embedded_storage::nor_flash::NorFlash;

use crate::header::FIXED_LEN;

/// One of the two firmware slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    /// The slot that is not this one.
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Self::A => 0,
            Self::B => 1,
        }
    }
}

/// A byte range of the flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub offset: u32,
    pub size: u32,
}

impl Region {
    pub const fn new(offset: u32, size: u32) -> Self {
        Self { offset, size }
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset as u64 + self.size as u64
    }

    fn overlaps(&self, other: &Region) -> bool {
        (self.offset as u64) < other.end() && (other.offset as u64) < self.end()
    }
}

/// The flash layout and the boot policy that goes with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The boot-state journal ([`crate::journal::Journal`]).
    pub journal: Region,
    /// Slot A and slot B.
    pub slots: [Region; 2],
    /// Bytes before the image in each slot.
    pub header_size: u32,
    /// What an erased byte reads as on this flash: `0xFF` or `0x00`.
    pub erased: u8,
    /// How many times a pending image may start before, unconfirmed, it is reverted.
    pub max_trial_boots: u8,
}

/// Why a layout does not fit its flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The flash's write size is not a power of two from 1 to 32 bytes.
    WriteSize,
    /// A region does not start and end on sector boundaries.
    NotSectorAligned,
    /// A region lies beyond the end of the flash.
    OutOfBounds,
    /// Two regions overlap.
    Overlap,
    /// The journal needs two sectors at least, each holding one record at least.
    JournalTooSmall,
    /// The header area is not a multiple of the write size, or too small for the
    /// fixed header fields, or leaves no room for an image.
    HeaderSize,
    /// NOR flash erases to `0xFF` or `0x00`.
    ErasedValue,
    /// At least one trial boot is needed to ever accept an update.
    NoTrialBoots,
    /// The scratch buffer cannot hold the largest envelope the header area admits.
    ScratchTooSmall { needed: usize },
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::WriteSize => f.write_str("the flash write size must be a power of two from 1 to 32 bytes"),
            Self::NotSectorAligned => f.write_str("every region must start and end on an erase-sector boundary"),
            Self::OutOfBounds => f.write_str("a region lies beyond the end of the flash"),
            Self::Overlap => f.write_str("two regions of the layout overlap"),
            Self::JournalTooSmall => f.write_str("the journal needs at least two sectors"),
            Self::HeaderSize => f.write_str(
                "the header area must be a multiple of the write size, hold the fixed header, and leave room for an image",
            ),
            Self::ErasedValue => f.write_str("the erased value must be 0xFF or 0x00"),
            Self::NoTrialBoots => f.write_str("max_trial_boots must be at least 1"),
            Self::ScratchTooSmall { needed } => {
                write!(f, "the scratch buffer must hold at least {needed} bytes")
            }
        }
    }
}

impl Layout {
    /// Checks the layout against flash `F` of `capacity` bytes and a scratch buffer of
    /// `scratch_len` bytes.
    pub fn check<F: NorFlash>(
        &self,
        capacity: usize,
        scratch_len: usize,
    ) -> Result<(), LayoutError> {
        let (erase, write) = (F::ERASE_SIZE as u64, F::WRITE_SIZE as u64);
        if !(1..=32).contains(&write) || !write.is_power_of_two() {
            return Err(LayoutError::WriteSize);
        }
        if self.erased != 0xFF && self.erased != 0x00 {
            return Err(LayoutError::ErasedValue);
        }
        if self.max_trial_boots == 0 {
            return Err(LayoutError::NoTrialBoots);
        }
        let regions = [self.journal, self.slots[0], self.slots[1]];
        if regions
            .iter()
            .any(|r| r.offset as u64 % erase != 0 || r.size as u64 % erase != 0)
        {
            return Err(LayoutError::NotSectorAligned);
        }
        if regions.iter().any(|r| r.end() > capacity as u64) {
            return Err(LayoutError::OutOfBounds);
        }
        for (i, region) in regions.iter().enumerate() {
            if regions[i + 1..].iter().any(|other| region.overlaps(other)) {
                return Err(LayoutError::Overlap);
            }
        }
        let record = crate::journal::record_len(F::WRITE_SIZE) as u64;
        if (self.journal.size as u64) < 2 * erase || record > erase {
            return Err(LayoutError::JournalTooSmall);
        }
        let smallest_slot = self.slots[0].size.min(self.slots[1].size);
        if self.header_size as u64 % write != 0
            || (self.header_size as usize) <= FIXED_LEN
            || self.header_size >= smallest_slot
        {
            return Err(LayoutError::HeaderSize);
        }
        let needed = self.header_size as usize - FIXED_LEN;
        if scratch_len < needed {
            return Err(LayoutError::ScratchTooSmall { needed });
        }
        Ok(())
    }

    /// The region of `slot`.
    pub fn slot(&self, slot: Slot) -> Region {
        self.slots[slot.index()]
    }

    /// The flash address of `slot`'s image: where its firmware is linked to run.
    pub fn image_address(&self, slot: Slot) -> u32 {
        self.slot(slot).offset + self.header_size
    }

    /// The largest image `slot` holds.
    pub fn image_capacity(&self, slot: Slot) -> u32 {
        self.slot(slot).size - self.header_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimFlash;

    type Flash = SimFlash<4096, 4>;

    fn layout() -> Layout {
        Layout {
            journal: Region::new(0, 8192),
            slots: [Region::new(8192, 16384), Region::new(24576, 16384)],
            header_size: 1024,
            erased: 0xFF,
            max_trial_boots: 3,
        }
    }

    #[test]
    fn accepts_a_sound_layout() {
        assert_eq!(layout().check::<Flash>(40960, 1024), Ok(()));
        assert_eq!(layout().image_address(Slot::B), 24576 + 1024);
        assert_eq!(layout().image_capacity(Slot::A), 16384 - 1024);
    }

    #[test]
    fn refuses_each_broken_rule() {
        type Breaks = fn(&mut Layout);
        let cases: [(Breaks, LayoutError); 7] = [
            (|l| l.slots[0].offset = 8000, LayoutError::NotSectorAligned),
            (|l| l.slots[1].size = 32768, LayoutError::OutOfBounds),
            (|l| l.slots[1].offset = 16384, LayoutError::Overlap),
            (|l| l.journal.size = 4096, LayoutError::JournalTooSmall),
            (|l| l.header_size = 1022, LayoutError::HeaderSize),
            (|l| l.erased = 0x0F, LayoutError::ErasedValue),
            (|l| l.max_trial_boots = 0, LayoutError::NoTrialBoots),
        ];
        for (breaks, error) in cases {
            let mut l = layout();
            breaks(&mut l);
            assert_eq!(l.check::<Flash>(40960, 1024), Err(error));
        }
        assert_eq!(
            layout().check::<Flash>(40960, 100),
            Err(LayoutError::ScratchTooSmall {
                needed: 1024 - FIXED_LEN
            })
        );
    }
}
