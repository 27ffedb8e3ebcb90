//! Errors of the bootloader core and the updater API.

use crate::anchor::AnchorError;
use crate::layout::LayoutError;
use crate::verify::Rejection;

/// Why an operation failed. `FE` is the flash's error, `RE` the root of trust's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error<FE, RE> {
    /// The flash failed (on a device: a hardware fault or power loss).
    Flash(FE),
    /// The root of trust failed.
    Rot(RE),
    /// The image is not bootable.
    Rejected(Rejection),
    /// A trust-anchor command was refused; nothing was burned.
    Anchor(AnchorError),
    /// The layout does not fit the flash.
    Layout(LayoutError),
    /// Refused while the running image is on trial: its fallback is the inactive slot,
    /// and its key may be needed to return to it. Confirm or revert first.
    OnTrial,
    /// There is no trial to revert.
    NotOnTrial,
    /// No download is staged: call [`crate::Updater::stage`] first.
    NotStaged,
    /// Image bytes must be written in order; the next one expected is at `expected`.
    OutOfOrder { expected: u32 },
    /// The write goes past the end of the image the envelope describes.
    PastEnd,
    /// The envelope does not fit the slot's header area.
    EnvelopeTooLarge,
    /// The key slot signed the running image: revoking it would make the device refuse
    /// its own firmware.
    RevokesRunningKey,
    /// The root of trust has no such key slot.
    NoSuchKeySlot,
    /// The DICE hand-off did not read back from its area (it always does: a bug).
    Dice,
}

impl<FE: core::fmt::Debug, RE: core::fmt::Debug> core::fmt::Display for Error<FE, RE> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Flash(e) => write!(f, "flash error: {e:?}"),
            Self::Rot(e) => write!(f, "root-of-trust error: {e:?}"),
            Self::Rejected(r) => write!(f, "image rejected: {r}"),
            Self::Anchor(e) => write!(f, "trust-anchor command refused: {e}"),
            Self::Layout(e) => write!(f, "bad layout: {e}"),
            Self::OnTrial => {
                f.write_str("the running image is on trial: confirm or revert it first")
            }
            Self::NotOnTrial => f.write_str("the running image is not on trial"),
            Self::NotStaged => f.write_str("no download is staged"),
            Self::OutOfOrder { expected } => {
                write!(
                    f,
                    "image bytes must be written in order; expected offset {expected}"
                )
            }
            Self::PastEnd => f.write_str("the write goes past the end of the image"),
            Self::EnvelopeTooLarge => {
                f.write_str("the envelope does not fit the slot's header area")
            }
            Self::Dice => f.write_str("the DICE hand-off did not read back"),
            Self::RevokesRunningKey => {
                f.write_str("that key signed the running image; it cannot be revoked")
            }
            Self::NoSuchKeySlot => f.write_str("the root of trust has no such key slot"),
        }
    }
}

impl<FE, RE> From<LayoutError> for Error<FE, RE> {
    fn from(e: LayoutError) -> Self {
        Self::Layout(e)
    }
}
