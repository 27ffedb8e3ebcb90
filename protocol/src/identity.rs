//! Device identity: certificates that a manufacturer CA issues to bind a device id, its
//! device class and its tags to the device's own key (Ed25519 or ECDSA P-256).
//!
//! # Format (version 1)
//!
//! A [`DeviceCertificate`] is JSON with exactly two fields, both standard padded base64:
//!
//! ```json
//! {"body": "<base64 of the body bytes>", "signature": "<base64 of 64 bytes>"}
//! ```
//!
//! The signature is by the CA key (Ed25519, or ECDSA P-256 with SHA-256 as `r || s`) over `b"rota-device-cert-v1\0" || body_bytes`:
//! the exact bytes are signed, so no JSON canonicalisation is needed and a CA written in
//! any language can issue certificates. The body bytes are one JSON object ([`CertBody`]):
//!
//! | field        | type     | rule |
//! |--------------|----------|------|
//! | `version`    | integer  | `1` |
//! | `device_id`  | string   | 1 to 64 of `A-Z a-z 0-9 . _ -` ([`valid_device_id`]) |
//! | `public_key` | string   | the device's key, lowercase hex: Ed25519 as 64 characters (a valid, canonical, not small-order point), or P-256 as 130 (the uncompressed SEC1 point `04 || x || y`, on the curve) |
//! | `class_id`   | string   | the device class UUID, lowercase hyphenated (`8-4-4-4-12`), as release metadata names it |
//! | `tags`       | strings  | at most 32, each 1 to 64 of `A-Z a-z 0-9 . _ : -` ([`valid_tag`]), no duplicates |
//! | `issued_at`  | integer  | unix seconds |
//! | `issuer`     | string   | lowercase hex SHA-256 of the CA's raw public key (the "key id" `rota keygen` prints) |
//! | `dice_device_id` | string, optional | the device's DICE DeviceID public key (Ed25519, 64 lowercase hex characters), for devices whose bootloader derives one from a UDS: the key every Alias certificate in its attestation evidence must be signed by (`crate::attestation`) |
//!
//! Verification ([`DeviceCertificate::verify`]) is strict: unknown or duplicate fields,
//! bytes after the object, a body over 8 KiB, an untrusted issuer or a non-canonical
//! signature are refused. A new format takes a new signing context (`-v2`), so a version 1
//! verifier can never accept it by mistake.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{PublicKey, Sign, Signature};

use crate::encoding;

/// What the CA signs: this context, then the body bytes.
pub const CERT_SIGNING_CONTEXT: &[u8] = b"rota-device-cert-v1\0";
/// The body `version` this crate issues and accepts.
pub const CERT_VERSION: u32 = 1;
/// Longest body accepted, in bytes (a full body with 32 maximal tags is about 2.6 KiB).
pub const MAX_CERT_BODY_LEN: usize = 8 * 1024;
/// Longest device id, in characters.
pub const MAX_DEVICE_ID_LEN: usize = 64;
/// Longest tag, in characters.
pub const MAX_TAG_LEN: usize = 64;
/// Most tags on one device (or in one rollout selector).
pub const MAX_TAGS: usize = 32;

