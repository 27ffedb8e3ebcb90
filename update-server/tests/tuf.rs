//! The server's TUF repository as real clients see it: python-tuf's `ngclient` (PyPI
//! `tuf`) refreshes it and downloads a target, follows a root rotation, and refuses what a
//! compromised or frozen server serves — a target the offline keys never signed, bytes
//! that differ from the signed hash, an expired timestamp, replayed old metadata.
//!
//! Needs `python3` with `tuf` (`pip install tuf`): without it the tests fail when
//! `CI=true` and otherwise print a notice and pass.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode};
use rota_repo::{OnlineSigner, RepoKey, RoleKeys, RootParams, TargetFile};
use rota_server::db::Db;
use serde_json::Value;
use support::server::{CLASS, Keys, TestServer, far_future};

fn python_tuf_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import tuf.ngclient"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 with python-tuf is needed for this test in CI (pip install tuf)"
        );
        eprintln!("NOTICE: python-tuf (pip install tuf) not found; skipping");
    }
    ok
}

/// A python-tuf client with its own metadata cache (so rollback checks apply across runs).
struct PythonClient {
    work: tempfile::TempDir,
    trusted_root: PathBuf,
}

impl PythonClient {
    fn new(root_v1: &[u8]) -> PythonClient {
        let work = tempfile::tempdir().unwrap();
        let trusted_root = work.path().join("trusted-root.json");
        std::fs::write(&trusted_root, root_v1).unwrap();
        PythonClient { work, trusted_root }
    }

