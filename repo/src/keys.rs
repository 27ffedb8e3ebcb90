//! Ed25519 keys for the TUF roles: private keys as PKCS#8 PEM files (as `rota keygen`
//! writes them), public keys as TUF `KEY` objects with their key ids.
//!
//! TUF 1.0.34 §4.2: an Ed25519 `KEY` is `{"keytype": "ed25519", "scheme": "ed25519",
//! "keyval": {"public": HEX}}` and its `KEYID` is the hex SHA-256 of the key's canonical
//! JSON, exactly as tough computes it ([`tough::schema::key::Key::key_id`]).
//!
//! rota signs through its own key seam (rota-keys) rather than tough's `parse_keypair`:
//! tough reads only DER (not PEM), whereas rota's key files are PEM and may be PKCS#8
//! version 1 (no embedded public key, as `rota keygen` writes) or version 2, and a role
//! key may be held in hardware. [`RepoKey`] still implements [`tough::sign::Sign`], so
//! tough's own repository editor can sign with it.

use std::collections::HashMap;
use std::fmt;

use rota_keys::{Algorithm, Sign, SoftwareKey};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::{Ed25519Key, Ed25519Scheme, Key};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// An Ed25519 public key as TUF lists it, with its key id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
    key_id: String,
}

impl PublicKey {
    /// The TUF key of a key from rota's key seam: Ed25519 only (see [`RepoKey`]).
    pub fn from_seam(key: &rota_keys::PublicKey) -> Result<Self> {
        match key {
            rota_keys::PublicKey::Ed25519(bytes) => Self::from_bytes(*bytes),
            rota_keys::PublicKey::P256(_) => Err(Error::RoleKeyNotEd25519),
        }
    }

    fn of_ed25519(key: &SoftwareKey) -> Self {
        let rota_keys::PublicKey::Ed25519(bytes) = key.public_key() else {
            unreachable!("made from an Ed25519 seed")
        };
        Self {
            key_id: hex::encode(key_id_bytes(&bytes)),
            bytes,
        }
    }

    /// The key from its 32 raw bytes; fails when they are not a valid Ed25519 point.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self> {
        rota_keys::PublicKey::Ed25519(bytes)
            .validate()
            .map_err(|_| Error::InvalidPublicKey)?;
        let key_id = hex::encode(key_id_bytes(&bytes));
        Ok(Self { bytes, key_id })
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The TUF key id: lowercase hex of SHA-256 over the key's canonical JSON.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The TUF `KEY` object.
    pub fn tuf_key(&self) -> Key {
        tuf_key(&self.bytes)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id)
    }
}

/// The TUF `KEY` for raw Ed25519 public key bytes.
fn tuf_key(bytes: &[u8; 32]) -> Key {
    Key::Ed25519 {
        keyval: Ed25519Key {
            public: Decoded::<Hex>::from(bytes.to_vec()),
            _extra: HashMap::new(),
        },
        scheme: Ed25519Scheme::Ed25519,
        _extra: HashMap::new(),
    }
}

/// The key id of raw Ed25519 public key bytes, computed by tough (canonical JSON, SHA-256).
fn key_id_bytes(bytes: &[u8; 32]) -> Vec<u8> {
    // Serializing a key built from bytes cannot fail (no floats, no non-string map keys).
    tuf_key(bytes)
        .key_id()
        .map(|id| id.to_vec())
        .unwrap_or_default()
}

/// The private key of one TUF role, held wherever its [`Sign`] lives: in memory (read
/// from a PEM file or generated) or in hardware (PKCS#11, TPM) through rota's key seam.
///
/// TUF role keys are Ed25519 (TUF 1.0.34 §4.2 `ed25519`/`ed25519`): what every rota
/// device verifies. Its `Debug` shows the key id only.
pub struct RepoKey {
    holder: Holder,
    public: PublicKey,
}

