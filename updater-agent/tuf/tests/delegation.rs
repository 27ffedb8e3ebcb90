//! TUF 1.0.34 §5.6.7 (lazy pre-order depth-first delegation search) and §5.7 (target
//! download): ports of tuf-conformance's test_updater_delegation_graphs,
//! test_targetfile_search, test_quoting_issues and test_file_download.

mod support;

use rota_tuf::Error;
use serde_json::json;
use support::*;

/// Delegated metadata requests of a fresh client searching `target` (after an implicit
/// refresh, whose four requests are dropped).
fn search(repo: &Repo, target: &str) -> (Result<rota_tuf::TargetInfo, Error>, Vec<String>) {
    let dir = repo.init_dir();
    let mut client = repo.client(dir.path()).unwrap();
    client.refresh().unwrap();
    repo.fetcher.take_log();
    let result = client.target_info(target);
    (result, repo.fetcher.take_log())
}

#[test]
fn refresh_loads_no_delegated_role() {
    let mut repo = Repo::new();
    repo.delegate("targets", "a", 10, &["*"], false);
    repo.publish_all();
    let dir = repo.init_dir();
    repo.refresh(dir.path()).unwrap();
    assert!(
        !repo
            .fetcher
            .take_log()
            .iter()
            .any(|u| u.contains(".a.json"))
    );
    assert!(!dir.path().join("a.json").exists());
}

/// test_graph_traversal "basic-delegation"/"multiple delegations"/"terminating" graphs:
/// children in listed order, depth first, terminating cuts the siblings that follow.
#[test]
fn preorder_depth_first_order_with_terminating_delegations() {
    // targets -> A (-> C, D), B ; nothing lists the target: every role is visited.
    let mut repo = Repo::new();
    repo.delegate("targets", "A", 10, &["*"], false);
    repo.delegate("targets", "B", 11, &["*"], false);
    repo.delegate("A", "C", 12, &["*"], false);
    repo.delegate("A", "D", 13, &["*"], false);
    repo.publish_all();
    let (result, log) = search(&repo, "missing");
    assert!(matches!(result, Err(Error::TargetNotFound { .. })));
    assert_eq!(log, ["1.A.json", "1.C.json", "1.D.json", "1.B.json"]);

    // C is terminating: D and B are never visited.
    let mut repo = Repo::new();
    repo.delegate("targets", "A", 10, &["*"], false);
    repo.delegate("targets", "B", 11, &["*"], false);
    repo.delegate("A", "C", 12, &["*"], true);
    repo.delegate("A", "D", 13, &["*"], false);
    repo.publish_all();
    let (_, log) = search(&repo, "missing");
    assert_eq!(log, ["1.A.json", "1.C.json"]);

    // A terminating role that does not match the target does not terminate anything.
    let mut repo = Repo::new();
    repo.delegate("targets", "A", 10, &["other/*"], true);
    repo.delegate("targets", "B", 11, &["*"], false);
    repo.publish_all();
    let (_, log) = search(&repo, "missing");
    assert_eq!(log, ["1.B.json"]);
}

#[test]
fn search_stops_at_the_first_role_listing_the_target() {
    let mut repo = Repo::new();
    repo.delegate("targets", "A", 10, &["*"], false);
    repo.delegate("targets", "B", 11, &["*"], false);
    repo.add_target("A", "file", b"from A");
    repo.add_target("B", "file", b"from B");
    repo.publish_all();
    let (result, log) = search(&repo, "file");
    assert_eq!(result.unwrap().hashes[0].1, sha256_hex(b"from A"));
    assert_eq!(log, ["1.A.json"]);
}

/// test_targetfile_search: path patterns are matched per `/` segment with fnmatch.
#[test]
fn path_patterns_and_hash_prefixes_select_roles() {
    let mut repo = Repo::new();
    repo.delegate("targets", "tgz", 10, &["*.tgz"], false);
    repo.delegate("targets", "dir", 11, &["releases/*/firmware-?.bin"], false);
    repo.add_target("tgz", "a.tgz", b"a");
    repo.add_target("dir", "releases/v1/firmware-1.bin", b"fw");
    repo.publish_all();
    let (r, log) = search(&repo, "a.tgz");
    assert!(r.is_ok());
    assert_eq!(log, ["1.tgz.json"]);
    let (r, log) = search(&repo, "releases/v1/firmware-1.bin");
    assert!(r.is_ok());
    assert_eq!(log, ["1.dir.json"]);
    // `*` does not cross `/`: no role matches, nothing is fetched.
    let (r, log) = search(&repo, "x/a.tgz");
    assert!(matches!(r, Err(Error::TargetNotFound { .. })));
    assert!(log.is_empty());

    let target = "bins/file";
    let prefix = &sha256_hex(target.as_bytes())[..2];
    let mut repo = Repo::new();
    repo.delegate("targets", "other-bin", 10, &["*"], false);
    repo.delegate("targets", "bin", 11, &["*"], false);
    for (i, p) in [
        ("other-bin", if prefix == "00" { "01" } else { "00" }),
        ("bin", prefix),
    ] {
        let roles = repo.targets["delegations"]["roles"].as_array_mut().unwrap();
        let role = roles.iter_mut().find(|r| r["name"] == i).unwrap();
        role.as_object_mut().unwrap().remove("paths");
        role["path_hash_prefixes"] = json!([p]);
    }
    repo.add_target("bin", target, b"binned");
    repo.publish_all();
    let (r, log) = search(&repo, target);
    assert!(r.is_ok());
    assert_eq!(log, ["1.bin.json"]);
}

