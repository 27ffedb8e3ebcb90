//! The boot-state journal: an append-only log of whole boot states, power-safe by
//! construction.
//!
//! Owned by [`Journal`]; its format and rules are documented there.

use crc::{CRC_32_ISCSI, Crc, NoTable};
use embedded_storage::nor_flash::NorFlash;

use crate::layout::{Layout, Region, Slot};
use crate::verify::Rejection;

/// Bytes of a record's body (before padding and the commit word).
pub(crate) const RECORD_BODY_LEN: usize = 16;
/// The body format this code writes and reads.
const FORMAT: u8 = 1;
/// "None" in the revert-slot byte.
const NO_SLOT: u8 = 0xFF;
/// CRC-32C (Castagnoli): better error detection on short messages than CRC-32/ISO-HDLC.
/// Bitwise: a record is 12 bytes, and the default lookup table costs 1 KiB of flash.
const CRC: Crc<u32, NoTable> = Crc::<u32, NoTable>::new(&CRC_32_ISCSI);

/// Bytes one record occupies for write size `write_size`: the body padded to whole
/// words, then one commit word.
pub(crate) const fn record_len(write_size: usize) -> usize {
    RECORD_BODY_LEN.next_multiple_of(write_size) + write_size
}

/// What the bootloader and the updater agree on between boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BootState {
    /// The last slot whose image was confirmed: the fallback.
    pub confirmed: Slot,
    /// The other slot holds an image marked pending (to boot on trial, or on trial now).
    pub pending: bool,
    /// How many times the pending image has been started on trial.
    pub trial_boots: u8,
    /// The most recent revert, kept until the next one.
    pub last_revert: Option<Revert>,
}

impl Default for BootState {
    /// The factory state: slot A holds the confirmed image.
    fn default() -> Self {
        Self {
            confirmed: Slot::A,
            pending: false,
            trial_boots: 0,
            last_revert: None,
        }
    }
}

impl BootState {
    /// The slot the bootloader runs under this state (before its next decision): the
    /// pending one once a trial boot of it has started, else the confirmed one.
    pub fn running(&self) -> Slot {
        if self.on_trial() {
            self.confirmed.other()
        } else {
            self.confirmed
        }
    }

    /// Whether a trial boot of the pending image has started.
    pub fn on_trial(&self) -> bool {
        self.pending && self.trial_boots > 0
    }
}

/// A pending image given up on, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Revert {
    /// The slot of the image given up on.
    pub slot: Slot,
    pub reason: RevertReason,
}

/// Why a pending image was given up on. Stored in one byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RevertReason {
    /// It started `max_trial_boots` times without confirming.
    TrialExhausted = 1,
    /// It ran and rejected itself (a failed health check).
    RejectedByApplication = 2,
    /// It failed verification: the slot holds no header.
    EmptySlot = 3,
    /// It failed verification: the slot header is malformed.
    MalformedHeader = 4,
    /// It failed verification: its key is not in the root of trust.
    UntrustedKey = 5,
    /// It failed verification: its key is revoked.
    RevokedKey = 6,
    /// It failed verification: the envelope, its signature or the manifest.
    BadManifest = 7,
    /// It failed verification: it is for another vendor or device class.
    WrongDevice = 8,
    /// It failed verification: its security version is below the floor (or beyond the
    /// device's counter).
    BelowFloor = 9,
    /// It failed verification: the image does not match the manifest's digest or size.
    ImageMismatch = 10,
}

impl RevertReason {
    /// A stable, printable name (for consoles without `core::fmt`, and for logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TrialExhausted => "trial-exhausted",
            Self::RejectedByApplication => "rejected-by-application",
            Self::EmptySlot => "empty-slot",
            Self::MalformedHeader => "malformed-header",
            Self::UntrustedKey => "untrusted-key",
            Self::RevokedKey => "revoked-key",
            Self::BadManifest => "bad-manifest",
            Self::WrongDevice => "wrong-device",
            Self::BelowFloor => "below-floor",
            Self::ImageMismatch => "image-mismatch",
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        use RevertReason::*;
        [
            TrialExhausted,
            RejectedByApplication,
            EmptySlot,
            MalformedHeader,
            UntrustedKey,
            RevokedKey,
            BadManifest,
            WrongDevice,
            BelowFloor,
            ImageMismatch,
        ]
        .into_iter()
        .find(|r| *r as u8 == byte)
    }
}

