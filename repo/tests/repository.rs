//! A whole repository built with rota-repo, loaded by tough's client, and the attacks the
//! server's checks and the client must refuse.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{ENVELOPE, IMAGE, Repo, in_days, keys, params, release};
use rota_repo::tough::{self, RepositoryLoader, TargetName};
use rota_repo::{
    Error, OnlineSigner, RepoKey, RotaTarget, TargetFile, cross_sign_root, rotate_root,
    sign_targets, verify_cross_signed_root, verify_root_update, verify_targets_upload,
};
use serde_json::{Value, json};

fn dir_url(dir: &Path) -> url::Url {
    url::Url::from_directory_path(dir).unwrap()
}

/// Loads the repository written under `dir` with tough, trusting `root`.
async fn load(
    dir: &Path,
    root: &[u8],
    datastore: Option<&Path>,
) -> Result<tough::Repository, tough::error::Error> {
    let mut loader = RepositoryLoader::new(
        &root,
        dir_url(&dir.join("metadata")),
        dir_url(&dir.join("targets")),
    );
    if let Some(datastore) = datastore {
        loader = loader.datastore(datastore);
    }
    loader.load().await
}

async fn read_target(repo: &tough::Repository, name: &str) -> Vec<u8> {
    use tough::IntoVec as _;
    repo.read_target(&TargetName::new(name).unwrap())
        .await
        .unwrap()
        .expect("target is listed")
        .into_vec()
        .await
        .unwrap()
}

#[tokio::test]
async fn tough_client_loads_the_repository_and_fetches_targets() {
    let repo = Repo::build();
    let dir = tempfile::tempdir().unwrap();
    repo.write(dir.path());

    let client = load(dir.path(), repo.root(), None).await.unwrap();
    assert_eq!(client.root().signed.version.get(), 1);
    assert!(client.root().signed.consistent_snapshot);
    assert_eq!(client.targets().signed.version.get(), 1);
    for (name, bytes) in &repo.files {
        assert_eq!(&read_target(&client, name).await, bytes, "{name}");
    }
    // rota's custom field reaches the client as written.
    let (_, image) = client
        .all_targets()
        .find(|(name, _)| name.raw() == IMAGE)
        .unwrap();
    let custom = Value::Object(image.custom.clone().into_iter().collect());
    assert!(matches!(
        RotaTarget::from_custom(&custom).unwrap(),
        Some(RotaTarget::Image { envelope, version: 1, .. }) if envelope == ENVELOPE
    ));
}

#[test]
fn upload_is_verified_and_reports_new_targets() {
    let repo = Repo::build();
    let now = SystemTime::now();
    let first = verify_targets_upload(repo.root(), None, &repo.targets.bytes, now).unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.added, vec![IMAGE.to_owned(), ENVELOPE.to_owned()]);
    let image = &first.targets[0];
    assert_eq!(image.name, IMAGE);
    assert_eq!(image.length, repo.files[0].1.len() as u64);
    assert!(image.sha512.is_some());
    assert!(image.path().starts_with("class-a/"), "{}", image.path());
    assert!(matches!(image.rota, Some(RotaTarget::Image { .. })));

    let add: Vec<TargetFile> = release("class-a/fw-2.bin", "class-a/fw-2.suit", 2)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let second = sign_targets(
        Some(&repo.targets.bytes),
        &add,
        &[&repo.targets_key],
        in_days(30),
    )
    .unwrap();
    assert_eq!(second.version, 2);
    let verified =
        verify_targets_upload(repo.root(), Some(&repo.targets.bytes), &second.bytes, now).unwrap();
    assert_eq!(verified.targets.len(), 4);
    assert_eq!(
        verified.added,
        vec![
            "class-a/fw-2.bin".to_owned(),
            "class-a/fw-2.suit".to_owned()
        ]
    );
}

#[test]
fn targets_signed_by_a_key_the_root_does_not_trust_are_refused() {
    let repo = Repo::build();
    let stranger = RepoKey::generate().unwrap();
    let add: Vec<TargetFile> = release(IMAGE, ENVELOPE, 1)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let forged = sign_targets(None, &add, &[&stranger], in_days(30)).unwrap();
    let err =
        verify_targets_upload(repo.root(), None, &forged.bytes, SystemTime::now()).unwrap_err();
    assert!(matches!(err, Error::Signatures { .. }), "{err}");
    // An online key is not a targets key either: a compromised server cannot list targets.
    let online_key =
        RepoKey::from_pkcs8_pem(&RepoKey::generate().unwrap().to_pkcs8_pem().unwrap()).unwrap();
    let forged = sign_targets(None, &add, &[&online_key], in_days(30)).unwrap();
    assert!(verify_targets_upload(repo.root(), None, &forged.bytes, SystemTime::now()).is_err());
}

