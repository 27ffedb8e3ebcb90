//! `rota repo init` and `rota repo rotate` as a user runs them: the files they write, their
//! modes, their refusals, and metadata the server (rota-repo) accepts.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rota_repo::{OnlineSigner, RepoKey, RootInfo};

mod common;
#[cfg(unix)]
use common::mode;
use common::rota;

fn key(path: &Path) -> RepoKey {
    RepoKey::from_pkcs8_pem(&fs::read_to_string(path).unwrap()).unwrap()
}

fn online(repo: &Path) -> OnlineSigner {
    OnlineSigner::from_pem(
        &fs::read_to_string(repo.join("online/snapshot.key")).unwrap(),
        &fs::read_to_string(repo.join("online/timestamp.key")).unwrap(),
    )
    .unwrap()
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn init_creates_the_keys_the_root_and_the_trust_anchor() {
    let tmp = tempfile::tempdir().unwrap();
    let run = rota(tmp.path(), &["repo", "init", "--dir", "repo"]).ok();
    let repo = tmp.path().join("repo");
    assert_eq!(
        tree(&repo),
        [
            "keys/root-1.key",
            "keys/root-2.key",
            "keys/root-3.key",
            "keys/targets-1.key",
            "metadata/1.root.json",
            "online/snapshot.key",
            "online/timestamp.key",
            "root.json",
        ]
    );
    #[cfg(unix)]
    {
        for key in [
            "keys/root-1.key",
            "keys/root-2.key",
            "keys/root-3.key",
            "keys/targets-1.key",
            "online/snapshot.key",
            "online/timestamp.key",
        ] {
            assert_eq!(mode(&repo.join(key)), 0o600, "{key}");
        }
        assert_eq!(mode(&repo.join("keys")), 0o700);
        assert_eq!(mode(&repo.join("online")), 0o700);
        assert_eq!(mode(&repo.join("root.json")), 0o644);
        assert_eq!(mode(&repo.join("metadata/1.root.json")), 0o644);
    }
    let anchor = fs::read(repo.join("root.json")).unwrap();
    assert_eq!(anchor, fs::read(repo.join("metadata/1.root.json")).unwrap());
    let info = RootInfo::parse(&anchor).unwrap();
    assert_eq!(info.version, 1);
    assert_eq!((info.root.keys.len(), info.root.threshold), (3, 2));
    assert_eq!((info.targets.keys.len(), info.targets.threshold), (1, 1));
    for i in 1..=3 {
        assert!(
            info.root
                .contains(key(&repo.join(format!("keys/root-{i}.key"))).key_id())
        );
    }
    assert!(
        info.targets
            .contains(key(&repo.join("keys/targets-1.key")).key_id())
    );
    online(&repo).check_against_root(&anchor).unwrap();
    let year = SystemTime::now() + Duration::from_secs(365 * 86400);
    let slack = Duration::from_secs(600);
    assert!(info.expires > year - slack && info.expires < year + slack);
    // It tells what it made and what to do next.
    assert!(
        run.stdout.contains("trusted root for devices"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("next:"), "{}", run.stdout);
}

#[test]
fn init_takes_key_counts_thresholds_and_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    rota(
        tmp.path(),
        &[
            "repo",
            "init",
            "--dir",
            "repo",
            "--root-keys",
            "5",
            "--root-threshold",
            "3",
            "--targets-keys",
            "2",
            "--targets-threshold",
            "2",
            "--expires-days",
            "30",
        ],
    )
    .ok();
    let info = RootInfo::parse(&fs::read(repo.join("root.json")).unwrap()).unwrap();
    assert_eq!((info.root.keys.len(), info.root.threshold), (5, 3));
    assert_eq!((info.targets.keys.len(), info.targets.threshold), (2, 2));
    assert!(repo.join("keys/targets-2.key").is_file());
    let month = SystemTime::now() + Duration::from_secs(30 * 86400);
    assert!(info.expires < month + Duration::from_secs(600));
}

#[test]
fn init_refuses_an_existing_repository() {
    let tmp = tempfile::tempdir().unwrap();
    rota(tmp.path(), &["repo", "init", "--dir", "repo"]).ok();
    let repo = tmp.path().join("repo");
    let before = fs::read(repo.join("keys/root-1.key")).unwrap();
    rota(tmp.path(), &["repo", "init", "--dir", "repo"])
        .fails_with("repo already exists and is not empty");
    assert_eq!(fs::read(repo.join("keys/root-1.key")).unwrap(), before);

    // Any non-empty directory, or a file.
    fs::create_dir(tmp.path().join("other")).unwrap();
    fs::write(tmp.path().join("other/notes.txt"), "x").unwrap();
    rota(tmp.path(), &["repo", "init", "--dir", "other"]).fails_with("not empty");
    assert_eq!(tree(&tmp.path().join("other")), ["notes.txt"]);
    rota(tmp.path(), &["repo", "init", "--dir", "other/notes.txt"]).fails_with("not a directory");

    // An empty directory is fine.
    fs::create_dir(tmp.path().join("empty")).unwrap();
    rota(tmp.path(), &["repo", "init", "--dir", "empty"]).ok();
}

#[test]
fn init_refuses_an_impossible_threshold_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    rota(
        tmp.path(),
        &[
            "repo",
            "init",
            "--dir",
            "repo",
            "--root-keys",
            "2",
            "--root-threshold",
            "3",
        ],
    )
    .fails_with("the root role has threshold 3 but 2 keys");
    assert!(!tmp.path().join("repo").exists());
    rota(tmp.path(), &["repo", "init", "--dir", "missing/repo"])
        .fails_with("directory missing does not exist");
}

