//! Keys that never leave their hardware, through `rota` as a release engineer and a
//! factory run it: keys made in a real PKCS#11 token (SoftHSM2 as the HSM, a software
//! TPM 2.0 through tpm2-pkcs11 as a device's secure element), envelopes signed there
//! and verified with the public key file, and every bad key address refused in one
//! sentence naming the URI part at fault, with nothing written.

use std::path::Path;

use rota_keys::test_tokens::{SoftHsm, Swtpm};

mod common;
use common::{Run, rota_env};

const VENDOR: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe";
const CLASS: &str = "8a1c3c1e-3b2a-4f5e-9d3a-0c1b2a3d4e5f";

/// A scratch directory with a firmware image, and a SoftHSM2 of the test's own with the
/// tokens `rota-test` and `rota-pin-test` (its `rota` runs get its SOFTHSM2_CONF).
fn scratch() -> (tempfile::TempDir, SoftHsm) {
    let dir = tempfile::tempdir().unwrap();
    let image: Vec<u8> = (0..40 * 1024).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(dir.path().join("fw.bin"), image).unwrap();
    let hsm = SoftHsm::new();
    hsm.init_token("rota-test");
    hsm.init_token("rota-pin-test");
    (dir, hsm)
}

fn sign_args<'a>(key: &'a str, output: &'a str) -> Vec<&'a str> {
    vec![
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
        "3",
        "--security-version",
        "1",
        "-o",
        output,
    ]
}

