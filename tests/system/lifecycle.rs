//! The credential lifecycle (issue 16) on simulated devices against a real server: key
//! rotation (on request, after a lost answer), and a fleet that rotates every key and
//! retires its manufacturer CA in the middle of a rollout that still completes.

use crate::support;

use std::time::{Duration, Instant};

use reqwest::Method;
use rota_agent::device::sim::SimDevice;
use rota_agent::device::{Device, Identity};
use rota_agent::fleet::{new_uds, provision_key};
use rota_agent::rotate::rotate;
use rota_agent::server::{AnswerLimits, ServerClient, ServerError};
use rota_protocol::api::{KeyRotation, RolloutState, rotation_message};
use rota_protocol::{DeviceCertificate, Sign as _, SoftwareKey};
use serde_json::{Value, json};
use support::{CLASS, World};

/// One enrolled simulated device and its client; the original identity key kept aside.
fn device(world: &World, id: &str) -> (SimDevice, ServerClient, SoftwareKey, DeviceCertificate) {
    let uds = new_uds().unwrap();
    let (key, certificate) = provision_key(
        &world.ca,
        id,
        CLASS,
        &[],
        rota_keys::Algorithm::Ed25519,
        Some(&uds),
    )
    .unwrap();
    let identity = Identity {
        device_id: id.into(),
        key: Box::new(key.clone()),
    };
    let dir = world.state_root("life").join(id);
    let device = SimDevice::manufacture(identity, &world.factory(), dir, Some(uds)).unwrap();
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
