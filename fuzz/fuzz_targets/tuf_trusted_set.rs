//! rota-tuf's trusted metadata set (TUF 1.0.34 §5.2–§5.6) fed arbitrary metadata.
//!
//! The first byte picks the update step and the trusted state it starts from; the rest is
//! the metadata. The states are built once from `fuzz/seeds/tuf/*.json` (one Ed25519 key
//! `k1` for the four top-level roles, `k2` for the delegated role `role1`; timestamp and
//! snapshot list versions only, so fuzzed bytes pass the length and hash checks).
//!
//! | byte & 7 | step | trusted before |
//! |---|---|---|
//! | 0 | `TrustedSet::new` (§5.2) | nothing |
//! | 1 | `update_root` (§5.3.4–§5.3.8), then `check_final_root` | root 1 |
//! | 2 | `update_timestamp` (§5.4) | root 1 |
//! | 3 | `update_timestamp` (§5.4.3 rollback checks) | root 1, timestamp 1 |
//! | 4 | `update_snapshot` from the network (§5.5) | root, timestamp |
//! | 5 | `update_snapshot` local (§5.5, no hash check) | root, timestamp, snapshot |
//! | 6 | `update_targets("targets", "root")` (§5.6) | root, timestamp, snapshot |
//! | 7 | `update_targets("role1", "targets")` (§5.6.3 delegation) | and targets |
//!
//! With bit 3 (`& 8`) set, the rest is the `signed` object alone and the harness signs its
//! canonical form with the key the step needs, so inputs reach every check behind the
//! signature; without it, the rest is a whole metadata file as served.
#![no_main]

use std::sync::LazyLock;

use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use rota_tuf::fuzzing::TrustedSet;

/// 2030-01-01T00:00:00Z; the fixtures expire in 2100.
const START: i64 = 1_893_456_000;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// The metadata file of `signed` (raw JSON text, kept byte for byte), signed by `key` as
/// `keyid` over its canonical form; unsigned when it has no canonical form.
fn sign(signed: &[u8], keyid: &str, key: &SigningKey) -> Vec<u8> {
    let sig = match rota_tuf::json::canonical_bytes(signed) {
        Ok(canonical) => hex::encode(key.sign(&canonical).to_bytes()),
        Err(_) => String::new(),
    };
    let mut out =
        format!(r#"{{"signatures":[{{"keyid":"{keyid}","sig":"{sig}"}}],"signed":"#).into_bytes();
    out.extend_from_slice(signed);
    out.push(b'}');
    out
}

struct States {
    root: Vec<u8>,
    /// Index: the step (byte & 7) it starts from; 0 starts from nothing.
    before: [Option<TrustedSet>; 8],
}

static STATES: LazyLock<States> = LazyLock::new(|| {
    let k1 = key(1);
    let file = |text: &str| sign(text.as_bytes(), "k1", &k1);
    let root = file(include_str!("../seeds/tuf/root.json"));
    let timestamp = file(include_str!("../seeds/tuf/timestamp.json"));
    let snapshot = file(include_str!("../seeds/tuf/snapshot.json"));
    let targets = file(include_str!("../seeds/tuf/targets.json"));
    let with_root = TrustedSet::new(&root, START).expect("the fixture root verifies");
    let mut with_ts = with_root.clone();
    with_ts
        .update_timestamp(&timestamp)
        .expect("the fixture timestamp verifies");
    let mut with_snapshot = with_ts.clone();
    with_snapshot
        .update_snapshot(&snapshot, false)
        .expect("the fixture snapshot verifies");
    let mut with_targets = with_snapshot.clone();
    with_targets
        .update_targets(&targets, "targets", "root")
        .expect("the fixture targets verify");
    States {
        root,
        before: [
            None,
            Some(with_root.clone()),
            Some(with_root),
            Some(with_ts.clone()),
            Some(with_ts),
            Some(with_snapshot.clone()),
            Some(with_snapshot),
            Some(with_targets),
        ],
    }
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let step = selector & 7;
    let bytes = if selector & 8 != 0 {
        let (keyid, key) = if step == 7 {
            ("k2", key(2))
        } else {
            ("k1", key(1))
        };
        sign(rest, keyid, &key)
    } else {
        rest.to_vec()
    };
    let states = &*STATES;
    let Some(mut set) = states.before[usize::from(step)].clone() else {
        if let Ok(set) = TrustedSet::new(&bytes, START) {
            let _ = set.check_final_root();
        }
        return;
    };
    let (accepted, role) = match step {
        1 => {
            let ok = set.update_root(&bytes).is_ok();
            let _ = set.check_final_root();
            // §5.3.5: after any accepted root, version 1 can never come back.
            if ok {
                assert!(set.update_root(&states.root).is_err(), "a root rolled back");
            }
            (ok, None)
        }
        2 | 3 => (set.update_timestamp(&bytes).is_ok(), None),
        4 => (set.update_snapshot(&bytes, false).is_ok(), None),
        5 => (set.update_snapshot(&bytes, true).is_ok(), None),
        6 => (
            set.update_targets(&bytes, "targets", "root").is_ok(),
            Some("targets"),
        ),
        _ => (
            set.update_targets(&bytes, "role1", "targets").is_ok(),
            Some("role1"),
        ),
    };
    if let (true, Some(role)) = (accepted, role) {
        let (names, _delegates) = set.listed(role);
        for name in names {
            let info = set.target(role, &name).expect("a listed target is found");
            assert!(!info.hashes.is_empty(), "a trusted target has hashes");
        }
    }
});