enum Holder {
    /// Exportable: `rota repo init` writes it to a key file.
    Software(Box<SoftwareKey>),
    /// In a PKCS#11 token: its key file is a stub naming it (`rota_keys::KeyFile`).
    Token(Box<rota_keys::pkcs11::Pkcs11Key>),
    /// Held elsewhere; it signs but never leaves its holder.
    Elsewhere(Box<dyn Sign>),
}

impl RepoKey {
    /// A new random key, from the operating system's random number generator.
    pub fn generate() -> Result<Self> {
        Self::from_software(SoftwareKey::generate(Algorithm::Ed25519)?)
    }

    /// The key from a 32-byte Ed25519 seed (RFC 8032 secret key); for tests and vectors.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SoftwareKey::from_ed25519_seed(*seed);
        let public = PublicKey::of_ed25519(&key);
        Self {
            holder: Holder::Software(Box::new(key)),
            public,
        }
    }

    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), either version 1
    /// (as `rota keygen` writes) or version 2 with the public key, which must then match.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        Self::from_software(rota_keys::private_key_from_pem(pem)?)
    }

    /// A key opened from its address (a key file, a stub, a PKCS#11 URI): exportable
    /// when it is in memory, held in its token otherwise.
    pub fn from_private(key: rota_keys::PrivateKey) -> Result<Self> {
        match key {
            rota_keys::PrivateKey::Software(key) => Self::from_software(key),
            rota_keys::PrivateKey::Pkcs11(key) => {
                let public = PublicKey::from_seam(&key.public_key())?;
                Ok(Self {
                    holder: Holder::Token(Box::new(key)),
                    public,
                })
            }
        }
    }

    /// A key held elsewhere (an HSM, a TPM): signs through `signer`.
    pub fn from_signer(signer: Box<dyn Sign>) -> Result<Self> {
        let public = PublicKey::from_seam(&signer.public_key())?;
        Ok(Self {
            holder: Holder::Elsewhere(signer),
            public,
        })
    }

    fn from_software(key: SoftwareKey) -> Result<Self> {
        let public = PublicKey::from_seam(&key.public_key())?;
        Ok(Self {
            holder: Holder::Software(Box::new(key)),
            public,
        })
    }

    /// The key as PKCS#8 PEM, for a key held in memory; a key held elsewhere cannot be
    /// exported.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        match &self.holder {
            Holder::Software(key) => Ok(key.to_pkcs8_pem()?),
            Holder::Token(_) | Holder::Elsewhere(_) => Err(Error::KeyNotExportable),
        }
    }

    /// What the key's file in a repository holds: the PKCS#8 PEM of a key in memory, or
    /// the stub naming a key in a token (its URI, one line); a key held elsewhere has none.
    pub fn key_file_text(&self) -> Result<Zeroizing<String>> {
        match &self.holder {
            Holder::Token(key) => Ok(Zeroizing::new(rota_keys::stub_text(key.uri()))),
            _ => self.to_pkcs8_pem(),
        }
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The TUF key id.
    pub fn key_id(&self) -> &str {
        self.public.key_id()
    }

    /// The Ed25519 signature of `msg` (deterministic, RFC 8032, for a key in memory).
    pub(crate) fn sign_bytes(&self, msg: &[u8]) -> Result<Vec<u8>> {
        Ok(match &self.holder {
            Holder::Software(key) => key.sign(msg)?,
            Holder::Token(key) => key.sign(msg)?,
            Holder::Elsewhere(signer) => signer.sign(msg)?,
        })
    }
}

impl fmt::Debug for RepoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoKey({})", self.public.key_id)
    }
}

#[tough::async_trait]
impl tough::sign::Sign for RepoKey {
    fn tuf_key(&self) -> Key {
        self.public.tuf_key()
    }

