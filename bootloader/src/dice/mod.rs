//! DICE layering (TCG DICE): the secrets a boot stage hands the next, derived exactly as
//! the Open Profile for DICE v2.5 derives them (google/open-dice, `src/dice.c`), so a
//! verifier that knows that profile knows rota's.
//!
//! A layer holds two Compound Device Identifiers, `CDI_Attest` and `CDI_Seal` (the first
//! layer holds the Unique Device Secret as both). It measures the next layer into
//! [`Inputs`] and derives the next layer's CDIs (Open DICE §"CDI Values"):
//!
//! ```text
//! H = SHA-512, KDF = HKDF-SHA512 (RFC 5869)
//! attest_hash = H(code ‖ config ‖ authority ‖ mode ‖ hidden)   64 + 64 + 64 + 1 + 64 bytes
//! seal_hash   = H(authority ‖ mode ‖ hidden)
//! CDI_Attest' = KDF(32, ikm = CDI_Attest, salt = attest_hash, info = "CDI_Attest")
//! CDI_Seal'   = KDF(32, ikm = CDI_Seal,   salt = seal_hash,   info = "CDI_Seal")
//! ```
//!
//! A CDI yields the layer's attestation key (§"Key Derivation"): the private key seed is
//! `KDF(32, CDI_Attest, ASYM_SALT, "Key Pair")`, and a key's identifier is
//! `KDF(20, public key, ID_SALT, "ID")`. Every secret here is a [`Secret`], wiped from RAM
//! when it is dropped, so a stage that lets go of the UDS, a CDI or a seed before it jumps
//! leaves none of them behind.
//!
//! No heap, no `std`: the bootloader runs this before it jumps.

mod cert;
mod ed25519;
mod layer;

pub use cert::{CERT_LEN, CertError, DiceSigner, MAX_CERT_LEN, certificate, label};
pub use layer::{
    Handoff, HandoffError, MAX_HANDOFF_LEN, Measurement, derive, derive_into, device_id,
};

use salty::Sha512;
use zeroize::Zeroize;

/// Length of a CDI and of the Unique Device Secret.
pub const CDI_LEN: usize = 32;
/// Length of a measurement hash (SHA-512).
pub const HASH_LEN: usize = 64;
/// Length of the inline configuration input.
pub const CONFIG_LEN: usize = 64;
/// Length of the hidden input.
pub const HIDDEN_LEN: usize = 64;
/// Length of a private key seed.
pub const SEED_LEN: usize = 32;
/// Length of a key identifier.
pub const ID_LEN: usize = 20;

/// Open DICE's salt for deriving a key pair from a CDI (`kAsymSalt`).
const ASYM_SALT: [u8; 64] = [
    0x63, 0xB6, 0xA0, 0x4D, 0x2C, 0x07, 0x7F, 0xC1, 0x0F, 0x63, 0x9F, 0x21, 0xDA, 0x79, 0x38, 0x44,
    0x35, 0x6C, 0xC2, 0xB0, 0xB4, 0x41, 0xB3, 0xA7, 0x71, 0x24, 0x03, 0x5C, 0x03, 0xF8, 0xE1, 0xBE,
    0x60, 0x35, 0xD3, 0x1F, 0x28, 0x28, 0x21, 0xA7, 0x45, 0x0A, 0x02, 0x22, 0x2A, 0xB1, 0xB3, 0xCF,
    0xF1, 0x67, 0x9B, 0x05, 0xAB, 0x1C, 0xA5, 0xD1, 0xAF, 0xFB, 0x78, 0x9C, 0xCD, 0x2B, 0x0B, 0x3B,
];

