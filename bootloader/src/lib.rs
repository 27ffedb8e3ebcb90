//! rota's A/B bootloader core: it decides what runs, from flash it cannot trust and
//! power that can fail at any instant.
//!
//! - [`Layout`]: the journal, slot A and slot B on any NOR flash geometry.
//! - [`RootOfTrust`]: the device's write-once anchors (key hashes, revocation bits, the
//!   security-version floor, vendor and class).
//! - [`verify_slot`]: the one image check, through `rota-manifest`.
//! - [`Bootloader::decide`]: trial, revert, floor, recovery.
//! - [`Updater`]: what running firmware calls to stage, mark pending, confirm, revert
//!   and revoke.
//! - [`Journal`]: the power-safe boot state between them.
//! - [`otp_map`]: a root of trust in plain OTP cells, with a documented map.
//! - [`anchor`]: signed trust-anchor commands, which add and revoke firmware keys in
//!   the field ([`Updater::apply_anchor_command`]).
//!
//! Everything here is `no_std` and allocation-free and generic over
//! [`embedded_storage::nor_flash::NorFlash`]; flash geometry is always a parameter.
//! Two host-side modules need `alloc` and stay off the boot path: `factory` (feature
//! `factory`) writes what a device leaves the factory with, its flash and its root of
//! trust; `sim` (feature `sim`, and in tests) simulates NOR flash and OTP with their real
//! programming rules and power cuts, torn writes and erases included.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "factory"))]
extern crate alloc;

pub mod anchor;
pub mod board;
pub mod boot;
pub mod dice;
pub mod error;
#[cfg(any(test, feature = "factory"))]
pub mod factory;
pub mod header;
pub mod journal;
pub mod layout;
pub mod otp_map;
pub mod rot;
pub mod updater;
pub mod verify;

#[cfg(any(test, feature = "sim"))]
pub mod sim;

pub use anchor::{AnchorCommand, AnchorError, Change};
pub use boot::{BootDecision, Bootloader};
pub use error::Error;
pub use journal::{BootState, Journal, Revert, RevertReason};
pub use layout::{Layout, LayoutError, Region, Slot};
pub use rot::{KeyHash, RootOfTrust, Uuid};
pub use updater::{AnchorOutcome, Progress, Status, TrustStatus, Updater};
#[cfg(feature = "compact-ed25519")]
pub use verify::CompactBootAuth;
pub use verify::{BootProfile, EnvelopeAuth, Rejection, SuitDecoder, VerifiedImage, verify_slot};
