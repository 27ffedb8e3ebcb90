//! Trust-anchor commands: how a device's firmware-signing keys are rolled over in the
//! field. A command adds a new key's hash to a spare root-of-trust key slot, or revokes
//! a slot; it is signed by a key the device trusts now, and applied by
//! [`crate::Updater::apply_anchor_command`] (never by the bootloader, whose flash stays
//! as it was).
//!
//! # Format (version 1)
//!
//! A `COSE_Sign1_Tagged` (RFC 9052 §4.2), decoded by rota-manifest's strict decoder:
//!
//! ```text
//! 18([ protected: << { 1: -19 (Ed25519), 4: kid (SHA-256 of the signer's key) } >>,
//!      unprotected: {},
//!      payload: << anchor-command >>,
//!      signature: Ed25519 over Sig_structure("Signature1", protected,
//!                 external_aad = "rota-anchor-command-v1", payload) ])
//!
//! anchor-command = {            ; deterministic CBOR: keys ascending, shortest forms
//!   1: bstr .size 16,           ; the device class id it is for
//!   2: uint,                    ; the command counter: 1 for the first command, …
//!   ? 3: [uint, bstr .size 32], ; add: key slot, SHA-256 of the new key
//!   ? 4: uint,                  ; revoke: key slot
//! }                             ; exactly one of 3 and 4
//! ```
//!
//! The external AAD separates these signatures from firmware signatures by the same key:
//! neither verifies as the other. A new format takes a new AAD (`-v2`).
//!
//! # Threat model: each attack, and the check that stops it
//!
//! - **Forged or altered** command: the Ed25519 signature (strict verification, the
//!   verifier the bootloader is built with) by the key the caller names, whose hash is
//!   the command's `kid` ([`AnchorError::SignerMismatch`], [`AnchorError::BadSignature`]).
//! - **Signed by a key the device does not trust**, or no longer trusts: the signer must
//!   be in a valid key slot, and no slot holding it revoked
//!   ([`AnchorError::UntrustedSigner`], [`AnchorError::RevokedSigner`]).
//! - **For another class of device**: the class id must be the device's
//!   ([`AnchorError::WrongClass`]).
//! - **Replayed** (an old command, applied or superseded): command `n` is accepted only
//!   when the device's counter is `n - 1`, and its application burns counter bit `n - 1`;
//!   a command at or below the counter is refused ([`AnchorError::Replayed`]) unless what
//!   it does is already in the OTP, in which case it is a no-op (`Ok`, idempotent).
//!   There is no expiry time: the device has no trusted clock, and a command is expired
//!   exactly when the counter has moved past it.
//! - **Out of order** (a later command before an earlier one):
//!   [`AnchorError::OutOfOrder`], with the counter the device expects.
//! - **A slot that is not spare** (a provisioned key overwritten, a revoked slot reused,
//!   a slot holding bits another hash burned): [`AnchorError::SlotNotSpare`]; OTP can
//!   only set bits, so an add can never change a trusted key.
//! - **Revoking the key of the running image** (a bricked device), or revoking while on
//!   trial: the rule [`crate::Updater::revoke`] enforces, shared.
//! - **Malformed input**: trailing bytes, duplicate or unknown keys, non-shortest
//!   encodings, wrong sizes, unknown critical headers: refused before anything is
//!   burned, never a panic ([`AnchorError::Malformed`], [`AnchorError::Cose`]).
//! - **A power cut** anywhere in an application: the burns go hash, valid bit, counter
//!   bit; the key is trusted only once its valid bit is burned ([`crate::otp_map`]), and
//!   applying the same command again completes whatever prefix was burned.

use rota_manifest::cose::{CoseSign1, sig_structure};
use rota_manifest::{PublicKey, SignatureAlgorithm, Verifier};

use crate::rot::{KeyHash, Uuid};

/// The external AAD every trust-anchor command's signature covers.
pub const EXTERNAL_AAD: &[u8] = b"rota-anchor-command-v1";

/// The longest command [`AnchorCommand::sign`] writes (an add: 171 bytes).
pub const MAX_COMMAND_LEN: usize = 192;

/// The longest payload: an add with the largest counter and slot.
const MAX_PAYLOAD_LEN: usize = 80;
/// Payload map keys.
const CLASS: u64 = 1;
const COUNTER: u64 = 2;
const ADD: u64 = 3;
const REVOKE: u64 = 4;
/// COSE header labels and the Ed25519 algorithm id (RFC 9052 §3.1, RFC 9864).
const ALG_ED25519: i64 = -19;

/// What a command changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Trust the key whose SHA-256 is `key_hash`, in the spare key slot `slot`.
    Add { slot: usize, key_hash: KeyHash },
    /// Revoke key slot `slot`.
    Revoke { slot: usize },
}

