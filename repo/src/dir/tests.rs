//! The repository directory's guarantees: init never overwrites and leaves nothing when it
//! fails, the chain reader refuses what devices refuse, and a power cut anywhere in a
//! rotation leaves a repository that the next open makes whole.

use std::time::{Duration, SystemTime};

use super::*;
use crate::OnlineSigner;

fn in_a_year() -> SystemTime {
    SystemTime::now() + Duration::from_secs(365 * 86400)
}

fn init_options() -> InitOptions {
    InitOptions {
        root_keys: 3,
        root_threshold: 2,
        targets_keys: 1,
        targets_threshold: 1,
        expires: in_a_year(),
        given: Default::default(),
    }
}

fn rotate_options(replace_online: bool) -> RotateOptions {
    RotateOptions {
        root_keys: None,
        root_threshold: None,
        root_key_files: Vec::new(),
        replace_online,
        expires: in_a_year(),
        given: Default::default(),
    }
}

/// A new repository at `tmp/repo`.
fn new_repo(tmp: &Path) -> PathBuf {
    let dir = tmp.join("repo");
    RepoDir::init(&dir, &init_options()).unwrap();
    dir
}

/// Every path under `dir`, relative, sorted (directories too).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            out.push(
                path.strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The repository at `dir` is one a release owner can go on with: its chain verifies from
/// `root.json`, `keys/` holds a threshold of the latest root keys, `online/` holds the
/// latest online keys, and no staging directory is left.
#[track_caller]
fn assert_usable(dir: &Path, context: &str) {
    let repo = RepoDir::open(dir).unwrap_or_else(|e| panic!("{context}: cannot open: {e}"));
    assert!(repo.recovered().is_empty(), "{context}: recovered twice");
    // (a) The chain, from the files, as a device walks it.
    let anchor = fs::read(dir.join("root.json")).unwrap();
    let newer: Vec<Vec<u8>> = repo
        .root_chain()
        .newer
        .iter()
        .map(|(v, _)| fs::read(repo.root_metadata_path(*v)).unwrap())
        .collect();
    let newer: Vec<&[u8]> = newer.iter().map(Vec::as_slice).collect();
    let latest = crate::verify_root_chain(&anchor, &newer)
        .unwrap_or_else(|e| panic!("{context}: chain: {e}"));
    // (b) A threshold of the latest root keys, where rotate looks for them.
    let usable = repo
        .role_key_files(RoleName::Root)
        .unwrap()
        .iter()
        .filter(|p| load_key(p).is_ok_and(|k| latest.root.contains(k.key_id())))
        .count();
    assert!(
        usable as u64 >= latest.root.threshold,
        "{context}: only {usable} usable root keys in keys/ for root version {}",
        latest.version
    );
    let online = OnlineSigner::from_pem(
        &fs::read_to_string(dir.join("online/snapshot.key")).unwrap(),
        &fs::read_to_string(dir.join("online/timestamp.key")).unwrap(),
    )
    .unwrap();
    online
        .check_against_root(repo.root_chain().latest_bytes())
        .unwrap_or_else(|e| panic!("{context}: online keys: {e}"));
    // (d) No staging directory.
    for keys in ["keys", "online"] {
        let staged = staging_versions(&dir.join(keys)).unwrap();
        assert!(staged.is_empty(), "{context}: {keys}/.new-v{staged:?} left");
    }
}

#[test]
fn a_cut_at_any_step_of_rotation_leaves_a_usable_repository() {
    for replace_online in [false, true] {
        let mut recoveries = Vec::new();
        let mut k = 0;
        loop {
            let tmp = tempfile::tempdir().unwrap();
            let dir = new_repo(tmp.path());
            let context = format!("replace_online {replace_online}, cut at change {k}");
            let mut repo = RepoDir::open(&dir).unwrap();
            repo.disk = Disk::cut_at(k);
            let result = repo.rotate(&rotate_options(replace_online));
            let cut = repo.disk.was_cut();
            drop(repo);
            if !cut {
                result.unwrap_or_else(|e| panic!("{context}: {e}"));
                assert_usable(&dir, &context);
                break;
            }
            assert!(result.is_err(), "{context}: a cut change went unnoticed");

            // The next command opens the repository normally and goes on.
            let mut repo =
                RepoDir::open(&dir).unwrap_or_else(|e| panic!("{context}: cannot open: {e}"));
            assert!(repo.recovered().len() <= 1, "{context}");
            recoveries.extend(repo.recovered().iter().copied());
            assert!(
                repo.root_chain().latest.version <= 2,
                "{context}: a version too many"
            );
            drop(repo);
            assert_usable(&dir, &context);
            // (c) A further rotation succeeds.
            repo = RepoDir::open(&dir).unwrap();
            let rotated = repo
                .rotate(&rotate_options(replace_online))
                .unwrap_or_else(|e| panic!("{context}: the next rotation: {e}"));
            assert_eq!(rotated.version, repo.root_chain().latest.version);
            assert_usable(&dir, &format!("{context}, rotated again"));

            k += 1;
            assert!(k < 200, "a rotation should not take {k} changes");
        }
        // The sweep went through both sides of the commit.
        assert!(recoveries.contains(&Recovery::Undone { version: 2 }));
        assert!(recoveries.contains(&Recovery::Finished { version: 2 }));
    }
}

