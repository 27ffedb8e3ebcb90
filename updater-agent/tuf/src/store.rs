//! Local files: the trusted metadata directory and the target directory.
//!
//! Writes are atomic (temporary file in the same directory, then rename) so a crash never
//! leaves a half-written trusted file, and temporary names never end in `.json`: the
//! metadata directory must hold nothing but trusted metadata.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically; synced to the disk when `durable`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> io::Result<()> {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(|e| Error::storage(path, e))
}

/// `METADATA_DIR`: trusted metadata under non-versioned names, byte-exact as received.
pub(crate) struct MetadataDir {
    dir: PathBuf,
    durable: bool,
}

impl MetadataDir {
    pub(crate) fn new(dir: &Path, durable: bool) -> Self {
        MetadataDir {
            dir: dir.to_path_buf(),
            durable,
        }
    }

    /// The local file of `role`: `quote(role, safe="").json` (python-tuf).
    pub(crate) fn path(&self, role: &str) -> PathBuf {
        self.dir
            .join(format!("{}.json", crate::paths::encode_name(role)))
    }

    pub(crate) fn read(&self, role: &str) -> Result<Vec<u8>, Error> {
        let path = self.path(role);
        fs::read(&path).map_err(|e| Error::storage(&path, e))
    }

    pub(crate) fn write(&self, role: &str, bytes: &[u8]) -> Result<(), Error> {
        write_atomic(&self.path(role), bytes, self.durable)
    }

    pub(crate) fn remove(&self, role: &str) -> Result<(), Error> {
        let path = self.path(role);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::storage(&path, e)),
            _ => Ok(()),
        }
    }
}