/// Open DICE's salt for deriving a key identifier (`kIdSalt`).
const ID_SALT: [u8; 64] = [
    0xDB, 0xDB, 0xAE, 0xBC, 0x80, 0x20, 0xDA, 0x9F, 0xF0, 0xDD, 0x5A, 0x24, 0xC8, 0x3A, 0xA5, 0xA5,
    0x42, 0x86, 0xDF, 0xC2, 0x63, 0x03, 0x1E, 0x32, 0x9B, 0x4D, 0xA1, 0x48, 0x43, 0x06, 0x59, 0xFE,
    0x62, 0xCD, 0xB5, 0xB7, 0xE1, 0xE0, 0x0F, 0xC6, 0x80, 0x30, 0x67, 0x11, 0xEB, 0x44, 0x4A, 0xF7,
    0x72, 0x09, 0x35, 0x94, 0x96, 0xFC, 0xFF, 0x1D, 0xB9, 0x52, 0x0B, 0xA5, 0x1C, 0x7B, 0x29, 0xEA,
];

/// Secret bytes (the UDS, a CDI, a private key seed), zeroed when dropped.
pub struct Secret<const N: usize>([u8; N]);

impl<const N: usize> Secret<N> {
    /// Takes `bytes`; the caller's copy is its own to wipe.
    pub fn new(bytes: [u8; N]) -> Self {
        Self(bytes)
    }

    /// The bytes, for the one use that needs them (a KDF, a key from its seed).
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> Drop for Secret<N> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<const N: usize> core::fmt::Debug for Secret<N> {
    /// Never the bytes.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Secret<{N}>(…)")
    }
}

/// What the layer being booted is running as (Open DICE §"Mode Value Details").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// The device or this layer is not set up yet.
    NotInitialized = 0,
    /// Production: every security mechanism on.
    Normal = 1,
    /// Debugging enabled (for example a debug port open).
    Debug = 2,
    /// Maintenance or recovery.
    Maintenance = 3,
}

/// The measurement of the next layer (Open DICE §"Input Values").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inputs {
    /// A hash of the code the next layer runs.
    pub code_hash: [u8; HASH_LEN],
    /// The security-relevant configuration, inline.
    pub config: [u8; CONFIG_LEN],
    /// A hash of who may sign the next layer's code.
    pub authority_hash: [u8; HASH_LEN],
    pub mode: Mode,
    /// Values mixed in without being reported (not attested, only sealed and derived).
    pub hidden: [u8; HIDDEN_LEN],
}

impl Inputs {
    /// Every input zero, mode not initialised (Open DICE's "zero input" case).
    pub const ZERO: Inputs = Inputs {
        code_hash: [0; HASH_LEN],
        config: [0; CONFIG_LEN],
        authority_hash: [0; HASH_LEN],
        mode: Mode::NotInitialized,
        hidden: [0; HIDDEN_LEN],
    };
}

/// A layer's two CDIs.
#[derive(Debug)]
pub struct Cdis {
    pub attest: Secret<CDI_LEN>,
    pub seal: Secret<CDI_LEN>,
}

impl Cdis {
    /// The first layer's: the Unique Device Secret as both CDIs (Open DICE §"UDS").
    pub fn from_uds(uds: &Secret<CDI_LEN>) -> Self {
        Self {
            attest: Secret::new(*uds.expose()),
            seal: Secret::new(*uds.expose()),
        }
    }

    /// The next layer's CDIs, given its measurement (the derivation in the module docs).
    pub fn next(&self, inputs: &Inputs) -> Cdis {
        Cdis {
            attest: self.next_attest(inputs),
            seal: kdf(
                self.seal.expose(),
                &sealed_inputs(Sha512::new(), inputs).finalize(),
                b"CDI_Seal",
            ),
        }
    }

    /// The next layer's `CDI_Attest` alone: all a layer needs that hands on only the
    /// next layer's key seed ([`key_seed`]), as rota-boot does.
    pub fn next_attest(&self, inputs: &Inputs) -> Secret<CDI_LEN> {
        let attest_hash = Sha512::new()
            .updated(&inputs.code_hash)
            .updated(&inputs.config);
        kdf(
            self.attest.expose(),
            &sealed_inputs(attest_hash, inputs).finalize(),
            b"CDI_Attest",
        )
    }

