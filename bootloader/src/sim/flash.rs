//! A simulated NOR flash that enforces the rules real parts impose and loses power on
//! command.
//!
//! Rules (as on ECC-protected MCU flash, the strictest common case):
//! - a write must be aligned to `WRITE_SIZE` words and may only target words that are
//!   fully erased: no second programming of a word, even with compatible bits;
//! - an erase must cover whole `ERASE_SIZE` sectors;
//! - the erased value is `0xFF` or `0x00`, chosen per instance (programming moves bits
//!   away from it, erasing moves them back).
//!
//! Power cuts: every write or erase call is one *operation* on the flash's
//! [`PowerRail`], numbered from 0 along with the operations of every other part on the
//! rail. A [`PowerCut`] at operation N either stops before it ([`CutKind::Before`]),
//! completes it ([`CutKind::After`]), or leaves it torn ([`CutKind::Torn`]): an arbitrary
//! subset of the words it covers changed, each changed word holding any mix of old and
//! new bits that the physics allows. After the cut every call fails with
//! [`SimFlashError::PowerLoss`] until [`PowerRail::power_on`], as a reboot would.

use alloc::vec;
use alloc::vec::Vec;

use super::power::{CutKind, PowerCut, PowerLoss, PowerRail, SplitMix};
use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash, check_erase, check_read,
    check_write,
};

/// Why a simulated flash operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimFlashError {
    NotAligned,
    OutOfBounds,
    /// A write to a word that is not erased, at this byte offset.
    NotErased {
        offset: u32,
    },
    /// The power is off: a cut happened and [`SimFlash::power_on`] has not been called.
    PowerLoss,
}

impl From<PowerLoss> for SimFlashError {
    fn from(_: PowerLoss) -> Self {
        Self::PowerLoss
    }
}

impl NorFlashError for SimFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::NotAligned => NorFlashErrorKind::NotAligned,
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            Self::NotErased { .. } | Self::PowerLoss => NorFlashErrorKind::Other,
        }
    }
}

impl From<NorFlashErrorKind> for SimFlashError {
    fn from(kind: NorFlashErrorKind) -> Self {
        match kind {
            NorFlashErrorKind::NotAligned => Self::NotAligned,
            _ => Self::OutOfBounds,
        }
    }
}

/// NOR flash of `ERASE_SIZE`-byte sectors programmed in `WRITE_SIZE`-byte words.
#[derive(Debug)]
pub struct SimFlash<const ERASE_SIZE: usize, const WRITE_SIZE: usize> {
    mem: Vec<u8>,
    erased: u8,
    erase_counts: Vec<u32>,
    rail: PowerRail,
}

impl<const ERASE_SIZE: usize, const WRITE_SIZE: usize> SimFlash<ERASE_SIZE, WRITE_SIZE> {
    /// A fully erased flash of `sectors` sectors whose erased bytes read `erased`
    /// (`0xFF` or `0x00`), on a power rail of its own.
    pub fn new(sectors: usize, erased: u8) -> Self {
        Self::on_rail(PowerRail::new(), sectors, erased)
    }

    /// Like [`Self::new`], powered by `rail` (shared with other parts of a device).
    pub fn on_rail(rail: PowerRail, sectors: usize, erased: u8) -> Self {
        assert!(
            erased == 0xFF || erased == 0x00,
            "NOR flash erases to 0xFF or 0x00"
        );
        assert!(
            ERASE_SIZE % WRITE_SIZE == 0,
            "a sector is a whole number of words"
        );
        Self {
            mem: vec![erased; sectors * ERASE_SIZE],
            erased,
            erase_counts: vec![0; sectors],
            rail,
        }
    }

    /// An independent copy of this flash (contents and wear) on `rail`: for exploring
    /// what a cut at each point of a step does, from one starting state.
    pub fn fork(&self, rail: PowerRail) -> Self {
        Self {
            mem: self.mem.clone(),
            erased: self.erased,
            erase_counts: self.erase_counts.clone(),
            rail,
        }
    }

    /// The power rail this flash is on.
    pub fn rail(&self) -> &PowerRail {
        &self.rail
    }

    /// Schedules a power cut on this flash's rail (replacing any earlier one).
    pub fn schedule_cut(&self, cut: PowerCut) {
        self.rail.schedule_cut(cut);
    }

    /// Restores power, as a reboot does; the flash keeps whatever the cut left.
    pub fn power_on(&self) {
        self.rail.power_on();
    }

    /// Whether the power is on.
    pub fn is_powered(&self) -> bool {
        self.rail.is_powered()
    }

    /// How many operations the rail has counted (the index the next one gets).
    pub fn operations(&self) -> u64 {
        self.rail.operations()
    }

    /// How many times each sector has been erased.
    pub fn erase_counts(&self) -> &[u32] {
        &self.erase_counts
    }

