//! TUF 1.0.34 §5.2–§5.6 for the top-level roles, on repositories built by the simulator
//! (ports of tuf-conformance's test_basic, test_rollback, test_expiration,
//! test_updater_key_rotations and test_file_download cases).

mod support;

use rota_tuf::Error;
use serde_json::json;
use support::*;

fn read(dir: &tempfile::TempDir, name: &str) -> Vec<u8> {
    std::fs::read(dir.path().join(name)).unwrap()
}

#[test]
fn init_and_refresh_request_order_then_second_refresh_uses_local_files() {
    let repo = Repo::new();
    let dir = repo.init_dir();
    repo.refresh(dir.path()).unwrap();
    assert_eq!(
        repo.fetcher.take_log(),
        [
            "2.root.json",
            "timestamp.json",
            "1.snapshot.json",
            "1.targets.json"
        ]
    );
    assert_eq!(
        file_names(dir.path()),
        [
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ]
    );
    repo.refresh(dir.path()).unwrap();
    assert_eq!(repo.fetcher.take_log(), ["2.root.json", "timestamp.json"]);
}

#[test]
fn invalid_or_unsigned_initial_root_fails_before_any_request() {
    let repo = Repo::new();
    let dir = repo.init_dir();
    std::fs::write(dir.path().join("root.json"), b"{\"signed\": 1}").unwrap();
    assert!(matches!(repo.client(dir.path()), Err(Error::Parse { .. })));
    let mut root = repo.root.clone();
    root["version"] = json!(1);
    std::fs::write(dir.path().join("root.json"), sign(&root, &[])).unwrap();
    assert!(matches!(
        repo.client(dir.path()),
        Err(Error::Signature { valid: 0, .. })
    ));
    assert!(repo.fetcher.take_log().is_empty());
}

/// One root version of a rotation case: root keys (seeds), threshold, signing seeds, and
/// whether the client accepts it.
struct V(&'static [u8], u64, &'static [u8], bool);

