//! COSE_Sign1 (RFC 9052 §4.2), decoded without allocation.
//!
//! The rules enforced, each where it is checked:
//! - the message is tagged 18 (RFC 9052 §4.2; SUIT's CDDL requires `COSE_Sign1_Tagged`);
//! - `alg` is in the protected header and nowhere else (RFC 9052 §3.1 "alg", §3 "a label
//!   MUST NOT occur in both buckets");
//! - every `crit` label is one this verifier understands (RFC 9052 §3.1 "crit");
//! - the signed bytes use the protected header exactly as received (RFC 9052 §4.4).

use crate::cbor::{BytesItem, Key, KeySet, MAX_MAP_ENTRIES, Reader, major, put_item};
use crate::crypto::{PublicKey, SignatureAlgorithm, Verifier};
use crate::error::{Error, Result, msg};
use crate::labels::{TAG_COSE_SIGN1, cose_header};

/// Header labels this verifier understands, so may appear in `crit` (RFC 9052 §3.1).
const UNDERSTOOD_LABELS: [i64; 4] = [
    cose_header::ALG,
    cose_header::CRIT,
    cose_header::CONTENT_TYPE,
    cose_header::KID,
];

/// The largest Sig_structure rota builds, on the stack: SUIT signs a SUIT_Digest, so
/// the payload is tens of bytes; this leaves room for generous protected headers.
/// Stack: live through the Ed25519 check, whose 9452 B is verify()'s peak (Cortex-M4, sha2-compact).
pub const MAX_SIG_STRUCTURE: usize = 512;

/// A decoded COSE_Sign1, borrowing from its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoseSign1<'a> {
    /// The protected header's bstr content, byte for byte as received.
    pub protected: &'a [u8],
    /// COSE algorithm id from the protected header.
    pub alg: i64,
    /// `kid`, from whichever bucket carried it.
    pub kid: Option<&'a [u8]>,
    /// `None` when detached (`nil`).
    pub payload: Option<&'a [u8]>,
    pub signature: &'a [u8],
}

impl<'a> CoseSign1<'a> {
    /// Decodes a tagged COSE_Sign1 that fills `bytes` exactly.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self> {
        Self::decode(Reader::new(bytes))
    }

    /// Decodes a tagged COSE_Sign1 that fills `r` exactly.
    // Not inlined: its two headers (a label array each) would otherwise stay in the
    // caller's frame through the signature check, the deepest point of verification.
    #[inline(never)]
    pub(crate) fn decode(mut r: Reader<'a>) -> Result<Self> {
        match r.tag()? {
            Some(TAG_COSE_SIGN1) => {}
            Some(tag) => return Err(Error::UnsupportedAuthenticationBlock { tag: Some(tag) }),
            None => return Err(Error::UntaggedCose),
        }
        r.array_of(
            4,
            msg!("a COSE_Sign1 [protected, unprotected, payload, signature]"),
        )?;
        let protected_item = r.bytes_item(msg!("the protected header (bstr)"))?;
        let protected = Header::read_protected(&r, protected_item)?;
        let unprotected = Header::read(&mut r, false)?;
        let payload = if r.null()? {
            None
        } else {
            Some(r.bytes(msg!("the payload (bstr or nil)"))?)
        };
        let signature = r.bytes(msg!("the signature (bstr)"))?;
        r.finish()?;

        // RFC 9052 §3: a label appears in at most one bucket.
        for label in unprotected.labels() {
            if protected.labels().any(|l| l == label) {
                return Err(Error::HeaderInBothBuckets { label });
            }
        }
        if unprotected.alg.is_some() {
            return Err(Error::AlgorithmInUnprotectedHeader);
        }
        let alg = protected.alg.ok_or(Error::AlgorithmNotProtected)?;
        Ok(Self {
            protected: protected_item.content,
            alg,
            kid: protected.kid.or(unprotected.kid),
            payload,
            signature,
        })
    }

    /// Encodes `Sig_structure = ["Signature1", protected, external_aad, payload]`
    /// (RFC 9052 §4.4) into `buf`, returning the bytes to sign or verify.
    pub fn to_be_signed<'b>(
        &self,
        payload: &[u8],
        external_aad: &[u8],
        buf: &'b mut [u8],
    ) -> Result<&'b [u8]> {
        sig_structure(self.protected, external_aad, payload, buf)
    }

    /// Verifies the signature over `payload` (the detached one, or the attached one
    /// when `payload` is `None`) against the trusted `anchors`.
    ///
    /// Key selection: a `kid` is a hint (RFC 9052 §3.1). Anchors whose key id equals it
    /// are tried first; if none does, every anchor of the algorithm's key type is tried,
    /// and a failure is reported as [`Error::NoTrustedKey`] (the signer is unknown)
    /// rather than [`Error::BadSignature`] (a known signer, a broken signature).
    /// Returns the index of the anchor that verified.
    pub fn verify(
        &self,
        alg: SignatureAlgorithm,
        payload: Option<&[u8]>,
        external_aad: &[u8],
        anchors: &[PublicKey],
        verifier: &impl Verifier,
    ) -> Result<usize> {
        let payload = payload.or(self.payload).ok_or(Error::Malformed {
            offset: 0,
            expected: msg!("a payload to verify"),
        })?;
        let mut buf = [0u8; MAX_SIG_STRUCTURE];
        let message = self.to_be_signed(payload, external_aad, &mut buf)?;

        let kid_matches =
            |key: &PublicKey| self.kid.is_some_and(|kid| kid == key.key_id().as_slice());
        let by_kid = anchors.iter().any(kid_matches);
        let mut tried = false;
        let mut last = Error::NoTrustedKey;
        for (index, key) in anchors.iter().enumerate() {
            if !alg.fits(key) || (by_kid && !kid_matches(key)) {
                continue;
            }
            tried = true;
            match verifier.verify(alg, key, message, self.signature) {
                Ok(()) => return Ok(index),
                Err(e) => last = e,
            }
        }
        match last {
            Error::BadSignature if !tried || (self.kid.is_some() && !by_kid) => {
                Err(Error::NoTrustedKey)
            }
            e => Err(e),
        }
    }
}