/// tough 0.24 fails the whole repository here; a role is only consulted for its paths.
#[test]
fn role_listing_a_target_outside_its_paths_is_ignored_for_it() {
    let mut repo = Repo::new();
    repo.delegate("targets", "A", 10, &["a/*"], false);
    repo.add_target("A", "a/ok", b"ok");
    repo.add_target("A", "b/rogue", b"rogue");
    repo.publish_all();
    let (r, _) = search(&repo, "b/rogue");
    assert!(matches!(r, Err(Error::TargetNotFound { .. })), "{r:?}");
    let (r, _) = search(&repo, "a/ok");
    assert!(r.is_ok());
}

#[test]
fn visit_limit_and_cycles() {
    // A chain targets -> r0 -> r1 -> ... -> r39: 32 delegations are visited after targets.
    let mut repo = Repo::new();
    repo.delegate("targets", "r0", 10, &["*"], false);
    for i in 1..40 {
        repo.delegate(&format!("r{}", i - 1), &format!("r{i}"), 10, &["*"], false);
    }
    repo.publish_all();
    let (r, log) = search(&repo, "file");
    assert!(matches!(r, Err(Error::TargetNotFound { .. })));
    assert_eq!(log.len(), 32);
    assert_eq!(log.last().unwrap(), "1.r31.json");

    // targets -> A -> B -> A: each role once.
    let mut repo = Repo::new();
    repo.delegate("targets", "A", 10, &["*"], false);
    repo.delegate("A", "B", 11, &["*"], false);
    let key = signer(10);
    let b = repo.delegated.get_mut("B").unwrap();
    b["delegations"] = json!({"keys": {&key.keyid: key.public_json()}, "roles": [
        {"name": "A", "keyids": [key.keyid], "threshold": 1, "terminating": false, "paths": ["*"]}
    ]});
    repo.publish_all();
    let (r, log) = search(&repo, "file");
    assert!(matches!(r, Err(Error::TargetNotFound { .. })));
    assert_eq!(log, ["1.A.json", "1.B.json"]);
}

#[test]
fn delegated_role_missing_from_snapshot_fails() {
    let mut repo = Repo::new();
    repo.delegate("targets", "A", 10, &["*"], false);
    repo.publish_all();
    repo.snapshot["meta"]
        .as_object_mut()
        .unwrap()
        .remove("A.json");
    repo.update_snapshot();
    let (r, log) = search(&repo, "file");
    assert!(
        matches!(&r, Err(Error::MissingMeta { file, .. }) if file == "A.json"),
        "{r:?}"
    );
    assert!(log.is_empty());
}

#[test]
fn delegated_role_signed_by_wrong_key_fails() {
    let mut repo = Repo::new();
    repo.delegate("targets", "A", 10, &["*"], false);
    repo.signers.insert("A".into(), vec![signer(99)]);
    repo.publish_all();
    let (r, _) = search(&repo, "file");
    assert!(
        matches!(&r, Err(Error::Signature { role, .. }) if role == "A"),
        "{r:?}"
    );
}

