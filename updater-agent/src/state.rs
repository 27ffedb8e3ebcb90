//! What the agent remembers across restarts and power cuts: the update in progress and
//! the reports the server has not acknowledged yet. The image itself is never here: its
//! progress is on flash, where rota-boot finds it.
//!
//! The file is replaced atomically (write, sync, rename, sync the directory), so a cut
//! leaves either the old state or the new one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rota_protocol::DeviceCertificate;
use rota_protocol::api::{Assignment, LastResult, Report};
use rota_protocol::order::SignedOrder;
use serde::{Deserialize, Serialize};

use crate::error::StateError;

const FILE: &str = "agent-state.json";
/// Beside the state directory (`.NAME.erasing`), written before a decommission erases
/// the directory and removed after it is gone: while it exists the agent's only job is
/// to finish the erase ([`begin_erase`]).
fn erasing_mark(dir: &Path) -> PathBuf {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    dir.with_file_name(format!(".{name}.erasing"))
}

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

/// An operator order being carried out (`docs/design/lifecycle.md`, sections 6 and 7):
/// recorded once verified, so a cut anywhere resumes it rather than forgets it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOrder {
    pub order: SignedOrder,
    /// The issuing server acknowledged the order as done (`order-done`).
    pub reported: bool,
}

/// The operator this device answers to since an ownership transfer (before the first,
/// the agent's configuration names it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Its server's URL.
    pub server: String,
    /// Its device CA public key (lowercase hex): whose orders the device obeys now.
    pub device_ca: String,
    /// When the transfer order was issued (unix seconds): an order older than this, from
    /// anyone, is out of order.
    pub since: u64,
    /// The transfer order, presented to the new server until it certifies the device.
    pub presenting: Option<SignedOrder>,
    /// The certificate the new operator issued.
    pub certificate: Option<DeviceCertificate>,
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
    /// An operator order in progress.
    #[serde(default)]
    pub order: Option<PendingOrder>,
    /// The operator since the last ownership transfer.
    #[serde(default)]
    pub owner: Option<Owner>,
}

impl AgentState {
    /// The state in `dir`; a device that never ran the agent starts empty, and so does one
    /// whose state is being erased ([`is_erasing`]: what is left of it is not read).
    pub fn load(dir: &Path) -> Result<Self, StateError> {
        if is_erasing(dir) {
            return Ok(Self::default());
        }
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

/// Whether the agent's file writes (its state, TUF metadata) are synced to the disk
/// before they count. Always, on a device. A simulated fleet turns it off
/// ([`sync_files`]): its power cuts are the simulated flash's and [`cut`]'s, never the
/// host's, so a sync there tests nothing. At 100,000 devices, syncs would take most of
/// the simulator's time.
static SYNC_FILES: AtomicBool = AtomicBool::new(true);

/// Turns syncing of this process's agent files on or off (why: `SYNC_FILES`).
#[cfg(feature = "sim")]
pub fn sync_files(on: bool) {
    SYNC_FILES.store(on, Ordering::Relaxed);
}

/// Whether this process's agent files are synced to the disk.
pub fn syncs_files() -> bool {
    SYNC_FILES.load(Ordering::Relaxed)
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
    cut::point().map_err(failed)?;
    let mut file = fs::File::create(&temp).map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    if syncs_files() {
        file.sync_all().map_err(failed)?;
    }
    cut::point().map_err(failed)?;
    fs::rename(&temp, path).map_err(failed)?;
    if !syncs_files() {
        return Ok(());
    }
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed)
}

/// Overwrites the file with zeros, syncs it, then removes it: its bytes do not stay in the
/// blocks the file system frees (as far as a file system allows; a flash translation
/// layer may keep old copies, which is why a key belongs in a token). A missing file is
/// shredded already.
pub fn shred(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    cut::point()?;
    match fs::OpenOptions::new().write(true).open(path) {
        Ok(file) => {
            let len = file.metadata()?.len();
            let zeros = vec![0u8; 64 * 1024];
            let mut at = 0;
            while at < len {
                let n = (len - at).min(zeros.len() as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            file.sync_all()?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    remove(path)
}

/// Shreds a file, or a directory's files and then the directory. Repeating it after a
/// cut finishes the job.
pub fn erase(path: &Path) -> std::io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return if meta.is_file() {
            shred(path)
        } else {
            remove(path)
        };
    }
    for entry in fs::read_dir(path)? {
        erase(&entry?.path())?;
    }
    cut::point()?;
    fs::remove_dir(path)?;
    sync_parent(path)
}

/// Marks `dir` as being erased (a decommission), before anything in it is: a cut
/// anywhere in the erase leaves the mark, and the agent finishes the erase after the
/// restart ([`is_erasing`]) instead of reading a half-erased state.
pub fn begin_erase(dir: &Path) -> Result<(), StateError> {
    write_atomically(&erasing_mark(dir), b"")
}

/// Whether an erase of `dir` began and has not finished.
pub fn is_erasing(dir: &Path) -> bool {
    erasing_mark(dir).exists()
}

/// The erase of `dir` is over (the device's [`crate::device::Device::zeroize`] returned).
pub fn end_erase(dir: &Path) -> std::io::Result<()> {
    remove(&erasing_mark(dir))
}

/// Power cuts between the agent's file operations, for tests: with the `sim` feature,
/// [`cut::after`]`(n)` makes the `n`-th file operation from now on this thread fail as
/// a cut would stop it (nothing of it done), once. Without the feature it costs nothing.
pub mod cut {
    #[cfg(feature = "sim")]
    thread_local! {
        static LEFT: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
        static FIRED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Cuts the power before the `n`-th file operation from now (0: the next).
    #[cfg(feature = "sim")]
    pub fn after(n: u64) {
        LEFT.set(Some(n));
        FIRED.set(false);
    }

    /// Whether the cut scheduled by [`after`] happened (and clears the flag).
    #[cfg(feature = "sim")]
    pub fn fired() -> bool {
        LEFT.set(None);
        FIRED.replace(false)
    }

    /// A file operation is about to start.
    #[cfg(feature = "sim")]
    pub(crate) fn point() -> std::io::Result<()> {
        match LEFT.get() {
            Some(0) => {
                LEFT.set(None);
                FIRED.set(true);
                Err(std::io::Error::other("power cut (simulated)"))
            }
            Some(n) => {
                LEFT.set(Some(n - 1));
                Ok(())
            }
            None => Ok(()),
        }
    }

    #[cfg(not(feature = "sim"))]
    #[inline(always)]
    pub(crate) fn point() -> std::io::Result<()> {
        Ok(())
    }
}

/// Removes a file (`Ok` if it is already gone) and syncs its directory.
pub fn remove(path: &Path) -> std::io::Result<()> {
    cut::point()?;
    match fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::File::open(dir)?.sync_all()
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
