//! Trust-anchor commands delivered through TUF: how a device's firmware-signing keys are
//! rolled over in the field (`docs/design/lifecycle.md`, section 4).
//!
//! A command (`rota_boot::anchor`: a COSE_Sign1 by a firmware key the device trusts) is
//! published as the TUF target `anchors/<class>/<counter>.cose`
//! ([`RotaTarget::anchor_command_name`]), so it is signed twice: by the firmware key inside
//! and by the offline targets keys outside. Its target's rota fields name the key that
//! signed it and, for a command that adds a key, the new key itself (the command holds only
//! its hash; the agent needs the key to verify envelopes, and checks it against the hash).
//!
//! Before an assignment's envelope is verified, [`catch_up`] reads the root of trust's
//! command counter `n`, looks for the target of command `n + 1` in the verified targets,
//! downloads it (length and hashes checked by the TUF client) and has rota-boot apply it
//! ([`rota_boot::Updater::apply_anchor_command`], which checks everything again and burns
//! in an order a power cut cannot tear); then `n + 2`, and so on until one is missing.
//!
//! - A revocation of the running image's key, or one while on trial, is **deferred**:
//!   not an error; it is tried again once the next install is confirmed, or before the
//!   next assignment.
//! - Any other refusal (a forged, tampered, replayed or misnamed command) is logged and
//!   recorded in `state_dir/anchor-commands.json` (what `rota-agent status` shows), and
//!   never stops the device: nothing was burned, and the install goes on with the keys
//!   the device trusts.
//! - A power cut anywhere: rota-boot's burns are idempotent (the same command applied
//!   again completes it, or is `AlreadyApplied`); the agent's own step (the new key added
//!   to the device's key list) comes after the burn, and `reconcile` redoes it from the
//!   published commands whenever a valid key slot holds a key the device does not know.
//!
//! Which keys the agent verifies envelopes with ([`trusted`]): the device's keys whose
//! hash is in a valid, unrevoked key slot, exactly what rota-boot accepts.

use std::path::Path;

use rota_boot::anchor::{self, Change};
use rota_boot::{AnchorOutcome, Error as BootError, RootOfTrust};
use rota_manifest::{Ed25519Verifier, PublicKey};
use rota_protocol::RotaTarget;
use rota_tuf::{Client as TufClient, Error as TufError, HttpFetcher};
use serde::{Deserialize, Serialize};

use crate::device::Device;
use crate::error::DeviceError;
use crate::install::Failure;

/// The record of the last pass that found a command: `state_dir/anchor-commands.json`.
pub const REPORT_FILE: &str = "anchor-commands.json";

/// The firmware keys trust-anchor commands added, for a device that keeps its key list
/// in files: `state_dir/trust-anchors.json` ([`load_added`], [`save_added`]).
pub const ADDED_FILE: &str = "trust-anchors.json";

/// What a pass of [`catch_up`] did with the commands it found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The counters of the commands applied (or found already applied), in order.
    pub applied: Vec<u32>,
    /// The command left for later, and why: a revocation of the running image's key, or
    /// one while the running image is on trial.
    pub deferred: Option<Pending>,
    /// The command refused, and why. Nothing of it was burned.
    pub refused: Option<Pending>,
}

/// A command that was not applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub counter: u32,
    pub reason: String,
}

impl Report {
    fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.deferred.is_none() && self.refused.is_none()
    }

    /// The last report recorded in `state_dir`, if any.
    pub fn load(state_dir: &Path) -> Result<Option<Self>, DeviceError> {
        let path = state_dir.join(REPORT_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| crate::error::StateError::Corrupt { path, source }.into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(crate::error::StateError::Read { path, source }.into()),
        }
    }

    fn save(&self, state_dir: &Path) -> Result<(), DeviceError> {
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        Ok(crate::state::write_atomically(
            &state_dir.join(REPORT_FILE),
            &bytes,
        )?)
    }
}

