//! The `rota` binary as a user runs it: exit codes, files written, and messages.

use std::fs;
use std::path::{Path, PathBuf};

use rota_manifest::{ImageDigest, ImageManifest, SignatureAlgorithm, SoftwareKey};
use serde_json::Value;
use tempfile::TempDir;

mod common;
use common::{Run, rota};

const VENDOR: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe";
const CLASS: &str = "1492af14-2569-5e48-bf42-9b2d51f2ab45";

/// RFC 8032 §7.1 TEST 1 secret key (a public test key: never use it for real).
const TEST1_SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];

/// `../shared/vectors` beside the project.
fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
}

fn draft37(name: &str) -> PathBuf {
    vectors().join("suit-manifest-draft37").join(name)
}

/// A scratch directory with a key pair `release` and a 200 KiB image (not a multiple
/// of the 64 KiB read size).
fn setup() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    rota(dir.path(), &["keygen", "--out", "release"]).ok();
    let image: Vec<u8> = (0..200 * 1024 + 123).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(dir.path().join("fw.bin"), image).unwrap();
    dir
}

fn sign(dir: &Path, extra: &[&str]) -> Run {
    sign_as(dir, "release.key", "fw.suit", extra)
}

/// `rota sign` of fw.bin with `key` into `output`.
fn sign_as(dir: &Path, key: &str, output: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "sign",
        "--key",
        key,
        "--image",
        "fw.bin",
        "--vendor-id",
        VENDOR,
        "--class-id",
        CLASS,
        "--sequence",
        "7",
        "--security-version",
        "2",
        "-o",
        output,
    ];
    args.extend_from_slice(extra);
    rota(dir, &args)
}

