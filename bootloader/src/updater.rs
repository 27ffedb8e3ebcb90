//! The application-side API: what running firmware (or the update agent) uses to
//! install the next image, and to confirm or reject itself.

use core::marker::PhantomData;

use embedded_storage::nor_flash::NorFlash;

use crate::anchor::{self, AnchorError, Change};
use crate::error::Error;
use crate::header::{KEY_LEN, SlotHeader};
use crate::journal::{BootState, Journal, Revert, RevertReason};
use crate::layout::{Layout, Slot};
use crate::rot::RootOfTrust;
use crate::verify::{
    EnvelopeAuth, Rejection, SuitDecoder, VerifiedImage, check_envelope, trusted_key_slot,
    verify_slot,
};

/// The device's boot state, as the running firmware sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// The slot the running image was booted from.
    pub running: Slot,
    /// The running image is on trial: it must [`Updater::confirm`] or it is reverted.
    pub on_trial: bool,
    /// A slot marked pending and not booted yet.
    pub pending: Option<Slot>,
    /// The most recent revert and its reason.
    pub last_revert: Option<Revert>,
}

/// What the root of trust has left: what `status` reports, so that an operator sees
/// how many more key rollovers and floor raises the device's OTP can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustStatus {
    pub key_slots: usize,
    /// Key slots that can still take a new key ([`RootOfTrust::free_key_slots`]).
    pub free_key_slots: usize,
    pub revoked_key_slots: usize,
    /// Trust-anchor commands applied, and how many more the counter can take.
    pub anchor_commands: u32,
    pub anchor_commands_left: u32,
    pub floor: u32,
    /// Floor raises left: the highest floor the counter can hold, minus the floor.
    pub floor_left: u32,
}

/// What [`Updater::apply_anchor_command`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnchorOutcome {
    /// The command's burns completed (some may have been done by an earlier, cut
    /// application of it).
    Applied,
    /// What the command does was already in the root of trust, and its counter was
    /// spent: nothing was burned.
    AlreadyApplied,
}

/// How far the staged image has been written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub slot: Slot,
    /// The image offset the next [`Updater::write`] must start at.
    pub next: u32,
    /// The image's size, from its envelope.
    pub size: u32,
}

#[derive(Clone, Copy, Debug)]
struct Staging {
    slot: Slot,
    size: u32,
    /// Image bytes on flash: a multiple of the write size.
    written: u32,
    /// Bytes received but not yet a whole write word.
    tail: [u8; 32],
    tail_len: usize,
}

/// The updater. Generic like the bootloader; it shares the journal and the checks, and
/// is built with the same [`EnvelopeAuth`] as its bootloader, so that it never stages
/// what the bootloader would refuse.
pub struct Updater<'s, F, R, A = SuitDecoder> {
    flash: F,
    rot: R,
    layout: Layout,
    scratch: &'s mut [u8],
    journal: Journal,
    staging: Option<Staging>,
    auth: PhantomData<A>,
}

impl<'s, F: NorFlash, R: RootOfTrust, A: EnvelopeAuth> Updater<'s, F, R, A> {
    /// Opens the updater; `scratch` as for [`crate::Bootloader::new`].
    pub fn new(
        mut flash: F,
        rot: R,
        layout: Layout,
        scratch: &'s mut [u8],
    ) -> Result<Self, Error<F::Error, R::Error>> {
        layout.check::<F>(flash.capacity(), scratch.len())?;
        let journal = Journal::open(&mut flash, &layout).map_err(Error::Flash)?;
        Ok(Self {
            flash,
            rot,
            layout,
            scratch,
            journal,
            staging: None,
            auth: PhantomData,
        })
    }

    /// The boot state.
    pub fn status(&self) -> Status {
        let state = self.journal.state();
        Status {
            running: state.running(),
            on_trial: state.on_trial(),
            pending: (state.pending && !state.on_trial()).then(|| state.confirmed.other()),
            last_revert: state.last_revert,
        }
    }

