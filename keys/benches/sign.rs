//! Signatures per second: a key inside SoftHSM2 (PKCS#11, every signature checked
//! before it is returned) against the same algorithm from a key file, Ed25519 and
//! ECDSA P-256. `scripts/bench-hsm.sh` runs it; results on stdout and in
//! `target/bench-hsm-sign.json`.

use std::time::{Duration, Instant};

use rota_keys::pkcs11::{Pkcs11Key, Pkcs11Uri};
use rota_keys::test_tokens::SoftHsm;
use rota_keys::{Algorithm, KeyFile, Sign, SoftwareKey};

/// How long each key signs.
const RUN: Duration = Duration::from_secs(3);

/// Signatures per second over `RUN`, signing 32-byte digests as rota does (a SUIT
/// manifest digest, a TUF metadata body hashes into the same cost for short inputs).
fn rate(key: &dyn Sign) -> f64 {
    let message = [0x5au8; 32];
    for _ in 0..20 {
        key.sign(&message).unwrap();
    }
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < RUN {
        key.sign(&message).unwrap();
        count += 1;
    }
    count as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let hsm = SoftHsm::in_process();
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for (name, algorithm) in [
        ("ed25519", Algorithm::Ed25519),
        ("p256", Algorithm::EcdsaP256Sha256),
    ] {
        let uri: Pkcs11Uri = hsm
            .uri("rota-test", &format!("bench-{name}"))
            .parse()
            .unwrap();
        let token = Pkcs11Key::generate(&uri, algorithm).unwrap();
        let path = dir.path().join(format!("{name}.key"));
        let pem = SoftwareKey::generate(algorithm)
            .unwrap()
            .to_pkcs8_pem()
            .unwrap();
        std::fs::write(&path, pem.as_bytes()).unwrap();
        let file = KeyFile::new(&path).open().unwrap();
        let (in_token, in_file) = (rate(&token), rate(&file));
        println!(
            "{name:8} SoftHSM2 {in_token:>9.0} signatures/s   key file {in_file:>9.0} signatures/s   ({:.1}x)",
            in_file / in_token
        );
        rows.push(format!(
            "{{\"algorithm\":\"{name}\",\"softhsm2_per_s\":{in_token:.0},\"file_per_s\":{in_file:.0}}}"
        ));
    }
    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-hsm-sign.json");
    std::fs::write(out, format!("[{}]\n", rows.join(","))).unwrap();
}