impl Change {
    /// The key slot it changes.
    pub fn slot(&self) -> usize {
        match *self {
            Self::Add { slot, .. } | Self::Revoke { slot } => slot,
        }
    }
}

/// A trust-anchor command's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnchorCommand {
    /// The device class it is for.
    pub class_id: Uuid,
    /// Its place in the device's sequence of commands: 1 for the first.
    pub counter: u32,
    pub change: Change,
}

/// Why a trust-anchor command was refused. Nothing was burned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnchorError {
    /// The COSE_Sign1 around the payload is not one rota accepts (tag, structure,
    /// headers, an unknown critical header, trailing bytes).
    Cose(rota_manifest::Error),
    /// Not an Ed25519 signature (COSE alg -19).
    NotEd25519 { alg: i64 },
    /// The command's `kid` is absent or is not the hash of the key named as its signer.
    SignerMismatch,
    /// The signature does not verify with the signer's key.
    BadSignature,
    /// The signer's key is in no valid key slot of the root of trust.
    UntrustedSigner,
    /// The signer's key is in key slot `slot`, which is revoked.
    RevokedSigner { slot: usize },
    /// The payload is not a well-formed command: at byte `offset`, `expected` was not.
    Malformed {
        offset: usize,
        expected: &'static str,
    },
    /// The command is for another class of device.
    WrongClass,
    /// The device has applied `current` commands; command `counter` is one of them or
    /// one they superseded, and what it does is not in the root of trust.
    Replayed { counter: u32, current: u32 },
    /// Command `counter` came before command `expected`.
    OutOfOrder { counter: u32, expected: u32 },
    /// The root of trust's command counter has no bit left for command `counter`.
    CounterExhausted { counter: u32 },
    /// The root of trust has no key slot `slot`.
    NoSuchSlot { slot: usize },
    /// Key slot `slot` cannot take a new key: it holds one, is revoked, or holds bits
    /// of another hash.
    SlotNotSpare { slot: usize },
    /// The new key is already trusted, in key slot `slot`.
    AlreadyTrusted { slot: usize },
    /// Key slot `slot` holds no key to revoke.
    SlotEmpty { slot: usize },
    /// This root of trust takes no trust-anchor commands (an OTP map before version 3).
    Unsupported,
}

impl core::fmt::Display for AnchorError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Cose(e) => write!(f, "the command is not a valid COSE_Sign1: {e}"),
            Self::NotEd25519 { alg } => {
                write!(
                    f,
                    "the command is signed with COSE alg {alg}, not Ed25519 (-19)"
                )
            }
            Self::SignerMismatch => {
                f.write_str("the command's kid is not the hash of the signer's key")
            }
            Self::BadSignature => f.write_str("the command's signature does not verify"),
            Self::UntrustedSigner => {
                f.write_str("the command is signed by a key the device does not trust")
            }
            Self::RevokedSigner { slot } => write!(
                f,
                "the command is signed by the revoked key in key slot {slot}"
            ),
            Self::Malformed { offset, expected } => {
                write!(
                    f,
                    "malformed command payload: expected {expected} at byte {offset}"
                )
            }
            Self::WrongClass => f.write_str("the command is for another device class"),
            Self::Replayed { counter, current } => write!(
                f,
                "command {counter} is a replay: the device has applied {current} commands"
            ),
            Self::OutOfOrder { counter, expected } => write!(
                f,
                "command {counter} is out of order: the device expects command {expected}"
            ),
            Self::CounterExhausted { counter } => write!(
                f,
                "the device's command counter has no bit for command {counter}"
            ),
            Self::NoSuchSlot { slot } => write!(f, "the device has no key slot {slot}"),
            Self::SlotNotSpare { slot } => write!(f, "key slot {slot} is not spare"),
            Self::AlreadyTrusted { slot } => {
                write!(f, "the new key is already trusted, in key slot {slot}")
            }
            Self::SlotEmpty { slot } => write!(f, "key slot {slot} holds no key to revoke"),
            Self::Unsupported => {
                f.write_str("this device's root of trust takes no trust-anchor commands")
            }
        }
    }
}

/// A command as signed: COSE_Sign1 bytes, built without allocation.
#[derive(Clone, Copy)]
pub struct SignedCommand {
    bytes: [u8; MAX_COMMAND_LEN],
    len: usize,
}

impl SignedCommand {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl core::fmt::Debug for SignedCommand {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("SignedCommand")
            .field(&self.as_bytes())
            .finish()
    }
}