    /// Begins, or resumes, writing the image `envelope` describes into the inactive
    /// slot; returns the image offset to continue from (0 for a fresh start).
    ///
    /// The envelope is checked first, as the bootloader will check it (signature by a
    /// trusted, non-revoked key, vendor and class, floor, size), and its sequence number
    /// must not be below the running image's: an update the device would refuse is
    /// refused before anything is erased. Any pending image is unmarked.
    ///
    /// Resuming: if the slot already holds this exact header, the download resumes at the
    /// start of the erase sector holding the last programmed image byte, which is erased
    /// again. Writes never cross a sector boundary, so whatever a cut tore lies in that
    /// sector; everything before it was written by complete operations. At most one
    /// sector of progress is lost, and one extra erase spent, per interruption.
    /// Otherwise the sectors the image needs (and only those) are erased and the header
    /// is written before any image byte.
    pub fn stage(
        &mut self,
        key: &[u8; KEY_LEN],
        envelope: &[u8],
    ) -> Result<u32, Error<F::Error, R::Error>> {
        let state = self.journal.state();
        if state.on_trial() {
            return Err(Error::OnTrial);
        }
        let slot = state.confirmed.other();
        let header = SlotHeader {
            key: *key,
            envelope,
        };
        if !header.fits(&self.layout) {
            return Err(Error::EnvelopeTooLarge);
        }
        let promise = check_envelope::<A, _, _>(&mut self.rot, &self.layout, slot, key, envelope)?;
        self.check_not_older(promise.sequence_number)?;
        let size = promise.size;
        self.staging = None;
        self.unmark_pending(state)?;
        let resume = if header
            .is_on(&mut self.flash, &self.layout, slot)
            .map_err(Error::Flash)?
        {
            self.resume_point(slot, &header, size)?
        } else {
            let end = (self.layout.header_size + size).next_multiple_of(F::ERASE_SIZE as u32);
            self.erase_and_write_header(slot, &header, end)?;
            0
        };
        self.staging = Some(Staging {
            slot,
            size,
            written: resume,
            tail: [0; 32],
            tail_len: 0,
        });
        Ok(resume)
    }

    /// Where the staged download stands, if one is staged.
    pub fn progress(&self) -> Option<Progress> {
        self.staging.map(|s| Progress {
            slot: s.slot,
            next: s.written + s.tail_len as u32,
            size: s.size,
        })
    }

    /// Writes the next `data` of the staged image, at image offset `offset` (which must
    /// be where the previous write ended). Any chunk size works; the last chunk is
    /// padded to the write size with the erased value.
    pub fn write(&mut self, offset: u32, mut data: &[u8]) -> Result<(), Error<F::Error, R::Error>> {
        let mut st = self.staging.ok_or(Error::NotStaged)?;
        let next = st.written + st.tail_len as u32;
        if offset != next {
            return Err(Error::OutOfOrder { expected: next });
        }
        if u64::from(next) + data.len() as u64 > u64::from(st.size) {
            return Err(Error::PastEnd);
        }
        // A failed write leaves the staging unknown: the caller stages again to resume.
        self.staging = None;
        let word = F::WRITE_SIZE;
        let base = self.layout.image_address(st.slot);
        if st.tail_len > 0 {
            let take = (word - st.tail_len).min(data.len());
            st.tail[st.tail_len..st.tail_len + take].copy_from_slice(&data[..take]);
            st.tail_len += take;
            data = &data[take..];
            if st.tail_len == word {
                self.write_in_sectors(base + st.written, &st.tail[..word])?;
                st.written += word as u32;
                st.tail_len = 0;
            }
        }
        let whole = data.len() / word * word;
        self.write_in_sectors(base + st.written, &data[..whole])?;
        st.written += whole as u32;
        let rest = &data[whole..];
        st.tail[st.tail_len..st.tail_len + rest.len()].copy_from_slice(rest);
        st.tail_len += rest.len();
        if st.tail_len > 0 && st.written + st.tail_len as u32 == st.size {
            st.tail[st.tail_len..word].fill(self.layout.erased);
            self.write_in_sectors(base + st.written, &st.tail[..word])?;
            st.tail_len = 0;
            // The padded last word is on flash: progress is the whole image.
            st.written = st.size;
        }
        self.staging = Some(st);
        Ok(())
    }

