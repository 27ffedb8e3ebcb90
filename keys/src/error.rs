//! Why a key could not be read, used or checked.

/// Why a signer could not produce a signature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The key exists but cannot be reached now (an HSM that is absent, locked or
    /// refuses the login).
    #[error("the signing key is unavailable: {0}")]
    KeyUnavailable(String),
    /// The signing device or service reported an error.
    #[error("the signer failed: {0}")]
    Failed(String),
}

/// Why a key could not be read, written or generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The input is not PEM at all.
    #[error("not a PEM key file (expected a \"-----BEGIN ...-----\" block)")]
    NotPem,
    /// A private key where a public key was expected.
    #[error(
        "this is a private key; a trust anchor must be a public key (\"-----BEGIN PUBLIC KEY-----\")"
    )]
    PrivateKeyGiven,
    /// A public key where a private (signing) key was expected.
    #[error(
        "this is a public key; signing needs the private key (\"-----BEGIN PRIVATE KEY-----\")"
    )]
    PublicKeyGiven,
    /// A PEM block of another kind (a certificate, an encrypted key, …).
    #[error("expected a \"{expected}\" PEM block, found \"{found}\"")]
    WrongPemLabel {
        expected: &'static str,
        found: String,
    },
    /// A well-formed key of a type rota does not use.
    #[error("unsupported key type: {0}")]
    UnsupportedKeyType(String),
    /// The PEM holds a key of the right type whose encoding is invalid.
    #[error("invalid {kind} key: {detail}")]
    Invalid { kind: &'static str, detail: String },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    RandomSource(String),
    /// The key's holder (a token, a TPM, a service) cannot be reached or refused.
    #[error("the key is unavailable: {0}")]
    Unavailable(String),
    /// A key in a PKCS#11 token could not be found, opened or used.
    #[error(transparent)]
    Pkcs11(Box<crate::pkcs11::Pkcs11Error>),
    /// A key file could not be read.
    #[error("cannot read {}: {}", path.display(), io_reason(source))]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The public key is not a valid, canonically encoded point, or is of small order.
    #[error("the public key is not a valid key")]
    InvalidPublicKey,
    /// The signature does not verify (or is not the 64-byte fixed form).
    #[error("the signature does not verify")]
    BadSignature,
}

impl From<crate::pkcs11::Pkcs11Error> for KeyError {
    fn from(e: crate::pkcs11::Pkcs11Error) -> Self {
        Self::Pkcs11(Box::new(e))
    }
}

/// An I/O error in words: the one phrasing of every rota file error ("cannot read
/// PATH: no such file").
pub fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => "no such file".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::IsADirectory => "it is a directory".into(),
        ErrorKind::AlreadyExists => "it already exists".into(),
        ErrorKind::NotADirectory => "a parent is not a directory".into(),
        ErrorKind::DirectoryNotEmpty => "it is not empty".into(),
        _ => e.to_string(),
    }
}
