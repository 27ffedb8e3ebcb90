//! A simulated OTP / eFuse bank with real write-once semantics.
//!
//! Provisioning (key hashes, vendor and class ids, the counter's size) happens at
//! manufacturing, before the device runs. In the field each change is a sequence of
//! *burns* (operations on the [`PowerRail`]): a key slot's revocation bit, one bit of the
//! floor counter, one bit of the trust-anchor command counter (`2 ×` the key slots, as
//! in [`crate::otp_map`]), the UDS kill bit; or a new key in a spare slot, one burn per
//! hash byte with bits to set, then the slot's valid bit. Bits never clear. A torn burn
//! sets any subset of the bits it was setting.
//!
//! The floor is a thermometer code read as "index of the highest burned bit, plus one":
//! raising it to `v` burns bit `v - 1` alone, so every raise is a single-bit burn, and a
//! torn burn (the bit set or not, see [`CutKind::Torn`]) leaves the floor either where
//! it was or where it was going.

use alloc::vec;
use alloc::vec::Vec;

use super::power::{CutKind, PowerLoss, PowerRail, SplitMix};
use crate::dice::{CDI_LEN, Secret};
use crate::factory::Provisioning;
use crate::rot::{KeyHash, RootOfTrust, Uuid};

/// Why a simulated OTP operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimOtpError {
    /// The power is off.
    PowerLoss,
    /// No such key slot.
    NoSuchSlot,
    /// The counter has no bit for this floor.
    BudgetExhausted,
    /// The UDS was read since the last reset and is hidden until the next.
    UdsHidden,
    /// After a new key's hash burn the slot reads back other bits: not marked valid.
    KeyReadBack,
}

impl From<PowerLoss> for SimOtpError {
    fn from(_: PowerLoss) -> Self {
        Self::PowerLoss
    }
}

/// The OTP bank.
#[derive(Debug)]
pub struct SimOtp {
    /// Each key slot's hash cells, and whether the slot is valid (its hash complete).
    keys: Vec<KeyHash>,
    valid: Vec<bool>,
    revoked: Vec<bool>,
    floor_bits: Vec<bool>,
    anchor_bits: Vec<bool>,
    uds_killed: bool,
    vendor_id: Uuid,
    class_id: Uuid,
    /// The Unique Device Secret, and whether it is hidden (read since the last reset).
    uds: Option<[u8; CDI_LEN]>,
    uds_hidden: bool,
    burns: u64,
    rail: PowerRail,
}

impl SimOtp {
    /// A bank on `rail` as the factory burns it ([`crate::factory`]): one key slot per
    /// entry of `keys` (`None`: a spare slot), a floor counter of `floor_bits`, a
    /// trust-anchor counter of two bits per key slot, no key revoked, both counters 0.
    pub fn provision(rail: PowerRail, provisioning: &Provisioning) -> Self {
        let slots = provisioning.keys.len();
        Self {
            revoked: vec![false; slots],
            keys: provisioning
                .keys
                .iter()
                .map(|k| k.unwrap_or([0; 32]))
                .collect(),
            valid: provisioning.keys.iter().map(Option::is_some).collect(),
            floor_bits: vec![false; provisioning.floor_bits as usize],
            anchor_bits: vec![false; 2 * slots],
            uds_killed: false,
            vendor_id: provisioning.vendor_id,
            class_id: provisioning.class_id,
            uds: provisioning.uds,
            uds_hidden: false,
            burns: 0,
            rail,
        }
    }

    /// The part is reset (a reboot or a power cycle): ranges hidden until reset read again.
    pub fn reset(&mut self) {
        self.uds_hidden = false;
    }

    /// An independent copy of this bank on `rail`.
    pub fn fork(&self, rail: PowerRail) -> Self {
        Self {
            keys: self.keys.clone(),
            valid: self.valid.clone(),
            revoked: self.revoked.clone(),
            floor_bits: self.floor_bits.clone(),
            anchor_bits: self.anchor_bits.clone(),
            uds_killed: self.uds_killed,
            vendor_id: self.vendor_id,
            class_id: self.class_id,
            uds: self.uds,
            uds_hidden: false,
            burns: self.burns,
            rail,
        }
    }

    /// How many bits have been set in the field.
    pub fn burns(&self) -> u64 {
        self.burns
    }

    /// The floor, read without power (for assertions).
    pub fn floor_now(&self) -> u32 {
        thermometer(&self.floor_bits)
    }

    /// The trust-anchor command counter, read without power (for assertions).
    pub fn anchor_counter_now(&self) -> u32 {
        thermometer(&self.anchor_bits)
    }

    /// Each slot's trusted key (its hash, when valid), read without power.
    pub fn keys_now(&self) -> Vec<Option<KeyHash>> {
        self.keys
            .iter()
            .zip(&self.valid)
            .map(|(hash, &valid)| valid.then_some(*hash))
            .collect()
    }

    /// Each slot's hash cells as burned, valid or not, read without power.
    pub fn key_cells_now(&self) -> &[KeyHash] {
        &self.keys
    }

    /// Whether the UDS kill bit is burned, read without power.
    pub fn uds_killed_now(&self) -> bool {
        self.uds_killed
    }

