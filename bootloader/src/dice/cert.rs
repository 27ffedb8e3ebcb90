//! The DICE certificate a layer issues for the next: Open Profile for DICE's CBOR
//! certificate (google/open-dice `src/cbor_cert_op.c`), byte for byte, so verifiers of
//! that profile read rota's chains.
//!
//! ```text
//! COSE_Sign1 (RFC 9052 §4.2, untagged) = [
//!   protected: bstr { 1 (alg): -8 (EdDSA) },  unprotected: {},
//!   payload: bstr CWT (RFC 8392) {
//!     1 (iss): tstr, hex of the issuer key's id (`key_id`, 40 digits)
//!     2 (sub): tstr, hex of the subject key's id
//!     -4670545 (code hash):      bstr 64
//!     -4670548 (config, inline): bstr 64
//!     -4670549 (authority hash): bstr 64
//!     -4670551 (mode):           bstr 1
//!     -4670552 (subject key):    bstr COSE_Key { 1: 1 (OKP), 3: -8, 4: [2 (verify)], -1: 6 (Ed25519), -2: x }
//!     -4670553 (key usage):      bstr 1, 0x20 (keyCertSign, RFC 5280)
//!   },
//!   signature: bstr 64, Ed25519 by the issuer over
//!     ["Signature1", protected, h'' (no external AAD), payload] (RFC 9052 §4.4)
//! ]
//! ```
//!
//! The certificate has one shape: every field has a fixed length (the ids are 40 hex
//! digits, the inputs 64 bytes, the key 32), so it is always [`CERT_LEN`] bytes and is
//! written as a fixed template with the variable fields copied in, without a CBOR
//! encoder (minicbor's cost the Cortex-M4 bootloader ~0.8 KB of flash). The to-be-signed
//! structure is laid out in the caller's buffer first and signed in place, then the
//! payload moves down behind the COSE_Sign1 header (as Open DICE does). The known-answer
//! tests below hold the template to Open DICE's bytes.

use super::{CONFIG_LEN, HASH_LEN, ID_LEN, Inputs, key_id};

/// An Ed25519 signer for certificates: the issuing layer's key.
pub trait DiceSigner {
    /// The raw 32-byte public key.
    fn public_key(&self) -> [u8; 32];
    /// The RFC 8032 signature of `message`.
    fn sign(&self, message: &[u8]) -> [u8; 64];
}

/// Why a certificate was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertError {
    /// The buffer is smaller than the certificate ([`CERT_LEN`]).
    BufferTooSmall,
}

/// The length of every certificate this module writes.
pub const CERT_LEN: usize = SIGN1_HEAD.len() + PAYLOAD_LEN + SIGNATURE_HEAD.len() + 64;

/// The longest certificate a hand-off may carry (room beyond [`CERT_LEN`] for later
/// profiles).
pub const MAX_CERT_LEN: usize = 512;

/// Open DICE's CWT labels (specification §"CBOR CDI Certificates"), for writers and
/// verifiers alike.
pub mod label {
    pub const CODE_HASH: i64 = -4670545;
    pub const CONFIG_DESCRIPTOR: i64 = -4670548;
    pub const AUTHORITY_HASH: i64 = -4670549;
    pub const MODE: i64 = -4670551;
    pub const SUBJECT_PUBLIC_KEY: i64 = -4670552;
    pub const KEY_USAGE: i64 = -4670553;
    /// RFC 5280 keyCertSign, as Open DICE encodes it.
    pub const KEY_USAGE_CERT_SIGN: u8 = 0x20;
}
use label::*;

/// The CWT payload's length: the map head, two 40-digit ids, three 64-byte inputs, the
/// mode, the COSE_Key and the key usage, each behind its label.
const PAYLOAD_LEN: usize = 1
    + 2 * (1 + 2 + 2 * ID_LEN)
    + 3 * (CLAIM_HEAD_LEN + 2 + HASH_LEN)
    + (CLAIM_HEAD_LEN + 1 + 1)
    + (CLAIM_HEAD_LEN + 2 + COSE_KEY_HEAD.len() + 32)
    + (CLAIM_HEAD_LEN + 1 + 1);
const _: () = assert!(HASH_LEN == 64 && CONFIG_LEN == 64 && PAYLOAD_LEN == 366);

/// `[` protected `{1: -8}` (alg EdDSA, RFC 9053 §2.2), unprotected `{}`, payload: the
/// COSE_Sign1 (RFC 9052 §4.2) up to the payload's bytes.
const SIGN1_HEAD: [u8; 9] = [0x84, 0x43, 0xa1, 0x01, 0x27, 0xa0, 0x59, 0x01, 0x6e];

/// `["Signature1", protected, h'', payload`: the Sig_structure (RFC 9052 §4.4) up to the
/// payload's bytes.
const TBS_HEAD: [u8; 20] = *b"\x84\x6aSignature1\x43\xa1\x01\x27\x40\x59\x01\x6e";

