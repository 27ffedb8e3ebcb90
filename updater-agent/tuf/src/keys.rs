//! Public keys and signature checks (securesystemslib `SSlibKey.verify_signature`), with
//! aws-lc-rs.
//!
//! Keys are decoded lazily, inside [`Key::verifies`]: a malformed key, an empty or non-hex
//! signature, or a wrong curve makes that one signature invalid, never the whole file
//! (tuf-on-ci and sigstore publish `"sig": ""` placeholders for keys that have not signed).

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

use crate::json::Json;

/// A key as listed in `keys` of root or of a delegation. The key id is an opaque label
/// (securesystemslib: "Keyid is not verified to be the hash of a specific representation of
/// the key"), so it is not checked against the key's content.
#[derive(Debug, Clone)]
pub struct Key {
    scheme: Scheme,
    public: String,
}

/// The (keytype, scheme) pairs of TUF 1.0.34 §4.2 and securesystemslib's
/// `KEY_FOR_TYPE_AND_SCHEME`.
#[derive(Debug, Clone, Copy)]
enum Scheme {
    /// `ed25519`/`ed25519`: 64 hex digits of the raw key; 64-byte signature in hex.
    Ed25519,
    /// `ecdsa` or legacy `ecdsa-sha2-nistp256` with `ecdsa-sha2-nistp256`: PEM SPKI,
    /// DER signature. High-S signatures are valid (half of the sigstore ones are).
    EcdsaP256,
    EcdsaP384,
    /// `rsa`/`rsassa-pss-sha256` (and -384/-512): PEM SPKI, PSS with MGF1 and salt length
    /// equal to the digest length (what securesystemslib signs with).
    RsaPss256,
    RsaPss384,
    RsaPss512,
    RsaPkcs1v15Sha256,
    RsaPkcs1v15Sha384,
    RsaPkcs1v15Sha512,
    /// Any other pair. Deviation from python-tuf, which rejects the whole metadata file:
    /// such a key is kept but never verifies, so it can never count toward a threshold.
    Unsupported,
}

impl Key {
    /// Parses a key object (`Key.from_dict`): `keytype`, `scheme` strings and a `keyval`
    /// object are required; unknown fields are allowed.
    pub fn from_json(value: &Json) -> Result<Self, String> {
        let keytype = value
            .get("keytype")
            .and_then(Json::as_str)
            .ok_or("a key has no keytype string")?;
        let scheme = value
            .get("scheme")
            .and_then(Json::as_str)
            .ok_or("a key has no scheme string")?;
        let keyval = value
            .get("keyval")
            .filter(|v| v.as_object().is_some())
            .ok_or("a key has no keyval object")?;
        let scheme = match (keytype, scheme) {
            ("ed25519", "ed25519") => Scheme::Ed25519,
            ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => Scheme::EcdsaP256,
            ("ecdsa" | "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384") => Scheme::EcdsaP384,
            ("rsa", "rsassa-pss-sha256") => Scheme::RsaPss256,
            ("rsa", "rsassa-pss-sha384") => Scheme::RsaPss384,
            ("rsa", "rsassa-pss-sha512") => Scheme::RsaPss512,
            ("rsa", "rsa-pkcs1v15-sha256") => Scheme::RsaPkcs1v15Sha256,
            ("rsa", "rsa-pkcs1v15-sha384") => Scheme::RsaPkcs1v15Sha384,
            ("rsa", "rsa-pkcs1v15-sha512") => Scheme::RsaPkcs1v15Sha512,
            _ => Scheme::Unsupported,
        };
        let public = match keyval.get("public") {
            Some(Json::Str(s)) => s.clone(),
            // SSlibKey: "public key string required".
            _ if !matches!(scheme, Scheme::Unsupported) => {
                return Err("a key's keyval has no public string".into());
            }
            _ => String::new(),
        };
        Ok(Key { scheme, public })
    }

    /// The raw public key, when this is an `ed25519`/`ed25519` key whose `public` is 64
    /// lowercase hex digits (the form §4.2 gives and rota writes).
    pub fn ed25519_public(&self) -> Option<[u8; 32]> {
        let lowercase_hex = self.public.len() == 64
            && self
                .public
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !matches!(self.scheme, Scheme::Ed25519) || !lowercase_hex {
            return None;
        }
        let mut raw = [0u8; 32];
        hex::decode_to_slice(&self.public, &mut raw).ok()?;
        Some(raw)
    }

    /// Whether `sig_hex` is a valid signature by this key over `message`.
    pub fn verifies(&self, message: &[u8], sig_hex: &str) -> bool {
        let Ok(sig) = hex::decode(sig_hex) else {
            return false;
        };
        let alg: &'static dyn VerificationAlgorithm = match self.scheme {
            Scheme::Ed25519 => &signature::ED25519,
            Scheme::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1,
            Scheme::EcdsaP384 => &signature::ECDSA_P384_SHA384_ASN1,
            Scheme::RsaPss256 => &signature::RSA_PSS_2048_8192_SHA256,
            Scheme::RsaPss384 => &signature::RSA_PSS_2048_8192_SHA384,
            Scheme::RsaPss512 => &signature::RSA_PSS_2048_8192_SHA512,
            Scheme::RsaPkcs1v15Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Scheme::RsaPkcs1v15Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Scheme::RsaPkcs1v15Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Scheme::Unsupported => return false,
        };
        let key_bytes = match self.scheme {
            Scheme::Ed25519 => match hex::decode(&self.public) {
                Ok(raw) if raw.len() == 32 => raw,
                _ => return false,
            },
            // aws-lc checks the SPKI's algorithm and curve against `alg`.
            _ => match pem::parse(&self.public) {
                Ok(block) if block.tag() == "PUBLIC KEY" => block.into_contents(),
                _ => return false,
            },
        };
        UnparsedPublicKey::new(alg, key_bytes)
            .verify(message, &sig)
            .is_ok()
    }
}
