//! Reading and writing signed TUF metadata: strict parsing, canonical-JSON signing, and
//! TUF date-times.
//!
//! Reading is stricter than tough's own `serde_json::from_slice::<Signed<T>>`: duplicate
//! object keys (which serde would silently resolve to the last one, so that two parsers
//! could see different metadata under one signature) and fields TUF does not define are
//! refused, `_type`, `spec_version` and `expires` are checked as the spec writes them, and
//! sizes are capped at what rota's device client downloads (`rota_tuf::limits`), both when
//! reading and when signing.

use std::collections::HashSet;
use std::fmt;
use std::time::SystemTime;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{Role, Signature, Signed};

use crate::RoleName;
use crate::error::{Error, Result};
use crate::keys::{PublicKey, RepoKey};

/// The largest metadata file of `role` that rota reads or signs: the device client's own
/// limit, the one constant both sides use, so that the server never accepts or publishes
/// metadata its devices would not download.
pub fn max_len(role: RoleName) -> u64 {
    use rota_tuf::limits;
    match role {
        RoleName::Root => limits::ROOT_MAX,
        RoleName::Timestamp => limits::TIMESTAMP_MAX,
        RoleName::Snapshot => limits::SNAPSHOT_MAX,
        RoleName::Targets => limits::TARGETS_MAX,
    }
}

/// Fails when `len` bytes of `role` metadata are more than a device downloads.
fn check_len(role: RoleName, len: usize) -> Result<()> {
    let limit = max_len(role);
    if u64::try_from(len).map_or(true, |len| len > limit) {
        return Err(Error::TooLarge { role, len, limit });
    }
    Ok(())
}

/// The fields TUF 1.0.34 §4.3–§4.6 define for the `signed` object of each role.
fn signed_fields(role: RoleName) -> &'static [&'static str] {
    match role {
        RoleName::Root => &[
            "_type",
            "spec_version",
            "consistent_snapshot",
            "version",
            "expires",
            "keys",
            "roles",
        ],
        RoleName::Targets => &[
            "_type",
            "spec_version",
            "version",
            "expires",
            "targets",
            "delegations",
        ],
        RoleName::Snapshot | RoleName::Timestamp => {
            &["_type", "spec_version", "version", "expires", "meta"]
        }
    }
}

/// Parses signed metadata of `role` strictly (see the module documentation). Signatures are
/// not checked here.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8], role: RoleName) -> Result<Signed<T>> {
    check_len(role, bytes.len())?;
    let parse_error = |e: serde_json::Error| Error::Parse {
        role,
        reason: e.to_string(),
    };
    let value = serde_json::from_slice::<StrictValue>(bytes)
        .map_err(parse_error)?
        .0;
    check_shape(&value, role)?;
    serde_json::from_value(value).map_err(parse_error)
}

/// TUF 1.0.34 §4.2: `{"signed": ROLE, "signatures": [{"keyid": KEYID, "sig": SIGNATURE}]}`,
/// where ROLE's `_type` names the role; §4.3: `spec_version` is a 1.x version and
/// `expires` a `YYYY-MM-DDTHH:MM:SSZ` date-time.
fn check_shape(value: &Value, role: RoleName) -> Result<()> {
    let shape = |reason: &str| Error::Parse {
        role,
        reason: reason.to_owned(),
    };
    let top = value
        .as_object()
        .ok_or_else(|| shape("it is not a JSON object"))?;
    only_fields(top, &["signed", "signatures"], role, "")?;
    let signatures = top
        .get("signatures")
        .and_then(Value::as_array)
        .ok_or_else(|| shape("\"signatures\" is missing or not a list"))?;
    for signature in signatures {
        let signature = signature
            .as_object()
            .ok_or_else(|| shape("a signature is not a JSON object"))?;
        only_fields(signature, &["keyid", "sig"], role, "signatures[].")?;
    }
    let signed = top
        .get("signed")
        .and_then(Value::as_object)
        .ok_or_else(|| shape("\"signed\" is missing or not a JSON object"))?;
    match signed.get("_type").and_then(Value::as_str) {
        Some(found) if found == role.as_str() => {}
        found => {
            return Err(Error::WrongType {
                expected: role,
                found: found.unwrap_or("(none)").to_owned(),
            });
        }
    }
    only_fields(signed, signed_fields(role), role, "signed.")?;
    if let Some(found) = signed.get("spec_version").and_then(Value::as_str)
        && !is_spec_version_1(found)
    {
        return Err(Error::SpecVersion {
            role,
            found: found.to_owned(),
        });
    }
    if let Some(found) = signed.get("expires").and_then(Value::as_str)
        && !is_tuf_date_time(found)
    {
        return Err(Error::ExpiresFormat {
            role,
            found: found.to_owned(),
        });
    }
    Ok(())
}

/// Fails on the first field of `object` that is not in `allowed`.
fn only_fields(
    object: &Map<String, Value>,
    allowed: &[&str],
    role: RoleName,
    place: &str,
) -> Result<()> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(field) => Err(Error::UnknownField {
            role,
            field: format!("{place}{field}"),
        }),
        None => Ok(()),
    }
}

