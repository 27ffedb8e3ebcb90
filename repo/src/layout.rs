//! Where each file lives in a rota repository, which always uses consistent snapshots
//! (TUF 1.0.34 §6.2): metadata files are named by version, target files by hash, so the
//! server can publish a new snapshot while clients still read the previous one.
//!
//! Relative to the metadata base URL:
//! - `{N}.root.json` for every root version N (clients walk them, TUF 1.0.34 §5.3.3);
//! - `{N}.targets.json`, `{N}.snapshot.json` (TUF 1.0.34 §5.5.1, §5.6.1);
//! - `timestamp.json`, the one unversioned file (TUF 1.0.34 §5.4.1).
//!
//! Relative to the targets base URL, each target under its SHA-256 (TUF 1.0.34 §5.7.3):
//! `{sha256}.{name}`, or `dir/{sha256}.{file}` for a name with directories.
//!
//! The spec allows any listed hash as the prefix; tough always uses SHA-256, and
//! python-tuf uses the first hash listed, which is SHA-256 because rota writes keys in
//! sorted order (`sha256` before `sha512`).
//!
//! For a name with directories, tough 0.24 departs from the spec: it prefixes the hash to
//! the whole name (`{sha256}.dir/file`, tough's `cache.rs`,
//! `Repository::target_digest_and_filename`), where the spec and python-tuf put it on the
//! file name (`dir/{sha256}.file`). [`target_paths`] gives both, and a server serves the
//! same bytes under each.

/// The file name of root metadata version `version`.
pub fn root_file_name(version: u64) -> String {
    format!("{version}.root.json")
}

/// The file name of targets metadata version `version`.
pub fn targets_file_name(version: u64) -> String {
    format!("{version}.targets.json")
}

/// The file name of snapshot metadata version `version`.
pub fn snapshot_file_name(version: u64) -> String {
    format!("{version}.snapshot.json")
}

/// The file name of the timestamp metadata (never versioned).
pub const TIMESTAMP_FILE_NAME: &str = "timestamp.json";

/// The path of target `name` with SHA-256 `sha256` under the targets base URL:
/// `fw.bin` -> `{hex}.fw.bin`, `class/fw.bin` -> `class/{hex}.fw.bin`.
pub fn target_path(name: &str, sha256: &[u8; 32]) -> String {
    let hash = hex::encode(sha256);
    match name.rsplit_once('/') {
        Some((dir, file)) => format!("{dir}/{hash}.{file}"),
        None => format!("{hash}.{name}"),
    }
}

/// Every path under which clients ask for target `name`: [`target_path`] first, then,
/// for a name with directories, the path tough 0.24 asks for (`{sha256}.dir/file`).
pub fn target_paths(name: &str, sha256: &[u8; 32]) -> Vec<String> {
    let mut paths = vec![target_path(name, sha256)];
    if name.contains('/') {
        paths.push(format!("{}.{name}", hex::encode(sha256)));
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(root_file_name(3), "3.root.json");
        assert_eq!(targets_file_name(1), "1.targets.json");
        assert_eq!(snapshot_file_name(12), "12.snapshot.json");
        let hash = [0xab; 32];
        let hex = "ab".repeat(32);
        assert_eq!(target_path("fw.bin", &hash), format!("{hex}.fw.bin"));
        assert_eq!(
            target_path("a/b/fw.bin", &hash),
            format!("a/b/{hex}.fw.bin")
        );
        assert_eq!(target_paths("fw.bin", &hash), vec![format!("{hex}.fw.bin")]);
        assert_eq!(
            target_paths("a/fw.bin", &hash),
            vec![format!("a/{hex}.fw.bin"), format!("{hex}.a/fw.bin")]
        );
    }
}