/// §5.6.7: each delegated role is verified with the keys and threshold of the delegator
/// being followed. `R` is delegated by both `X` (key 12) and `Y` (key 13) but signed only
/// by X's key: a holder of X's key for `R` must not be able to list targets under Y's
/// paths, even after a search through X has loaded (and cached) `R`.
#[test]
fn delegated_role_is_verified_against_the_delegator_being_followed() {
    let mut repo = Repo::new();
    repo.delegate("targets", "X", 10, &["x/*"], false);
    repo.delegate("targets", "Y", 11, &["y/*"], false);
    repo.delegate("X", "R", 12, &["x/*"], false);
    repo.delegate("Y", "R", 13, &["y/*"], false);
    repo.signers.insert("R".into(), vec![signer(12)]);
    repo.add_target("R", "x/firmware", b"released through X");
    repo.add_target("R", "y/firmware", b"never released through Y");
    repo.publish_all();
    let refused = |r: &Result<std::path::PathBuf, Error>| {
        matches!(r, Err(Error::Signature { role, signer, valid: 0, threshold: 1 })
            if role == "R" && signer == "Y")
    };

    // Straight through Y: R does not carry Y's signature.
    let (r, log, _) = downloaded(&repo, "y/firmware");
    assert!(refused(&r), "{r:?}");
    assert!(log.is_empty(), "{log:?}");

    // Through X first (R verifies with X's key), then through Y in the same cycle: the
    // copy of R that X's key vouched for must not stand in for Y's key.
    let dir = repo.init_dir();
    let targets = tempfile::tempdir().unwrap();
    let mut client = repo.client(dir.path()).unwrap();
    let via_x = client.target_info("x/firmware").unwrap();
    client.download_target(&via_x, targets.path()).unwrap();
    repo.fetcher.take_log();
    let r = client
        .target_info("y/firmware")
        .and_then(|info| client.download_target(&info, targets.path()));
    assert!(refused(&r), "{r:?}");
    assert!(
        !repo
            .fetcher
            .take_log()
            .iter()
            .any(|u| u.starts_with("targets/")),
        "a target under Y was downloaded"
    );
}

/// test_unusual_role_name: names are quoted in URLs and file names (`%2F` stays encoded).
#[test]
fn unusual_role_names_are_quoted() {
    for name in ["?", "#", "/delegatedrole", "../delegatedrole"] {
        let mut repo = Repo::new();
        repo.delegate("targets", name, 10, &["*"], false);
        repo.add_target(name, "file", b"x");
        repo.publish_all();
        let dir = repo.init_dir();
        let mut client = repo.client(dir.path()).unwrap();
        client.target_info("file").unwrap();
        let quoted = rota_tuf::encode_name(name);
        assert!(
            repo.fetcher
                .take_log()
                .contains(&format!("1.{quoted}.json"))
        );
        let files = file_names(dir.path());
        assert_eq!(files.len(), 5, "{files:?}");
        assert!(files.contains(&format!("{quoted}.json")));
    }
    assert_eq!(
        rota_tuf::encode_name("../delegatedrole"),
        "..%2Fdelegatedrole"
    );
}

#[test]
fn succinct_hash_bin_delegation() {
    let mut repo = Repo::new();
    let key = signer(20);
    repo.targets["delegations"] = json!({"keys": {&key.keyid: key.public_json()},
        "succinct_roles": {"keyids": [key.keyid], "threshold": 1, "bit_length": 4, "name_prefix": "bin"}});
    let target = "some/file";
    // 4 bits of sha256 = its first hex digit; the suffix is one digit wide.
    let bin = format!("bin-{}", &sha256_hex(target.as_bytes())[..1]);
    repo.delegated.insert(
        bin.clone(),
        json!({"_type": "targets", "spec_version": "1.0.31",
        "version": 1, "expires": expires_in_days(30), "targets": {}}),
    );
    repo.signers.insert(bin.clone(), vec![key]);
    repo.add_target(&bin, target, b"binned");
    repo.publish_all();
    let (r, log) = search(&repo, target);
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(log, [format!("1.{bin}.json")]);
}

// §5.7: target download.

fn downloaded(
    repo: &Repo,
    name: &str,
) -> (
    Result<std::path::PathBuf, Error>,
    Vec<String>,
    tempfile::TempDir,
) {
    let dir = repo.init_dir();
    let targets = tempfile::tempdir().unwrap();
    let mut client = repo.client(dir.path()).unwrap();
    let result = client
        .target_info(name)
        .and_then(|info| client.download_target(&info, targets.path()));
    let log = repo
        .fetcher
        .take_log()
        .into_iter()
        .filter(|u| u.starts_with("targets/"))
        .collect();
    (result, log, targets)
}