#[test]
fn rotation_archives_the_replaced_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = new_repo(tmp.path());
    let mut repo = RepoDir::open(&dir).unwrap();
    let old = fs::read(dir.join("keys/root-1.key")).unwrap();
    let old_online = fs::read(dir.join("online/snapshot.key")).unwrap();
    let rotated = repo.rotate(&rotate_options(true)).unwrap();
    assert_eq!(rotated.version, 2);
    assert_eq!(rotated.archived_root_keys, Some(dir.join("keys/old/v1")));
    assert_eq!(
        rotated.archived_online_keys,
        Some(dir.join("online/old/v1"))
    );
    assert_eq!(fs::read(dir.join("keys/old/v1/root-1.key")).unwrap(), old);
    assert_eq!(
        fs::read(dir.join("online/old/v1/snapshot.key")).unwrap(),
        old_online
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("keys/root-1.key"), 0o600);
        assert_eq!(mode("keys/old"), 0o700);
        assert_eq!(mode("keys/old/v1"), 0o700);
        assert_eq!(mode("online/old/v1"), 0o700);
        assert_eq!(mode("metadata/2.root.json"), 0o644);
    }
    assert_usable(&dir, "after one rotation");
}

#[test]
fn init_refuses_a_directory_that_is_not_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("notes.txt"), "x").unwrap();
    let err = RepoDir::init(&dir, &init_options()).unwrap_err();
    assert!(matches!(err, DirError::NotEmpty { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("repo already exists and is not empty")
    );
    assert_eq!(tree(&dir), ["notes.txt"]);

    let err = RepoDir::init(&dir.join("notes.txt"), &init_options()).unwrap_err();
    assert!(matches!(err, DirError::NotADirectory { .. }), "{err}");

    // A repository is not empty either.
    fs::create_dir(tmp.path().join("new")).unwrap();
    let repo = new_repo(&tmp.path().join("new"));
    let before = fs::read(repo.join("keys/root-1.key")).unwrap();
    RepoDir::init(&repo, &init_options()).unwrap_err();
    assert_eq!(fs::read(repo.join("keys/root-1.key")).unwrap(), before);
}

#[test]
fn init_removes_what_it_created_when_it_fails() {
    for existing in [false, true] {
        let mut k = 0;
        loop {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("repo");
            if existing {
                fs::create_dir(&dir).unwrap();
            }
            let disk = Disk::fault_at(k);
            match RepoDir::init_on(&dir, &init_options(), disk) {
                Ok(init) => {
                    assert!(!init.repo.disk.was_cut());
                    break;
                }
                Err(e) => {
                    let context = format!("existing {existing}, fault at change {k}: {e}");
                    if existing {
                        assert!(tree(&dir).is_empty(), "{context}: left {:?}", tree(&dir));
                    } else {
                        assert!(!dir.exists(), "{context}: left {:?}", tree(&dir));
                    }
                }
            }
            k += 1;
            assert!(k < 100);
        }
    }

    // Refused before anything is written.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let impossible = InitOptions {
        root_keys: 2,
        root_threshold: 3,
        ..init_options()
    };
    let err = RepoDir::init(&dir, &impossible).unwrap_err();
    assert!(matches!(err, DirError::CreateRoot(_)), "{err}");
    assert!(!dir.exists());
    let err = RepoDir::init(&tmp.path().join("missing/repo"), &init_options()).unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");
    assert!(err.to_string().contains("missing does not exist"), "{err}");
}

