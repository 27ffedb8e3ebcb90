//! File access with errors that name the file and say what is wrong in plain words.
//!
//! The helpers rota-repo's repository directory writes with are rota-repo's
//! (`rota_repo::files`), so every file rota writes is written one way: bounded reads, new
//! files created with their mode, atomic replacement (temporary file, fsync, rename,
//! directory fsync). What only the CLI reads (envelopes, images) is here.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rota_manifest::ImageDigest;

pub use rota_repo::files::reason;

/// Chunk size for streaming an image through its digest.
pub const IMAGE_CHUNK: usize = 64 * 1024;

/// The largest envelope rota reads; envelopes are a few hundred bytes, so anything
/// larger is almost certainly an image passed by mistake.
pub const MAX_ENVELOPE_SIZE: u64 = 1024 * 1024;

/// Opens `path` for reading; refuses directories and other non-files up front.
pub fn open_regular(path: &Path) -> Result<fs::File> {
    Ok(rota_repo::files::open_regular(path)?)
}

/// Reads a whole file of at most `limit` bytes; `what` names it in the error.
pub fn read_limited(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>> {
    Ok(rota_repo::files::read_limited(path, limit, what)?)
}

/// Reads a SUIT envelope file.
pub fn read_envelope(path: &Path) -> Result<Vec<u8>> {
    read_limited(path, MAX_ENVELOPE_SIZE, "a SUIT envelope")
}

/// Reads a PEM key file as text.
pub fn read_key_file(path: &Path) -> Result<String> {
    Ok(rota_repo::files::read_key_file(path)?)
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

/// Creates `path` with `contents`, failing if it exists; `mode` is the Unix permission
/// bits it is created with (so a private key is never readable by others, even briefly).
pub fn create_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    Ok(rota_repo::files::create_new(path, contents, mode)?)
}

/// Writes `contents` to `path` atomically, mode 0644. Without `overwrite`, an existing
/// `path` is left untouched and reported.
pub fn write_atomically(path: &Path, contents: &[u8], overwrite: bool) -> Result<()> {
    Ok(rota_repo::files::write_atomically(
        path, contents, overwrite,
    )?)
}