/// tuf-conformance `test_root_rotation` cases: both thresholds, each key id counted once.
#[test]
fn root_rotation_needs_threshold_of_old_and_new_keys() {
    let cases: &[(&str, &[V])] = &[
        (
            "1-of-1 rotation",
            &[
                V(&[1], 1, &[1], true),
                V(&[2], 1, &[2, 1], true),
                V(&[3], 1, &[3, 2], true),
            ],
        ),
        (
            "unused signatures",
            &[
                V(&[1], 1, &[3, 1, 4], true),
                V(&[2], 1, &[3, 2, 1, 4], true),
                V(&[3], 1, &[3, 2, 4], true),
            ],
        ),
        (
            "not signed with old key",
            &[V(&[1], 1, &[1], true), V(&[2], 1, &[2, 3, 4], false)],
        ),
        (
            "not signed with new key",
            &[V(&[1], 1, &[1], true), V(&[2], 1, &[1, 3, 4], false)],
        ),
        (
            "3-of-5 key combos",
            &[
                V(&[10, 11, 12, 13, 14], 3, &[10, 12, 14], true),
                V(&[10, 11, 12, 13, 14], 3, &[10, 14, 11], true),
                V(&[10, 11, 12, 13, 14], 3, &[10, 11, 13], true),
            ],
        ),
        (
            "3-of-5 one key rotated",
            &[
                V(&[10, 11, 12, 13, 14], 3, &[10, 12, 14], true),
                V(&[10, 11, 13, 14, 15], 3, &[10, 14, 11], true),
            ],
        ),
        (
            "3-of-5 not 3 new keys",
            &[
                V(&[10, 11, 12, 13, 14], 3, &[10, 12, 14], true),
                V(&[10, 11, 13, 14, 15], 3, &[10, 12, 14], false),
            ],
        ),
        (
            "3-of-5 not 3 old keys",
            &[
                V(&[10, 11, 12, 13, 14], 3, &[10, 12, 14], true),
                V(&[10, 11, 13, 14, 15], 3, &[10, 14, 15], false),
            ],
        ),
        (
            "3-of-5 all rotated",
            &[
                V(&[10, 11, 12, 13, 14], 3, &[10, 12, 14], true),
                V(&[15, 16, 17, 18, 19], 3, &[10, 12, 14, 15, 16, 17], true),
            ],
        ),
        (
            "all rotated, 2 new keys",
            &[
                V(&[10, 11, 12, 13, 14], 3, &[10, 12, 14], true),
                V(&[15, 16, 17, 18, 19], 3, &[10, 12, 14, 15, 16], false),
            ],
        ),
        (
            "all rotated, 2 old keys",
            &[
                V(&[10, 11, 12, 13, 14], 3, &[10, 12, 14], true),
                V(&[15, 16, 17, 18, 19], 3, &[10, 12, 15, 16, 17], false),
            ],
        ),
        (
            "threshold up to 5-of-5",
            &[
                V(&[10, 11, 12, 13, 14], 3, &[10, 12, 14], true),
                V(&[10, 11, 12, 13, 14], 5, &[10, 11, 12, 13, 14], true),
            ],
        ),
        (
            "threshold up, 4 sigs",
            &[
                V(&[10, 11, 12, 13, 14], 3, &[10, 12, 14], true),
                V(&[10, 11, 12, 13, 14], 5, &[10, 11, 12, 13], false),
            ],
        ),
        (
            "threshold down to 3-of-5",
            &[
                V(&[10, 11, 12, 13, 14], 5, &[10, 11, 12, 13, 14], true),
                V(&[10, 11, 12, 13, 14], 3, &[10, 12, 14], false),
            ],
        ),
        (
            "2-of-3 down to 1-of-3",
            &[
                V(&[1, 2, 3], 2, &[1, 2], true),
                V(&[1, 2, 3], 1, &[1, 2], true),
                V(&[1, 2, 3], 1, &[1], true),
            ],
        ),
    ];
    for (name, versions) in cases {
        let mut repo = Repo::new();
        let mut last_good = 0;
        for (i, V(keys, threshold, sigs, ok)) in versions.iter().enumerate() {
            let keys: Vec<Signer2> = keys.iter().map(|s| signer(*s)).collect();
            repo.root["keys"] = json!({});
            for role in ["timestamp", "snapshot", "targets"] {
                let k = repo.signers[role].clone();
                repo.set_role_keys(role, &k, 1);
            }
            repo.set_role_keys("root", &keys, *threshold);
            repo.root["version"] = json!(i + 1);
            let sigs: Vec<Signer2> = sigs.iter().map(|s| signer(*s)).collect();
            repo.publish_signed_by("root", &sigs);
            if *ok && last_good == i {
                last_good = i + 1;
            }
        }
        let dir = repo.init_dir();
        let result = repo.refresh(dir.path());
        let all_ok = versions.iter().all(|v| v.3);
        assert_eq!(result.is_ok(), all_ok, "{name}: {result:?}");
        if !all_ok {
            assert!(
                matches!(result, Err(Error::Signature { .. })),
                "{name}: {result:?}"
            );
        }
        // The last good root is the trusted one on disk.
        let good = repo
            .fetcher
            .get(&format!("{METADATA_URL}{last_good}.root.json"))
            .unwrap();
        assert_eq!(read(&dir, "root.json"), good, "{name}");
    }
}

#[test]
fn root_version_must_be_exactly_n_plus_one() {
    let mut repo = Repo::new();
    repo.root["version"] = json!(3);
    let bytes = repo.publish("root");
    repo.fetcher
        .put(&format!("{METADATA_URL}2.root.json"), bytes);
    let dir = repo.init_dir();
    let err = repo.refresh(dir.path()).unwrap_err();
    assert!(
        matches!(err, Error::RootVersion { trusted: 1, got: 3 }),
        "{err}"
    );
}

