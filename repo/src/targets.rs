//! Targets metadata: the released files, signed offline by the targets keys
//! (TUF 1.0.34 §4.5), and the server's checks of an upload.
//!
//! Uploads are read with rota-tuf's model and verified by its `TrustedSet` against the
//! trusted root (§5.3.10, §5.6.3, §5.6.5): the server accepts nothing a device refuses.
//! What is left here is rota's own shape of a target list ([`check_targets`]).

use std::collections::HashMap;
use std::io::{self, Read};
use std::num::NonZeroU64;
use std::time::SystemTime;

use rota_tuf::json::Json;
use serde_json::Value;
use sha2::Digest as _;
use tough::TargetName;
use tough::schema::{Hashes, Target, Targets};

pub use rota_protocol::target::RotaTarget;

use crate::encoding::{self, decoded, only_fields, system_time, to_tuf_time};
use crate::error::{Error, Result};
use crate::keys::RepoKey;
use crate::{RoleName, SPEC_VERSION, SignedBytes, layout, root};

/// The longest target name rota publishes, in bytes.
const MAX_NAME_LEN: usize = 1024;

/// The longest path segment of a target name, in bytes: with the 64-digit hash prefix
/// and its dot, a stored file name stays within the usual 255-byte limit.
const MAX_SEGMENT_LEN: usize = 180;

/// A file to list in targets metadata: its name, length, hashes and custom field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFile {
    /// The target path clients ask for (TUF 1.0.34 §4.5 TARGETPATH): segments of
    /// letters, digits, `.`, `_`, `-` and `+`, separated by `/`, none empty or starting
    /// with a dot.
    pub name: String,
    /// The file's length in bytes.
    pub length: u64,
    /// The file's SHA-256 (its consistent-snapshot name, and what tough checks).
    pub sha256: [u8; 32],
    /// The file's SHA-512 (python-tuf checks every listed hash).
    pub sha512: [u8; 64],
    /// The target's `custom` field: a JSON object (or `null` for none). For rota's
    /// images and envelopes it holds `{"rota": ...}`, see [`RotaTarget`].
    pub custom: Value,
}

impl TargetFile {
    /// The target for the file contents `data`.
    pub fn from_bytes(name: impl Into<String>, data: &[u8], custom: Value) -> Self {
        Self {
            name: name.into(),
            length: data.len() as u64,
            sha256: sha2::Sha256::digest(data).into(),
            sha512: sha2::Sha512::digest(data).into(),
            custom,
        }
    }

    /// The target for the file read from `reader`, hashed as it streams.
    pub fn from_reader(
        name: impl Into<String>,
        mut reader: impl Read,
        custom: Value,
    ) -> io::Result<Self> {
        let mut sha256 = sha2::Sha256::new();
        let mut sha512 = sha2::Sha512::new();
        let mut length = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            sha256.update(&buf[..n]);
            sha512.update(&buf[..n]);
            length += n as u64;
        }
        Ok(Self {
            name: name.into(),
            length,
            sha256: sha256.finalize().into(),
            sha512: sha512.finalize().into(),
            custom,
        })
    }
}

/// One target of checked targets metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetEntry {
    /// The target path.
    pub name: String,
    /// Its length in bytes.
    pub length: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// Its SHA-512, when listed (rota always lists it).
    pub sha512: Option<[u8; 64]>,
    /// Its `custom` object (`{}` when absent).
    pub custom: Value,
    /// rota's entry in `custom`, when present.
    pub rota: Option<RotaTarget>,
}

impl TargetEntry {
    /// Where the file is stored under the targets base URL ([`layout::target_path`]).
    pub fn path(&self) -> String {
        layout::target_path(&self.name, &self.sha256)
    }

    /// Every path clients ask for the file under ([`layout::target_paths`]).
    pub fn paths(&self) -> Vec<String> {
        layout::target_paths(&self.name, &self.sha256)
    }
}

/// Targets metadata that passed [`verify_targets_upload`].
#[derive(Debug, Clone)]
pub struct VerifiedTargets {
    /// Its version.
    pub version: u64,
    /// Its expiry.
    pub expires: SystemTime,
    /// Every target it lists, by name.
    pub targets: Vec<TargetEntry>,
    /// The names of the targets that the previous targets metadata did not list (all of
    /// them when there was none), by name: the files the server must now receive.
    pub added: Vec<String>,
}

