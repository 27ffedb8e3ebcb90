//! rota on a real core: the bootloader firmware and the demo application under QEMU
//! (mps2-an386, Cortex-M4), provisioned with `rota keygen`, `rota sign` and
//! `rota flash-image`, each test a device whose flash and OTP persist in host files
//! across QEMU runs (one run is one boot).
//!
//! Needs `qemu-system-arm`, the `thumbv7em-none-eabihf` target and rustup's
//! `llvm-tools` (scripts/test.sh installs all three); a test fails, loudly, when one
//! is missing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use embedded_storage::nor_flash::NorFlash;
use rota_boot::board::QEMU_MPS2_AN386 as BOARD;
use rota_boot::header::SlotHeader;
use rota_boot::otp_map::OtpRot;
use rota_boot::sim::SimFlash;
use rota_boot::{BootState, Journal, RootOfTrust, Slot};
use rota_keys::test_tokens::SoftHsm;
use rota_manifest::{PublicKey, public_key_from_pem};

const VENDOR: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe";
const CLASS: &str = "1492af14-2569-5e48-bf42-9b2d51f2ab45";
/// Longest a boot may take before the test calls it hung.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

// ---- Firmware, built once per test run ----

/// The bootloader and the application builds the tests use, as raw binaries.
struct Firmware {
    dir: PathBuf,
}

