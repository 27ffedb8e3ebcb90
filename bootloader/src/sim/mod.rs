//! Host-side simulation of the hardware rota-boot runs on: NOR flash and OTP on one
//! power rail that can be cut at any operation.

pub mod flash;
pub mod otp;
pub mod power;

pub use flash::{SimFlash, SimFlashError};
pub use otp::{SimOtp, SimOtpError};
pub use power::{CutKind, PowerCut, PowerLoss, PowerRail};
