//! The credential lifecycle (issue 16) on simulated devices against a real server: key
//! rotation (on request, after a lost answer), and a fleet that rotates every key and
//! retires its manufacturer CA in the middle of a rollout that still completes.

use crate::support;

use std::time::{Duration, Instant};

use reqwest::Method;
use rota_agent::device::sim::SimDevice;
use rota_agent::device::{Device, Identity};
use rota_agent::fleet::new_uds;
use rota_agent::rotate::rotate;
use rota_agent::server::{AnswerLimits, ServerClient, ServerError};
use rota_protocol::api::{KeyRotation, RolloutState, rotation_message};
use rota_protocol::{DeviceCertificate, Sign as _, SoftwareKey};
use serde_json::{Value, json};
use support::World;

/// One enrolled simulated device and its client; the original identity key kept aside.
fn device(world: &World, id: &str) -> (SimDevice, ServerClient, SoftwareKey, DeviceCertificate) {
    let uds = new_uds().unwrap();
    let (key, certificate) = world.dice_identity(id, &uds);
    let dir = world.state_root("life").join(id);
    let device = world.manufacture(id, &key, uds, &world.factory(), dir);
    let client = ServerClient::new(world.http.clone(), &world.base, AnswerLimits::default());
    client.enroll(device.identity(), &certificate).unwrap();
    (device, client, key, certificate)
}

fn whoami(client: &ServerClient, device_id: &str, key: &SoftwareKey) -> Result<(), ServerError> {
    let identity = Identity {
        device_id: device_id.into(),
        key: Box::new(key.clone()),
    };
    client.attestation_nonce(&identity).map(|_| ())
}

fn key_id_hex(key: &SoftwareKey) -> String {
    hex::encode(key.public_key().key_id())
}

#[test]
fn a_device_rotates_its_key_and_the_old_key_is_refused_everywhere() {
    let world = World::start();
    let (mut device, client, old_key, old_certificate) = device(&world, "rot-1");
    let certificate = rotate(&mut device, &client).unwrap();

    // The new certificate: from the operator's device CA, for the new key, same id.
    let claims = certificate.claims_unverified().unwrap();
    assert_eq!(claims.device_id, "rot-1");
    assert_eq!(claims.issuer, key_id_hex(&world.device_ca));
    assert_ne!(claims.device_key().unwrap(), old_key.public_key());
    assert_eq!(
        claims.device_key().unwrap(),
        device.identity().key.public_key()
    );
    assert!(
        claims.dice_device_id.is_some(),
        "the DeviceID binding is kept"
    );
    certificate
        .verify(&[world.device_ca.public_key()])
        .expect("signed by the device CA");

    // The old key is refused on every replica (after the cache's second): its signature
    // no longer verifies for the device, and its certificate cannot enrol again.
    std::thread::sleep(Duration::from_millis(1200));
    match whoami(&client, "rot-1", &old_key) {
        Err(ServerError::Refused { status: 401, .. }) => {}
        other => panic!("the old key was not refused: {other:?}"),
    }
    let old = Identity {
        device_id: "rot-1".into(),
        key: Box::new(old_key.clone()),
    };
    match client.enroll(&old, &old_certificate) {
        Err(ServerError::Refused {
            status: 403,
            message,
        }) => {
            assert!(message.contains("revoked"), "{message}")
        }
        other => panic!("the old certificate enrolled again: {other:?}"),
    }
    client
        .attestation_nonce(device.identity())
        .expect("the new key signs requests");
    // A proof by a key the requester does not hold is refused.
    let stranger = SoftwareKey::from_ed25519_seed([9; 32]);
    let forged = KeyRotation {
        public_key: hex::encode(stranger.public_key().as_bytes()),
        proof: [0; 64],
    };
    match client.rotate(device.identity(), &forged) {
        Err(ServerError::Refused {
            status: 400,
            message,
        }) => {
            assert!(message.contains("proof"), "{message}")
        }
        other => panic!("a forged proof was not refused: {other:?}"),
    }
    // Audited.
    let audit = world.admin_call(Method::GET, "/api/v1/audit", None);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["subject"] == "key rotation of device rot-1"),
        "{audit}"
    );
}

#[test]
fn a_rotation_whose_answer_was_lost_completes_with_the_same_certificate() {
    let world = World::start();
    let (mut device, client, _, _) = device(&world, "rot-lost");
    // The server certifies the pending key, but the answer never reaches the device.
    let current = device.identity().key.public_key();
    let pending = device
        .new_identity_key(rota_keys::Algorithm::Ed25519)
        .unwrap();
    let request = KeyRotation {
        public_key: hex::encode(pending.public_key().as_bytes()),
        proof: pending
            .sign(&rotation_message(
                "rot-lost",
                &current,
                &pending.public_key(),
            ))
            .unwrap()
            .try_into()
            .unwrap(),
    };
    let lost = client.rotate(device.identity(), &request).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    // The device tries again: its old key is refused now, so it asks with the pending
    // key, and gets the certificate already issued.
    let certificate = rotate(&mut device, &client).unwrap();
    assert_eq!(certificate, lost.certificate);
    assert_eq!(device.identity().key.public_key(), pending.public_key());
}