#[test]
fn max_root_rotations_stops_quietly() {
    let mut repo = Repo::new();
    for _ in 0..5 {
        repo.bump("root");
        repo.publish("root");
    }
    let dir = repo.init_dir();
    let mut config = rota_tuf::Config::new(METADATA_URL, TARGETS_URL);
    config.max_root_rotations = 3;
    let mut client =
        rota_tuf::Client::new(dir.path(), config, repo.fetcher.clone(), now()).unwrap();
    client.refresh().unwrap();
    assert_eq!(client.trusted_root_version(), 4);
    let log = repo.fetcher.take_log();
    assert_eq!(log[..3], ["2.root.json", "3.root.json", "4.root.json"]);
    assert_eq!(log[3], "timestamp.json");
}

#[test]
fn expired_intermediate_root_is_fine_but_expired_final_root_fails_after_persisting() {
    let mut repo = Repo::new();
    repo.root["expires"] = json!(expires_in_days(-1));
    repo.bump("root");
    repo.publish("root");
    repo.root["expires"] = json!(expires_in_days(10));
    repo.bump("root");
    repo.publish("root");
    let dir = repo.init_dir();
    repo.refresh(dir.path()).unwrap();

    repo.root["expires"] = json!(expires_in_days(-1));
    repo.bump("root");
    let v4 = repo.publish("root");
    let err = repo.refresh(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Expired { role, .. } if role == "root"),
        "{err}"
    );
    assert_eq!(read(&dir, "root.json"), v4);
    assert_eq!(repo.fetcher.take_log().last().unwrap(), "5.root.json");
}

#[test]
fn equal_version_timestamp_is_discarded_without_error() {
    let mut repo = Repo::new();
    let dir = repo.init_dir();
    repo.refresh(dir.path()).unwrap();
    let trusted = read(&dir, "timestamp.json");
    repo.fetcher.take_log();
    // Changed content, same version: tough 0.24 would take it.
    repo.timestamp["meta"]["snapshot.json"]["version"] = json!(100);
    repo.publish("timestamp");
    let mut client = repo.client(dir.path()).unwrap();
    client.refresh().unwrap();
    assert_eq!(read(&dir, "timestamp.json"), trusted);
    assert_eq!(client.trusted_snapshot_version(), Some(1));
    assert_eq!(repo.fetcher.take_log(), ["2.root.json", "timestamp.json"]);
}

#[test]
fn timestamp_and_snapshot_meta_rollback_are_refused() {
    let mut repo = Repo::new();
    repo.timestamp["version"] = json!(5);
    repo.snapshot["version"] = json!(5);
    repo.publish("snapshot");
    repo.publish("timestamp");
    let dir = repo.init_dir();
    repo.refresh(dir.path()).unwrap();

    repo.timestamp["version"] = json!(4);
    repo.publish("timestamp");
    let err = repo.refresh(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Rollback { role, trusted: 5, new: 4 } if role == "timestamp"),
        "{err}"
    );

    repo.timestamp["version"] = json!(6);
    repo.timestamp["meta"]["snapshot.json"]["version"] = json!(4);
    repo.publish("timestamp");
    repo.fetcher.take_log();
    let err = repo.refresh(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Rollback { role, trusted: 5, new: 4 } if role == "snapshot"),
        "{err}"
    );
    // No snapshot request after the rollback (tuf-conformance test_snapshot_rollback).
    assert_eq!(repo.fetcher.take_log(), ["2.root.json", "timestamp.json"]);
}

#[test]
fn expired_new_timestamp_is_not_trusted() {
    let mut repo = Repo::new();
    repo.timestamp["expires"] = json!(expires_in_days(-5));
    repo.publish("timestamp");
    let dir = repo.init_dir();
    let err = repo.refresh(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Expired { role, .. } if role == "timestamp"),
        "{err}"
    );
    assert_eq!(file_names(dir.path()), ["root.json"]);
}

