//! The trusted metadata set and the metadata parsers, exposed for the fuzz targets in
//! `fuzz/` only: compiled under `cargo fuzz` (`--cfg fuzzing`), never part of the API.

use crate::trusted::{self, TimestampUpdate};
use crate::{Error, TargetInfo, model};

/// [`trusted::TrustedSet`], one method per update step (TUF 1.0.34 §5.2–§5.6).
#[derive(Clone)]
pub struct TrustedSet(trusted::TrustedSet);

impl TrustedSet {
    /// §5.2: a root verified by its own root keys; `start` is the update start time.
    pub fn new(root: &[u8], start: i64) -> Result<Self, Error> {
        trusted::TrustedSet::at(root, start).map(TrustedSet)
    }

    /// §5.3.4–§5.3.8.
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.0.update_root(bytes)
    }

    /// §5.3.10.
    pub fn check_final_root(&self) -> Result<(), Error> {
        self.0.check_final_root()
    }

    /// §5.4.2–§5.4.4; `Ok(false)`: the same version as the trusted one, kept.
    pub fn update_timestamp(&mut self, bytes: &[u8]) -> Result<bool, Error> {
        self.0
            .update_timestamp(bytes)
            .map(|u| u == TimestampUpdate::Trusted)
    }

    /// §5.5.2–§5.5.6.
    pub fn update_snapshot(&mut self, bytes: &[u8], local: bool) -> Result<(), Error> {
        self.0.update_snapshot(bytes, local)
    }

    /// §5.6.2–§5.6.5 for `role`, delegated by `delegator`.
    pub fn update_targets(
        &mut self,
        bytes: &[u8],
        role: &str,
        delegator: &str,
    ) -> Result<(), Error> {
        self.0.update_targets(bytes, role, delegator)
    }

    /// The target `name` as the trusted role `role` lists it.
    pub fn target(&self, role: &str, name: &str) -> Option<TargetInfo> {
        self.0.target(role, name)
    }

    /// The names of the targets the trusted role `role` lists, and of the roles it
    /// delegates to by name.
    pub fn listed(&self, role: &str) -> (Vec<String>, Vec<String>) {
        let Some(targets) = self.0.targets.get(role) else {
            return (Vec::new(), Vec::new());
        };
        let names = targets.targets.keys().cloned().collect();
        let roles = match &targets.delegations {
            None => Vec::new(),
            Some(d) => d.roles.iter().map(|r| r.name.clone()).collect(),
        };
        (names, roles)
    }
}

/// Parses `bytes` as metadata of each top-level role (§4): the envelope, then the
/// role's typed view. Returns which of root, timestamp, snapshot, targets parsed.
pub fn parse_roles(bytes: &[u8]) -> [bool; 4] {
    let parse = |role: &str, typed: fn(&crate::json::Json) -> Result<(), String>| {
        model::parse_envelope(bytes, role, role)
            .ok()
            .is_some_and(|(_, signed)| typed(&signed).is_ok())
    };
    [
        parse("root", |s| model::root(s).map(drop)),
        parse("timestamp", |s| model::timestamp(s).map(drop)),
        parse("snapshot", |s| model::snapshot(s).map(drop)),
        parse("targets", |s| model::targets(s).map(drop)),
    ]
}