#[test]
fn tampered_targets_are_refused() {
    let repo = Repo::build();
    let text = String::from_utf8(repo.targets.bytes.clone()).unwrap();
    let length = repo.files[0].1.len();
    let tampered = text.replacen(
        &format!("\"length\": {length}"),
        &format!("\"length\": {}", length + 1),
        1,
    );
    assert_ne!(tampered, text);
    let err = verify_targets_upload(repo.root(), None, tampered.as_bytes(), SystemTime::now())
        .unwrap_err();
    assert!(matches!(err, Error::Signatures { .. }), "{err}");
}

#[test]
fn a_threshold_is_not_met_by_one_key_signing_twice() {
    // A root whose targets role needs 2 of 2 keys.
    let root_keys = keys(1);
    let targets_keys = keys(2);
    let online = OnlineSigner::new(RepoKey::generate().unwrap(), RepoKey::generate().unwrap());
    let mut p = params(&root_keys, 1, &targets_keys[0], &online);
    p.targets = common::role(&targets_keys, 2);
    let root = rota_repo::init_root(&p, &[&root_keys[0]]).unwrap();
    let add: Vec<TargetFile> = release(IMAGE, ENVELOPE, 1)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let now = SystemTime::now();

    let one = sign_targets(None, &add, &[&targets_keys[0]], in_days(30)).unwrap();
    let err = verify_targets_upload(&root.bytes, None, &one.bytes, now).unwrap_err();
    assert!(matches!(err, Error::Signatures { .. }), "{err}");

    // The same signature listed twice (TUF 1.0.34 §4.2: a key id appears at most once).
    let mut doubled: Value = serde_json::from_slice(&one.bytes).unwrap();
    let signature = doubled["signatures"][0].clone();
    doubled["signatures"]
        .as_array_mut()
        .unwrap()
        .push(signature);
    let doubled = serde_json::to_vec(&doubled).unwrap();
    assert!(verify_targets_upload(&root.bytes, None, &doubled, now).is_err());

    let both = sign_targets(
        None,
        &add,
        &[&targets_keys[0], &targets_keys[1]],
        in_days(30),
    )
    .unwrap();
    verify_targets_upload(&root.bytes, None, &both.bytes, now).unwrap();
}