fn inspect_json(dir: &Path, envelope: &str) -> Value {
    let run = rota(dir, &["inspect", "--json", envelope]).ok();
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let run = rota(dir.path(), &["keygen", "--out", "release"]).ok();
    let key = dir.path().join("release.key");
    let public = dir.path().join("release.pub");
    let key_pem = fs::read_to_string(&key).unwrap();
    let pub_pem = fs::read_to_string(&public).unwrap();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(pub_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    #[cfg(unix)]
    {
        let mode = common::mode(&key);
        assert_eq!(mode, 0o600, "release.key has mode {mode:o}");
    }
    // The key id printed is SHA-256 of the public key, as the COSE kid will be.
    let kid = rota_manifest::public_key_from_pem(&pub_pem)
        .unwrap()
        .key_id();
    assert!(run.stdout.contains(&hex::encode(kid)), "{}", run.stdout);
    assert!(run.stdout.contains("release.key") && run.stdout.contains("release.pub"));
    // One key type, several roles: the output says where the public half goes for each
    // (a CA key is no firmware trust anchor).
    assert!(
        run.stdout.contains("firmware-signing key") && run.stdout.contains("DATA_DIR/device-ca/"),
        "{}",
        run.stdout
    );

    // A second run refuses and changes nothing.
    rota(dir.path(), &["keygen", "--out", "release"]).fails_with("release.key already exists");
    assert_eq!(fs::read_to_string(&key).unwrap(), key_pem);
    assert_eq!(fs::read_to_string(&public).unwrap(), pub_pem);

    // Only the .pub exists: still refused, and no .key is left behind.
    fs::write(dir.path().join("other.pub"), "placeholder").unwrap();
    rota(dir.path(), &["keygen", "--out", "other"]).fails_with("other.pub already exists");
    assert!(!dir.path().join("other.key").exists());
}

#[test]
fn sign_then_verify() {
    let dir = setup();
    let run = sign(dir.path(), &["--uri", "https://updates.example.com/fw.bin"]).ok();
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(run.stdout.contains("fw.suit"), "{}", run.stdout);

    let run = rota(
        dir.path(),
        &["verify", "--trust-anchor", "release.pub", "fw.suit"],
    )
    .ok();
    assert_eq!(run.stdout.lines().count(), 1);
    for needle in [
        "authentic",
        "sequence 7",
        "security version 2",
        "Ed25519",
        "release.pub",
    ] {
        assert!(run.stdout.contains(needle), "{needle:?} in {}", run.stdout);
    }

    let run = rota(
        dir.path(),
        &[
            "verify",
            "--trust-anchor",
            "release.pub",
            "fw.suit",
            "--image",
            "fw.bin",
        ],
    )
    .ok();
    assert!(
        run.stdout.contains("image matches (204923 bytes)"),
        "{}",
        run.stdout
    );
}

#[test]
fn sign_refuses_to_overwrite_without_force() {
    let dir = setup();
    sign(dir.path(), &[]).ok();
    let first = fs::read(dir.path().join("fw.suit")).unwrap();
    sign(dir.path(), &["--uri", "https://x.example/fw.bin"]).fails_with("fw.suit already exists");
    assert_eq!(fs::read(dir.path().join("fw.suit")).unwrap(), first);
    sign(
        dir.path(),
        &["--uri", "https://x.example/fw.bin", "--force"],
    )
    .ok();
    assert_ne!(fs::read(dir.path().join("fw.suit")).unwrap(), first);
    // No temporary file is left behind.
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(".rota-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn sign_takes_a_component_id() {
    let dir = setup();
    sign(dir.path(), &["--component", "6669726d77617265/01"]).ok();
    let json = inspect_json(dir.path(), "fw.suit");
    assert_eq!(
        json["components"],
        serde_json::json!([["6669726d77617265", "01"]])
    );

    let run = sign(dir.path(), &["--component", "zz", "--force"]);
    assert_eq!(
        run.code, 2,
        "a bad --component is a usage error: {}",
        run.stderr
    );
    assert!(run.stderr.contains("not hex"), "{}", run.stderr);
}

#[test]
fn tampered_image_is_refused() {
    let dir = setup();
    sign(dir.path(), &[]).ok();
    let mut image = fs::read(dir.path().join("fw.bin")).unwrap();
    image[1000] ^= 0x01;
    fs::write(dir.path().join("tampered.bin"), &image).unwrap();
    rota(
        dir.path(),
        &[
            "verify",
            "--trust-anchor",
            "release.pub",
            "fw.suit",
            "--image",
            "tampered.bin",
        ],
    )
    .fails_with("image digest mismatch");

    image.truncate(1000);
    fs::write(dir.path().join("short.bin"), &image).unwrap();
    rota(
        dir.path(),
        &[
            "verify",
            "--trust-anchor",
            "release.pub",
            "fw.suit",
            "--image",
            "short.bin",
        ],
    )
    .fails_with("image size mismatch");
}

#[test]
fn untrusted_key_is_refused() {
    let dir = setup();
    sign(dir.path(), &[]).ok();
    rota(dir.path(), &["keygen", "--out", "attacker"]).ok();
    rota(
        dir.path(),
        &["verify", "--trust-anchor", "attacker.pub", "fw.suit"],
    )
    .fails_with("no trusted key");
    // The draft's P-256 key is a valid anchor, just not this envelope's.
    let p256 = draft37("example_public_key_p256.pem");
    rota(
        dir.path(),
        &[
            "verify",
            "--trust-anchor",
            p256.to_str().unwrap(),
            "fw.suit",
        ],
    )
    .fails_with("no trusted key");
    // Either of two anchors will do.
    rota(
        dir.path(),
        &[
            "verify",
            "--trust-anchor",
            "attacker.pub",
            "--trust-anchor",
            "release.pub",
            "fw.suit",
        ],
    )
    .ok();
}

#[test]
fn keys_in_the_wrong_place_are_named() {
    let dir = setup();
    sign(dir.path(), &[]).ok();
    rota(
        dir.path(),
        &["verify", "--trust-anchor", "release.key", "fw.suit"],
    )
    .fails_with("cannot use release.key as a trust anchor: this is a private key");
    rota(
        dir.path(),
        &["verify", "--trust-anchor", "fw.suit", "fw.suit"],
    )
    .fails_with("fw.suit is not a PEM key file");
    let run = sign_as(dir.path(), "release.pub", "other.suit", &[]);
    run.fails_with("cannot use release.pub as a signing key: this is a public key");
}

#[test]
fn non_envelopes_get_one_line_and_no_panic() {
    let dir = setup();
    fs::write(dir.path().join("empty.suit"), b"").unwrap();
    fs::write(dir.path().join("text.suit"), b"hello, world\n").unwrap();
    // Tag 107 around a map that is cut short.
    fs::write(dir.path().join("cut.suit"), [0xd8, 0x6b, 0xa2, 0x02]).unwrap();
    fs::create_dir(dir.path().join("dir.suit")).unwrap();
    for (file, needle) in [
        ("fw.bin", "fw.bin is not a valid SUIT envelope"),
        ("release.pub", "release.pub is not a valid SUIT envelope"),
        ("empty.suit", "empty.suit is not a valid SUIT envelope"),
        ("text.suit", "text.suit is not a valid SUIT envelope"),
        (
            "cut.suit",
            "cut.suit is not a valid SUIT envelope: the data ends early, at byte 4",
        ),
        ("dir.suit", "cannot read dir.suit: it is a directory"),
    ] {
        rota(
            dir.path(),
            &["verify", "--trust-anchor", "release.pub", file],
        )
        .fails_with(needle);
        rota(dir.path(), &["inspect", file]).fails_with(needle);
        rota(dir.path(), &["inspect", "--json", file]).fails_with(needle);
    }
}

#[test]
fn missing_files_are_named() {
    let dir = setup();
    rota(
        dir.path(),
        &["verify", "--trust-anchor", "release.pub", "missing.suit"],
    )
    .fails_with("cannot read missing.suit: no such file");
    rota(
        dir.path(),
        &["verify", "--trust-anchor", "missing.pub", "fw.suit"],
    )
    .fails_with("cannot read missing.pub: no such file");
    rota(dir.path(), &["inspect", "missing.suit"]).fails_with("missing.suit");
    sign(dir.path(), &[]).ok();
    rota(
        dir.path(),
        &[
            "verify",
            "--trust-anchor",
            "release.pub",
            "fw.suit",
            "--image",
            "missing.bin",
        ],
    )
    .fails_with("cannot read missing.bin: no such file");
    let run = sign_as(dir.path(), "missing.key", "x.suit", &[]);
    run.fails_with("cannot read missing.key: no such file");
    rota(dir.path(), &["keygen", "--out", "no/such/dir/k"])
        .fails_with("directory no/such/dir does not exist");
}

#[test]
fn inspect_json_of_a_signed_envelope() {
    let dir = setup();
    sign(dir.path(), &["--uri", "https://updates.example.com/fw.bin"]).ok();
    let json = inspect_json(dir.path(), "fw.suit");

    let image = fs::read(dir.path().join("fw.bin")).unwrap();
    let mut digest = ImageDigest::new();
    digest.update(&image);
    let pub_pem = fs::read_to_string(dir.path().join("release.pub")).unwrap();
    let kid = rota_manifest::public_key_from_pem(&pub_pem)
        .unwrap()
        .key_id();

    assert_eq!(json["authenticated"], false);
    assert_eq!(json["sequence_number"], 7);
    assert_eq!(json["security_version"], 2);
    assert_eq!(json["components"], serde_json::json!([["00"]]));
    assert_eq!(json["vendor_id"], "fa6b4a53d5ad5fdfbe9de663e4d41ffe");
    assert_eq!(json["class_id"], "1492af1425695e48bf429b2d51f2ab45");
    assert_eq!(json["image_size"], image.len());
    assert_eq!(json["image_digest"], hex::encode(digest.finalize()));
    assert_eq!(json["image_digest_alg"], -16);
    assert_eq!(json["uri"], "https://updates.example.com/fw.bin");
    assert_eq!(json["manifest_digest_matches"], true);
    assert_eq!(json["manifest_digest"].as_str().unwrap().len(), 64);
    assert_eq!(json["envelope_keys"], serde_json::json!([2, 3]));
    assert_eq!(
        json["manifest_keys"],
        serde_json::json!([1, 2, 3, 7, 9, 20])
    );
    assert_eq!(
        json["signatures"],
        serde_json::json!([{ "alg": -19, "alg_name": "Ed25519", "kid": hex::encode(kid) }])
    );

    // The human form says it is unverified and lines up its values.
    let run = rota(dir.path(), &["inspect", "fw.suit"]).ok();
    assert!(run.stdout.contains("NOT VERIFIED"), "{}", run.stdout);
    assert!(run.stdout.contains(VENDOR), "{}", run.stdout);
}

#[test]
fn inspect_json_of_draft37_example0() {
    let dir = tempfile::tempdir().unwrap();
    let json = inspect_json(
        dir.path(),
        draft37("example0.signed.suit").to_str().unwrap(),
    );
    assert_eq!(json["sequence_number"], 0);
    assert_eq!(json["security_version"], Value::Null);
    assert_eq!(json["uri"], Value::Null);
    assert_eq!(
        json["manifest_digest"],
        "6658ea560262696dd1f13b782239a064da7c6c5cbaf52fded428a6fc83c7e5af"
    );
    assert_eq!(json["manifest_digest_matches"], true);
    assert_eq!(json["components"], serde_json::json!([["00"]]));
    assert_eq!(json["vendor_id"], "fa6b4a53d5ad5fdfbe9de663e4d41ffe");
    assert_eq!(json["class_id"], "1492af1425695e48bf429b2d51f2ab45");
    assert_eq!(
        json["image_digest"],
        "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210"
    );
    assert_eq!(json["image_size"], 34768);
    assert_eq!(
        json["signatures"],
        serde_json::json!([{ "alg": -7, "alg_name": "ES256", "kid": null }])
    );
    assert_eq!(json["envelope_keys"], serde_json::json!([2, 3]));
    assert_eq!(json["manifest_keys"], serde_json::json!([1, 2, 3, 7, 9]));
}

#[test]
fn verifies_every_signed_draft37_example_with_the_p256_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = draft37("example_public_key_p256.pem");
    for n in 0..=5 {
        let envelope = draft37(&format!("example{n}.signed.suit"));
        let run = rota(
            dir.path(),
            &[
                "verify",
                "--trust-anchor",
                key.to_str().unwrap(),
                envelope.to_str().unwrap(),
            ],
        )
        .ok();
        assert!(
            run.stdout
                .contains(&format!("sequence {n}, security version none, ES256")),
            "{}",
            run.stdout
        );
    }
    // The unsigned variant is refused: a processor requires authentication.
    let unsigned = draft37("example0.unsigned.suit");
    rota(
        dir.path(),
        &[
            "verify",
            "--trust-anchor",
            key.to_str().unwrap(),
            unsigned.to_str().unwrap(),
        ],
    )
    .fails_with("is not authentic: the envelope is not signed");
}

#[test]
fn eddsa_8_needs_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let signer = SoftwareKey::from_ed25519_seed(TEST1_SEED);
    let envelope = ImageManifest {
        image_digest: [0x11; 32],
        image_size: 4,
        sequence_number: 3,
        security_version: 1,
        ..ImageManifest::default()
    }
    .build_envelope_as(&[(&signer, SignatureAlgorithm::EdDsa)])
    .unwrap();
    fs::write(dir.path().join("eddsa.suit"), envelope).unwrap();
    fs::write(
        dir.path().join("test1.pub"),
        signer.public_key_pem().unwrap(),
    )
    .unwrap();

    rota(
        dir.path(),
        &["verify", "--trust-anchor", "test1.pub", "eddsa.suit"],
    )
    .fails_with("unsupported signature algorithm -8");
    let run = rota(
        dir.path(),
        &[
            "verify",
            "--trust-anchor",
            "test1.pub",
            "--allow-eddsa-8",
            "eddsa.suit",
        ],
    )
    .ok();
    assert!(run.stdout.contains("EdDSA signature"), "{}", run.stdout);
    let json = inspect_json(dir.path(), "eddsa.suit");
    assert_eq!(json["signatures"][0]["alg"], -8);
    assert_eq!(json["signatures"][0]["alg_name"], "EdDSA");
}

