//! [`CompactEd25519Verifier`] on the Cortex-M4 itself. salty's field arithmetic is
//! Cortex-M4 assembly on thumbv7em (and portable Rust on the host), so the host tests
//! (`compact_ed25519*.rs`) do not run the code the bootloader runs. This test writes
//! every Wycheproof Ed25519 vector, the strictness cases and a few hundred genuine and
//! mutated signatures to a file, builds `bootloader/qemu/vectors` (a firmware that
//! verifies each with both `Ed25519Verifier` and `CompactEd25519Verifier`), runs it under
//! QEMU (mps2-an386, Cortex-M4) and requires that the two agree with each other and with
//! the expected verdict on every vector.
//!
//! Needs `qemu-system-arm` and the `thumbv7em-none-eabihf` target (scripts/test.sh
//! installs both); fails, loudly, when one is missing.
#![cfg(feature = "compact-ed25519")]

mod ed25519_cases;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_cases::{
    IDENTITY, L, WYCHEPROOF_TESTS, add_le, identity_r_signature, mixed_order_signature,
    small_order_encodings, small_order_key_forgery, wycheproof_cases,
};
use ed25519_dalek::{Signer as _, SigningKey};
use rota_manifest::Ed25519Verifier;

/// Longest the firmware may take (it needs ~a minute on a slow machine).
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// One vector: what the firmware reads.
struct Vector {
    key: [u8; 32],
    sig: Vec<u8>,
    msg: Vec<u8>,
    valid: bool,
}

impl Vector {
    /// A vector whose expected verdict is the default verifier's on the host.
    fn judged(key: [u8; 32], sig: Vec<u8>, msg: Vec<u8>) -> Vector {
        let valid = Ed25519Verifier::verify_raw(&key, &msg, &sig).is_ok();
        Vector {
            key,
            sig,
            msg,
            valid,
        }
    }
}

/// Every Wycheproof Ed25519 vector, with Wycheproof's verdict.
fn wycheproof() -> Vec<Vector> {
    wycheproof_cases()
        .into_iter()
        .map(|case| Vector {
            key: case.key,
            sig: case.sig,
            msg: case.msg,
            valid: case.valid,
        })
        .collect()
}

/// The strictness cases: small-order keys and R in every encoding, non-canonical keys,
/// `S + kL`, and genuine signatures by a few keys, each also mutated.
fn strictness_and_mutations() -> Vec<Vector> {
    let mut vectors = Vec::new();
    let small = small_order_encodings();
    let genuine_key = SigningKey::from_bytes(&[0x5a; 32]);
    let genuine_pk = genuine_key.verifying_key().to_bytes();
    for a in &small {
        // Small-order A with every small-order R and S = 0: the universal forgery.
        for r in &small {
            vectors.push(Vector::judged(
                *a,
                [&r[..], &[0; 32]].concat(),
                b"m".to_vec(),
            ));
        }
        // Small-order R under a genuine key.
        vectors.push(Vector::judged(
            genuine_pk,
            [&a[..], &[0; 32]].concat(),
            b"m".to_vec(),
        ));
    }
    // Forgeries that pass the cofactorless equation, each refused by one strict check
    // only: small-order keys with R = [s]B, R = identity under genuine keys; and
    // mixed-order keys and R, which verify_strict accepts.
    for (i, key) in small.iter().enumerate() {
        let (key, sig) = small_order_key_forgery(*key, i as u64 + 1);
        vectors.push(Vector::judged(key, sig, b"m".to_vec()));
    }
    for secret in 1..=8u64 {
        let msg = secret.to_le_bytes().to_vec();
        let (key, sig) = small_order_key_forgery(IDENTITY, secret << 20);
        vectors.push(Vector::judged(key, sig, msg.clone()));
        let (key, sig) = identity_r_signature(secret.wrapping_mul(0x9e37_79b9_7f4a_7c15), &msg);
        vectors.push(Vector::judged(key, sig, msg.clone()));
        let (key, sig) = mixed_order_signature(secret * 0x1234_5678_9abc, secret, &msg);
        vectors.push(Vector::judged(key, sig.clone(), msg.clone()));
        let mut flipped = sig;
        flipped[(secret as usize * 13) % 64] ^= 0x10;
        vectors.push(Vector::judged(key, flipped, msg));
    }
    // Non-canonical keys: y + p (and both signs) for the small y that have one.
    for y in 0u8..19 {
        let mut plus_p = [0xffu8; 32];
        plus_p[0] = 0xed + y;
        plus_p[31] = 0x7f;
        for sign in [0, 0x80] {
            let mut key = plus_p;
            key[31] |= sign;
            vectors.push(Vector::judged(key, vec![0x11; 64], b"m".to_vec()));
        }
    }
    // Genuine signatures by 24 keys over messages of 0 to 230 bytes, and mutations.
    for i in 0..24u8 {
        let signing = SigningKey::from_bytes(&[i; 32]);
        let pk = signing.verifying_key().to_bytes();
        let msg: Vec<u8> = (0..usize::from(i) * 10).map(|j| (j as u8) ^ i).collect();
        let sig = signing.sign(&msg).to_bytes().to_vec();
        let mut push = |key: [u8; 32], sig: Vec<u8>, msg: Vec<u8>| {
            vectors.push(Vector::judged(key, sig, msg));
        };
        push(pk, sig.clone(), msg.clone());
        // A flipped bit of R, of S, of the key, of the message.
        for bit in [usize::from(i) * 7 % 256, 256 + usize::from(i) * 11 % 253] {
            let mut s = sig.clone();
            s[bit / 8] ^= 1 << (bit % 8);
            push(pk, s, msg.clone());
        }
        let mut k = pk;
        k[usize::from(i) % 32] ^= 1 << (i % 8);
        push(k, sig.clone(), msg.clone());
        let mut m = msg.clone();
        m.push(i);
        push(pk, sig.clone(), m);
        // S + L, S + 15L, a high bit of S.
        let mut s = sig.clone();
        s[32..].copy_from_slice(&add_le(&sig[32..], &L));
        push(pk, s.clone(), msg.clone());
        for _ in 1..15 {
            let next = add_le(&s[32..], &L);
            s[32..].copy_from_slice(&next);
        }
        push(pk, s, msg.clone());
        let mut s = sig.clone();
        s[63] |= 0x80 >> (i % 3);
        push(pk, s, msg.clone());
        // -A, R and S swapped, the signature cut and extended.
        let mut k = pk;
        k[31] ^= 0x80;
        push(k, sig.clone(), msg.clone());
        push(pk, [&sig[32..], &sig[..32]].concat(), msg.clone());
        push(pk, sig[..63].to_vec(), msg.clone());
        push(pk, [&sig[..], &[i]].concat(), msg.clone());
    }
    vectors
}

