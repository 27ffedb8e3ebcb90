//! rota-boot's DICE layer: from the UDS and the measurement of the image it is about to
//! boot, the DeviceID key (the UDS's own, stable for the device's life), the Alias key
//! (the measured image's, changing with it) and the Alias certificate the DeviceID signs;
//! then the hand-off the application receives. The plan: `docs/design/attestation.md`.
//!
//! The hand-off area (a fixed RAM region the board names) holds, little-endian:
//!
//! ```text
//! offset  size  field
//!      0     4  magic "RDH1", written last: an area without it holds nothing
//!      4    32  Alias private key seed
//!     36    32  DeviceID public key (Ed25519)
//!     68     2  Alias certificate length N (≤ MAX_CERT_LEN)
//!     70     N  Alias certificate (Open DICE CBOR certificate, `dice::certificate`)
//!   70+N     4  CRC-32C of bytes 4 .. 70+N
//! ```
//!
//! The UDS, the CDIs and the DeviceID private key never reach it: they are
//! [`Secret`]s, wiped when [`derive_into`] returns.
//!
//! Keys are Ed25519 on salty's primitives, which the Cortex-M4 bootloader already links
//! to verify images (`dice/ed25519.rs`; ed25519-dalek's signing would cost that
//! bootloader ~24 KB of flash). Ed25519 signatures are deterministic (RFC 8032), so the
//! certificates are still byte for byte Open DICE's known answers.

use crc::{CRC_32_ISCSI, Crc, NoTable};

use super::ed25519::SigningKey;
use super::{
    CDI_LEN, CERT_LEN, CONFIG_LEN, Cdis, DiceSigner, HASH_LEN, Inputs, MAX_CERT_LEN, Mode,
    SEED_LEN, Secret, certificate, key_seed,
};
use crate::layout::Slot;
use crate::rot::KeyHash;

const CRC: Crc<u32, NoTable> = Crc::<u32, NoTable>::new(&CRC_32_ISCSI);
const MAGIC: [u8; 4] = *b"RDH1";
const SEED_AT: usize = 4;
const DEVICE_ID_AT: usize = 36;
const CERT_LEN_AT: usize = 68;
const CERT_AT: usize = 70;

/// The largest hand-off: what a board reserves for the area.
pub const MAX_HANDOFF_LEN: usize = CERT_AT + MAX_CERT_LEN + 4;

/// What rota-boot measures of the image it boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measurement {
    /// The image's SHA-256 digest, as verified against its envelope.
    pub image_digest: [u8; 32],
    /// The envelope's security version and sequence number.
    pub security_version: u64,
    pub sequence: u64,
    /// The slot it runs from.
    pub slot: Slot,
    /// The hash of the key that signed it, as the root of trust holds it.
    pub signer: KeyHash,
    /// SHA-256 of the bootloader's own code.
    pub bootloader: [u8; 32],
}