#[test]
fn help_explains_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (command, flags) in [
        ("keygen", &["--out"][..]),
        (
            "sign",
            &[
                "--key",
                "--image",
                "--vendor-id",
                "--class-id",
                "--sequence",
                "--security-version",
                "--component",
                "--uri",
                "--output",
                "--force",
            ][..],
        ),
        (
            "verify",
            &["--trust-anchor", "--allow-eddsa-8", "--image", "<ENVELOPE>"][..],
        ),
        ("inspect", &["--json", "<ENVELOPE>"][..]),
        (
            "flash-image",
            &[
                "--board",
                "--bootloader",
                "--image",
                "--envelope",
                "--trust-anchor",
                "--out-flash",
                "--out-otp",
                "--force",
            ][..],
        ),
    ] {
        let run = rota(dir.path(), &[command, "--help"]).ok();
        let lines: Vec<&str> = run.stdout.lines().collect();
        for flag in flags {
            // `--help` puts each flag on its own line (`      --key <NAME.key>` or
            // `  -o, --output <OUT.suit>`) with its explanation on the next.
            let at = lines
                .iter()
                .position(|line| {
                    let line = line.trim_start();
                    line.starts_with(flag)
                        || (line.starts_with('-')
                            && line.get(4..).is_some_and(|r| r.starts_with(flag)))
                })
                .unwrap_or_else(|| panic!("{command} --help lacks {flag}:\n{}", run.stdout));
            assert!(
                lines.get(at + 1).is_some_and(|l| !l.trim().is_empty()),
                "{command} --help does not explain {flag}:\n{}",
                run.stdout
            );
        }
    }
    // Usage errors are clap's: exit code 2.
    assert_eq!(rota(dir.path(), &["sign"]).code, 2);
    assert_eq!(rota(dir.path(), &["frobnicate"]).code, 2);
}

