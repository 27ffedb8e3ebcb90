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

/// A private key file: PKCS#8 PEM as `rota keygen` writes it, or a *stub* naming a key
/// held in a token: one line holding its PKCS#11 URI (as GnuPG's stubs point at a smart
/// card). A stub lets every place that finds keys as files (a repository's `keys/`
/// directory, a configuration) hold token keys too, and it holds no secret.
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

    /// Reads the file (at most [`MAX_KEY_FILE_LEN`] bytes): the key in it, or the
    /// token key its stub names.
    pub fn open(&self) -> Result<PrivateKey, KeyError> {
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
        match stub_uri(&text) {
            Some(uri) => Ok(PrivateKey::Pkcs11(Pkcs11Key::open(&uri.parse()?)?)),
            None => private_key_from_pem(&text).map(PrivateKey::Software),
        }
    }

    /// Writes a stub for the token key `uri` at `path` (a new file, mode 0600 on Unix:
    /// the URI may name where the PIN is).
    pub fn write_stub(path: &Path, uri: &Pkcs11Uri) -> Result<Self, KeyError> {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = options.open(path).map_err(io)?;
        file.write_all(stub_text(uri).as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self::new(path))
    }
}

/// A stub's content: the URI on one line (what [`KeyFile::open`] reads back).
pub fn stub_text(uri: &Pkcs11Uri) -> String {
    format!("{uri}\n")
}

/// The URI of a stub: the file is one `pkcs11:` line.
fn stub_uri(text: &str) -> Option<&str> {
    let line = text
        .strip_suffix('\n')
        .unwrap_or(text)
        .trim_end_matches('\r');
    (line.starts_with("pkcs11:") && !line.contains('\n')).then_some(line)
}

impl KeySource for KeyFile {
    fn as_sign(&self) -> Result<Box<dyn Sign>, KeyError> {
        self.open().map(PrivateKey::boxed)
    }
}

/// A private key once its address is resolved: in memory (a key file), or in a token.
#[derive(Debug)]
pub enum PrivateKey {
    Software(SoftwareKey),
    Pkcs11(Pkcs11Key),
}

impl PrivateKey {
    /// The key as a signer.
    pub fn boxed(self) -> Box<dyn Sign> {
        match self {
            Self::Software(key) => Box::new(key),
            Self::Pkcs11(key) => Box::new(key),
        }
    }

    /// Whether the key lives in a token (and so can never be written out).
    pub fn is_in_token(&self) -> bool {
        matches!(self, Self::Pkcs11(_))
    }
}

impl Sign for PrivateKey {
    fn public_key(&self) -> PublicKey {
        match self {
            Self::Software(key) => key.public_key(),
            Self::Pkcs11(key) => key.public_key(),
        }
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match self {
            Self::Software(key) => key.sign(message),
            Self::Pkcs11(key) => key.sign(message),
        }
    }
}

/// Where a private key is, as every `--key`-like argument takes it: a PKCS#11 URI
/// (RFC 7512, text starting `pkcs11:`) for a key in a token, else the path of a key file
/// (which may itself be a stub naming a token key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAddress {
    File(KeyFile),
    Pkcs11(Box<Pkcs11Uri>),
}

impl KeyAddress {
    /// Opens the key: reads the file, or logs in to the token and finds the key.
    pub fn open(&self) -> Result<PrivateKey, KeyError> {
        match self {
            Self::File(file) => file.open(),
            Self::Pkcs11(uri) => Ok(PrivateKey::Pkcs11(Pkcs11Key::open(uri)?)),
        }
    }

    /// The file, for an address that is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::File(file) => Some(file.path()),
            Self::Pkcs11(_) => None,
        }
    }
}

impl std::str::FromStr for KeyAddress {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        if text.starts_with("pkcs11:") {
            Ok(Self::Pkcs11(Box::new(text.parse()?)))
        } else {
            Ok(Self::File(KeyFile::new(text)))
        }
    }
}

impl From<PathBuf> for KeyAddress {
    fn from(path: PathBuf) -> Self {
        Self::File(KeyFile::new(path))
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
        self.open().map(PrivateKey::boxed)
    }
}
