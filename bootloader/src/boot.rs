//! The boot decision.

use core::marker::PhantomData;

use embedded_storage::nor_flash::NorFlash;

use crate::error::Error;
use crate::journal::{BootState, Journal, Revert, RevertReason};
use crate::layout::Layout;
use crate::rot::RootOfTrust;
use crate::verify::{EnvelopeAuth, Rejection, SuitDecoder, VerifiedImage, verify_slot};

/// What to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootDecision {
    /// Jump to this verified image. `trial`: it is a pending image on trial, and this
    /// start has been counted in the journal already.
    Boot { image: VerifiedImage, trial: bool },
    /// Nothing is bootable: the confirmed image fails verification (why: the rejection)
    /// and no trial is due. The device must wait for recovery, not reboot: rebooting
    /// would decide the same.
    Recovery(Rejection),
}

/// The bootloader: owns the flash and the root of trust for one decision, and
/// authenticates envelopes with `A` (the general SUIT decoder unless a bootloader short
/// of flash picks [`crate::BootProfile`]).
pub struct Bootloader<'s, F, R, A = SuitDecoder> {
    flash: F,
    rot: R,
    layout: Layout,
    scratch: &'s mut [u8],
    auth: PhantomData<A>,
}

impl<'s, F: NorFlash, R: RootOfTrust, A: EnvelopeAuth> Bootloader<'s, F, R, A> {
    /// `scratch` holds an envelope while it is verified: at least `header_size - 64`
    /// bytes.
    pub fn new(
        flash: F,
        rot: R,
        layout: Layout,
        scratch: &'s mut [u8],
    ) -> Result<Self, Error<F::Error, R::Error>> {
        layout.check::<F>(flash.capacity(), scratch.len())?;
        Ok(Self {
            flash,
            rot,
            layout,
            scratch,
            auth: PhantomData,
        })
    }

    /// Decides what to boot, recording what must survive the jump first.
    ///
    /// 1. A pending image is started on trial if it has trial boots left and verifies;
    ///    the start is counted in the journal *before* returning, so an image that
    ///    hangs or resets is reverted after `max_trial_boots` starts at most.
    /// 2. A pending image out of trial boots, or failing verification, is reverted: the
    ///    revert and its reason are journaled, and the confirmed image is considered.
    /// 3. The confirmed image boots if it verifies. Its security version becomes the
    ///    floor if it is not yet: this completes a confirm cut short between its journal
    ///    record and its OTP burn, so the floor always catches up with what is confirmed.
    /// 4. Otherwise: [`BootDecision::Recovery`]. Nothing unverified ever boots.
    pub fn decide(&mut self) -> Result<BootDecision, Error<F::Error, R::Error>> {
        let mut journal = Journal::open(&mut self.flash, &self.layout).map_err(Error::Flash)?;
        let state = journal.state();
        if state.pending {
            let pending = state.confirmed.other();
            let failure = if state.trial_boots >= self.layout.max_trial_boots {
                RevertReason::TrialExhausted
            } else {
                match self.verify(pending) {
                    Ok(image) => {
                        let started = BootState {
                            trial_boots: state.trial_boots + 1,
                            ..state
                        };
                        journal
                            .commit(&mut self.flash, started)
                            .map_err(Error::Flash)?;
                        return Ok(BootDecision::Boot { image, trial: true });
                    }
                    Err(Error::Rejected(rejection)) => RevertReason::from(&rejection),
                    Err(e) => return Err(e),
                }
            };
            let reverted = BootState {
                pending: false,
                trial_boots: 0,
                last_revert: Some(Revert {
                    slot: pending,
                    reason: failure,
                }),
                ..state
            };
            journal
                .commit(&mut self.flash, reverted)
                .map_err(Error::Flash)?;
        }
        match self.verify(state.confirmed) {
            Ok(image) => {
                self.rot
                    .raise_floor(image.security_version as u32)
                    .map_err(Error::Rot)?;
                Ok(BootDecision::Boot {
                    image,
                    trial: false,
                })
            }
            Err(Error::Rejected(rejection)) => Ok(BootDecision::Recovery(rejection)),
            Err(e) => Err(e),
        }
    }

    /// The DICE hand-off for `image` (what [`Self::decide`] chose to boot): takes the UDS
    /// from the root of trust (once per reset; it stays hidden from what runs next),
    /// measures the image (digest, versions, slot, signer) and this bootloader
    /// (`bootloader`: the SHA-256 of its own code), and derives the DeviceID and Alias
    /// keys and the Alias certificate ([`crate::dice::derive`]). `Ok(None)`: the part has
    /// no UDS, and the image boots without DICE.
    pub fn attest(
        &mut self,
        image: &VerifiedImage,
        bootloader: [u8; 32],
        mode: crate::dice::Mode,
    ) -> Result<Option<crate::dice::Handoff>, Error<F::Error, R::Error>> {
        let mut area = [0; crate::dice::MAX_HANDOFF_LEN];
        let written = self.attest_into(image, bootloader, mode, &mut area)?;
        let handoff = written.map(|_| crate::dice::Handoff::read(&area));
        crate::dice::Handoff::wipe(&mut area);
        handoff.transpose().map_err(|_| Error::Dice)
    }

    /// [`Self::attest`], writing the hand-off straight into the board's hand-off `area`
    /// ([`crate::dice::derive_into`]): what a bootloader does, leaving no other copy of
    /// the Alias seed or the certificate. `Ok(Some(length written))`; `Ok(None)`: the
    /// part has no UDS, and `area` is left as it was.
    pub fn attest_into(
        &mut self,
        image: &VerifiedImage,
        bootloader: [u8; 32],
        mode: crate::dice::Mode,
        area: &mut [u8; crate::dice::MAX_HANDOFF_LEN],
    ) -> Result<Option<usize>, Error<F::Error, R::Error>> {
        let Some(uds) = self.rot.take_uds().map_err(Error::Rot)? else {
            return Ok(None);
        };
        let signer = self
            .rot
            .key_hash(image.key_slot)
            .map_err(Error::Rot)?
            .unwrap_or_default();
        let measurement = crate::dice::Measurement {
            image_digest: image.digest,
            security_version: image.security_version,
            sequence: image.sequence_number,
            slot: image.slot,
            signer,
            bootloader,
        };
        Ok(Some(crate::dice::derive_into(
            uds,
            &measurement,
            mode,
            area,
        )))
    }

    /// Gives the flash and the root of trust back.
    pub fn into_parts(self) -> (F, R) {
        (self.flash, self.rot)
    }

    fn verify(&mut self, slot: crate::Slot) -> Result<VerifiedImage, Error<F::Error, R::Error>> {
        verify_slot::<A, _, _>(
            &mut self.flash,
            &mut self.rot,
            &self.layout,
            slot,
            self.scratch,
        )
    }
}