/// `rota flash-image` for the QEMU board with a 1000-byte stand-in bootloader.
fn flash_image(dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "flash-image",
        "--bootloader",
        "boot.bin",
        "--image",
        "fw.bin",
        "--envelope",
        "fw.suit",
        "--trust-anchor",
        "release.pub",
        "--out-flash",
        "flash.bin",
        "--out-otp",
        "otp.bin",
    ];
    args.extend_from_slice(extra);
    rota(dir, &args)
}

#[test]
fn flash_image_lays_out_a_device_that_boots_its_factory_image() {
    use rota_boot::board::QEMU_MPS2_AN386 as BOARD;
    use rota_boot::{Bootloader, Slot, otp_map::OtpRot, sim::SimFlash};

    let dir = setup();
    let d = dir.path();
    sign(d, &[]).ok();
    fs::write(d.join("boot.bin"), [0xB0u8; 1000]).unwrap();
    let run = flash_image(d, &[]).ok();
    assert!(
        run.stdout
            .contains("slot A: sequence 7, security version 2"),
        "{}",
        run.stdout
    );

    let flash = fs::read(d.join("flash.bin")).unwrap();
    assert_eq!(flash.len(), BOARD.flash_size as usize);
    assert_eq!(&flash[..1000], &[0xB0; 1000][..]);
    let image = fs::read(d.join("fw.bin")).unwrap();
    let at = BOARD.layout.image_address(Slot::A) as usize;
    assert_eq!(&flash[at..at + image.len()], &image[..]);
    let journal = BOARD.layout.journal;
    assert!(
        flash[journal.offset as usize..journal.end() as usize]
            .iter()
            .all(|&b| b == 0xFF),
        "a blank journal: the factory state"
    );

    // The bootloader, given these bytes, boots slot A.
    let mut otp: [u8; rota_boot::otp_map::OTP_LEN] =
        fs::read(d.join("otp.bin")).unwrap().try_into().unwrap();
    let mut device = SimFlash::<4096, 4>::new(flash.len() / 4096, 0xFF);
    device.overwrite(&flash);
    let mut scratch = [0u8; 1024];
    let decision = Bootloader::<_, _, rota_boot::BootProfile>::new(
        &mut device,
        OtpRot::open(&mut otp).unwrap(),
        BOARD.layout,
        &mut scratch,
    )
    .unwrap()
    .decide()
    .unwrap();
    assert!(
        matches!(decision, rota_boot::BootDecision::Boot { image, trial: false } if image.slot == Slot::A && image.sequence_number == 7),
        "{decision:?}"
    );

    // Never overwritten without --force.
    flash_image(d, &[]).fails_with("already exists");
    flash_image(d, &["--force"]).ok();
}