    /// The raw contents, for assertions.
    pub fn contents(&self) -> &[u8] {
        &self.mem
    }

    /// Overwrites the raw contents from offset 0, bypassing the programming rules and the
    /// power rail: for tests that model bit rot or an attacker with a flash programmer.
    pub fn overwrite(&mut self, contents: &[u8]) {
        self.mem[..contents.len()].copy_from_slice(contents);
    }

    /// The erased value.
    pub fn erased_value(&self) -> u8 {
        self.erased
    }

    /// Moves `old` toward `new` for a torn operation: only bits that the operation flips
    /// may change, each independently.
    fn tear(old: u8, new: u8, noise: u8) -> u8 {
        let flipping = old ^ new;
        old ^ (flipping & noise)
    }

    /// Applies `new` to the words of `range` (word-aligned), all of them or, for a torn
    /// cut, a random subset of them and of their bits.
    fn apply(&mut self, start: usize, new: &[u8], cut: Option<PowerCut>) {
        let mut rng = cut.map(SplitMix::new);
        for (w, word) in new.chunks(WRITE_SIZE).enumerate() {
            let at = start + w * WRITE_SIZE;
            let target = &mut self.mem[at..at + WRITE_SIZE];
            match (&mut rng, cut.map(|c| c.kind)) {
                (Some(rng), Some(CutKind::Torn)) => {
                    // Each word is untouched, complete, or partly changed.
                    match rng.next() % 3 {
                        0 => {}
                        1 => target.copy_from_slice(word),
                        _ => {
                            for (t, &n) in target.iter_mut().zip(word) {
                                *t = Self::tear(*t, n, rng.next() as u8);
                            }
                        }
                    }
                }
                _ => target.copy_from_slice(word),
            }
        }
    }

    fn sector_range(from: u32, to: u32) -> core::ops::Range<usize> {
        from as usize / ERASE_SIZE..to as usize / ERASE_SIZE
    }
}

impl<const E: usize, const W: usize> ErrorType for SimFlash<E, W> {
    type Error = SimFlashError;
}

