//! SUIT_Digest (draft-ietf-suit-manifest-37 §10) and the streaming image digest.

use sha2::{Digest, Sha256};

use crate::cbor::Reader;
use crate::error::{Error, Result, msg};
use crate::labels::alg;

/// `SUIT_Digest = [ algorithm-id, digest-bytes, * extensions ]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuitDigest<'a> {
    /// COSE algorithm id (RFC 9054), e.g. -16 for SHA-256.
    pub alg: i64,
    pub bytes: &'a [u8],
}

/// Output length of a digest algorithm rota can recognise, by COSE id (RFC 9054 §2).
fn output_len(alg_id: i64) -> Option<usize> {
    match alg_id {
        alg::SHA256 => Some(32),
        alg::SHA384 => Some(48),
        alg::SHA512 => Some(64),
        -18 => Some(32), // SHAKE128, as SUIT profiles it
        -45 => Some(64), // SHAKE256
        _ => None,
    }
}

impl<'a> SuitDigest<'a> {
    /// Reads a SUIT_Digest. The length of the digest must match a known algorithm
    /// (a SHA-256 id with 31 bytes is refused here, not at comparison time).
    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        let at = r.offset();
        let len = r.array(msg!("a SUIT_Digest array"))?;
        if len < 2 {
            return Err(Error::Malformed {
                offset: at,
                expected: msg!("a SUIT_Digest [algorithm-id, digest-bytes]"),
            });
        }
        let alg = r.int(msg!("a digest algorithm id"))?;
        let bytes = r.bytes(msg!("digest bytes"))?;
        // `* $$SUIT_Digest-extensions`: allowed by the CDDL, meaningless to rota.
        for _ in 2..len {
            r.item()?;
        }
        if let Some(expected) = output_len(alg) {
            if bytes.len() != expected {
                return Err(Error::DigestLengthMismatch {
                    alg,
                    len: bytes.len(),
                });
            }
        }
        Ok(Self { alg, bytes })
    }

    /// Reads a SUIT_Digest that fills `r` exactly (`bstr .cbor SUIT_Digest`).
    pub fn read_whole(mut r: Reader<'a>) -> Result<Self> {
        let digest = Self::read(&mut r)?;
        r.finish()?;
        Ok(digest)
    }

    /// Whether `data` hashes to this digest. Only SHA-256 is implemented: it is what
    /// SUIT profiles mandate, and one hash keeps the bootloader small.
    pub fn matches(&self, data: &[u8]) -> Result<bool> {
        let mut d = ImageDigest::new();
        d.update(data);
        d.matches(self)
    }
}

/// SHA-256 over an image that arrives in chunks (flash reads, network bytes),
/// so no caller ever needs the whole image in memory.
#[derive(Clone, Debug, Default)]
pub struct ImageDigest {
    hasher: Sha256,
    len: u64,
}

impl ImageDigest {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been hashed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The SHA-256 of everything hashed.
    pub fn finalize(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }

    /// Whether the data hashed so far matches `expected`.
    pub fn matches(self, expected: &SuitDigest<'_>) -> Result<bool> {
        if expected.alg != alg::SHA256 {
            return Err(Error::UnsupportedDigestAlgorithm { alg: expected.alg });
        }
        Ok(self.finalize().as_slice() == expected.bytes)
    }

    /// Checks the image against a manifest's digest and, when given, its size.
    /// The size is checked first: it names the problem more precisely.
    pub fn check(self, expected: &SuitDigest<'_>, expected_size: Option<u64>) -> Result<()> {
        if let Some(size) = expected_size {
            if size != self.len {
                return Err(Error::ImageSizeMismatch {
                    expected: size,
                    actual: self.len,
                });
            }
        }
        if self.matches(expected)? {
            Ok(())
        } else {
            Err(Error::ImageDigestMismatch)
        }
    }
}
