//! Host-side simulation of the hardware rota-boot runs on: NOR flash and OTP on one
//! power rail that can be cut at any operation. The flash is sparse and shares sectors
//! copy-on-write ([`SectorPool`]), so a simulated fleet costs little more than its
//! distinct images.

pub mod flash;
pub mod otp;
pub mod power;
mod sectors;

pub use flash::{SimFlash, SimFlashError};
pub use otp::{SimOtp, SimOtpError};
pub use power::{CutKind, PowerCut, PowerLoss, PowerRail};
pub use sectors::{PoolStats, SectorPool};
