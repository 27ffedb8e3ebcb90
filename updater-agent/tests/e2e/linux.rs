//! The `rota-agent` binary on a Linux device whose slots are a flash image file:
//! provisioned as a factory would, updated by a real server, a failing health check
//! reverted.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rota_agent::device::Device;
use rota_agent::device::linux::{LinuxConfig, LinuxDevice};
use rota_agent::fleet::{provision, provision_key};
use rota_manifest::signer::Sign;
use rota_protocol::DeviceCertificate;
use support::World;

const AGENT: &str = env!("CARGO_BIN_EXE_rota-agent");

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The files a factory and a release engineer hand a gateway.
fn factory_files(world: &World) -> Files {
    let files = Files {
        dir: tempfile::tempdir().unwrap(),
    };
    let factory = world.release("1.0.0", 1, 0);
    std::fs::write(
        files.path("fw.pub"),
        world.firmware.public_key_pem().unwrap(),
    )
    .unwrap();
    std::fs::write(files.path("factory.suit"), &factory.envelope).unwrap();
    std::fs::write(files.path("factory.bin"), &factory.image).unwrap();
    std::fs::write(files.path("root.json"), world.root_json()).unwrap();
    let certificate = write_device_key(world, &files, "gateway-1");
    std::fs::write(
        files.path("device.cert.json"),
        serde_json::to_vec(&certificate).unwrap(),
    )
    .unwrap();
    files
}

/// A new Ed25519 identity for `device_id` from the world's CA: its key written as the
/// gateway's `device.key`; returns its certificate.
fn write_device_key(world: &World, files: &Files, device_id: &str) -> DeviceCertificate {
    let (key, certificate) = provision_key(
        &world.ca,
        device_id,
        support::CLASS,
        &[],
        rota_keys::Algorithm::Ed25519,
    )
    .unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    std::fs::write(files.path("device.key"), pem.as_bytes()).unwrap();
    certificate
}

fn agent(files: &Files, args: &[&str]) -> std::process::Output {
    Command::new(AGENT)
        .args(args)
        .current_dir(files.dir.path())
        .output()
        .unwrap()
}

fn run_once(world: &World, files: &Files, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "run",
        "--once",
        "--server",
        &world.base,
        "--state-dir",
        "state",
        "--flash",
        "flash.bin",
        "--otp",
        "otp.bin",
        "--image-capacity",
        "64K",
        "--device-key",
        "device.key",
        "--certificate",
        "device.cert.json",
        "--trust-anchor",
        "fw.pub",
    ];
    args.extend_from_slice(extra);
    agent(files, &args)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn running_version(files: &Files, world: &World) -> u64 {
    let (identity, _) = provision(
        &world.ca,
        "gateway-1",
        support::CLASS,
        &[],
        rota_keys::Algorithm::Ed25519,
    )
    .unwrap();
    let device = LinuxDevice::open(LinuxConfig {
        identity,
        anchors: vec![world.firmware.public_key()],
        state_dir: files.path("probe"),
        flash: files.path("flash.bin"),
        otp: files.path("otp.bin"),
        image_capacity: 64 * 1024,
        health_command: None,
    })
    .unwrap();
    device.running().unwrap().version
}

fn wait_for_last_seen() {
    // The server records check-ins in batches, once per tick.
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn a_gateway_is_provisioned_updated_and_reverts_a_release_that_fails_its_health_check() {
    let world = World::start();
    let files = factory_files(&world);
    let out = agent(
        &files,
        &[
            "provision",
            "--flash",
            "flash.bin",
            "--otp",
            "otp.bin",
            "--image-capacity",
            "64K",
            "--trust-anchor",
            "fw.pub",
            "--envelope",
            "factory.suit",
            "--image",
            "factory.bin",
            "--tuf-root",
            "root.json",
            "--state-dir",
            "state",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(files.path("state/tuf/root.json").exists());
    // The factory never overwrites a provisioned part.
    let again = agent(
        &files,
        &[
            "provision",
            "--flash",
            "flash.bin",
            "--otp",
            "otp2.bin",
            "--image-capacity",
            "64K",
            "--trust-anchor",
            "fw.pub",
            "--envelope",
            "factory.suit",
            "--image",
            "factory.bin",
            "--tuf-root",
            "root.json",
            "--state-dir",
            "state",
        ],
    );
    assert!(!again.status.success());
    assert!(text(&again).contains("flash.bin"), "{}", text(&again));

    // First start: it enrols and finds nothing to do.
    let out = run_once(&world, &files, &[]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for_last_seen();

    let release = world.publish(&world.release("1.1.0", 2, 0));
    world.rollout(&release, &[100.0], 1, 0.5);
    let out = run_once(
        &world,
        &files,
        &["--health-command", "test \"$ROTA_VERSION\" = 2"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("updated to version 2"),
        "{}",
        text(&out)
    );
    assert_eq!(running_version(&files, &world), 2);

    wait_for_last_seen();
    let bad = world.publish(&world.release("1.2.0", 3, 0));
    world.rollout(&bad, &[100.0], 1, 0.5);
    let out = run_once(&world, &files, &["--health-command", "exit 1"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("version 3 was reverted"),
        "{}",
        text(&out)
    );
    assert_eq!(
        running_version(&files, &world),
        2,
        "back on the confirmed release"
    );
}

#[test]
fn a_key_the_certificate_does_not_name_is_refused_before_anything_runs() {
    let world = World::start();
    let files = factory_files(&world);
    write_device_key(&world, &files, "gateway-2");
    let out = run_once(&world, &files, &[]);
    assert_eq!(out.status.code(), Some(1));
    let message = text(&out);
    assert!(message.contains("does not certify the key"), "{message}");
    assert!(!Path::new(&files.path("flash.bin")).exists());
}
