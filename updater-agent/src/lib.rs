//! rota-agent: the device side of rota.
//!
//! The agent checks in with rota-server (every request signed with the device's identity
//! key), proves an assignment with signed TUF metadata and the signed SUIT envelope
//! ([`release`]), streams the image into the inactive slot through rota-boot, resuming
//! where flash says an interrupted download stopped ([`install`]), reboots into it, runs
//! the health check, and confirms or reverts ([`agent`]). Trust-anchor commands published
//! through TUF roll the device's firmware keys over before an install ([`anchors`]).
//! [`device`] holds the devices it runs on: Linux gateways, and with the feature `sim`
//! simulated ones for tests and fleets (`fleet`), on rota-boot's simulated flash and OTP.
//!
//! The TUF client is its own crate, `rota-tuf` (TUF 1.0.34 §5), re-exported as [`tuf`].

pub mod agent;
pub mod anchors;
pub mod attest;
pub mod backoff;
pub mod device;
pub mod error;
#[cfg(feature = "sim")]
pub mod firmware;
#[cfg(feature = "sim")]
pub mod fleet;
pub mod install;
pub mod release;
pub mod rotate;
pub mod server;
pub mod state;

pub use agent::{Agent, Config, Event, Outcome};
#[cfg(feature = "sim")]
pub use error::ProvisionError;
pub use error::{DeviceError, StateError, Unhealthy};
pub use rota_tuf as tuf;