    /// Reads `buf.len()` bytes of the staged image from image offset `offset`: bytes
    /// already written, so that a resumed download can hash what the interrupted one
    /// wrote before it continues.
    pub fn read_staged(
        &mut self,
        offset: u32,
        buf: &mut [u8],
    ) -> Result<(), Error<F::Error, R::Error>> {
        let st = self.staging.ok_or(Error::NotStaged)?;
        if u64::from(offset) + buf.len() as u64 > u64::from(st.written) {
            return Err(Error::PastEnd);
        }
        let at = self.layout.image_address(st.slot) + offset;
        self.flash.read(at, buf).map_err(Error::Flash)
    }

    /// Discards whatever the inactive slot holds (its header sector is erased), so that
    /// staging a release again starts the download over instead of resuming on top of
    /// bytes known to be wrong. Refused while on trial: the inactive slot is the fallback.
    pub fn discard(&mut self) -> Result<(), Error<F::Error, R::Error>> {
        let state = self.journal.state();
        if state.on_trial() {
            return Err(Error::OnTrial);
        }
        self.staging = None;
        self.unmark_pending(state)?;
        let base = self.layout.slot(state.confirmed.other()).offset;
        self.flash
            .erase(base, base + F::ERASE_SIZE as u32)
            .map_err(Error::Flash)
    }

    /// Marks the inactive slot pending, so the next boot starts it on trial. The slot is
    /// verified in full first, exactly as the bootloader will. A slot that fails is
    /// discarded (its header sector erased), so that staging the release again starts
    /// the download over instead of resuming on top of bytes known to be wrong.
    pub fn mark_pending(&mut self) -> Result<VerifiedImage, Error<F::Error, R::Error>> {
        let state = self.journal.state();
        if state.on_trial() {
            return Err(Error::OnTrial);
        }
        let slot = state.confirmed.other();
        let image = match self.verify(slot).and_then(|image| {
            self.check_not_older(image.sequence_number)?;
            Ok(image)
        }) {
            Ok(image) => image,
            Err(rejected @ Error::Rejected(_)) => {
                self.discard()?;
                return Err(rejected);
            }
            Err(e) => return Err(e),
        };
        let pending = BootState {
            pending: true,
            trial_boots: 0,
            ..state
        };
        self.journal
            .commit(&mut self.flash, pending)
            .map_err(Error::Flash)?;
        self.staging = None;
        Ok(image)
    }

    /// Confirms the running image: it becomes the fallback, and the floor rises to its
    /// security version. This is the commit point: once it returns, no power cut can let
    /// an image below that floor boot. (If power fails between the journal record and
    /// the OTP burn, the bootloader completes the burn before it boots the image.)
    pub fn confirm(&mut self) -> Result<(), Error<F::Error, R::Error>> {
        let state = self.journal.state();
        let running = self.verify(state.running())?;
        if state.on_trial() {
            let confirmed = BootState {
                confirmed: running.slot,
                pending: false,
                trial_boots: 0,
                ..state
            };
            self.journal
                .commit(&mut self.flash, confirmed)
                .map_err(Error::Flash)?;
        }
        self.rot
            .raise_floor(running.security_version as u32)
            .map_err(Error::Rot)
    }

    /// Rejects the running trial image (a failed health check): the next boot returns
    /// to the confirmed image, with the revert recorded. Reboot after this.
    pub fn revert(&mut self) -> Result<(), Error<F::Error, R::Error>> {
        let state = self.journal.state();
        if !state.on_trial() {
            return Err(Error::NotOnTrial);
        }
        let reverted = BootState {
            pending: false,
            trial_boots: 0,
            last_revert: Some(Revert {
                slot: state.running(),
                reason: RevertReason::RejectedByApplication,
            }),
            ..state
        };
        self.journal
            .commit(&mut self.flash, reverted)
            .map_err(Error::Flash)
    }

