//! Typed views of TUF metadata (TUF 1.0.34 §4), with python-tuf's field checks
//! (`tuf/api/_payload.py`, `Metadata.from_dict`).
//!
//! The typed view is read from the strict [`Json`] of the file; signatures are checked over
//! the canonical form of that same `signed` value, unknown fields included. Unknown fields
//! are allowed at every level, as the specification and python-tuf allow them.
//!
//! Public so that the repository side reads metadata exactly as devices do; trust
//! decisions stay with [`TrustedSet`](crate::TrustedSet). The types are read-only views:
//! nothing is ever serialised from them.

use std::collections::{BTreeMap, HashSet};

use crate::json::{self, Json};
use crate::keys::Key;
use crate::{Error, TargetInfo};

/// The four top-level role names; delegated roles may not use them.
pub(crate) const TOP_LEVEL: [&str; 4] = ["root", "timestamp", "snapshot", "targets"];

/// One metadata file: its signatures and the canonical bytes they cover.
#[derive(Clone)]
pub struct Envelope {
    /// (keyid, sig hex) in file order; key ids are unique.
    pub signatures: Vec<(String, String)>,
    /// The canonical form of `signed` as received (§4.2): what every signature covers.
    pub canonical: Vec<u8>,
}

/// Fields every role has (`Signed.from_dict`).
#[derive(Debug, Clone)]
pub struct Common {
    /// §4.3 VERSION: at least 1.
    pub version: u64,
    /// §4.3 EXPIRES, in seconds since the Unix epoch.
    pub expires: i64,
    /// `expires` as written: `YYYY-MM-DDTHH:MM:SSZ`.
    pub expires_text: String,
}

impl Common {
    /// `Signed.is_expired`: expired when the reference time is at or after `expires`.
    pub fn is_expired(&self, start: i64) -> bool {
        start >= self.expires
    }
}

/// A role's keys and threshold (`Role.from_dict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleKeys {
    /// Distinct key ids, in file order.
    pub keyids: Vec<String>,
    /// At least 1.
    pub threshold: u64,
}

/// §4.3 root metadata: exactly the four top-level roles.
#[derive(Debug, Clone)]
pub struct Root {
    pub common: Common,
    pub consistent_snapshot: bool,
    pub keys: BTreeMap<String, Key>,
    pub roles: BTreeMap<String, RoleKeys>,
}

/// An entry of timestamp's or snapshot's `meta` (`MetaFile.from_dict`).
#[derive(Debug, Clone)]
pub struct MetaFile {
    pub version: u64,
    pub length: Option<u64>,
    pub hashes: Option<Vec<(String, String)>>,
}

/// §4.6 timestamp metadata: the `snapshot.json` entry of its `meta`.
#[derive(Debug, Clone)]
pub struct Timestamp {
    pub common: Common,
    pub snapshot_meta: MetaFile,
}

/// §4.4 snapshot metadata.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub common: Common,
    pub meta: BTreeMap<String, MetaFile>,
}

/// §4.5 targets metadata (top-level or delegated).
#[derive(Debug, Clone)]
pub struct Targets {
    pub common: Common,
    pub targets: BTreeMap<String, TargetInfo>,
    pub delegations: Option<Delegations>,
}

/// §4.5 DELEGATIONS: listed roles or TAP 15 succinct roles, never both.
#[derive(Debug, Clone)]
pub struct Delegations {
    pub keys: BTreeMap<String, Key>,
    pub roles: Vec<DelegatedRole>,
    pub succinct: Option<SuccinctRoles>,
}

/// Which target paths a delegated role is trusted for.
#[derive(Debug, Clone)]
pub enum PathRule {
    Paths(Vec<String>),
    HashPrefixes(Vec<String>),
}

/// One listed delegated role (`DelegatedRole.from_dict`).
#[derive(Debug, Clone)]
pub struct DelegatedRole {
    pub name: String,
    pub keys: RoleKeys,
    pub terminating: bool,
    pub paths: PathRule,
}