/// Writes a Sig_structure for COSE_Sign1 into `buf` (RFC 9052 §4.4).
pub fn sig_structure<'b>(
    protected: &[u8],
    external_aad: &[u8],
    payload: &[u8],
    buf: &'b mut [u8],
) -> Result<&'b [u8]> {
    let too_big = Error::LimitExceeded {
        offset: 0,
        limit: msg!("bytes in the signed structure"),
    };
    let mut len = put_item(buf, 0, major::ARRAY, 4, &[]).ok_or(too_big)?;
    let items: [(u8, &[u8]); 4] = [
        (major::TEXT, b"Signature1"),
        (major::BYTES, protected),
        (major::BYTES, external_aad),
        (major::BYTES, payload),
    ];
    for (major, content) in items {
        len = put_item(buf, len, major, content.len() as u64, content).ok_or(too_big)?;
    }
    Ok(&buf[..len])
}

/// The header parameters rota acts on, from one bucket.
#[derive(Default)]
struct Header<'a> {
    alg: Option<i64>,
    kid: Option<&'a [u8]>,
    /// Integer labels present, for the both-buckets check (a map holds at most
    /// `MAX_MAP_ENTRIES`, so none is dropped).
    labels: [i64; MAX_MAP_ENTRIES],
    label_count: usize,
}

impl<'a> Header<'a> {
    fn labels(&self) -> impl Iterator<Item = i64> + '_ {
        self.labels[..self.label_count].iter().copied()
    }

    /// The protected bucket: a bstr holding a map, or empty for an empty map (RFC 9052 §3).
    fn read_protected(r: &Reader<'a>, item: BytesItem<'a>) -> Result<Self> {
        if item.content.is_empty() {
            return Ok(Self::default());
        }
        let mut inner = r.nested(item);
        let header = Self::read(&mut inner, true)?;
        inner.finish()?;
        Ok(header)
    }

    fn read(r: &mut Reader<'a>, protected: bool) -> Result<Self> {
        let mut header = Self::default();
        let mut keys = KeySet::new();
        let mut crit: Option<Reader<'a>> = None;
        for _ in 0..r.map(msg!("a COSE header map"))? {
            let (key, offset) = r.map_key(&mut keys)?;
            let label = match key {
                Key::Int(label) => label,
                // Text labels are legal (RFC 9052 §3) but none is one rota acts on.
                _ => {
                    r.item()?;
                    continue;
                }
            };
            // KeySet::insert above bounds the count by MAX_MAP_ENTRIES.
            header.labels[header.label_count] = label;
            header.label_count += 1;
            match label {
                cose_header::ALG => {
                    let at = r.offset();
                    header.alg = Some(r.int(msg!("an integer algorithm id")).map_err(|_| {
                        Error::InvalidMember {
                            offset: at,
                            member: msg!("COSE alg (rota knows only integer algorithm ids)"),
                        }
                    })?);
                }
                cose_header::KID => header.kid = Some(r.bytes(msg!("a kid (bstr)"))?),
                cose_header::CRIT => {
                    // RFC 9052 §3.1: crit MUST be in the protected bucket.
                    if !protected {
                        return Err(Error::InvalidMember {
                            offset,
                            member: msg!("crit in the unprotected header"),
                        });
                    }
                    crit = Some(r.clone());
                    r.item()?;
                }
                _ => {
                    r.item()?;
                }
            }
        }
        if let Some(mut c) = crit {
            check_crit(&mut c)?;
        }
        Ok(header)
    }
}

/// `crit`: a non-empty array of labels, each one the verifier understands (RFC 9052 §3.1).
fn check_crit(r: &mut Reader<'_>) -> Result<()> {
    let at = r.offset();
    let n = r.array(msg!("crit (an array of labels)"))?;
    if n == 0 {
        return Err(Error::InvalidMember {
            offset: at,
            member: msg!("crit (it must not be empty)"),
        });
    }
    for _ in 0..n {
        match r.key()? {
            (Key::Int(label), _) if UNDERSTOOD_LABELS.contains(&label) => {}
            (Key::Int(label), _) => {
                return Err(Error::UnknownCriticalHeader { label: Some(label) });
            }
            // A text label is never one rota understands.
            (_, _) => return Err(Error::UnknownCriticalHeader { label: None }),
        }
    }
    Ok(())
}