/// Verifies `command`, signed by the Ed25519 key `signer`, with the verifier `V`, and
/// decodes its payload. Whether `signer` is trusted, and whether the command applies,
/// is [`crate::Updater::apply_anchor_command`]'s decision.
pub fn verify<V: Verifier + Default>(
    signer: &[u8; 32],
    command: &[u8],
) -> Result<AnchorCommand, AnchorError> {
    let cose = CoseSign1::from_bytes(command).map_err(AnchorError::Cose)?;
    if cose.alg != ALG_ED25519 {
        return Err(AnchorError::NotEd25519 { alg: cose.alg });
    }
    let key = PublicKey::Ed25519(*signer);
    if cose.kid != Some(key.key_id().as_slice()) {
        return Err(AnchorError::SignerMismatch);
    }
    let payload = cose.payload.ok_or(AnchorError::Malformed {
        offset: 0,
        expected: "an attached payload",
    })?;
    match cose.verify(
        SignatureAlgorithm::Ed25519,
        None,
        EXTERNAL_AAD,
        &[key],
        &V::default(),
    ) {
        Ok(_) => {}
        Err(rota_manifest::Error::BadSignature | rota_manifest::Error::NoTrustedKey) => {
            return Err(AnchorError::BadSignature);
        }
        Err(e) => return Err(AnchorError::Cose(e)),
    }
    AnchorCommand::decode(payload)
}

impl AnchorCommand {
    /// Decodes a payload: deterministic CBOR, every rule of the format, nothing after it.
    pub fn decode(payload: &[u8]) -> Result<Self, AnchorError> {
        let mut r = Reader {
            bytes: payload,
            at: 0,
        };
        let entries = r.head(MAP, "a map")?;
        if entries != 3 {
            return Err(r.error_at(0, "a map of 3 entries (class, counter, add or revoke)"));
        }
        let mut class_id = None;
        let mut counter = None;
        let mut change = None;
        let mut last = 0;
        for _ in 0..entries {
            let at = r.at;
            let key = r.head(UINT, "an unsigned map key")?;
            if key <= last {
                return Err(r.error_at(
                    at,
                    if key == last {
                        "no duplicate key"
                    } else {
                        "keys in ascending order"
                    },
                ));
            }
            last = key;
            match key {
                CLASS => class_id = Some(r.fixed_bytes::<16>("a 16-byte class id")?),
                COUNTER => {
                    let at = r.at;
                    let n = r.head(UINT, "the command counter")?;
                    counter = Some(match u32::try_from(n) {
                        Ok(n) if n > 0 => n,
                        _ => return Err(r.error_at(at, "a counter from 1 to 2^32 - 1")),
                    });
                }
                ADD | REVOKE if change.is_some() => {
                    return Err(r.error_at(at, "one change: add or revoke, not both"));
                }
                ADD => {
                    let at = r.at;
                    if r.head(ARRAY, "add: [slot, key hash]")? != 2 {
                        return Err(r.error_at(at, "add: [slot, key hash]"));
                    }
                    let slot = r.slot()?;
                    let at = r.at;
                    let key_hash = r.fixed_bytes::<32>("a 32-byte key hash")?;
                    if key_hash == [0; 32] {
                        return Err(r.error_at(at, "a key hash that is not all zero"));
                    }
                    change = Some(Change::Add { slot, key_hash });
                }
                REVOKE => change = Some(Change::Revoke { slot: r.slot()? }),
                _ => return Err(r.error_at(at, "a known key (1 to 4)")),
            }
        }
        if r.at != payload.len() {
            return Err(r.error_at(r.at, "the end of the payload"));
        }
        match (class_id, counter, change) {
            (Some(class_id), Some(counter), Some(change)) => Ok(Self {
                class_id,
                counter,
                change,
            }),
            _ => Err(r.error_at(0, "class (1), counter (2) and a change (3 or 4)")),
        }
    }

