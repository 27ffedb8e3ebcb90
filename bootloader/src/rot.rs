//! The device's root of trust: write-once storage (OTP, eFuse) that holds what the
//! bootloader trusts and what it has committed to.
//!
//! Everything here only ever moves one way. A key slot, once provisioned, keeps its hash;
//! a revocation bit, once burned, stays burned; the security-version floor only rises,
//! and only as far as the device's counter has bits for ([`RootOfTrust::floor_budget`]).

use crate::dice::{CDI_LEN, Secret};

/// SHA-256 of a firmware-signing public key: the COSE `kid` rota signs with
/// (`rota_manifest::PublicKey::key_id`).
pub type KeyHash = [u8; 32];

/// An RFC 4122 UUID as SUIT carries it (vendor-id, class-id: §8.4.8.3, §8.4.8.4).
pub type Uuid = [u8; 16];

/// Write-once device storage, as the bootloader and the updater see it.
///
/// Reads take `&mut self` because on real parts they go through a peripheral.
pub trait RootOfTrust {
    type Error: core::fmt::Debug;

    /// How many key slots the device has.
    fn key_slots(&self) -> usize;

    /// The hash of the key provisioned in `slot`, or `None` for an unprovisioned slot.
    fn key_hash(&mut self, slot: usize) -> Result<Option<KeyHash>, Self::Error>;

    /// Whether `slot`'s revocation bit is burned.
    fn is_revoked(&mut self, slot: usize) -> Result<bool, Self::Error>;

    /// Burns `slot`'s revocation bit. Irreversible.
    fn revoke(&mut self, slot: usize) -> Result<(), Self::Error>;

    /// The security-version floor: no image below it may boot.
    fn floor(&mut self) -> Result<u32, Self::Error>;

    /// The highest floor the counter can represent: real OTP counters have a fixed
    /// number of bits, each burned once.
    fn floor_budget(&self) -> u32;

    /// Raises the floor to `to`; a no-op when it is already there or above.
    /// `to` must not exceed [`Self::floor_budget`]. Irreversible.
    fn raise_floor(&mut self, to: u32) -> Result<(), Self::Error>;

    /// The vendor this device accepts firmware from.
    fn vendor_id(&mut self) -> Result<Uuid, Self::Error>;

    /// The device's class: firmware for another class never runs here.
    fn class_id(&mut self) -> Result<Uuid, Self::Error>;

    /// The Unique Device Secret (TCG DICE), once per reset: the first call after a reset
    /// returns it and hides it until the next reset, so only the first code to run (the
    /// bootloader, which derives the DICE identities from it: [`crate::dice`]) ever reads
    /// it, and a later call fails. `Ok(None)`: this part holds no UDS.
    fn take_uds(&mut self) -> Result<Option<Secret<CDI_LEN>>, Self::Error>;
}

impl<T: RootOfTrust> RootOfTrust for &mut T {
    type Error = T::Error;

    fn key_slots(&self) -> usize {
        T::key_slots(self)
    }
    fn key_hash(&mut self, slot: usize) -> Result<Option<KeyHash>, Self::Error> {
        T::key_hash(self, slot)
    }
    fn is_revoked(&mut self, slot: usize) -> Result<bool, Self::Error> {
        T::is_revoked(self, slot)
    }
    fn revoke(&mut self, slot: usize) -> Result<(), Self::Error> {
        T::revoke(self, slot)
    }
    fn floor(&mut self) -> Result<u32, Self::Error> {
        T::floor(self)
    }
    fn floor_budget(&self) -> u32 {
        T::floor_budget(self)
    }
    fn raise_floor(&mut self, to: u32) -> Result<(), Self::Error> {
        T::raise_floor(self, to)
    }
    fn vendor_id(&mut self) -> Result<Uuid, Self::Error> {
        T::vendor_id(self)
    }
    fn class_id(&mut self) -> Result<Uuid, Self::Error> {
        T::class_id(self)
    }
    fn take_uds(&mut self) -> Result<Option<Secret<CDI_LEN>>, Self::Error> {
        T::take_uds(self)
    }
}