#[test]
fn flash_image_refuses_what_would_not_boot() {
    let dir = setup();
    let d = dir.path();
    sign(d, &[]).ok();
    fs::write(d.join("boot.bin"), [0xB0u8; 1000]).unwrap();
    rota(d, &["keygen", "--out", "other"]).ok();
    let p256 = draft37("example_public_key_p256.pem");

    rota(
        d,
        &[
            "flash-image",
            "--bootloader",
            "boot.bin",
            "--image",
            "fw.bin",
            "--envelope",
            "fw.suit",
            "--trust-anchor",
            "other.pub",
            "--out-flash",
            "flash.bin",
            "--out-otp",
            "otp.bin",
        ],
    )
    .fails_with("is not signed by a trust anchor");
    flash_image(d, &["--trust-anchor", p256.to_str().unwrap()]).fails_with("is not an Ed25519 key");
    fs::write(d.join("boot.bin"), vec![0u8; 64 * 1024 + 1]).unwrap();
    flash_image(d, &[]).fails_with("too large to be the bootloader of this board");
    fs::write(d.join("boot.bin"), [0xB0u8; 1000]).unwrap();
    // An image that is not the one the envelope signs.
    let mut image = fs::read(d.join("fw.bin")).unwrap();
    image[10] ^= 1;
    fs::write(d.join("fw.bin"), &image).unwrap();
    flash_image(d, &[]).fails_with("would not boot it");
    // An image larger than the slot.
    fs::write(d.join("fw.bin"), vec![0u8; 300 * 1024]).unwrap();
    flash_image(d, &[]).fails_with("too large to be an image for slot A");
    assert!(
        !d.join("flash.bin").exists() && !d.join("otp.bin").exists(),
        "nothing written on refusal"
    );
}