#[test]
fn rotate_writes_a_root_the_server_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    rota(tmp.path(), &["repo", "init", "--dir", "repo"]).ok();
    let repo = tmp.path().join("repo");
    let anchor = fs::read(repo.join("root.json")).unwrap();
    let old_keys: Vec<String> = (1..=3)
        .map(|i| {
            key(&repo.join(format!("keys/root-{i}.key")))
                .key_id()
                .to_owned()
        })
        .collect();

    let run = rota(tmp.path(), &["repo", "rotate", "--dir", "repo"]).ok();
    assert!(
        run.stdout.contains("wrote root version 2"),
        "{}",
        run.stdout
    );
    let v2 = fs::read(repo.join("metadata/2.root.json")).unwrap();
    let info = rota_repo::verify_root_update(&anchor, &v2, SystemTime::now()).unwrap();
    assert_eq!(info.version, 2);
    assert_eq!((info.root.keys.len(), info.root.threshold), (3, 2));
    for (i, old) in old_keys.iter().enumerate() {
        assert!(!info.root.contains(old));
        // The replaced keys are kept, out of the way.
        let kept = key(&repo.join(format!("keys/old/v1/root-{}.key", i + 1)));
        assert_eq!(kept.key_id(), old);
        let new = key(&repo.join(format!("keys/root-{}.key", i + 1)));
        assert!(info.root.contains(new.key_id()));
        #[cfg(unix)]
        assert_eq!(mode(&repo.join(format!("keys/root-{}.key", i + 1))), 0o600);
    }
    // The trust anchor and the online keys stay.
    assert_eq!(fs::read(repo.join("root.json")).unwrap(), anchor);
    online(&repo).check_against_root(&v2).unwrap();
    assert!(!repo.join("keys/.new-v2").exists());
}