/// Whether the last recorded pass deferred a command (a revocation waiting for the new
/// key's image to run).
pub fn has_deferred(state_dir: &Path) -> bool {
    matches!(
        Report::load(state_dir),
        Ok(Some(Report {
            deferred: Some(_),
            ..
        }))
    )
}

/// The device's firmware keys that its root of trust holds in a valid, unrevoked key
/// slot: the keys an envelope may be signed by.
pub fn trusted<D: Device>(device: &mut D) -> Result<Vec<PublicKey>, DeviceError> {
    let keys = device.trust_anchors().to_vec();
    let rot = device.boot_parts().rot;
    let mut trusted = Vec::with_capacity(keys.len());
    for key in keys {
        let id = key.key_id();
        for slot in 0..rot.key_slots() {
            if rot.key_hash(slot).map_err(rot_error)? == Some(id)
                && !rot.is_revoked(slot).map_err(rot_error)?
            {
                trusted.push(key);
                break;
            }
        }
    }
    Ok(trusted)
}

/// Applies, in counter order, every trust-anchor command for `class_id` that `tuf` (a
/// refreshed client) lists beyond the device's counter; records what it did in
/// `state_dir` when it found any. A command the device refuses is not an error
/// ([`Report::refused`]); the network failing is ([`Failure::Transient`]: the update is
/// tried again, since its envelope may need the new key), and so is the device failing.
pub fn catch_up<D: Device>(
    device: &mut D,
    tuf: &mut TufClient<HttpFetcher>,
    class_id: [u8; 16],
) -> Result<Report, Failure> {
    let class = uuid::Uuid::from_bytes(class_id);
    reconcile(device, tuf, &class)?;
    let mut report = Report::default();
    loop {
        let status = device
            .boot_parts()
            .updater()?
            .trust_status()
            .map_err(|e| DeviceError::Boot(e.to_string()))?;
        if status.anchor_commands_left == 0 {
            break;
        }
        let counter = status.anchor_commands + 1;
        let name = RotaTarget::anchor_command_name(&class, counter);
        let info = match tuf.target_info(&name) {
            Ok(info) => info,
            Err(TufError::TargetNotFound { .. }) => break,
            Err(e) => return Err(tuf_failure(e)),
        };
        let refuse = |reason: String| Pending { counter, reason };
        let fields = match published(&info, &class, counter) {
            Ok(fields) => fields,
            Err(why) => {
                report.refused = Some(refuse(why));
                break;
            }
        };
        // §5.7.3: length and hashes. Bytes that do not match what the targets keys signed
        // are refused like a forged command: the update goes on without it.
        let command = match tuf.fetch_target(&info) {
            Ok(command) => command,
            Err(e) if e.is_transient() => return Err(tuf_failure(e)),
            Err(e) => {
                report.refused = Some(refuse(format!("TUF: {e}")));
                break;
            }
        };
        match apply(device, &fields, &command) {
            Ok(()) => report.applied.push(counter),
            Err(Step::Defer(why)) => {
                report.deferred = Some(refuse(why));
                break;
            }
            Err(Step::Refuse(why)) => {
                report.refused = Some(refuse(why));
                break;
            }
            Err(Step::Device(e)) => return Err(e.into()),
        }
    }
    if let Some(refused) = &report.refused {
        tracing::warn!(counter = refused.counter, reason = %refused.reason, "trust-anchor command refused; nothing was burned");
    }
    if let Some(deferred) = &report.deferred {
        tracing::info!(counter = deferred.counter, reason = %deferred.reason, "trust-anchor command deferred");
    }
    if !report.applied.is_empty() {
        tracing::info!(applied = ?report.applied, "trust-anchor commands applied");
    }
    // A pass that found nothing leaves the last record as it was, unless that record
    // waits on a command that is gone or done.
    if !report.is_empty() || has_deferred(device.state_dir()) {
        report.save(device.state_dir())?;
    }
    Ok(report)
}

/// A published command's rota fields, checked against where it was found.
struct Published {
    signer: [u8; 32],
    new_key: Option<[u8; 32]>,
}

