//! Strict text encodings shared by the certificate and request formats.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Standard base64 with padding (RFC 4648 §4).
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Standard padded base64, refusing missing padding, whitespace and non-zero trailing
/// bits, so every byte string has exactly one accepted text.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

/// Lowercase hex of exactly `N` bytes (`2 * N` characters); uppercase is refused so each
/// value has one spelling (they are compared and indexed as text).
pub(crate) fn lower_hex_decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Why a signed body was not exactly one JSON object of its fields.
#[derive(Debug)]
pub(crate) enum BodyError {
    TooLarge(usize),
    Malformed(String),
    TrailingData,
}

/// Exactly one JSON object of `T`'s fields (serde refuses unknown and duplicate ones,
/// given `deny_unknown_fields`) and nothing after it, in at most `max_len` bytes: the
/// body of a device certificate or an operator order, parsed before its signature is
/// checked only to find its issuer.
pub(crate) fn one_json_object<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    max_len: usize,
) -> Result<T, BodyError> {
    if bytes.len() > max_len {
        return Err(BodyError::TooLarge(bytes.len()));
    }
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<T>();
    let body = match stream.next() {
        Some(Ok(body)) => body,
        Some(Err(e)) => return Err(BodyError::Malformed(e.to_string())),
        None => return Err(BodyError::Malformed("it is empty".into())),
    };
    if stream.byte_offset() != bytes.len() {
        return Err(BodyError::TrailingData);
    }
    Ok(body)
}

/// A public key in lowercase hex: Ed25519 (64 characters; a valid, canonical point not
/// of small order) or uncompressed P-256 (130, `04 || x || y`, on the curve).
pub(crate) fn public_key_hex(text: &str) -> Option<crate::PublicKey> {
    let key = match text.len() {
        64 => lower_hex_decode::<32>(text).map(crate::PublicKey::Ed25519),
        130 => lower_hex_decode::<65>(text).map(crate::PublicKey::P256),
        _ => None,
    }?;
    key.validate().is_ok().then_some(key)
}

/// serde for a byte string as standard padded base64 text.
pub(crate) mod base64_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::base64_encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::base64_decode(&text).ok_or_else(|| D::Error::custom("not standard padded base64"))
    }
}

/// serde for a signature (Ed25519 or ECDSA P-256 `r || s`) as standard padded base64
/// text of its 64 bytes.
pub(crate) mod base64_signature {
    use crate::Signature;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer>(sig: &Signature, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::base64_encode(sig))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Signature, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::decode_signature(&text)
            .ok_or_else(|| D::Error::custom("not the base64 of a 64-byte signature"))
    }
}

/// A signature from standard padded base64 of exactly 64 bytes.
pub(crate) fn decode_signature(text: &str) -> Option<crate::Signature> {
    base64_decode(text)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_refuses_non_canonical_text() {
        assert_eq!(base64_decode("AAE=").as_deref(), Some(&[0u8, 1][..]));
        assert!(base64_decode("AAE").is_none(), "missing padding");
        assert!(base64_decode("AAF=").is_none(), "non-zero trailing bits");
        assert!(base64_decode("AA E=").is_none(), "whitespace");
        assert!(base64_decode("AA-_").is_none(), "url-safe alphabet");
    }

    #[test]
    fn hex_is_lowercase_and_exact_length() {
        assert_eq!(lower_hex_decode::<2>("0aff"), Some([0x0a, 0xff]));
        assert!(lower_hex_decode::<2>("0AFF").is_none());
        assert!(lower_hex_decode::<2>("0af").is_none());
        assert!(lower_hex_decode::<2>("0aff00").is_none());
        assert!(lower_hex_decode::<2>("0afg").is_none());
    }
}