#[test]
fn expired_local_timestamp_and_snapshot_still_guard_rollback_then_are_replaced() {
    // tuf-conformance test_expired_metadata: refresh on day 0, again on day 18.
    let mut repo = Repo::new();
    repo.timestamp["expires"] = json!(expires_in_days(7));
    repo.snapshot["expires"] = json!(expires_in_days(7));
    repo.publish("snapshot");
    repo.publish("timestamp");
    let dir = repo.init_dir();
    repo.refresh(dir.path()).unwrap();
    repo.timestamp["expires"] = json!(expires_in_days(21));
    repo.snapshot["expires"] = json!(expires_in_days(21));
    repo.release();
    let day18 = at(NOW + 18 * 86_400);
    let mut client = repo.client_at(dir.path(), day18).unwrap();
    client.refresh().unwrap();
    assert_eq!(client.trusted_timestamp_version(), Some(2));
    assert_eq!(client.trusted_snapshot_version(), Some(2));

    // A rolled-back snapshot version in a new timestamp is still caught on day 30.
    repo.timestamp["expires"] = json!(expires_in_days(60));
    repo.timestamp["meta"]["snapshot.json"]["version"] = json!(1);
    repo.bump("timestamp");
    repo.publish("timestamp");
    let err = repo
        .client_at(dir.path(), at(NOW + 30 * 86_400))
        .unwrap()
        .refresh()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rollback {
                trusted: 2,
                new: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn snapshot_length_hash_and_version_must_match_timestamp() {
    // Hash mismatch.
    let mut repo = Repo::new();
    repo.meta_hashes = true;
    repo.publish_all();
    repo.timestamp["meta"]["snapshot.json"]["hashes"]["sha256"] = json!("00".repeat(32));
    repo.bump("timestamp");
    repo.publish("timestamp");
    let dir = repo.init_dir();
    let err = repo.refresh(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::LengthOrHash { file, .. } if file == "snapshot.json"),
        "{err}"
    );
    // Length mismatch (one byte short: the download is cut, then refused).
    let mut repo = Repo::new();
    repo.meta_hashes = true;
    repo.publish_all();
    let len = repo.timestamp["meta"]["snapshot.json"]["length"]
        .as_u64()
        .unwrap();
    repo.timestamp["meta"]["snapshot.json"]["length"] = json!(len + 1);
    repo.publish("timestamp");
    let dir = repo.init_dir();
    let err = repo.refresh(dir.path()).unwrap_err();
    assert!(matches!(&err, Error::LengthOrHash { .. }), "{err}");
    // Version mismatch: trusted are exactly root v1 and timestamp v1.
    let mut repo = Repo::new();
    repo.bump("snapshot");
    let v2 = repo.publish("snapshot");
    repo.fetcher
        .put(&format!("{METADATA_URL}1.snapshot.json"), v2);
    repo.timestamp["meta"]["snapshot.json"]["version"] = json!(1);
    repo.publish("timestamp");
    let dir = repo.init_dir();
    let err = repo.refresh(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::VersionMismatch {
                expected: 1,
                got: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(file_names(dir.path()), ["root.json", "timestamp.json"]);
}

#[test]
fn snapshot_rollback_removed_meta_and_expiry_are_refused() {
    let mut repo = Repo::new();
    repo.targets["version"] = json!(3);
    repo.publish("targets");
    repo.publish("snapshot");
    repo.publish("timestamp");
    let dir = repo.init_dir();
    repo.refresh(dir.path()).unwrap();
    let trusted_snapshot = read(&dir, "snapshot.json");

    repo.snapshot["meta"]["targets.json"]["version"] = json!(2);
    repo.update_snapshot();
    let err = repo.refresh(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Rollback { role, trusted: 3, new: 2 } if role == "targets.json"),
        "{err}"
    );
    assert_eq!(read(&dir, "snapshot.json"), trusted_snapshot);

    repo.snapshot["meta"] = json!({});
    repo.update_snapshot();
    let err = repo.refresh(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::MissingMeta { file, .. } if file == "targets.json"),
        "{err}"
    );

    repo.snapshot["meta"]["targets.json"] = json!({"version": 3});
    repo.snapshot["expires"] = json!(expires_in_days(-1));
    repo.update_snapshot();
    let err = repo.refresh(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Expired { role, .. } if role == "snapshot"),
        "{err}"
    );
}

