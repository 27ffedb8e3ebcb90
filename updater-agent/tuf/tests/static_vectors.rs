//! The two real repositories of tuf-conformance's `test_static_repository`
//! (../shared/vectors/tuf-conformance-static): accepted at their recorded time with the
//! exact request sequence and a byte-exact metadata directory, refused once expired.

mod support;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rota_tuf::{Client, Config, Error};
use support::*;

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/tuf-conformance-static")
}

/// The `faketime` file's `YYYY-MM-DD HH:MM:SS+00:00`.
fn faketime(repo: &Path) -> SystemTime {
    let text = std::fs::read_to_string(repo.join("faketime")).unwrap();
    let text = text.trim();
    assert!(text.ends_with("+00:00"), "{text}");
    at(unix_of(&format!(
        "{}Z",
        text.trim_end_matches("+00:00").replace(' ', "T")
    )))
}

struct Run {
    fetcher: MemFetcher,
    dir: tempfile::TempDir,
    targets: tempfile::TempDir,
    repo: PathBuf,
}

fn setup(name: &str) -> Run {
    let repo = vectors().join(name);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo.join("initial_root.json"), dir.path().join("root.json")).unwrap();
    Run {
        fetcher: dir_fetcher(&repo),
        dir,
        targets: tempfile::tempdir().unwrap(),
        repo,
    }
}

impl Run {
    fn client(&self, start: SystemTime) -> Result<Client<MemFetcher>, Error> {
        Client::new(
            self.dir.path(),
            Config::new(METADATA_URL, TARGETS_URL),
            self.fetcher.clone(),
            start,
        )
    }

    /// CLI `refresh` then `download TARGETPATH`, as two invocations.
    fn refresh_and_download(&self, start: SystemTime) -> Result<PathBuf, Error> {
        self.client(start)?.refresh()?;
        let mut client = self.client(start)?;
        let target = std::fs::read_to_string(self.repo.join("targetpath")).unwrap();
        let info = client.target_info(target.trim())?;
        client.download_target(&info, self.targets.path())
    }

    fn metadata(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.repo.join("metadata").join(file)).unwrap()
    }

    fn local(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(file)).unwrap()
    }
}

#[test]
fn sigstore_passes_at_faketime_with_exact_requests_and_files() {
    let run = setup("sigstore-root-signing");
    let path = run.refresh_and_download(faketime(&run.repo)).unwrap();
    assert_eq!(
        run.fetcher.take_log(),
        [
            // refresh
            "13.root.json",
            "timestamp.json",
            "159.snapshot.json",
            "11.targets.json",
            // download: implicit refresh, local snapshot and targets are valid
            "13.root.json",
            "timestamp.json",
            "targets/f44a1b88128e55ebfb62189becbc0fa48d4ec9915c65ac54ba0e46a008b12d5b.trusted_root.json",
        ]
    );
    // Byte-exact trusted metadata, nothing else; registry.npmjs.org was never needed.
    assert_eq!(
        file_names(run.dir.path()),
        [
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ]
    );
    assert_eq!(
        run.local("root.json"),
        std::fs::read(run.repo.join("initial_root.json")).unwrap()
    );
    assert_eq!(run.local("root.json"), run.metadata("12.root.json"));
    assert_eq!(run.local("timestamp.json"), run.metadata("timestamp.json"));
    assert_eq!(
        run.local("snapshot.json"),
        run.metadata("159.snapshot.json")
    );
    assert_eq!(run.local("targets.json"), run.metadata("11.targets.json"));
    let content = std::fs::read(&path).unwrap();
    assert_eq!(path.file_name().unwrap(), "trusted_root.json");
    assert_eq!(
        sha256_hex(&content),
        "f44a1b88128e55ebfb62189becbc0fa48d4ec9915c65ac54ba0e46a008b12d5b"
    );

    // A second download finds the cached target valid: no target request.
    run.refresh_and_download(faketime(&run.repo)).unwrap();
    let log = run.fetcher.take_log();
    assert!(log.iter().all(|u| !u.starts_with("targets/")), "{log:?}");
}