    /// The revocation bits, read without power (for assertions).
    pub fn revoked_now(&self) -> &[bool] {
        &self.revoked
    }

    /// Burns one bit as one operation on the rail: a torn burn sets it or not.
    fn burn(rail: &PowerRail, bit: &mut bool, burns: &mut u64) -> Result<(), SimOtpError> {
        let mut byte = u8::from(*bit);
        let result = Self::program(rail, &mut byte, 1, burns);
        *bit = byte != 0;
        result
    }

    /// Sets the bits of `mask` in `byte` as one operation on the rail: a torn one sets
    /// any subset of them.
    fn program(
        rail: &PowerRail,
        byte: &mut u8,
        mask: u8,
        burns: &mut u64,
    ) -> Result<(), SimOtpError> {
        let cut = rail.begin_operation()?;
        let sets = match cut {
            Some(cut) if cut.kind == CutKind::Torn => SplitMix::new(cut).next() as u8 & mask,
            _ => mask,
        };
        *burns += u64::from((sets & !*byte).count_ones());
        *byte |= sets;
        match cut {
            Some(_) => Err(SimOtpError::PowerLoss),
            None => Ok(()),
        }
    }
}

/// The value of a thermometer counter: its highest set bit, plus one.
fn thermometer(bits: &[bool]) -> u32 {
    bits.iter()
        .rposition(|&bit| bit)
        .map_or(0, |i| i as u32 + 1)
}

impl RootOfTrust for SimOtp {
    type Error = SimOtpError;

    fn key_slots(&self) -> usize {
        self.keys.len()
    }

    fn key_hash(&mut self, slot: usize) -> Result<Option<KeyHash>, SimOtpError> {
        let hash = self.key_cells(slot)?;
        Ok(self.valid[slot].then_some(hash))
    }

    fn key_cells(&mut self, slot: usize) -> Result<KeyHash, SimOtpError> {
        self.rail.check()?;
        self.keys.get(slot).copied().ok_or(SimOtpError::NoSuchSlot)
    }

    fn add_key(&mut self, slot: usize, hash: &KeyHash) -> Result<(), SimOtpError> {
        self.rail.check()?;
        let cells = self.keys.get_mut(slot).ok_or(SimOtpError::NoSuchSlot)?;
        for (byte, &want) in cells.iter_mut().zip(hash) {
            if want & !*byte != 0 {
                Self::program(&self.rail, byte, want & !*byte, &mut self.burns)?;
            }
        }
        if cells != hash {
            return Err(SimOtpError::KeyReadBack);
        }
        Self::burn(&self.rail, &mut self.valid[slot], &mut self.burns)
    }

    fn is_revoked(&mut self, slot: usize) -> Result<bool, SimOtpError> {
        self.rail.check()?;
        self.revoked
            .get(slot)
            .copied()
            .ok_or(SimOtpError::NoSuchSlot)
    }

    fn revoke(&mut self, slot: usize) -> Result<(), SimOtpError> {
        self.rail.check()?;
        let bit = self.revoked.get_mut(slot).ok_or(SimOtpError::NoSuchSlot)?;
        Self::burn(&self.rail, bit, &mut self.burns)
    }

    fn floor(&mut self) -> Result<u32, SimOtpError> {
        self.rail.check()?;
        Ok(self.floor_now())
    }

    fn floor_budget(&self) -> u32 {
        self.floor_bits.len() as u32
    }

    fn raise_floor(&mut self, to: u32) -> Result<(), SimOtpError> {
        self.rail.check()?;
        if to <= self.floor_now() {
            return Ok(());
        }
        let bit = self
            .floor_bits
            .get_mut(to as usize - 1)
            .ok_or(SimOtpError::BudgetExhausted)?;
        Self::burn(&self.rail, bit, &mut self.burns)
    }

    fn anchor_counter(&mut self) -> Result<u32, SimOtpError> {
        self.rail.check()?;
        Ok(self.anchor_counter_now())
    }

    fn anchor_budget(&self) -> u32 {
        self.anchor_bits.len() as u32
    }

    fn advance_anchor_counter(&mut self, to: u32) -> Result<(), SimOtpError> {
        self.rail.check()?;
        if to <= self.anchor_counter_now() {
            return Ok(());
        }
        let bit = self
            .anchor_bits
            .get_mut(to as usize - 1)
            .ok_or(SimOtpError::BudgetExhausted)?;
        Self::burn(&self.rail, bit, &mut self.burns)
    }

    fn kill_uds(&mut self) -> Result<(), SimOtpError> {
        self.rail.check()?;
        Self::burn(&self.rail, &mut self.uds_killed, &mut self.burns)
    }

    fn vendor_id(&mut self) -> Result<Uuid, SimOtpError> {
        self.rail.check()?;
        Ok(self.vendor_id)
    }

    fn class_id(&mut self) -> Result<Uuid, SimOtpError> {
        self.rail.check()?;
        Ok(self.class_id)
    }