/// Exit 1 with rota's one `error: ` sentence containing `needle` as the last line: a
/// PKCS#11 module may log lines of its own on stderr first (tpm2-pkcs11 does).
#[track_caller]
fn module_then_rota_fails_with(run: Run, needle: &str) {
    assert_eq!(
        run.code, 1,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains(needle),
        "expected {needle:?} in the last line of {:?}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[test]
fn envelopes_signed_in_an_hsm_verify_with_the_public_key_file_like_file_signed_ones() {
    let (dir, hsm) = scratch();
    let path = dir.path();
    let rota = |dir: &Path, args: &[&str]| rota_env(dir, args, &hsm.env());
    for algorithm in ["ed25519", "p256"] {
        let uri = hsm.uri("rota-test", &format!("cli-sign-{algorithm}"));
        let made = rota(
            path,
            &[
                "keygen",
                "--pkcs11",
                &uri,
                "--algorithm",
                algorithm,
                "--out",
                algorithm,
            ],
        )
        .ok();
        made.has(&format!("wrote {algorithm}.pub")).has("key id: ");
        assert!(!path.join(format!("{algorithm}.key")).exists());
        let envelope = format!("{algorithm}.suit");
        rota(path, &sign_args(&uri, &envelope)).ok();
        rota(
            path,
            &[
                "verify",
                "--trust-anchor",
                &format!("{algorithm}.pub"),
                "--image",
                "fw.bin",
                &envelope,
            ],
        )
        .ok();

        // The same envelope from a key file of the same algorithm: the same shape, and
        // the same verdicts.
        let file = format!("file-{algorithm}");
        rota(path, &["keygen", "--algorithm", algorithm, "--out", &file]).ok();
        let file_envelope = format!("{file}.suit");
        rota(path, &sign_args(&format!("{file}.key"), &file_envelope)).ok();
        assert_eq!(
            std::fs::metadata(path.join(&envelope)).unwrap().len(),
            std::fs::metadata(path.join(&file_envelope)).unwrap().len(),
            "a token-signed envelope is laid out as a file-signed one"
        );
        // Each verifies with its own public key only.
        rota(
            path,
            &[
                "verify",
                "--trust-anchor",
                &format!("{file}.pub"),
                "--image",
                "fw.bin",
                &envelope,
            ],
        )
        .fails_with("");
    }
}

#[test]
fn each_bad_key_address_is_one_sentence_naming_its_uri_part_and_nothing_is_written() {
    let (dir, hsm) = scratch();
    let path = dir.path();
    let rota = |dir: &Path, args: &[&str]| rota_env(dir, args, &hsm.env());
    let module = hsm.module().display().to_string();
    let pin = hsm.pin_file().display().to_string();
    rota(
        path,
        &[
            "keygen",
            "--pkcs11",
            &hsm.uri("rota-test", "cli-bad"),
            "--out",
            "good",
        ],
    )
    .ok();
    let cases = [
        (
            format!(
                "pkcs11:token=rota-pin-test;object=k?module-path={module}&pin-source=file:{}",
                hsm.wrong_pin_file().display()
            ),
            "the PIN for token=rota-pin-test is wrong".to_string(),
        ),
        (
            format!(
                "pkcs11:token=rota-test;object=k?module-path=/nonexistent/p11.so&pin-source=file:{pin}"
            ),
            "module-path=/nonexistent/p11.so".into(),
        ),
        (
            hsm.uri("no-such-token", "k"),
            "no PKCS#11 token matches token=no-such-token".into(),
        ),
        (
            hsm.uri("rota-test", "no-such-key"),
            "token=rota-test has no PKCS#11 private key object=no-such-key".into(),
        ),
        (
            format!("pkcs11:token=rota-test;object=cli-bad?module-path={module}&pin-value=1234"),
            "pin-value".into(),
        ),
        (
            format!("pkcs11:token=rota-test;object=cli-bad;library-version=1?module-path={module}"),
            "library-version".into(),
        ),
    ];
    // A URI that does not parse is refused with the command line (clap's usage error,
    // exit 2) rather than when the key is opened; the sentence is the same.
    let refused = |run: Run, message: &str| {
        if run.code == 2 {
            assert!(
                run.stderr.contains(message),
                "{message:?} in {}",
                run.stderr
            );
            assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        } else {
            run.fails_with(message);
        }
    };
    for (uri, message) in &cases {
        refused(rota(path, &sign_args(uri, "out.suit")), message);
        assert!(
            !path.join("out.suit").exists(),
            "{uri}: an envelope was written"
        );

        refused(
            rota(
                path,
                &[
                    "repo",
                    "init",
                    "--dir",
                    "repo",
                    "--root-key",
                    uri,
                    "--root-keys",
                    "1",
                ],
            ),
            message,
        );
        assert!(!path.join("repo").exists(), "{uri}: a repository was left");

        refused(
            rota(
                path,
                &[
                    "device",
                    "provision",
                    "--ca-key",
                    uri,
                    "--id",
                    "dev-1",
                    "--class",
                    CLASS,
                    "--out",
                    "devices",
                ],
            ),
            message,
        );
        assert!(
            !path.join("devices/dev-1.cert.json").exists(),
            "{uri}: a certificate"
        );
    }
    // A key of the right token and label made twice is refused, and writes no .pub.
    rota(
        path,
        &[
            "keygen",
            "--pkcs11",
            &hsm.uri("rota-test", "cli-bad"),
            "--out",
            "again",
        ],
    )
    .fails_with("token=rota-test already holds a key object=cli-bad");
    assert!(!path.join("again.pub").exists());
}

#[test]
fn a_tpm_locked_by_wrong_pins_is_reported_locked_and_signs_nothing() {
    let (dir, _hsm) = scratch();
    let path = dir.path();

    let tpm = Swtpm::start();
    let env = tpm.env();
    rota_env(
        path,
        &[
            "keygen",
            "--pkcs11",
            &tpm.uri("fw"),
            "--algorithm",
            "p256",
            "--out",
            "tpm",
        ],
        &env,
    )
    .ok();
    let wrong = tpm.uri_with_pin("fw", &tpm.wrong_pin_file());
    // swtpm's dictionary-attack protection: three tries.
    for _ in 0..3 {
        module_then_rota_fails_with(
            rota_env(path, &sign_args(&wrong, "out.suit"), &env),
            "the PIN for token=device is wrong",
        );
    }
    module_then_rota_fails_with(
        rota_env(path, &sign_args(&tpm.uri("fw"), "out.suit"), &env),
        "token=device is locked after too many wrong PINs",
    );
    assert!(!path.join("out.suit").exists());
}

#[test]
fn a_device_identity_made_in_a_tpm_is_certified_and_never_leaves_it() {
    let (dir, hsm) = scratch();
    let path = dir.path();
    let rota = |dir: &Path, args: &[&str]| rota_env(dir, args, &hsm.env());
    let tpm = Swtpm::start();
    let env = tpm.env();
    rota(
        path,
        &["keygen", "--algorithm", "p256", "--out", "factory-ca"],
    )
    .ok();
    let made = rota_env(
        path,
        &[
            "device",
            "provision",
            "--ca-key",
            "factory-ca.key",
            "--pkcs11",
            &tpm.uri("identity"),
            "--key-algorithm",
            "p256",
            "--id",
            "gw-7",
            "--class",
            CLASS,
            "--out",
            "devices",
        ],
        &env,
    )
    .ok();
    made.has("inside token=device: the key never leaves it");
    // The key file is a stub naming the key in the TPM; the certificate certifies the
    // key the TPM holds (the agent refuses a certificate for another key).
    let stub = std::fs::read_to_string(path.join("devices/gw-7.key")).unwrap();
    assert_eq!(stub.trim_end(), tpm.uri("identity"));
    assert!(path.join("devices/gw-7.cert.json").exists());
    // Ed25519, which the TPM has not: one sentence, no certificate.
    module_then_rota_fails_with(
        rota_env(
            path,
            &[
                "device",
                "provision",
                "--ca-key",
                "factory-ca.key",
                "--pkcs11",
                &tpm.uri("ed"),
                "--id",
                "gw-8",
                "--class",
                CLASS,
                "--out",
                "devices",
            ],
            &env,
        ),
        "token=device cannot generate this key type",
    );
    assert!(!path.join("devices/gw-8.cert.json").exists());
}

#[test]
fn root_keys_in_an_hsm_rotate_to_new_token_keys_and_a_bad_one_changes_nothing() {
    let (dir, hsm) = scratch();
    let path = dir.path();
    let rota = |dir: &Path, args: &[&str]| rota_env(dir, args, &hsm.env());
    let uri = |object: &str| hsm.uri("rota-test", object);
    for key in ["root-a", "root-b", "targets", "root-c"] {
        rota(path, &["keygen", "--pkcs11", &uri(key), "--out", key]).ok();
    }
    rota(
        path,
        &[
            "repo",
            "init",
            "--dir",
            "repo",
            "--root-key",
            &uri("root-a"),
            "--root-key",
            &uri("root-b"),
            "--targets-key",
            &uri("targets"),
        ],
    )
    .ok();
    let stub = |name: &str| {
        std::fs::read_to_string(path.join("repo").join(name))
            .unwrap()
            .trim_end()
            .to_string()
    };
    // A key the token does not hold: refused before anything is written.
    rota(
        path,
        &[
            "repo",
            "rotate",
            "--dir",
            "repo",
            "--new-root-key",
            &uri("missing"),
            "--root-threshold",
            "1",
        ],
    )
    .fails_with("token=rota-test has no PKCS#11 private key object=missing");
    assert!(!path.join("repo/metadata/2.root.json").exists());
    assert_eq!(stub("keys/root-1.key"), uri("root-a"));

    // Rotated to root-c, signed in the token by both old keys and the new one.
    rota(
        path,
        &[
            "repo",
            "rotate",
            "--dir",
            "repo",
            "--new-root-key",
            &uri("root-c"),
            "--root-threshold",
            "1",
        ],
    )
    .ok()
    .has("wrote root version 2")
    .has("signed by 2 current root keys and 1 new ones");
    assert_eq!(stub("keys/root-1.key"), uri("root-c"));
    assert!(!path.join("repo/keys/root-2.key").exists());
    assert_eq!(stub("keys/old/v1/root-1.key"), uri("root-a"));
    assert_eq!(stub("keys/old/v1/root-2.key"), uri("root-b"));
    // The rotated repository opens, its chain verified, and signs with its stubs.
    rota(
        path,
        &[
            "repo",
            "rotate",
            "--dir",
            "repo",
            "--new-root-key",
            &uri("root-a"),
        ],
    )
    .ok()
    .has("wrote root version 3");
}
