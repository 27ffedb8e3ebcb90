//! The server's checks of uploaded TUF metadata (rota-repo, called by rota-server's
//! `tuf.rs` on `PUT /api/v1/tuf/root` and `PUT /api/v1/tuf/targets`), fed arbitrary bytes.
//!
//! | byte & 7 | what the server calls |
//! |---|---|
//! | 0 | first root: `verify_first_root`, then `OnlineSigner::check_against_root` |
//! | 1 | root N+1: `verify_root_update` after the fixture root, then `check_against_root` |
//! | 2 | first targets: `verify_targets_upload` with no previous targets |
//! | 3 | next targets: `verify_targets_upload` after the fixture targets (version 1) |
//!
//! With bit 3 (`& 8`) set, the rest is the `signed` object alone: the harness signs
//! rota-tuf's canonical form of it (what the server and devices verify) with the role's
//! key, so inputs reach every check behind the signature.
//!
//! Targets the server accepts are then published as the server publishes them
//! (`OnlineSigner::snapshot`, `OnlineSigner::timestamp`, which must not fail: the server
//! answers 500 if they do), and the device's TUF client (rota-tuf, TUF 1.0.34 §5.4–§5.6)
//! must accept the result: the server never publishes what a device refuses.
#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use rota_repo::{
    OnlineSigner, RepoKey, RoleKeys, RootParams, TargetFile, init_root, sign_targets,
    verify_first_root, verify_root_update, verify_targets_upload,
};
use rota_tuf::fuzzing::TrustedSet;

/// 2030-01-01T00:00:00Z, the server's clock.
const NOW_S: u64 = 1_893_456_000;
const DAY: Duration = Duration::from_secs(86_400);

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_S)
}

struct Fixture {
    root_key: RepoKey,
    targets_key: RepoKey,
    online: OnlineSigner,
    root: Vec<u8>,
    targets: Vec<u8>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let root_key = RepoKey::from_seed(&[6; 32]);
    let targets_key = RepoKey::from_seed(&[7; 32]);
    let online = OnlineSigner::new(RepoKey::from_seed(&[8; 32]), RepoKey::from_seed(&[9; 32]));
    let one = |key: &RepoKey| RoleKeys::new(vec![key.public().clone()], 1);
    let params = RootParams {
        root: one(&root_key),
        targets: one(&targets_key),
        snapshot: RoleKeys::new(vec![online.snapshot_key().clone()], 1),
        timestamp: RoleKeys::new(vec![online.timestamp_key().clone()], 1),
        expires: now() + 3650 * DAY,
    };
    let root = init_root(&params, &[&root_key])
        .expect("the fixture root")
        .bytes;
    let file = TargetFile::from_bytes("class-a/fw-1.bin", b"image", serde_json::Value::Null);
    let targets = sign_targets(None, &[file], &[&targets_key], now() + 365 * DAY)
        .expect("the fixture targets")
        .bytes;
    Fixture {
        root_key,
        targets_key,
        online,
        root,
        targets,
    }
});

/// `signed` (kept byte for byte) in a metadata file signed by `key` over rota-tuf's
/// canonical form of it; with no signature when it has none (not strict JSON, or floats).
fn sign(signed: &[u8], key: &RepoKey, seed: u8) -> Vec<u8> {
    let signatures = match rota_tuf::json::canonical_bytes(signed) {
        Ok(canonical) => {
            use ed25519_dalek::Signer;
            let sig = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).sign(&canonical);
            format!(
                r#"{{"keyid":"{}","sig":"{}"}}"#,
                key.key_id(),
                hex::encode(sig.to_bytes())
            )
        }
        _ => String::new(),
    };
    let mut out = format!(r#"{{"signatures":[{signatures}],"signed":"#).into_bytes();
    out.extend_from_slice(signed);
    out.push(b'}');
    out
}

/// What the server does after accepting targets, and what a device then does.
fn publish(fixture: &Fixture, targets: &[u8]) {
    let snapshot = fixture
        .online
        .snapshot(targets, 1, now() + DAY)
        .expect("the server signs a snapshot for targets it accepted");
    let timestamp = fixture
        .online
        .timestamp(&snapshot.bytes, 1, now() + DAY)
        .expect("the server signs a timestamp for the snapshot it made");
    let mut device =
        TrustedSet::new(&fixture.root, NOW_S as i64).expect("the device trusts root 1");
    device
        .update_timestamp(&timestamp.bytes)
        .expect("a device accepts the timestamp");
    device
        .update_snapshot(&snapshot.bytes, false)
        .expect("a device accepts the snapshot");
    if let Err(e) = device.update_targets(targets, "targets", "root") {
        panic!("a device refuses targets the server accepted: {e}");
    }
    for name in device.listed("targets").0 {
        assert!(device.target("targets", &name).is_some());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let fixture = &*FIXTURE;
    let step = selector & 3;
    let bytes = match (selector & 8 != 0, step) {
        (false, _) => rest.to_vec(),
        (true, 0 | 1) => sign(rest, &fixture.root_key, 6),
        (true, _) => sign(rest, &fixture.targets_key, 7),
    };
    match step {
        0 => {
            if verify_first_root(&bytes, now()).is_ok() {
                let _ = fixture.online.check_against_root(&bytes);
                let device = TrustedSet::new(&bytes, NOW_S as i64);
                let device = device.expect("a device trusts the first root the server accepted");
                device.check_final_root().expect("and it has not expired");
            }
        }
        1 => {
            if verify_root_update(&fixture.root, &bytes, now()).is_ok() {
                let _ = fixture.online.check_against_root(&bytes);
                let device = TrustedSet::new(&fixture.root, NOW_S as i64);
                let mut device = device.expect("the device trusts root 1");
                if let Err(e) = device.update_root(&bytes) {
                    panic!("a device refuses the root N+1 the server accepted: {e}");
                }
            }
        }
        _ => {
            let previous = (step == 3).then_some(fixture.targets.as_slice());
            if verify_targets_upload(&fixture.root, previous, &bytes, now()).is_ok() {
                publish(fixture, &bytes);
            }
        }
    }
});