impl Measurement {
    /// The Open DICE inputs (`docs/design/attestation.md`, "Measurement → Open DICE
    /// inputs"): digests in the first 32 bytes of their 64-byte inputs, the rest zero;
    /// the inline config `security_version ‖ sequence ‖ slot ‖ 15 zero bytes ‖ bootloader`.
    pub fn inputs(&self, mode: Mode) -> Inputs {
        let mut code_hash = [0; HASH_LEN];
        code_hash[..32].copy_from_slice(&self.image_digest);
        let mut authority_hash = [0; HASH_LEN];
        authority_hash[..32].copy_from_slice(&self.signer);
        let mut config = [0; CONFIG_LEN];
        config[..8].copy_from_slice(&self.security_version.to_le_bytes());
        config[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        config[16] = match self.slot {
            Slot::A => 0,
            Slot::B => 1,
        };
        config[32..].copy_from_slice(&self.bootloader);
        Inputs {
            code_hash,
            config,
            authority_hash,
            mode,
            hidden: [0; 64],
        }
    }
}

impl Measurement {
    /// The measurement [`Measurement::inputs`] encoded, read back from the values a
    /// certificate carries (a verifier's side): `None` when they are not in that layout
    /// (non-zero padding, a slot byte other than 0 or 1).
    pub fn from_inputs(
        code_hash: &[u8; HASH_LEN],
        config: &[u8; CONFIG_LEN],
        authority_hash: &[u8; HASH_LEN],
    ) -> Option<Measurement> {
        let zero = |bytes: &[u8]| bytes.iter().all(|&b| b == 0);
        if !zero(&code_hash[32..]) || !zero(&authority_hash[32..]) || !zero(&config[17..32]) {
            return None;
        }
        let slot = match config[16] {
            0 => Slot::A,
            1 => Slot::B,
            _ => return None,
        };
        let word = |at: usize| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(&config[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let half = |bytes: &[u8]| {
            let mut out = [0; 32];
            out.copy_from_slice(&bytes[..32]);
            out
        };
        Some(Measurement {
            image_digest: half(code_hash),
            security_version: word(0),
            sequence: word(8),
            slot,
            signer: half(authority_hash),
            bootloader: half(&config[32..]),
        })
    }
}

/// What the application receives from rota-boot.
pub struct Handoff {
    /// The Alias key's seed: the application's attestation key.
    pub alias_seed: Secret<SEED_LEN>,
    /// The DeviceID public key (its certificate comes from the factory).
    pub device_id: [u8; 32],
    certificate: [u8; MAX_CERT_LEN],
    certificate_len: usize,
}

impl Handoff {
    /// The Alias certificate, signed by the DeviceID key.
    pub fn certificate(&self) -> &[u8] {
        &self.certificate[..self.certificate_len]
    }

    /// The Alias public key.
    pub fn alias_public_key(&self) -> [u8; 32] {
        SigningKey::from_seed(&self.alias_seed).public_key()
    }

    /// Writes the hand-off into `area`, its magic last; returns the length written.
    pub fn write(&self, area: &mut [u8]) -> Result<usize, HandoffError> {
        let len = CERT_AT + self.certificate_len + 4;
        if area.len() < len {
            return Err(HandoffError::AreaTooSmall);
        }
        area[..4].fill(0);
        area[SEED_AT..DEVICE_ID_AT].copy_from_slice(self.alias_seed.expose());
        area[DEVICE_ID_AT..CERT_LEN_AT].copy_from_slice(&self.device_id);
        area[CERT_AT..CERT_AT + self.certificate_len].copy_from_slice(self.certificate());
        Ok(seal(area, self.certificate_len))
    }

    /// Reads a hand-off from `area` (the application, once, at start); then wipe the area.
    pub fn read(area: &[u8]) -> Result<Handoff, HandoffError> {
        if area.len() < CERT_AT || area[..4] != MAGIC {
            return Err(HandoffError::Absent);
        }
        let certificate_len = usize::from(u16::from_le_bytes([
            area[CERT_LEN_AT],
            area[CERT_LEN_AT + 1],
        ]));
        let len = CERT_AT + certificate_len + 4;
        if certificate_len > MAX_CERT_LEN || area.len() < len {
            return Err(HandoffError::Corrupt);
        }
        let crc = u32::from_le_bytes([area[len - 4], area[len - 3], area[len - 2], area[len - 1]]);
        if CRC.checksum(&area[SEED_AT..CERT_AT + certificate_len]) != crc {
            return Err(HandoffError::Corrupt);
        }
        let mut seed = [0; SEED_LEN];
        seed.copy_from_slice(&area[SEED_AT..DEVICE_ID_AT]);
        let mut device_id = [0; 32];
        device_id.copy_from_slice(&area[DEVICE_ID_AT..CERT_LEN_AT]);
        let mut certificate = [0; MAX_CERT_LEN];
        certificate[..certificate_len].copy_from_slice(&area[CERT_AT..CERT_AT + certificate_len]);
        Ok(Handoff {
            alias_seed: Secret::new(seed),
            device_id,
            certificate,
            certificate_len,
        })
    }

    /// Zeroes the area (the application, after reading it).
    pub fn wipe(area: &mut [u8]) {
        zeroize::Zeroize::zeroize(area);
    }
}

/// Why no hand-off could be written or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoffError {
    /// The area is smaller than [`MAX_HANDOFF_LEN`] needs for this hand-off.
    AreaTooSmall,
    /// No magic: nothing was handed off (or the write was cut before it ended).
    Absent,
    /// The magic is there but the length or the CRC is not right.
    Corrupt,
}

/// The DeviceID public key of the device whose UDS is `uds`: what a factory computes
/// once, beside the OTP it burns, for the manufacturer CA to certify. The same derivation
/// as [`derive()`]'s, so the key certified is the key that signs every Alias certificate.
pub fn device_id(uds: &Secret<CDI_LEN>) -> [u8; 32] {
    SigningKey::from_seed(&Cdis::from_uds(uds).private_key_seed()).public_key()
}

/// Completes a hand-off whose seed, DeviceID key and certificate (`certificate_len`
/// bytes) are in `area` and whose magic is clear: the length, the CRC, then the magic.
/// Returns the hand-off's length; `area` holds at least that.
fn seal(area: &mut [u8], certificate_len: usize) -> usize {
    let end = CERT_AT + certificate_len;
    area[CERT_LEN_AT..CERT_AT].copy_from_slice(&(certificate_len as u16).to_le_bytes());
    let crc = CRC.checksum(&area[SEED_AT..end]);
    area[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    area[..4].copy_from_slice(&MAGIC);
    end + 4
}

/// The DICE layer: takes the UDS (and drops it, wiped, with every secret derived from it
/// but the Alias seed), returns what the application receives.
pub fn derive(
    uds: Secret<CDI_LEN>,
    measurement: &Measurement,
    mode: Mode,
) -> Result<Handoff, HandoffError> {
    let mut area = [0; MAX_HANDOFF_LEN];
    derive_into(uds, measurement, mode, &mut area);
    let handoff = Handoff::read(&area);
    Handoff::wipe(&mut area);
    handoff
}

/// [`derive()`], writing the hand-off straight into the hand-off area (what a bootloader
/// does: no copy of the certificate or the Alias seed is left anywhere else); returns the
/// length written. The magic is cleared first and written last.
// Not inlined: in its caller's frame (the Cortex-M4 bootloader's `decide`) its Ed25519
// keys and certificate build cost 236 bytes more flash.
#[inline(never)]
pub fn derive_into(
    uds: Secret<CDI_LEN>,
    measurement: &Measurement,
    mode: Mode,
    area: &mut [u8; MAX_HANDOFF_LEN],
) -> usize {
    area[..4].fill(0);
    let uds_cdis = Cdis::from_uds(&uds);
    drop(uds);
    let device_id = SigningKey::from_seed(&uds_cdis.private_key_seed());
    let inputs = measurement.inputs(mode);
    // The sealing CDI is handed to no one: only the attestation CDI is derived.
    let alias_seed = key_seed(&uds_cdis.next_attest(&inputs));
    drop(uds_cdis);
    let alias_public = SigningKey::from_seed(&alias_seed).public_key();
    area[SEED_AT..DEVICE_ID_AT].copy_from_slice(alias_seed.expose());
    area[DEVICE_ID_AT..CERT_LEN_AT].copy_from_slice(&device_id.public_key());
    // The area always holds a certificate: MAX_HANDOFF_LEN leaves MAX_CERT_LEN for it.
    const _: () = assert!(CERT_LEN <= MAX_CERT_LEN);
    let certificate_len = certificate(
        &alias_public,
        &device_id,
        &inputs,
        &mut area[CERT_AT..CERT_AT + MAX_CERT_LEN],
    )
    .unwrap_or(0);
    seal(area, certificate_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, VerifyingKey};
    use minicbor::Decoder;

    fn v1() -> Measurement {
        Measurement {
            image_digest: [1; 32],
            security_version: 1,
            sequence: 1,
            slot: Slot::A,
            signer: [9; 32],
            bootloader: [7; 32],
        }
    }

    fn derive_for(uds: u8, m: &Measurement) -> Handoff {
        derive(Secret::new([uds; 32]), m, Mode::Normal).unwrap()
    }

    /// The certificate's payload, if its COSE_Sign1 signature verifies with `key`.
    fn verified_payload(certificate: &[u8], key: &[u8; 32]) -> Option<alloc::vec::Vec<u8>> {
        let mut d = Decoder::new(certificate);
        assert_eq!(d.array().unwrap(), Some(4));
        let protected = d.bytes().unwrap().to_vec();
        assert_eq!(d.map().unwrap(), Some(0));
        let payload = d.bytes().unwrap().to_vec();
        let signature = Signature::from_slice(d.bytes().unwrap()).unwrap();
        let mut tbs = alloc::vec::Vec::new();
        let mut e = minicbor::Encoder::new(&mut tbs);
        e.array(4).unwrap();
        e.str("Signature1").unwrap();
        e.bytes(&protected).unwrap();
        e.bytes(&[]).unwrap();
        e.bytes(&payload).unwrap();
        VerifyingKey::from_bytes(key)
            .unwrap()
            .verify_strict(&tbs, &signature)
            .ok()
            .map(|()| payload)
    }

    #[test]
    fn after_an_update_the_alias_key_changes_and_the_device_id_does_not() {
        let before = derive_for(3, &v1());
        let v2 = Measurement {
            image_digest: [2; 32],
            sequence: 2,
            slot: Slot::B,
            ..v1()
        };
        let after = derive_for(3, &v2);
        assert_eq!(before.device_id, after.device_id);
        assert_eq!(before.device_id, device_id(&Secret::new([3; 32])));
        assert_ne!(before.alias_public_key(), after.alias_public_key());
        // The same image booted again: the same keys (derived, never stored).
        let again = derive_for(3, &v1());
        assert_eq!(again.alias_public_key(), before.alias_public_key());
    }

    #[test]
    fn a_measurement_reads_back_from_its_inputs_and_nothing_else_does() {
        let m = Measurement {
            slot: Slot::B,
            security_version: u64::MAX,
            ..v1()
        };
        let i = m.inputs(Mode::Normal);
        assert_eq!(
            Measurement::from_inputs(&i.code_hash, &i.config, &i.authority_hash),
            Some(m)
        );
        for at in [16, 17, 31] {
            let mut config = i.config;
            config[at] = 2;
            assert_eq!(
                Measurement::from_inputs(&i.code_hash, &config, &i.authority_hash),
                None,
                "config byte {at}"
            );
        }
        let mut code_hash = i.code_hash;
        code_hash[63] = 1;
        assert_eq!(
            Measurement::from_inputs(&code_hash, &i.config, &i.authority_hash),
            None
        );
    }

    #[test]
    fn another_bootloader_or_another_device_changes_the_keys() {
        let base = derive_for(3, &v1());
        let rebuilt = derive_for(
            3,
            &Measurement {
                bootloader: [8; 32],
                ..v1()
            },
        );
        assert_ne!(base.alias_public_key(), rebuilt.alias_public_key());
        // A clone: the same image on another UDS is another DeviceID.
        let clone = derive_for(4, &v1());
        assert_ne!(base.device_id, clone.device_id);
        assert_ne!(base.alias_public_key(), clone.alias_public_key());
    }

    #[test]
    fn the_alias_certificate_is_signed_by_the_device_id_and_carries_the_measurement() {
        let handoff = derive_for(3, &v1());
        let payload = verified_payload(handoff.certificate(), &handoff.device_id)
            .expect("signed by the DeviceID key");
        let inputs = v1().inputs(Mode::Normal);
        let contains = |needle: &[u8]| payload.windows(needle.len()).any(|w| w == needle);
        assert!(contains(&inputs.code_hash));
        assert!(contains(&inputs.config));
        assert!(contains(&inputs.authority_hash));
        assert!(contains(&handoff.alias_public_key()));
        // Signed by another device's DeviceID: refused.
        let other = derive_for(4, &v1());
        assert!(verified_payload(handoff.certificate(), &other.device_id).is_none());
    }

    #[test]
    fn handoff_round_trips_and_a_cut_or_corrupt_one_is_refused() {
        let handoff = derive_for(3, &v1());
        let mut area = [0u8; MAX_HANDOFF_LEN];
        let len = handoff.write(&mut area).unwrap();
        let read = Handoff::read(&area).unwrap();
        assert_eq!(read.alias_seed.expose(), handoff.alias_seed.expose());
        assert_eq!(read.device_id, handoff.device_id);
        assert_eq!(read.certificate(), handoff.certificate());
        // A write cut before its magic: nothing handed off.
        let mut cut = area;
        cut[..4].fill(0);
        assert_eq!(Handoff::read(&cut).err(), Some(HandoffError::Absent));
        // A flipped byte anywhere after the magic: refused.
        for at in [4, 40, 69, 100, len - 1] {
            let mut bad = area;
            bad[at] ^= 1;
            assert!(Handoff::read(&bad).is_err(), "byte {at}");
        }
        // Wiped: gone.
        Handoff::wipe(&mut area);
        assert!(area.iter().all(|&b| b == 0));
        assert_eq!(Handoff::read(&area).err(), Some(HandoffError::Absent));
        assert_eq!(
            handoff.write(&mut [0u8; 100]).err(),
            Some(HandoffError::AreaTooSmall)
        );
    }
}
