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
//! Written into the caller's buffer without a heap: the to-be-signed structure is laid
//! out there first and signed in place, then the payload moves down behind the final
//! header (as Open DICE does).

use minicbor::Encoder;
use minicbor::encode::write::{Cursor, Write};

use super::{HASH_LEN, Inputs, key_id};

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
    /// The buffer is smaller than the certificate ([`MAX_CERT_LEN`] always suffices).
    BufferTooSmall,
}

/// The longest certificate this module writes.
pub const MAX_CERT_LEN: usize = 512;

/// The COSE protected header: `{1: -8}` (alg EdDSA, RFC 9053 §2.2).
const PROTECTED: [u8; 3] = [0xa1, 0x01, 0x27];

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

/// A `Write` that only counts: the length of an encoding before it is written.
struct Count(usize);

impl Write for Count {
    type Error = core::convert::Infallible;
    fn write_all(&mut self, buf: &[u8]) -> Result<(), Self::Error> {
        self.0 += buf.len();
        Ok(())
    }
}

/// The subject key as a COSE_Key (RFC 9052 §7): OKP, EdDSA, verify, Ed25519, x.
fn cose_key(public_key: &[u8; 32]) -> [u8; 45] {
    let mut key = [0u8; 45];
    key[..13].copy_from_slice(&[
        0xa5, 0x01, 0x01, 0x03, 0x27, 0x04, 0x81, 0x02, 0x20, 0x06, 0x21, 0x58, 0x20,
    ]);
    key[13..].copy_from_slice(public_key);
    key
}

/// Lowercase hex of a key id (the CWT's iss and sub).
fn id_hex(public_key: &[u8; 32]) -> [u8; 40] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 40];
    for (i, byte) in key_id(public_key).iter().enumerate() {
        hex[2 * i] = DIGITS[usize::from(byte >> 4)];
        hex[2 * i + 1] = DIGITS[usize::from(byte & 0x0f)];
    }
    hex
}

/// Encodes the CWT claims into `w`.
fn cwt<W: Write>(
    w: W,
    issuer: &[u8; 40],
    subject: &[u8; 40],
    subject_key: &[u8; 45],
    inputs: &Inputs,
) -> Result<(), minicbor::encode::Error<W::Error>> {
    // A 40-character text string (RFC 8949 §3.1, major type 3, one length byte), written
    // as its bytes: hex digits are ASCII, and `Encoder::str` would take a `&str` that
    // only `core::str::from_utf8` (368 bytes of the bootloader's flash) can make here.
    fn hex_text<W: Write>(
        e: &mut Encoder<W>,
        hex: &[u8; 40],
    ) -> Result<(), minicbor::encode::Error<W::Error>> {
        e.writer_mut()
            .write_all(&[0x78, 40])
            .and_then(|()| e.writer_mut().write_all(hex))
            .map_err(minicbor::encode::Error::write)
    }
    let mut e = Encoder::new(w);
    e.map(8)?.i64(1)?;
    hex_text(&mut e, issuer)?;
    e.i64(2)?;
    hex_text(&mut e, subject)?;
    e.i64(CODE_HASH)?
        .bytes(&inputs.code_hash)?
        .i64(CONFIG_DESCRIPTOR)?
        .bytes(&inputs.config)?
        .i64(AUTHORITY_HASH)?
        .bytes(&inputs.authority_hash)?
        .i64(MODE)?
        .bytes(&[inputs.mode as u8])?
        .i64(SUBJECT_PUBLIC_KEY)?
        .bytes(subject_key)?
        .i64(KEY_USAGE)?
        .bytes(&[KEY_USAGE_CERT_SIGN])?;
    Ok(())
}

/// Writes the certificate of `subject_public_key`, measured as `inputs`, issued by
/// `issuer`, into `out`; returns its length.
pub fn certificate(
    subject_public_key: &[u8; 32],
    issuer: &impl DiceSigner,
    inputs: &Inputs,
    out: &mut [u8],
) -> Result<usize, CertError> {
    const _: () = assert!(HASH_LEN == 64);
    let too_small = |_| CertError::BufferTooSmall;
    let issuer_id = id_hex(&issuer.public_key());
    let subject_id = id_hex(subject_public_key);
    let subject_key = cose_key(subject_public_key);
    let mut count = Count(0);
    cwt(&mut count, &issuer_id, &subject_id, &subject_key, inputs)
        .map_err(|_| CertError::BufferTooSmall)?;
    let payload_len = count.0;

    // 1. The to-be-signed structure, its payload written in place, then signed.
    let mut tbs = Encoder::new(Cursor::new(&mut *out));
    tbs.array(4)
        .and_then(|e| e.str("Signature1"))
        .and_then(|e| e.bytes(&PROTECTED))
        .and_then(|e| e.bytes(&[]))
        .map_err(too_small)?;
    // The payload's bstr head, then the payload itself.
    write_bstr_head(tbs.writer_mut(), payload_len).map_err(too_small)?;
    let payload_at = tbs.writer().position();
    cwt(
        tbs.writer_mut(),
        &issuer_id,
        &subject_id,
        &subject_key,
        inputs,
    )
    .map_err(too_small)?;
    let tbs_len = tbs.writer().position();
    let signature = issuer.sign(&out[..tbs_len]);

    // 2. The COSE_Sign1 head, the payload moved down behind it, the signature.
    let mut head = [0u8; 16];
    let mut sign1 = Encoder::new(Cursor::new(&mut head[..]));
    sign1
        .array(4)
        .and_then(|e| e.bytes(&PROTECTED))
        .and_then(|e| e.map(0))
        .map_err(too_small)?;
    write_bstr_head(sign1.writer_mut(), payload_len).map_err(too_small)?;
    let head_len = sign1.writer().position();
    out.copy_within(payload_at..tbs_len, head_len);
    out[..head_len].copy_from_slice(&head[..head_len]);
    let mut tail = Encoder::new(Cursor::new(&mut out[head_len + payload_len..]));
    tail.bytes(&signature).map_err(too_small)?;
    Ok(head_len + payload_len + tail.writer().position())
}

/// A CBOR byte-string head of `len` (RFC 8949 §3.1, major type 2): the payload follows
/// unencoded, in place.
fn write_bstr_head<W: Write>(
    w: &mut W,
    len: usize,
) -> Result<(), minicbor::encode::Error<W::Error>> {
    let len = len as u64;
    let head: ([u8; 9], usize) = match len {
        0..=23 => ([0x40 | len as u8, 0, 0, 0, 0, 0, 0, 0, 0], 1),
        24..=0xff => ([0x58, len as u8, 0, 0, 0, 0, 0, 0, 0], 2),
        0x100..=0xffff => {
            let b = (len as u16).to_be_bytes();
            ([0x59, b[0], b[1], 0, 0, 0, 0, 0, 0], 3)
        }
        _ => {
            let b = (len as u32).to_be_bytes();
            ([0x5a, b[0], b[1], b[2], b[3], 0, 0, 0, 0], 5)
        }
    };
    w.write_all(&head.0[..head.1])
        .map_err(minicbor::encode::Error::write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dice::layer::key_pair;
    use crate::dice::{Cdis, Secret};

    /// The layer's key, as rota-boot's DICE layer makes it (salty's `Keypair` is a
    /// `DiceSigner`).
    fn key(cdis: &Cdis) -> salty::Keypair {
        key_pair(&cdis.private_key_seed())
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
    }
}