/// `1.MINOR` or `1.MINOR.PATCH` (python-tuf accepts both; the major version must be 1).
fn is_spec_version_1(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    matches!(parts.len(), 2 | 3)
        && parts[0] == "1"
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// TUF 1.0.34 §4.2: "YYYY-MM-DDTHH:MM:SSZ" exactly (python-tuf parses no other form).
fn is_tuf_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// A JSON value whose objects have no duplicate keys.
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(StrictValue(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(StrictValue(Value::Object(object)))
    }
}

/// The canonical JSON (TUF 1.0.34 §4.1, OLPC canonical JSON, as tough and python-tuf
/// compute it) of a role's `signed` object: the bytes every signature covers.
pub(crate) fn canonical<T: Role>(signed: &T, role: RoleName) -> Result<Vec<u8>> {
    signed.canonical_form().map_err(|e| Error::Canonical {
        role,
        reason: e.to_string(),
    })
}

/// Signs `signed` with each distinct key of `signers` and writes the metadata file: pretty
/// JSON with keys sorted at every level (so python-tuf's "first hash" is `sha256`, and the
/// bytes are the same for the same metadata), signatures ordered by key id.
///
/// TUF 1.0.34 §4.2: each signature is the hex Ed25519 signature of the canonical form of
/// `signed`, and a key id appears at most once in `signatures`.
///
/// rota signs here rather than through tough's `RepositoryEditor`: the editor builds and
/// signs a whole repository (all four roles, async, keys from a `KeySource`), while rota
/// signs one role at a time on different machines (root and targets offline, snapshot and
/// timestamp on the server). The bytes signed are tough's own canonical form
/// ([`Role::canonical_form`]), the same that `Root::verify_role` checks.
pub(crate) fn sign<T: Role>(signed: &T, role: RoleName, signers: &[&RepoKey]) -> Result<Vec<u8>> {
    let message = canonical(signed, role)?;
    let mut seen = HashSet::new();
    let mut signatures: Vec<(&str, Vec<u8>)> = signers
        .iter()
        .filter(|k| seen.insert(k.key_id()))
        .map(|k| Ok((k.key_id(), k.sign_bytes(&message)?)))
        .collect::<Result<_>>()?;
    signatures.sort_by(|a, b| a.0.cmp(b.0));
    let signatures: Vec<Value> = signatures
        .into_iter()
        .map(|(keyid, sig)| {
            let mut entry = Map::new();
            entry.insert("keyid".into(), Value::String(keyid.to_owned()));
            entry.insert("sig".into(), Value::String(hex::encode(sig)));
            Value::Object(entry)
        })
        .collect();
    let signed_value = serde_json::to_value(signed).map_err(|e| Error::Canonical {
        role,
        reason: e.to_string(),
    })?;
    let mut top = Map::new();
    top.insert("signatures".into(), Value::Array(signatures));
    top.insert("signed".into(), sorted(signed_value));
    let mut bytes =
        serde_json::to_vec_pretty(&Value::Object(top)).map_err(|e| Error::Canonical {
            role,
            reason: e.to_string(),
        })?;
    bytes.push(b'\n');
    // Signed metadata no device would download must not be published at all.
    check_len(role, bytes.len())?;
    Ok(bytes)
}

/// `value` with every object's keys in sorted order (whether or not serde_json's
/// `preserve_order` feature is on in this build).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(object) => {
            let mut entries: Vec<(String, Value)> = object.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Whether `signed` carries a valid signature by `key` (under its TUF key id), checked
/// with rota's key seam (strict Ed25519 verification).
pub(crate) fn signed_by<T: Role>(signed: &Signed<T>, key: &PublicKey, role: RoleName) -> bool {
    let Ok(message) = canonical(&signed.signed, role) else {
        return false;
    };
    let key_bytes = rota_keys::PublicKey::Ed25519(*key.as_bytes());
    signed.signatures.iter().any(|s: &Signature| {
        hex::encode(&*s.keyid) == key.key_id() && key_bytes.verify(&message, &s.sig).is_ok()
    })
}

/// Hex bytes as tough keeps them.
pub(crate) fn decoded(bytes: &[u8]) -> Decoded<Hex> {
    Decoded::from(bytes.to_vec())
}

/// `t` as a TUF date-time instant: whole seconds (TUF 1.0.34 §4.2 has no fractions, and
/// python-tuf parses none), within the years 1970 to 9999.
pub(crate) fn to_tuf_time(t: SystemTime) -> Result<jiff::Timestamp> {
    let ts = jiff::Timestamp::try_from(t).map_err(|_| Error::TimeOutOfRange)?;
    let ts = jiff::Timestamp::from_second(ts.as_second()).map_err(|_| Error::TimeOutOfRange)?;
    let year = ts.to_zoned(jiff::tz::TimeZone::UTC).year();
    if !(1970..=9999).contains(&year) {
        return Err(Error::TimeOutOfRange);
    }
    Ok(ts)
}

/// A TUF instant as a `SystemTime`.
pub(crate) fn from_tuf_time(t: jiff::Timestamp) -> SystemTime {
    SystemTime::from(t)
}

/// `t` written as a TUF date-time, `YYYY-MM-DDTHH:MM:SSZ` (TUF 1.0.34 §4.2), truncated to
/// whole seconds.
pub fn tuf_date_time(t: SystemTime) -> Result<String> {
    Ok(format_tuf_time(to_tuf_time(t)?))
}

/// A whole-second instant as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn format_tuf_time(t: jiff::Timestamp) -> String {
    format!("{t:.0}")
}

