//! Reading and writing signed TUF metadata, with the device client's model.
//!
//! Reading is rota-tuf's, the code every device runs: its strict JSON (duplicate object
//! keys refused), its envelope and typed views (`rota_tuf::model`: `spec_version`, the
//! TUF 1.0.34 §4.2 date grammar, field shapes), with sizes capped at what a device
//! downloads (`rota_tuf::limits`). rota adds only what it requires of its own metadata on
//! top (no fields TUF does not define, [`only_fields`]); trust decisions are rota-tuf's
//! `TrustedSet`. Writing builds tough's schema types and signs rota-tuf's canonical form
//! of them ([`sign`]), so the bytes signed are the bytes devices verify.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rota_tuf::json::{self, Json};
use rota_tuf::model::Envelope;
use serde::Serialize;
use serde_json::{Map, Value};
use tough::schema::decoded::{Decoded, Hex};

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

/// A metadata file read as a device reads it; its signatures are not checked yet.
pub(crate) struct Parsed {
    /// Its signatures and the canonical bytes they cover (rota-tuf's canonical form).
    pub envelope: Envelope,
    /// The `signed` value, for rota-tuf's typed views (`rota_tuf::model`).
    pub signed: Json,
}

/// Reads signed metadata of `role` as the device client does: at most the device's size
/// limit, rota-tuf's strict JSON (no duplicate object keys, which two parsers could read
/// differently under one signature) and its envelope rules (one signature per key id, the
/// canonical form of `signed` as received). On top, rota's own rule: no field TUF 1.0.34
/// §4 does not define (rota never writes one). The role's typed view, with the
/// `spec_version` and §4.2 date grammar checks, is `rota_tuf::model`'s.
pub(crate) fn parse(bytes: &[u8], role: RoleName) -> Result<Parsed> {
    check_len(role, bytes.len())?;
    let doc = json::parse_strict(bytes).map_err(|e| Error::Parse {
        role,
        reason: e.to_string(),
    })?;
    check_fields(&doc, role)?;
    let (envelope, signed) =
        rota_tuf::model::envelope_from_json(&doc, role.as_str(), role.as_str())
            .map_err(|e| refused(role, e))?;
    Ok(Parsed { envelope, signed })
}

/// rota-tuf's reason for refusing metadata of `role`, as this crate's error: a parse
/// failure stays a parse failure, anything else a device would refuse is [`Error::Device`].
pub(crate) fn refused(role: RoleName, e: rota_tuf::Error) -> Error {
    match e {
        rota_tuf::Error::Parse { reason, .. } => Error::Parse { role, reason },
        other => Error::Device {
            role,
            reason: Box::new(other),
        },
    }
}

/// rota-tuf's typed view of `parsed` (e.g. `rota_tuf::model::root`).
pub(crate) fn typed<T>(
    parsed: &Parsed,
    role: RoleName,
    view: fn(&Json) -> std::result::Result<T, String>,
) -> Result<T> {
    view(&parsed.signed).map_err(|reason| Error::Parse { role, reason })
}

/// TUF 1.0.34 §4.2: `{"signed": ROLE, "signatures": [{"keyid": KEYID, "sig": SIGNATURE}]}`,
/// where ROLE's `_type` names the role, and no other fields.
fn check_fields(doc: &Json, role: RoleName) -> Result<()> {
    let shape = |reason: &str| Error::Parse {
        role,
        reason: reason.to_owned(),
    };
    let top = doc
        .as_object()
        .ok_or_else(|| shape("it is not a JSON object"))?;
    only_fields(top, &["signed", "signatures"], role, "")?;
    let signatures = doc
        .get("signatures")
        .and_then(Json::as_array)
        .ok_or_else(|| shape("\"signatures\" is missing or not a list"))?;
    for signature in signatures {
        let signature = signature
            .as_object()
            .ok_or_else(|| shape("a signature is not a JSON object"))?;
        only_fields(signature, &["keyid", "sig"], role, "signatures[].")?;
    }
    let signed = doc
        .get("signed")
        .and_then(Json::as_object)
        .ok_or_else(|| shape("\"signed\" is missing or not a JSON object"))?;
    match doc
        .get("signed")
        .and_then(|s| s.get("_type"))
        .and_then(Json::as_str)
    {
        Some(found) if found == role.as_str() => {}
        found => {
            return Err(Error::WrongType {
                expected: role,
                found: found.unwrap_or("(none)").to_owned(),
            });
        }
    }
    only_fields(signed, signed_fields(role), role, "signed.")
}