#[test]
fn consistent_snapshot_url_is_dir_hash_file_with_the_first_hash_in_file_order() {
    let mut repo = Repo::new();
    let content = b"firmware";
    let (h256, h512) = (sha256_hex(content), sha512_hex(content));
    repo.targets["targets"]["fw/app.bin"] =
        json!({"length": 8, "hashes": {"sha256": h256, "sha512": h512}});
    repo.serve_target("fw/app.bin", &h512, content);
    repo.release();
    // List sha512 first in the file: the signature covers the canonical (sorted) form, so
    // reordering the members keeps it valid.
    let url = format!("{METADATA_URL}2.targets.json");
    let doc: serde_json::Value = serde_json::from_slice(&repo.fetcher.get(&url).unwrap()).unwrap();
    let sorted = format!(r#"{{"sha256":"{h256}","sha512":"{h512}"}}"#);
    let reordered = format!(r#"{{"sha512":"{h512}","sha256":"{h256}"}}"#);
    let signed = serde_json::to_string(&doc["signed"])
        .unwrap()
        .replace(&sorted, &reordered);
    assert!(signed.contains(&reordered));
    let text = format!(
        r#"{{"signatures":{},"signed":{signed}}}"#,
        doc["signatures"]
    );
    repo.fetcher.put(&url, text.into_bytes());
    let (r, log, targets) = downloaded(&repo, "fw/app.bin");
    r.unwrap();
    assert_eq!(log, [format!("targets/fw/{h512}.app.bin")]);
    assert_eq!(file_names(targets.path()), ["fw%2Fapp.bin"]);
}

#[test]
fn non_consistent_snapshot_url_is_the_path() {
    let mut repo = Repo::new();
    repo.root["consistent_snapshot"] = json!(false);
    repo.bump("root");
    repo.publish("root");
    repo.add_target("targets", "dir/file.txt", b"abc");
    repo.release();
    let (r, log, _) = downloaded(&repo, "dir/file.txt");
    r.unwrap();
    assert_eq!(log, ["targets/dir/file.txt"]);
}

#[test]
fn sha512_only_and_mixed_hashes_check_every_hash() {
    let content = b"payload";
    let mut repo = Repo::new();
    repo.targets["targets"]["only512"] =
        json!({"length": 7, "hashes": {"sha512": sha512_hex(content)}});
    repo.serve_target("only512", &sha512_hex(content), content);
    repo.targets["targets"]["bad512"] = json!({"length": 7, "hashes": {
        "sha256": sha256_hex(content), "sha512": "00".repeat(64)}});
    repo.serve_target("bad512", &sha256_hex(content), content);
    repo.targets["targets"]["unknown"] = json!({"length": 7, "hashes": {"md5": "00"}});
    repo.serve_target("unknown", "00", content);
    repo.release();
    let (r, _, _) = downloaded(&repo, "only512");
    r.unwrap();
    let (r, _, targets) = downloaded(&repo, "bad512");
    assert!(matches!(r, Err(Error::LengthOrHash { .. })), "{r:?}");
    assert!(file_names(targets.path()).is_empty());
    let (r, _, _) = downloaded(&repo, "unknown");
    assert!(matches!(r, Err(Error::LengthOrHash { .. })), "{r:?}");
}

#[test]
fn cached_target_is_not_fetched_again_and_substitution_is_refused() {
    let mut repo = Repo::new();
    repo.add_target("targets", "file", b"original");
    repo.release();
    let dir = repo.init_dir();
    let targets = tempfile::tempdir().unwrap();
    let mut client = repo.client(dir.path()).unwrap();
    let info = client.target_info("file").unwrap();
    client.download_target(&info, targets.path()).unwrap();
    repo.fetcher.take_log();
    client.download_target(&info, targets.path()).unwrap();
    assert!(repo.fetcher.take_log().is_empty());

    // Corrupt the cached copy and substitute the server's: nothing valid is written.
    std::fs::write(targets.path().join("file"), b"tampered").unwrap();
    repo.serve_target("file", &sha256_hex(b"original"), b"evilbyt");
    let r = client.download_target(&info, targets.path());
    assert!(matches!(r, Err(Error::LengthOrHash { .. })), "{r:?}");
    assert_eq!(
        std::fs::read(targets.path().join("file")).unwrap(),
        b"tampered"
    );
    // A longer substitute is cut at the listed length.
    repo.serve_target("file", &sha256_hex(b"original"), b"original-and-more");
    let r = client.fetch_target(&info);
    assert!(matches!(r, Err(Error::TooLarge { limit: 8, .. })), "{r:?}");
    assert_eq!(file_names(targets.path()), ["file"]);
}

#[test]
fn dot_target_names_are_refused() {
    let mut repo = Repo::new();
    repo.add_target("targets", "..", b"x");
    repo.release();
    let (r, log, _) = downloaded(&repo, "..");
    assert!(matches!(r, Err(Error::InvalidTargetPath { .. })), "{r:?}");
    assert!(log.is_empty());
}

#[test]
fn metadata_size_limits_are_enforced() {
    let mut repo = Repo::new();
    repo.timestamp["x-padding"] = json!("p".repeat(16_384));
    repo.publish("timestamp");
    let dir = repo.init_dir();
    let r = repo.refresh(dir.path());
    assert!(
        matches!(r, Err(Error::TooLarge { limit: 16_384, .. })),
        "{r:?}"
    );
    assert!(!r.unwrap_err().is_transient());
}
