//! What the agent remembers across restarts and power cuts: the update in progress and
//! the reports the server has not acknowledged yet. The image itself is never here: its
//! progress is on flash, where rota-boot finds it.
//!
//! The file is replaced atomically (write, sync, rename, sync the directory), so a cut
//! leaves either the old state or the new one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rota_protocol::api::{Assignment, LastResult, Report};
use serde::{Deserialize, Serialize};

use crate::error::StateError;

const FILE: &str = "agent-state.json";

/// Where an update stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Verifying and downloading into the inactive slot.
    Downloading,
    /// Marked pending: the next boot starts it on trial.
    Installed,
}

/// The update in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub assignment: Assignment,
    pub phase: Phase,
    /// The version that ran when the job began: what a revert returns to.
    pub from_version: u64,
    /// `downloading` was reported for this job.
    pub announced: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    pub job: Option<Job>,
    /// Reports waiting for the server's acknowledgement, oldest first. Each keeps its
    /// event id, so a resend after a lost answer is a duplicate, not a second report.
    pub outbox: Vec<Report>,
    /// The outcome of the last update, sent with every check-in.
    pub last: Option<LastResult>,
    /// The server has accepted this device's certificate.
    pub enrolled: bool,
}

impl AgentState {
    /// The state in `dir`; a device that never ran the agent starts empty.
    pub fn load(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join(FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StateError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let path = dir.join(FILE);
        // Plain structs of strings and integers always serialize; the error is kept anyway.
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        write_atomically(&path, &bytes)
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp: PathBuf = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
    ));
    let failed = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::File::create(&temp).map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    fs::rename(&temp, path).map_err(failed)?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rota_protocol::api::ReportKind;

    #[test]
    fn state_round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(AgentState::load(dir.path()).unwrap(), AgentState::default());
        let state = AgentState {
            outbox: vec![Report::new(ReportKind::Confirmed, 3, Some("r".into()), None).unwrap()],
            last: Some(LastResult::Confirmed),
            ..Default::default()
        };
        state.save(dir.path()).unwrap();
        assert_eq!(AgentState::load(dir.path()).unwrap(), state);
        fs::write(dir.path().join(FILE), b"{").unwrap();
        assert!(matches!(
            AgentState::load(dir.path()),
            Err(StateError::Corrupt { .. })
        ));
    }
}
