//! Signing keys for the builder (`builder` feature): the [`Signer`] trait, the
//! software [`Ed25519Signer`], and PEM parsing of trust anchors.
//!
//! [`Signer`] is the seam for keys that never leave hardware (PKCS#11 HSMs, cloud
//! KMS): the builder only asks a signer for its algorithm, its public key and a
//! signature over the COSE `Sig_structure` bytes.
//!
//! Key files are the formats every other tool reads: private keys as PKCS#8 PEM
//! (`-----BEGIN PRIVATE KEY-----`, RFC 5958 / RFC 8410), public keys as
//! SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`, RFC 5280), so
//! `openssl pkey -in k.key -pubout` gives the same `.pub` that rota writes.

use std::fmt;
use std::string::{String, ToString};
use std::vec::Vec;

use ed25519_dalek::Signer as _;
use pkcs8::der::pem::PemLabel as _;
use pkcs8::der::pem::{self, LineEnding};
use pkcs8::der::zeroize::Zeroizing;
use pkcs8::spki::SubjectPublicKeyInfoRef;
use pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};

use crate::crypto::{ED25519_KEY_LEN, P256_KEY_LEN, PublicKey, SignatureAlgorithm};

/// Why a signer could not produce a signature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The key cannot be used with the algorithm asked for (for example an Ed25519 key
    /// asked to sign ES256).
    #[error("a {key} key cannot sign with {alg}")]
    AlgorithmMismatch {
        key: &'static str,
        alg: &'static str,
    },
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
}

/// Produces the signatures of an envelope's COSE_Sign1 blocks.
///
/// Implementations: [`Ed25519Signer`] (a software key); an HSM-backed signer
/// implements the same three methods and the builder needs nothing else.
pub trait Signer {
    /// The COSE algorithm written into the protected header.
    fn algorithm(&self) -> SignatureAlgorithm;
    /// The public key; its [`PublicKey::key_id`] becomes the COSE `kid`.
    fn public_key(&self) -> PublicKey;
    /// Signs `message` (the encoded COSE `Sig_structure`, RFC 9052 §4.4).
    ///
    /// The signature is in COSE's encoding: 64 bytes `R || S` for Ed25519, fixed-size
    /// `r || s` (not DER) for ECDSA (RFC 9053 §2.1).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
}

impl<S: Signer + ?Sized> Signer for &S {
    fn algorithm(&self) -> SignatureAlgorithm {
        (**self).algorithm()
    }
    fn public_key(&self) -> PublicKey {
        (**self).public_key()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        (**self).sign(message)
    }
}

/// An Ed25519 signing key held in memory (ed25519-dalek), zeroized on drop.
///
/// Signs as COSE alg -19 (Ed25519, RFC 9864) unless told otherwise with
/// [`Ed25519Signer::with_algorithm`].
pub struct Ed25519Signer {
    key: ed25519_dalek::SigningKey,
    algorithm: SignatureAlgorithm,
}