fn published(
    info: &rota_tuf::TargetInfo,
    class: &uuid::Uuid,
    counter: u32,
) -> Result<Published, String> {
    let custom = info.custom.as_ref().unwrap_or(&serde_json::Value::Null);
    match RotaTarget::from_custom(custom) {
        Ok(Some(RotaTarget::AnchorCommand {
            class_id,
            counter: listed,
            signer,
            new_key,
        })) if class_id == *class && listed == counter => {
            let key = |text: &str| {
                RotaTarget::parse_key(text)
                    .ok_or_else(|| format!("the target {:?} lists a malformed key", info.name))
            };
            Ok(Published {
                signer: key(&signer)?,
                new_key: new_key.as_deref().map(key).transpose()?,
            })
        }
        Ok(_) => Err(format!(
            "the signed target {:?} is not trust-anchor command {counter} of class {class}",
            info.name
        )),
        Err(e) => Err(format!(
            "the signed target {:?} has malformed rota fields: {e}",
            info.name
        )),
    }
}

enum Step {
    Defer(String),
    Refuse(String),
    Device(DeviceError),
}

/// Checks `command` as rota-boot will (with the same verifier) to learn what it changes,
/// has rota-boot apply it, and adds a new key to the device's list.
fn apply<D: Device>(device: &mut D, fields: &Published, command: &[u8]) -> Result<(), Step> {
    if command.len() > anchor::MAX_COMMAND_LEN {
        return Err(Step::Refuse(format!(
            "the command is {} bytes; a trust-anchor command is at most {}",
            command.len(),
            anchor::MAX_COMMAND_LEN
        )));
    }
    // The key the command adds must be the one published beside it.
    let decoded = anchor::verify::<Ed25519Verifier>(&fields.signer, command)
        .map_err(|e| Step::Refuse(format!("the command does not verify: {e}")))?;
    let new_key = match (decoded.change, fields.new_key) {
        (Change::Add { key_hash, .. }, Some(key)) => {
            let key = PublicKey::Ed25519(key);
            if key.key_id() != key_hash {
                return Err(Step::Refuse(
                    "the key published with the command is not the key it adds".into(),
                ));
            }
            Some(key)
        }
        (Change::Add { .. }, None) => {
            return Err(Step::Refuse(
                "the command adds a key, but the key is not published with it".into(),
            ));
        }
        (Change::Revoke { .. }, _) => None,
    };
    let outcome = device
        .boot_parts()
        .updater()
        .map_err(Step::Device)?
        .apply_anchor_command(&fields.signer, command);
    match outcome {
        Ok(AnchorOutcome::Applied | AnchorOutcome::AlreadyApplied) => {}
        Err(e @ (BootError::RevokesRunningKey | BootError::OnTrial)) => {
            return Err(Step::Defer(e.to_string()));
        }
        Err(BootError::Anchor(e)) => {
            return Err(Step::Refuse(format!("rota-boot refused it: {e}")));
        }
        Err(e) => return Err(Step::Device(DeviceError::Boot(e.to_string()))),
    }
    if let Some(key) = new_key {
        add_key(device, key).map_err(Step::Device)?;
    }
    Ok(())
}

/// Adds `key` to the device's list unless it is there.
fn add_key<D: Device>(device: &mut D, key: PublicKey) -> Result<(), DeviceError> {
    if device.trust_anchors().contains(&key) {
        return Ok(());
    }
    device.add_trust_anchor(key)
}