// Both end in the payload's byte-string head (RFC 8949 §3.1: major type 2, two length
// bytes).
const _: () = assert!(
    SIGN1_HEAD[7] as usize * 256 + SIGN1_HEAD[8] as usize == PAYLOAD_LEN
        && TBS_HEAD[18] == SIGN1_HEAD[7]
        && TBS_HEAD[19] == SIGN1_HEAD[8]
);

/// The signature's head: a 64-byte byte string.
const SIGNATURE_HEAD: [u8; 2] = [0x58, 64];

/// The COSE_Key (RFC 9052 §7) up to its x coordinate: `{1: 1 (OKP), 3: -8 (EdDSA),
/// 4: [2 (verify)], -1: 6 (Ed25519), -2: bstr 32}`.
const COSE_KEY_HEAD: [u8; 13] = [
    0xa5, 0x01, 0x01, 0x03, 0x27, 0x04, 0x81, 0x02, 0x20, 0x06, 0x21, 0x58, 0x20,
];

const CLAIM_HEAD_LEN: usize = 5;

/// A negative label (RFC 8949 §3.1: major type 1, four bytes of -1 - label), then the
/// two bytes that follow it: a byte string's head, or a one-byte string's head and byte.
const fn claim(label: i64, next: [u8; 2]) -> [u8; CLAIM_HEAD_LEN + 2] {
    let n = (-1 - label) as u32;
    [
        0x3a,
        (n >> 24) as u8,
        (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8,
        next[0],
        next[1],
    ]
}

/// Lowercase hex of a key id (the CWT's iss and sub).
fn id_hex(public_key: &[u8; 32]) -> [u8; 2 * ID_LEN] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 2 * ID_LEN];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(key_id(public_key)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    hex
}

/// Writes the CWT claims (the module docs' payload) into `out`.
// Not inlined: 72 bytes less flash in the Cortex-M4 bootloader (its 16 pieces are
// set up once, here).
#[inline(never)]
fn payload(
    out: &mut [u8],
    issuer: &[u8; 2 * ID_LEN],
    subject: &[u8; 2 * ID_LEN],
    subject_key: &[u8; 32],
    inputs: &Inputs,
) {
    // Map of 8; iss (1) and sub (2) as 40-character text strings (major type 3).
    const ISS: [u8; 4] = [0xa8, 0x01, 0x78, 2 * ID_LEN as u8];
    const SUB: [u8; 3] = [0x02, 0x78, 2 * ID_LEN as u8];
    const CODE: [u8; 7] = claim(CODE_HASH, [0x58, 64]);
    const CONFIG: [u8; 7] = claim(CONFIG_DESCRIPTOR, [0x58, 64]);
    const AUTHORITY: [u8; 7] = claim(AUTHORITY_HASH, [0x58, 64]);
    // The mode's one byte follows the head.
    const MODE_HEAD: [u8; 7] = claim(MODE, [0x41, 0]);
    const KEY: [u8; 7] = claim(SUBJECT_PUBLIC_KEY, [0x58, COSE_KEY_HEAD.len() as u8 + 32]);
    const USAGE: [u8; 7] = claim(KEY_USAGE, [0x41, KEY_USAGE_CERT_SIGN]);
    let pieces: [&[u8]; 16] = [
        &ISS,
        issuer,
        &SUB,
        subject,
        &CODE,
        &inputs.code_hash,
        &CONFIG,
        &inputs.config,
        &AUTHORITY,
        &inputs.authority_hash,
        &MODE_HEAD[..6],
        &[inputs.mode as u8],
        &KEY,
        &COSE_KEY_HEAD,
        subject_key,
        &USAGE,
    ];
    for (to, from) in out
        .iter_mut()
        .zip(pieces.iter().flat_map(|piece| piece.iter()))
    {
        *to = *from;
    }
}

