//! Host-side simulation of the hardware rota-boot runs on.

pub mod flash;
pub use flash::{CutKind, PowerCut, SimFlash, SimFlashError};