/// After a cut between a command's burn and the agent's step: every valid key slot whose
/// key the device does not know is looked up among the published commands already
/// applied (metadata only; at most the counter's 8), and its key added.
fn reconcile<D: Device>(
    device: &mut D,
    tuf: &mut TufClient<HttpFetcher>,
    class: &uuid::Uuid,
) -> Result<(), Failure> {
    let known: Vec<_> = device.trust_anchors().iter().map(|k| k.key_id()).collect();
    let rot = device.boot_parts().rot;
    let mut missing = Vec::new();
    for slot in 0..rot.key_slots() {
        if let Some(hash) = rot.key_hash(slot).map_err(rot_error)?
            && !known.contains(&hash)
            && !rot.is_revoked(slot).map_err(rot_error)?
        {
            missing.push(hash);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let applied = rot.anchor_counter().map_err(rot_error)?;
    for counter in 1..=applied {
        let info = match tuf.target_info(&RotaTarget::anchor_command_name(class, counter)) {
            Ok(info) => info,
            Err(TufError::TargetNotFound { .. }) => continue,
            Err(e) => return Err(tuf_failure(e)),
        };
        if let Ok(Published {
            new_key: Some(key), ..
        }) = published(&info, class, counter)
        {
            let key = PublicKey::Ed25519(key);
            // The OTP trusts this hash: the key that hashes to it is the key.
            if missing.contains(&key.key_id()) {
                add_key(device, key)?;
            }
        }
    }
    Ok(())
}

/// The firmware keys listed in `state_dir/trust-anchors.json` (none if it is absent):
/// for a device that keeps the keys commands added in its state directory.
pub fn load_added(state_dir: &Path) -> Result<Vec<PublicKey>, DeviceError> {
    let path = state_dir.join(ADDED_FILE);
    let hex_keys: Vec<String> = match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| crate::error::StateError::Corrupt {
                path: path.clone(),
                source,
            })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(crate::error::StateError::Read { path, source }.into()),
    };
    hex_keys
        .iter()
        .map(|text| {
            RotaTarget::parse_key(text)
                .map(PublicKey::Ed25519)
                .ok_or_else(|| {
                    DeviceError::TrustAnchor(format!(
                        "{} lists {text:?}, which is not a raw Ed25519 key in hex",
                        path.display()
                    ))
                })
        })
        .collect()
}

/// Writes `keys` (Ed25519) to `state_dir/trust-anchors.json`, atomically.
pub fn save_added(state_dir: &Path, keys: &[PublicKey]) -> Result<(), DeviceError> {
    let hex_keys: Vec<String> = keys
        .iter()
        .map(|key| match key {
            PublicKey::Ed25519(raw) => Ok(hex::encode(raw)),
            other => Err(DeviceError::TrustAnchor(format!(
                "{other:?} is not an Ed25519 key: a key slot holds Ed25519 keys only"
            ))),
        })
        .collect::<Result<_, _>>()?;
    let bytes = serde_json::to_vec_pretty(&hex_keys).unwrap_or_default();
    Ok(crate::state::write_atomically(
        &state_dir.join(ADDED_FILE),
        &bytes,
    )?)
}

fn rot_error(e: impl core::fmt::Debug) -> DeviceError {
    DeviceError::Boot(format!("cannot read the root of trust: {e:?}"))
}

fn tuf_failure(e: TufError) -> Failure {
    if e.is_transient() {
        Failure::Transient(format!("TUF: {e}"))
    } else {
        Failure::Refused(format!("TUF: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_keys_round_trip_through_their_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_added(dir.path()).unwrap(), vec![]);
        let keys = vec![PublicKey::Ed25519([1; 32]), PublicKey::Ed25519([2; 32])];
        save_added(dir.path(), &keys).unwrap();
        assert_eq!(load_added(dir.path()).unwrap(), keys);
        std::fs::write(dir.path().join(ADDED_FILE), br#"["zz"]"#).unwrap();
        assert!(load_added(dir.path()).is_err());
    }

    #[test]
    fn a_report_is_recorded_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Report::load(dir.path()).unwrap(), None);
        assert!(!has_deferred(dir.path()));
        let report = Report {
            applied: vec![1],
            deferred: Some(Pending {
                counter: 2,
                reason: "the key slot signed the running image".into(),
            }),
            refused: None,
        };
        report.save(dir.path()).unwrap();
        assert_eq!(Report::load(dir.path()).unwrap(), Some(report));
        assert!(has_deferred(dir.path()));
    }
}
