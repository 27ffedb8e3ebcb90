//! The `rota-agent` binary on a Linux device whose slots are a flash image file:
//! provisioned as a factory would, updated by a real server, a failing health check
//! reverted; and one whose identity key lives in a (software) TPM 2.0.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rota_agent::device::Device;
use rota_agent::device::linux::{LinuxConfig, LinuxDevice};
use rota_agent::fleet::{provision, provision_key};
use rota_keys::PublicKey;
use rota_keys::test_tokens::{Swtpm, USER_PIN, tpm2_pkcs11_module};
use rota_manifest::signer::Sign;
use rota_protocol::DeviceCertificate;
use rota_protocol::api::{DeviceInfo, DeviceState};
use support::World;

const AGENT: &str = env!("CARGO_BIN_EXE_rota-agent");

struct Files {
    dir: tempfile::TempDir,
    /// What the agent is given as `--device-key`: a key file, or a PKCS#11 URI.
    device_key: String,
    /// The environment the agent runs with (what a token's module needs to find it).
    env: Vec<(&'static str, PathBuf)>,
}

impl Files {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The files a factory and a release engineer hand a gateway.
fn factory_files(world: &World) -> Files {
    let files = firmware_files(world);
    let certificate = write_device_key(world, &files, "gateway-1");
    write_certificate(&files, &certificate);
    files
}

/// [`factory_files`] but the identity: firmware, trust anchor and TUF root.
fn firmware_files(world: &World) -> Files {
    let files = Files {
        dir: tempfile::tempdir().unwrap(),
        device_key: "device.key".into(),
        env: vec![],
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
    files
}

/// The gateway's `device.cert.json`.
fn write_certificate(files: &Files, certificate: &DeviceCertificate) {
    std::fs::write(
        files.path("device.cert.json"),
        serde_json::to_vec(certificate).unwrap(),
    )
    .unwrap();
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
        None,
    )
    .unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    std::fs::write(files.path("device.key"), pem.as_bytes()).unwrap();
    certificate
}

fn agent(files: &Files, args: &[&str]) -> std::process::Output {
    Command::new(AGENT)
        .args(args)
        .envs(files.env.iter().cloned())
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
        &files.device_key,
        "--certificate",
        "device.cert.json",
        "--trust-anchor",
        "fw.pub",
    ];
    args.extend_from_slice(extra);
    agent(files, &args)
}

/// `rota-agent provision`: the factory writes the gateway's flash, OTP (into `otp`) and
/// TUF root.
fn factory_provision(files: &Files, otp: &str) -> std::process::Output {
    agent(
        files,
        &[
            "provision",
            "--flash",
            "flash.bin",
            "--otp",
            otp,
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
    )
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
        None,
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
    let out = factory_provision(&files, "otp.bin");
    assert!(out.status.success(), "{}", text(&out));
    assert!(files.path("state/tuf/root.json").exists());
    // The factory never overwrites a provisioned part.
    let again = factory_provision(&files, "otp2.bin");
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

/// `pkcs11-tool` on the TPM's token `device`, in a process of its own: the test process
/// never loads tpm2-pkcs11 (it reads its environment when it loads).
fn tpm_tool(tpm: &Swtpm, args: &[&str]) {
    let out = Command::new("pkcs11-tool")
        .envs(tpm.env())
        .arg("--module")
        .arg(tpm2_pkcs11_module())
        .args(["--token-label", "device"])
        .args(args)
        .output()
        .expect("pkcs11-tool: apt-get install -y opensc");
    assert!(out.status.success(), "pkcs11-tool {args:?}: {}", text(&out));
}

/// The uncompressed point of a P-256 SubjectPublicKeyInfo (DER, RFC 5480).
fn p256_from_spki(der: &[u8]) -> PublicKey {
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (65 bytes) }
    let header = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    let point = der
        .strip_prefix(header.as_slice())
        .unwrap_or_else(|| panic!("not a P-256 public key: {}", hex::encode(der)));
    let point: [u8; 65] = point.try_into().expect("a 65-byte point");
    assert_eq!(point[0], 0x04, "an uncompressed point");
    PublicKey::P256(point)
}

fn listed_device(world: &World, id: &str) -> Option<DeviceInfo> {
    let devices: Vec<DeviceInfo> =
        serde_json::from_value(world.admin_call(reqwest::Method::GET, "/api/v1/devices", None))
            .unwrap();
    devices.into_iter().find(|d| d.id == id)
}

/// The identity key is made in the gateway's TPM (swtpm, through tpm2-pkcs11: P-256,
/// TPMs have no Ed25519) and never leaves it; the factory certifies its public key. The
/// agent, given the key's PKCS#11 URI, signs its enrolment, check-ins and reports in
/// the TPM. There is no key file: a certificate for any other key is refused before
/// anything runs (`a_key_the_certificate_does_not_name_is_refused_before_anything_runs`).
#[test]
fn a_gateway_whose_identity_key_is_in_a_tpm_enrols_checks_in_and_installs() {
    let world = World::start();
    let tpm = Swtpm::start();
    let mut files = firmware_files(&world);
    tpm_tool(
        &tpm,
        &[
            "--login",
            "--pin",
            USER_PIN,
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            "identity",
        ],
    );
    let spki = files.path("identity.pub.der");
    tpm_tool(
        &tpm,
        &[
            "--read-object",
            "--type",
            "pubkey",
            "--label",
            "identity",
            "-o",
            spki.to_str().unwrap(),
        ],
    );
    let public_key = p256_from_spki(&std::fs::read(&spki).unwrap());
    let certificate = rota_protocol::certify(
        &world.ca,
        "gateway-tpm",
        &public_key,
        None,
        &uuid::Uuid::from_bytes(support::CLASS),
        vec![],
    )
    .unwrap();
    write_certificate(&files, &certificate);
    files.device_key = tpm.uri("identity");
    files.env = tpm.env();
    assert!(!files.path("device.key").exists());

    let out = factory_provision(&files, "otp.bin");
    assert!(out.status.success(), "{}", text(&out));

    // First start: it enrols and checks in, nothing to do.
    let out = run_once(&world, &files, &[]);
    assert!(out.status.success(), "{}", text(&out));
    support::wait_until(Duration::from_secs(10), "its check-in of version 1", || {
        listed_device(&world, "gateway-tpm").is_some_and(|d| d.running_version == Some(1))
    });
    let device = listed_device(&world, "gateway-tpm").unwrap();
    assert_eq!(device.state, DeviceState::Active);
    assert_eq!(device.class_id, support::class_text(support::CLASS));
    assert!(device.last_seen_at.is_some());

    let release = world.publish(&world.release("1.1.0", 2, 0));
    let rollout = world.rollout(&release, &[100.0], 1, 0.5);
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
    // Its signed reports reached the rollout, and its next check-in says what it runs.
    support::wait_until(Duration::from_secs(10), "its confirmed report", || {
        world.status(&rollout).counts.total.confirmed == 1
    });
    let out = run_once(&world, &files, &[]);
    assert!(out.status.success(), "{}", text(&out));
    support::wait_until(Duration::from_secs(10), "its check-in of version 2", || {
        listed_device(&world, "gateway-tpm").is_some_and(|d| d.running_version == Some(2))
    });
    // Its confirmation carried evidence signed in the TPM, marked software-measured (a
    // Linux gateway has no UDS): the server attests version 2.
    let device = listed_device(&world, "gateway-tpm").unwrap();
    assert_eq!(
        device.attestation,
        rota_protocol::api::AttestationState::Ok,
        "{device:?}"
    );
    assert_eq!(device.attested_version, Some(2), "{device:?}");
    assert_eq!(
        device.attested_by.as_deref(),
        Some("software"),
        "{device:?}"
    );
}
