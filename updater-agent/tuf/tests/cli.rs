//! The tuf-conformance command-line contract, run in-process against a loopback HTTP
//! server: argument order, exit codes, and the contents of `--metadata-dir`.

mod support;

use std::ffi::OsString;
use std::path::Path;

use rota_tuf::cli::run;
use support::*;

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

/// Serves a static vector repository at `/metadata/` and `/targets/`.
fn serve(repo: &Path) -> HttpServer {
    let server = HttpServer::start();
    for sub in ["metadata", "targets"] {
        let root = repo.join(sub);
        for file in walk(&root) {
            let rel = file.strip_prefix(&root).unwrap().to_str().unwrap();
            server.put(&format!("{sub}/{rel}"), std::fs::read(&file).unwrap());
        }
    }
    server
}

fn vector(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors/tuf-conformance-static")
        .join(name)
}

#[test]
fn conformance_sequence_on_tuf_on_ci_over_http() {
    let repo = vector("tuf-on-ci-0.11");
    let server = serve(&repo);
    let dir = tempfile::tempdir().unwrap();
    let targets = tempfile::tempdir().unwrap();
    let md = dir.path().join("metadata");
    let (md_s, td_s) = (md.to_str().unwrap(), targets.path().to_str().unwrap());
    let root = repo.join("initial_root.json");
    let metadata_url = format!("{}metadata/", server.base);
    let targets_url = format!("{}targets/", server.base);

    assert_eq!(
        run(args(&[
            "--metadata-dir",
            md_s,
            "init",
            root.to_str().unwrap()
        ])),
        0
    );
    assert!(server.take_log().is_empty(), "init makes no request");
    assert_eq!(file_names(&md), ["root.json"]);

    assert_eq!(
        run(args(&[
            "--metadata-url",
            &metadata_url,
            "--metadata-dir",
            md_s,
            "refresh"
        ])),
        0
    );
    assert_eq!(
        server.take_log(),
        [
            "metadata/2.root.json",
            "metadata/timestamp.json",
            "metadata/2.snapshot.json",
            "metadata/1.targets.json"
        ]
    );

    let download = [
        "--metadata-url",
        &metadata_url,
        "--metadata-dir",
        md_s,
        "--target-name",
        "delegatedrole/artifact",
        "--target-dir",
        td_s,
        "--target-base-url",
        &targets_url,
        "download",
    ];
    assert_eq!(run(args(&download)), 0);
    assert_eq!(
        file_names(&md),
        [
            "delegatedrole.json",
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ]
    );
    assert_eq!(file_names(targets.path()), ["delegatedrole%2Fartifact"]);
    assert_eq!(
        std::fs::read(md.join("delegatedrole.json")).unwrap(),
        std::fs::read(repo.join("metadata/2.delegatedrole.json")).unwrap()
    );
    server.take_log();
    // Cached: no target request the second time.
    assert_eq!(run(args(&download)), 0);
    assert!(server.take_log().iter().all(|p| p.starts_with("metadata/")));

    // init again overwrites only root.json.
    assert_eq!(
        run(args(&[
            "--metadata-dir",
            md_s,
            "init",
            root.to_str().unwrap()
        ])),
        0
    );
    assert_eq!(file_names(&md).len(), 5);
}

#[test]
fn sigstore_is_refused_at_the_real_clock() {
    let repo = vector("sigstore-root-signing");
    let server = serve(&repo);
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("m");
    let md_s = md.to_str().unwrap();
    let root = repo.join("initial_root.json");
    assert_eq!(
        run(args(&[
            "--metadata-dir",
            md_s,
            "init",
            root.to_str().unwrap()
        ])),
        0
    );
    let url = format!("{}metadata/", server.base);
    assert_eq!(
        run(args(&[
            "--metadata-url",
            &url,
            "--metadata-dir",
            md_s,
            "refresh"
        ])),
        1
    );
    assert_eq!(file_names(&md), ["root.json"]);
}

#[test]
fn usage_errors_and_failures_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().to_str().unwrap();
    // Options after the sub-command are not accepted.
    assert_eq!(run(args(&["refresh", "--metadata-dir", md])), 1);
    assert_eq!(run(args(&["--metadata-dir", md, "frobnicate"])), 1);
    assert_eq!(run(args(&[])), 1);
    // refresh without --metadata-url, or without a trusted root.
    assert_eq!(run(args(&["--metadata-dir", md, "refresh"])), 1);
    assert_eq!(
        run(args(&[
            "--metadata-url",
            "http://127.0.0.1:9/",
            "--metadata-dir",
            md,
            "refresh"
        ])),
        1
    );
    // init with an invalid root writes nothing.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, b"{}").unwrap();
    let md2 = dir.path().join("m2");
    assert_eq!(
        run(args(&[
            "--metadata-dir",
            md2.to_str().unwrap(),
            "init",
            bad.to_str().unwrap()
        ])),
        1
    );
    assert!(!md2.join("root.json").exists());
}

#[test]
fn target_not_found_and_failed_download_exit_1_without_leftovers() {
    // Far-future expiry: this test runs at the real clock.
    let mut sim = Repo::new();
    for role in ["root", "timestamp", "snapshot", "targets"] {
        sim.value(role)["expires"] = serde_json::json!("2099-01-01T00:00:00Z");
    }
    sim.add_target("targets", "file", b"content");
    sim.publish_all();
    let server = HttpServer::start();
    for (url, bytes) in sim.fetcher.files.lock().unwrap().iter() {
        let path = url.strip_prefix("https://repo.test/").unwrap();
        server.put(path, bytes.clone());
    }
    // Substitute the target: its download must fail and leave nothing.
    server.put(
        &format!("targets/{}.file", sha256_hex(b"content")),
        b"CONTENT".to_vec(),
    );
    let dir = tempfile::tempdir().unwrap();
    let targets = tempfile::tempdir().unwrap();
    let md = dir.path().to_str().unwrap();
    std::fs::write(dir.path().join("root.json"), sim.root_v1()).unwrap();
    let murl = format!("{}metadata/", server.base);
    let turl = format!("{}targets/", server.base);
    let download = |name: &str| {
        run(args(&[
            "--metadata-url",
            &murl,
            "--metadata-dir",
            md,
            "--target-name",
            name,
            "--target-dir",
            targets.path().to_str().unwrap(),
            "--target-base-url",
            &turl,
            "download",
        ]))
    };
    assert_eq!(download("missing"), 1);
    assert_eq!(download("file"), 1);
    assert!(file_names(targets.path()).is_empty());
    let names = file_names(dir.path());
    assert!(names.iter().all(|n| n.ends_with(".json")), "{names:?}");
}

#[test]
fn http_fetcher_maps_404_and_enforces_the_limit() {
    use rota_tuf::{Fetch, FetchError, HttpFetcher};
    let server = HttpServer::start();
    server.put("f", vec![7u8; 100]);
    let fetcher = HttpFetcher::new(reqwest::blocking::Client::new());
    assert_eq!(
        fetcher
            .fetch(&format!("{}f", server.base), 100)
            .unwrap()
            .len(),
        100
    );
    assert_eq!(
        fetcher.fetch(&format!("{}f", server.base), 99),
        Err(FetchError::TooLarge)
    );
    assert_eq!(
        fetcher.fetch(&format!("{}missing", server.base), 99),
        Err(FetchError::NotFound)
    );
}