    async fn sign(
        &self,
        msg: &[u8],
        _rng: &(dyn aws_lc_rs::rand::SecureRandom + Sync),
    ) -> std::result::Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(self.sign_bytes(msg)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 §7.1 TEST 1 (a public test key).
    const SEED: [u8; 32] = [
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c,
        0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae,
        0x7f, 0x60,
    ];

    #[test]
    fn key_id_is_sha256_of_the_canonical_key() {
        use sha2::Digest as _;
        let key = RepoKey::from_seed(&SEED);
        let canonical = format!(
            r#"{{"keytype":"ed25519","keyval":{{"public":"{}"}},"scheme":"ed25519"}}"#,
            hex::encode(key.public().as_bytes())
        );
        assert_eq!(
            key.key_id(),
            hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
        );
    }

    #[test]
    fn pem_round_trip_and_v1() {
        let key = RepoKey::from_seed(&SEED);
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(
            RepoKey::from_pkcs8_pem(&pem).unwrap().key_id(),
            key.key_id()
        );
        // PKCS#8 v1 (RFC 8410 §10.3's example layout, no public key), as `rota keygen` writes.
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&SEED);
        let v1 = ed25519_dalek::pkcs8::spki::der::pem::encode_string(
            "PRIVATE KEY",
            ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF,
            &der,
        )
        .unwrap();
        assert_eq!(RepoKey::from_pkcs8_pem(&v1).unwrap().key_id(), key.key_id());
    }

    #[test]
    fn refuses_public_garbage_and_p256() {
        let public = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            RepoKey::from_pkcs8_pem(public),
            Err(Error::Key(rota_keys::KeyError::PublicKeyGiven))
        ));
        assert!(matches!(
            RepoKey::from_pkcs8_pem("hello"),
            Err(Error::Key(rota_keys::KeyError::NotPem))
        ));
        let p256 = SoftwareKey::generate(Algorithm::EcdsaP256Sha256).unwrap();
        assert!(matches!(
            RepoKey::from_pkcs8_pem(&p256.to_pkcs8_pem().unwrap()),
            Err(Error::RoleKeyNotEd25519)
        ));
    }

    /// A key held elsewhere signs through the seam and yields the same key id.
    #[test]
    fn key_held_elsewhere_signs_like_the_same_key_in_memory() {
        let elsewhere =
            RepoKey::from_signer(Box::new(SoftwareKey::from_ed25519_seed(SEED))).unwrap();
        let memory = RepoKey::from_seed(&SEED);
        assert_eq!(elsewhere.key_id(), memory.key_id());
        assert_eq!(
            elsewhere.sign_bytes(b"m").unwrap(),
            memory.sign_bytes(b"m").unwrap()
        );
        assert!(matches!(
            elsewhere.to_pkcs8_pem(),
            Err(Error::KeyNotExportable)
        ));
    }

    #[test]
    fn a_key_in_a_token_is_never_written_out_only_named() {
        let hsm = rota_keys::test_tokens::SoftHsm::in_process();
        let uri: rota_keys::pkcs11::Pkcs11Uri =
            hsm.uri("rota-test", "repo-sealed").parse().unwrap();
        let key = rota_keys::pkcs11::Pkcs11Key::generate(&uri, Algorithm::Ed25519).unwrap();
        let key = RepoKey::from_private(rota_keys::PrivateKey::Pkcs11(key)).unwrap();
        assert!(matches!(key.to_pkcs8_pem(), Err(Error::KeyNotExportable)));
        // Its key file in a repository is the stub naming it: the token's label, and the
        // id the token gave the new key (another key may take the label later).
        let text = key.key_file_text().unwrap();
        let named: rota_keys::pkcs11::Pkcs11Uri = text.trim_end().parse().unwrap();
        assert_eq!(named.object, uri.object);
        assert_eq!(named.token, uri.token);
        assert!(named.id.is_some(), "{}", text.as_str());
        assert!(!text.contains("PRIVATE KEY"));
        // It signs as TUF wants: Ed25519, verifying with its public key.
        let signature = key.sign_bytes(b"signed").unwrap();
        rota_keys::PublicKey::Ed25519(*key.public().as_bytes())
            .verify(b"signed", &signature)
            .unwrap();
    }
}
