//! python-tuf's `ngclient` (PyPI `tuf`) loads a rota repository over HTTP: the metadata
//! is TUF 1.0 as the reference client reads it, not only as tough does.
//!
//! Needs `python3` with `tuf` installed (`pip install tuf`); it installs nothing itself.
//! Without it the test fails when `CI=true` and otherwise prints a notice and passes.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use common::{IMAGE, Repo, keys, params};
use serde_json::Value;

/// Whether python-tuf can be imported; panics in CI when it cannot.
fn python_tuf_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import tuf.ngclient"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("python3 with python-tuf is needed for this test in CI (pip install tuf)");
        }
        eprintln!(
            "NOTICE: python3 with python-tuf (pip install tuf) not found; skipping the python-tuf interop test"
        );
    }
    ok
}

/// `python3 -m http.server` on an ephemeral loopback port, stopped on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        // "Serving HTTP on 127.0.0.1 port 41235 (http://127.0.0.1:41235/) ..."
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("unexpected http.server banner: {line:?}");
        };
        Server { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}/", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs tests/python/tuf_client.py against the repository in `dir`, trusting `root`.
fn python_client(dir: &Path, root: &[u8], target: &str) -> Value {
    let server = Server::start(dir);
    let work = tempfile::tempdir().unwrap();
    let root_path = work.path().join("trusted-root.json");
    std::fs::write(&root_path, root).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/tuf_client.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(server.url("metadata"))
        .arg(server.url("targets"))
        .arg(&root_path)
        .arg(target)
        .arg(work.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "tuf_client.py printed no result\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn python_tuf_loads_a_rotated_repository_and_downloads_a_target() {
    if !python_tuf_available() {
        return;
    }
    let mut repo = Repo::build();
    // The client trusts root v1 and must walk to v2, signed by 2 of the old 3 keys and
    // 2 of the new 3 (TUF 1.0.34 §5.3).
    let new_keys = keys(3);
    let v2 = rota_repo::rotate_root(
        repo.root(),
        &params(&new_keys, 2, &repo.targets_key, &repo.online),
        &[&repo.root_keys[0], &repo.root_keys[1]],
        &[&new_keys[1], &new_keys[2]],
    )
    .unwrap();
    repo.roots.push(v2);
    // A second timestamp version, as a running server would have by now.
    repo.timestamp = repo
        .online
        .timestamp(&repo.snapshot.bytes, 2, common::in_days(1))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    repo.write(dir.path());

    let result = python_client(dir.path(), repo.root(), IMAGE);
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["root_version"], 2);
    assert_eq!(result["timestamp_version"], 2);
    assert_eq!(result["snapshot_version"], 1);
    assert_eq!(result["targets_version"], 1);
    let (_, image) = &repo.files[0];
    assert_eq!(result["length"], image.len());
    assert_eq!(result["sha256"], hex::encode(common::sha256(image)));
    assert_eq!(result["custom"]["rota"]["kind"], "image");
    assert_eq!(result["custom"]["rota"]["class_id"], common::CLASS);
}

#[test]
fn python_tuf_refuses_an_expired_timestamp_and_a_swapped_target() {
    if !python_tuf_available() {
        return;
    }
    let mut repo = Repo::build();
    let good_timestamp = repo.timestamp.clone();
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
    let result = python_client(dir.path(), repo.root(), IMAGE);
    assert_eq!(result["ok"], false, "{result}");
    let error = result["error"].as_str().unwrap();
    assert!(error.starts_with("ExpiredMetadataError"), "{error}");

    // A fresh timestamp, but the server serves other bytes under the image's hash name.
    Repo::write_timestamp(dir.path(), &good_timestamp);
    let (name, bytes) = &repo.files[0];
    let mut evil = bytes.clone();
    evil[0] ^= 1;
    for path in rota_repo::layout::target_paths(name, &common::sha256(bytes)) {
        std::fs::write(dir.path().join("targets").join(path), &evil).unwrap();
    }
    let result = python_client(dir.path(), repo.root(), IMAGE);
    assert_eq!(result["ok"], false, "{result}");
    let error = result["error"].as_str().unwrap();
    assert!(error.starts_with("LengthOrHashMismatchError"), "{error}");
}