impl From<&Rejection> for RevertReason {
    fn from(rejection: &Rejection) -> Self {
        match rejection {
            Rejection::EmptySlot => Self::EmptySlot,
            Rejection::MalformedHeader => Self::MalformedHeader,
            Rejection::UntrustedKey => Self::UntrustedKey,
            Rejection::RevokedKey { .. } => Self::RevokedKey,
            Rejection::Manifest(_) | Rejection::MissingClaim(_) | Rejection::NotOneComponent => {
                Self::BadManifest
            }
            Rejection::WrongVendor | Rejection::WrongClass => Self::WrongDevice,
            Rejection::BelowFloor { .. } | Rejection::BeyondFloorBudget { .. } => Self::BelowFloor,
            Rejection::TooLarge { .. } | Rejection::ImageMismatch => Self::ImageMismatch,
            // Only the updater checks sequence numbers; the bootloader never reverts for it.
            Rejection::OlderSequence { .. } => Self::BadManifest,
        }
    }
}

/// The boot-state journal.
///
/// # On flash
///
/// The journal region is `n ≥ 2` erase sectors used as a ring. Each sector holds
/// `⌊ERASE_SIZE / record_len⌋` record slots, `record_len` = the 16-byte body rounded
/// up to whole write words, plus one commit word. A record slot holds:
///
/// ```text
/// body (little-endian):
///   0..4   sequence number (u32; the highest valid one is the current state)
///   4      format (1)
///   5      confirmed slot (0 = A, 1 = B)
///   6      pending (0 or 1)
///   7      trial boots started
///   8      last revert: slot (0, 1, or 0xFF for none)
///   9      last revert: reason (RevertReason; 0 when none)
///   10..12 reserved, zero
///   12..16 CRC-32C of bytes 0..12
/// padding to the write size: erased
/// commit word: every byte the complement of the erased value
/// ```
///
/// # Why a cut never yields a state that depends on a half-written record
///
/// - A record is *valid* only if its commit word reads exactly as written, its CRC
///   matches and every field is in range. The body is written by one operation and the
///   commit word by the next, so a record whose body write was cut has no commit word,
///   and a torn commit word is not the full pattern: either way it is ignored and the
///   previous record stands (the state *before*), or it is complete (the state *after*).
/// - Records are only ever written to record slots that read fully erased, so a torn
///   leftover is skipped, never overwritten.
/// - A sector is erased only when the ring moves onto it, which happens only when the
///   sector holding the current record is full; every record in the sector being
///   erased is older. A torn erase may leave old records readable there: they lose to
///   the current one by sequence number, and the sector is erased again before reuse.
///
/// # Wear
///
/// A state change writes one record. The ring erases one sector per `records per
/// sector` changes (each sector once per `n ×` that): with 4 KiB sectors and 4-byte
/// writes, one erase per 204 changes, about one per 50 updates (an update is about four
/// changes: pending, trial start, confirm, and unmarking a pending image when one is
/// replaced). Amortised O(1) per update.
///
/// Opening reads every record slot once; the sequence number is a `u32` that the
/// journal's own endurance (erase cycles × records) can never run past.
#[derive(Clone, Copy, Debug)]
pub struct Journal {
    region: Region,
    erased: u8,
    state: BootState,
    /// Sequence number of the current record (0 when there is none).
    seq: u32,
    /// Where the current record is: (sector, index); `None` for the factory state.
    latest: Option<(u32, u32)>,
}

impl Journal {
    /// Reads the current state from flash.
    pub fn open<F: NorFlash>(flash: &mut F, layout: &Layout) -> Result<Self, F::Error> {
        let mut journal = Self {
            region: layout.journal,
            erased: layout.erased,
            state: BootState::default(),
            seq: 0,
            latest: None,
        };
        for sector in 0..journal.sectors::<F>() {
            for index in 0..Self::per_sector::<F>() {
                if let Some((seq, state)) = journal.read_record(flash, sector, index)? {
                    if journal.latest.is_none() || seq > journal.seq {
                        journal.seq = seq;
                        journal.state = state;
                        journal.latest = Some((sector, index));
                    }
                }
            }
        }
        Ok(journal)
    }

    /// The current state.
    pub fn state(&self) -> BootState {
        self.state
    }