/// Fails on the first field of `object` that is not in `allowed`; `place` says where
/// the object is (`signed.`, `signed.targets.NAME.`).
pub(crate) fn only_fields(
    object: &[(String, Json)],
    allowed: &[&str],
    role: RoleName,
    place: &str,
) -> Result<()> {
    match object.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((field, _)) => Err(Error::UnknownField {
            role,
            field: format!("{place}{field}"),
        }),
        None => Ok(()),
    }
}

/// The members of the object at `path` below `signed` (empty when it is not there: the
/// typed view has already refused a missing or mistyped one).
pub(crate) fn members<'a>(signed: &'a Json, path: &[&str]) -> &'a [(String, Json)] {
    path.iter()
        .try_fold(signed, |value, key| value.get(key))
        .and_then(Json::as_object)
        .unwrap_or_default()
}

/// The canonical JSON of a role's `signed` value (TUF 1.0.34 §4.2), as rota-tuf computes
/// it on every device: the bytes every signature covers.
fn canonical(signed: &Value, role: RoleName) -> Result<Vec<u8>> {
    let canonical_error = |reason: String| Error::Canonical { role, reason };
    let bytes = serde_json::to_vec(signed).map_err(|e| canonical_error(e.to_string()))?;
    json::canonical_bytes(&bytes).map_err(|e| canonical_error(e.to_string()))
}

/// Signs `signed` with each distinct key of `signers` and writes the metadata file: pretty
/// JSON with keys sorted at every level (so python-tuf's "first hash" is `sha256`, and the
/// bytes are the same for the same metadata), signatures ordered by key id.
///
/// TUF 1.0.34 §4.2: each signature is the hex Ed25519 signature of the canonical form of
/// `signed`, and a key id appears at most once in `signatures`. The canonical form is
/// rota-tuf's, over the very value written: what devices verify, not tough's formatter
/// (which normalises strings to Unicode NFC, so its bytes differ from the file's for a
/// string that is not in NFC).
///
/// rota signs here rather than through tough's `RepositoryEditor`: the editor builds and
/// signs a whole repository (all four roles, async, keys from a `KeySource`), while rota
/// signs one role at a time on different machines (root and targets offline, snapshot and
/// timestamp on the server).
pub(crate) fn sign<T: Serialize>(
    signed: &T,
    role: RoleName,
    signers: &[&RepoKey],
) -> Result<Vec<u8>> {
    let signed_value = serde_json::to_value(signed).map_err(|e| Error::Canonical {
        role,
        reason: e.to_string(),
    })?;
    let signed_value = sorted(signed_value);
    let message = canonical(&signed_value, role)?;
    let mut seen = HashSet::new();
    let signatures: Vec<(String, String)> = signers
        .iter()
        .filter(|k| seen.insert(k.key_id()))
        .map(|k| Ok((k.key_id().to_owned(), hex::encode(k.sign_bytes(&message)?))))
        .collect::<Result<_>>()?;
    envelope(signed_value, signatures, role)
}

/// Adds the signatures of `signers` to the metadata file `bytes` (keeping those it has;
/// a key that signed already does not sign twice), written as [`sign`] writes. Used to
/// cross-sign another repository's root with this one's root keys (an ownership
/// transfer: TUF §5.3.4's two rules, across repositories).
pub(crate) fn add_signatures(
    bytes: &[u8],
    role: RoleName,
    signers: &[&RepoKey],
) -> Result<Vec<u8>> {
    let malformed = |reason: &str| Error::Canonical {
        role,
        reason: reason.to_owned(),
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| malformed(&e.to_string()))?;
    let (Some(Value::Array(existing)), Some(signed)) =
        (value.get("signatures"), value.get("signed"))
    else {
        return Err(malformed("not a metadata file of signatures and signed"));
    };
    let signed_value = sorted(signed.clone());
    let message = canonical(&signed_value, role)?;
    let mut signatures: Vec<(String, String)> = existing
        .iter()
        .map(|entry| match (entry.get("keyid"), entry.get("sig")) {
            (Some(Value::String(k)), Some(Value::String(s))) => Ok((k.clone(), s.clone())),
            _ => Err(malformed("a signature is not {keyid, sig}")),
        })
        .collect::<Result<_>>()?;
    for key in signers {
        if !signatures.iter().any(|(id, _)| id == key.key_id()) {
            signatures.push((
                key.key_id().to_owned(),
                hex::encode(key.sign_bytes(&message)?),
            ));
        }
    }
    envelope(signed_value, signatures, role)
}

