//! File access with errors that name the file and say what is wrong in plain words.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rota_manifest::ImageDigest;

/// Chunk size for streaming an image through its digest.
pub const IMAGE_CHUNK: usize = 64 * 1024;

/// The largest envelope rota reads; envelopes are a few hundred bytes, so anything
/// larger is almost certainly an image passed by mistake.
pub const MAX_ENVELOPE_SIZE: u64 = 1024 * 1024;

/// The largest key file rota reads.
const MAX_KEY_FILE_SIZE: u64 = 64 * 1024;

/// `io::Error` in words, without the "(os error N)" suffix for the common cases.
pub fn reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::IsADirectory => "it is a directory".into(),
        io::ErrorKind::AlreadyExists => "it already exists".into(),
        io::ErrorKind::NotADirectory => "a parent is not a directory".into(),
        _ => e.to_string(),
    }
}

/// Opens `path` for reading; refuses directories and other non-files up front.
pub fn open_regular(path: &Path) -> Result<File> {
    let file =
        File::open(path).map_err(|e| anyhow!("cannot read {}: {}", path.display(), reason(&e)))?;
    let meta = file
        .metadata()
        .map_err(|e| anyhow!("cannot read {}: {}", path.display(), reason(&e)))?;
    if meta.is_dir() {
        bail!("cannot read {}: it is a directory", path.display());
    }
    if !meta.is_file() {
        bail!("cannot read {}: it is not a regular file", path.display());
    }
    Ok(file)
}

/// Reads a whole file of at most `limit` bytes; `what` names it in the error.
pub fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow!("cannot read {}: {}", path.display(), reason(&e)))?;
    if bytes.len() as u64 > limit {
        bail!(
            "{} is larger than {} bytes, too large to be {what}",
            path.display(),
            limit
        );
    }
    Ok(bytes)
}

/// Reads a SUIT envelope file.
pub fn read_envelope(path: &Path) -> Result<Vec<u8>> {
    read_limited(path, MAX_ENVELOPE_SIZE, "a SUIT envelope")
}

/// Reads a PEM key file as text.
pub fn read_key_file(path: &Path) -> Result<String> {
    let bytes = read_limited(path, MAX_KEY_FILE_SIZE, "a PEM key file")?;
    String::from_utf8(bytes)
        .map_err(|_| anyhow!("{} is not a PEM key file (it is not text)", path.display()))
}

/// Images at least this large show a progress bar while they are hashed (on a
/// terminal only): at tens of MB/s on a slow host, hashing them takes seconds.
const PROGRESS_FROM: u64 = 32 * 1024 * 1024;

/// Streams `path` through SHA-256, [`IMAGE_CHUNK`] bytes at a time.
pub fn digest_image(path: &Path) -> Result<ImageDigest> {
    let mut file = open_regular(path)?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // indicatif draws only when stderr is a terminal, so scripts see no bar.
    let progress = if len >= PROGRESS_FROM {
        ProgressBar::new(len)
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("hashing {msg} {bar:30} {bytes}/{total_bytes} ({eta})")
            .expect("static template"),
    );
    progress.set_message(path.display().to_string());
    let mut digest = ImageDigest::new();
    let mut buf = vec![0u8; IMAGE_CHUNK];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => bail!("cannot read {}: {}", path.display(), reason(&e)),
        };
        digest.update(&buf[..n]);
        progress.inc(n as u64);
    }
    progress.finish_and_clear();
    Ok(digest)
}

/// Fails when something (a file, a directory, a dangling link) is at `path`.
pub fn refuse_existing(path: &Path, hint: &str) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(_) => bail!("{} already exists; {hint}", path.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => bail!("cannot check {}: {}", path.display(), reason(&e)),
    }
}

/// The directory a new file at `path` goes into.
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Fails, naming the directory, when the directory `path` would go into is missing.
fn check_parent(path: &Path) -> Result<()> {
    let dir = parent_dir(path);
    match fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => bail!(
            "cannot create {}: {} is not a directory",
            path.display(),
            dir.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "cannot create {}: directory {} does not exist",
            path.display(),
            dir.display()
        ),
        Err(e) => bail!("cannot create {}: {}", path.display(), reason(&e)),
    }
}

/// Creates `path` with `contents`, failing if it exists; `mode` is the Unix permission
/// bits it is created with (so a private key is never readable by others, even briefly).
pub fn create_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
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
    let mut file = options
        .open(path)
        .map_err(|e| anyhow!("cannot create {}: {}", path.display(), reason(&e)))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| anyhow!("cannot write {}: {}", path.display(), reason(&e)))
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory,
/// flushed to disk, then renamed over `path`. Without `overwrite`, an existing `path`
/// is left untouched and reported.
pub fn write_atomically(path: &Path, contents: &[u8], overwrite: bool) -> Result<()> {
    check_parent(path)?;
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".rota-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| {
            anyhow!(
                "cannot write {}: cannot create a file in {}: {}",
                path.display(),
                dir.display(),
                reason(&e)
            )
        })?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        // Envelopes are public; tempfile creates files as 0600.
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let persisted = if overwrite {
        tmp.persist(path).map(drop)
    } else {
        // Fails, atomically, if `path` appeared since it was checked.
        tmp.persist_noclobber(path).map(drop)
    };
    persisted.map_err(|e| anyhow!("cannot write {}: {}", path.display(), reason(&e.error)))
}