    /// Makes `state` the current state, durably: when this returns `Ok`, any later
    /// reboot sees it; if power fails first, a reboot sees either it or the previous
    /// state.
    pub fn commit<F: NorFlash>(&mut self, flash: &mut F, state: BootState) -> Result<(), F::Error> {
        if state == self.state && self.latest.is_some() {
            return Ok(());
        }
        let (sector, index) = match self.next_free(flash)? {
            Some(position) => position,
            None => {
                let sector = match self.latest {
                    Some((sector, _)) => (sector + 1) % self.sectors::<F>(),
                    None => 0,
                };
                let start = self.sector_address::<F>(sector);
                flash.erase(start, start + F::ERASE_SIZE as u32)?;
                (sector, 0)
            }
        };
        let seq = self.seq.wrapping_add(1);
        let at = self.record_address::<F>(sector, index);
        let body_len = RECORD_BODY_LEN.next_multiple_of(F::WRITE_SIZE);
        let mut body = [self.erased; RECORD_BODY_LEN.next_multiple_of(32)];
        body[..RECORD_BODY_LEN].copy_from_slice(&encode(seq, &state));
        flash.write(at, &body[..body_len])?;
        let commit = [!self.erased; 32];
        flash.write(at + body_len as u32, &commit[..F::WRITE_SIZE])?;
        self.seq = seq;
        self.state = state;
        self.latest = Some((sector, index));
        Ok(())
    }

    /// The first record slot after the current record, in its sector, that reads fully
    /// erased.
    fn next_free<F: NorFlash>(&self, flash: &mut F) -> Result<Option<(u32, u32)>, F::Error> {
        let Some((sector, index)) = self.latest else {
            return Ok(None);
        };
        let len = record_len(F::WRITE_SIZE);
        let mut buf = [0u8; record_len(32)];
        for next in index + 1..Self::per_sector::<F>() {
            flash.read(self.record_address::<F>(sector, next), &mut buf[..len])?;
            if buf[..len].iter().all(|&b| b == self.erased) {
                return Ok(Some((sector, next)));
            }
        }
        Ok(None)
    }

    /// The record at (sector, index), if it is valid.
    fn read_record<F: NorFlash>(
        &self,
        flash: &mut F,
        sector: u32,
        index: u32,
    ) -> Result<Option<(u32, BootState)>, F::Error> {
        let len = record_len(F::WRITE_SIZE);
        let body_len = RECORD_BODY_LEN.next_multiple_of(F::WRITE_SIZE);
        let mut buf = [0u8; record_len(32)];
        flash.read(self.record_address::<F>(sector, index), &mut buf[..len])?;
        if buf[body_len..len].iter().any(|&b| b != !self.erased) {
            return Ok(None);
        }
        Ok(decode(&buf[..RECORD_BODY_LEN]))
    }

    fn sectors<F: NorFlash>(&self) -> u32 {
        self.region.size / F::ERASE_SIZE as u32
    }

    fn per_sector<F: NorFlash>() -> u32 {
        (F::ERASE_SIZE / record_len(F::WRITE_SIZE)) as u32
    }

    fn sector_address<F: NorFlash>(&self, sector: u32) -> u32 {
        self.region.offset + sector * F::ERASE_SIZE as u32
    }

    fn record_address<F: NorFlash>(&self, sector: u32, index: u32) -> u32 {
        self.sector_address::<F>(sector) + index * record_len(F::WRITE_SIZE) as u32
    }
}

fn slot_byte(slot: Slot) -> u8 {
    slot.index() as u8
}

fn slot_from(byte: u8) -> Option<Slot> {
    match byte {
        0 => Some(Slot::A),
        1 => Some(Slot::B),
        _ => None,
    }
}

fn encode(seq: u32, state: &BootState) -> [u8; RECORD_BODY_LEN] {
    let mut body = [0u8; RECORD_BODY_LEN];
    body[..4].copy_from_slice(&seq.to_le_bytes());
    body[4] = FORMAT;
    body[5] = slot_byte(state.confirmed);
    body[6] = state.pending as u8;
    body[7] = state.trial_boots;
    (body[8], body[9]) = match state.last_revert {
        Some(revert) => (slot_byte(revert.slot), revert.reason as u8),
        None => (NO_SLOT, 0),
    };
    let crc = CRC.checksum(&body[..12]);
    body[12..].copy_from_slice(&crc.to_le_bytes());
    body
}