/// TUF 1.0.34 §5.3.10, §5.4.4, §5.5.6, §5.6.5 (freeze attacks): metadata is trusted only
/// while its expiry is later than the time of the check.
pub(crate) fn check_not_expired(
    role: RoleName,
    version: u64,
    expires: jiff::Timestamp,
    now: SystemTime,
) -> Result<()> {
    let now = jiff::Timestamp::try_from(now).map_err(|_| Error::TimeOutOfRange)?;
    if expires > now {
        Ok(())
    } else {
        Err(Error::Expired {
            role,
            version,
            expires: format!("{expires}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tough::schema::Timestamp;

    #[test]
    fn duplicate_keys_are_refused() {
        let json = br#"{"signed": {"_type": "timestamp", "_type": "timestamp"}, "signatures": []}"#;
        let err = parse::<Timestamp>(json, RoleName::Timestamp).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
    }

    #[test]
    fn wrong_type_unknown_fields_and_formats_are_refused() {
        let meta = |signed: &str, extra: &str| {
            format!(r#"{{"signed": {signed}, "signatures": []{extra}}}"#)
        };
        let good = r#"{"_type": "timestamp", "spec_version": "1.0.34", "version": 1, "expires": "2030-01-01T00:00:00Z", "meta": {}}"#;
        parse::<Timestamp>(meta(good, "").as_bytes(), RoleName::Timestamp).unwrap();
        let err = parse::<Timestamp>(meta(good, "").as_bytes(), RoleName::Snapshot).unwrap_err();
        assert!(matches!(err, Error::WrongType { .. }), "{err}");
        let err = parse::<Timestamp>(meta(good, r#", "x": 1"#).as_bytes(), RoleName::Timestamp)
            .unwrap_err();
        assert!(matches!(err, Error::UnknownField { .. }), "{err}");
        let extra = good.replace(r#""meta""#, r#""mirrors": 1, "meta""#);
        let err = parse::<Timestamp>(meta(&extra, "").as_bytes(), RoleName::Timestamp).unwrap_err();
        assert!(matches!(err, Error::UnknownField { .. }), "{err}");
        let v2 = good.replace("1.0.34", "2.0.0");
        let err = parse::<Timestamp>(meta(&v2, "").as_bytes(), RoleName::Timestamp).unwrap_err();
        assert!(matches!(err, Error::SpecVersion { .. }), "{err}");
        let frac = good.replace("00Z", "00.5Z");
        let err = parse::<Timestamp>(meta(&frac, "").as_bytes(), RoleName::Timestamp).unwrap_err();
        assert!(matches!(err, Error::ExpiresFormat { .. }), "{err}");
        let err = parse::<Timestamp>(b"[1, 2", RoleName::Timestamp).unwrap_err();
        assert!(matches!(err, Error::Parse { .. }), "{err}");
    }

    /// What a device would not download is not signed either: the online signer cannot
    /// publish a timestamp (or snapshot) over the limit, nor `rota` a targets file.
    #[test]
    fn metadata_over_the_device_limit_is_not_signed() {
        let meta: Map<String, Value> = (0..400)
            .map(|i| {
                (
                    format!("snapshot-{i}.json"),
                    serde_json::json!({"version": 1}),
                )
            })
            .collect();
        let timestamp: Timestamp = serde_json::from_value(serde_json::json!({
            "_type": "timestamp", "spec_version": "1.0.34", "version": 1,
            "expires": "2030-01-01T00:00:00Z", "meta": meta
        }))
        .unwrap();
        let key = RepoKey::generate().unwrap();
        let Err(err) = sign(&timestamp, RoleName::Timestamp, &[&key]) else {
            panic!("a timestamp over the device limit was signed");
        };
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    limit: rota_tuf::limits::TIMESTAMP_MAX,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn date_times() {
        assert!(is_tuf_date_time("1985-10-21T01:21:00Z"));
        assert!(!is_tuf_date_time("1985-10-21T01:21:00+00:00"));
        assert!(!is_tuf_date_time("1985-10-21 01:21:00Z"));
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(500_123_456_789);
        assert_eq!(tuf_date_time(t).unwrap(), "1985-11-06T11:10:56Z");
        assert!(tuf_date_time(SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(1)).is_err());
    }
}