/// Why a certificate could not be issued or was refused, or a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The body is over [`MAX_CERT_BODY_LEN`].
    #[error("the certificate body is {len} bytes, more than the {MAX_CERT_BODY_LEN} allowed")]
    BodyTooLarge { len: usize },
    /// The body is not one JSON object of the expected fields.
    #[error("the certificate body is not a valid version 1 body: {0}")]
    MalformedBody(String),
    /// Bytes follow the body's JSON object.
    #[error("the certificate body has data after its JSON object")]
    TrailingData,
    /// The body is of another format version.
    #[error("the certificate is version {0}, but only version 1 is supported")]
    UnsupportedVersion(u64),
    /// No trusted CA has the issuer's key id.
    #[error("the certificate was issued by {issuer}, which is not a trusted device CA")]
    UnknownIssuer { issuer: String },
    /// The CA signature does not verify (strictly) over the body.
    #[error("the certificate signature does not verify with its issuer's key")]
    BadSignature,
    /// The device id breaks [`valid_device_id`].
    #[error("the device id {0:?} is not valid: it must be 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    InvalidDeviceId(String),
    /// A tag breaks [`valid_tag`].
    #[error("the tag {0:?} is not valid: it must be 1 to 64 characters of A-Z a-z 0-9 . _ : -")]
    InvalidTag(String),
    /// A tag appears twice.
    #[error("the tag {0:?} appears more than once")]
    DuplicateTag(String),
    /// More than [`MAX_TAGS`] tags.
    #[error("there are {0} tags, more than the {MAX_TAGS} allowed")]
    TooManyTags(usize),
    /// The device public key is not 32 bytes of lowercase hex naming a usable Ed25519 point.
    #[error("the device public key is not a valid Ed25519 public key in lowercase hex")]
    InvalidPublicKey,
    /// The DICE DeviceID is not 32 bytes of lowercase hex naming a usable Ed25519 point.
    #[error("the DICE DeviceID is not a valid Ed25519 public key in lowercase hex")]
    InvalidDiceDeviceId,
    /// The class id is not a lowercase hyphenated UUID.
    #[error("the class id {0:?} is not a UUID in lowercase hyphenated form")]
    InvalidClassId(String),
    /// The issuer field is not 64 lowercase hex characters.
    #[error("the certificate issuer is not a SHA-256 key id in lowercase hex")]
    InvalidIssuer,
    /// [`issue`] was given a body whose issuer is another key than the CA signing it.
    #[error("the body names issuer {body}, but the signing CA key's id is {key}")]
    IssuerMismatch { body: String, key: String },
    /// The CA key could not sign (an HSM that is absent or refuses).
    #[error("the CA could not sign: {0}")]
    Sign(String),
}

/// The claims of a device certificate: see the [module docs](self) for the rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertBody {
    pub version: u32,
    pub device_id: String,
    /// The device's public key (Ed25519 or uncompressed P-256), lowercase hex.
    pub public_key: String,
    /// The device class UUID, lowercase hyphenated.
    pub class_id: String,
    pub tags: Vec<String>,
    /// Unix seconds.
    pub issued_at: u64,
    /// [`issuer_id`] of the CA key.
    pub issuer: String,
    /// The DICE DeviceID public key (Ed25519, lowercase hex), for devices with a UDS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dice_device_id: Option<String>,
}

impl CertBody {
    /// A version 1 body for `device_key`, naming `ca` as its issuer.
    pub fn new(
        ca: &PublicKey,
        device_id: impl Into<String>,
        device_key: &PublicKey,
        class_id: &uuid::Uuid,
        tags: Vec<String>,
        issued_at: u64,
    ) -> Self {
        Self {
            version: CERT_VERSION,
            device_id: device_id.into(),
            public_key: hex::encode(device_key.as_bytes()),
            class_id: class_id.hyphenated().to_string(),
            tags,
            issued_at,
            issuer: issuer_id(ca),
            dice_device_id: None,
        }
    }

    /// The body, binding also the device's DICE DeviceID public key.
    pub fn with_dice_device_id(mut self, device_id: Option<&[u8; 32]>) -> Self {
        self.dice_device_id = device_id.map(hex::encode);
        self
    }

    /// The DICE DeviceID public key, if the body binds one: a valid Ed25519 point
    /// (canonical, not of small order), as for the device key.
    pub fn dice_device_id(&self) -> Result<Option<[u8; 32]>, IdentityError> {
        let Some(hex) = &self.dice_device_id else {
            return Ok(None);
        };
        let key =
            encoding::lower_hex_decode::<32>(hex).ok_or(IdentityError::InvalidDiceDeviceId)?;
        PublicKey::Ed25519(key)
            .validate()
            .map_err(|_| IdentityError::InvalidDiceDeviceId)?;
        Ok(Some(key))
    }

    /// Checks every field rule except the issuer's trust (which needs the CA list).
    pub fn validate(&self) -> Result<(), IdentityError> {
        if self.version != CERT_VERSION {
            return Err(IdentityError::UnsupportedVersion(self.version.into()));
        }
        if !valid_device_id(&self.device_id) {
            return Err(IdentityError::InvalidDeviceId(self.device_id.clone()));
        }
        self.device_key()?;
        if !valid_uuid(&self.class_id) {
            return Err(IdentityError::InvalidClassId(self.class_id.clone()));
        }
        validate_tags(&self.tags)?;
        self.dice_device_id()?;
        if encoding::lower_hex_decode::<32>(&self.issuer).is_none() {
            return Err(IdentityError::InvalidIssuer);
        }
        Ok(())
    }