#[test]
fn targets_hash_version_and_expiry_are_checked() {
    let mut repo = Repo::new();
    repo.meta_hashes = true;
    repo.publish_all();
    let dir = repo.init_dir();
    repo.refresh(dir.path()).unwrap();
    repo.bump("targets");
    repo.publish("targets");
    repo.snapshot["meta"]["targets.json"]["hashes"]["sha256"] = json!("ab".repeat(32));
    repo.update_snapshot();
    let err = repo.refresh(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::LengthOrHash { file, .. } if file == "targets.json"),
        "{err}"
    );

    let mut repo = Repo::new();
    repo.bump("targets");
    let v2 = repo.publish("targets");
    repo.snapshot["meta"]["targets.json"]["version"] = json!(3);
    repo.fetcher
        .put(&format!("{METADATA_URL}3.targets.json"), v2);
    repo.update_snapshot();
    let dir = repo.init_dir();
    let err = repo.refresh(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::VersionMismatch {
                expected: 3,
                got: 2,
                ..
            }
        ),
        "{err}"
    );

    let mut repo = Repo::new();
    repo.targets["expires"] = json!(expires_in_days(-1));
    repo.release();
    let dir = repo.init_dir();
    let err = repo.refresh(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Expired { role, .. } if role == "targets"),
        "{err}"
    );
    assert!(!dir.path().join("targets.json").exists());
}

#[test]
fn fast_forward_recovery_after_timestamp_key_rotation() {
    let mut repo = Repo::new();
    repo.timestamp["version"] = json!(99);
    repo.publish("timestamp");
    let dir = repo.init_dir();
    repo.refresh(dir.path()).unwrap();
    // Recovery: new timestamp keys, timestamp restarts at version 1.
    repo.set_role_keys("timestamp", &[signer(40)], 1);
    repo.bump("root");
    repo.publish("root");
    repo.timestamp["version"] = json!(1);
    repo.publish("timestamp");
    let mut client = repo.client(dir.path()).unwrap();
    client.refresh().unwrap();
    assert_eq!(client.trusted_timestamp_version(), Some(1));
}

#[test]
fn fast_forward_recovery_after_snapshot_key_rotation() {
    let mut repo = Repo::new();
    repo.snapshot["version"] = json!(99);
    repo.publish("snapshot");
    repo.publish("timestamp");
    let dir = repo.init_dir();
    repo.refresh(dir.path()).unwrap();
    repo.set_role_keys("snapshot", &[signer(41)], 1);
    repo.bump("root");
    repo.publish("root");
    repo.snapshot["version"] = json!(1);
    repo.publish("snapshot");
    repo.bump("timestamp");
    repo.publish("timestamp");
    let mut client = repo.client(dir.path()).unwrap();
    client.refresh().unwrap();
    assert_eq!(client.trusted_snapshot_version(), Some(1));
}

#[test]
fn custom_fields_at_every_level_are_kept_under_the_signature() {
    let mut repo = Repo::new();
    repo.root["x-custom"] = json!({"a": [1, "b"]});
    let k = repo.root["roles"]["root"]["keyids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    repo.root["keys"][&k]["extra-field"] = json!("x");
    repo.root["roles"]["snapshot"]["x-period"] = json!(7);
    repo.delegate("targets", "role1", 50, &["*"], false);
    repo.targets["delegations"]["x-d"] = json!(true);
    repo.targets["delegations"]["roles"][0]["x-r"] = json!(null);
    repo.add_target("role1", "file.txt", b"hello");
    repo.value("role1")["targets"]["file.txt"]["custom"] = json!({"hw": "rev-b"});
    repo.publish_all();
    let dir = repo.init_dir();
    let mut client = repo.client(dir.path()).unwrap();
    let info = client.target_info("file.txt").unwrap();
    assert_eq!(info.custom, Some(json!({"hw": "rev-b"})));
}