    /// The seed of this layer's attestation key pair (Open DICE
    /// `DiceDeriveCdiPrivateKeySeed`).
    pub fn private_key_seed(&self) -> Secret<SEED_LEN> {
        key_seed(&self.attest)
    }
}

/// The seed of the attestation key pair of the layer whose `CDI_Attest` is `cdi_attest`.
pub fn key_seed(cdi_attest: &Secret<CDI_LEN>) -> Secret<SEED_LEN> {
    kdf(cdi_attest.expose(), &ASYM_SALT, b"Key Pair")
}

/// `hash` continued with the inputs both CDIs cover: authority, mode, hidden.
fn sealed_inputs(mut hash: Sha512, inputs: &Inputs) -> Sha512 {
    hash.update(&inputs.authority_hash);
    hash.update(&[inputs.mode as u8]);
    hash.update(&inputs.hidden);
    hash
}

/// A key's identifier (Open DICE `DiceDeriveCdiCertificateId`): 20 bytes derived from its
/// encoded public key, top bit clear; the serial number and key id of the certificates
/// that name it.
pub fn key_id(public_key: &[u8]) -> [u8; ID_LEN] {
    let okm = hkdf(public_key, &ID_SALT, b"ID");
    let mut id = [0; ID_LEN];
    id.copy_from_slice(&okm.expose()[..ID_LEN]);
    // The top bit cleared, so the id is a positive integer (an X.509 serial number).
    id[0] &= 0x7f;
    id
}

/// HKDF-SHA512 (RFC 5869) of 32 bytes.
fn kdf(ikm: &[u8; 32], salt: &[u8; 64], info: &[u8]) -> Secret<32> {
    let okm = hkdf(ikm, salt, info);
    let mut out = Secret::new([0; 32]);
    out.0.copy_from_slice(&okm.expose()[..32]);
    out
}

/// HKDF-SHA512 (RFC 5869) of at most 64 bytes: its first block, `T(1)`. On salty's
/// SHA-512, the one the bootloader already links for Ed25519 (the `hkdf` crate on
/// `sha2` would add a second SHA-512, ~2.5 KB of the Cortex-M4 bootloader's flash).
fn hkdf(ikm: &[u8], salt: &[u8; 64], info: &[u8]) -> Secret<64> {
    let prk = hmac(salt, &[ikm]);
    hmac(prk.expose(), &[info, &[1]])
}