    /// The device's public key: an Ed25519 point, canonical and not of small order (a
    /// small-order key admits signatures that verify for many messages), or an
    /// uncompressed P-256 point on the curve.
    pub fn device_key(&self) -> Result<PublicKey, IdentityError> {
        encoding::public_key_hex(&self.public_key).ok_or(IdentityError::InvalidPublicKey)
    }
}

/// A CA-signed [`CertBody`]; see the [module docs](self) for the format.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeviceCertificate {
    /// The body's JSON bytes, standard padded base64.
    #[serde(with = "encoding::base64_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    body: Vec<u8>,
    /// The CA's signature over `"rota-device-cert-v1\0" || body`, standard padded base64.
    #[serde(with = "encoding::base64_signature")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    signature: Signature,
}

impl fmt::Debug for DeviceCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCertificate")
            .field("body", &String::from_utf8_lossy(&self.body))
            .field("signature", &encoding::base64_encode(&self.signature))
            .finish()
    }
}

/// Signs `body` with the CA key, after checking that it satisfies every rule
/// [`DeviceCertificate::verify`] applies, so a CA never issues a certificate its
/// servers would refuse.
pub fn issue(ca: &dyn Sign, body: &CertBody) -> Result<DeviceCertificate, IdentityError> {
    body.validate()?;
    let key = issuer_id(&ca.public_key());
    if body.issuer != key {
        return Err(IdentityError::IssuerMismatch {
            body: body.issuer.clone(),
            key,
        });
    }
    let bytes = serde_json::to_vec(body).expect("a struct of strings and integers serializes");
    let signature = ca
        .sign(&signed_bytes(&bytes))
        .map_err(|e| IdentityError::Sign(e.to_string()))?
        .try_into()
        .map_err(|s: Vec<u8>| {
            IdentityError::Sign(format!(
                "the CA returned a {}-byte signature, not 64",
                s.len()
            ))
        })?;
    Ok(DeviceCertificate::from_parts(bytes, signature))
}

/// Issues a certificate now (`issued_at` is the current unix time): `device_key` (and
/// the DICE DeviceID, where the device has one) bound to `device_id`, its class and its
/// tags by the CA key `ca`. What a factory line and a simulated fleet both do.
pub fn certify(
    ca: &dyn Sign,
    device_id: &str,
    device_key: &PublicKey,
    dice_device_id: Option<&[u8; 32]>,
    class_id: &uuid::Uuid,
    tags: Vec<String>,
) -> Result<DeviceCertificate, IdentityError> {
    let issued_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let body = CertBody::new(
        &ca.public_key(),
        device_id,
        device_key,
        class_id,
        tags,
        issued_at,
    )
    .with_dice_device_id(dice_device_id);
    issue(ca, &body)
}

impl DeviceCertificate {
    /// A certificate from body bytes and the CA's signature over
    /// [`CERT_SIGNING_CONTEXT`] `||` body, for CAs whose key is held elsewhere (an HSM).
    /// Nothing is checked here: [`DeviceCertificate::verify`] checks.
    pub fn from_parts(body: Vec<u8>, signature: Signature) -> Self {
        Self { body, signature }
    }

    /// The signed body bytes, as issued.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The CA's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// SHA-256 of the signed body: what names this certificate in a revocation.
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(&self.body).into()
    }

    /// The claims as written, without checking who signed them: for the device that
    /// holds its own certificate and needs its id from it (the server verifies).
    pub fn claims_unverified(&self) -> Result<CertBody, IdentityError> {
        let body = parse_body(&self.body)?;
        body.validate()?;
        Ok(body)
    }

    /// The certified claims, if one of `trusted_cas` issued and signed this certificate
    /// and every field follows the rules in the [module docs](self).
    ///
    /// The body is parsed (size-capped) before the signature check only to find its issuer.
    pub fn verify(&self, trusted_cas: &[PublicKey]) -> Result<CertBody, IdentityError> {
        let body = parse_body(&self.body)?;
        if body.version != CERT_VERSION {
            return Err(IdentityError::UnsupportedVersion(body.version.into()));
        }
        let issuer_bytes =
            encoding::lower_hex_decode::<32>(&body.issuer).ok_or(IdentityError::InvalidIssuer)?;
        let ca = trusted_cas
            .iter()
            .find(|ca| ca.key_id() == issuer_bytes)
            .ok_or_else(|| IdentityError::UnknownIssuer {
                issuer: body.issuer.clone(),
            })?;
        ca.verify(&signed_bytes(&self.body), &self.signature)
            .map_err(|_| IdentityError::BadSignature)?;
        body.validate()?;
        Ok(body)
    }
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(CERT_SIGNING_CONTEXT.len() + body.len());
    message.extend_from_slice(CERT_SIGNING_CONTEXT);
    message.extend_from_slice(body);
    message
}