#[test]
fn rotate_again_with_new_online_keys_and_fewer_root_keys() {
    let tmp = tempfile::tempdir().unwrap();
    rota(tmp.path(), &["repo", "init", "--dir", "repo"]).ok();
    rota(tmp.path(), &["repo", "rotate", "--dir", "repo"]).ok();
    let repo = tmp.path().join("repo");
    let old_online = online(&repo);
    rota(
        tmp.path(),
        &[
            "repo",
            "rotate",
            "--dir",
            "repo",
            "--replace-online",
            "--root-keys",
            "2",
            "--root-threshold",
            "1",
        ],
    )
    .ok();
    let read = |name: &str| fs::read(repo.join(name)).unwrap();
    let v2 = read("metadata/2.root.json");
    let v3 = read("metadata/3.root.json");
    let info = rota_repo::verify_root_update(&v2, &v3, SystemTime::now()).unwrap();
    assert_eq!((info.root.keys.len(), info.root.threshold), (2, 1));
    // Devices walk from the shipped root through every version.
    let chain = rota_repo::verify_root_chain(&read("root.json"), &[&v2, &v3]).unwrap();
    assert_eq!(chain.version, 3);
    // New online keys, named by the new root; the old ones kept.
    let new_online = online(&repo);
    new_online.check_against_root(&v3).unwrap();
    assert_ne!(new_online.snapshot_key(), old_online.snapshot_key());
    assert!(old_online.check_against_root(&v3).is_err());
    assert!(repo.join("online/old/v2/snapshot.key").is_file());
    assert!(repo.join("online/old/v2/timestamp.key").is_file());
    assert!(!repo.join("keys/root-3.key").exists());
    assert!(repo.join("keys/old/v2/root-3.key").is_file());
}

#[test]
fn rotate_needs_a_threshold_of_the_current_root_keys() {
    let tmp = tempfile::tempdir().unwrap();
    rota(tmp.path(), &["repo", "init", "--dir", "repo"]).ok();
    let repo = tmp.path().join("repo");
    // Two of the three holders keep their keys elsewhere.
    fs::rename(
        repo.join("keys/root-1.key"),
        tmp.path().join("holder-1.key"),
    )
    .unwrap();
    fs::rename(
        repo.join("keys/root-2.key"),
        tmp.path().join("holder-2.key"),
    )
    .unwrap();
    rota(tmp.path(), &["repo", "rotate", "--dir", "repo"])
        .fails_with("only 1 of the 3 root keys of root version 1 were found (2 are needed");
    assert!(!repo.join("metadata/2.root.json").exists());
    assert!(!repo.join("keys/.new-v2").exists());

    // A key of another role is not a root key.
    rota(
        tmp.path(),
        &[
            "repo",
            "rotate",
            "--dir",
            "repo",
            "--root-key",
            "repo/keys/targets-1.key",
        ],
    )
    .fails_with("is not a root key of root version 1");

    // Named with --root-key, the holders' keys sign.
    rota(
        tmp.path(),
        &[
            "repo",
            "rotate",
            "--dir",
            "repo",
            "--root-key",
            "holder-1.key",
            "--root-key",
            "holder-2.key",
        ],
    )
    .ok();
    let v2 = fs::read(repo.join("metadata/2.root.json")).unwrap();
    rota_repo::verify_root_update(
        &fs::read(repo.join("root.json")).unwrap(),
        &v2,
        SystemTime::now(),
    )
    .unwrap();
}

#[test]
fn rotate_refuses_what_is_not_a_repository() {
    let tmp = tempfile::tempdir().unwrap();
    rota(tmp.path(), &["repo", "rotate", "--dir", "nothing"])
        .fails_with("cannot read nothing/root.json: no such file");

    rota(tmp.path(), &["repo", "init", "--dir", "repo"]).ok();
    let repo = tmp.path().join("repo");
    // A gap in the root versions.
    fs::copy(
        repo.join("metadata/1.root.json"),
        repo.join("metadata/3.root.json"),
    )
    .unwrap();
    rota(tmp.path(), &["repo", "rotate", "--dir", "repo"]).fails_with("2.root.json is missing");
    fs::remove_file(repo.join("metadata/3.root.json")).unwrap();
    // A root version that does not follow from the trusted root.
    fs::write(repo.join("metadata/2.root.json"), "{}").unwrap();
    rota(tmp.path(), &["repo", "rotate", "--dir", "repo"]).fails_with("do not follow from");
}