    /// Refreshes and downloads `target`; the script's JSON line.
    fn fetch(&self, server: &TestServer, target: &str) -> Value {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../repo/tests/python/tuf_client.py");
        let out = Command::new("python3")
            .arg(script)
            .arg(server.url("/tuf/metadata/"))
            .arg(server.url("/tuf/targets/"))
            .arg(&self.trusted_root)
            .arg(target)
            .arg(self.work.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|_| {
            panic!(
                "python-tuf printed no result: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

async fn start() -> (Keys, TestServer, Vec<u8>) {
    let keys = Keys::new();
    let server = TestServer::start(&keys, None).await;
    let root = keys.root_v1();
    server.init_repo_with_root(&keys, &root).await;
    (keys, server, root)
}

fn target_name(class: &str, version: u64) -> String {
    format!("fw-{class}-{version}.bin")
}

async fn db(server: &TestServer) -> Db {
    Db::open_sqlite_in(&server.data_dir).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_tuf_refreshes_and_downloads_a_target() {
    if !python_tuf_available() {
        return;
    }
    let (keys, server, root) = start().await;
    server.publish(&keys, CLASS, 7, b"firmware seven").await;
    let client = PythonClient::new(&root);
    let result = client.fetch(&server, &target_name(CLASS, 7));
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["length"], 14);
    assert_eq!(result["custom"]["rota"]["version"], 7);
    assert_eq!(result["custom"]["rota"]["class_id"], CLASS);
    // A second release: the same client moves to the new snapshot and targets.
    server.publish(&keys, CLASS, 8, b"firmware eight").await;
    let result = client.fetch(&server, &target_name(CLASS, 8));
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(
        result["targets_version"], 3,
        "empty v1, then one version per release"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_tuf_follows_a_root_rotation() {
    if !python_tuf_available() {
        return;
    }
    let (keys, server, root_v1) = start().await;
    server.publish(&keys, CLASS, 2, b"fw").await;
    let new_root_key = RepoKey::generate().unwrap();
    let params = RootParams {
        root: RoleKeys::new(vec![new_root_key.public().clone()], 1),
        targets: RoleKeys::new(vec![keys.targets.public().clone()], 1),
        snapshot: RoleKeys::new(vec![keys.snapshot.public().clone()], 1),
        timestamp: RoleKeys::new(vec![keys.timestamp.public().clone()], 1),
        expires: far_future(),
    };
    // Signed by keys the trusted root does not list: refused (TUF §5.3.4 (1)).
    let stranger = RepoKey::generate().unwrap();
    let forged = rota_repo::rotate_root(&root_v1, &params, &[&stranger], &[&new_root_key]);
    if let Ok(forged) = forged {
        let resp = server
            .http
            .put(server.url("/api/v1/repo/root"))
            .bearer_auth(&server.admin)
            .body(forged.bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
    let v2 = rota_repo::rotate_root(&root_v1, &params, &[&keys.root], &[&new_root_key]).unwrap();
    let put = |bytes: Vec<u8>| {
        server
            .http
            .put(server.url("/api/v1/repo/root"))
            .bearer_auth(&server.admin)
            .body(bytes)
            .send()
    };
    let resp = put(v2.bytes.clone()).await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    // The same version again is not N+1 (TUF §5.3.5).
    assert_eq!(
        put(v2.bytes).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    // A client shipped with root v1 walks to v2.
    let result = PythonClient::new(&root_v1).fetch(&server, &target_name(CLASS, 2));
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["root_version"], 2);
    server.stop().await;
}

/// A compromised server cannot add a target: it has no targets key, offline-signed
/// targets from any other key are refused at upload, a name the targets do not list is
/// refused by the client, and bytes that differ from the signed hash are refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_the_offline_keys_did_not_sign_is_refused() {
    if !python_tuf_available() {
        return;
    }
    let (keys, server, root) = start().await;
    server.publish(&keys, CLASS, 2, b"genuine firmware").await;
    let malware = b"malware".to_vec();
    server.upload(&malware).await;
    let rogue_key = RepoKey::generate().unwrap();
    let current = server.current_targets().await;
    let rogue = rota_repo::sign_targets(
        Some(&current),
        &[TargetFile::from_bytes(
            "evil.bin",
            &malware,
            serde_json::json!({}),
        )],
        &[&rogue_key],
        far_future(),
    )
    .unwrap();
    let resp = server
        .http
        .put(server.url("/api/v1/repo/targets"))
        .bearer_auth(&server.admin)
        .body(rogue.bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let reason: Value = resp.json().await.unwrap();
    assert!(
        reason["error"].as_str().unwrap().contains("threshold")
            || reason["error"].as_str().unwrap().contains("sign"),
        "{reason}"
    );

    let client = PythonClient::new(&root);
    // The artifact store holds the malware, but no signed targets list it.
    let result = client.fetch(&server, "evil.bin");
    assert_eq!(result["ok"], false, "{result}");
    // Swap the bytes of a listed target in the store: the client checks the signed hash.
    let genuine_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"genuine firmware"));
    let stored = server.data_dir.join("artifacts/targets").join(&genuine_sha);
    std::fs::write(&stored, b"genuine firmwarX").unwrap();
    let result = client.fetch(&server, &target_name(CLASS, 2));
    assert_eq!(result["ok"], false, "{result}");
    assert!(
        result["error"].as_str().unwrap().contains("Length")
            || result["error"].as_str().unwrap().contains("hash"),
        "{result}"
    );
    server.stop().await;
}

/// A frozen server (one that stopped re-signing, here: started without its online keys)
/// serves an expired timestamp, and clients refuse it; a server with its keys re-signs
/// the timestamp within a tick, after which clients refresh again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_timestamp_is_refused_and_the_server_re_signs_in_time() {
    if !python_tuf_available() {
        return;
    }
    let keys = Keys::new();
    let data = tempfile::tempdir().unwrap();
    let root = keys.root_v1();
    let server = TestServer::start_in(&keys, data.path(), None, |_| {}).await;
    server.init_repo_with_root(&keys, &root).await;
    server.publish(&keys, CLASS, 2, b"fw").await;
    server.stop().await;

    let db = Db::open_sqlite_in(data.path()).await.unwrap();
    let latest = |role: &'static str| {
        let db = db.clone();
        async move {
            let row: (i64, String) = sqlx::query_as(
                "SELECT version, body FROM tuf_metadata WHERE role = $1 ORDER BY version DESC LIMIT 1",
            )
            .bind(role)
            .fetch_one(&db.read)
            .await
            .unwrap();
            row
        }
    };
    let (_, snapshot) = latest("snapshot").await;
    let (timestamp_version, _) = latest("timestamp").await;
    let expired = online_signer(&keys)
        .timestamp(
            snapshot.as_bytes(),
            timestamp_version as u64 + 1,
            SystemTime::now() - Duration::from_secs(60),
        )
        .unwrap();
    insert(&db, "timestamp", expired.version as i64, &expired.bytes, 0).await;

    let no_keys = data.path().join("no-online-keys");
    let frozen = TestServer::start_in(&keys, data.path(), None, |s| {
        s.tuf_online_keys = Some(no_keys)
    })
    .await;
    let result = PythonClient::new(&root).fetch(&frozen, &target_name(CLASS, 2));
    assert_eq!(result["ok"], false, "{result}");
    assert!(
        result["error"].as_str().unwrap().contains("Expired"),
        "{result}"
    );
    frozen.stop().await;

    let server = TestServer::start_in(&keys, data.path(), None, |_| {}).await;
    let mut fresh = false;
    for _ in 0..100 {
        if latest("timestamp").await.0 > expired.version as i64 {
            fresh = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fresh, "the server did not re-sign the expired timestamp");
    let result = PythonClient::new(&root).fetch(&server, &target_name(CLASS, 2));
    assert_eq!(result["ok"], true, "{result}");
    server.stop().await;
}

/// Replayed old metadata (a rollback attack): a client that has seen timestamp version N
/// refuses version N-1, even properly signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_old_metadata_is_refused() {
    if !python_tuf_available() {
        return;
    }
    let (keys, server, root) = start().await;
    server.publish(&keys, CLASS, 2, b"fw two").await;
    let client = PythonClient::new(&root);
    assert_eq!(client.fetch(&server, &target_name(CLASS, 2))["ok"], true);
    server.publish(&keys, CLASS, 3, b"fw three").await;
    assert_eq!(client.fetch(&server, &target_name(CLASS, 3))["ok"], true);
    // The attacker replays the older timestamp, snapshot and targets.
    let db = db(&server).await;
    for role in ["timestamp", "snapshot", "targets"] {
        sqlx::query("DELETE FROM tuf_metadata WHERE role = $1 AND version = (SELECT MAX(version) FROM tuf_metadata WHERE role = $1)")
            .bind(role)
            .execute(&db.write)
            .await
            .unwrap();
    }
    let result = client.fetch(&server, &target_name(CLASS, 2));
    assert_eq!(result["ok"], false, "{result}");
    assert!(
        result["error"].as_str().unwrap().contains("version"),
        "{result}"
    );
    // A fresh client (no history) would accept the older but valid state: the protection
    // is the client's memory, which is why devices keep their TUF metadata.
    assert_eq!(
        PythonClient::new(&root).fetch(&server, &target_name(CLASS, 2))["ok"],
        true
    );
    server.stop().await;
}

/// Metadata is served under consistent-snapshot names with ETags; targets with Range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_targets_are_served_with_etags_and_ranges() {
    let (keys, server, _root) = start().await;
    let image: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    server.publish(&keys, CLASS, 2, &image).await;
    for file in [
        "1.root.json",
        "timestamp.json",
        "2.snapshot.json",
        "2.targets.json",
    ] {
        let resp = server
            .http
            .get(server.url(&format!("/tuf/metadata/{file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{file}");
        let tag = resp.headers()["etag"].to_str().unwrap().to_string();
        let resp = server
            .http
            .get(server.url(&format!("/tuf/metadata/{file}")))
            .header("if-none-match", &tag)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{file}");
    }
    assert_eq!(
        server
            .http
            .get(server.url("/tuf/metadata/3.targets.json"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&image));
    let url = server.url(&format!("/tuf/targets/{sha}.{}", target_name(CLASS, 2)));
    let resp = server
        .http
        .get(&url)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 1000-1999/{}", image.len())
    );
    assert_eq!(&resp.bytes().await.unwrap()[..], &image[1000..2000]);
    let resp = server
        .http
        .get(&url)
        .header("range", "bytes=99000-")
        .header("if-range", format!("\"{sha}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&resp.bytes().await.unwrap()[..], &image[99000..]);
    let resp = server
        .http
        .get(&url)
        .header("range", "bytes=200000-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let resp = server
        .http
        .get(&url)
        .header("range", "bytes=0-9")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "a stale If-Range gets the whole file"
    );
    assert_eq!(resp.bytes().await.unwrap().len(), image.len());
    let _ = Method::GET;
    server.stop().await;
}

/// Signs and publishes targets metadata adding plain `files` (no rota fields).
async fn list_targets(server: &TestServer, keys: &Keys, files: &[(&str, &[u8])]) {
    let add: Vec<TargetFile> = files
        .iter()
        .map(|(name, bytes)| TargetFile::from_bytes(*name, bytes, serde_json::json!({})))
        .collect();
    let current = server.current_targets().await;
    let signed =
        rota_repo::sign_targets(Some(&current), &add, &[&keys.targets], far_future()).unwrap();
    server.put_targets(&signed.bytes).await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

async fn get(server: &TestServer, path: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = server.http.get(server.url(path));
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.unwrap()
}

/// Uploading needs a management token, but downloading is public: an upload that no
/// signed targets metadata lists must not be downloadable by its hash, or the server
/// hosts whatever a leaked release token uploads. Once listed, it is served under its
/// listed name only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_upload_is_not_served() {
    let (keys, server, _root) = start().await;
    let bytes = b"uploaded, never signed".to_vec();
    server.upload(&bytes).await;
    let sha = sha256_hex(&bytes);
    let path = format!("/tuf/targets/{sha}.fw.bin");
    assert_eq!(
        get(&server, &path, None).await.status(),
        StatusCode::NOT_FOUND
    );

    list_targets(&server, &keys, &[("fw.bin", &bytes)]).await;
    let resp = get(&server, &path, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&resp.bytes().await.unwrap()[..], &bytes[..]);
    let elsewhere = format!("/tuf/targets/{sha}.not-its-name.bin");
    assert_eq!(
        get(&server, &elsewhere, None).await.status(),
        StatusCode::NOT_FOUND
    );
    server.stop().await;
}

/// An upload that no signed targets metadata lists stays for the grace period (so a
/// release engineer can upload before signing), then it is deleted; listed files stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_upload_is_swept_after_the_grace_period() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let listed = b"listed".to_vec();
    let unlisted = b"never listed".to_vec();
    let file = |bytes: &[u8]| dir.path().join("artifacts/targets").join(sha256_hex(bytes));

    // The default grace period: both are kept.
    let server = TestServer::start_in(&keys, dir.path(), None, |_| {}).await;
    server.init_repo(&keys).await;
    server.upload(&listed).await;
    list_targets(&server, &keys, &[("listed.bin", &listed)]).await;
    server.upload(&unlisted).await;
    server.stop().await;
    assert!(file(&unlisted).exists() && file(&listed).exists());

    // No grace period: the next sweep deletes the unlisted upload, file and row.
    let server = TestServer::start_in(&keys, dir.path(), None, |s| {
        s.unlisted_artifact_grace = Some(0);
    })
    .await;
    // The sweep deletes the file, then its row: wait for both.
    let db = db(&server).await;
    let rows = || async {
        sqlx::query_as::<_, (String,)>("SELECT sha256 FROM artifacts")
            .fetch_all(&db.read)
            .await
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while file(&unlisted).exists() || rows().await.len() != 1 {
        assert!(std::time::Instant::now() < deadline, "never swept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(file(&listed).exists(), "a listed file is never swept");
    assert_eq!(rows().await, [(sha256_hex(&listed),)]);
    let path = format!("/tuf/targets/{}.listed.bin", sha256_hex(&listed));
    assert_eq!(get(&server, &path, None).await.status(), StatusCode::OK);
    server.stop().await;
}

/// An empty file has no byte a range could select and no 206 can carry zero bytes: every
/// range on it, the suffix `bytes=-1` included, answers 416 with `Content-Range: bytes */0`
/// (RFC 9110 §15.5.17), never a 500; without Range the empty file is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suffix_range_on_an_empty_artifact_answers_416_not_a_server_error() {
    let (keys, server, _root) = start().await;
    let sha = sha256_hex(b"");
    // reqwest sends no Content-Length for an empty body; the upload needs one.
    let resp = server
        .http
        .put(server.url(&format!("/api/v1/artifacts/{sha}")))
        .bearer_auth(&server.admin)
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    list_targets(&server, &keys, &[("empty.bin", b"")]).await;
    let path = format!("/tuf/targets/{sha}.empty.bin");
    let resp = get(&server, &path, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-length"], "0");
    assert!(resp.bytes().await.unwrap().is_empty());
    for range in ["bytes=-1", "bytes=0-", "bytes=-0"] {
        let resp = get(&server, &path, Some(range)).await;
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(resp.headers()["content-range"], "bytes */0", "{range}");
    }
    server.stop().await;
}

fn online_signer(keys: &Keys) -> OnlineSigner {
    let copy = |k: &RepoKey| RepoKey::from_pkcs8_pem(&k.to_pkcs8_pem().unwrap()).unwrap();
    OnlineSigner::new(copy(&keys.snapshot), copy(&keys.timestamp))
}

async fn insert(db: &Db, role: &str, version: i64, body: &[u8], expires_at: i64) {
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body));
    sqlx::query("INSERT INTO tuf_metadata (role, version, body, sha256, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, 0)")
        .bind(role)
        .bind(version)
        .bind(String::from_utf8(body.to_vec()).unwrap())
        .bind(sha)
        .bind(expires_at)
        .execute(&db.write)
        .await
        .unwrap();
}
