//! The `rota` commands that talk to the update server, run as a user runs them against a
//! real rota-server on a loopback port (in this test process, on its own runtime):
//! repository push, device provisioning, release publishing, rollouts, device lifecycle,
//! and the refusals, each a one-line error.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use rota_protocol::api::{CheckInQuery, LastResult, SlotState};
use rota_protocol::{Nonce, sign_request};
use rota_server::config::Settings;
use serde_json::Value;
use tempfile::TempDir;

mod common;
use common::{Run, rota};

const VENDOR: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe";
const CLASS: &str = "8a1c3c1e-3b2a-4f5e-9d3a-0c1b2a3d4e5f";

/// A rota-server in this process, on its own Tokio runtime in a thread, stopped on drop.
struct Server {
    base: String,
    data: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves from `data` (which holds the online keys and the device CA), after waiting
    /// for it to answer.
    fn start(data: &Path) -> Server {
        Self::start_with(data, |_| {})
    }

    fn start_with(data: &Path, adjust: impl FnOnce(&mut Settings)) -> Server {
        let mut settings = Settings {
            data_dir: Some(data.to_path_buf()),
            tick: Some(50),
            ..Default::default()
        };
        adjust(&mut settings);
        let config = settings.resolve(None).unwrap();
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                address_tx.send(listener.local_addr().unwrap()).unwrap();
                rota_server::serve(config, listener, async move {
                    let _ = stop.await;
                })
                .await
                .unwrap();
            });
        });
        let address = address_rx.recv().unwrap();
        let base = format!("http://{address}");
        let http = reqwest::blocking::Client::new();
        let ready = (0..500).any(|_| {
            let up = http
                .get(format!("{base}/healthz"))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if !up {
                std::thread::sleep(Duration::from_millis(20));
            }
            up
        });
        assert!(ready, "the server did not come up");
        Server {
            base,
            data: data.to_path_buf(),
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    fn token_file(&self) -> String {
        self.data.join("admin.token").display().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A scratch directory with a TUF repository (REPO = repo), a factory CA (factory-ca.key),
/// a signed release (fw.bin, fw.suit, by release.key) and a running server whose data
/// directory (data/) holds the repository's online keys and the CA's public key.
struct Setup {
    dir: TempDir,
    server: Server,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        rota(path, &["repo", "init", "--dir", "repo"]).ok();
        rota(path, &["keygen", "--out", "factory-ca"]).ok();
        let data = server_data(path, "factory-ca.pub");
        rota(path, &["keygen", "--out", "release"]).ok();
        let image: Vec<u8> = (0..300 * 1024 + 17).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(path.join("fw.bin"), image).unwrap();
        sign(path, "fw.bin", "fw.suit", "7");
        let server = Server::start(&data);
        Setup { dir, server }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `rota ARGS --server URL --token-file DATA/admin.token`.
    fn rota(&self, args: &[&str]) -> Run {
        let token = self.server.token_file();
        let mut all = args.to_vec();
        all.extend_from_slice(&["--server", &self.server.base, "--token-file", &token]);
        rota(self.path(), &all)
    }

    fn push(&self) -> Run {
        self.rota(&["repo", "push", "--dir", "repo"]).ok()
    }

    fn publish(&self, extra: &[&str]) -> Run {
        let mut args = vec![
            "release",
            "publish",
            "--repo",
            "repo",
            "--image",
            "fw.bin",
            "--envelope",
            "fw.suit",
        ];
        args.extend_from_slice(extra);
        self.rota(&args)
    }

    fn provision(&self, id: &str, tags: &[&str]) -> Run {
        let mut args = vec![
            "device",
            "provision",
            "--ca-key",
            "factory-ca.key",
            "--id",
            id,
            "--class",
            CLASS,
            "--out",
            "devices",
        ];
        for tag in tags {
            args.extend_from_slice(&["--tag", tag]);
        }
        self.rota(&args)
    }

    /// A check-in signed with the device key `rota device provision` wrote.
    fn check_in(&self, id: &str) -> reqwest::StatusCode {
        let pem =
            std::fs::read_to_string(self.path().join("devices").join(format!("{id}.key"))).unwrap();
        let key = rota_protocol::SoftwareKey::from_pkcs8_pem(&pem).unwrap();
        let query = CheckInQuery {
            version: 1,
            slot: SlotState::Confirmed,
            last: Some(LastResult::None),
        };
        let path = query.path_and_query();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let headers =
            sign_request(&key, id, "GET", &path, &[], now, Nonce::random().unwrap()).unwrap();
        let mut request =
            reqwest::blocking::Client::new().get(format!("{}{path}", self.server.base));
        for (name, value) in headers.iter() {
            request = request.header(name, value);
        }
        request.send().unwrap().status()
    }
}

/// `rota sign` of `image` into `output` with sequence number `sequence`.
fn sign(dir: &Path, image: &str, output: &str, sequence: &str) {
    rota(
        dir,
        &[
            "sign",
            "--key",
            "release.key",
            "--image",
            image,
            "--vendor-id",
            VENDOR,
            "--class-id",
            CLASS,
            "--sequence",
            sequence,
            "--security-version",
            "2",
            "-o",
            output,
        ],
    )
    .ok();
}

/// The value after `label` on the line that starts with it.
fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|line| line.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in:\n{text}"))
        .trim()
        .to_string()
}

#[test]
fn a_release_goes_from_the_repository_to_a_rollout_and_devices_through_their_lifecycle() {
    let setup = Setup::new();

    // The repository goes live: root version 1, then an empty targets version 1.
    setup
        .push()
        .has("uploaded root versions 1")
        .has("published empty targets version 1")
        .has("the repository is live");
    // Pushing again changes nothing.
    setup
        .push()
        .has("the server already had root versions 1")
        .has("the server serves targets version 1 with 0 targets");
    // After a root rotation, only the new version goes up.
    rota(setup.path(), &["repo", "rotate", "--dir", "repo"]).ok();
    setup
        .push()
        .has("uploaded root versions 2")
        .has("the server already had root versions 1");

    // Three devices, registered as they are provisioned.
    for (id, tag) in [("dev-1", "eu"), ("dev-2", "eu"), ("dev-3", "us")] {
        setup
            .provision(id, &[tag])
            .ok()
            .has(&format!("registered device {id}"))
            .has("state provisioned");
        let key = setup.path().join(format!("devices/{id}.key"));
        let pem = std::fs::read_to_string(&key).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        #[cfg(unix)]
        {
            let mode = common::mode(&key);
            assert_eq!(mode, 0o600, "{id}.key has mode {mode:o}");
        }
        let cert: Value = serde_json::from_str(
            &std::fs::read_to_string(setup.path().join(format!("devices/{id}.cert.json"))).unwrap(),
        )
        .unwrap();
        assert!(cert["body"].is_string() && cert["signature"].is_string());
    }
    // Never overwritten.
    setup
        .provision("dev-1", &[])
        .fails_with("devices/dev-1.key already exists");
    // The device key works: the device's signed check-in is accepted (and activates it).
    assert_eq!(setup.check_in("dev-1"), reqwest::StatusCode::OK);

    // The release: class, version and security version from the envelope.
    let published = setup
        .publish(&["--trust-anchor", "release.pub"])
        .ok()
        .has("published fw.bin (307217 bytes) and fw.bin.suit")
        .has(&format!("class {CLASS}, version 7, security version 2"))
        .has("targets version 2");
    let release = field(&published.stdout, "release id:");
    let listed = setup.rota(&["release", "list", "--json"]).ok().json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], release.as_str());
    assert_eq!(listed[0]["target"], "fw.bin");
    assert_eq!(listed[0]["envelope_target"], "fw.bin.suit");
    assert_eq!(listed[0]["version"], 7);
    assert_eq!(listed[0]["security_version"], 2);
    assert_eq!(listed[0]["length"], 307217);
    setup.rota(&["release", "list"]).ok().has("fw.bin");
    // The targets are served as published: the envelope under its consistent name.
    let envelope = std::fs::read(setup.path().join("fw.suit")).unwrap();
    let sha = hex::encode(
        rota_repo::TargetFile::from_bytes("fw.bin.suit", &envelope, Value::Null).sha256,
    );
    let served = reqwest::blocking::get(format!(
        "{}/tuf/targets/{sha}.fw.bin.suit",
        setup.server.base
    ))
    .unwrap()
    .bytes()
    .unwrap();
    assert_eq!(served.as_ref(), envelope.as_slice());

    // A staged rollout of it.
    let created = setup
        .rota(&[
            "rollout",
            "create",
            "--release",
            &release,
            "--stages",
            "50%,100%",
            "--soak",
            "1d",
            "--device-timeout",
            "90m",
        ])
        .ok()
        .has("created rollout")
        // The soak keeps it at stage 1 for the test, even when stage 1 passes its gate.
        .has("device timeout 90m, soak 1d, 2 retries")
        .has("state     active at stage 1 of 2 (50%)");
    let rollout = field(&created.stdout, "created rollout")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let status = setup.rota(&["rollout", "status", &rollout]).ok();
    let status = status
        .has(&format!("rollout   {rollout}"))
        .has(&format!("release   {release}"))
        .has("selector  class 8a1c3c1e-3b2a-4f5e-9d3a-0c1b2a3d4e5f")
        .has("STAGE  TARGET")
        .has("IN PROGRESS  CONFIRMED  FAILED  TIMED OUT");
    assert!(
        status.stdout.lines().any(|l| l.starts_with("1*")),
        "{}",
        status.stdout
    );
    let json = setup
        .rota(&["rollout", "status", &rollout, "--json"])
        .ok()
        .json();
    assert_eq!(json["state"], "active");
    assert_eq!(json["current_stage"], 0);
    assert_eq!(
        json["stages"],
        serde_json::json!([{"percent": 50.0}, {"percent": 100.0}])
    );
    assert_eq!(json["selector"]["class_id"], CLASS);
    // Every rollout, one line each.
    setup
        .rota(&["rollout", "status"])
        .ok()
        .has(&rollout)
        .has("active");

    setup
        .rota(&["rollout", "pause", &rollout])
        .ok()
        .has(&format!("paused rollout {rollout}: it is now paused"));
    setup
        .rota(&["rollout", "status", &rollout])
        .ok()
        .has("state     paused");
    setup
        .rota(&["rollout", "resume", &rollout])
        .ok()
        .has("it is now active");
    setup
        .rota(&["rollout", "abort", &rollout])
        .ok()
        .has("it is now aborted");
    setup
        .rota(&["rollout", "status", &rollout])
        .ok()
        .has("state     aborted");
    // Watching an aborted rollout ends at once, and not as a success.
    setup
        .rota(&["rollout", "status", &rollout, "--watch"])
        .fails_with(&format!("rollout {rollout} was aborted"));
    // An aborted rollout stays aborted.
    setup
        .rota(&["rollout", "resume", &rollout])
        .fails_with(&format!("the server refused to resume rollout {rollout}: "));

    // The fleet.
    let devices = setup
        .rota(&["device", "list", "--class", CLASS, "--json"])
        .ok()
        .json();
    let devices = devices.as_array().unwrap();
    assert_eq!(devices.len(), 3);
    let state = |id: &str| {
        devices.iter().find(|d| d["id"] == id).unwrap()["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(state("dev-1"), "active");
    assert_eq!(state("dev-2"), "provisioned");
    let table = setup.rota(&["device", "list"]).ok().has("3 devices");
    assert!(table.stdout.contains("dev-3") && table.stdout.contains("us"));
    setup
        .rota(&[
            "device",
            "list",
            "--class",
            "0b2d4f6a-8c0e-4a1b-9c3d-5e7f9a1b3c5d",
        ])
        .ok()
        .has("no devices");
    // The fleet in numbers agrees with the list.
    let summary = setup
        .rota(&["device", "summary", "--class", CLASS, "--json"])
        .ok()
        .json();
    for state in ["active", "provisioned"] {
        let counted: u64 = summary["states"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["state"] == state)
            .map(|c| c["devices"].as_u64().unwrap())
            .sum();
        let listed = devices.iter().filter(|d| d["state"] == state).count() as u64;
        assert_eq!(counted, listed, "{state}: {summary}");
    }
    setup
        .rota(&["device", "summary"])
        .ok()
        .has("STATE")
        .has("active");
    setup
        .rota(&[
            "device",
            "summary",
            "--class",
            "0b2d4f6a-8c0e-4a1b-9c3d-5e7f9a1b3c5d",
        ])
        .ok()
        .has("no devices");

    // Attestation: a DICE device's certificate binds its DeviceID; a class's policy;
    // a device's verdict; a request for fresh evidence.
    let device_id_hex = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    std::fs::write(
        setup.path().join("device-id.pub"),
        format!("{device_id_hex}\n"),
    )
    .unwrap();
    setup
        .rota(&[
            "device",
            "provision",
            "--ca-key",
            "factory-ca.key",
            "--id",
            "dev-dice",
            "--class",
            CLASS,
            "--dice-device-id",
            "device-id.pub",
            "--out",
            "devices",
        ])
        .ok();
    let cert: rota_protocol::DeviceCertificate = serde_json::from_slice(
        &std::fs::read(setup.path().join("devices/dev-dice.cert.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        cert.claims_unverified().unwrap().dice_device_id.as_deref(),
        Some(device_id_hex)
    );
    setup
        .rota(&[
            "device",
            "provision",
            "--ca-key",
            "factory-ca.key",
            "--id",
            "dev-bad",
            "--class",
            CLASS,
            "--dice-device-id",
            "00",
            "--out",
            "devices",
        ])
        .fails_with("is not a DeviceID public key");
    setup
        .rota(&["device", "attestation-policy", "--class", CLASS])
        .ok()
        .has("attestation off; expected bootloaders: any");
    let bootloader = "ab".repeat(32);
    setup
        .rota(&[
            "device",
            "attestation-policy",
            "--class",
            CLASS,
            "--policy",
            "required",
            "--bootloader",
            &bootloader,
        ])
        .ok()
        .has(&format!(
            "attestation required; expected bootloaders: {bootloader}"
        ));
    setup
        .rota(&[
            "device",
            "attestation-policy",
            "--class",
            CLASS,
            "--policy",
            "required",
            "--bootloader",
            "xyz",
        ])
        .fails_with("is not 64 lowercase hex characters");
    setup
        .rota(&[
            "device",
            "attestation-policy",
            "--class",
            CLASS,
            "--policy",
            "off",
        ])
        .ok()
        .has("attestation off");
    setup
        .rota(&["device", "show", "dev-1"])
        .ok()
        .has("attestation         none");
    setup
        .rota(&["device", "attest", "dev-1"])
        .ok()
        .has("device dev-1 will send fresh evidence at its next check-in");
    setup
        .rota(&["device", "attest", "dev-404"])
        .fails_with("there is no device dev-404");

    // Revocation: a certificate, and the list.
    setup
        .rota(&[
            "device",
            "revoke",
            "--certificate",
            "devices/dev-3.cert.json",
            "--reason",
            "unit lost in transit",
        ])
        .ok()
        .has("1 registered devices are refused from now on")
        .has("  dev-3 (class");
    setup
        .rota(&["device", "rotate", "dev-1"])
        .ok()
        .has("device dev-1 will rotate its identity key at its next check-in");
    setup
        .rota(&["device", "revocations"])
        .ok()
        .has("certificate")
        .has("unit lost in transit");
    setup
        .rota(&[
            "device",
            "revoke",
            "--certificate",
            "devices/dev-3.cert.json",
            "--reason",
            "again",
        ])
        .fails_with("is revoked already");
    setup
        .rota(&["device", "revoke", "--key", "00", "--reason", "r"])
        .fails_with("is not a public key in hex or a key file");

    // Orders are signed with the server's device CA; this server has none: one line says so.
    setup
        .rota(&["device", "decommission", "dev-1", "--erase"])
        .fails_with("no device CA (--device-ca-key) to sign orders with");
    setup
        .rota(&["device", "withdraw-order", "dev-1"])
        .fails_with("device dev-1 has no order waiting");
    // A transfer's root: another repository's, cross-signed with this one's root keys.
    rota(setup.path(), &["repo", "init", "--dir", "repo2"]).ok();
    rota(
        setup.path(),
        &[
            "repo",
            "cross-sign",
            "--dir",
            "repo",
            "--root",
            "repo2/root.json",
            "-o",
            "crossed.json",
        ],
    )
    .ok()
    .has("cross-signed by this repository's root keys");
    let crossed = std::fs::read(setup.path().join("crossed.json")).unwrap();
    let ours = std::fs::read(setup.path().join("repo/metadata/2.root.json")).unwrap();
    rota_repo::verify_cross_signed_root(&ours, &crossed, std::time::SystemTime::now()).unwrap();
    rota(
        setup.path(),
        &[
            "repo",
            "cross-sign",
            "--dir",
            "repo",
            "--root",
            "devices/dev-1.cert.json",
            "-o",
            "crossed-2.json",
        ],
    )
    .fails_with("cannot cross-sign the new root");
    setup
        .rota(&[
            "device",
            "transfer",
            "dev-1",
            "--to-server",
            "https://new.example",
            "--to-ca",
            "factory-ca.pub",
            "--to-root",
            "crossed.json",
        ])
        .fails_with("no device CA (--device-ca-key) to sign orders with");

    setup
        .rota(&["device", "suspend", "dev-1"])
        .ok()
        .has("suspended device dev-1: it is now suspended");
    setup
        .rota(&["device", "resume", "dev-1"])
        .ok()
        .has("it is now active");
    // A device that never checked in cannot be suspended: the server says why.
    setup
        .rota(&["device", "suspend", "dev-2"])
        .fails_with("the server refused to suspend device dev-2: ");
    setup
        .rota(&["device", "decommission", "dev-2"])
        .ok()
        .has("decommissioned device dev-2: it is now decommissioned");
    setup
        .rota(&["device", "resume", "dev-2"])
        .fails_with("the server refused to resume device dev-2: ");
    // A decommissioned device cannot come back, even with its certificate.
    setup
        .rota(&["device", "register", "devices/dev-2.cert.json"])
        .fails_with("decommissioned and cannot be registered again (HTTP 403)");
}

#[test]
fn publishing_refuses_names_already_published_and_images_the_envelope_does_not_sign() {
    let setup = Setup::new();
    // Nothing to publish into before the repository is pushed.
    setup.publish(&[]).fails_with(
        "does not have root version 1 of repo yet; run `rota repo push --dir repo` first",
    );
    setup.push();
    setup.publish(&[]).ok().has("targets version 2");

    setup
        .publish(&[])
        .fails_with("fw.bin is already published (targets version 2)");
    // A new envelope for the same image, under a new name, is a new release.
    sign(setup.path(), "fw.bin", "fw-8.suit", "8");
    setup
        .rota(&[
            "release",
            "publish",
            "--repo",
            "repo",
            "--image",
            "fw.bin",
            "--envelope",
            "fw-8.suit",
            "--name",
            "class-a/fw-8.bin",
        ])
        .ok()
        .has("published class-a/fw-8.bin")
        .has("version 8")
        .has("targets version 3");
    // An image the envelope does not sign.
    std::fs::write(setup.path().join("other.bin"), b"not the firmware").unwrap();
    setup
        .rota(&[
            "release",
            "publish",
            "--repo",
            "repo",
            "--image",
            "other.bin",
            "--envelope",
            "fw.suit",
        ])
        .fails_with("other.bin is not the image fw.suit signs");
    // An envelope signed by a key that is not trusted.
    rota(setup.path(), &["keygen", "--out", "stranger"]).ok();
    setup
        .publish(&["--name", "fw-9.bin", "--trust-anchor", "stranger.pub"])
        .fails_with("fw.suit is not authentic");
    let releases = setup.rota(&["release", "list", "--json"]).ok().json();
    assert_eq!(releases.as_array().unwrap().len(), 2);
}

#[test]
fn the_server_s_refusals_and_an_unreachable_server_are_one_line_errors() {
    let setup = Setup::new();
    setup.push();
    let base = setup.server.base.clone();

    // A token the server does not know.
    rota(
        setup.path(),
        &["rollout", "status", "--server", &base, "--token", "rota_nope"],
    )
    .fails_with(
        "the server refused to list the rollouts: the bearer token is unknown or revoked (HTTP 401)",
    );
    // No token at all.
    rota(setup.path(), &["device", "list", "--server", &base]).fails_with(
        "no management token given: pass --token TOKEN or --token-file FILE, or set ROTA_TOKEN",
    );
    // From the environment.
    let token = std::fs::read_to_string(setup.server.token_file()).unwrap();
    let output = assert_cmd::cargo::cargo_bin_cmd!("rota")
        .current_dir(setup.path())
        .env("ROTA_SERVER", &base)
        .env("ROTA_TOKEN", token.trim())
        .args(["device", "list"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "no devices\n");

    // What the server refuses, with its reason.
    setup
        .rota(&["rollout", "status", "no-such-rollout"])
        .fails_with("the server refused to show rollout no-such-rollout: ")
        .fails_with("(HTTP 404)");
    setup
        .rota(&[
            "rollout",
            "create",
            "--release",
            "nope",
            "--class",
            CLASS,
            "--stages",
            "100%",
        ])
        .fails_with("the server refused the rollout: ");
    setup
        .rota(&["rollout", "create", "--release", "nope", "--stages", "10%"])
        .fails_with("the server has no release nope");
    // What the CLI refuses before asking.
    setup
        .rota(&[
            "rollout",
            "create",
            "--release",
            "r",
            "--class",
            CLASS,
            "--stages",
            "50%,10%",
        ])
        .fails_with("cannot create this rollout: stage 2 (10 percent) is not larger");
    setup
        .provision("bad id", &[])
        .fails_with("\"bad id\" is not a valid device id");
    assert!(!setup.path().join("devices").exists());

    // Nothing listens: the port of a listener just closed.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let down = format!("http://127.0.0.1:{port}");
    rota(
        setup.path(),
        &["rollout", "status", "--server", &down, "--token", "t"],
    )
    .fails_with(&format!(
        "cannot reach the server at {down}: connection refused"
    ));
    // Provisioning with an unreachable server keeps the files and says how to register.
    rota(
        setup.path(),
        &[
            "device",
            "provision",
            "--ca-key",
            "factory-ca.key",
            "--id",
            "dev-9",
            "--class",
            CLASS,
            "--out",
            "devices",
            "--server",
            &down,
            "--token",
            "t",
        ],
    )
    .fails_with("run `rota device register devices/dev-9.cert.json` later")
    .fails_with("connection refused");
    setup
        .rota(&["device", "register", "devices/dev-9.cert.json"])
        .ok()
        .has("registered device dev-9");
    rota(
        setup.path(),
        &["device", "list", "--server", "ftp://x", "--token", "t"],
    )
    .fails_with("is not an http:// or https:// URL");
}

/// A fake update server: answers GETs from `files` (path → body), 404 otherwise, and
/// records every request line.
fn fake_server(files: Vec<(String, Vec<u8>)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
            }
            log.lock().unwrap().push(request_line.trim().to_string());
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let found = files.iter().find(|(p, _)| p == path && method == "GET");
            let (status, body) = match found {
                Some((_, body)) => ("200 OK", body.clone()),
                None => ("404 Not Found", br#"{"error":"not here"}"#.to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (base, seen)
}

#[test]
fn publishing_never_countersigns_targets_the_server_altered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    rota(path, &["repo", "init", "--dir", "repo"]).ok();
    rota(path, &["keygen", "--out", "release"]).ok();
    std::fs::write(path.join("fw.bin"), b"firmware image").unwrap();
    sign(path, "fw.bin", "fw.suit", "3");
    let root = std::fs::read(path.join("repo/metadata/1.root.json")).unwrap();
    let expires = SystemTime::now() + Duration::from_secs(86400);

    // Targets metadata signed by a key the root does not name (the server's own, say).
    let impostor = rota_repo::RepoKey::generate().unwrap();
    let forged = rota_repo::sign_targets(None, &[], &[&impostor], expires).unwrap();
    // Real targets metadata, edited after it was signed (a target slipped in).
    let targets_pem = std::fs::read_to_string(path.join("repo/keys/targets-1.key")).unwrap();
    let targets_key = rota_repo::RepoKey::from_pkcs8_pem(&targets_pem).unwrap();
    let genuine = rota_repo::sign_targets(None, &[], &[&targets_key], expires).unwrap();
    let mut edited: Value = serde_json::from_slice(&genuine.bytes).unwrap();
    edited["signed"]["targets"]["evil.bin"] = serde_json::json!({
        "length": 4,
        "hashes": {"sha256": hex::encode([7u8; 32])},
    });
    let edited = serde_json::to_vec(&edited).unwrap();

    for targets in [forged.bytes, edited] {
        let (base, seen) = fake_server(vec![
            ("/tuf/metadata/1.root.json".into(), root.clone()),
            ("/tuf/metadata/targets.json".into(), targets),
        ]);
        rota(
            path,
            &[
                "release",
                "publish",
                "--repo",
                "repo",
                "--image",
                "fw.bin",
                "--envelope",
                "fw.suit",
                "--server",
                &base,
                "--token",
                "t",
            ],
        )
        .fails_with(
            "the targets metadata the server serves does not verify against root version 1 of the repository, so it was not signed again",
        );
        // Nothing was uploaded or signed: only the two metadata files were read.
        let seen = seen.lock().unwrap().clone();
        assert!(
            seen.iter()
                .all(|line| line.starts_with("GET /tuf/metadata/")),
            "{seen:?}"
        );
    }
}

/// Whether python-tuf can be imported; panics in CI when it cannot (as rota-repo's
/// interop test does).
fn python_tuf_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import tuf.ngclient"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("python3 with python-tuf is needed for this test in CI (pip install tuf)");
        }
        eprintln!("NOTICE: python3 with python-tuf (pip install tuf) not found; skipping");
    }
    ok
}

/// python-tuf's client, trusting `root.json` as shipped, refreshes from the server and
/// downloads `target`; prints its length.
const PYTHON_CLIENT: &str = r#"
import sys
from tuf.ngclient import Updater
base, root, work, target = sys.argv[1:5]
updater = Updater(
    metadata_dir=work + "/meta",
    metadata_base_url=base + "/tuf/metadata/",
    target_base_url=base + "/tuf/targets/",
    target_dir=work + "/download",
    bootstrap=open(root, "rb").read(),
)
updater.refresh()
info = updater.get_targetinfo(target)
path = updater.download_target(info)
print(info.length, open(path, "rb").read() == open(sys.argv[5], "rb").read())
"#;

#[test]
fn python_tuf_refreshes_the_pushed_repository_through_a_rotation_and_downloads_a_release() {
    if !python_tuf_available() {
        return;
    }
    let setup = Setup::new();
    setup.push();
    rota(setup.path(), &["repo", "rotate", "--dir", "repo"]).ok();
    setup.push().has("uploaded root versions 2");
    setup.publish(&[]).ok();
    let work = setup.path().join("tuf-client");
    std::fs::create_dir_all(work.join("meta")).unwrap();
    std::fs::create_dir_all(work.join("download")).unwrap();
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(PYTHON_CLIENT)
        .arg(&setup.server.base)
        .arg(setup.path().join("repo/root.json"))
        .arg(&work)
        .arg("fw.bin")
        .arg(setup.path().join("fw.bin"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python-tuf failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "307217 True"
    );
}

// ---- Every offline key in an HSM (SoftHSM2, a real PKCS#11 module) ----

/// `rota ARGS --server URL --token-file TOKEN`.
fn rota_at(dir: &Path, server: &Server, args: &[&str]) -> Run {
    let token = server.token_file();
    let mut all = args.to_vec();
    all.extend_from_slice(&["--server", &server.base, "--token-file", &token]);
    rota(dir, &all)
}

/// The server's data directory: the online keys from `repo` (key files or stubs) and
/// the CA public key `ca.pub`.
fn server_data(path: &Path, ca_pub: &str) -> PathBuf {
    let data = path.join("data");
    std::fs::create_dir_all(data.join("tuf-online-keys")).unwrap();
    std::fs::create_dir_all(data.join("device-ca")).unwrap();
    for key in ["snapshot.key", "timestamp.key"] {
        std::fs::copy(
            path.join("repo/online").join(key),
            data.join("tuf-online-keys").join(key),
        )
        .unwrap();
    }
    std::fs::copy(path.join(ca_pub), data.join("device-ca/factory-ca.pub")).unwrap();
    data
}

#[test]
fn a_release_with_every_offline_key_in_an_hsm_rolls_out_to_simulated_devices() {
    use rota_agent::device::sim::Factory;
    use rota_agent::firmware::SimFirmware;
    use rota_agent::fleet::{Fleet, FleetSpec};

    // SoftHSM2 for this process and the `rota` runs it starts (SOFTHSM2_CONF).
    let hsm = rota_keys::test_tokens::SoftHsm::in_process();
    let uri = |object: &str| hsm.uri("rota-test", &format!("release-{object}"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();

    // Keys born in the token: only their public halves are files.
    for (object, algorithm) in [
        ("root-1", "ed25519"),
        ("root-2", "ed25519"),
        ("targets", "ed25519"),
        ("firmware", "ed25519"),
        ("factory-ca", "p256"),
        ("snapshot", "ed25519"),
        ("timestamp", "ed25519"),
    ] {
        rota(
            path,
            &[
                "keygen",
                "--pkcs11",
                &uri(object),
                "--algorithm",
                algorithm,
                "--out",
                object,
            ],
        )
        .ok()
        .has("sensitive and never extractable");
        assert!(!path.join(format!("{object}.key")).exists());
    }
    rota(
        path,
        &[
            "repo",
            "init",
            "--dir",
            "repo",
            "--root-key",
            &uri("root-1"),
            "--root-key",
            &uri("root-2"),
            "--targets-key",
            &uri("targets"),
            "--snapshot-key",
            &uri("snapshot"),
            "--timestamp-key",
            &uri("timestamp"),
        ],
    )
    .ok()
    .has("root keys (2 of 2 sign a new root)");
    // REPO/keys and REPO/online hold stubs naming the token keys, never a private key.
    for name in [
        "keys/root-1.key",
        "keys/root-2.key",
        "keys/targets-1.key",
        "online/snapshot.key",
        "online/timestamp.key",
    ] {
        let text = std::fs::read_to_string(path.join("repo").join(name)).unwrap();
        assert!(
            text.starts_with("pkcs11:token=rota-test;"),
            "{name}: {text}"
        );
        assert!(!text.contains("PRIVATE KEY"));
    }

    // Root version 1 lists the token keys, by the public keys `rota keygen` wrote.
    let root: Value =
        serde_json::from_slice(&std::fs::read(path.join("repo/root.json")).unwrap()).unwrap();
    let tuf_key_id = |name: &str| {
        let pem = std::fs::read_to_string(path.join(format!("{name}.pub"))).unwrap();
        let key = rota_keys::public_key_from_pem(&pem).unwrap();
        rota_repo::PublicKey::from_seam(&key)
            .unwrap()
            .key_id()
            .to_string()
    };
    for (role, names) in [
        ("root", &["root-1", "root-2"][..]),
        ("targets", &["targets"]),
        ("snapshot", &["snapshot"]),
        ("timestamp", &["timestamp"]),
    ] {
        let listed = &root["signed"]["roles"][role]["keyids"];
        for name in names {
            assert!(
                listed
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|id| id == tuf_key_id(name).as_str()),
                "{role}: {name} not in {listed}"
            );
        }
    }

    // The server signs snapshot and timestamp in the token (its data directory holds
    // the stubs), the timestamp for 60 s: re-signed every 30 s.
    let server = Server::start_with(&server_data(path, "factory-ca.pub"), |s| {
        s.timestamp_lifetime = Some(60);
    });
    rota_at(path, &server, &["repo", "push", "--dir", "repo"]).ok();

    // v1 (the factory image) and v2, simulated firmware, signed inside the token.
    for (version, label) in [(1, "v1"), (2, "v2")] {
        let image = SimFirmware {
            label: label.into(),
            fail_health_percent: 0,
        }
        .image(16 * 1024);
        std::fs::write(path.join(format!("{label}.bin")), image).unwrap();
        rota(
            path,
            &[
                "sign",
                "--key",
                &uri("firmware"),
                "--image",
                &format!("{label}.bin"),
                "--vendor-id",
                VENDOR,
                "--class-id",
                CLASS,
                "--sequence",
                &version.to_string(),
                "--security-version",
                "1",
                "-o",
                &format!("{label}.suit"),
            ],
        )
        .ok();
    }
    let published = rota_at(
        path,
        &server,
        &[
            "release",
            "publish",
            "--repo",
            "repo",
            "--image",
            "v2.bin",
            "--envelope",
            "v2.suit",
            "--trust-anchor",
            "firmware.pub",
        ],
    )
    .ok();
    let release = field(&published.stdout, "release id:");

    // Devices enrolled by the CA in the token, trusting the firmware key in the token.
    let anchors = vec![
        rota_keys::public_key_from_pem(
            &std::fs::read_to_string(path.join("firmware.pub")).unwrap(),
        )
        .unwrap(),
    ];
    let envelope = std::fs::read(path.join("v1.suit")).unwrap();
    let ca_address: rota_keys::KeyAddress = uri("factory-ca").parse().unwrap();
    let spec = FleetSpec {
        count: 4,
        id_prefix: "hsm".into(),
        ca: ca_address.open().unwrap().boxed().into(),
        key_algorithm: rota_keys::Algorithm::EcdsaP256Sha256,
        tags: vec![],
        factory: Factory::signed(
            anchors,
            envelope,
            std::fs::read(path.join("v1.bin")).unwrap(),
            64 * 1024,
        )
        .unwrap(),
        trusted_root: std::fs::read(path.join("repo/root.json")).unwrap(),
        state_root: path.join("devices"),
        agent: rota_agent::Config {
            poll_min: Duration::from_millis(200),
            poll_max: Duration::from_millis(500),
            ..rota_agent::Config::new(&server.base)
        },
        replicas: vec![],
        workers: 0,
        faults: rota_agent::fleet::Faults::default(),
    };
    let fleet = Fleet::start(&spec, &reqwest::blocking::Client::new()).unwrap();
    rota_at(
        path,
        &server,
        &[
            "rollout",
            "create",
            "--release",
            &release,
            "--stages",
            "50%,100%",
            "--soak",
            "0s",
        ],
    )
    .ok()
    .has("created rollout");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !fleet.views().iter().all(|v| v.version == 2) {
        assert!(
            std::time::Instant::now() < deadline,
            "the rollout did not complete: {:?}",
            fleet.views()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The timestamp is re-signed on schedule, in the token.
    let timestamp = || -> Value {
        reqwest::blocking::get(format!("{}/tuf/metadata/timestamp.json", server.base))
            .unwrap()
            .json()
            .unwrap()
    };
    let first = timestamp()["signed"]["version"].as_u64().unwrap();
    let key_id = tuf_key_id("timestamp");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let resigned = loop {
        let now = timestamp();
        if now["signed"]["version"].as_u64().unwrap() > first {
            break now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the timestamp was not re-signed"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(resigned["signatures"][0]["keyid"], key_id.as_str());
    // ... and the devices, polling on, accept the repository it now vouches for.
    std::thread::sleep(Duration::from_secs(2));
    for view in fleet.views() {
        assert_eq!(view.version, 2, "{view:?}");
        assert!(
            matches!(view.last, Some(rota_agent::Outcome::UpToDate)),
            "{view:?}"
        );
    }
    fleet.stop();
}
