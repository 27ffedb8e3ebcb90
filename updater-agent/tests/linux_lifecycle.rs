//! A Linux gateway's identity through its lifecycle against a real rota-server: its key
//! rotated in a key file and in a (SoftHSM2) token, a power cut at every file and token
//! operation of a rotation and of a decommission, and the key material gone after one.
//!
//! SoftHSM2 must be installed (`scripts/test.sh` installs it): a missing one fails these
//! tests with the command that installs it, never skips them.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rota_agent::device::linux::{
    HEADER_SIZE, IdentityFiles, LinuxConfig, LinuxDevice, recover_identity,
};
use rota_agent::device::{Device, Identity, standard_layout};
use rota_agent::rotate::rotate;
use rota_agent::server::{AnswerLimits, ServerClient};
use rota_agent::{DeviceError, device::file_flash::FileFlash};
use rota_boot::factory::{self, Provisioning};
use rota_boot::otp_map;
use rota_keys::pkcs11::{self, Pkcs11Key, Pkcs11Uri};
use rota_keys::test_tokens::SoftHsm;
use rota_keys::{Algorithm, KeyAddress, KeyFile, Sign, SoftwareKey};
use rota_protocol::DeviceCertificate;
use rota_system_tests::{CLASS, World};

/// The SoftHSM2 token the tests' keys live in.
const TOKEN: &str = "rota-test";

/// One token key-pair generation at a time in this process (SoftHSM2's file store once
/// failed a generation racing another: `keys/tests/pkcs11.rs`).
static TOKEN_KEYS: Mutex<()> = Mutex::new(());

fn one_token_test_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    TOKEN_KEYS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the gateway's identity key is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Holder {
    KeyFile,
    /// In the token, named by a stub file.
    Token,
}

/// A gateway's files: flash, OTP, state directory, key and certificate.
struct Gateway {
    dir: tempfile::TempDir,
    id: String,
    files: IdentityFiles,
    /// The key's label in the token (for [`Holder::Token`]).
    label: String,
    anchors: Vec<rota_keys::PublicKey>,
    capacity: u32,
}

impl Gateway {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    fn key_path(&self) -> PathBuf {
        self.path("device.key")
    }

    fn token_uri(&self, label: &str) -> Pkcs11Uri {
        SoftHsm::in_process().uri(TOKEN, label).parse().unwrap()
    }

    /// What a start of `rota-agent run` does: finish an interrupted identity change, read
    /// the key and certificate, check they match, open the device.
    fn start(&self) -> Result<(LinuxDevice, DeviceCertificate), DeviceError> {
        recover_identity(&self.files, &self.state_dir(), &self.path("otp.bin"))?;
        let certificate: DeviceCertificate =
            serde_json::from_slice(&std::fs::read(&self.files.certificate).unwrap()).unwrap();
        let key = self.files.key.open().unwrap().boxed();
        assert_eq!(
            certified_key(&certificate),
            key.public_key(),
            "the certificate certifies the key the files hold"
        );
        let device = LinuxDevice::open_with_identity(
            LinuxConfig {
                identity: Identity {
                    device_id: self.id.clone(),
                    key,
                },
                anchors: self.anchors.clone(),
                state_dir: self.state_dir(),
                flash: self.path("flash.bin"),
                otp: self.path("otp.bin"),
                image_capacity: self.capacity,
                health_command: None,
            },
            self.files.clone(),
        )?;
        Ok((device, certificate))
    }

    /// The files left in the gateway's directory, but flash and OTP.
    fn identity_files_left(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !matches!(n.as_str(), "flash.bin" | "otp.bin" | "state"))
            .collect();
        names.sort();
        names
    }

    fn state_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.state_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The token objects under the key's label, its `-next` and its `-old` label.
    fn token_objects(&self) -> [Vec<pkcs11::TokenObject>; 3] {
        [
            self.label.clone(),
            format!("{}-next", self.label),
            format!("{}-old", self.label),
        ]
        .map(|label| pkcs11::objects(&self.token_uri(&label)).unwrap())
    }
}

fn certified_key(certificate: &DeviceCertificate) -> rota_keys::PublicKey {
    certificate
        .claims_unverified()
        .unwrap()
        .device_key()
        .unwrap()
}

fn client(world: &World) -> ServerClient {
    ServerClient::new(world.http.clone(), &world.base, AnswerLimits::default())
}

/// Whether the server takes a request signed by `key` as device `id`'s.
fn server_accepts(world: &World, id: &str, key: &Arc<dyn Sign>) -> bool {
    let identity = Identity {
        device_id: id.into(),
        key: Box::new(key.clone()),
    };
    client(world).attestation_nonce(&identity).is_ok()
}

