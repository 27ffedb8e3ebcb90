//! The power rail that simulated parts share, so one schedule of power cuts covers every
//! write-once and rewritable store of a device: operation N may be a flash write, a
//! flash erase or an OTP burn, and a cut stops all of them at once.

use alloc::rc::Rc;
use core::cell::Cell;

/// How the power fails at the chosen operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CutKind {
    /// The operation never starts.
    Before,
    /// The operation completes; nothing after it does.
    After,
    /// The operation is left half done: see each part for what that means physically.
    Torn,
}

/// A scheduled power failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PowerCut {
    /// Index of the operation (write, erase or burn) at which power fails.
    pub at: u64,
    pub kind: CutKind,
    /// Chooses what a torn operation leaves behind, reproducibly.
    pub seed: u64,
}

/// The operation failed because the power is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerLoss;

/// A shared power supply: cloning it gives another handle to the same rail.
#[derive(Clone, Debug, Default)]
pub struct PowerRail(Rc<Rail>);

#[derive(Debug)]
struct Rail {
    operations: Cell<u64>,
    cut: Cell<Option<PowerCut>>,
    powered: Cell<bool>,
}

impl Default for Rail {
    fn default() -> Self {
        Self {
            operations: Cell::new(0),
            cut: Cell::new(None),
            powered: Cell::new(true),
        }
    }
}

impl PowerRail {
    /// A powered rail with no cut scheduled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules a power cut (replacing any earlier one).
    pub fn schedule_cut(&self, cut: PowerCut) {
        self.0.cut.set(Some(cut));
    }

    /// Restores power, as a reboot does; every part keeps whatever the cut left.
    pub fn power_on(&self) {
        self.0.cut.set(None);
        self.0.powered.set(true);
    }

    /// Whether the power is on (no cut has happened since the last [`Self::power_on`]).
    pub fn is_powered(&self) -> bool {
        self.0.powered.get()
    }

    /// How many operations have been started so far (the index the next one gets).
    pub fn operations(&self) -> u64 {
        self.0.operations.get()
    }

    /// Fails when the power is off: reads need power too.
    pub fn check(&self) -> Result<(), PowerLoss> {
        if self.is_powered() {
            Ok(())
        } else {
            Err(PowerLoss)
        }
    }

    /// Counts one operation and applies a cut due at it. `Ok(None)`: proceed normally;
    /// `Ok(Some(cut))`: apply the operation as `cut.kind` says, then report the loss;
    /// `Err`: the operation does not happen.
    pub fn begin_operation(&self) -> Result<Option<PowerCut>, PowerLoss> {
        self.check()?;
        let index = self.0.operations.get();
        self.0.operations.set(index + 1);
        match self.0.cut.get() {
            Some(cut) if cut.at == index => {
                self.0.powered.set(false);
                match cut.kind {
                    CutKind::Before => Err(PowerLoss),
                    CutKind::After | CutKind::Torn => Ok(Some(cut)),
                }
            }
            _ => Ok(None),
        }
    }
}

/// A small deterministic generator (SplitMix64: every seed, zero included, gives its
/// own stream), so every torn outcome reproduces from its seed.
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(cut: PowerCut) -> Self {
        Self(cut.seed ^ cut.at.rotate_left(32))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
