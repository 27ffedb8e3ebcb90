//! File access for a repository directory and the CLI: bounded reads, files created with
//! their permission bits, atomic replacement, and errors that name the file and say what
//! is wrong in plain words.
//!
//! Durability: every file written here is `fsync`ed before it is reported written, and an
//! atomic write also syncs its directory, so that once a call returns, a power cut cannot
//! take the change back.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// What a file operation failed at, naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// A file or directory cannot be read.
    #[error("cannot read {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why, in words ([`reason`]).
        reason: String,
    },

    /// A file is larger than anything of its kind can be.
    #[error("{} is larger than {limit} bytes, too large to be {what}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit, in bytes.
        limit: u64,
        /// What the file was read as ("root metadata").
        what: &'static str,
    },

    /// A key file is not text, so it cannot be PEM.
    #[error("{} is not a PEM key file (it is not text)", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },

    /// Whether something exists at a path cannot be found out.
    #[error("cannot check {}: {reason}", path.display())]
    Check {
        /// The path.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },

    /// A file or directory cannot be created.
    #[error("cannot create {}: {reason}", path.display())]
    Create {
        /// The path.
        path: PathBuf,
        /// Why, in words (includes a missing parent directory).
        reason: String,
    },

    /// A file cannot be written.
    #[error("cannot write {}: {reason}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },

    /// A file or directory cannot be moved.
    #[error("cannot move {} to {}: {reason}", from.display(), to.display())]
    Move {
        /// Where it is.
        from: PathBuf,
        /// Where it was to go.
        to: PathBuf,
        /// Why, in words.
        reason: String,
    },

    /// A file or directory cannot be removed.
    #[error("cannot remove {}: {reason}", path.display())]
    Remove {
        /// The path.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
}

/// An I/O error in words (the one phrasing every rota file error uses).
pub use rota_keys::io_reason as reason;

fn read_error(path: &Path, e: &io::Error) -> FileError {
    FileError::Read {
        path: path.to_path_buf(),
        reason: reason(e),
    }
}

/// Opens `path` for reading; refuses directories and other non-files up front.
pub fn open_regular(path: &Path) -> Result<File, FileError> {
    let file = File::open(path).map_err(|e| read_error(path, &e))?;
    let meta = file.metadata().map_err(|e| read_error(path, &e))?;
    if meta.is_dir() {
        return Err(FileError::Read {
            path: path.to_path_buf(),
            reason: "it is a directory".into(),
        });
    }
    if !meta.is_file() {
        return Err(FileError::Read {
            path: path.to_path_buf(),
            reason: "it is not a regular file".into(),
        });
    }
    Ok(file)
}

/// Reads a whole file of at most `limit` bytes; `what` names it in the error.
pub fn read_limited(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, FileError> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(path, &e))?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            limit,
            what,
        });
    }
    Ok(bytes)
}

/// The largest key file rota reads: rota-keys' limit for its key files, one number.
pub const MAX_KEY_FILE_SIZE: u64 = rota_keys::MAX_KEY_FILE_LEN;

/// Reads a PEM key file as text.
pub fn read_key_file(path: &Path) -> Result<String, FileError> {
    let bytes = read_limited(path, MAX_KEY_FILE_SIZE, "a PEM key file")?;
    String::from_utf8(bytes).map_err(|_| FileError::NotText {
        path: path.to_path_buf(),
    })
}

/// The directory a new file at `path` goes into.
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Fails, naming the directory, when the directory `path` would go into is missing.
fn check_parent(path: &Path) -> Result<(), FileError> {
    let dir = parent_dir(path);
    let create = |reason: String| FileError::Create {
        path: path.to_path_buf(),
        reason,
    };
    match fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(create(format!("{} is not a directory", dir.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(create(format!(
            "directory {} does not exist",
            dir.display()
        ))),
        Err(e) => Err(create(reason(&e))),
    }
}

/// Creates directory `path` (its parent must exist) with permission bits `mode`.
pub fn create_dir(path: &Path, mode: u32) -> Result<(), FileError> {
    check_parent(path)?;
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    builder.create(path).map_err(|e| FileError::Create {
        path: path.to_path_buf(),
        reason: reason(&e),
    })
}

/// Creates `path` with `contents`, failing if it exists; `mode` is the Unix permission
/// bits it is created with (so a private key is never readable by others, even briefly).
/// The file is on disk when this returns; its directory entry is once the directory is
/// synced ([`sync_dir`]).
pub fn create_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    check_parent(path)?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| FileError::Create {
        path: path.to_path_buf(),
        reason: reason(&e),
    })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| FileError::Write {
            path: path.to_path_buf(),
            reason: reason(&e),
        })
}

/// Makes the entries of directory `dir` (files created, renamed or removed in it) durable.
/// A no-op where directories cannot be synced.
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    #[cfg(unix)]
    {
        let synced = File::open(dir).and_then(|d| d.sync_all());
        match synced {
            // Some file systems cannot sync a directory; they have nothing to make durable.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
                ) => {}
            Err(e) => {
                return Err(FileError::Write {
                    path: dir.to_path_buf(),
                    reason: reason(&e),
                });
            }
            Ok(()) => {}
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory, written
/// and synced, then renamed over `path` and the directory synced. Without `overwrite`, an
/// existing `path` is left untouched and reported. The file gets mode 0644 (it is public:
/// metadata, envelopes, images).
pub fn write_atomically(path: &Path, contents: &[u8], overwrite: bool) -> Result<(), FileError> {
    write_atomically_gated(path, contents, overwrite, &mut || Ok(()))
}

/// [`write_atomically`], with `gate` called before each of its two changes to the
/// directory (the temporary file, the rename): an error from it stops the write there,
/// as a power cut would (see `dir::Disk`).
pub(crate) fn write_atomically_gated(
    path: &Path,
    contents: &[u8],
    overwrite: bool,
    gate: &mut dyn FnMut() -> io::Result<()>,
) -> Result<(), FileError> {
    check_parent(path)?;
    let dir = parent_dir(path);
    let write_error = |reason: String| FileError::Write {
        path: path.to_path_buf(),
        reason,
    };
    if !overwrite {
        match fs::symlink_metadata(path) {
            Ok(_) => return Err(write_error("it already exists".into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_error(reason(&e))),
        }
    }
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix)
        .map_err(|e| write_error(format!("cannot name a temporary file: {e}")))?;
    let tmp = dir.join(format!(".rota-{}.tmp", hex::encode(suffix)));
    gate().map_err(|e| write_error(reason(&e)))?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|e| {
        write_error(format!(
            "cannot create a file in {}: {}",
            dir.display(),
            reason(&e)
        ))
    })?;
    let written = file.write_all(contents).and_then(|()| {
        #[cfg(unix)]
        {
            // The public mode whatever the umask, as for every file rota publishes.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o644))?;
        }
        file.sync_all()
    });
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(write_error(reason(&e)));
    }
    // A cut here leaves only the temporary file, which no reader looks at.
    gate().map_err(|e| write_error(reason(&e)))?;
    let placed = {
        if overwrite {
            fs::rename(&tmp, path)
        } else {
            // A hard link fails, atomically, if `path` appeared since it was checked.
            fs::hard_link(&tmp, path).and_then(|()| fs::remove_file(&tmp))
        }
    };
    if let Err(e) = placed {
        let _ = fs::remove_file(&tmp);
        return Err(write_error(reason(&e)));
    }
    sync_dir(&dir)
}