impl fmt::Debug for Ed25519Signer {
    /// Shows the public key only, never the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("public_key", &self.key.verifying_key().as_bytes())
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Ed25519Signer {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; ED25519_KEY_LEN]);
        getrandom::fill(seed.as_mut()).map_err(|e| KeyError::RandomSource(e.to_string()))?;
        Ok(Self {
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
            algorithm: SignatureAlgorithm::Ed25519,
        })
    }

    /// The key whose RFC 8032 secret (the 32-byte seed) is `seed`.
    /// For tests and for keys held elsewhere; [`Ed25519Signer::generate`] makes new ones.
    pub fn from_seed(seed: [u8; ED25519_KEY_LEN]) -> Self {
        Self {
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
            algorithm: SignatureAlgorithm::Ed25519,
        }
    }

    /// Reads an unencrypted PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = decode_pem(pem)?;
        match label.as_str() {
            "PRIVATE KEY" => {}
            "PUBLIC KEY" => return Err(KeyError::PublicKeyGiven),
            _ => {
                return Err(KeyError::WrongPemLabel {
                    expected: "PRIVATE KEY",
                    found: label,
                });
            }
        }
        let info =
            pkcs8::PrivateKeyInfoRef::try_from(der.as_slice()).map_err(|e| KeyError::Invalid {
                kind: "PKCS#8 private",
                detail: e.to_string(),
            })?;
        if info.algorithm.oid != OID_ED25519 {
            let curve = info
                .algorithm
                .parameters
                .and_then(|p| p.decode_as::<pkcs8::ObjectIdentifier>().ok());
            return Err(KeyError::UnsupportedKeyType(std::format!(
                "{} (rota signs with Ed25519 keys)",
                describe_algorithm(info.algorithm.oid, curve)
            )));
        }
        let key =
            ed25519_dalek::SigningKey::from_pkcs8_der(&der).map_err(|e| KeyError::Invalid {
                kind: "Ed25519 private",
                detail: e.to_string(),
            })?;
        Ok(Self {
            key,
            algorithm: SignatureAlgorithm::Ed25519,
        })
    }

    /// The private key as PKCS#8 PEM (RFC 8410), in memory that is zeroized on drop.
    ///
    /// Written as a version 1 `PrivateKeyInfo` without the optional public key, the
    /// form OpenSSL writes and every PKCS#8 reader accepts (OpenSSL 3.0 cannot read the
    /// version 2 form ed25519-dalek writes by default).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let invalid = |e: pkcs8::der::Error| KeyError::Invalid {
            kind: "Ed25519 private",
            detail: e.to_string(),
        };
        // RFC 8410 §7: privateKey is an OCTET STRING holding `CurvePrivateKey ::= OCTET STRING`.
        let mut curve_private_key = Zeroizing::new([0u8; 2 + ED25519_KEY_LEN]);
        curve_private_key[0] = 0x04;
        curve_private_key[1] = ED25519_KEY_LEN as u8;
        curve_private_key[2..].copy_from_slice(self.key.as_bytes());
        let info = pkcs8::PrivateKeyInfoRef {
            algorithm: pkcs8::AlgorithmIdentifierRef {
                oid: OID_ED25519,
                parameters: None,
            },
            private_key: pkcs8::der::asn1::OctetStringRef::new(&curve_private_key[..])
                .map_err(invalid)?,
            public_key: None,
        };
        pkcs8::SecretDocument::encode_msg(&info)
            .map_err(invalid)?
            .to_pem(pkcs8::PrivateKeyInfoRef::PEM_LABEL, LineEnding::LF)
            .map_err(invalid)
    }

    /// The public key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_key_pem(&self) -> Result<String, KeyError> {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Invalid {
                kind: "Ed25519 public",
                detail: e.to_string(),
            })
    }

    /// Signs as `algorithm` instead: [`SignatureAlgorithm::EdDsa`] (-8) for verifiers
    /// that predate RFC 9864. rota's own verifiers accept -8 only by explicit policy.
    pub fn with_algorithm(mut self, algorithm: SignatureAlgorithm) -> Result<Self, SignError> {
        if !self.public_key().fits(algorithm) {
            return Err(SignError::AlgorithmMismatch {
                key: "Ed25519",
                alg: algorithm.name(),
            });
        }
        self.algorithm = algorithm;
        Ok(self)
    }
}

impl Signer for Ed25519Signer {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    fn public_key(&self) -> PublicKey {
        PublicKey::Ed25519(self.key.verifying_key().to_bytes())
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        // RFC 8032 Ed25519 is deterministic and cannot fail for a valid key.
        Ok(self.key.sign(message).to_bytes().to_vec())
    }
}

/// id-Ed25519 (RFC 8410).
const OID_ED25519: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.3.101.112");
/// id-ecPublicKey (RFC 5480).
const OID_EC_PUBLIC_KEY: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 / prime256v1 / NIST P-256 (RFC 5480).
const OID_P256: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// Reads a trust anchor: a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`)
/// holding an Ed25519 key (RFC 8410) or an ECDSA P-256 key (RFC 5480; returned as the
/// 65-byte uncompressed SEC1 point).
pub fn public_key_from_pem(pem: &str) -> Result<PublicKey, KeyError> {
    let (label, der) = decode_pem(pem)?;
    match label.as_str() {
        "PUBLIC KEY" => {}
        "PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" | "OPENSSH PRIVATE KEY" => {
            return Err(KeyError::PrivateKeyGiven);
        }
        _ => {
            return Err(KeyError::WrongPemLabel {
                expected: "PUBLIC KEY",
                found: label,
            });
        }
    }
    let spki =
        SubjectPublicKeyInfoRef::try_from(der.as_slice()).map_err(|e| KeyError::Invalid {
            kind: "SubjectPublicKeyInfo public",
            detail: e.to_string(),
        })?;
    let curve = spki
        .algorithm
        .parameters
        .and_then(|p| p.decode_as::<pkcs8::ObjectIdentifier>().ok());
    match (spki.algorithm.oid, curve) {
        (OID_ED25519, _) => {
            let key = ed25519_dalek::VerifyingKey::from_public_key_der(&der).map_err(|e| {
                KeyError::Invalid {
                    kind: "Ed25519 public",
                    detail: e.to_string(),
                }
            })?;
            Ok(PublicKey::Ed25519(key.to_bytes()))
        }
        (OID_EC_PUBLIC_KEY, Some(OID_P256)) => {
            use p256::elliptic_curve::sec1::ToSec1Point as _;
            let key =
                p256::PublicKey::from_public_key_der(&der).map_err(|e| KeyError::Invalid {
                    kind: "P-256 public",
                    detail: e.to_string(),
                })?;
            let point = key.to_sec1_point(false);
            let bytes: [u8; P256_KEY_LEN] =
                point.as_bytes().try_into().map_err(|_| KeyError::Invalid {
                    kind: "P-256 public",
                    detail: "not an uncompressed point".to_string(),
                })?;
            Ok(PublicKey::P256(bytes))
        }
        (oid, curve) => Err(KeyError::UnsupportedKeyType(std::format!(
            "{} (rota trusts Ed25519 and ECDSA P-256 keys)",
            describe_algorithm(oid, curve)
        ))),
    }
}