#[test]
fn the_chain_reader_refuses_a_gap_in_root_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = new_repo(tmp.path());
    fs::copy(
        dir.join("metadata/1.root.json"),
        dir.join("metadata/3.root.json"),
    )
    .unwrap();
    let err = RepoDir::open(&dir).unwrap_err();
    match &err {
        DirError::MissingRootVersion { missing, .. } => {
            assert_eq!(missing, &dir.join("metadata/2.root.json"))
        }
        _ => panic!("{err}"),
    }
    // A name rota does not write is not a version.
    fs::rename(
        dir.join("metadata/3.root.json"),
        dir.join("metadata/02.root.json"),
    )
    .unwrap();
    RepoDir::open(&dir).unwrap();
}

#[test]
fn the_chain_reader_refuses_a_root_larger_than_devices_download() {
    let limit = crate::max_metadata_len(RoleName::Root);
    let tmp = tempfile::tempdir().unwrap();
    let dir = new_repo(tmp.path());
    let huge = vec![b' '; usize::try_from(limit).unwrap() + 1];
    fs::write(dir.join("metadata/2.root.json"), &huge).unwrap();
    let err = RepoDir::open(&dir).unwrap_err();
    assert!(
        matches!(err, DirError::File(FileError::TooLarge { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("2.root.json is larger than"),
        "{err}"
    );

    fs::remove_file(dir.join("metadata/2.root.json")).unwrap();
    fs::write(dir.join("root.json"), &huge).unwrap();
    let err = RepoDir::open(&dir).unwrap_err();
    assert!(
        matches!(err, DirError::File(FileError::TooLarge { .. })),
        "{err}"
    );
}

#[test]
fn the_chain_reader_refuses_a_root_that_does_not_follow() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = new_repo(tmp.path());
    fs::write(dir.join("metadata/2.root.json"), "{}").unwrap();
    let err = RepoDir::open(&dir).unwrap_err();
    assert!(matches!(err, DirError::BrokenChain { .. }), "{err}");
    assert!(err.to_string().contains("do not follow from"), "{err}");

    // Nor a repository at all, nor a trusted root that is not one.
    let err = RepoDir::open(&tmp.path().join("nothing")).unwrap_err();
    assert!(err.to_string().contains("root.json: no such file"), "{err}");
    fs::write(dir.join("root.json"), "{}").unwrap();
    let err = RepoDir::open(&dir).unwrap_err();
    assert!(matches!(err, DirError::InvalidAnchor { .. }), "{err}");
}

#[test]
fn open_refuses_staged_keys_of_an_older_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = new_repo(tmp.path());
    let mut repo = RepoDir::open(&dir).unwrap();
    repo.rotate(&rotate_options(false)).unwrap();
    repo.rotate(&rotate_options(false)).unwrap();
    fs::create_dir(dir.join("keys/.new-v2")).unwrap();
    let err = RepoDir::open(&dir).unwrap_err();
    assert!(
        matches!(
            err,
            DirError::StrayStaging {
                version: 2,
                latest: 3,
                ..
            }
        ),
        "{err}"
    );
    // Nothing was touched.
    assert!(dir.join("keys/.new-v2").is_dir());
}

#[test]
fn signing_keys_must_be_the_latest_roots_and_meet_its_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = new_repo(tmp.path());
    let repo = RepoDir::open(&dir).unwrap();
    assert_eq!(repo.targets_keys(&[]).unwrap().len(), 1);
    let err = repo
        .targets_keys(&[dir.join("keys/root-1.key").into()])
        .unwrap_err();
    assert!(
        matches!(
            err,
            DirError::NotARoleKey {
                role: RoleName::Targets,
                version: 1,
                ..
            }
        ),
        "{err}"
    );
    fs::remove_file(dir.join("keys/targets-1.key")).unwrap();
    let err = repo.targets_keys(&[]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("only 0 of the 1 targets keys of root version 1 were found (1 must sign)"),
        "{err}"
    );

    // Rotation needs a threshold of the current root keys; a key counts once.
    let mut repo = repo;
    let one = dir.join("keys/root-1.key");
    let options = RotateOptions {
        root_key_files: vec![one.clone().into(), one.into()],
        ..rotate_options(false)
    };
    let err = repo.rotate(&options).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "only 1 of the 3 root keys of root version 1 were found (2 are needed to sign the next version)"
        ),
        "{err}"
    );
    assert!(!dir.join("keys/.new-v2").exists());
    assert!(!dir.join("metadata/2.root.json").exists());
}