#[test]
fn a_fleet_rotates_every_key_and_retires_its_manufacturer_ca_mid_rollout() {
    let world = World::start();
    // 20 in the suite; `ROTA_ROTATION_FLEET=1000` for the figure.
    let count: usize = std::env::var("ROTA_ROTATION_FLEET")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let patience = Duration::from_secs(30 + count as u64 / 5);
    // A larger fleet polls less often, so that one 2-core machine's SQLite keeps up.
    let mut spec = world.fleet_spec(count, &world.base, "dev");
    if count > 100 {
        spec.agent.poll_min = Duration::from_secs(3);
        spec.agent.poll_max = Duration::from_secs(6);
    }
    let fleet = rota_agent::fleet::Fleet::start(&spec, &world.http).unwrap();
    support::wait_until(patience, "every device to enrol", || {
        let devices = world.admin_call(Method::GET, "/api/v1/devices?limit=1000", None);
        devices
            .as_array()
            .is_some_and(|d| d.len() == count && d.iter().all(|d| d["state"] == "active"))
    });
    let release = world.publish(&world.release("1.1.0", 2, 0));
    let rollout = world.rollout(&release, &[20.0, 60.0, 100.0], 2, 0.2);

    // Every device is asked to rotate; the fleet does it at its next check-ins.
    let started = Instant::now();
    for n in 1..=count {
        world.admin_call(
            Method::POST,
            &format!("/api/v1/devices/{}-{n:04}/rotate", "dev"),
            None,
        );
    }
    let rotations = || -> usize {
        let list = world.admin_call(Method::GET, "/api/v1/revocations", None);
        list.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "device_key")
            .count()
    };
    support::wait_until(patience, "every device to rotate", || rotations() == count);
    eprintln!(
        "figure: {count} devices rotated their keys in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // The manufacturer CA is retired (every certificate it issued revoked): no device
    // depends on it any more.
    let ca_revoked: Value = world.admin_call(
        Method::POST,
        "/api/v1/revocations",
        Some(json!({
            "kind": "ca",
            "subject": key_id_hex(&world.ca),
            "reason": "manufacturer CA retired after the fleet re-certified",
        })),
    );
    assert_eq!(ca_revoked["devices"], 0, "{ca_revoked}");

    let done = world.wait_for_state(
        &rollout,
        &[RolloutState::Completed, RolloutState::Halted],
        patience * 4,
    );
    assert_eq!(done.state, RolloutState::Completed, "{done:?}");
    assert_eq!(done.counts.total.confirmed, count as u64, "{done:?}");
    let devices = fleet.stop();
    for device in &devices {
        assert_eq!(device.running().unwrap().version, 2);
    }
}

/// TUF root rotation reaching a device that was offline across three of them (TUF 1.0.34
/// §5.3: it walks 1 → 2 → 3 → 4, each signed by the old and the new root keys), then
/// installs a release whose targets are signed by a key only the newest root names.
#[test]
fn a_device_offline_across_three_root_rotations_follows_the_chain_and_installs() {
    let mut world = World::start();
    let uds = new_uds().unwrap();
    let (key, certificate) = world.dice_identity("sleeper-1", &uds);
    let dir = world.state_root("sleep").join("sleeper-1");
    let device = world.manufacture("sleeper-1", &key, uds, &world.factory(), dir.clone());
    let mut agent = rota_agent::Agent::new(
        device,
        world.agent_config(&world.base),
        world.http.clone(),
        Some(certificate),
    )
    .unwrap();
    // Online once (version 1 of the root), then off.
    agent.cycle().unwrap();

    // Three rotations while it sleeps: new root keys each time, a new targets key at the
    // second; the online keys stay the server's.
    let first = rota_repo::RootInfo::parse(&world.root_json()).unwrap();
    let mut root = world.root_json();
    let mut previous: Option<rota_repo::RepoKey> = None;
    for n in 2..=4 {
        let next_root = rota_repo::RepoKey::generate().unwrap();
        if n == 3 {
            world.targets = rota_repo::RepoKey::generate().unwrap();
        }
        let params = rota_repo::RootParams {
            root: rota_repo::RoleKeys::new(vec![next_root.public().clone()], 1),
            targets: rota_repo::RoleKeys::new(vec![world.targets.public().clone()], 1),
            snapshot: first.role(rota_repo::RoleName::Snapshot).clone(),
            timestamp: first.role(rota_repo::RoleName::Timestamp).clone(),
            expires: support::far_future(),
        };
        let old_signer = previous.as_ref().unwrap_or(&world.root);
        root = rota_repo::rotate_root(&root, &params, &[old_signer], &[&next_root])
            .unwrap()
            .bytes;
        world.put("/api/v1/repo/root", root.clone());
        previous = Some(next_root);
    }
    // A release under the newest targets key, rolled out to everyone.
    let release = world.publish(&world.release("1.1.0", 2, 0));
    world.rollout(&release, &[100.0], 1, 0.5);

    // Back online: it walks the chain and installs.
    let mut outcome = None;
    for _ in 0..20 {
        let (o, _) = agent.cycle().unwrap();
        if matches!(o, rota_agent::Outcome::Confirmed(2)) {
            outcome = Some(o);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(outcome, Some(rota_agent::Outcome::Confirmed(2)));
    let trusted = std::fs::read(dir.join("tuf/root.json")).unwrap();
    assert_eq!(rota_repo::RootInfo::parse(&trusted).unwrap().version, 4);
    assert_eq!(agent.device().running().unwrap().version, 2);
}