/// Writes the certificate of `subject_public_key`, measured as `inputs`, issued by
/// `issuer`, into `out`; returns its length, [`CERT_LEN`].
pub fn certificate(
    subject_public_key: &[u8; 32],
    issuer: &impl DiceSigner,
    inputs: &Inputs,
    out: &mut [u8],
) -> Result<usize, CertError> {
    let Some(out) = out.get_mut(..CERT_LEN) else {
        return Err(CertError::BufferTooSmall);
    };
    // 1. The Sig_structure, its payload written in place, then signed.
    const TBS_LEN: usize = TBS_HEAD.len() + PAYLOAD_LEN;
    let (head, rest) = out.split_at_mut(TBS_HEAD.len());
    head.copy_from_slice(&TBS_HEAD);
    payload(
        rest,
        &id_hex(&issuer.public_key()),
        &id_hex(subject_public_key),
        subject_public_key,
        inputs,
    );
    let signature = issuer.sign(&out[..TBS_LEN]);
    // 2. The payload moved down behind the COSE_Sign1 head, then the signature.
    out.copy_within(TBS_HEAD.len()..TBS_LEN, SIGN1_HEAD.len());
    let (head, rest) = out.split_at_mut(SIGN1_HEAD.len());
    head.copy_from_slice(&SIGN1_HEAD);
    let (signature_head, signature_bytes) = rest[PAYLOAD_LEN..].split_at_mut(2);
    signature_head.copy_from_slice(&SIGNATURE_HEAD);
    signature_bytes.copy_from_slice(&signature);
    Ok(CERT_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dice::ed25519::SigningKey;
    use crate::dice::{Cdis, Secret};

    /// The layer's key, as rota-boot's DICE layer makes it.
    fn key(cdis: &Cdis) -> SigningKey {
        SigningKey::from_seed(&cdis.private_key_seed())
    }

    fn unhex(text: &str) -> alloc::vec::Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn issue(current: &Cdis, inputs: &Inputs) -> alloc::vec::Vec<u8> {
        let next = current.next(inputs);
        let subject = key(&next).public_key();
        let mut out = [0u8; MAX_CERT_LEN];
        let len = certificate(&subject, &key(current), inputs, &mut out).unwrap();
        out[..len].to_vec()
    }

    /// `kExpectedCborEd25519Cert_ZeroInput` (Open DICE `include/dice/known_test_values.h`).
    #[test]
    fn certificate_matches_open_dice_known_answer_for_zero_input() {
        let expected = unhex(concat!(
            "8443a10127a059016ea8017828376130366565653431623738396634383633643836623837373862",
            "31613230316136666564643536027828363763323261383835393036326239383638313865386537",
            "326230626364396635393334396338393a0047445058400000000000000000000000000000000000",
            "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
            "000000000000003a0047445358400000000000000000000000000000000000000000000000000000",
            "00000000000000000000000000000000000000000000000000000000000000000000000000003a00",
            "47445458400000000000000000000000000000000000000000000000000000000000000000000000",
            "00000000000000000000000000000000000000000000000000000000003a0047445641003a004744",
            "57582da50101032704810220062158200d14e5de292eb1c8b31beae43ab55d8e9dc014b73eaa83b9",
            "25a0788cc62e5c8d3a0047445841205840f99bd6dbc1247153c10f881c0f5f33bf0223d222327124",
            "41b128d383de321b67c09a1f4591c420dcc9d62121eca3d3897a244dcbe11a0f9ab79f67093fee56",
            "0f",
        ));
        let current = Cdis::from_uds(&Secret::new([0; 32]));
        assert_eq!(issue(&current, &Inputs::ZERO), expected);
    }

    /// `kExpectedCborEd25519Cert_HashOnlyInput`.
    #[test]
    fn certificate_matches_open_dice_known_answer_for_hash_only_input() {
        let expected = unhex(concat!(
            "8443a10127a059016ea8017828343735373038656233623432366633383663666365386633626166",
            "35343339303436323738646661027828306430343065326634363030353261353331316331623931",
            "646266396234343038333332656332393a004744505840b7d40ccb225ba5788f98ff9e869375f690",
            "ac50cf9ebd0afeb1d9c24e5219e4de29e561f3f929e840877add174805897e2bcb5479cc66f1b313",
            "290c6896b2bb8f3a004744535840cf997bea2e2c86a07b5209c8b53c411229281a820d499c95cb0b",
            "1b311a019cf2661ad9b5ce5259cbf4819b21af325d07a01e91596f0655108e2e08885228867f3a00",
            "474454584022526017ef2ca1f6cbed39d5e2aa6520fbad8293e578232297c16e6a4e36d76a613908",
            "21d4fe925f362deb5dbb328be3944fbe1b21f9cc237341b6b9b698d0bc3a0047445641003a004744",
            "57582da50101032704810220062158205a3949678cd30e88ab1cddf71555d5bfd3f0b84725a958e1",
            "b9da4eb5f1389a5a3a00474458412058408299ff8455cbf999894899121d0440cf90a4bc614f0d2e",
            "772e9c8faaddf42fe214d2424a029e1d24720b08b671c7766425fb03cfd66f2f9a15c8ad479af316",
            "01",
        ));
        let fake = super::super::tests::fake_input::<32>;
        let current = Cdis {
            attest: Secret::new(fake("cdi_attest")),
            seal: Secret::new(fake("cdi_seal")),
        };
        let inputs = Inputs {
            code_hash: super::super::tests::fake_input("code_hash"),
            authority_hash: super::super::tests::fake_input("authority_hash"),
            config: super::super::tests::fake_input("inline_config"),
            ..Inputs::ZERO
        };
        assert_eq!(issue(&current, &inputs), expected);
    }

    #[test]
    fn a_small_buffer_is_an_error_not_a_panic() {
        let current = Cdis::from_uds(&Secret::new([0; 32]));
        let subject = key(&current.next(&Inputs::ZERO)).public_key();
        for len in [0, 10, 200, 440] {
            let mut out = alloc::vec![0u8; len];
            assert_eq!(
                certificate(&subject, &key(&current), &Inputs::ZERO, &mut out),
                Err(CertError::BufferTooSmall),
                "{len}"
            );
        }
        // Exactly the certificate's length suffices.
        let mut out = [0u8; CERT_LEN];
        assert_eq!(
            certificate(&subject, &key(&current), &Inputs::ZERO, &mut out),
            Ok(CERT_LEN)
        );
    }
}