#[test]
fn tuf_on_ci_passes_at_faketime_with_dir_hash_file_target_url() {
    let run = setup("tuf-on-ci-0.11");
    let path = run.refresh_and_download(faketime(&run.repo)).unwrap();
    assert_eq!(
        run.fetcher.take_log(),
        [
            "2.root.json",
            "timestamp.json",
            "2.snapshot.json",
            "1.targets.json",
            "2.root.json",
            "timestamp.json",
            // Lazily, on the search path of delegatedrole/artifact.
            "2.delegatedrole.json",
            // dir/HASH.file, not HASH.dir/file (tough 0.24).
            "targets/delegatedrole/45f337ee451b4c098d121d09cc224bacc7794503ac58a47a78cfe7ebefb7fab3.artifact",
        ]
    );
    assert_eq!(
        file_names(run.dir.path()),
        [
            "delegatedrole.json",
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ]
    );
    assert_eq!(run.local("root.json"), run.metadata("1.root.json"));
    assert_eq!(run.local("timestamp.json"), run.metadata("timestamp.json"));
    assert_eq!(run.local("snapshot.json"), run.metadata("2.snapshot.json"));
    assert_eq!(run.local("targets.json"), run.metadata("1.targets.json"));
    assert_eq!(
        run.local("delegatedrole.json"),
        run.metadata("2.delegatedrole.json")
    );
    assert_eq!(path.file_name().unwrap(), "delegatedrole%2Fartifact");
    assert_eq!(file_names(run.targets.path()), ["delegatedrole%2Fartifact"]);
}

#[test]
fn sigstore_is_refused_at_the_real_time() {
    let run = setup("sigstore-root-signing");
    let err = run
        .client(SystemTime::now())
        .unwrap()
        .refresh()
        .unwrap_err();
    // The recorded timestamp expired days after it was downloaded.
    assert!(
        matches!(&err, Error::Expired { role, .. } if role == "timestamp" || role == "root"),
        "{err}"
    );
    // Nothing but the initial root was trusted.
    assert_eq!(file_names(run.dir.path()), ["root.json"]);
}

#[test]
fn tuf_on_ci_is_valid_until_2044_and_refused_after() {
    // The vectors' README: "Should stay valid until 2044"; the real clock passes today.
    let run = setup("tuf-on-ci-0.11");
    run.refresh_and_download(SystemTime::now()).unwrap();

    // Its first file to expire is root, at 2044-08-10T10:05:04Z: one second before, the
    // repository is still valid; at that second (`start >= expires`) it is refused.
    let run = setup("tuf-on-ci-0.11");
    run.refresh_and_download(at(unix_of("2044-08-10T10:05:03Z")))
        .unwrap();
    let run = setup("tuf-on-ci-0.11");
    let err = run
        .client(at(unix_of("2044-08-10T10:05:04Z")))
        .unwrap()
        .refresh()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Expired { role, .. } if role == "root"),
        "{err}"
    );
    // Refused right after the root step (§5.3.10): no timestamp is fetched.
    assert_eq!(run.fetcher.take_log(), ["2.root.json"]);
}

/// Variants of a real file: one flipped byte inside `signed` breaks the signature; key
/// order and whitespace do not matter (canonical form); a duplicate key is a parse error.
#[test]
fn vector_variants_signature_canonical_form_and_duplicate_keys() {
    let variant = |edit: &dyn Fn(String) -> String| -> Result<(), Error> {
        let run = setup("tuf-on-ci-0.11");
        let url = format!("{METADATA_URL}timestamp.json");
        let text = String::from_utf8(run.fetcher.get(&url).unwrap()).unwrap();
        run.fetcher.put(&url, edit(text).into_bytes());
        run.client(faketime(&run.repo))?.refresh()
    };
    let flipped = variant(&|t| t.replace("2044-08-10T10:21:51Z", "2044-08-10T10:21:52Z"));
    assert!(
        matches!(flipped, Err(Error::Signature { .. })),
        "{flipped:?}"
    );
    let reformatted = variant(&|t| {
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        // Compact, and `signed` members in another order.
        let signed = v["signed"].as_object().unwrap();
        let mut members: Vec<String> = signed
            .iter()
            .map(|(k, val)| format!("{}:{}", serde_json::to_string(k).unwrap(), val))
            .collect();
        members.reverse();
        format!(
            "{{\"signed\":{{{}}},  \"signatures\" : {}}}",
            members.join(" , "),
            v["signatures"]
        )
    });
    assert!(reformatted.is_ok(), "{reformatted:?}");
    let duplicate = variant(&|t| t.replacen("\"_type\"", "\"version\": 2, \"_type\"", 1));
    assert!(
        matches!(duplicate, Err(Error::Parse { .. })),
        "{duplicate:?}"
    );
}