    /// Burns the revocation bit of `key_slot`: images signed by that key never boot
    /// again. Refused for the key that signed the running image, and while on trial (the
    /// fallback may need its key).
    pub fn revoke(&mut self, key_slot: usize) -> Result<(), Error<F::Error, R::Error>> {
        self.check_revocable(key_slot)?;
        self.rot.revoke(key_slot).map_err(Error::Rot)
    }

    /// Applies a trust-anchor command ([`crate::anchor`]: its format and threat model)
    /// signed by the Ed25519 key `signer`: adds a key to a spare key slot, or revokes a
    /// slot (under [`Self::revoke`]'s rule: never the running image's key, never on
    /// trial).
    ///
    /// Checked before anything is burned: the signer is in a valid, unrevoked key slot;
    /// the signature verifies (with the verifier of `A`, the bootloader's); the class is
    /// the device's; the command's counter is the device's plus one; the slot exists and
    /// can take the change. Then the burns, in this order: the new key's hash and its
    /// valid bit ([`RootOfTrust::add_key`]) or the revocation bit, then the counter bit.
    /// A power cut anywhere leaves the change not applied or applied (the key is trusted
    /// only once its valid bit is burned), and applying the same command again completes
    /// it; applying it once it completed burns nothing ([`AnchorOutcome::AlreadyApplied`]).
    pub fn apply_anchor_command(
        &mut self,
        signer: &[u8; KEY_LEN],
        command: &[u8],
    ) -> Result<AnchorOutcome, Error<F::Error, R::Error>> {
        let refuse = |e| Err(Error::Anchor(e));
        if self.rot.anchor_budget() == 0 {
            return refuse(AnchorError::Unsupported);
        }
        let signer_id = rota_manifest::PublicKey::Ed25519(*signer).key_id();
        match trusted_key_slot(&mut self.rot, &signer_id) {
            Ok(_) => {}
            Err(Error::Rejected(Rejection::UntrustedKey)) => {
                return refuse(AnchorError::UntrustedSigner);
            }
            Err(Error::Rejected(Rejection::RevokedKey { slot })) => {
                return refuse(AnchorError::RevokedSigner { slot });
            }
            Err(e) => return Err(e),
        }
        let command = anchor::verify::<A::Verifier>(signer, command).map_err(Error::Anchor)?;
        if command.class_id != self.rot.class_id().map_err(Error::Rot)? {
            return refuse(AnchorError::WrongClass);
        }
        let slot = command.change.slot();
        if slot >= self.rot.key_slots() {
            return refuse(AnchorError::NoSuchSlot { slot });
        }
        let applied = match command.change {
            Change::Add { slot, key_hash } => {
                self.rot.key_hash(slot).map_err(Error::Rot)? == Some(key_hash)
            }
            Change::Revoke { slot } => self.rot.is_revoked(slot).map_err(Error::Rot)?,
        };
        let (counter, current) = (
            command.counter,
            self.rot.anchor_counter().map_err(Error::Rot)?,
        );
        if counter <= current {
            return match applied {
                true => Ok(AnchorOutcome::AlreadyApplied),
                false => refuse(AnchorError::Replayed { counter, current }),
            };
        }
        if counter != current + 1 {
            return refuse(AnchorError::OutOfOrder {
                counter,
                expected: current + 1,
            });
        }
        if counter > self.rot.anchor_budget() {
            return refuse(AnchorError::CounterExhausted { counter });
        }
        // Applied but not counted: a cut fell before the counter bit.
        if !applied {
            match command.change {
                Change::Add { slot, key_hash } => {
                    self.check_spare(slot, &key_hash)?;
                    self.rot.add_key(slot, &key_hash).map_err(Error::Rot)?;
                }
                Change::Revoke { slot } => {
                    if self.rot.key_hash(slot).map_err(Error::Rot)?.is_none() {
                        return refuse(AnchorError::SlotEmpty { slot });
                    }
                    self.revoke(slot)?;
                }
            }
        }
        self.rot
            .advance_anchor_counter(counter)
            .map_err(Error::Rot)?;
        Ok(AnchorOutcome::Applied)
    }

