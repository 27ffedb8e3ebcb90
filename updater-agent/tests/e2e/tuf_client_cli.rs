//! `rota-agent tuf-client`, the real binary, with the tuf-conformance command line,
//! against the static repositories of ../shared/vectors/tuf-conformance-static served over
//! loopback. (The client's step-by-step tests, at the repositories' recorded times, are
//! rota-tuf's own.)

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

const AGENT: &str = env!("CARGO_BIN_EXE_rota-agent");

fn vectors(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/vectors/tuf-conformance-static")
        .join(name)
}

/// Serves `root`'s files over HTTP/1.0, one request per connection, 404 for the rest
/// (as tuf-conformance's simulator does).
fn serve(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            let file = root.join(&path);
            let mut out = &stream;
            let safe = !path.split('/').any(|s| s == "..");
            match std::fs::read(&file) {
                Ok(body) if safe && file.is_file() => {
                    let _ = write!(
                        out,
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = out.write_all(&body);
                }
                _ => {
                    let _ = write!(out, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                }
            }
        }
    });
    url
}

fn tuf_client(args: &[&str]) -> (i32, String) {
    let out = Command::new(AGENT)
        .arg("tuf-client")
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_binary_refreshes_and_downloads_a_valid_repository_and_caches_the_target() {
    let repo = vectors("tuf-on-ci-0.11");
    let base = serve(repo.clone());
    let work = tempfile::tempdir().unwrap();
    let meta = work.path().join("metadata");
    let targets = work.path().join("targets");
    std::fs::create_dir_all(&targets).unwrap();
    let (meta_s, targets_s) = (meta.to_str().unwrap(), targets.to_str().unwrap());
    let root = repo.join("initial_root.json");
    assert_eq!(
        tuf_client(&["--metadata-dir", meta_s, "init", root.to_str().unwrap()]).0,
        0
    );
    let metadata_url = format!("{base}/metadata/");
    let target_url = format!("{base}/targets/");
    let (code, err) = tuf_client(&[
        "--metadata-url",
        &metadata_url,
        "--metadata-dir",
        meta_s,
        "refresh",
    ]);
    assert_eq!(code, 0, "{err}");
    let download = [
        "--metadata-url",
        &metadata_url,
        "--metadata-dir",
        meta_s,
        "--target-name",
        "delegatedrole/artifact",
        "--target-dir",
        targets_s,
        "--target-base-url",
        &target_url,
        "download",
    ];
    let (code, err) = tuf_client(&download);
    assert_eq!(code, 0, "{err}");
    let got = std::fs::read(targets.join("delegatedrole%2Fartifact")).unwrap();
    assert_eq!(
        got,
        // Served under its consistent-snapshot name, dir/HASH.file (TUF 1.0.34 §5.7.3).
        std::fs::read(repo.join(
            "targets/delegatedrole/45f337ee451b4c098d121d09cc224bacc7794503ac58a47a78cfe7ebefb7fab3.artifact"
        ))
        .unwrap()
    );
    // Exactly the trusted metadata, byte for byte as served, under non-versioned names.
    let mut names: Vec<_> = std::fs::read_dir(&meta)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "delegatedrole.json",
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ]
    );
    assert_eq!(
        std::fs::read(meta.join("snapshot.json")).unwrap(),
        std::fs::read(repo.join("metadata/2.snapshot.json")).unwrap()
    );
    // Usage errors are failures too: an option after the sub-command.
    assert_eq!(
        tuf_client(&[
            "--metadata-dir",
            meta_s,
            "refresh",
            "--metadata-url",
            &metadata_url
        ])
        .0,
        1
    );
}

#[test]
fn the_binary_refuses_an_expired_repository_at_the_real_time() {
    let repo = vectors("sigstore-root-signing");
    let base = serve(repo.clone());
    let work = tempfile::tempdir().unwrap();
    let meta = work.path().join("metadata");
    let meta_s = meta.to_str().unwrap();
    let root = repo.join("initial_root.json");
    assert_eq!(
        tuf_client(&["--metadata-dir", meta_s, "init", root.to_str().unwrap()]).0,
        0
    );
    let metadata_url = format!("{base}/metadata/");
    let (code, err) = tuf_client(&[
        "--metadata-url",
        &metadata_url,
        "--metadata-dir",
        meta_s,
        "refresh",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("expired"), "{err}");
    // Nothing but the trusted root was kept.
    let names: Vec<_> = std::fs::read_dir(&meta)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["root.json"]);
}
