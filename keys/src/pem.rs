//! The one loader for key files.
//!
//! Private keys: unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, RFC 5958), either
//! version (v1 without the public key, as OpenSSL and `rota keygen` write, or v2), holding
//! an Ed25519 key (RFC 8410) or an EC P-256 key (RFC 5480 algorithm, RFC 5915 key).
//! Public keys: SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`, RFC 5280).

use pkcs8::der::pem::{self as der_pem, LineEnding};
use pkcs8::der::zeroize::Zeroizing;
use pkcs8::spki::SubjectPublicKeyInfoRef;
use pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePublicKey as _};

use crate::{KeyError, P256_KEY_LEN, PublicKey, SoftwareKey};

/// id-Ed25519 (RFC 8410).
pub(crate) const OID_ED25519: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.3.101.112");
/// id-ecPublicKey (RFC 5480).
const OID_EC_PUBLIC_KEY: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 / prime256v1 / NIST P-256 (RFC 5480).
const OID_P256: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// Reads a public key: a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`)
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
            let key =
                p256::PublicKey::from_public_key_der(&der).map_err(|e| KeyError::Invalid {
                    kind: "P-256 public",
                    detail: e.to_string(),
                })?;
            Ok(p256_public_key(&key))
        }
        (oid, curve) => Err(KeyError::UnsupportedKeyType(format!(
            "{} (rota uses Ed25519 and ECDSA P-256 keys)",
            describe_algorithm(oid, curve)
        ))),
    }
}

/// Reads a private key from PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
pub fn private_key_from_pem(pem: &str) -> Result<SoftwareKey, KeyError> {
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
    let curve = info
        .algorithm
        .parameters
        .and_then(|p| p.decode_as::<pkcs8::ObjectIdentifier>().ok());
    match (info.algorithm.oid, curve) {
        (OID_ED25519, _) => ed25519_dalek::SigningKey::from_pkcs8_der(&der)
            .map(SoftwareKey::Ed25519)
            .map_err(|e| KeyError::Invalid {
                kind: "Ed25519 private",
                detail: e.to_string(),
            }),
        (OID_EC_PUBLIC_KEY, Some(OID_P256)) => p256::ecdsa::SigningKey::from_pkcs8_der(&der)
            .map(SoftwareKey::P256)
            .map_err(|e| KeyError::Invalid {
                kind: "P-256 private",
                detail: e.to_string(),
            }),
        (oid, curve) => Err(KeyError::UnsupportedKeyType(format!(
            "{} (rota uses Ed25519 and ECDSA P-256 keys)",
            describe_algorithm(oid, curve)
        ))),
    }
}

/// The key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
pub fn public_key_to_pem(key: &PublicKey) -> Result<String, KeyError> {
    let invalid = |kind| {
        move |e: pkcs8::spki::Error| KeyError::Invalid {
            kind,
            detail: e.to_string(),
        }
    };
    match key {
        PublicKey::Ed25519(k) => ed25519_dalek::VerifyingKey::from_bytes(k)
            .map_err(|e| KeyError::Invalid {
                kind: "Ed25519 public",
                detail: e.to_string(),
            })?
            .to_public_key_pem(LineEnding::LF)
            .map_err(invalid("Ed25519 public")),
        PublicKey::P256(k) => p256::PublicKey::from_sec1_bytes(k)
            .map_err(|e| KeyError::Invalid {
                kind: "P-256 public",
                detail: e.to_string(),
            })?
            .to_public_key_pem(LineEnding::LF)
            .map_err(invalid("P-256 public")),
    }
}

pub(crate) fn p256_public_key(key: &p256::PublicKey) -> PublicKey {
    use p256::elliptic_curve::sec1::ToSec1Point as _;
    let point = key.to_sec1_point(false);
    let mut bytes = [0u8; P256_KEY_LEN];
    // An uncompressed point of a valid key is always 65 bytes.
    bytes.copy_from_slice(point.as_bytes());
    PublicKey::P256(bytes)
}

/// Decodes one PEM block; returns its label and DER bytes (zeroized on drop: they may
/// be a private key).
fn decode_pem(pem: &str) -> Result<(String, Zeroizing<Vec<u8>>), KeyError> {
    // RFC 7468 allows text before the block ("explanatory text"); OpenSSL writes some
    // (e.g. `openssl ec -text`). Start at the first encapsulation boundary.
    let start = pem.find("-----BEGIN ").ok_or(KeyError::NotPem)?;
    let block = &pem.as_bytes()[start..];
    let (label, der) = der_pem::decode_vec(block.trim_ascii_end()).map_err(|e| {
        match der_pem::decode_label(block) {
            // The label is readable but the body is not.
            Ok(label) => KeyError::Invalid {
                kind: pem_kind(label),
                detail: format!("bad PEM encoding ({e})"),
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
            Some(other) => format!("EC on curve {other}"),
            None => "EC without a named curve".to_string(),
        },
        other => format!("algorithm {other}"),
    }
}