/// TAP 15 succinct hash bin delegation (`SuccinctRoles`).
#[derive(Debug, Clone)]
pub struct SuccinctRoles {
    pub keys: RoleKeys,
    pub bit_length: u32,
    pub name_prefix: String,
}

/// Parses one metadata file of role `role` whose `_type` must be `expected_type`:
/// strict JSON ([`json::parse_strict`]), then [`envelope_from_json`].
pub fn parse_envelope(
    bytes: &[u8],
    role: &str,
    expected_type: &str,
) -> Result<(Envelope, Json), Error> {
    let doc = json::parse_strict(bytes).map_err(|e| Error::parse(role, e.0))?;
    envelope_from_json(&doc, role, expected_type)
}

/// The signatures and canonical signed bytes of an already strict-parsed metadata file
/// `doc` of role `role`, and its `signed` value.
pub fn envelope_from_json(
    doc: &Json,
    role: &str,
    expected_type: &str,
) -> Result<(Envelope, Json), Error> {
    let err = |reason: String| Error::parse(role, reason);
    let signed = doc
        .get("signed")
        .filter(|s| s.as_object().is_some())
        .ok_or_else(|| err("there is no signed object".into()))?;
    let sig_list = doc
        .get("signatures")
        .and_then(Json::as_array)
        .ok_or_else(|| err("there is no signatures list".into()))?;
    let mut signatures: Vec<(String, String)> = Vec::new();
    for entry in sig_list {
        let keyid = entry.get("keyid").and_then(Json::as_str);
        let sig = entry.get("sig").and_then(Json::as_str);
        let (Some(keyid), Some(sig)) = (keyid, sig) else {
            return Err(err("a signature needs keyid and sig strings".into()));
        };
        // Metadata.from_dict: "Multiple signatures found for keyid".
        if signatures.iter().any(|(k, _)| k == keyid) {
            return Err(err(format!("key id {keyid} signs more than once")));
        }
        signatures.push((keyid.to_owned(), sig.to_owned()));
    }
    // TUF 1.0.34 §5.3.4 etc.: the file must be of the role it is loaded as.
    let found = signed.get("_type").and_then(Json::as_str);
    if found != Some(expected_type) {
        return Err(err(format!(
            "_type is {found:?}, expected {expected_type:?}"
        )));
    }
    let canonical = json::canonical(signed).map_err(|e| err(e.0))?;
    Ok((
        Envelope {
            signatures,
            canonical,
        },
        signed.clone(),
    ))
}

fn common(signed: &Json) -> Result<Common, String> {
    let spec = str_field(signed, "spec_version")?;
    if !is_spec_version_1(spec) {
        return Err(format!("spec_version {spec:?} is not 1.x or 1.x.y"));
    }
    let version = uint(signed, "version")?;
    if version < 1 {
        return Err("version must be at least 1".into());
    }
    let expires_text = str_field(signed, "expires")?;
    let expires = parse_tuf_time(expires_text)
        .ok_or_else(|| format!("expires {expires_text:?} is not YYYY-MM-DDTHH:MM:SSZ"))?;
    Ok(Common {
        version,
        expires,
        expires_text: expires_text.to_owned(),
    })
}

pub fn root(signed: &Json) -> Result<Root, String> {
    let common = common(signed)?;
    let consistent_snapshot = match signed.get("consistent_snapshot") {
        None => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => return Err("consistent_snapshot must be a boolean".into()),
    };
    let keys = keys(signed.get("keys"))?;
    let role_map = object(signed, "roles")?;
    let mut roles = BTreeMap::new();
    for (name, value) in role_map {
        roles.insert(name.clone(), role_keys(value)?);
    }
    // Root.from_dict: "Role names must be the top-level metadata roles".
    if roles.len() != TOP_LEVEL.len() || TOP_LEVEL.iter().any(|r| !roles.contains_key(*r)) {
        return Err("roles must be exactly root, timestamp, snapshot and targets".into());
    }
    Ok(Root {
        common,
        consistent_snapshot,
        keys,
        roles,
    })
}