#[test]
fn targets_version_must_increase() {
    let repo = Repo::build();
    let now = SystemTime::now();
    // The same version again (a replay of the current targets).
    let err = verify_targets_upload(
        repo.root(),
        Some(&repo.targets.bytes),
        &repo.targets.bytes,
        now,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::VersionNotIncreasing {
                current: 1,
                version: 1,
                ..
            }
        ),
        "{err}"
    );
    // An older version after a newer one.
    let newer = sign_targets(
        Some(&repo.targets.bytes),
        &[],
        &[&repo.targets_key],
        in_days(30),
    )
    .unwrap();
    let err = verify_targets_upload(repo.root(), Some(&newer.bytes), &repo.targets.bytes, now)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::VersionNotIncreasing {
                current: 2,
                version: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn expired_targets_are_refused() {
    let repo = Repo::build();
    let add: Vec<TargetFile> = release(IMAGE, ENVELOPE, 1)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let expired = sign_targets(
        None,
        &add,
        &[&repo.targets_key],
        SystemTime::now() - Duration::from_secs(60),
    )
    .unwrap();
    let err =
        verify_targets_upload(repo.root(), None, &expired.bytes, SystemTime::now()).unwrap_err();
    assert!(matches!(err, Error::Expired { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("the targets metadata version 1 expired at ")
    );
}

#[test]
fn a_published_target_keeps_its_content() {
    let repo = Repo::build();
    let mut changed = release(IMAGE, ENVELOPE, 1);
    changed[0].0 = TargetFile::from_bytes(IMAGE, b"other bytes", changed[0].0.custom.clone());
    let err = sign_targets(
        Some(&repo.targets.bytes),
        &[changed[0].0.clone()],
        &[&repo.targets_key],
        in_days(30),
    )
    .unwrap_err();
    assert!(matches!(err, Error::TargetChanged { .. }), "{err}");

    // The same change made from scratch and uploaded as the next version.
    let add: Vec<TargetFile> = changed.into_iter().map(|(t, _)| t).collect();
    let other_v1 = sign_targets(None, &add, &[&repo.targets_key], in_days(30)).unwrap();
    let v2 = sign_targets(
        Some(&other_v1.bytes),
        &[],
        &[&repo.targets_key],
        in_days(30),
    )
    .unwrap();
    let err = verify_targets_upload(
        repo.root(),
        Some(&repo.targets.bytes),
        &v2.bytes,
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::TargetChanged { .. }), "{err}");
    // Re-adding identical targets is no change.
    let add: Vec<TargetFile> = release(IMAGE, ENVELOPE, 1)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let v2 = sign_targets(
        Some(&repo.targets.bytes),
        &add,
        &[&repo.targets_key],
        in_days(30),
    )
    .unwrap();
    let verified = verify_targets_upload(
        repo.root(),
        Some(&repo.targets.bytes),
        &v2.bytes,
        SystemTime::now(),
    )
    .unwrap();
    assert!(verified.added.is_empty());
}

#[test]
fn rota_images_and_envelopes_must_name_each_other() {
    let repo = Repo::build();
    let release = release(IMAGE, ENVELOPE, 1);
    let image_only = [release[0].0.clone()];
    let err = sign_targets(None, &image_only, &[&repo.targets_key], in_days(30)).unwrap_err();
    assert!(matches!(err, Error::TargetLink { .. }), "{err}");
    let mut wrong = release[1].0.clone();
    wrong.custom = json!({"rota": {"kind": "envelope", "image": "class-a/other.bin"}});
    let err = sign_targets(
        None,
        &[release[0].0.clone(), wrong],
        &[&repo.targets_key],
        in_days(30),
    )
    .unwrap_err();
    assert!(matches!(err, Error::TargetLink { .. }), "{err}");
    let mut bad_custom = release[1].0.clone();
    bad_custom.custom = json!({"rota": {"kind": "envelope"}});
    let err = sign_targets(None, &[bad_custom], &[&repo.targets_key], in_days(30)).unwrap_err();
    assert!(matches!(err, Error::TargetCustom { .. }), "{err}");
    let unsafe_name = TargetFile::from_bytes("../etc/passwd", b"x", Value::Null);
    let err = sign_targets(None, &[unsafe_name], &[&repo.targets_key], in_days(30)).unwrap_err();
    assert!(matches!(err, Error::TargetName { .. }), "{err}");
    // Canonical JSON has no floating-point numbers.
    let float = TargetFile::from_bytes("x.bin", b"x", json!({"ratio": 0.5}));
    let err = sign_targets(None, &[float], &[&repo.targets_key], in_days(30)).unwrap_err();
    assert!(matches!(err, Error::Canonical { .. }), "{err}");
}

#[test]
fn metadata_of_another_type_or_with_unknown_fields_is_refused() {
    let repo = Repo::build();
    let now = SystemTime::now();
    let err = verify_targets_upload(repo.root(), None, &repo.timestamp.bytes, now).unwrap_err();
    assert!(matches!(err, Error::WrongType { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "expected targets metadata, but its \"_type\" is \"timestamp\""
    );
    let err =
        verify_targets_upload(&repo.targets.bytes, None, &repo.targets.bytes, now).unwrap_err();
    assert!(matches!(err, Error::WrongType { .. }), "{err}");

    let mut extra: Value = serde_json::from_slice(&repo.targets.bytes).unwrap();
    extra["signed"]["targets"][IMAGE]["mode"] = json!(493);
    let err = verify_targets_upload(repo.root(), None, &serde_json::to_vec(&extra).unwrap(), now)
        .unwrap_err();
    assert!(matches!(err, Error::UnknownField { .. }), "{err}");

    // Duplicate keys: the first "length" would be signed, a lenient parser keeps the last.
    let text = String::from_utf8(repo.targets.bytes.clone()).unwrap();
    let dup = text.replacen("\"length\": ", "\"length\": 1, \"length\": ", 1);
    let err = verify_targets_upload(repo.root(), None, dup.as_bytes(), now).unwrap_err();
    assert!(matches!(err, Error::Parse { .. }), "{err}");
    assert!(err.to_string().contains("appears twice"), "{err}");
}

#[test]
fn metadata_files_are_deterministic_and_list_sha256_first() {
    let repo = Repo::build();
    let add: Vec<TargetFile> = release(IMAGE, ENVELOPE, 1)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let again = sign_targets(None, &add, &[&repo.targets_key], repo.targets.expires).unwrap();
    assert_eq!(again.bytes, repo.targets.bytes);
    let text = String::from_utf8(repo.targets.bytes.clone()).unwrap();
    let sha256 = text.find("\"sha256\"").unwrap();
    let sha512 = text.find("\"sha512\"").unwrap();
    assert!(
        sha256 < sha512,
        "python-tuf names a target by its first hash"
    );
    assert!(text.contains("\"spec_version\": \"1.0.34\""));
    let expires = rota_repo::tuf_date_time(repo.targets.expires).unwrap();
    assert!(
        text.contains(&format!("\"expires\": \"{expires}\"")),
        "{text}"
    );
}

#[test]
fn root_rotation_is_signed_by_old_and_new_thresholds() {
    let repo = Repo::build();
    let new_keys = keys(3);
    let p = params(&new_keys, 2, &repo.targets_key, &repo.online);
    let old: Vec<&RepoKey> = repo.root_keys.iter().take(2).collect();
    let new: Vec<&RepoKey> = new_keys.iter().skip(1).collect();
    let v2 = rotate_root(repo.root(), &p, &old, &new).unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.file_name(), "2.root.json");
    let info = verify_root_update(repo.root(), &v2.bytes, SystemTime::now()).unwrap();
    assert_eq!(info.version, 2);
    assert_eq!(info.root.threshold, 2);
    assert!(info.root.contains(new_keys[0].key_id()));
    assert!(!info.root.contains(repo.root_keys[0].key_id()));

    // rotate_root refuses to make a rotation that lacks either threshold.
    let err = rotate_root(repo.root(), &p, &old[..1], &new).unwrap_err();
    assert!(matches!(err, Error::TooFewSigners { .. }), "{err}");
    let err = rotate_root(repo.root(), &p, &old, &[]).unwrap_err();
    assert!(matches!(err, Error::TooFewSigners { .. }), "{err}");
    let err = rotate_root(repo.root(), &p, &new, &new).unwrap_err();
    assert!(matches!(err, Error::NotARoleKey { .. }), "{err}");

    // Signatures removed from a valid rotation, as an attacker holding only one side would.
    let without = |ids: &[&str]| {
        let mut root: Value = serde_json::from_slice(&v2.bytes).unwrap();
        root["signatures"]
            .as_array_mut()
            .unwrap()
            .retain(|s| !ids.contains(&s["keyid"].as_str().unwrap()));
        serde_json::to_vec(&root).unwrap()
    };
    let new_ids: Vec<&str> = new_keys.iter().map(|k| k.key_id()).collect();
    let old_ids: Vec<&str> = repo.root_keys.iter().map(|k| k.key_id()).collect();
    let err = verify_root_update(repo.root(), &without(&new_ids), SystemTime::now()).unwrap_err();
    assert!(
        matches!(err, Error::RootNotSelfSigned { version: 2 }),
        "{err}"
    );
    let err = verify_root_update(repo.root(), &without(&old_ids), SystemTime::now()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::RootNotSignedByTrusted {
                version: 2,
                trusted: 1
            }
        ),
        "{err}"
    );
    // Only one old key left: below the old threshold of 2.
    let err =
        verify_root_update(repo.root(), &without(&old_ids[..1]), SystemTime::now()).unwrap_err();
    assert!(matches!(err, Error::RootNotSignedByTrusted { .. }), "{err}");
}

#[test]
fn root_versions_must_follow_one_another() {
    let repo = Repo::build();
    // Keep the same root keys so that only the version is wrong.
    let p = params(&repo.root_keys, 2, &repo.targets_key, &repo.online);
    let signers: Vec<&RepoKey> = repo.root_keys.iter().collect();
    let v2 = rotate_root(repo.root(), &p, &signers, &signers).unwrap();
    let v3 = rotate_root(&v2.bytes, &p, &signers, &signers).unwrap();
    let now = SystemTime::now();
    verify_root_update(&v2.bytes, &v3.bytes, now).unwrap();
    let err = verify_root_update(repo.root(), &v3.bytes, now).unwrap_err();
    assert!(
        matches!(
            err,
            Error::RootVersion {
                trusted: 1,
                version: 3
            }
        ),
        "{err}"
    );
    let err = verify_root_update(&v2.bytes, repo.root(), now).unwrap_err();
    assert!(
        matches!(
            err,
            Error::RootVersion {
                trusted: 2,
                version: 1
            }
        ),
        "{err}"
    );
    let err = verify_root_update(&v2.bytes, &v3.bytes, in_days(400)).unwrap_err();
    assert!(matches!(err, Error::Expired { .. }), "{err}");
    // A whole chain, as a device walks it from the root it shipped with.
    let info = rota_repo::verify_root_chain(repo.root(), &[&v2.bytes, &v3.bytes]).unwrap();
    assert_eq!(info.version, 3);
    assert_eq!(
        rota_repo::verify_root_chain(repo.root(), &[])
            .unwrap()
            .version,
        1
    );
    let err = rota_repo::verify_root_chain(repo.root(), &[&v3.bytes]).unwrap_err();
    assert!(matches!(err, Error::RootVersion { .. }), "{err}");
}

/// `bytes` followed by JSON whitespace up to `len` bytes: the same metadata under the same
/// signatures (they cover the canonical form of `signed`), only longer.
fn padded(bytes: &[u8], len: u64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.resize(usize::try_from(len).unwrap(), b' ');
    out
}

/// A device's metadata server holding only `2.root.json` (as `rota_tuf::HttpFetcher`, it
/// refuses a body longer than the limit it is given).
struct NextRoot(Vec<u8>);

impl rota_tuf::Fetch for NextRoot {
    fn fetch(&self, url: &str, max_len: u64) -> Result<Vec<u8>, rota_tuf::FetchError> {
        match url.ends_with("/2.root.json") {
            true if self.0.len() as u64 > max_len => Err(rota_tuf::FetchError::TooLarge),
            true => Ok(self.0.clone()),
            false => Err(rota_tuf::FetchError::NotFound),
        }
    }
}

/// One set of limits for both ends (`rota_tuf::limits`): the server accepted roots up to
/// 1 MiB and targets up to 10 MiB while devices refuse more than 512,000 and 5,000,000
/// bytes, so it could publish metadata every device refuses. Now metadata at the limit is
/// accepted by the repository and loads on a device; one byte more is refused by both.
#[test]
fn the_server_accepts_no_metadata_larger_than_devices_download() {
    use rota_tuf::limits::{ROOT_MAX, TARGETS_MAX};
    let repo = Repo::build();
    let p = params(&repo.root_keys, 2, &repo.targets_key, &repo.online);
    let signers: Vec<&RepoKey> = repo.root_keys.iter().collect();
    let v2 = rotate_root(repo.root(), &p, &signers, &signers).unwrap();
    let now = SystemTime::now();

    // The repository (the server's upload checks).
    verify_root_update(repo.root(), &padded(&v2.bytes, ROOT_MAX), now).unwrap();
    let err = verify_root_update(repo.root(), &padded(&v2.bytes, ROOT_MAX + 1), now).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                limit: ROOT_MAX,
                ..
            }
        ),
        "{err}"
    );
    let targets = |len| padded(&repo.targets.bytes, len);
    verify_targets_upload(repo.root(), None, &targets(TARGETS_MAX), now).unwrap();
    let err = verify_targets_upload(repo.root(), None, &targets(TARGETS_MAX + 1), now).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                limit: TARGETS_MAX,
                ..
            }
        ),
        "{err}"
    );

    // The device (rota-tuf with its default limits): it rotates to the root at the limit,
    // then stops at the missing timestamp; one byte more is refused.
    let rotate = |root_v2: Vec<u8>| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.json"), repo.root()).unwrap();
        let config = rota_tuf::Config::new("https://repo.test/metadata/", "https://repo.test/t/");
        let mut client = rota_tuf::Client::new(dir.path(), config, NextRoot(root_v2), now).unwrap();
        let result = client.refresh();
        (result, client.trusted_root_version())
    };
    let (result, version) = rotate(padded(&v2.bytes, ROOT_MAX));
    assert!(
        matches!(&result, Err(rota_tuf::Error::NotFound { url }) if url.ends_with("timestamp.json")),
        "{result:?}"
    );
    assert_eq!(version, 2);
    let (result, version) = rotate(padded(&v2.bytes, ROOT_MAX + 1));
    assert!(
        matches!(
            result,
            Err(rota_tuf::Error::TooLarge {
                limit: ROOT_MAX,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(version, 1);
}

#[test]
fn roots_that_break_rotas_rules_are_refused() {
    let keys3 = keys(3);
    let targets_key = RepoKey::generate().unwrap();
    let online = OnlineSigner::new(RepoKey::generate().unwrap(), RepoKey::generate().unwrap());
    let signers: Vec<&RepoKey> = keys3.iter().collect();
    let mut p = params(&keys3, 4, &targets_key, &online);
    let err = rota_repo::init_root(&p, &signers).unwrap_err();
    assert!(matches!(err, Error::RoleKeys { .. }), "{err}");
    p.root.threshold = 0;
    assert!(rota_repo::init_root(&p, &signers).is_err());
    // An online key that is also an offline key.
    let mut p = params(&keys3, 2, &targets_key, &online);
    p.snapshot = common::role(std::slice::from_ref(&targets_key), 1);
    let err = rota_repo::init_root(&p, &signers).unwrap_err();
    assert!(matches!(err, Error::OfflineKeyOnline { .. }), "{err}");
    // Too few root signers, or a stranger.
    let p = params(&keys3, 2, &targets_key, &online);
    let err = rota_repo::init_root(&p, &signers[..1]).unwrap_err();
    assert!(matches!(err, Error::TooFewSigners { .. }), "{err}");
    let err = rota_repo::init_root(&p, &[&keys3[0], &targets_key]).unwrap_err();
    assert!(matches!(err, Error::NotARoleKey { .. }), "{err}");
    // consistent_snapshot off: rota's layout would not match.
    let root = rota_repo::init_root(&p, &signers).unwrap();
    let text = String::from_utf8(root.bytes).unwrap();
    let off = text.replace(
        "\"consistent_snapshot\": true",
        "\"consistent_snapshot\": false",
    );
    let err = rota_repo::RootInfo::parse(off.as_bytes()).unwrap_err();
    assert!(matches!(err, Error::NotConsistentSnapshot), "{err}");
}

#[tokio::test]
async fn tough_client_follows_a_root_rotation() {
    let mut repo = Repo::build();
    let new_keys = keys(2);
    let p = params(&new_keys, 1, &repo.targets_key, &repo.online);
    let v2 = rotate_root(
        repo.root(),
        &p,
        &[&repo.root_keys[1], &repo.root_keys[2]],
        &[&new_keys[0]],
    )
    .unwrap();
    repo.roots.push(v2);
    let dir = tempfile::tempdir().unwrap();
    repo.write(dir.path());
    let client = load(dir.path(), repo.root(), None).await.unwrap();
    assert_eq!(client.root().signed.version.get(), 2);
    assert_eq!(read_target(&client, IMAGE).await, repo.files[0].1);
}

#[tokio::test]
async fn tough_client_refuses_an_expired_timestamp() {
    let mut repo = Repo::build();
    repo.timestamp = repo
        .online
        .timestamp(
            &repo.snapshot.bytes,
            2,
            SystemTime::now() - Duration::from_secs(2),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    repo.write(dir.path());
    let err = load(dir.path(), repo.root(), None).await.unwrap_err();
    assert!(
        matches!(err, tough::error::Error::ExpiredMetadata { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn tough_client_refuses_a_replayed_older_timestamp() {
    let repo = Repo::build();
    let dir = tempfile::tempdir().unwrap();
    let datastore = tempfile::tempdir().unwrap();
    repo.write(dir.path());
    load(dir.path(), repo.root(), Some(datastore.path()))
        .await
        .unwrap();

    // The server moves on: timestamp version 2.
    let newer = repo
        .online
        .timestamp(&repo.snapshot.bytes, 2, in_days(1))
        .unwrap();
    Repo::write_timestamp(dir.path(), &newer);
    let client = load(dir.path(), repo.root(), Some(datastore.path()))
        .await
        .unwrap();
    assert_eq!(client.timestamp().signed.version.get(), 2);

    // An attacker serves the older (still unexpired, properly signed) version 1 again.
    Repo::write_timestamp(dir.path(), &repo.timestamp);
    let err = load(dir.path(), repo.root(), Some(datastore.path()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, tough::error::Error::OlderMetadata { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn tough_client_refuses_a_swapped_target() {
    let repo = Repo::build();
    let dir = tempfile::tempdir().unwrap();
    repo.write(dir.path());
    let (name, bytes) = &repo.files[0];
    let mut evil = bytes.clone();
    evil[0] ^= 1;
    for path in rota_repo::layout::target_paths(name, &common::sha256(bytes)) {
        std::fs::write(dir.path().join("targets").join(path), &evil).unwrap();
    }
    let client = load(dir.path(), repo.root(), None).await.unwrap();
    use tough::IntoVec as _;
    let stream = client
        .read_target(&TargetName::new(name.as_str()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stream.into_vec().await.is_err());
}

#[test]
fn online_signer_checks_its_keys_and_inputs() {
    let repo = Repo::build();
    let info = repo.online.check_against_root(repo.root()).unwrap();
    assert_eq!(info.version, 1);
    let other = OnlineSigner::new(RepoKey::generate().unwrap(), RepoKey::generate().unwrap());
    let err = other.check_against_root(repo.root()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::OnlineKeyMismatch {
                role: rota_repo::RoleName::Snapshot,
                ..
            }
        ),
        "{err}"
    );
    // Another server's snapshot is not timestamped.
    let foreign = other.snapshot(&repo.targets.bytes, 1, in_days(1)).unwrap();
    let err = repo
        .online
        .timestamp(&foreign.bytes, 2, in_days(1))
        .unwrap_err();
    assert!(matches!(err, Error::Meta { .. }), "{err}");
    // Inputs of the wrong kind.
    assert!(
        repo.online
            .snapshot(&repo.snapshot.bytes, 2, in_days(1))
            .is_err()
    );
    assert!(
        repo.online
            .timestamp(&repo.targets.bytes, 2, in_days(1))
            .is_err()
    );
    assert!(
        repo.online
            .snapshot(&repo.targets.bytes, 0, in_days(1))
            .is_err()
    );
    // The timestamp lists exactly the snapshot, with its length and both hashes.
    let timestamp: Value = serde_json::from_slice(&repo.timestamp.bytes).unwrap();
    let meta = &timestamp["signed"]["meta"];
    assert_eq!(meta.as_object().unwrap().len(), 1);
    assert_eq!(meta["snapshot.json"]["version"], 1);
    assert_eq!(meta["snapshot.json"]["length"], repo.snapshot.bytes.len());
    assert_eq!(
        meta["snapshot.json"]["hashes"]["sha256"],
        hex::encode(common::sha256(&repo.snapshot.bytes))
    );
}

#[test]
fn online_keys_round_trip_through_pem() {
    let snapshot = RepoKey::generate().unwrap();
    let timestamp = RepoKey::generate().unwrap();
    let signer = OnlineSigner::from_pem(
        &snapshot.to_pkcs8_pem().unwrap(),
        &timestamp.to_pkcs8_pem().unwrap(),
    )
    .unwrap();
    assert_eq!(signer.snapshot_key(), snapshot.public());
    assert_eq!(signer.timestamp_key(), timestamp.public());
}

/// Every single-byte change to valid metadata is an error or (for changes that keep the
/// same meaning, such as whitespace) a success, never a panic.
#[test]
fn mutated_metadata_never_panics() {
    let repo = Repo::build();
    let now = SystemTime::now();
    let v2 = rotate_root(
        repo.root(),
        &params(&repo.root_keys, 2, &repo.targets_key, &repo.online),
        &[&repo.root_keys[0], &repo.root_keys[1]],
        &[&repo.root_keys[0], &repo.root_keys[1]],
    )
    .unwrap();
    for (i, replacement) in
        (0..repo.targets.bytes.len()).zip([b'0', b'"', b'}', b'x'].iter().cycle())
    {
        let mut bytes = repo.targets.bytes.clone();
        bytes[i] = *replacement;
        let _ = verify_targets_upload(repo.root(), None, &bytes, now);
        let _ = repo.online.snapshot(&bytes, 1, in_days(1));
    }
    for (i, replacement) in (0..v2.bytes.len()).zip([b'1', b'{', b']', b'-'].iter().cycle()) {
        let mut bytes = v2.bytes.clone();
        bytes[i] = *replacement;
        let _ = verify_root_update(repo.root(), &bytes, now);
        let _ = rota_repo::RootInfo::parse(&bytes);
    }
    for bytes in [
        &b""[..],
        b"null",
        b"{}",
        b"[]",
        b"{\"signed\": 1, \"signatures\": 2}",
    ] {
        assert!(verify_targets_upload(repo.root(), None, bytes, now).is_err());
        assert!(verify_root_update(repo.root(), bytes, now).is_err());
    }
}

/// `metadata` with every signature's key id in upper case. tough compares key ids as the
/// bytes they decode to, so it still counts them; rota-tuf compares them as the strings
/// the root lists, as python-tuf does, so a device counts none of them.
fn with_uppercase_key_ids(metadata: &[u8]) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(metadata).unwrap();
    for signature in value["signatures"].as_array_mut().unwrap() {
        let keyid = signature["keyid"].as_str().unwrap().to_uppercase();
        signature["keyid"] = Value::String(keyid);
    }
    serde_json::to_vec_pretty(&value).unwrap()
}

/// `metadata` re-signed by the Ed25519 key `seed` over tough's canonical form of its
/// `signed` value, which normalises strings to Unicode NFC; devices (rota-tuf, like
/// securesystemslib) verify the bytes as written.
fn signed_over_toughs_canonical_form<T>(metadata: &[u8], seed: &[u8; 32]) -> Vec<u8>
where
    T: tough::schema::Role + serde::de::DeserializeOwned,
{
    use ed25519_dalek::Signer as _;
    let mut value: Value = serde_json::from_slice(metadata).unwrap();
    let signed: T = serde_json::from_value(value["signed"].clone()).unwrap();
    let sig = ed25519_dalek::SigningKey::from_bytes(seed).sign(&signed.canonical_form().unwrap());
    value["signatures"][0]["sig"] = Value::String(hex::encode(sig.to_bytes()));
    serde_json::to_vec_pretty(&value).unwrap()
}

/// What tough's schema check (rota-repo's upload check before it used rota-tuf) says of
/// `metadata` against the role keys of `root`.
fn tough_accepts<T>(root: &[u8], metadata: &[u8]) -> bool
where
    T: tough::schema::Role + serde::Serialize + serde::de::DeserializeOwned,
{
    let root: tough::schema::Signed<tough::schema::Root> = serde_json::from_slice(root).unwrap();
    let metadata: tough::schema::Signed<T> = serde_json::from_slice(metadata).unwrap();
    root.signed.verify_role(&metadata).is_ok()
}

/// The device client's verdict on targets `targets` under `root` (TUF 1.0.34 §5.6.3).
fn device_accepts_targets(root: &[u8], targets: &[u8]) -> bool {
    rota_tuf::TrustedSet::new(root, SystemTime::now())
        .and_then(|set| set.verify_new_targets(targets))
        .is_ok()
}

#[test]
fn upload_check_refuses_targets_the_device_client_would_refuse() {
    let seed = [7u8; 32];
    let targets_key = RepoKey::from_seed(&seed);
    let root_keys = keys(1);
    let online = OnlineSigner::new(RepoKey::generate().unwrap(), RepoKey::generate().unwrap());
    let root = rota_repo::init_root(
        &params(&root_keys, 1, &targets_key, &online),
        &[&root_keys[0]],
    )
    .unwrap()
    .bytes;
    let now = SystemTime::now();
    // "cafe" and a combining acute accent: not in NFC, which would write one "é".
    let note = TargetFile::from_bytes("notes.bin", b"notes", json!({"note": "cafe\u{301}"}));
    let signed = sign_targets(None, &[note], &[&targets_key], in_days(30)).unwrap();
    // rota signs the canonical form devices verify.
    assert!(device_accepts_targets(&root, &signed.bytes));
    verify_targets_upload(&root, None, &signed.bytes, now).unwrap();
    let image = TargetFile::from_bytes("fw.bin", b"image", Value::Null);
    let ascii = sign_targets(None, &[image], &[&targets_key], in_days(30)).unwrap();

    let crafted = [
        (
            "signed over tough's NFC-normalised canonical form",
            signed_over_toughs_canonical_form::<tough::schema::Targets>(&signed.bytes, &seed),
        ),
        (
            "signature key ids in upper case",
            with_uppercase_key_ids(&ascii.bytes),
        ),
    ];
    for (what, bytes) in crafted {
        assert!(
            tough_accepts::<tough::schema::Targets>(&root, &bytes),
            "{what}"
        );
        assert!(!device_accepts_targets(&root, &bytes), "{what}");
        let err = verify_targets_upload(&root, None, &bytes, now).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Signatures {
                    valid: 0,
                    threshold: 1,
                    ..
                }
            ),
            "{what}: {err}"
        );
    }
}

#[test]
fn upload_check_refuses_a_root_the_device_client_would_refuse() {
    let repo = Repo::build();
    let now = SystemTime::now();
    // The first root, its signatures under upper-case key ids.
    rota_repo::verify_first_root(repo.root(), now).unwrap();
    let first = with_uppercase_key_ids(repo.root());
    assert!(tough_accepts::<tough::schema::Root>(&first, &first));
    assert!(rota_tuf::TrustedSet::new(&first, now).is_err());
    let err = rota_repo::verify_first_root(&first, now).unwrap_err();
    assert!(
        matches!(err, Error::RootNotSelfSigned { version: 1 }),
        "{err}"
    );
    let err = rota_repo::RootInfo::parse(&first).unwrap_err();
    assert!(
        matches!(err, Error::RootNotSelfSigned { version: 1 }),
        "{err}"
    );

    // A rotation signed by both thresholds (TUF 1.0.34 §5.3.4), the same way.
    let new_keys = keys(2);
    let p = params(&new_keys, 2, &repo.targets_key, &repo.online);
    let old: Vec<&RepoKey> = repo.root_keys.iter().take(2).collect();
    let new: Vec<&RepoKey> = new_keys.iter().collect();
    let v2 = rotate_root(repo.root(), &p, &old, &new).unwrap();
    let rotated = with_uppercase_key_ids(&v2.bytes);
    assert!(tough_accepts::<tough::schema::Root>(repo.root(), &rotated));
    assert!(tough_accepts::<tough::schema::Root>(&rotated, &rotated));
    let mut device = rota_tuf::TrustedSet::new(repo.root(), now).unwrap();
    assert!(device.update_root(&rotated).is_err());
    for err in [
        verify_root_update(repo.root(), &rotated, now).unwrap_err(),
        rota_repo::verify_root_chain(repo.root(), &[&rotated]).unwrap_err(),
    ] {
        let trusted_keys_refuse = Error::RootNotSignedByTrusted {
            version: 2,
            trusted: 1,
        };
        assert_eq!(err.to_string(), trusted_keys_refuse.to_string());
    }
}

/// An ownership transfer: another repository's root, cross-signed with this one's root
/// keys, is what devices trusting this one accept (TUF §5.3.4's two rules across
/// repositories); without a threshold of either side's root keys it is refused.
#[test]
fn another_repositorys_root_is_trusted_only_when_cross_signed() {
    let ours = Repo::build();
    let theirs = Repo::build();
    let now = SystemTime::now();
    // Not cross-signed: only its own keys.
    let err = verify_cross_signed_root(ours.root(), theirs.root(), now).unwrap_err();
    assert!(matches!(err, Error::Device { .. }), "{err}");
    // Cross-signed by two of our three root keys (our threshold is 2).
    let old: Vec<&RepoKey> = ours.root_keys.iter().take(2).collect();
    let crossed = cross_sign_root(ours.root(), theirs.root(), &old).unwrap();
    let info = verify_cross_signed_root(ours.root(), &crossed, now).unwrap();
    assert_eq!(info.version, 1);
    assert!(info.root.contains(theirs.root_keys[0].key_id()));
    // Signing again adds nothing: each key signs once.
    assert_eq!(
        cross_sign_root(ours.root(), &crossed, &old).unwrap(),
        crossed
    );
    // One of our keys is below our threshold; their keys are not ours to sign with.
    let err = cross_sign_root(ours.root(), theirs.root(), &old[..1]).unwrap_err();
    assert!(matches!(err, Error::TooFewSigners { .. }), "{err}");
    let theirs_keys: Vec<&RepoKey> = theirs.root_keys.iter().collect();
    let err = cross_sign_root(ours.root(), theirs.root(), &theirs_keys).unwrap_err();
    assert!(matches!(err, Error::NotARoleKey { .. }), "{err}");
    // Their own signatures stripped: our keys alone do not make it their root.
    let mut stripped: Value = serde_json::from_slice(&crossed).unwrap();
    let their_ids: Vec<&str> = theirs.root_keys.iter().map(|k| k.key_id()).collect();
    stripped["signatures"]
        .as_array_mut()
        .unwrap()
        .retain(|s| !their_ids.contains(&s["keyid"].as_str().unwrap()));
    let stripped = serde_json::to_vec(&stripped).unwrap();
    assert!(verify_cross_signed_root(ours.root(), &stripped, now).is_err());
}