/// Decodes one PEM block; returns its label and DER bytes (zeroized on drop: they may
/// be a private key).
fn decode_pem(pem: &str) -> Result<(String, Zeroizing<Vec<u8>>), KeyError> {
    // RFC 7468 allows text before the block ("explanatory text"); OpenSSL writes some
    // (e.g. `openssl ec -text`). Start at the first encapsulation boundary.
    let start = pem.find("-----BEGIN ").ok_or(KeyError::NotPem)?;
    let block = &pem.as_bytes()[start..];
    let (label, der) = pem::decode_vec(block.trim_ascii_end()).map_err(|e| {
        match pem::decode_label(block) {
            // The label is readable but the body is not.
            Ok(label) => KeyError::Invalid {
                kind: pem_kind(label),
                detail: std::format!("bad PEM encoding ({e})"),
            },
            Err(_) => KeyError::NotPem,
        }
    })?;
    Ok((label.to_string(), Zeroizing::new(der)))
}

fn pem_kind(label: &str) -> &'static str {
    match label {
        "PUBLIC KEY" => "SubjectPublicKeyInfo public",
        "PRIVATE KEY" => "PKCS#8 private",
        _ => "PEM",
    }
}

/// A readable name for a key algorithm (and its curve, for EC keys).
fn describe_algorithm(
    oid: pkcs8::ObjectIdentifier,
    curve: Option<pkcs8::ObjectIdentifier>,
) -> String {
    match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA".to_string(),
        "1.2.840.113549.1.1.10" => "RSA-PSS".to_string(),
        "1.3.101.110" => "X25519".to_string(),
        "1.3.101.111" => "X448".to_string(),
        "1.3.101.113" => "Ed448".to_string(),
        "1.2.840.10045.2.1" => match curve.map(|c| c.to_string()).as_deref() {
            Some("1.3.132.0.34") => "ECDSA P-384".to_string(),
            Some("1.3.132.0.35") => "ECDSA P-521".to_string(),
            Some("1.3.132.0.10") => "ECDSA secp256k1".to_string(),
            Some("1.2.840.10045.3.1.7") => "ECDSA P-256".to_string(),
            Some(other) => std::format!("EC on curve {other}"),
            None => "EC without a named curve".to_string(),
        },
        other => std::format!("algorithm {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 §7.1 TEST 1.
    const SEED: [u8; 32] = [
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c,
        0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae,
        0x7f, 0x60,
    ];
    const PUBLIC: [u8; 32] = [
        0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07,
        0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07,
        0x51, 0x1a,
    ];

    #[test]
    fn rfc8032_test1_signature() {
        let signer = Ed25519Signer::from_seed(SEED);
        assert_eq!(signer.public_key(), PublicKey::Ed25519(PUBLIC));
        // RFC 8032 §7.1 TEST 1: the empty message.
        let sig = signer.sign(b"").unwrap();
        assert_eq!(
            sig[..8],
            [0xe5, 0x56, 0x43, 0x00, 0xc3, 0x60, 0xac, 0x72],
            "RFC 8032 TEST 1 signature prefix"
        );
    }

    #[test]
    fn pem_round_trip() {
        let signer = Ed25519Signer::from_seed(SEED);
        let private = signer.to_pkcs8_pem().unwrap();
        // PKCS#8 v1 as OpenSSL writes it: 30 2e 02 01 00 30 05 06 03 2b 65 70 04 22 04 20 <seed>.
        assert_eq!(
            private.as_str(),
            "-----BEGIN PRIVATE KEY-----\n\
             MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
             -----END PRIVATE KEY-----\n"
        );
        let again = Ed25519Signer::from_pkcs8_pem(&private).unwrap();
        assert_eq!(again.public_key(), signer.public_key());

        let public = signer.public_key_pem().unwrap();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(public_key_from_pem(&public).unwrap(), signer.public_key());
        // Explanatory text before the block is allowed (RFC 7468 §2).
        let with_text = std::format!("Ed25519 test key\n{public}");
        assert_eq!(
            public_key_from_pem(&with_text).unwrap(),
            signer.public_key()
        );
    }

    #[test]
    fn generated_keys_differ() {
        let a = Ed25519Signer::generate().unwrap();
        let b = Ed25519Signer::generate().unwrap();
        assert_ne!(a.public_key(), b.public_key());
    }

    #[test]
    fn p256_anchor_is_uncompressed_sec1() {
        // draft-ietf-suit-manifest-37's example key.
        let pem = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhJaBGq4LqqvSYVcYnuzaJr6qi/Eb
bz/m4rVlnIXbwK07HypLbAmBMcCjbazR14vTgdzfsJwFLbM5kdtzOLSolg==
-----END PUBLIC KEY-----
";
        match public_key_from_pem(pem).unwrap() {
            PublicKey::P256(k) => assert_eq!(k[0], 0x04),
            other => panic!("expected a P-256 key, got {other:?}"),
        }
    }

    #[test]
    fn key_errors_are_specific() {
        let signer = Ed25519Signer::from_seed(SEED);
        let private = signer.to_pkcs8_pem().unwrap();
        let public = signer.public_key_pem().unwrap();
        assert!(matches!(
            public_key_from_pem(&private),
            Err(KeyError::PrivateKeyGiven)
        ));
        assert!(matches!(
            Ed25519Signer::from_pkcs8_pem(&public),
            Err(KeyError::PublicKeyGiven)
        ));
        assert!(matches!(
            public_key_from_pem("hello"),
            Err(KeyError::NotPem)
        ));
        assert!(matches!(
            public_key_from_pem("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n"),
            Err(KeyError::Invalid { .. })
        ));
        // Keys of other types (made with `openssl genpkey`) are named in the error.
        let p384 = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE1DL16Ys979SbDGlLyfWSFVoJyJmPmzNV
saKbuD4/wnPphFp9S8/2ceWy9wczIK1FIc07+g6BaUMJ2iVJqikUBHqKP6ZXxrTa
KnIuo4f+K38Ga3sFkHn4rIDhyViIbCX8
-----END PUBLIC KEY-----
";
        let ed448 = "-----BEGIN PUBLIC KEY-----
MEMwBQYDK2VxAzoA9b7M+IGo6IeIm4pjO1sATNQHMBIozPUB2zClGhAP8gfEYoDN
qPpfHRzc/6i+m8bxpjCHVGYKmRsA
-----END PUBLIC KEY-----
";
        let rsa = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCuIofo8OMetX5tTpjtYkUfLLe9
yPQeqHbwP28mhYGL2Ude4QoGJ68IpPopPZbpBSokqsjzw1FJyd1CdRwx1jjbLnDX
R1g6k+8I7VipEPwMhbPL8gkDZqN0penbB+T5ZGpyCHVGhBGixXIxSVIcjbMfVhqI
Mx6NAWNEFa+fjnfOPwIDAQAB
-----END PUBLIC KEY-----
";
        for (pem, name) in [(p384, "ECDSA P-384"), (ed448, "Ed448"), (rsa, "RSA")] {
            let e = public_key_from_pem(pem).unwrap_err();
            assert!(
                matches!(e, KeyError::UnsupportedKeyType(ref s) if s.starts_with(name)),
                "unexpected error for {name}: {e}"
            );
        }
        // A P-256 private key is not an Ed25519 signing key.
        let p256_private = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQghPQtX4WC32Ni0Yzg
YVbadQeqIps6DUh+zsZXlk9agFWhRANCAATad7Epivo5mZ+s61ogdw3w6akGgpAw
Am7wu2KNj1KcgZC+2Xhxsr8JCcXPc1I9K9ulJyc50+d7bR/zR5d10yaV
-----END PRIVATE KEY-----
";
        let e = Ed25519Signer::from_pkcs8_pem(p256_private).unwrap_err();
        assert!(
            matches!(e, KeyError::UnsupportedKeyType(ref s) if s.starts_with("ECDSA P-256")),
            "unexpected error: {e}"
        );
    }

    #[test]
    fn eddsa_override_only_for_ed25519_algorithms() {
        let signer = Ed25519Signer::from_seed(SEED)
            .with_algorithm(SignatureAlgorithm::EdDsa)
            .unwrap();
        assert_eq!(signer.algorithm(), SignatureAlgorithm::EdDsa);
        assert!(matches!(
            Ed25519Signer::from_seed(SEED).with_algorithm(SignatureAlgorithm::Es256),
            Err(SignError::AlgorithmMismatch { .. })
        ));
    }
}