/// A gateway off the factory line, its identity in `holder`, enrolled with the server.
/// Returns it and its original key (opened again, to try it after the rotation).
fn manufacture(world: &World, id: &str, holder: Holder) -> (Gateway, Arc<dyn Sign>) {
    let dir = tempfile::tempdir().unwrap();
    let fw = world.factory();
    let layout = standard_layout(
        rota_agent::device::file_flash::ERASE_SIZE as u32,
        HEADER_SIZE,
        fw.image_capacity,
    );
    let mut flash = FileFlash::create(
        &dir.path().join("flash.bin"),
        layout.slots[1].end() as usize,
        layout.erased,
    )
    .unwrap();
    factory::program_first_image(&mut flash, &layout, &fw.signer, &fw.envelope, &fw.image).unwrap();
    let claims = factory::claims(&fw.envelope, &fw.anchors).unwrap();
    let map = Provisioning::new(&fw.anchors, &claims, otp_map::FLOOR_BITS)
        .otp_map()
        .unwrap();
    rota_agent::device::linux::FileOtp::provision(&dir.path().join("otp.bin"), &map).unwrap();
    std::fs::create_dir_all(dir.path().join("state/tuf")).unwrap();
    std::fs::write(dir.path().join("state/tuf/root.json"), world.root_json()).unwrap();

    let key_path = dir.path().join("device.key");
    let label = format!("gw-{id}");
    let public = match holder {
        Holder::KeyFile => {
            let key = SoftwareKey::generate(Algorithm::Ed25519).unwrap();
            std::fs::write(&key_path, key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
            key.public_key()
        }
        Holder::Token => {
            let uri: Pkcs11Uri = SoftHsm::in_process().uri(TOKEN, &label).parse().unwrap();
            let key = Pkcs11Key::generate(&uri, Algorithm::Ed25519).unwrap();
            KeyFile::write_stub(&key_path, &uri).unwrap();
            key.public_key()
        }
    };
    let certificate =
        rota_protocol::certify(&world.ca, id, &public, None, &uuid_of(CLASS), vec![]).unwrap();
    std::fs::write(
        dir.path().join("device.cert.json"),
        serde_json::to_vec(&certificate).unwrap(),
    )
    .unwrap();
    let gateway = Gateway {
        files: IdentityFiles {
            key: KeyAddress::from(key_path),
            certificate: dir.path().join("device.cert.json"),
        },
        dir,
        id: id.into(),
        label,
        anchors: fw.anchors.clone(),
        capacity: fw.image_capacity,
    };
    let (device, certificate) = gateway.start().unwrap();
    client(world)
        .enroll(device.identity(), &certificate)
        .unwrap();
    let original = Arc::from(gateway.files.key.open().unwrap().boxed());
    (gateway, original)
}

fn uuid_of(class: [u8; 16]) -> uuid::Uuid {
    uuid::Uuid::from_bytes(class)
}

/// After a completed rotation: one identity key, the certificate's, used by the server;
/// the old one refused and gone; no pending key, no phase file.
fn assert_rotated(world: &World, gateway: &Gateway, old: &Arc<dyn Sign>, holder: Holder) {
    let (device, certificate) = gateway.start().unwrap();
    let key = &device.identity().key;
    assert_eq!(certified_key(&certificate), key.public_key());
    assert_ne!(key.public_key(), old.public_key(), "the key is the new one");
    assert!(!device.rotation_pending());
    assert!(!gateway.state_files().contains(&"rotation.json".into()));
    assert_eq!(
        gateway.identity_files_left(),
        ["device.cert.json", "device.key"],
        "no pending, old or temporary key or certificate is left"
    );
    drop(device);
    let current: Arc<dyn Sign> = Arc::from(gateway.files.key.open().unwrap().boxed());
    assert!(server_accepts(world, &gateway.id, &current));
    assert!(
        !server_accepts(world, &gateway.id, old),
        "the old key is refused"
    );
    match holder {
        Holder::KeyFile => {
            let mode = std::fs::metadata(gateway.key_path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "the key file is its owner's alone");
        }
        Holder::Token => {
            let [current, next, old_objects] = gateway.token_objects();
            assert_eq!(
                current.len(),
                2,
                "one key pair under the label: {current:?}"
            );
            assert!(current.windows(2).all(|w| w[0].id == w[1].id));
            assert!(
                next.is_empty() && old_objects.is_empty(),
                "{next:?} {old_objects:?}"
            );
        }
    }
}

fn rotates_and_the_old_key_is_refused(holder: Holder, id: &str) {
    let world = World::start();
    let (gateway, old) = manufacture(&world, id, holder);
    let (mut device, _) = gateway.start().unwrap();
    let certificate = rotate(&mut device, &client(&world)).unwrap();
    assert_eq!(
        certified_key(&certificate),
        device.identity().key.public_key()
    );
    let claims = certificate.claims_unverified().unwrap();
    assert_eq!(
        claims.issuer,
        hex::encode(world.device_ca.public_key().key_id())
    );
    // The certificate the device keeps is the one the server issued.
    let stored: DeviceCertificate =
        serde_json::from_slice(&std::fs::read(&gateway.files.certificate).unwrap()).unwrap();
    assert_eq!(stored, certificate);
    drop(device);
    assert_rotated(&world, &gateway, &old, holder);
}

#[test]
fn a_linux_gateway_rotates_its_key_file_and_the_old_key_is_refused() {
    rotates_and_the_old_key_is_refused(Holder::KeyFile, "lx-file");
}

#[test]
fn a_linux_gateway_rotates_its_key_in_a_softhsm_token_and_the_old_object_is_destroyed() {
    let _token = one_token_test_at_a_time();
    rotates_and_the_old_key_is_refused(Holder::Token, "lx-token");
}

/// Cuts the power at every identity operation of a rotation in turn (the `k`-th from the
/// start, until a rotation completes uncut); each time the gateway restarts, resumes (or,
/// when the cut came before anything named the new key, rotates again as the server asks)
/// and ends with exactly one identity key, the certificate's, the old one gone.
fn rotation_converges_after_a_cut_at_every_step(holder: Holder, prefix: &str) {
    let world = World::start();
    let mut cuts = 0;
    for k in 0.. {
        let id = format!("{prefix}-{k}");
        let (gateway, old) = manufacture(&world, &id, holder);
        let (mut device, _) = gateway.start().unwrap();
        device.cut_power_after(k);
        if rotate(&mut device, &client(&world)).is_ok() {
            drop(device);
            assert_rotated(&world, &gateway, &old, holder);
            break;
        }
        cuts += 1;
        drop(device);
        // The restart: `rota-agent run` recovers, then resumes a pending rotation.
        let (mut device, _) = gateway.start().unwrap();
        if device.rotation_pending() {
            rotate(&mut device, &client(&world))
                .unwrap_or_else(|e| panic!("cut at step {k}: the resumed rotation failed: {e}"));
        } else if device.identity().key.public_key() == old.public_key() {
            // Nothing named the new key yet, or the cut came before the server was asked.
            rotate(&mut device, &client(&world))
                .unwrap_or_else(|e| panic!("cut at step {k}: the new rotation failed: {e}"));
        }
        drop(device);
        assert_rotated(&world, &gateway, &old, holder);
        assert!(k < 40, "a rotation has more steps than expected");
    }
    // Generation, two phase writes, the certificate, link or relabel, rename or relabel,
    // the certificate's rename, the old key's destruction, the phase file's removal.
    assert!(cuts >= 8, "only {cuts} cut points");
}

#[test]
fn key_file_rotation_converges_after_a_power_cut_at_every_file_operation() {
    rotation_converges_after_a_cut_at_every_step(Holder::KeyFile, "cut-file");
}

#[test]
fn token_rotation_converges_after_a_power_cut_at_every_token_and_file_operation() {
    let _token = one_token_test_at_a_time();
    rotation_converges_after_a_cut_at_every_step(Holder::Token, "cut-token");
}

/// Decommission: after `zeroize` (and after a cut at any of its steps, then a restart)
/// the key file's bytes are zeros and the file is gone, the token holds no object under
/// the key's labels, the certificate is gone and the state directory is empty.
fn zeroize_erases_everything(holder: Holder, prefix: &str) {
    let world = World::start();
    let mut cut_points = 0;
    for k in 0.. {
        let (gateway, _) = manufacture(&world, &format!("{prefix}-{k}"), holder);
        // A second name for the key file's blocks: what a reader of the freed blocks
        // would find.
        let witness = gateway.path("witness");
        std::fs::hard_link(gateway.key_path(), &witness).unwrap();
        let length = std::fs::metadata(&witness).unwrap().len();
        let (mut device, _) = gateway.start().unwrap();
        // A pending key too: a decommission erases it as well.
        device.new_identity_key(Algorithm::Ed25519).unwrap();
        device.cut_power_after(k);
        let done = device.zeroize().is_ok();
        drop(device);
        if !done {
            cut_points += 1;
            // The restart finishes the erasure, and the device has no identity left.
            match recover_identity(
                &gateway.files,
                &gateway.state_dir(),
                &gateway.path("otp.bin"),
            ) {
                Err(DeviceError::Zeroize(why)) => assert!(why.contains("decommissioned"), "{why}"),
                Ok(()) => {
                    // The cut came before the phase file: nothing was erased yet, and
                    // the device is whole.
                    assert_eq!(k, 0);
                    gateway.start().unwrap();
                    continue;
                }
                Err(e) => panic!("cut at step {k}: {e}"),
            }
        }
        assert_eq!(gateway.identity_files_left(), ["witness"]);
        assert!(
            gateway.state_files().is_empty(),
            "{:?}",
            gateway.state_files()
        );
        let bytes = std::fs::read(&witness).unwrap();
        match holder {
            Holder::KeyFile => {
                assert_eq!(bytes.len() as u64, length);
                assert!(
                    bytes.iter().all(|b| *b == 0),
                    "the key's bytes were overwritten"
                );
            }
            Holder::Token => {
                assert!(bytes.iter().all(|b| *b == 0), "the stub was overwritten");
                let [current, next, old] = gateway.token_objects();
                assert!(current.is_empty() && next.is_empty() && old.is_empty());
                let listing = pkcs11_tool_objects();
                assert!(
                    !listing.contains(&gateway.label),
                    "pkcs11-tool still lists {}: {listing}",
                    gateway.label
                );
            }
        }
        if done {
            break;
        }
        assert!(k < 40, "a decommission has more steps than expected");
    }
    assert!(cut_points >= 4, "only {cut_points} cut points");
}

/// The token's objects as `pkcs11-tool --list-objects` shows them.
fn pkcs11_tool_objects() -> String {
    let hsm = SoftHsm::in_process();
    let output = std::process::Command::new("pkcs11-tool")
        .envs(hsm.env())
        .arg("--module")
        .arg(hsm.module())
        .args(["--token-label", TOKEN, "--login", "--pin"])
        .arg(rota_keys::test_tokens::USER_PIN)
        .arg("--list-objects")
        .output()
        .unwrap_or_else(|e| panic!("cannot run pkcs11-tool ({e}): apt-get install -y opensc"));
    assert!(
        output.status.success(),
        "pkcs11-tool failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_decommissioned_gateway_key_file_is_overwritten_and_its_state_erased() {
    zeroize_erases_everything(Holder::KeyFile, "zero-file");
}

#[test]
fn a_decommissioned_gateway_token_key_is_destroyed_and_its_state_erased() {
    let _token = one_token_test_at_a_time();
    zeroize_erases_everything(Holder::Token, "zero-token");
}

#[test]
fn a_token_key_named_by_its_id_is_refused_a_rotation_with_the_reason() {
    let _token = one_token_test_at_a_time();
    let world = World::start();
    let (gateway, _) = manufacture(&world, "by-id", Holder::Token);
    let uri = gateway
        .token_uri(&gateway.label)
        .with_key(&gateway.label, Some(&[1, 2]));
    let store = IdentityFiles {
        key: KeyAddress::Pkcs11(Box::new(uri)),
        certificate: gateway.files.certificate.clone(),
    };
    let (device, _) = gateway.start().unwrap();
    let config = device_config(&gateway, device);
    let mut device = LinuxDevice::open_with_identity(config, store).unwrap();
    let e = match device.new_identity_key(Algorithm::Ed25519) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a key named by its id was rotated"),
    };
    assert!(e.contains("by its label alone"), "{e}");
}

fn device_config(gateway: &Gateway, device: LinuxDevice) -> LinuxConfig {
    let key = gateway.files.key.open().unwrap().boxed();
    drop(device);
    LinuxConfig {
        identity: Identity {
            device_id: gateway.id.clone(),
            key,
        },
        anchors: gateway.anchors.clone(),
        state_dir: gateway.state_dir(),
        flash: gateway.path("flash.bin"),
        otp: gateway.path("otp.bin"),
        image_capacity: gateway.capacity,
        health_command: None,
    }
}

/// A firmware key a trust-anchor command added stays trusted after a restart, although
/// the agent's `--trust-anchor` list does not name it.
#[test]
fn a_trust_anchor_added_to_a_linux_gateway_is_kept_across_restarts() {
    let world = World::start();
    let (gateway, _) = manufacture(&world, "anchor-gw", Holder::KeyFile);
    let added = SoftwareKey::generate(Algorithm::Ed25519)
        .unwrap()
        .public_key();
    let (mut device, _) = gateway.start().unwrap();
    assert!(!device.trust_anchors().contains(&added));
    device.add_trust_anchor(added).unwrap();
    device.add_trust_anchor(added).unwrap();
    assert_eq!(
        device
            .trust_anchors()
            .iter()
            .filter(|k| **k == added)
            .count(),
        1
    );
    drop(device);
    let (device, _) = gateway.start().unwrap();
    assert!(
        device.trust_anchors().contains(&added),
        "kept across a restart"
    );
    for anchor in &gateway.anchors {
        assert!(device.trust_anchors().contains(anchor));
    }
}