/// Refuses target names that could escape a directory, hide, or need quoting in a URL.
///
/// TUF 1.0.34 §4.5 RECOMMENDS "/" as the only separator and no leading separator;
/// rota allows only the characters that need no escaping in a URL or file system.
pub(crate) fn check_target_name(name: &str) -> Result<()> {
    let refuse = |reason: &'static str| {
        Err(Error::TargetName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return refuse("it is longer than 1024 bytes");
    }
    for segment in name.split('/') {
        if segment.is_empty() {
            return refuse("it has an empty path segment (a leading, trailing or double '/')");
        }
        if segment.starts_with('.') {
            return refuse("a path segment starts with '.'");
        }
        if segment.len() > MAX_SEGMENT_LEN {
            return refuse("a path segment is longer than 180 bytes");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
        {
            return refuse("only letters, digits, '.', '_', '-', '+' and '/' are allowed");
        }
    }
    Ok(())
}

/// Checks every target of `targets` (rota-tuf's view of the `signed` value `signed`) as
/// rota requires and returns them by name:
/// - no fields beyond TUF 1.0.34 §4.5 (`length`, `hashes`, `custom`), no delegations
///   (rota has no delegated roles);
/// - names per [`check_target_name`];
/// - §4.5 HASHES: a lowercase-hex SHA-256 (the consistent-snapshot file name), optionally
///   a SHA-512, and no other algorithm (a client that cannot check a listed hash refuses
///   the file);
/// - `custom` is an object whose `"rota"` entry, if any, is a valid [`RotaTarget`], and
///   every rota image and envelope name each other (and a trust-anchor command is named
///   `anchors/<class>/<counter>.cose`).
pub(crate) fn check_targets(
    targets: &rota_tuf::model::Targets,
    signed: &Json,
) -> Result<Vec<TargetEntry>> {
    if let Some(delegations) = &targets.delegations
        && (!delegations.keys.is_empty()
            || !delegations.roles.is_empty()
            || delegations.succinct.is_some())
    {
        return Err(Error::Delegations);
    }
    let mut entries = Vec::with_capacity(targets.targets.len());
    for (name, target) in &targets.targets {
        check_target_name(name)?;
        only_fields(
            encoding::members(signed, &["targets", name]),
            &["length", "hashes", "custom"],
            RoleName::Targets,
            &format!("signed.targets.{name}."),
        )?;
        let bad_hashes = |reason: String| Error::TargetHashes {
            name: name.to_owned(),
            reason,
        };
        let mut sha256 = None;
        let mut sha512 = None;
        for (alg, text) in &target.hashes {
            match alg.as_str() {
                "sha256" => {
                    sha256 = Some(lowercase_hex::<32>(text).ok_or_else(|| {
                        bad_hashes("the sha256 hash is not 32 bytes of lowercase hex".into())
                    })?);
                }
                "sha512" => {
                    sha512 = Some(lowercase_hex::<64>(text).ok_or_else(|| {
                        bad_hashes("the sha512 hash is not 64 bytes of lowercase hex".into())
                    })?);
                }
                _ => {
                    return Err(bad_hashes(format!(
                        "rota lists only sha256 and sha512, not {alg:?}"
                    )));
                }
            }
        }
        let sha256 = sha256.ok_or_else(|| bad_hashes("there is no sha256 hash".into()))?;
        let custom = match &target.custom {
            None => Value::Object(serde_json::Map::new()),
            Some(custom @ Value::Object(_)) => custom.clone(),
            Some(_) => {
                return Err(Error::TargetCustom {
                    name: name.to_owned(),
                    reason: "it is not a JSON object".into(),
                });
            }
        };
        let rota = RotaTarget::from_custom(&custom).map_err(|reason| Error::TargetCustom {
            name: name.to_owned(),
            reason,
        })?;
        entries.push(TargetEntry {
            name: name.to_owned(),
            length: target.length,
            sha256,
            sha512,
            custom,
            rota,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    check_links(&entries)?;
    Ok(entries)
}

/// `N` bytes written as exactly `2N` lowercase hex digits.
fn lowercase_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Every rota image names an envelope target that names it back, and vice versa; a
/// trust-anchor command is listed under the name devices look it up by, with well-formed
/// keys.
fn check_links(entries: &[TargetEntry]) -> Result<()> {
    let by_name: HashMap<&str, &TargetEntry> =
        entries.iter().map(|e| (e.name.as_str(), e)).collect();
    let rota_of = |name: &str| by_name.get(name).and_then(|e| e.rota.as_ref());
    for entry in entries {
        match &entry.rota {
            Some(RotaTarget::Image { envelope, .. }) => match rota_of(envelope) {
                Some(RotaTarget::Envelope { image }) if *image == entry.name => {}
                _ => {
                    return Err(Error::TargetLink {
                        name: entry.name.clone(),
                        reason: format!(
                            "names the envelope {envelope:?}, which is not listed as a rota envelope of this image"
                        ),
                    });
                }
            },
            Some(RotaTarget::Envelope { image }) => match rota_of(image) {
                Some(RotaTarget::Image { envelope, .. }) if *envelope == entry.name => {}
                _ => {
                    return Err(Error::TargetLink {
                        name: entry.name.clone(),
                        reason: format!(
                            "names the image {image:?}, which is not listed as a rota image with this envelope"
                        ),
                    });
                }
            },
            Some(RotaTarget::AnchorCommand {
                class_id,
                counter,
                signer,
                new_key,
            }) => {
                let bad = |reason: String| Error::TargetCustom {
                    name: entry.name.clone(),
                    reason,
                };
                let expected = RotaTarget::anchor_command_name(class_id, *counter);
                if entry.name != expected {
                    return Err(bad(format!(
                        "a trust-anchor command for class {class_id} with counter {counter} is published as {expected:?}, where devices look for it"
                    )));
                }
                if *counter == 0 {
                    return Err(bad("a trust-anchor command's counter starts at 1".into()));
                }
                for (what, key) in [("signer", Some(signer)), ("new_key", new_key.as_ref())] {
                    if key.is_some_and(|k| RotaTarget::parse_key(k).is_none()) {
                        return Err(bad(format!(
                            "its {what} is not a raw Ed25519 public key in 64 lowercase hex digits"
                        )));
                    }
                }
            }
            None => {}
        }
    }
    Ok(())
}

/// Reads targets metadata as a device does and checks its targets (not its signatures).
pub(crate) fn parse(bytes: &[u8]) -> Result<(rota_tuf::model::Targets, Vec<TargetEntry>)> {
    let parsed = encoding::parse(bytes, RoleName::Targets)?;
    let targets = encoding::typed(&parsed, RoleName::Targets, rota_tuf::model::targets)?;
    let entries = check_targets(&targets, &parsed.signed)?;
    Ok((targets, entries))
}

/// The targets that targets metadata lists, read as strictly as [`verify_targets_upload`]
/// reads them but without checking signatures: for metadata that was verified when it
/// was stored, such as a server's current targets.
pub fn listed_targets(bytes: &[u8]) -> Result<Vec<TargetEntry>> {
    parse(bytes).map(|(_, entries)| entries)
}

impl TargetFile {
    /// The entry this file becomes in targets metadata (`custom` `null` is `{}`).
    fn entry(&self) -> Result<TargetEntry> {
        check_target_name(&self.name)?;
        let custom = match &self.custom {
            Value::Null => Value::Object(serde_json::Map::new()),
            custom @ Value::Object(_) => custom.clone(),
            _ => {
                return Err(Error::TargetCustom {
                    name: self.name.clone(),
                    reason: "it is not a JSON object".into(),
                });
            }
        };
        let rota = RotaTarget::from_custom(&custom).map_err(|reason| Error::TargetCustom {
            name: self.name.clone(),
            reason,
        })?;
        Ok(TargetEntry {
            name: self.name.clone(),
            length: self.length,
            sha256: self.sha256,
            sha512: Some(self.sha512),
            custom,
            rota,
        })
    }
}

impl TargetEntry {
    /// tough's schema type for this entry, to build metadata with.
    fn to_tough(&self) -> Result<(TargetName, Target)> {
        let name = TargetName::new(self.name.as_str()).map_err(|_| Error::TargetName {
            name: self.name.clone(),
            reason: "tough refuses it",
        })?;
        let mut other_hashes = HashMap::new();
        if let Some(sha512) = &self.sha512 {
            other_hashes.insert("sha512".to_owned(), Value::String(hex::encode(sha512)));
        }
        let custom = match &self.custom {
            Value::Object(object) => object.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            _ => HashMap::new(),
        };
        let target = Target {
            length: self.length,
            hashes: Hashes {
                sha256: decoded(&self.sha256),
                _extra: other_hashes,
            },
            custom,
            _extra: HashMap::new(),
        };
        Ok((name, target))
    }
}

/// New targets metadata: the targets of `current_targets` (if any) plus `add`, at the
/// next version (1 when there is none), expiring at `expires`, signed by each of
/// `targets_keys` (at least the root's targets threshold of them, for clients to accept
/// it: [`verify_targets_upload`] checks that against the root).
///
/// Adding a target that is already listed with the same length, hashes and custom field
/// changes nothing; with different content it is refused ([`Error::TargetChanged`]):
/// a published name always means the same bytes.
pub fn sign_targets(
    current_targets: Option<&[u8]>,
    add: &[TargetFile],
    targets_keys: &[&RepoKey],
    expires: SystemTime,
) -> Result<SignedBytes> {
    if targets_keys.is_empty() {
        return Err(Error::TooFewSigners {
            role: RoleName::Targets,
            threshold: 1,
            given: 0,
        });
    }
    let (mut listed, version) = match current_targets {
        Some(bytes) => {
            let (current, entries) = parse(bytes)?;
            let current_version = current.common.version;
            let version = current_version
                .checked_add(1)
                .ok_or(Error::VersionOverflow {
                    role: RoleName::Targets,
                    current: current_version,
                })?;
            (entries, version)
        }
        None => (Vec::new(), 1),
    };
    for file in add {
        let entry = file.entry()?;
        match listed.iter().find(|e| e.name == entry.name) {
            Some(existing) if *existing != entry => {
                return Err(Error::TargetChanged {
                    name: file.name.clone(),
                });
            }
            Some(_) => {}
            None => listed.push(entry),
        }
    }
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    check_links(&listed)?;
    let targets = Targets {
        spec_version: SPEC_VERSION.to_owned(),
        version: NonZeroU64::new(version).ok_or(Error::VersionOverflow {
            role: RoleName::Targets,
            current: 0,
        })?,
        expires: to_tuf_time(expires)?,
        targets: listed
            .iter()
            .map(TargetEntry::to_tough)
            .collect::<Result<_>>()?,
        delegations: None,
        _extra: HashMap::new(),
    };
    let bytes = encoding::sign(&targets, RoleName::Targets, targets_keys)?;
    // Read back what was written, as the server will.
    let (written, _) = parse(&bytes)?;
    Ok(SignedBytes {
        role: RoleName::Targets,
        version: written.common.version,
        expires: system_time(written.common.expires),
        bytes,
    })
}

/// The server's check of targets metadata uploaded by the CLI, before it records it and
/// signs a snapshot listing it. `root` is the trusted (latest) root, `previous_targets`
/// the targets metadata the server serves now, if any.
///
/// What a device checks, by the device's own code (rota-tuf's `TrustedSet` with the
/// trusted root and `now` as its reference time):
/// - TUF 1.0.34 §5.3.10: the root is not expired (devices stop there otherwise);
/// - §5.6.3: signed by a threshold of the targets keys of `root` (distinct key ids,
///   exactly as the root lists them);
/// - §5.6.5: not expired at `now`;
/// - rota-tuf's model: strict JSON, canonical form, `spec_version`, the §4.2 date grammar.
///
/// What rota requires on top:
/// - `_type` "targets", no unknown fields, no delegations, rota's names, hashes and custom
///   fields (`check_targets`);
/// - its version is greater than the previous one: clients refuse a snapshot whose targets
///   version goes down (TUF 1.0.34 §5.5.5), so a lower one could never be published;
/// - a target already listed keeps its content ([`Error::TargetChanged`]).
pub fn verify_targets_upload(
    root: &[u8],
    previous_targets: Option<&[u8]>,
    new_targets: &[u8],
    now: SystemTime,
) -> Result<VerifiedTargets> {
    let (device, root_info) = root::trusted(root, now)?;
    let (new, entries) = parse(new_targets)?;
    let version = new.common.version;
    device
        .verify_new_targets(new_targets)
        .map_err(|e| match e {
            rota_tuf::Error::Signature {
                valid, threshold, ..
            } => Error::Signatures {
                role: RoleName::Targets,
                valid,
                threshold,
            },
            rota_tuf::Error::Expired { ref role, .. } if role == "root" => {
                root::expired(RoleName::Root, root_info.version, e)
            }
            other => root::expired(RoleName::Targets, version, other),
        })?;
    let mut added = Vec::new();
    match previous_targets {
        Some(previous) => {
            let (previous, previous_entries) = parse(previous)?;
            let current = previous.common.version;
            if version <= current {
                return Err(Error::VersionNotIncreasing {
                    role: RoleName::Targets,
                    current,
                    version,
                });
            }
            let before: HashMap<&str, &TargetEntry> = previous_entries
                .iter()
                .map(|e| (e.name.as_str(), e))
                .collect();
            for entry in &entries {
                match before.get(entry.name.as_str()) {
                    Some(old) if *old != entry => {
                        return Err(Error::TargetChanged {
                            name: entry.name.clone(),
                        });
                    }
                    Some(_) => {}
                    None => added.push(entry.name.clone()),
                }
            }
        }
        None => added.extend(entries.iter().map(|e| e.name.clone())),
    }
    Ok(VerifiedTargets {
        version,
        expires: system_time(new.common.expires),
        targets: entries,
        added,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names() {
        for ok in ["fw.bin", "class-a/fw_1.2+b.bin", "a/b/c"] {
            check_target_name(ok).unwrap();
        }
        for bad in [
            "", "/fw", "fw/", "a//b", "../x", "a/./b", ".hidden", "a b", "fw?.bin", "é",
        ] {
            assert!(check_target_name(bad).is_err(), "{bad:?} accepted");
        }
        check_target_name(&"a".repeat(180)).unwrap();
        assert!(check_target_name(&"a".repeat(181)).is_err());
    }
}
