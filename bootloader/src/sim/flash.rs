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

use alloc::collections::BTreeSet;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::power::{CutKind, PowerCut, PowerLoss, PowerRail, SplitMix};
use super::sectors::{Sector, SectorBytes, SectorPool};
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
///
/// Memory: an erased sector costs nothing but its entry in the sector table; a programmed
/// one holds its bytes, shared copy-on-write with the flash's forks and, through a
/// [`SectorPool`], with every flash holding an equal sector. Erasing a sector frees it.
/// [`Self::resident_bytes`] says what a flash costs.
#[derive(Debug)]
pub struct SimFlash<const ERASE_SIZE: usize, const WRITE_SIZE: usize> {
    /// Each sector: `None` while it reads all erased, else its bytes.
    sectors: Vec<Option<Sector>>,
    erased: u8,
    erase_counts: Vec<u32>,
    rail: PowerRail,
    pool: Option<Arc<SectorPool>>,
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
            sectors: vec![None; sectors],
            erased,
            erase_counts: vec![0; sectors],
            rail,
            pool: None,
        }
    }

    /// This flash sharing its sectors through `pool` with every other flash attached to
    /// it: the sectors it holds now, each sector a write completes from now on, and those
    /// of its forks. What it reads never changes.
    pub fn with_sector_pool(mut self, pool: Arc<SectorPool>) -> Self {
        self.pool = Some(pool);
        self.share_sectors();
        self
    }

    /// Offers every sector this flash holds to its pool (none: nothing happens), partly
    /// written ones included: for a device after a step that ends mid-sector, such as
    /// writing an image whose end does not fill its last sector.
    pub fn share_sectors(&mut self) {
        if let Some(pool) = &self.pool {
            for sector in self.sectors.iter_mut().flatten() {
                pool.intern(sector);
            }
        }
    }

    /// An independent copy of this flash (contents and wear) on `rail`: for exploring
    /// what a cut at each point of a step does, from one starting state. The copy shares
    /// the sectors until either side writes them, and the pool, to which it offers them.
    pub fn fork(&self, rail: PowerRail) -> Self {
        let mut fork = Self {
            sectors: self.sectors.clone(),
            erased: self.erased,
            erase_counts: self.erase_counts.clone(),
            rail,
            pool: self.pool.clone(),
        };
        fork.share_sectors();
        fork
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

    /// A copy of the raw contents, for assertions: [`Self::peek`] at all of them.
    pub fn contents(&self) -> Vec<u8> {
        let mut contents = vec![self.erased; self.capacity()];
        self.peek(0, &mut contents);
        contents
    }

    /// Reads the raw bytes at `offset`, for assertions: without power, without counting
    /// an operation, from a shared reference.
    ///
    /// # Panics
    /// If the bytes run past the end of the flash.
    #[inline(always)]
    pub fn peek(&self, offset: u32, bytes: &mut [u8]) {
        let (sector, at) = (offset as usize / ERASE_SIZE, offset as usize % ERASE_SIZE);
        // Most reads stay within a sector (the journal reads records, verification
        // reads chunks): this path is the sweeps' hottest.
        if at + bytes.len() <= ERASE_SIZE {
            match &self.sectors[sector] {
                Some(held) => bytes.copy_from_slice(&held.0[at..at + bytes.len()]),
                None => bytes.fill(self.erased),
            }
        } else {
            self.peek_across(offset as usize, bytes);
        }
    }

    fn peek_across(&self, offset: usize, bytes: &mut [u8]) {
        assert!(
            offset + bytes.len() <= self.capacity(),
            "peek out of bounds"
        );
        let mut done = 0;
        for (sector, at, len) in Self::pieces(offset, bytes.len()) {
            let out = &mut bytes[done..done + len];
            match &self.sectors[sector] {
                Some(held) => out.copy_from_slice(&held.0[at..at + len]),
                None => out.fill(self.erased),
            }
            done += len;
        }
    }

    /// Overwrites the raw contents from offset 0, bypassing the programming rules and the
    /// power rail: for tests that model bit rot or an attacker with a flash programmer.
    pub fn overwrite(&mut self, contents: &[u8]) {
        assert!(contents.len() <= self.capacity(), "overwrite out of bounds");
        for (sector, offset, len) in Self::pieces(0, contents.len()) {
            let at = sector * ERASE_SIZE + offset;
            self.sector_mut(sector)[offset..offset + len].copy_from_slice(&contents[at..at + len]);
            self.settle(sector);
        }
    }

    /// The erased value.
    pub fn erased_value(&self) -> u8 {
        self.erased
    }

    /// The heap memory this flash holds on its own account: its sector table and the
    /// bytes of every sector it holds, whether or not it shares them.
    pub fn resident_bytes(&self) -> usize {
        Self::distinct_resident_bytes([self])
    }

    /// The heap memory `flashes` hold together: their sector tables, and each sector
    /// once however many of them share it.
    pub fn distinct_resident_bytes<'a>(flashes: impl IntoIterator<Item = &'a Self>) -> usize
    where
        Self: 'a,
    {
        let mut seen = BTreeSet::new();
        let mut bytes = 0;
        for flash in flashes {
            bytes += flash.sectors.capacity() * size_of::<Option<Sector>>()
                + flash.erase_counts.capacity() * size_of::<u32>();
            for sector in flash.sectors.iter().flatten() {
                if seen.insert(Arc::as_ptr(sector)) {
                    bytes += sector.0.len();
                }
            }
        }
        bytes
    }

    /// The sector's bytes to change: allocated if it was erased, copied if it is shared.
    fn sector_mut(&mut self, sector: usize) -> &mut [u8] {
        let erased = self.erased;
        let held = self.sectors[sector]
            .get_or_insert_with(|| Arc::new(SectorBytes(vec![erased; ERASE_SIZE].into())));
        &mut Arc::make_mut(held).0
    }

    /// After a write completed a sector, or an operation left it torn: frees it if it
    /// reads all erased (programming a word with the erased value is a valid write),
    /// else offers it to the pool.
    fn settle(&mut self, sector: usize) {
        let erased = self.erased;
        let slot = &mut self.sectors[sector];
        match slot {
            Some(held) if held.0.iter().all(|&b| b == erased) => *slot = None,
            Some(held) => {
                if let Some(pool) = &self.pool {
                    pool.intern(held);
                }
            }
            None => {}
        }
    }

    /// Moves `old` toward `new` for a torn operation: only bits that the operation flips
    /// may change, each independently.
    fn tear(old: u8, new: u8, noise: u8) -> u8 {
        let flipping = old ^ new;
        old ^ (flipping & noise)
    }

    /// Applies `new` to the words from `start` (word-aligned), all of them or, for a torn
    /// cut, a random subset of them and of their bits.
    fn apply(&mut self, start: usize, new: &[u8], cut: Option<PowerCut>) {
        let mut torn = cut
            .filter(|cut| cut.kind == CutKind::Torn)
            .map(SplitMix::new);
        let mut done = 0;
        for (sector, offset, len) in Self::pieces(start, new.len()) {
            let new = &new[done..done + len];
            done += len;
            let Some(rng) = &mut torn else {
                // Programming erased words with the erased value changes nothing.
                if self.sectors[sector].is_some() || new.iter().any(|&b| b != self.erased) {
                    self.sector_mut(sector)[offset..offset + len].copy_from_slice(new);
                }
                if offset + len == ERASE_SIZE {
                    self.settle(sector);
                }
                continue;
            };
            let target = &mut self.sector_mut(sector)[offset..offset + len];
            for (target, word) in target.chunks_mut(WRITE_SIZE).zip(new.chunks(WRITE_SIZE)) {
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
            self.settle(sector);
        }
    }

    /// The pieces of `start..start + len` in each sector: (sector, offset in it, length).
    fn pieces(start: usize, len: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        let end = start + len;
        let mut at = start;
        core::iter::from_fn(move || {
            (at < end).then(|| {
                let (sector, offset) = (at / ERASE_SIZE, at % ERASE_SIZE);
                let len = (ERASE_SIZE - offset).min(end - at);
                at += len;
                (sector, offset, len)
            })
        })
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

    #[inline]
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimFlashError> {
        self.rail.check()?;
        check_read(self, offset, bytes.len())?;
        self.peek(offset, bytes);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.sectors.len() * E
    }
}

impl<const E: usize, const W: usize> NorFlash for SimFlash<E, W> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimFlashError> {
        self.rail.check()?;
        check_erase(self, from, to)?;
        let cut = self.rail.begin_operation()?;
        let sectors = Self::sector_range(from, to);
        match cut {
            Some(PowerCut {
                kind: CutKind::Torn,
                ..
            }) => {
                let erased = vec![self.erased; (to - from) as usize];
                self.apply(from as usize, &erased, cut);
            }
            _ => self.sectors[sectors.clone()].fill(None),
        }
        // A sector counts as erased once an erase of it has begun: that is the wear.
        for sector in sectors {
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
        for (sector, at, len) in Self::pieces(start, bytes.len()) {
            let Some(held) = &self.sectors[sector] else {
                continue;
            };
            let mut words = held.0[at..at + len].chunks(W);
            if let Some(w) = words.position(|w| w.iter().any(|&b| b != self.erased)) {
                return Err(SimFlashError::NotErased {
                    offset: (sector * E + at + w * W) as u32,
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
    use proptest::prelude::*;

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
            f.contents()
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

    /// The flash as it was before it went sparse (one resident `Vec`, every rule as
    /// written then): the reference the sparse flash must match operation by operation.
    struct Dense<const E: usize, const W: usize> {
        mem: Vec<u8>,
        erased: u8,
        erase_counts: Vec<u32>,
        rail: PowerRail,
    }

    impl<const E: usize, const W: usize> Dense<E, W> {
        fn new(sectors: usize, erased: u8) -> Self {
            Self {
                mem: vec![erased; sectors * E],
                erased,
                erase_counts: vec![0; sectors],
                rail: PowerRail::new(),
            }
        }

        fn fork(&self) -> Self {
            Self {
                mem: self.mem.clone(),
                erased: self.erased,
                erase_counts: self.erase_counts.clone(),
                rail: PowerRail::new(),
            }
        }

        fn apply(&mut self, start: usize, new: &[u8], cut: Option<PowerCut>) {
            let mut rng = cut.map(SplitMix::new);
            for (w, word) in new.chunks(W).enumerate() {
                let at = start + w * W;
                let target = &mut self.mem[at..at + W];
                match (&mut rng, cut.map(|c| c.kind)) {
                    (Some(rng), Some(CutKind::Torn)) => match rng.next() % 3 {
                        0 => {}
                        1 => target.copy_from_slice(word),
                        _ => {
                            for (t, &n) in target.iter_mut().zip(word) {
                                *t = SimFlash::<E, W>::tear(*t, n, rng.next() as u8);
                            }
                        }
                    },
                    _ => target.copy_from_slice(word),
                }
            }
        }

        fn erase(&mut self, from: u32, to: u32) -> Result<(), SimFlashError> {
            self.rail.check()?;
            if from > to || to as usize > self.mem.len() {
                return Err(SimFlashError::OutOfBounds);
            }
            if from as usize % E != 0 || to as usize % E != 0 {
                return Err(SimFlashError::NotAligned);
            }
            let cut = self.rail.begin_operation()?;
            let erased = vec![self.erased; (to - from) as usize];
            self.apply(from as usize, &erased, cut);
            for sector in from as usize / E..to as usize / E {
                self.erase_counts[sector] += 1;
            }
            match cut {
                Some(_) => Err(SimFlashError::PowerLoss),
                None => Ok(()),
            }
        }

        fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimFlashError> {
            self.rail.check()?;
            if offset as usize + bytes.len() > self.mem.len() {
                return Err(SimFlashError::OutOfBounds);
            }
            if offset as usize % W != 0 || bytes.len() % W != 0 {
                return Err(SimFlashError::NotAligned);
            }
            let start = offset as usize;
            for (w, word) in self.mem[start..start + bytes.len()].chunks(W).enumerate() {
                if word.iter().any(|&b| b != self.erased) {
                    return Err(SimFlashError::NotErased {
                        offset: (start + w * W) as u32,
                    });
                }
            }
            let cut = self.rail.begin_operation()?;
            self.apply(start, bytes, cut);
            match cut {
                Some(_) => Err(SimFlashError::PowerLoss),
                None => Ok(()),
            }
        }
    }

    /// One step of a random history, on one of two flashes (and their references).
    #[derive(Clone, Debug)]
    enum Op {
        /// `words` words of `fill`, at word `at`.
        Write {
            on: bool,
            at: usize,
            words: usize,
            fill: u8,
        },
        /// Words whose bytes are the erased value: valid writes that change nothing.
        WriteErased {
            on: bool,
            at: usize,
            words: usize,
        },
        Erase {
            on: bool,
            first: usize,
            count: usize,
        },
        Cut {
            on: bool,
            after: u64,
            kind: CutKind,
            seed: u64,
        },
        PowerOn {
            on: bool,
        },
        /// Flash 1 becomes a fork of flash 0.
        Fork,
        Overwrite {
            on: bool,
            at: usize,
            fill: u8,
        },
        Read {
            on: bool,
            at: usize,
            len: usize,
        },
        Share {
            on: bool,
        },
    }

    fn op(words: usize, sectors: usize) -> impl Strategy<Value = Op> {
        let kind = prop_oneof![
            Just(CutKind::Before),
            Just(CutKind::After),
            Just(CutKind::Torn)
        ];
        // A few fill values, so that sectors written alike can be shared.
        let fill = prop_oneof![Just(0x5A), Just(0x00), Just(0xFF), any::<u8>()];
        prop_oneof![
            6 => (any::<bool>(), 0..words, 1..words, fill.clone())
                .prop_map(|(on, at, words, fill)| Op::Write { on, at, words, fill }),
            1 => (any::<bool>(), 0..words, 1..8usize)
                .prop_map(|(on, at, words)| Op::WriteErased { on, at, words }),
            3 => (any::<bool>(), 0..sectors, 1..3usize)
                .prop_map(|(on, first, count)| Op::Erase { on, first, count }),
            2 => (any::<bool>(), 0..4u64, kind, any::<u64>())
                .prop_map(|(on, after, kind, seed)| Op::Cut { on, after, kind, seed }),
            2 => any::<bool>().prop_map(|on| Op::PowerOn { on }),
            1 => Just(Op::Fork),
            1 => (any::<bool>(), 0..words, fill)
                .prop_map(|(on, at, fill)| Op::Overwrite { on, at, fill }),
            2 => (any::<bool>(), 0..words, 1..words)
                .prop_map(|(on, at, len)| Op::Read { on, at, len }),
            1 => any::<bool>().prop_map(|on| Op::Share { on }),
        ]
    }

    /// Runs `ops` on two sparse flashes sharing a pool and on two dense references, and
    /// checks after every step that each answers and reads as its reference does.
    fn matches_reference<const E: usize, const W: usize>(erased: u8, sectors: usize, ops: &[Op]) {
        let pool = Arc::new(SectorPool::new());
        let sparse = || SimFlash::<E, W>::new(sectors, erased).with_sector_pool(pool.clone());
        let mut flashes = [sparse(), sparse()];
        let mut references = [
            Dense::<E, W>::new(sectors, erased),
            Dense::new(sectors, erased),
        ];
        let words = sectors * E / W;
        for (step, op) in ops.iter().enumerate() {
            let pick = |on: bool| usize::from(on);
            let (which, sparse, dense) = match op {
                Op::Write {
                    on,
                    at,
                    words: n,
                    fill,
                } => {
                    let i = pick(*on);
                    let len = (*n).min(words - at) * W;
                    // Bytes that differ word to word, from `fill`.
                    let bytes: Vec<u8> = (0..len)
                        .map(|b| fill.wrapping_add((b / W) as u8 & 3))
                        .collect();
                    let at = (at * W) as u32;
                    (
                        i,
                        flashes[i].write(at, &bytes),
                        references[i].write(at, &bytes),
                    )
                }
                Op::WriteErased { on, at, words: n } => {
                    let i = pick(*on);
                    let bytes = vec![erased; (*n).min(words - at) * W];
                    let at = (at * W) as u32;
                    (
                        i,
                        flashes[i].write(at, &bytes),
                        references[i].write(at, &bytes),
                    )
                }
                Op::Erase { on, first, count } => {
                    let i = pick(*on);
                    let to = (first + count).min(sectors);
                    let (from, to) = ((first * E) as u32, (to * E) as u32);
                    (i, flashes[i].erase(from, to), references[i].erase(from, to))
                }
                Op::Cut {
                    on,
                    after,
                    kind,
                    seed,
                } => {
                    let i = pick(*on);
                    let at = flashes[i].operations() + after;
                    assert_eq!(at, references[i].rail.operations() + after);
                    let cut = PowerCut {
                        at,
                        kind: *kind,
                        seed: *seed,
                    };
                    flashes[i].schedule_cut(cut);
                    references[i].rail.schedule_cut(cut);
                    (i, Ok(()), Ok(()))
                }
                Op::PowerOn { on } => {
                    let i = pick(*on);
                    flashes[i].power_on();
                    references[i].rail.power_on();
                    (i, Ok(()), Ok(()))
                }
                Op::Fork => {
                    flashes[1] = flashes[0].fork(PowerRail::new());
                    references[1] = references[0].fork();
                    (1, Ok(()), Ok(()))
                }
                Op::Overwrite { on, at, fill } => {
                    let i = pick(*on);
                    let bytes = vec![*fill; (at + 1) * W];
                    flashes[i].overwrite(&bytes);
                    references[i].mem[..bytes.len()].copy_from_slice(&bytes);
                    (i, Ok(()), Ok(()))
                }
                Op::Read { on, at, len } => {
                    let i = pick(*on);
                    let len = (*len).min(words - at) * W;
                    let mut got = vec![0x33; len];
                    let sparse = flashes[i].read((at * W) as u32, &mut got);
                    let dense = references[i].rail.check().map_err(SimFlashError::from);
                    if sparse.is_ok() {
                        let at = at * W;
                        assert_eq!(got, references[i].mem[at..at + len], "step {step}: {op:?}");
                    }
                    (i, sparse, dense)
                }
                Op::Share { on } => {
                    let i = pick(*on);
                    flashes[i].share_sectors();
                    (i, Ok(()), Ok(()))
                }
            };
            assert_eq!(sparse, dense, "step {step}: {op:?}");
            for i in [which, 1 - which] {
                let (flash, reference) = (&flashes[i], &references[i]);
                assert!(
                    flash.contents() == reference.mem,
                    "flash {i}, step {step}: {op:?}"
                );
                assert_eq!(
                    flash.erase_counts(),
                    reference.erase_counts,
                    "step {step}: {op:?}"
                );
                assert_eq!(flash.operations(), reference.rail.operations());
                assert_eq!(flash.is_powered(), reference.rail.is_powered());
                // Sparse: a sector that reads all erased holds no memory.
                for (sector, held) in flash.sectors.iter().enumerate() {
                    let bytes = &reference.mem[sector * E..(sector + 1) * E];
                    if bytes.iter().all(|&b| b == erased) {
                        assert!(
                            held.is_none(),
                            "sector {sector} all erased and resident, step {step}: {op:?}"
                        );
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn sparse_flash_matches_the_dense_reference_erased_ff(
            ops in proptest::collection::vec(op(64 * 6 / 4, 6), 1..60)
        ) {
            matches_reference::<64, 4>(0xFF, 6, &ops);
        }

        #[test]
        fn sparse_flash_matches_the_dense_reference_erased_00(
            ops in proptest::collection::vec(op(256 * 4 / 16, 4), 1..60)
        ) {
            matches_reference::<256, 16>(0x00, 4, &ops);
        }
    }

    #[test]
    fn an_erased_gibibyte_holds_no_sector_memory() {
        let mut f = SimFlash::<{ 64 * 1024 }, 8>::new(16 * 1024, 0xFF);
        assert_eq!(f.capacity(), 1 << 30);
        // The sector table only: 12 bytes a sector.
        assert!(
            f.resident_bytes() <= 16 * 1024 * 12,
            "{}",
            f.resident_bytes()
        );
        let table = f.resident_bytes();
        f.write(1 << 29, &[0; 8]).unwrap();
        assert_eq!(
            f.resident_bytes(),
            table + 64 * 1024,
            "one sector programmed"
        );
        f.erase(1 << 29, (1 << 29) + 64 * 1024).unwrap();
        assert_eq!(f.resident_bytes(), table, "erasing a sector frees it");
    }

    #[test]
    fn a_fork_shares_sectors_until_either_side_writes() {
        let mut f = Small::new(4, 0xFF);
        f.write(0, &[1; 512]).unwrap();
        let table = Small::new(4, 0xFF).resident_bytes();
        let mut fork = f.fork(PowerRail::new());
        assert_eq!(Small::distinct_resident_bytes([&f, &fork]), 2 * table + 512);
        fork.write(512, &[2; 4]).unwrap();
        fork.erase(0, 256).unwrap();
        assert_eq!(
            Small::distinct_resident_bytes([&f, &fork]),
            2 * table + 512 + 256
        );
        assert_eq!(f.contents()[..512], [1; 512]);
        assert!(f.contents()[512..].iter().all(|&b| b == 0xFF));
    }

    /// A pool's dead entries are swept: it stays proportional to what flashes hold.
    #[test]
    fn a_pool_forgets_sectors_no_flash_holds() {
        let pool = Arc::new(SectorPool::new());
        let mut f = Small::new(1, 0xFF).with_sector_pool(pool.clone());
        for round in 0..10_000u32 {
            let mut bytes = [0u8; 256];
            bytes[..4].copy_from_slice(&round.to_le_bytes());
            f.erase(0, 256).unwrap();
            f.write(0, &bytes).unwrap();
        }
        let stats = pool.stats();
        assert_eq!((stats.live_sectors, stats.live_bytes), (1, 256));
        assert!(stats.entries <= 16 * 64, "{stats:?}");
    }
}