/// Exactly one JSON object of the version 1 fields and nothing after it.
fn parse_body(bytes: &[u8]) -> Result<CertBody, IdentityError> {
    encoding::one_json_object(bytes, MAX_CERT_BODY_LEN).map_err(|e| match e {
        encoding::BodyError::TooLarge(len) => IdentityError::BodyTooLarge { len },
        encoding::BodyError::Malformed(why) => IdentityError::MalformedBody(why),
        encoding::BodyError::TrailingData => IdentityError::TrailingData,
    })
}

/// A CA's issuer id: lowercase hex SHA-256 of its raw public key (the key id
/// `rota keygen` prints for the same key).
pub fn issuer_id(ca: &PublicKey) -> String {
    hex::encode(ca.key_id())
}

/// Whether `id` is a valid device id: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
pub fn valid_device_id(id: &str) -> bool {
    (1..=MAX_DEVICE_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `tag` is a valid tag: 1 to 64 characters of `A-Z a-z 0-9 . _ : -`.
pub fn valid_tag(tag: &str) -> bool {
    (1..=MAX_TAG_LEN).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Checks a tag list: at most [`MAX_TAGS`], each [`valid_tag`], no duplicates.
pub fn validate_tags(tags: &[String]) -> Result<(), IdentityError> {
    if tags.len() > MAX_TAGS {
        return Err(IdentityError::TooManyTags(tags.len()));
    }
    for (i, tag) in tags.iter().enumerate() {
        if !valid_tag(tag) {
            return Err(IdentityError::InvalidTag(tag.clone()));
        }
        if tags[..i].contains(tag) {
            return Err(IdentityError::DuplicateTag(tag.clone()));
        }
    }
    Ok(())
}

/// Whether `text` is a UUID in its canonical form, lowercase hyphenated
/// (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`), the only form rota compares ids in.
pub fn valid_uuid(text: &str) -> bool {
    uuid::Uuid::try_parse(text).is_ok_and(|id| id.hyphenated().to_string() == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_rules() {
        assert!(valid_device_id("a"));
        assert!(valid_device_id("Sensor-01.eu_west"));
        assert!(valid_device_id(&"x".repeat(64)));
        assert!(!valid_device_id(""));
        assert!(!valid_device_id(&"x".repeat(65)));
        for bad in ["a b", "a/b", "a:b", "é", "a\n", "a\0"] {
            assert!(!valid_device_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn tag_rules() {
        assert!(valid_tag("region:eu-west.1_a"));
        assert!(valid_tag(&"t".repeat(64)));
        assert!(!valid_tag(""));
        assert!(!valid_tag(&"t".repeat(65)));
        assert!(!valid_tag("a b"));
        assert!(!valid_tag("a=b"));
        let many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
        assert_eq!(validate_tags(&many), Err(IdentityError::TooManyTags(33)));
        assert!(validate_tags(&many[..32]).is_ok());
        assert_eq!(
            validate_tags(&["a".into(), "b".into(), "a".into()]),
            Err(IdentityError::DuplicateTag("a".into()))
        );
    }

    #[test]
    fn uuid_must_be_canonical() {
        assert!(valid_uuid("67e55044-10b1-426f-9247-bb680e5fe0c8"));
        assert!(!valid_uuid("67E55044-10B1-426F-9247-BB680E5FE0C8"));
        assert!(!valid_uuid("67e5504410b1426f9247bb680e5fe0c8"));
        assert!(!valid_uuid("{67e55044-10b1-426f-9247-bb680e5fe0c8}"));
        assert!(!valid_uuid("urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8"));
        assert!(!valid_uuid(""));
    }
}
