//! The seam: where a key lives ([`KeySource`]) and what signs ([`Sign`]).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::pkcs11::{Pkcs11Key, Pkcs11Uri};
use crate::{Algorithm, KeyError, PublicKey, SignError, SoftwareKey, private_key_from_pem};

/// Signs bytes with one key. Implemented by [`SoftwareKey`] and by keys that never leave
/// their hardware (PKCS#11 tokens, TPMs), which need nothing more than these methods.
pub trait Sign: Send + Sync {
    /// The public key (and with it the algorithm).
    fn public_key(&self) -> PublicKey;

    /// Signs `message`. The signature is the fixed 64-byte form: `R || S` for Ed25519,
    /// `r || s` (not DER) for ECDSA P-256 with SHA-256 over `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;

    /// The algorithm of [`Sign::public_key`].
    fn algorithm(&self) -> Algorithm {
        self.public_key().algorithm()
    }
}

impl<S: Sign + ?Sized> Sign for &S {
    fn public_key(&self) -> PublicKey {
        (**self).public_key()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        (**self).sign(message)
    }
}

impl<S: Sign + ?Sized> Sign for Box<S> {
    fn public_key(&self) -> PublicKey {
        (**self).public_key()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        (**self).sign(message)
    }
}

impl<S: Sign + ?Sized> Sign for std::sync::Arc<S> {
    fn public_key(&self) -> PublicKey {
        (**self).public_key()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        (**self).sign(message)
    }
}

/// Where a signing key lives: yields a [`Sign`] for it.
pub trait KeySource: fmt::Debug + Send + Sync {
    /// Opens the key for signing (reads the file, logs in to the token, …).
    fn as_sign(&self) -> Result<Box<dyn Sign>, KeyError>;
}

/// A private key in a PKCS#8 PEM file, as `rota keygen` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    path: PathBuf,
}

/// Largest key file read: a PEM private key is a few hundred bytes.
pub const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

impl KeyFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the key (at most [`MAX_KEY_FILE_LEN`] bytes).
    pub fn load(&self) -> Result<SoftwareKey, KeyError> {
        use std::io::Read as _;
        let io = |source| KeyError::Io {
            path: self.path.clone(),
            source,
        };
        let mut text = zeroize::Zeroizing::new(String::new());
        std::fs::File::open(&self.path)
            .map_err(io)?
            .take(MAX_KEY_FILE_LEN + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > MAX_KEY_FILE_LEN {
            return Err(KeyError::Invalid {
                kind: "PEM",
                detail: format!("the file is over {MAX_KEY_FILE_LEN} bytes"),
            });
        }
        private_key_from_pem(&text)
    }
}

impl KeySource for KeyFile {
    fn as_sign(&self) -> Result<Box<dyn Sign>, KeyError> {
        Ok(Box::new(self.load()?))
    }
}

/// Where a private key is, as every `--key`-like argument takes it: a PKCS#11 URI
/// (RFC 7512, text starting `pkcs11:`) for a key in a token, else the path of a PEM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAddress {
    File(KeyFile),
    Pkcs11(Pkcs11Uri),
}

impl KeyAddress {
    /// Whether the key is held in a token (and so cannot be read or written as a file).
    pub fn is_in_token(&self) -> bool {
        matches!(self, Self::Pkcs11(_))
    }
}

impl std::str::FromStr for KeyAddress {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        if text.starts_with("pkcs11:") {
            Ok(Self::Pkcs11(text.parse()?))
        } else {
            Ok(Self::File(KeyFile::new(text)))
        }
    }
}

impl fmt::Display for KeyAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(file) => write!(f, "{}", file.path().display()),
            Self::Pkcs11(uri) => write!(f, "{uri}"),
        }
    }
}

impl KeySource for KeyAddress {
    fn as_sign(&self) -> Result<Box<dyn Sign>, KeyError> {
        match self {
            Self::File(file) => file.as_sign(),
            Self::Pkcs11(uri) => Ok(Box::new(Pkcs11Key::open(uri)?)),
        }
    }
}