/// HMAC-SHA512 (RFC 2104) of the concatenated `message` under a key of one block or less
/// (every key here is 64 bytes, so none is hashed first).
fn hmac(key: &[u8; 64], message: &[&[u8]]) -> Secret<64> {
    const BLOCK: usize = 128;
    let mut pad = [0x36u8; BLOCK];
    for (p, k) in pad.iter_mut().zip(key) {
        *p ^= k;
    }
    let mut inner = Sha512::new().updated(&pad);
    for part in message {
        inner.update(part);
    }
    let inner = Secret::new(inner.finalize());
    for p in pad.iter_mut() {
        *p ^= 0x36 ^ 0x5c;
    }
    let out = Secret::new(
        Sha512::new()
            .updated(&pad)
            .updated(inner.expose())
            .finalize(),
    );
    pad.zeroize();
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::String;
    // An independent SHA-512 for the test inputs.
    use sha2::{Digest as _, Sha512};

    /// Open DICE's `DeriveFakeInputValue` (`src/test_utils.cc`): SHA-512 of the seed is
    /// a counter block whose first 8 bytes count up (little-endian); each output block
    /// is the SHA-512 of that block.
    pub(super) fn fake_input<const N: usize>(seed: &str) -> [u8; N] {
        let mut block: [u8; 64] = Sha512::digest(seed.as_bytes()).into();
        let mut out = [0; N];
        for chunk in out.chunks_mut(64) {
            let digest = Sha512::digest(block);
            chunk.copy_from_slice(&digest[..chunk.len()]);
            let counter = u64::from_le_bytes(block[..8].try_into().unwrap()).wrapping_add(1);
            block[..8].copy_from_slice(&counter.to_le_bytes());
        }
        out
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `kExpectedCdiAttest_ZeroInput` and `kExpectedCdiSeal_ZeroInput` of Open DICE's
    /// `include/dice/known_test_values.h`.
    #[test]
    fn cdis_match_open_dice_known_answers_for_zero_input() {
        let current = Cdis::from_uds(&Secret::new([0; 32]));
        let next = current.next(&Inputs::ZERO);
        assert_eq!(
            hex(next.attest.expose()),
            "fbfc679771342eeacb908659ce49d6b63b4535da2c51433d7f04efa6319e0c19"
        );
        assert_eq!(
            hex(next.seal.expose()),
            "8ff8b22571325e7defefbfea8df1c9f34bf4d9ee03b75b788219c6b1ef49bdc5"
        );
    }

    /// `kExpectedCdiAttest_HashOnlyInput` and `kExpectedCdiSeal_HashOnlyInput`: CDIs,
    /// code, authority and inline config from `DeriveFakeInputValue`.
    #[test]
    fn cdis_match_open_dice_known_answers_for_hash_only_input() {
        let current = Cdis {
            attest: Secret::new(fake_input("cdi_attest")),
            seal: Secret::new(fake_input("cdi_seal")),
        };
        let inputs = Inputs {
            code_hash: fake_input("code_hash"),
            authority_hash: fake_input("authority_hash"),
            config: fake_input("inline_config"),
            ..Inputs::ZERO
        };
        let next = current.next(&inputs);
        assert_eq!(
            hex(next.attest.expose()),
            "084ef406c69ba74b1e24d062f9ab8a8d89da6e03e4c6b122857cf74fd6a4bee5"
        );
        assert_eq!(
            hex(next.seal.expose()),
            "90c9a2865df4fa5830643d6caef07c76aeaa15619828f1bda7f74482e2f0ae1e"
        );
    }

    #[test]
    fn the_attestation_cdi_follows_the_code_and_the_sealing_cdi_does_not() {
        let current = Cdis::from_uds(&Secret::new([7; 32]));
        let v1 = Inputs {
            code_hash: [1; HASH_LEN],
            authority_hash: [9; HASH_LEN],
            mode: Mode::Normal,
            ..Inputs::ZERO
        };
        let v2 = Inputs {
            code_hash: [2; HASH_LEN],
            ..v1.clone()
        };
        let (a, b) = (current.next(&v1), current.next(&v2));
        assert_ne!(a.attest.expose(), b.attest.expose());
        assert_eq!(a.seal.expose(), b.seal.expose());
        assert_ne!(a.private_key_seed().expose(), b.private_key_seed().expose());
        // Another signer (authority) or mode changes both.
        let debug = current.next(&Inputs {
            mode: Mode::Debug,
            ..v1.clone()
        });
        assert_ne!(a.attest.expose(), debug.attest.expose());
        assert_ne!(a.seal.expose(), debug.seal.expose());
        // Another device (UDS) derives other CDIs from the same measurement.
        let other = Cdis::from_uds(&Secret::new([8; 32])).next(&v1);
        assert_ne!(a.attest.expose(), other.attest.expose());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let secret = Secret::new([0xAB; 32]);
        assert_eq!(format!("{secret:?}"), "Secret<32>(…)");
        assert!(!format!("{:?}", Cdis::from_uds(&secret)).contains("171"));
    }

    #[test]
    fn key_ids_are_20_bytes_that_differ_per_key() {
        assert_ne!(key_id(&[1; 32]), key_id(&[2; 32]));
        assert_eq!(key_id(&[1; 32]), key_id(&[1; 32]));
    }
}