    /// The payload, in deterministic CBOR, written into `buf`.
    pub fn encode<'b>(&self, buf: &'b mut [u8; MAX_PAYLOAD_LEN]) -> &'b [u8] {
        let mut w = Writer { buf, at: 0 };
        w.head(MAP, 3);
        w.head(UINT, CLASS);
        w.bytes(&self.class_id);
        w.head(UINT, COUNTER);
        w.head(UINT, self.counter.into());
        match self.change {
            Change::Add { slot, key_hash } => {
                w.head(UINT, ADD);
                w.head(ARRAY, 2);
                w.head(UINT, slot as u64);
                w.bytes(&key_hash);
            }
            Change::Revoke { slot } => {
                w.head(UINT, REVOKE);
                w.head(UINT, slot as u64);
            }
        }
        let len = w.at;
        &buf[..len]
    }

    /// Signs the command as the Ed25519 key `signer`: `sign` gets the Sig_structure
    /// bytes and returns the signature (a key file or a token: the caller's seam). A
    /// slot above 255 or a counter of 0 makes a command every device refuses.
    pub fn sign<E>(
        &self,
        signer: &[u8; 32],
        sign: impl FnOnce(&[u8]) -> Result<[u8; 64], E>,
    ) -> Result<SignedCommand, E> {
        let mut payload_buf = [0u8; MAX_PAYLOAD_LEN];
        let payload = self.encode(&mut payload_buf);
        let mut protected = [0u8; 38];
        {
            let mut w = Writer {
                buf: &mut protected,
                at: 0,
            };
            w.head(MAP, 2);
            w.head(UINT, 1);
            w.head(NINT, (-1 - ALG_ED25519) as u64);
            w.head(UINT, 4);
            w.bytes(&PublicKey::Ed25519(*signer).key_id());
        }
        let mut tbs = [0u8; 160];
        let message = sig_structure(&protected, EXTERNAL_AAD, payload, &mut tbs)
            .expect("the Sig_structure of a command fits 160 bytes");
        let signature = sign(message)?;
        let mut out = SignedCommand {
            bytes: [0; MAX_COMMAND_LEN],
            len: 0,
        };
        let mut w = Writer {
            buf: &mut out.bytes,
            at: 0,
        };
        w.head(TAG, 18);
        w.head(ARRAY, 4);
        w.bytes(&protected);
        w.head(MAP, 0);
        w.bytes(payload);
        w.bytes(&signature);
        out.len = w.at;
        Ok(out)
    }
}

/// CBOR major types (RFC 8949 §3.1).
const UINT: u8 = 0;
const NINT: u8 = 1;
const BYTES: u8 = 2;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const TAG: u8 = 6;

/// A strict reader of the few CBOR items a payload holds: definite lengths and
/// shortest-form heads only (RFC 8949 §4.2.1), every read bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn error_at(&self, offset: usize, expected: &'static str) -> AnchorError {
        AnchorError::Malformed { offset, expected }
    }

    fn byte(&mut self, expected: &'static str) -> Result<u8, AnchorError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or(self.error_at(self.at, expected))?;
        self.at += 1;
        Ok(b)
    }

    /// A head of major type `major`, its argument in shortest form.
    fn head(&mut self, major: u8, expected: &'static str) -> Result<u64, AnchorError> {
        let at = self.at;
        let initial = self.byte(expected)?;
        if initial >> 5 != major {
            return Err(self.error_at(at, expected));
        }
        let value = match initial & 0x1f {
            n @ 0..=23 => u64::from(n),
            n @ 24..=27 => {
                let len = 1usize << (n - 24);
                let mut value = 0u64;
                for _ in 0..len {
                    value = value << 8 | u64::from(self.byte(expected)?);
                }
                let shortest = match len {
                    1 => value >= 24,
                    _ => value >> (len * 4) != 0,
                };
                if !shortest {
                    return Err(self.error_at(at, "a shortest-form CBOR head"));
                }
                value
            }
            _ => return Err(self.error_at(at, "a definite-length CBOR head")),
        };
        Ok(value)
    }

    fn fixed_bytes<const N: usize>(
        &mut self,
        expected: &'static str,
    ) -> Result<[u8; N], AnchorError> {
        let at = self.at;
        if self.head(BYTES, expected)? != N as u64 {
            return Err(self.error_at(at, expected));
        }
        let content = self
            .bytes
            .get(self.at..self.at + N)
            .ok_or(self.error_at(self.at, expected))?;
        self.at += N;
        let mut out = [0u8; N];
        out.copy_from_slice(content);
        Ok(out)
    }

    fn slot(&mut self) -> Result<usize, AnchorError> {
        let at = self.at;
        match self.head(UINT, "a key slot")? {
            slot @ 0..=255 => Ok(slot as usize),
            _ => Err(self.error_at(at, "a key slot from 0 to 255")),
        }
    }
}

/// Writes shortest-form heads into a buffer sized for what is written.
struct Writer<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn head(&mut self, major: u8, value: u64) {
        let len: usize = match value {
            0..=23 => 0,
            24..=0xff => 1,
            0x100..=0xffff => 2,
            0x1_0000..=0xffff_ffff => 4,
            _ => 8,
        };
        let small = match len {
            0 => value as u8,
            n => 24 + n.trailing_zeros() as u8,
        };
        self.buf[self.at] = major << 5 | small;
        self.buf[self.at + 1..self.at + 1 + len].copy_from_slice(&value.to_be_bytes()[8 - len..]);
        self.at += 1 + len;
    }

    fn bytes(&mut self, content: &[u8]) {
        self.head(BYTES, content.len() as u64);
        self.buf[self.at..self.at + content.len()].copy_from_slice(content);
        self.at += content.len();
    }
}