    /// What the root of trust has left ([`TrustStatus`]).
    pub fn trust_status(&mut self) -> Result<TrustStatus, Error<F::Error, R::Error>> {
        let rot = &mut self.rot;
        let mut revoked_key_slots = 0;
        for slot in 0..rot.key_slots() {
            revoked_key_slots += usize::from(rot.is_revoked(slot).map_err(Error::Rot)?);
        }
        let anchor_commands = rot.anchor_counter().map_err(Error::Rot)?;
        let floor = rot.floor().map_err(Error::Rot)?;
        Ok(TrustStatus {
            key_slots: rot.key_slots(),
            free_key_slots: rot.free_key_slots().map_err(Error::Rot)?,
            revoked_key_slots,
            anchor_commands,
            anchor_commands_left: rot.anchor_budget().saturating_sub(anchor_commands),
            floor,
            floor_left: rot.floor_budget().saturating_sub(floor),
        })
    }

    /// Kills the device's UDS for good (decommission, section 7 of the lifecycle
    /// design): the bootloader never derives its DICE identities again.
    pub fn kill_uds(&mut self) -> Result<(), Error<F::Error, R::Error>> {
        self.rot.kill_uds().map_err(Error::Rot)
    }

    /// Verifies the image in `slot` as the bootloader would.
    pub fn verify(&mut self, slot: Slot) -> Result<VerifiedImage, Error<F::Error, R::Error>> {
        verify_slot::<A, _, _>(
            &mut self.flash,
            &mut self.rot,
            &self.layout,
            slot,
            self.scratch,
        )
    }

    /// Gives the flash and the root of trust back.
    pub fn into_parts(self) -> (F, R) {
        (self.flash, self.rot)
    }