pub fn timestamp(signed: &Json) -> Result<Timestamp, String> {
    let common = common(signed)?;
    let meta = signed
        .get("meta")
        .ok_or("there is no meta object")?
        .get("snapshot.json")
        .ok_or("meta does not list snapshot.json")?;
    Ok(Timestamp {
        common,
        snapshot_meta: meta_file(meta)?,
    })
}

pub fn snapshot(signed: &Json) -> Result<Snapshot, String> {
    let common = common(signed)?;
    let mut meta = BTreeMap::new();
    for (name, value) in object(signed, "meta")? {
        meta.insert(name.clone(), meta_file(value)?);
    }
    Ok(Snapshot { common, meta })
}

pub fn targets(signed: &Json) -> Result<Targets, String> {
    let common = common(signed)?;
    let mut targets = BTreeMap::new();
    for (name, value) in object(signed, "targets")? {
        targets.insert(name.clone(), target_file(name, value)?);
    }
    let delegations = match signed.get("delegations") {
        None => None,
        Some(d) => Some(delegations(d)?),
    };
    Ok(Targets {
        common,
        targets,
        delegations,
    })
}

fn delegations(value: &Json) -> Result<Delegations, String> {
    if value.as_object().is_none() {
        return Err("delegations must be an object".into());
    }
    let keys = keys(value.get("keys"))?;
    let listed = value.get("roles");
    let succinct = value.get("succinct_roles");
    // Delegations.from_dict: "One of roles and succinct_roles must be set".
    let (roles, succinct) = match (listed, succinct) {
        (Some(list), None) => {
            let list = list.as_array().ok_or("delegations roles must be a list")?;
            let mut roles: Vec<DelegatedRole> = Vec::new();
            let mut names = HashSet::new();
            for item in list {
                let role = delegated_role(item)?;
                if TOP_LEVEL.contains(&role.name.as_str()) {
                    return Err(format!(
                        "delegated role name {:?} is a top-level role",
                        role.name
                    ));
                }
                if !names.insert(role.name.clone()) {
                    return Err(format!("delegated role {:?} is listed twice", role.name));
                }
                roles.push(role);
            }
            (roles, None)
        }
        (None, Some(s)) => (Vec::new(), Some(succinct_roles(s)?)),
        _ => return Err("delegations need exactly one of roles and succinct_roles".into()),
    };
    Ok(Delegations {
        keys,
        roles,
        succinct,
    })
}

fn delegated_role(value: &Json) -> Result<DelegatedRole, String> {
    let name = str_field(value, "name")?;
    if name.is_empty() {
        return Err("a delegated role has an empty name".into());
    }
    let terminating = match value.get("terminating") {
        Some(Json::Bool(b)) => *b,
        _ => {
            return Err(format!(
                "delegated role {name:?} needs a terminating boolean"
            ));
        }
    };
    let strings = |field: &str| -> Result<Option<Vec<String>>, String> {
        match value.get(field) {
            None => Ok(None),
            Some(Json::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| format!("delegated role {name:?}: {field} must be strings")),
            Some(_) => Err(format!("delegated role {name:?}: {field} must be a list")),
        }
    };
    // DelegatedRole.__init__: exactly one of paths and path_hash_prefixes.
    let paths = match (strings("paths")?, strings("path_hash_prefixes")?) {
        (Some(p), None) => PathRule::Paths(p),
        (None, Some(h)) => PathRule::HashPrefixes(h),
        _ => {
            return Err(format!(
                "delegated role {name:?} needs exactly one of paths and path_hash_prefixes"
            ));
        }
    };
    Ok(DelegatedRole {
        name: name.to_owned(),
        keys: role_keys(value)?,
        terminating,
        paths,
    })
}

fn succinct_roles(value: &Json) -> Result<SuccinctRoles, String> {
    let bit_length = uint(value, "bit_length")?;
    // SuccinctRoles.__init__: "bit_length must be between 1 and 32".
    if !(1..=32).contains(&bit_length) {
        return Err("succinct_roles bit_length must be between 1 and 32".into());
    }
    Ok(SuccinctRoles {
        keys: role_keys(value)?,
        bit_length: bit_length as u32,
        name_prefix: str_field(value, "name_prefix")?.to_owned(),
    })
}