impl<const E: usize, const W: usize> ReadNorFlash for SimFlash<E, W> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimFlashError> {
        self.rail.check()?;
        check_read(self, offset, bytes.len())?;
        let at = offset as usize;
        bytes.copy_from_slice(&self.mem[at..at + bytes.len()]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl<const E: usize, const W: usize> NorFlash for SimFlash<E, W> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimFlashError> {
        self.rail.check()?;
        check_erase(self, from, to)?;
        let cut = self.rail.begin_operation()?;
        let erased = vec![self.erased; (to - from) as usize];
        self.apply(from as usize, &erased, cut);
        // A sector counts as erased once an erase of it has begun: that is the wear.
        for sector in Self::sector_range(from, to) {
            self.erase_counts[sector] += 1;
        }
        if cut.is_some() {
            return Err(SimFlashError::PowerLoss);
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimFlashError> {
        self.rail.check()?;
        check_write(self, offset, bytes.len())?;
        let start = offset as usize;
        // Checked before the operation is counted: a rule violation is a bug in the
        // caller, not something power loss can hide.
        for (w, word) in self.mem[start..start + bytes.len()].chunks(W).enumerate() {
            if word.iter().any(|&b| b != self.erased) {
                return Err(SimFlashError::NotErased {
                    offset: (start + w * W) as u32,
                });
            }
        }
        let cut = self.rail.begin_operation()?;
        self.apply(start, bytes, cut);
        if cut.is_some() {
            return Err(SimFlashError::PowerLoss);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::power::CutKind;

    type Small = SimFlash<256, 4>;

    fn cut(at: u64, kind: CutKind, seed: u64) -> PowerCut {
        PowerCut { at, kind, seed }
    }

    #[test]
    fn write_only_to_erased_words() {
        for erased in [0xFF, 0x00] {
            let mut f = Small::new(2, erased);
            f.write(0, &[1, 2, 3, 4]).unwrap();
            // Even the same bytes again: a programmed word must be erased first.
            assert_eq!(
                f.write(0, &[1, 2, 3, 4]),
                Err(SimFlashError::NotErased { offset: 0 })
            );
            f.erase(0, 256).unwrap();
            f.write(0, &[5, 6, 7, 8]).unwrap();
            let mut buf = [0; 4];
            f.read(0, &mut buf).unwrap();
            assert_eq!(buf, [5, 6, 7, 8]);
        }
    }

    #[test]
    fn rejects_misaligned_and_out_of_bounds_operations() {
        let mut f = Small::new(2, 0xFF);
        assert_eq!(f.write(2, &[0; 4]), Err(SimFlashError::NotAligned));
        assert_eq!(f.write(0, &[0; 3]), Err(SimFlashError::NotAligned));
        assert_eq!(f.erase(0, 100), Err(SimFlashError::NotAligned));
        assert_eq!(f.erase(0, 768), Err(SimFlashError::OutOfBounds));
        assert_eq!(f.write(512, &[0; 4]), Err(SimFlashError::OutOfBounds));
        // Refused calls are not operations.
        assert_eq!(f.operations(), 0);
    }

    #[test]
    fn counts_erases_per_sector() {
        let mut f = Small::new(4, 0xFF);
        f.erase(0, 512).unwrap();
        f.erase(256, 512).unwrap();
        assert_eq!(f.erase_counts(), [1, 2, 0, 0]);
    }

    #[test]
    fn cut_before_leaves_flash_unchanged_and_power_off() {
        let mut f = Small::new(1, 0xFF);
        f.schedule_cut(cut(0, CutKind::Before, 1));
        assert_eq!(f.write(0, &[0; 4]), Err(SimFlashError::PowerLoss));
        assert!(f.contents().iter().all(|&b| b == 0xFF));
        let mut buf = [0; 4];
        assert_eq!(f.read(0, &mut buf), Err(SimFlashError::PowerLoss));
        f.power_on();
        f.write(0, &[0; 4]).unwrap();
    }

    #[test]
    fn cut_after_completes_the_operation_then_nothing_else() {
        let mut f = Small::new(1, 0xFF);
        f.schedule_cut(cut(1, CutKind::After, 1));
        f.write(0, &[1; 4]).unwrap();
        assert_eq!(f.write(4, &[2; 4]), Err(SimFlashError::PowerLoss));
        assert_eq!(f.write(8, &[3; 4]), Err(SimFlashError::PowerLoss));
        f.power_on();
        assert_eq!(
            &f.contents()[..12],
            &[1, 1, 1, 1, 2, 2, 2, 2, 0xFF, 0xFF, 0xFF, 0xFF]
        );
    }

    /// Over many seeds a torn write changes some words and not others, and every byte
    /// holds only bits between its old and new value.
    #[test]
    fn torn_write_changes_an_arbitrary_subset_physically() {
        for erased in [0xFF, 0x00] {
            let new: Vec<u8> = (0..64).map(|i| (i * 37 + 11) as u8).collect();
            let (mut some_untouched, mut some_complete, mut some_partial) = (false, false, false);
            for seed in 0..200 {
                let mut f = Small::new(1, erased);
                f.schedule_cut(cut(0, CutKind::Torn, seed));
                assert_eq!(f.write(0, &new), Err(SimFlashError::PowerLoss));
                for (word, target) in f.contents()[..64].chunks(4).zip(new.chunks(4)) {
                    for (&b, &n) in word.iter().zip(target) {
                        let flipping = erased ^ n;
                        assert_eq!(
                            (b ^ erased) & !flipping,
                            0,
                            "a bit moved that the write does not move"
                        );
                    }
                    some_untouched |=
                        word.iter().all(|&b| b == erased) && target.iter().any(|&n| n != erased);
                    some_complete |= word == target;
                    some_partial |= word != target && word.iter().any(|&b| b != erased);
                }
            }
            assert!(
                some_untouched && some_complete && some_partial,
                "erased {erased:#x}"
            );
        }
    }

    #[test]
    fn torn_erase_leaves_a_sector_neither_old_nor_erased() {
        let mut f = Small::new(1, 0xFF);
        f.write(0, &[0u8; 256]).unwrap();
        f.schedule_cut(cut(1, CutKind::Torn, 7));
        assert_eq!(f.erase(0, 256), Err(SimFlashError::PowerLoss));
        f.power_on();
        let sector = f.contents();
        assert!(sector.contains(&0xFF));
        assert!(sector.iter().any(|&b| b != 0xFF));
        // A torn sector is not writable where it is not fully erased.
        let dirty = sector
            .chunks(4)
            .position(|w| w.iter().any(|&b| b != 0xFF))
            .unwrap();
        assert!(matches!(
            f.write(dirty as u32 * 4, &[0; 4]),
            Err(SimFlashError::NotErased { .. })
        ));
        assert_eq!(f.erase_counts(), [1]);
    }

    #[test]
    fn torn_outcomes_reproduce_from_their_seed() {
        let run = |seed| {
            let mut f = Small::new(1, 0xFF);
            f.schedule_cut(cut(0, CutKind::Torn, seed));
            let _ = f.write(0, &[0x5A; 256]);
            f.contents().to_vec()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn geometry_is_a_parameter() {
        let mut big = SimFlash::<{ 128 * 1024 }, 16>::new(2, 0xFF);
        assert_eq!(big.capacity(), 256 * 1024);
        assert_eq!(big.write(8, &[0; 16]), Err(SimFlashError::NotAligned));
        big.write(16, &[0; 16]).unwrap();
        let mut small = SimFlash::<2048, 8>::new(4, 0x00);
        small.write(8, &[1; 8]).unwrap();
        assert_eq!(small.contents()[..8], [0; 8]);
    }
}