/// The metadata file: signatures ordered by key id, then `signed`, pretty-printed.
fn envelope(
    signed_value: Value,
    mut signatures: Vec<(String, String)>,
    role: RoleName,
) -> Result<Vec<u8>> {
    signatures.sort_by(|a, b| a.0.cmp(&b.0));
    let signatures: Vec<Value> = signatures
        .into_iter()
        .map(|(keyid, sig)| {
            let mut entry = Map::new();
            entry.insert("keyid".into(), Value::String(keyid));
            entry.insert("sig".into(), Value::String(sig));
            Value::Object(entry)
        })
        .collect();
    let mut top = Map::new();
    top.insert("signatures".into(), Value::Array(signatures));
    top.insert("signed".into(), signed_value);
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

/// Whether `parsed` carries a valid signature by `key` under its key id, checked as a
/// device checks it (rota-tuf's `Key::verifies` over the canonical bytes).
pub(crate) fn signed_by(parsed: &Parsed, key: &PublicKey) -> bool {
    let text = |s: &str| Json::Str(s.to_owned());
    let key_json = Json::Object(vec![
        ("keytype".into(), text("ed25519")),
        ("scheme".into(), text("ed25519")),
        (
            "keyval".into(),
            Json::Object(vec![("public".into(), text(&hex::encode(key.as_bytes())))]),
        ),
    ]);
    let Ok(device_key) = rota_tuf::Key::from_json(&key_json) else {
        return false;
    };
    parsed.envelope.signatures.iter().any(|(keyid, sig)| {
        keyid == key.key_id() && device_key.verifies(&parsed.envelope.canonical, sig)
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

/// A TUF expiry in Unix seconds (`rota_tuf::model::Common::expires`) as a `SystemTime`.
pub(crate) fn system_time(unix_seconds: i64) -> SystemTime {
    // rota-tuf's date grammar bounds expiries to the years 1 to 9999: no overflow here.
    let offset = Duration::from_secs(unix_seconds.unsigned_abs());
    let t = if unix_seconds >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    };
    t.unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tough::schema::Timestamp;

    #[test]
    fn duplicate_keys_are_refused() {
        let json = br#"{"signed": {"_type": "timestamp", "_type": "timestamp"}, "signatures": []}"#;
        let Err(err) = parse(json, RoleName::Timestamp) else {
            panic!("duplicate keys accepted");
        };
        assert!(err.to_string().contains("appears twice"), "{err}");
    }

    #[test]
    fn wrong_type_unknown_fields_and_formats_are_refused() {
        let meta = |signed: &str, extra: &str| {
            format!(r#"{{"signed": {signed}, "signatures": []{extra}}}"#)
        };
        let read = |text: String, role: RoleName| {
            parse(text.as_bytes(), role)
                .and_then(|p| typed(&p, role, rota_tuf::model::timestamp).map(drop))
        };
        let good = r#"{"_type": "timestamp", "spec_version": "1.0.34", "version": 1, "expires": "2030-01-01T00:00:00Z", "meta": {"snapshot.json": {"version": 1}}}"#;
        read(meta(good, ""), RoleName::Timestamp).unwrap();
        let err = read(meta(good, ""), RoleName::Snapshot).unwrap_err();
        assert!(matches!(err, Error::WrongType { .. }), "{err}");
        let err = read(meta(good, r#", "x": 1"#), RoleName::Timestamp).unwrap_err();
        assert!(matches!(err, Error::UnknownField { .. }), "{err}");
        let extra = good.replace(r#""meta""#, r#""mirrors": 1, "meta""#);
        let err = read(meta(&extra, ""), RoleName::Timestamp).unwrap_err();
        assert!(matches!(err, Error::UnknownField { .. }), "{err}");
        // The spec version and date grammar are rota-tuf's (TUF 1.0.34 §4.2, §4.3).
        let v2 = good.replace("1.0.34", "2.0.0");
        let err = read(meta(&v2, ""), RoleName::Timestamp).unwrap_err();
        assert!(err.to_string().contains("spec_version"), "{err}");
        for date in ["00.5Z", "00+00:00"] {
            let odd = good.replace("00Z", date);
            let err = read(meta(&odd, ""), RoleName::Timestamp).unwrap_err();
            assert!(err.to_string().contains("YYYY-MM-DDTHH:MM:SSZ"), "{err}");
        }
        let err = read("[1, 2".into(), RoleName::Timestamp).unwrap_err();
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
    fn date_times_are_written_in_the_tuf_grammar() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(500_123_456_789);
        assert_eq!(tuf_date_time(t).unwrap(), "1985-11-06T11:10:56Z");
        assert!(tuf_date_time(SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(1)).is_err());
        assert_eq!(system_time(500_123_456), t - Duration::from_millis(789));
        assert_eq!(
            system_time(-86_400),
            SystemTime::UNIX_EPOCH - Duration::from_secs(86_400)
        );
    }
}
