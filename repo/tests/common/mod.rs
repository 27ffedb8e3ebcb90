//! A small rota repository built through the public API, and its consistent-snapshot
//! layout on disk, shared by the integration tests.

#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rota_repo::{OnlineSigner, RepoKey, RoleKeys, RootParams, RotaTarget, SignedBytes, TargetFile};

pub const DAY: Duration = Duration::from_secs(86400);
pub const CLASS: &str = "1492af14-2569-5e48-bf42-9b2d51f2ab45";
pub const IMAGE: &str = "class-a/fw-1.bin";
pub const ENVELOPE: &str = "class-a/fw-1.suit";

pub fn in_days(days: u64) -> SystemTime {
    SystemTime::now() + DAY * days as u32
}

/// Keys and metadata of a repository: root 2 of 3, one targets key, online keys.
pub struct Repo {
    pub root_keys: Vec<RepoKey>,
    pub targets_key: RepoKey,
    pub online: OnlineSigner,
    /// Every root version, oldest first.
    pub roots: Vec<SignedBytes>,
    pub targets: SignedBytes,
    pub snapshot: SignedBytes,
    pub timestamp: SignedBytes,
    /// Target name and contents.
    pub files: Vec<(String, Vec<u8>)>,
}

pub fn keys(n: usize) -> Vec<RepoKey> {
    (0..n).map(|_| RepoKey::generate().unwrap()).collect()
}

pub fn role(keys: &[RepoKey], threshold: u64) -> RoleKeys {
    RoleKeys::new(keys.iter().map(|k| k.public().clone()).collect(), threshold)
}

pub fn params(
    root_keys: &[RepoKey],
    root_threshold: u64,
    targets_key: &RepoKey,
    online: &OnlineSigner,
) -> RootParams {
    RootParams {
        root: role(root_keys, root_threshold),
        targets: role(std::slice::from_ref(targets_key), 1),
        snapshot: RoleKeys::new(vec![online.snapshot_key().clone()], 1),
        timestamp: RoleKeys::new(vec![online.timestamp_key().clone()], 1),
        expires: in_days(365),
    }
}

/// The image and envelope targets of one firmware release.
pub fn release(image_name: &str, envelope_name: &str, version: u64) -> Vec<(TargetFile, Vec<u8>)> {
    let image = format!("firmware image {version} ")
        .repeat(100)
        .into_bytes();
    let envelope = format!("suit envelope {version}").into_bytes();
    let image_custom = RotaTarget::Image {
        class_id: CLASS.parse().unwrap(),
        version,
        security_version: 1,
        envelope: envelope_name.to_owned(),
    }
    .to_custom();
    let envelope_custom = RotaTarget::Envelope {
        image: image_name.to_owned(),
    }
    .to_custom();
    vec![
        (
            TargetFile::from_bytes(image_name, &image, image_custom),
            image,
        ),
        (
            TargetFile::from_bytes(envelope_name, &envelope, envelope_custom),
            envelope,
        ),
    ]
}

impl Repo {
    /// init -> targets (an image and its envelope) -> snapshot -> timestamp.
    pub fn build() -> Self {
        let root_keys = keys(3);
        let targets_key = RepoKey::generate().unwrap();
        let online = OnlineSigner::new(RepoKey::generate().unwrap(), RepoKey::generate().unwrap());
        let root = rota_repo::init_root(
            &params(&root_keys, 2, &targets_key, &online),
            &[&root_keys[0], &root_keys[2]],
        )
        .unwrap();
        let release = release(IMAGE, ENVELOPE, 1);
        let add: Vec<TargetFile> = release.iter().map(|(t, _)| t.clone()).collect();
        let targets = rota_repo::sign_targets(None, &add, &[&targets_key], in_days(30)).unwrap();
        let snapshot = online.snapshot(&targets.bytes, 1, in_days(7)).unwrap();
        let timestamp = online.timestamp(&snapshot.bytes, 1, in_days(1)).unwrap();
        Repo {
            root_keys,
            targets_key,
            online,
            roots: vec![root],
            targets,
            snapshot,
            timestamp,
            files: release
                .into_iter()
                .map(|(t, bytes)| (t.name, bytes))
                .collect(),
        }
    }

    pub fn root(&self) -> &[u8] {
        &self.roots[0].bytes
    }

    pub fn latest_root(&self) -> &[u8] {
        &self.roots[self.roots.len() - 1].bytes
    }

    /// Writes `dir/metadata/...` and `dir/targets/...` as the server serves them.
    pub fn write(&self, dir: &Path) {
        let metadata = dir.join("metadata");
        fs::create_dir_all(&metadata).unwrap();
        for meta in self
            .roots
            .iter()
            .chain([&self.targets, &self.snapshot, &self.timestamp])
        {
            fs::write(metadata.join(meta.file_name()), &meta.bytes).unwrap();
        }
        let targets = dir.join("targets");
        for (name, bytes) in &self.files {
            let sha256: [u8; 32] = sha256(bytes);
            for path in rota_repo::layout::target_paths(name, &sha256) {
                let path = targets.join(path);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, bytes).unwrap();
            }
        }
    }

    /// Replaces the served timestamp.
    pub fn write_timestamp(dir: &Path, timestamp: &SignedBytes) {
        fs::write(
            dir.join("metadata").join(timestamp.file_name()),
            &timestamp.bytes,
        )
        .unwrap();
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}