    /// Hidden in the same step as it is read: no power cut can fall between the read and
    /// the hide (a real part's read-and-lock is one register access). Once killed:
    /// `None`, still hidden.
    fn take_uds(&mut self) -> Result<Option<Secret<CDI_LEN>>, SimOtpError> {
        self.rail.check()?;
        if self.uds_hidden {
            return Err(SimOtpError::UdsHidden);
        }
        self.uds_hidden = true;
        Ok(self.uds.filter(|_| !self.uds_killed).map(Secret::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::power::PowerCut;

    fn otp(rail: &PowerRail) -> SimOtp {
        SimOtp::provision(
            rail.clone(),
            &Provisioning {
                keys: vec![Some([1; 32]), None],
                vendor_id: [2; 16],
                class_id: [3; 16],
                floor_bits: 8,
                uds: Some([4; 32]),
            },
        )
    }

    #[test]
    fn uds_is_read_once_per_reset_then_hidden() {
        let rail = PowerRail::new();
        let mut otp = otp(&rail);
        assert_eq!(otp.take_uds().unwrap().unwrap().expose(), &[4; 32]);
        // The application, after the bootloader: hidden.
        assert_eq!(otp.take_uds().unwrap_err(), SimOtpError::UdsHidden);
        assert_eq!(otp.take_uds().unwrap_err(), SimOtpError::UdsHidden);
        // The next boot reads it again, once.
        otp.reset();
        assert_eq!(otp.take_uds().unwrap().unwrap().expose(), &[4; 32]);
        assert_eq!(otp.take_uds().unwrap_err(), SimOtpError::UdsHidden);
    }

    #[test]
    fn with_the_power_off_the_uds_is_not_read() {
        let rail = PowerRail::new();
        let mut otp = otp(&rail);
        // The power fails (here at a burn): nothing reads until it is back.
        rail.schedule_cut(PowerCut {
            at: rail.operations(),
            kind: CutKind::Before,
            seed: 0,
        });
        assert_eq!(otp.revoke(1), Err(SimOtpError::PowerLoss));
        assert_eq!(otp.take_uds().unwrap_err(), SimOtpError::PowerLoss);
        // Power back means a reset: the next boot reads it, once.
        rail.power_on();
        otp.reset();
        assert!(otp.take_uds().unwrap().is_some());
        assert_eq!(otp.take_uds().unwrap_err(), SimOtpError::UdsHidden);
    }

    #[test]
    fn floor_only_rises_within_its_budget() {
        let rail = PowerRail::new();
        let mut otp = otp(&rail);
        assert_eq!(otp.floor(), Ok(0));
        otp.raise_floor(3).unwrap();
        otp.raise_floor(2).unwrap();
        assert_eq!(otp.floor(), Ok(3));
        otp.raise_floor(8).unwrap();
        assert_eq!(otp.raise_floor(9), Err(SimOtpError::BudgetExhausted));
        assert_eq!(otp.floor(), Ok(8));
        assert_eq!(otp.burns(), 2);
    }

    #[test]
    fn revocation_is_permanent_and_per_slot() {
        let rail = PowerRail::new();
        let mut otp = otp(&rail);
        otp.revoke(1).unwrap();
        otp.revoke(1).unwrap();
        assert_eq!(otp.is_revoked(0), Ok(false));
        assert_eq!(otp.is_revoked(1), Ok(true));
        assert_eq!(otp.revoke(2), Err(SimOtpError::NoSuchSlot));
        assert_eq!(otp.burns(), 1);
    }

    /// A burn cut at any point leaves the floor where it was or where it was going,
    /// and torn burns go both ways over seeds.
    #[test]
    fn a_cut_burn_leaves_the_floor_before_or_after() {
        let mut outcomes = [false; 2];
        for kind in [CutKind::Before, CutKind::After, CutKind::Torn] {
            for seed in 0..32 {
                let rail = PowerRail::new();
                let mut otp = otp(&rail);
                otp.raise_floor(2).unwrap();
                rail.schedule_cut(PowerCut { at: 1, kind, seed });
                assert_eq!(otp.raise_floor(5), Err(SimOtpError::PowerLoss));
                assert_eq!(otp.floor(), Err(SimOtpError::PowerLoss));
                rail.power_on();
                let floor = otp.floor().unwrap();
                assert!(floor == 2 || floor == 5, "{kind:?}: floor {floor}");
                if kind == CutKind::Torn {
                    outcomes[(floor == 5) as usize] = true;
                }
                match kind {
                    CutKind::Before => assert_eq!(floor, 2),
                    CutKind::After => assert_eq!(floor, 5),
                    CutKind::Torn => {}
                }
            }
        }
        assert_eq!(outcomes, [true, true]);
    }

    #[test]
    fn shares_the_operation_count_with_flash() {
        use crate::sim::SimFlash;
        use embedded_storage::nor_flash::NorFlash;
        let rail = PowerRail::new();
        let mut otp = otp(&rail);
        let mut flash = SimFlash::<256, 4>::on_rail(rail.clone(), 1, 0xFF);
        flash.write(0, &[0; 4]).unwrap();
        otp.revoke(0).unwrap();
        flash.write(4, &[0; 4]).unwrap();
        assert_eq!(rail.operations(), 3);
    }
}
