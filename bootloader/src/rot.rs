//! The device's root of trust: write-once storage (OTP, eFuse) that holds what the
//! bootloader trusts and what it has committed to.
//!
//! Everything here only ever moves one way. A key slot, once provisioned, keeps its hash;
//! a spare slot takes a new key once ([`RootOfTrust::add_key`], through a signed
//! trust-anchor command: [`crate::anchor`]); a revocation bit, once burned, stays burned;
//! the security-version floor and the trust-anchor command counter only rise, and only
//! as far as their counters have bits for ([`RootOfTrust::floor_budget`],
//! [`RootOfTrust::anchor_budget`]); a killed UDS stays killed.

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

    /// The hash of the trusted key in `slot`, or `None` for a slot that holds none
    /// (unprovisioned, or a new key whose burn has not completed).
    fn key_hash(&mut self, slot: usize) -> Result<Option<KeyHash>, Self::Error>;

    /// `slot`'s hash cells as burned, whether or not they hold a complete key: all zero
    /// for a spare slot, part of a hash after a burn cut short.
    fn key_cells(&mut self, slot: usize) -> Result<KeyHash, Self::Error>;

    /// Burns `hash` into `slot` (the bits not yet set), checks that the slot reads back
    /// exactly `hash`, then marks the slot valid: until that last bit the key is not
    /// trusted, so a burn cut at any point leaves either no new key or the whole one,
    /// and repeating the call completes it. Irreversible. Whether `slot` may take a key
    /// is the caller's decision ([`crate::Updater::apply_anchor_command`]).
    fn add_key(&mut self, slot: usize, hash: &KeyHash) -> Result<(), Self::Error>;

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

    /// How many trust-anchor commands have been applied ([`crate::anchor`]): command
    /// `n` is accepted only when this is `n - 1`.
    fn anchor_counter(&mut self) -> Result<u32, Self::Error>;

    /// The most trust-anchor commands this root of trust can ever count; 0 when it
    /// takes none (an OTP map older than version 3).
    fn anchor_budget(&self) -> u32;

    /// Raises the trust-anchor command counter to `to`, one bit; a no-op when it is
    /// already there or above. Irreversible.
    fn advance_anchor_counter(&mut self, to: u32) -> Result<(), Self::Error>;

    /// Kills the UDS for good: [`Self::take_uds`] returns `Ok(None)` from then on, so the
    /// device never derives its DICE identities again (decommission). Irreversible.
    fn kill_uds(&mut self) -> Result<(), Self::Error>;

    /// Key slots that can still take a new key: no hash bit burned, not revoked. None
    /// where the root of trust takes no trust-anchor commands.
    fn free_key_slots(&mut self) -> Result<usize, Self::Error> {
        if self.anchor_budget() == 0 {
            return Ok(0);
        }
        let mut free = 0;
        for slot in 0..self.key_slots() {
            if self.key_cells(slot)? == [0; 32]
                && self.key_hash(slot)?.is_none()
                && !self.is_revoked(slot)?
            {
                free += 1;
            }
        }
        Ok(free)
    }

    /// The vendor this device accepts firmware from.
    fn vendor_id(&mut self) -> Result<Uuid, Self::Error>;

    /// The device's class: firmware for another class never runs here.
    fn class_id(&mut self) -> Result<Uuid, Self::Error>;

    /// The Unique Device Secret (TCG DICE), once per reset: the first call after a reset
    /// returns it and hides it until the next reset, so only the first code to run (the
    /// bootloader, which derives the DICE identities from it: [`crate::dice`]) ever reads
    /// it, and a later call fails. `Ok(None)`: this part holds no UDS, or it was killed
    /// ([`Self::kill_uds`]).
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
    fn key_cells(&mut self, slot: usize) -> Result<KeyHash, Self::Error> {
        T::key_cells(self, slot)
    }
    fn add_key(&mut self, slot: usize, hash: &KeyHash) -> Result<(), Self::Error> {
        T::add_key(self, slot, hash)
    }
    fn anchor_counter(&mut self) -> Result<u32, Self::Error> {
        T::anchor_counter(self)
    }
    fn anchor_budget(&self) -> u32 {
        T::anchor_budget(self)
    }
    fn advance_anchor_counter(&mut self, to: u32) -> Result<(), Self::Error> {
        T::advance_anchor_counter(self, to)
    }
    fn kill_uds(&mut self) -> Result<(), Self::Error> {
        T::kill_uds(self)
    }
    fn free_key_slots(&mut self) -> Result<usize, Self::Error> {
        T::free_key_slots(self)
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
