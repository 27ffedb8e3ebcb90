//! rota-agent: the device side of rota.
//!
//! The agent checks in with rota-server (every request signed with the device's identity
//! key), proves an assignment with signed TUF metadata and the signed SUIT envelope
//! ([`release`]), streams the image into the inactive slot through rota-boot, resuming
//! where flash says an interrupted download stopped ([`install`]), reboots into it, runs
//! the health check, and confirms or reverts ([`agent`]). [`device`] holds the devices it
//! runs on: simulated ones for tests and fleets ([`fleet`]), and Linux gateways.
//!
//! The TUF client is its own crate, `rota-tuf` (TUF 1.0.34 §5), re-exported as [`tuf`].

pub mod agent;
pub mod backoff;
pub mod device;
pub mod error;
pub mod firmware;
pub mod fleet;
pub mod install;
pub mod release;
pub mod server;
pub mod state;

pub use agent::{Agent, Config, Event, Outcome};
pub use error::{DeviceError, ProvisionError, StateError, Unhealthy};
pub use rota_tuf as tuf;