fn keys(value: Option<&Json>) -> Result<BTreeMap<String, Key>, String> {
    let members = value
        .and_then(Json::as_object)
        .ok_or("keys must be an object")?;
    members
        .iter()
        .map(|(id, k)| Ok((id.clone(), Key::from_json(k)?)))
        .collect()
}

fn role_keys(value: &Json) -> Result<RoleKeys, String> {
    let list = value
        .get("keyids")
        .and_then(Json::as_array)
        .ok_or("a role needs a keyids list")?;
    let mut keyids: Vec<String> = Vec::new();
    for id in list {
        let id = id.as_str().ok_or("key ids must be strings")?;
        // Role.__init__: "Nonunique keyids".
        if keyids.iter().any(|k| k == id) {
            return Err(format!("key id {id} is listed twice in one role"));
        }
        keyids.push(id.to_owned());
    }
    let threshold = uint(value, "threshold")?;
    if threshold < 1 {
        return Err("threshold must be at least 1".into());
    }
    Ok(RoleKeys { keyids, threshold })
}

fn meta_file(value: &Json) -> Result<MetaFile, String> {
    let version = uint(value, "version")?;
    if version < 1 {
        return Err("a meta version must be at least 1".into());
    }
    let length = match value.get("length") {
        None => None,
        Some(_) => Some(uint(value, "length")?),
    };
    let hashes = match value.get("hashes") {
        None => None,
        Some(h) => Some(hashes(h)?),
    };
    Ok(MetaFile {
        version,
        length,
        hashes,
    })
}

fn target_file(name: &str, value: &Json) -> Result<TargetInfo, String> {
    if value.as_object().is_none() {
        return Err(format!("target {name:?} must be an object"));
    }
    Ok(TargetInfo {
        name: name.to_owned(),
        length: uint(value, "length")?,
        hashes: hashes(value.get("hashes").ok_or("a target needs hashes")?)?,
        custom: value.get("custom").map(Json::to_serde),
    })
}

/// `_validate_hashes`: a non-empty map of strings, kept in file order (the first hash
/// names consistent-snapshot targets, TUF 1.0.34 §5.7.3).
fn hashes(value: &Json) -> Result<Vec<(String, String)>, String> {
    let members = value.as_object().ok_or("hashes must be an object")?;
    if members.is_empty() {
        return Err("hashes must not be empty".into());
    }
    members
        .iter()
        .map(|(alg, h)| match h {
            Json::Str(s) => Ok((alg.clone(), s.clone())),
            _ => Err(format!("the {alg} hash must be a string")),
        })
        .collect()
}

fn str_field<'a>(value: &'a Json, field: &str) -> Result<&'a str, String> {
    value
        .get(field)
        .and_then(Json::as_str)
        .ok_or_else(|| format!("{field} must be a string"))
}

fn uint(value: &Json, field: &str) -> Result<u64, String> {
    match value.get(field) {
        Some(Json::Int(i)) => {
            u64::try_from(*i).map_err(|_| format!("{field} must not be negative"))
        }
        _ => Err(format!("{field} must be an integer")),
    }
}

fn object<'a>(value: &'a Json, field: &str) -> Result<&'a [(String, Json)], String> {
    value
        .get(field)
        .and_then(Json::as_object)
        .ok_or_else(|| format!("{field} must be an object"))
}

/// `1.MINOR` or `1.MINOR.PATCH`: python-tuf accepts both; the major version must be 1.
fn is_spec_version_1(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    matches!(parts.len(), 2 | 3)
        && parts.first() == Some(&"1")
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// TUF 1.0.34 §4.2: `YYYY-MM-DDTHH:MM:SSZ` exactly (python's
/// `strptime("%Y-%m-%dT%H:%M:%SZ")`), as seconds since the Unix epoch.
pub(crate) fn parse_tuf_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 20
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> { s.get(from..to)?.parse().ok() };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    // strptime's %S accepts up to 61.
    if year < 1 || day < 1 || day > month_days || hour > 23 || minute > 59 || second > 61 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