impl Firmware {
    fn get() -> &'static Firmware {
        static FIRMWARE: OnceLock<Firmware> = OnceLock::new();
        FIRMWARE.get_or_init(Firmware::build)
    }

    fn build() -> Firmware {
        require("qemu-system-arm", "apt-get install qemu-system-arm");
        let dir = std::env::temp_dir().join(format!("rota-qemu-firmware-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let qemu = repo().join("bootloader/qemu");
        let elf = |name: &str| qemu.join("target/thumbv7em-none-eabihf/release").join(name);
        let cargo = |envs: &[(&str, &str)], package: &str| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--release", "--quiet", "-p", package])
                .current_dir(&qemu)
                .envs(envs.iter().copied())
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_BUILD_TARGET")
                .status()
                .expect("cargo runs");
            assert!(
                status.success(),
                "building {package} {envs:?} for thumbv7em-none-eabihf failed"
            );
        };
        cargo(&[], "rota-qemu-boot");
        objcopy(&elf("rota-qemu-boot"), &dir.join("boot.bin"));
        for (name, slot, version, health) in APPS {
            cargo(
                &[
                    ("ROTA_SLOT", slot),
                    ("ROTA_APP_VERSION", version),
                    ("ROTA_APP_HEALTH", health),
                ],
                "rota-qemu-app",
            );
            objcopy(&elf("rota-qemu-app"), &dir.join(format!("{name}.bin")));
        }
        Firmware { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// (file name, slot it is linked for, version, health).
const APPS: [(&str, &str, &str, &str); 4] = [
    ("v1-a", "A", "1", "ok"),
    ("v2-b", "B", "2", "ok"),
    ("v3-a-unhealthy", "A", "3", "fail"),
    ("v4-a", "A", "4", "ok"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn require(tool: &str, install: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is missing: {install} (scripts/test.sh installs it)"
    );
}

fn objcopy(elf: &Path, bin: &Path) {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let sysroot = String::from_utf8(sysroot.stdout).unwrap();
    let host = Command::new("rustc").arg("-vV").output().unwrap();
    let host = String::from_utf8(host.stdout).unwrap();
    let host = host.lines().find_map(|l| l.strip_prefix("host: ")).unwrap();
    let tool = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host)
        .join("bin/llvm-objcopy");
    assert!(
        tool.exists(),
        "llvm-objcopy is missing: rustup component add llvm-tools"
    );
    let status = Command::new(tool)
        .args(["-O", "binary"])
        .arg(elf)
        .arg(bin)
        .status()
        .unwrap();
    assert!(status.success());
}

// ---- The release engineer's side: the rota CLI ----

fn rota(args: &[&str], dir: &Path) -> String {
    rota_env(args, dir, &[])
}

/// `rota` with more environment (a SoftHSM2's configuration).
fn rota_env(args: &[&str], dir: &Path, env: &[(&str, PathBuf)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(args)
        .envs(env.iter().cloned())
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rota {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A signed release: the firmware binary, its envelope, and the key that signed it.
struct Release {
    image: PathBuf,
    envelope: PathBuf,
    key: String,
}

// ---- A device: a directory holding its flash and OTP ----

struct Device {
    dir: tempfile::TempDir,
    /// Where the `release` key lives when it is in an HSM rather than a file.
    hsm: Option<SoftHsm>,
    /// What `rota flash-image` printed.
    factory_output: String,
}

/// What one boot printed, and how QEMU ended.
#[derive(Debug)]
struct Boot {
    output: String,
    success: bool,
}

impl Boot {
    fn shows(&self, text: &str) -> bool {
        self.output.contains(text)
    }

    #[track_caller]
    fn expect(&self, text: &str) -> &Self {
        assert!(
            self.shows(text),
            "expected {text:?} in the boot output:\n{}",
            self.output
        );
        self
    }

    /// The rest of the line that starts with `prefix` (a key the application printed).
    #[track_caller]
    fn value(&self, prefix: &str) -> String {
        self.output
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in the boot output:\n{}", self.output))
            .to_owned()
    }

    #[track_caller]
    fn expect_not(&self, text: &str) -> &Self {
        assert!(
            !self.shows(text),
            "did not expect {text:?} in the boot output:\n{}",
            self.output
        );
        self
    }
}

impl Device {
    /// Keys `release` (OTP key slot 0) and `backup` (slot 1), and a factory-fresh device
    /// with v1 in slot A (sequence 1, security version 1).
    fn new() -> Device {
        Self::made(None)
    }

    /// As [`Device::new`], with the `release` key made inside a SoftHSM2 token.
    fn with_release_key_in_hsm() -> Device {
        let hsm = SoftHsm::new();
        hsm.init_token("release");
        Self::made(Some(hsm))
    }

    fn made(hsm: Option<SoftHsm>) -> Device {
        let mut device = Device {
            dir: tempfile::tempdir().unwrap(),
            hsm,
            factory_output: String::new(),
        };
        match &device.hsm {
            Some(hsm) => {
                let uri = hsm.uri("release", "fw");
                device.rota(&["keygen", "--pkcs11", &uri, "--out", "release"]);
                assert!(!device.dir().join("release.key").exists());
            }
            None => {
                rota(&["keygen", "--out", "release"], device.dir());
            }
        }
        rota(&["keygen", "--out", "backup"], device.dir());
        let v1 = device.sign("v1-a", "release", 1, 1);
        let fw = Firmware::get();
        device.factory_output = rota(
            &[
                "flash-image",
                "--bootloader",
                fw.path("boot.bin").to_str().unwrap(),
                "--image",
                v1.image.to_str().unwrap(),
                "--envelope",
                v1.envelope.to_str().unwrap(),
                "--trust-anchor",
                "release.pub",
                "--trust-anchor",
                "backup.pub",
                "--out-flash",
                "flash.bin",
                "--out-otp",
                "otp.bin",
            ],
            device.dir(),
        );
        device
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `rota` in the device's directory, seeing its HSM.
    fn rota(&self, args: &[&str]) -> String {
        let env = self.hsm.as_ref().map(SoftHsm::env).unwrap_or_default();
        rota_env(args, self.dir(), &env)
    }

    /// What `rota sign --key` takes for `key`: its file, or its URI in the HSM.
    fn key_address(&self, key: &str) -> String {
        match &self.hsm {
            Some(hsm) if key == "release" => hsm.uri("release", "fw"),
            _ => format!("{key}.key"),
        }
    }

    /// Signs firmware build `app` with key `key` as the given sequence and security
    /// version.
    fn sign(&self, app: &str, key: &str, sequence: u64, security_version: u64) -> Release {
        let image = Firmware::get().path(&format!("{app}.bin"));
        let envelope = self.dir().join(format!("{app}-{key}-{sequence}.suit"));
        self.rota(&[
            "sign",
            "--key",
            &self.key_address(key),
            "--image",
            image.to_str().unwrap(),
            "--vendor-id",
            VENDOR,
            "--class-id",
            CLASS,
            "--sequence",
            &sequence.to_string(),
            "--security-version",
            &security_version.to_string(),
            "-o",
            envelope.to_str().unwrap(),
        ]);
        Release {
            image,
            envelope,
            key: format!("{key}.pub"),
        }
    }

    /// Powers the device on: one QEMU run, until the firmware exits.
    fn boot(&self) -> Boot {
        self.run(None)
    }

    /// Powers on, and cuts the power (kills QEMU) as soon as a line containing
    /// `cut_at` is printed.
    fn boot_and_cut(&self, cut_at: &str) -> Boot {
        self.run(Some(cut_at))
    }

    fn run(&self, cut_at: Option<&str>) -> Boot {
        let mut qemu = Command::new("qemu-system-arm")
            .args([
                "-cpu",
                "cortex-m4",
                "-machine",
                "mps2-an386",
                "-nographic",
                "-monitor",
                "none",
                "-serial",
                "none",
            ])
            .args([
                "-semihosting-config",
                "enable=on,target=native",
                "-kernel",
                "flash.bin",
            ])
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("qemu-system-arm starts");
        let stdout = qemu.stdout.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if sender.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let mut output = String::new();
        loop {
            match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    output.push_str(&line);
                    output.push('\n');
                    if cut_at.is_some_and(|cut| line.contains(cut)) {
                        qemu.kill().unwrap();
                        qemu.wait().unwrap();
                        return Boot {
                            output,
                            success: false,
                        };
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if started.elapsed() > BOOT_TIMEOUT {
                        qemu.kill().unwrap();
                        panic!("the boot hung; output so far:\n{output}");
                    }
                }
            }
        }
        let status = qemu.wait().unwrap();
        assert!(
            cut_at.is_none(),
            "the run ended before {cut_at:?}:\n{output}"
        );
        Boot {
            output,
            success: status.success(),
        }
    }

    /// Offers `release` to the running application (it installs it on its next boot).
    fn offer(&self, release: &Release) {
        let key = self.raw_key(&release.key);
        let envelope = std::fs::read(&release.envelope).unwrap();
        let mut bundle = (envelope.len() as u32).to_le_bytes().to_vec();
        bundle.extend_from_slice(&key);
        bundle.extend_from_slice(&envelope);
        bundle.extend_from_slice(&std::fs::read(&release.image).unwrap());
        std::fs::write(self.dir().join("update.bin"), bundle).unwrap();
    }

    fn withdraw_offer(&self) {
        let _ = std::fs::remove_file(self.dir().join("update.bin"));
        let _ = std::fs::remove_file(self.dir().join("pause.bin"));
    }

    fn raw_key(&self, pem_file: &str) -> [u8; 32] {
        let pem = std::fs::read_to_string(self.dir().join(pem_file)).unwrap();
        match public_key_from_pem(&pem).unwrap() {
            PublicKey::Ed25519(key) => key,
            _ => unreachable!(),
        }
    }

    /// An attacker with a flash programmer: writes `release` into `slot` and marks it
    /// pending, bypassing every check of the application's updater.
    fn program_behind_the_updaters_back(&self, slot: Slot, release: &Release) {
        let path = self.dir().join("flash.bin");
        let bytes = std::fs::read(&path).unwrap();
        let mut flash = SimFlash::<4096, 4>::new(bytes.len() / 4096, 0xFF);
        flash.overwrite(&bytes);
        let layout = BOARD.layout;
        let region = layout.slot(slot);
        flash.erase(region.offset, region.end() as u32).unwrap();
        let envelope = std::fs::read(&release.envelope).unwrap();
        SlotHeader {
            key: self.raw_key(&release.key),
            envelope: &envelope,
        }
        .write(&mut flash, &layout, slot)
        .unwrap();
        let mut image = std::fs::read(&release.image).unwrap();
        image.resize(image.len().next_multiple_of(4), 0xFF);
        flash.write(layout.image_address(slot), &image).unwrap();
        let mut journal = Journal::open(&mut flash, &layout).unwrap();
        let state = journal.state();
        assert_eq!(
            state.confirmed,
            slot.other(),
            "the attack targets the inactive slot"
        );
        journal
            .commit(
                &mut flash,
                BootState {
                    pending: true,
                    trial_boots: 0,
                    ..state
                },
            )
            .unwrap();
        std::fs::write(&path, flash.contents()).unwrap();
    }

    /// Flips one byte of `slot`'s image in flash.bin.
    fn tamper(&self, slot: Slot, at: u32) {
        let path = self.dir().join("flash.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(BOARD.layout.image_address(slot) + at) as usize] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
    }

    /// The DeviceID public key `rota flash-image` wrote for the manufacturer CA.
    fn device_id_pub(&self) -> String {
        let text = std::fs::read_to_string(self.dir().join("device-id.pub")).unwrap();
        text.trim_end().to_owned()
    }

    /// The OTP map, read from otp.bin.
    fn otp_map(&self) -> [u8; rota_boot::otp_map::OTP_LEN] {
        std::fs::read(self.dir().join("otp.bin"))
            .unwrap()
            .try_into()
            .unwrap()
    }

    /// The OTP floor, read from otp.bin.
    fn floor(&self) -> u32 {
        let bytes = std::fs::read(self.dir().join("otp.bin")).unwrap();
        let mut map: [u8; rota_boot::otp_map::OTP_LEN] = bytes.try_into().unwrap();
        OtpRot::open(&mut map).unwrap().floor().unwrap()
    }

    /// Installs v2 (slot B, sequence 2, security version 2) and confirms it.
    fn with_v2_confirmed(self) -> Self {
        let v2 = self.sign("v2-b", "release", 2, 2);
        self.offer(&v2);
        self.boot()
            .expect("app: update staged in slot B (sequence 2)");
        self.withdraw_offer();
        self.boot()
            .expect("rota-boot: booting slot B, sequence 2, security version 2, on trial")
            .expect("confirmed v2");
        assert_eq!(self.floor(), 2);
        self
    }
}

// ---- The scenarios ----

#[test]
fn an_image_signed_inside_an_hsm_boots_and_its_update_installs() {
    // The release key never leaves SoftHSM2: `rota keygen --pkcs11` wrote only
    // release.pub, which `rota flash-image` put into the root of trust.
    let d = Device::with_release_key_in_hsm();
    d.boot()
        .expect("rota-boot: booting slot A, sequence 1, security version 1\n")
        .expect("app: v1 running from slot A\n");
    let v2 = d.sign("v2-b", "release", 2, 2);
    d.offer(&v2);
    d.boot().expect("app: update staged in slot B (sequence 2)");
    d.withdraw_offer();
    d.boot()
        .expect("rota-boot: booting slot B, sequence 2, security version 2, on trial")
        .expect("app: health check passed: confirmed v2");
}

#[test]
fn boots_v1_from_slot_a() {
    let d = Device::new();
    let boot = d.boot();
    boot.expect("rota-boot: booting slot A, sequence 1, security version 1\n")
        .expect("app: v1 running from slot A\n");
    assert!(boot.success);
    assert_eq!(
        d.floor(),
        1,
        "the factory image's security version is committed at first boot"
    );
}

#[test]
fn installs_v2_which_runs_on_trial_confirms_and_keeps_running() {
    let d = Device::new();
    let v2 = d.sign("v2-b", "release", 2, 2);
    d.offer(&v2);
    let boot = d.boot();
    boot.expect("app: v1 running from slot A")
        .expect("app: update staged in slot B (sequence 2)");
    assert!(boot.success);
    d.withdraw_offer();

    let boot = d.boot();
    boot.expect("rota-boot: booting slot B, sequence 2, security version 2, on trial")
        .expect("app: v2 running from slot B, on trial")
        .expect("app: health check passed: confirmed v2");
    assert_eq!(d.floor(), 2);
    for _ in 0..2 {
        let boot = d.boot();
        boot.expect("rota-boot: booting slot B, sequence 2, security version 2\n")
            .expect("app: v2 running from slot B\n");
        assert!(boot.success);
    }
}

#[test]
fn v3_failing_its_health_check_reverts_to_v2_with_the_reason() {
    let d = Device::new().with_v2_confirmed();
    let v3 = d.sign("v3-a-unhealthy", "release", 3, 3);
    d.offer(&v3);
    d.boot().expect("app: update staged in slot A (sequence 3)");
    d.withdraw_offer();

    let boot = d.boot();
    boot.expect("rota-boot: booting slot A, sequence 3, security version 3, on trial")
        .expect("app: health check failed: rejecting this image");
    assert!(!boot.success);

    let boot = d.boot();
    boot.expect("rota-boot: booting slot B, sequence 2, security version 2\n")
        .expect("app: v2 running from slot B\n")
        .expect("app: last revert: slot A, rejected-by-application");
    assert_eq!(d.floor(), 2, "a reverted image does not raise the floor");
}

#[test]
fn a_tampered_image_is_never_booted() {
    let d = Device::new();
    // Offered tampered, the application's updater refuses it before marking it pending.
    let v2 = d.sign("v2-b", "release", 2, 2);
    let tampered = d.dir().join("v2-tampered.bin");
    let mut image = std::fs::read(&v2.image).unwrap();
    image[100] ^= 0x01;
    std::fs::write(&tampered, image).unwrap();
    d.offer(&Release {
        image: tampered,
        envelope: v2.envelope.clone(),
        key: v2.key.clone(),
    });
    d.boot().expect("app: update refused: image-mismatch");
    d.withdraw_offer();

    // Installed intact, then changed in flash before the reboot: the bootloader refuses.
    d.offer(&v2);
    d.boot().expect("app: update staged in slot B");
    d.withdraw_offer();
    d.tamper(Slot::B, 200);
    let boot = d.boot();
    boot.expect("rota-boot: booting slot A, sequence 1")
        .expect("app: last revert: slot B, image-mismatch")
        .expect_not("slot B, sequence 2");
}

#[test]
fn an_image_below_the_floor_is_refused() {
    let d = Device::new().with_v2_confirmed();
    // Newer sequence number, but security version 1 < floor 2.
    let old = d.sign("v4-a", "release", 5, 1);
    d.offer(&old);
    d.boot().expect("app: update refused: below-floor");
    d.withdraw_offer();

    d.program_behind_the_updaters_back(Slot::A, &old);
    let boot = d.boot();
    boot.expect("rota-boot: booting slot B, sequence 2")
        .expect("app: last revert: slot A, below-floor")
        .expect_not("slot A, sequence 5");
}

#[test]
fn an_image_signed_by_a_revoked_key_is_refused() {
    let d = Device::new().with_v2_confirmed();
    // The backup key works until it is revoked.
    let by_backup = d.sign("v4-a", "backup", 3, 3);
    std::fs::write(d.dir().join("revoke.bin"), [1u8]).unwrap();
    d.boot().expect("app: revoked key slot 1");
    std::fs::remove_file(d.dir().join("revoke.bin")).unwrap();

    d.offer(&by_backup);
    d.boot().expect("app: update refused: revoked-key");
    d.withdraw_offer();

    d.program_behind_the_updaters_back(Slot::A, &by_backup);
    let boot = d.boot();
    boot.expect("rota-boot: booting slot B, sequence 2")
        .expect("app: last revert: slot A, revoked-key");

    // The key that signed the running image cannot be revoked.
    std::fs::write(d.dir().join("revoke.bin"), [0u8]).unwrap();
    d.boot()
        .expect("app: revoking key slot refused: that key signed the running image");
}

#[test]
fn a_power_cut_while_writing_slot_a_leaves_v2_running_and_the_download_resumes() {
    let d = Device::new().with_v2_confirmed();
    let v4 = d.sign("v4-a", "release", 4, 4);
    d.offer(&v4);
    std::fs::write(d.dir().join("pause.bin"), 16_384u32.to_le_bytes()).unwrap();
    d.boot_and_cut("app: paused after 16384 bytes");
    std::fs::remove_file(d.dir().join("pause.bin")).unwrap();

    // Power returns: v2 still runs, and the application resumes the download.
    let boot = d.boot();
    boot.expect("rota-boot: booting slot B, sequence 2, security version 2\n")
        .expect("app: v2 running from slot B\n")
        .expect("app: resuming the download at byte ")
        .expect("app: update staged in slot A (sequence 4)");
    d.withdraw_offer();
    d.boot()
        .expect("rota-boot: booting slot A, sequence 4, security version 4, on trial")
        .expect("app: health check passed: confirmed v4");
}

// ---- Measured boot: the UDS, the DeviceID and the Alias key ----

#[test]
fn the_uds_cannot_be_read_by_the_application_after_the_bootloader_locks_it() {
    use rota_boot::otp_map::{UDS_AT, UDS_LEN};
    let d = Device::new();
    let map = d.otp_map();
    let uds = &map[UDS_AT..UDS_AT + UDS_LEN];
    assert_eq!(map[4], 3, "a version 3 OTP map (it holds a UDS)");
    assert_ne!(uds, [0; UDS_LEN], "holding a UDS");
    // The UDS went into the OTP map and nowhere else the factory keeps.
    let uds_hex = hex::encode(uds);
    assert!(!d.factory_output.contains(&uds_hex));
    assert!(!d.device_id_pub().contains(&uds_hex));
    for _ in 0..2 {
        let boot = d.boot();
        boot.expect("rota-boot: booting slot A, sequence 1")
            .expect("app: reading the UDS: refused, hidden until reset\n")
            .expect("app: reading the UDS cells: refused, hidden until reset\n")
            .expect_not("READ")
            .expect_not("no DICE hand-off");
        assert!(boot.success);
        // What only the UDS gives, the application did get, through the hand-off.
        assert_eq!(boot.value("app: DeviceID "), d.device_id_pub());
    }
}

#[test]
fn after_an_update_the_alias_key_changes_and_the_device_id_does_not() {
    let d = Device::new();
    let device_id = d.device_id_pub();
    assert!(
        d.factory_output.contains(&device_id),
        "rota flash-image prints the DeviceID:\n{}",
        d.factory_output
    );
    let v1 = d.boot();
    v1.expect("app: v1 running from slot A");
    let v1_alias = v1.value("app: Alias key ");
    assert_eq!(v1.value("app: DeviceID "), device_id);
    assert_eq!(
        d.boot().value("app: Alias key "),
        v1_alias,
        "the same image and bootloader: the same Alias key"
    );

    let d = d.with_v2_confirmed();
    let v2 = d.boot();
    v2.expect("app: v2 running from slot B\n");
    assert_eq!(v2.value("app: DeviceID "), device_id);
    assert_ne!(v2.value("app: Alias key "), v1_alias);
}

#[test]
fn a_changed_bootloader_changes_the_alias_key() {
    let d = Device::new();
    let before = d.boot();
    let alias = before.value("app: Alias key ");

    // One byte of padding after the bootloader's code, inside its region: the code runs
    // as before, and the bootloader measures its whole region.
    let code = std::fs::metadata(Firmware::get().path("boot.bin"))
        .unwrap()
        .len();
    let last = BOARD.bootloader.end() - 1;
    assert!(code <= last, "the last byte of the region is padding");
    let path = d.dir().join("flash.bin");
    let mut flash = std::fs::read(&path).unwrap();
    flash[last as usize] ^= 0x01;
    std::fs::write(&path, flash).unwrap();

    let after = d.boot();
    after
        .expect("rota-boot: booting slot A, sequence 1, security version 1\n")
        .expect("app: v1 running from slot A\n");
    assert_eq!(after.value("app: DeviceID "), d.device_id_pub());
    assert_ne!(after.value("app: Alias key "), alias);
}