/// The body's sequence number and state, if the body is intact and well-formed.
fn decode(body: &[u8]) -> Option<(u32, BootState)> {
    let crc = u32::from_le_bytes([body[12], body[13], body[14], body[15]]);
    if crc != CRC.checksum(&body[..12]) || body[4] != FORMAT || body[10..12] != [0, 0] {
        return None;
    }
    let pending = match body[6] {
        0 => false,
        1 => true,
        _ => return None,
    };
    let last_revert = match (body[8], body[9]) {
        (NO_SLOT, 0) => None,
        (slot, reason) => Some(Revert {
            slot: slot_from(slot)?,
            reason: RevertReason::from_byte(reason)?,
        }),
    };
    let state = BootState {
        confirmed: slot_from(body[5])?,
        pending,
        trial_boots: body[7],
        last_revert,
    };
    Some((
        u32::from_le_bytes([body[0], body[1], body[2], body[3]]),
        state,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{CutKind, PowerCut, SimFlash};

    type Flash = SimFlash<256, 4>;

    fn layout(erased: u8) -> Layout {
        Layout {
            journal: Region::new(0, 512),
            slots: [Region::new(512, 256), Region::new(768, 256)],
            header_size: 128,
            erased,
            max_trial_boots: 3,
        }
    }

    fn state(n: u8) -> BootState {
        BootState {
            confirmed: if n % 2 == 0 { Slot::A } else { Slot::B },
            pending: n % 3 == 0,
            trial_boots: n,
            last_revert: None,
        }
    }

    #[test]
    fn a_fresh_journal_is_the_factory_state() {
        let mut flash = Flash::new(4, 0xFF);
        let journal = Journal::open(&mut flash, &layout(0xFF)).unwrap();
        assert_eq!(journal.state(), BootState::default());
    }

    #[test]
    fn every_commit_survives_a_reopen_around_the_ring() {
        for erased in [0xFF, 0x00] {
            let mut flash = Flash::new(4, erased);
            let l = layout(erased);
            let mut journal = Journal::open(&mut flash, &l).unwrap();
            // 256 / 20 = 12 records per sector: 100 commits fill 9 sectors of the ring.
            for n in 0..100u8 {
                journal.commit(&mut flash, state(n)).unwrap();
                assert_eq!(Journal::open(&mut flash, &l).unwrap().state(), state(n));
            }
            assert_eq!(flash.erase_counts()[..2], [5, 4]);
        }
    }

    #[test]
    fn round_trips_every_revert_reason() {
        let mut flash = Flash::new(4, 0xFF);
        let l = layout(0xFF);
        let mut journal = Journal::open(&mut flash, &l).unwrap();
        for byte in 1..=10 {
            let reason = RevertReason::from_byte(byte).unwrap();
            let s = BootState {
                last_revert: Some(Revert {
                    slot: Slot::B,
                    reason,
                }),
                ..BootState::default()
            };
            journal.commit(&mut flash, s).unwrap();
            assert_eq!(Journal::open(&mut flash, &l).unwrap().state(), s);
        }
        assert_eq!(RevertReason::from_byte(11), None);
    }

    /// A cut at any operation of any commit, in each way, leaves the state before or
    /// after that commit, and the journal goes on working: for write sizes from 1 to 32
    /// bytes (records of 17 to 64 bytes), around the ring several times.
    fn cut_commits<const W: usize>() {
        for erased in [0xFF, 0x00] {
            let l = layout(erased);
            for n in 0..40u8 {
                for op in 0..3 {
                    for kind in [CutKind::Before, CutKind::After, CutKind::Torn] {
                        for seed in 0..4 {
                            let mut flash = SimFlash::<256, W>::new(4, erased);
                            let mut journal = Journal::open(&mut flash, &l).unwrap();
                            for m in 0..n {
                                journal.commit(&mut flash, state(m)).unwrap();
                            }
                            let before = journal.state();
                            let at = flash.operations() + op;
                            flash.schedule_cut(PowerCut { at, kind, seed });
                            let result = journal.commit(&mut flash, state(n));
                            flash.power_on();
                            let mut reopened = Journal::open(&mut flash, &l).unwrap();
                            let now = reopened.state();
                            if result.is_ok() {
                                assert_eq!(now, state(n));
                            } else {
                                assert!(
                                    now == before || now == state(n),
                                    "W={W} {erased:#x} n={n} op={op} {kind:?}"
                                );
                            }
                            reopened.commit(&mut flash, state(200)).unwrap();
                            assert_eq!(Journal::open(&mut flash, &l).unwrap().state(), state(200));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_cut_commit_leaves_the_state_before_or_after_1_byte_writes() {
        cut_commits::<1>();
    }

    #[test]
    fn a_cut_commit_leaves_the_state_before_or_after_4_byte_writes() {
        cut_commits::<4>();
    }

    #[test]
    fn a_cut_commit_leaves_the_state_before_or_after_32_byte_writes() {
        cut_commits::<32>();
    }

    #[test]
    fn rejects_a_record_with_a_bad_checksum_or_field() {
        let good = encode(7, &state(3));
        assert_eq!(decode(&good), Some((7, state(3))));
        for i in 0..RECORD_BODY_LEN {
            let mut bad = good;
            bad[i] ^= 0x10;
            assert_eq!(decode(&bad), None, "byte {i}");
        }
    }
}