    /// draft-ietf-suit-manifest §8.4.2: a manifest with a sequence number lower than the
    /// running one's is refused. (Equal is the same release: reinstalling it is allowed.)
    /// If the running image no longer verifies there is nothing to compare with, and an
    /// update is how it gets repaired. This is the updater's rule; what the bootloader
    /// enforces from the root of trust is the security-version floor.
    fn check_not_older(&mut self, sequence_number: u64) -> Result<(), Error<F::Error, R::Error>> {
        let running = match self.verify(self.journal.state().running()) {
            Ok(image) => image.sequence_number,
            Err(Error::Rejected(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if sequence_number < running {
            return Err(Error::Rejected(Rejection::OlderSequence {
                sequence_number,
                running,
            }));
        }
        Ok(())
    }

    /// [`Self::revoke`]'s rule: `key_slot` exists, the device is not on trial, and the
    /// key in `key_slot` did not sign the running image.
    fn check_revocable(&mut self, key_slot: usize) -> Result<(), Error<F::Error, R::Error>> {
        if key_slot >= self.rot.key_slots() {
            return Err(Error::NoSuchKeySlot);
        }
        let state = self.journal.state();
        if state.on_trial() {
            return Err(Error::OnTrial);
        }
        let running = self.verify(state.running())?;
        let running_key = self.rot.key_hash(running.key_slot).map_err(Error::Rot)?;
        if key_slot == running.key_slot
            || self.rot.key_hash(key_slot).map_err(Error::Rot)? == running_key
        {
            return Err(Error::RevokesRunningKey);
        }
        Ok(())
    }

    /// Whether `slot` can take `key_hash`: it holds no valid key, is not revoked, and
    /// its cells hold no bit outside `key_hash` (bits a cut application of this same
    /// command burned are fine: the burn completes them); and no slot trusts the key yet.
    fn check_spare(
        &mut self,
        slot: usize,
        key_hash: &[u8; 32],
    ) -> Result<(), Error<F::Error, R::Error>> {
        let rot = &mut self.rot;
        let cells = rot.key_cells(slot).map_err(Error::Rot)?;
        if rot.key_hash(slot).map_err(Error::Rot)?.is_some()
            || rot.is_revoked(slot).map_err(Error::Rot)?
            || cells
                .iter()
                .zip(key_hash)
                .any(|(&have, &want)| have & !want != 0)
        {
            return Err(Error::Anchor(AnchorError::SlotNotSpare { slot }));
        }
        for other in 0..rot.key_slots() {
            if rot.key_hash(other).map_err(Error::Rot)?.as_ref() == Some(key_hash) {
                return Err(Error::Anchor(AnchorError::AlreadyTrusted { slot: other }));
            }
        }
        Ok(())
    }

    /// Clears a pending mark (the inactive slot is about to change), if there is one.
    fn unmark_pending(&mut self, state: BootState) -> Result<(), Error<F::Error, R::Error>> {
        if !state.pending {
            return Ok(());
        }
        let unmarked = BootState {
            pending: false,
            trial_boots: 0,
            ..state
        };
        self.journal
            .commit(&mut self.flash, unmarked)
            .map_err(Error::Flash)
    }

    /// Erases the slot's first `end` bytes (a sector multiple) and writes `header`.
    fn erase_and_write_header(
        &mut self,
        slot: Slot,
        header: &SlotHeader<'_>,
        end: u32,
    ) -> Result<(), Error<F::Error, R::Error>> {
        let base = self.layout.slot(slot).offset;
        self.flash.erase(base, base + end).map_err(Error::Flash)?;
        header
            .write(&mut self.flash, &self.layout, slot)
            .map_err(Error::Flash)
    }

    /// See [`Self::stage`]: where an interrupted download of `size` bytes resumes.
    fn resume_point(
        &mut self,
        slot: Slot,
        header: &SlotHeader<'_>,
        size: u32,
    ) -> Result<u32, Error<F::Error, R::Error>> {
        let base = self.layout.slot(slot).offset;
        let start = self.layout.header_size;
        let end = start + size.next_multiple_of(F::WRITE_SIZE as u32);
        let Some(last) = self.last_programmed(base + start, base + end)? else {
            return Ok(0);
        };
        let sector = F::ERASE_SIZE as u32;
        let torn = (last - base) / sector * sector;
        if torn < start {
            // The sector holds (part of) the header: start over from the header.
            self.erase_and_write_header(slot, header, torn + sector)?;
            return Ok(0);
        }
        self.flash
            .erase(base + torn, base + torn + sector)
            .map_err(Error::Flash)?;
        Ok(torn - start)
    }

    /// The address of the last byte in `from..to` that does not read erased.
    fn last_programmed(
        &mut self,
        from: u32,
        to: u32,
    ) -> Result<Option<u32>, Error<F::Error, R::Error>> {
        let mut chunk = [0u8; 256];
        let mut end = to;
        while end > from {
            let n = (end - from).min(chunk.len() as u32);
            let at = end - n;
            self.flash
                .read(at, &mut chunk[..n as usize])
                .map_err(Error::Flash)?;
            if let Some(i) = chunk[..n as usize]
                .iter()
                .rposition(|&b| b != self.layout.erased)
            {
                return Ok(Some(at + i as u32));
            }
            end = at;
        }
        Ok(None)
    }

    /// Writes whole words, one operation per erase sector touched, so that a cut
    /// affects one sector only (see [`Self::stage`]).
    fn write_in_sectors(
        &mut self,
        mut at: u32,
        mut data: &[u8],
    ) -> Result<(), Error<F::Error, R::Error>> {
        while !data.is_empty() {
            let room = F::ERASE_SIZE - at as usize % F::ERASE_SIZE;
            let n = room.min(data.len());
            self.flash.write(at, &data[..n]).map_err(Error::Flash)?;
            at += n as u32;
            data = &data[n..];
        }
        Ok(())
    }
}
