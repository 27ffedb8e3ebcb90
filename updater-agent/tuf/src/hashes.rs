//! Length and hash checks of downloaded bytes against trusted metadata
//! (TUF 1.0.34 §5.5.2, §5.6.2, §5.7.3).

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use crate::{Error, TargetInfo};

/// The hash algorithms a listing may name (python-tuf supports these through
/// securesystemslib; any other name makes the check fail rather than be skipped).
enum Hasher {
    Sha224(Sha224),
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Hasher {
    fn new(alg: &str) -> Option<Self> {
        Some(match alg {
            "sha224" => Hasher::Sha224(Sha224::new()),
            "sha256" => Hasher::Sha256(Sha256::new()),
            "sha384" => Hasher::Sha384(Sha384::new()),
            "sha512" => Hasher::Sha512(Sha512::new()),
            _ => return None,
        })
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha224(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha384(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    fn hex(self) -> String {
        match self {
            Hasher::Sha224(h) => hex::encode(h.finalize()),
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha384(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// Streaming check of bytes against an expected length and every listed hash.
struct Checker {
    file: String,
    length: Option<u64>,
    seen: u64,
    hashes: Vec<(String, String, Hasher)>,
}

impl Checker {
    fn new(file: &str, length: Option<u64>, hashes: &[(String, String)]) -> Result<Self, Error> {
        let hashes = hashes
            .iter()
            .map(|(alg, expected)| match Hasher::new(alg) {
                Some(h) => Ok((alg.clone(), expected.clone(), h)),
                None => Err(Error::LengthOrHash {
                    file: file.to_owned(),
                    reason: format!("the hash algorithm {alg:?} is not supported"),
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Checker {
            file: file.to_owned(),
            length,
            seen: 0,
            hashes,
        })
    }

    fn update(&mut self, bytes: &[u8]) {
        self.seen = self.seen.saturating_add(bytes.len() as u64);
        for (_, _, h) in &mut self.hashes {
            h.update(bytes);
        }
    }

    fn finish(self) -> Result<(), Error> {
        let fail = |reason: String| Error::LengthOrHash {
            file: self.file.clone(),
            reason,
        };
        if let Some(length) = self.length {
            if self.seen != length {
                return Err(fail(format!(
                    "{} bytes where {length} are listed",
                    self.seen
                )));
            }
        }
        for (alg, expected, h) in self.hashes {
            // python-tuf compares the lowercase hex digest with the listed string as is.
            let observed = h.hex();
            if observed != expected {
                return Err(fail(format!(
                    "{alg} is {observed}, the listed {alg} is {expected}"
                )));
            }
        }
        Ok(())
    }
}

/// `MetaFile.verify_length_and_hashes`: checks `length` and `hashes` where listed.
pub(crate) fn check_meta(
    file: &str,
    bytes: &[u8],
    length: Option<u64>,
    hashes: Option<&[(String, String)]>,
) -> Result<(), Error> {
    let mut checker = Checker::new(file, length, hashes.unwrap_or(&[]))?;
    checker.update(bytes);
    checker.finish()
}

/// Streaming verification of a target's bytes against its trusted length and **every**
/// listed hash (TUF 1.0.34 §5.7.3), for writing large images chunk by chunk.
pub struct TargetVerifier {
    checker: Checker,
}

impl TargetVerifier {
    /// Fails when a listed hash algorithm is not supported: it could not be checked.
    pub fn new(info: &TargetInfo) -> Result<Self, Error> {
        Ok(TargetVerifier {
            checker: Checker::new(&info.name, Some(info.length), &info.hashes)?,
        })
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.checker.update(bytes);
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.checker.seen
    }

    pub fn is_empty(&self) -> bool {
        self.checker.seen == 0
    }

    /// Ok only if the length equals the listed length and every listed hash matches.
    pub fn finish(self) -> Result<(), Error> {
        self.checker.finish()
    }
}
