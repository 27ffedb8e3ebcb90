//! The power rail that simulated parts share, so one schedule of power cuts covers every
//! write-once and rewritable store of a device: operation N may be a flash write, a
//! flash erase or an OTP burn, and a cut stops all of them at once.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

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

/// A shared power supply: cloning it gives another handle to the same rail. It is
/// `Send` and `Sync`, so a simulated device can run on a thread of its own (a fleet).
#[derive(Clone, Debug, Default)]
pub struct PowerRail(Arc<Rail>);

#[derive(Debug)]
struct Rail {
    operations: AtomicU64,
    powered: AtomicBool,
    /// The scheduled cut's operation index; `NO_CUT` when none is scheduled.
    cut_at: AtomicU64,
    cut_kind: AtomicU8,
    cut_seed: AtomicU64,
}

const NO_CUT: u64 = u64::MAX;

impl Default for Rail {
    fn default() -> Self {
        Self {
            operations: AtomicU64::new(0),
            powered: AtomicBool::new(true),
            cut_at: AtomicU64::new(NO_CUT),
            cut_kind: AtomicU8::new(0),
            cut_seed: AtomicU64::new(0),
        }
    }
}

impl CutKind {
    fn to_u8(self) -> u8 {
        match self {
            Self::Before => 0,
            Self::After => 1,
            Self::Torn => 2,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Before,
            1 => Self::After,
            _ => Self::Torn,
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
        self.0.cut_at.store(NO_CUT, Ordering::SeqCst);
        self.0.cut_kind.store(cut.kind.to_u8(), Ordering::SeqCst);
        self.0.cut_seed.store(cut.seed, Ordering::SeqCst);
        self.0.cut_at.store(cut.at, Ordering::SeqCst);
    }

    /// Restores power, as a reboot does; every part keeps whatever the cut left.
    pub fn power_on(&self) {
        self.0.cut_at.store(NO_CUT, Ordering::SeqCst);
        self.0.powered.store(true, Ordering::SeqCst);
    }

    /// Whether the power is on (no cut has happened since the last [`Self::power_on`]).
    pub fn is_powered(&self) -> bool {
        self.0.powered.load(Ordering::SeqCst)
    }

    /// How many operations have been started so far (the index the next one gets).
    pub fn operations(&self) -> u64 {
        self.0.operations.load(Ordering::SeqCst)
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
        let index = self.0.operations.fetch_add(1, Ordering::SeqCst);
        if self.0.cut_at.load(Ordering::SeqCst) != index {
            return Ok(None);
        }
        let cut = PowerCut {
            at: index,
            kind: CutKind::from_u8(self.0.cut_kind.load(Ordering::SeqCst)),
            seed: self.0.cut_seed.load(Ordering::SeqCst),
        };
        self.0.powered.store(false, Ordering::SeqCst);
        match cut.kind {
            CutKind::Before => Err(PowerLoss),
            CutKind::After | CutKind::Torn => Ok(Some(cut)),
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