/// The file format the firmware reads (see bootloader/qemu/vectors/src/main.rs).
fn encode(vectors: &[Vector]) -> Vec<u8> {
    let mut out = (vectors.len() as u32).to_le_bytes().to_vec();
    for v in vectors {
        out.extend_from_slice(&v.key);
        out.extend_from_slice(&(v.sig.len() as u32).to_le_bytes());
        out.extend_from_slice(&v.sig);
        out.extend_from_slice(&(v.msg.len() as u32).to_le_bytes());
        out.extend_from_slice(&v.msg);
        out.push(u8::from(v.valid));
    }
    out
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

/// Builds the vector runner firmware; returns its ELF.
fn build_firmware() -> PathBuf {
    let qemu = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bootloader/qemu");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "rota-qemu-vectors"])
        .current_dir(&qemu)
        // The QEMU workspace's own target and rustflags (.cargo/config.toml), not ours.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building rota-qemu-vectors for thumbv7em-none-eabihf failed \
         (rustup target add thumbv7em-none-eabihf)"
    );
    qemu.join("target/thumbv7em-none-eabihf/release/rota-qemu-vectors")
}

/// Runs `elf` under QEMU in `dir`; returns (stdout, success).
fn run(elf: &Path, dir: &Path) -> (String, bool) {
    let mut qemu = Command::new("qemu-system-arm")
        .args(["-cpu", "cortex-m4", "-machine", "mps2-an386", "-nographic"])
        .args(["-monitor", "none", "-serial", "none"])
        .args(["-semihosting-config", "enable=on,target=native", "-kernel"])
        .arg(elf)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("qemu-system-arm starts");
    let mut stdout = qemu.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = qemu.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > RUN_TIMEOUT {
            qemu.kill().unwrap();
            qemu.wait().unwrap();
            panic!(
                "the vector run hung; output so far:\n{}",
                reader.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (reader.join().unwrap(), status.success())
}

#[test]
fn compact_verifier_agrees_with_the_default_on_the_cortex_m4_for_every_vector() {
    require("qemu-system-arm", "apt-get install qemu-system-arm");
    let mut vectors = wycheproof();
    // The host's default verifier agrees with Wycheproof (wycheproof_ed25519.rs tests
    // it in detail); the extra vectors take its verdicts as expected.
    for v in &vectors {
        assert_eq!(
            Ed25519Verifier::verify_raw(&v.key, &v.msg, &v.sig).is_ok(),
            v.valid
        );
    }
    vectors.extend(strictness_and_mutations());
    let valid = vectors.iter().filter(|v| v.valid).count();
    let invalid = vectors.len() - valid;

    let elf = build_firmware();
    let dir = std::env::temp_dir().join(format!("rota-ed25519-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vectors.bin"), encode(&vectors)).unwrap();
    let (output, success) = run(&elf, &dir);
    let _ = std::fs::remove_dir_all(&dir);

    let n = vectors.len();
    let summary =
        format!("vectors: {n} checked, {n} agree ({valid} valid, {invalid} invalid), 0 disagree");
    assert!(
        success && output.lines().any(|l| l == summary),
        "expected {summary:?} and a clean exit; the firmware printed:\n{output}"
    );
    // Every Wycheproof vector and more went through the M4 (the count of the file is
    // what the firmware reports, so none was skipped).
    assert!(n > WYCHEPROOF_TESTS + 400, "{n} vectors");
    println!("{summary}");
}
