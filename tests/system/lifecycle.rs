//! The credential lifecycle (issue 16) on simulated devices against a real server: key
//! rotation (on request, after a lost answer), a fleet that rotates every key and
//! retires its manufacturer CA in the middle of a rollout that still completes, TUF root
//! rotation across a long sleep, decommission with zeroization (and its power-cut
//! sweep), and ownership transfer to another operator's server.

use crate::support;

use std::time::{Duration, Instant};

use reqwest::Method;
use rota_agent::device::sim::SimDevice;
use rota_agent::device::{Device, Identity};
use rota_agent::fleet::new_uds;
use rota_agent::rotate::rotate;
use rota_agent::server::{AnswerLimits, ServerClient, ServerError};
use rota_agent::{Agent, Event, Outcome};
use rota_boot::sim::CutKind;
use rota_protocol::api::{KeyRotation, RolloutState, rotation_message};
use rota_protocol::{DeviceCertificate, PublicKey, Sign as _, SoftwareKey};
use serde_json::{Value, json};
use std::path::PathBuf;
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
        evidence: None,
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
        evidence: None,
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
    // 20 in the suite; `ROTA_ROTATION_FLEET=1000` for the issue's figure.
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

    // The manufacturer CA cannot be retired while devices depend on it: none is locked out.
    let refused = world
        .http
        .post(world.url(&format!("/api/v1/cas/{}/retire", key_id_hex(&world.ca))))
        .bearer_auth(&world.admin)
        .send()
        .unwrap();
    assert_eq!(refused.status(), 409);

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

    // The manufacturer CA is retired mid-rollout: no device depends on it any more.
    let retired: Value = world.admin_call(
        Method::POST,
        &format!("/api/v1/cas/{}/retire", key_id_hex(&world.ca)),
        None,
    );
    assert_eq!(retired["state"], "retired", "{retired}");

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

/// An agent for a new DICE device `id` of `world`, enrolled (one pass), obeying `config`.
fn agent_with(world: &World, id: &str, config: rota_agent::Config) -> (Agent<SimDevice>, PathBuf) {
    let uds = new_uds().unwrap();
    let (key, certificate) = world.dice_identity(id, &uds);
    let dir = world.state_root("orders").join(id);
    let device = world.manufacture(id, &key, uds, &world.factory(), dir.clone());
    let mut agent = Agent::new(device, config, world.http.clone(), Some(certificate)).unwrap();
    assert_eq!(
        agent.cycle().unwrap().0,
        Outcome::UpToDate,
        "the first pass enrols"
    );
    (agent, dir)
}

fn order(world: &World, id: &str, body: Value) -> reqwest::blocking::Response {
    world
        .http
        .post(world.url(&format!("/api/v1/devices/{id}/orders")))
        .bearer_auth(&world.admin)
        .json(&body)
        .send()
        .unwrap()
}

/// Runs passes until `done` says so, restarting the device after a power cut; returns
/// the outcomes seen and the number of cuts.
fn run_until(
    agent: &mut Agent<SimDevice>,
    mut done: impl FnMut(&Outcome) -> bool,
) -> (Vec<Outcome>, u32) {
    let mut seen = Vec::new();
    let mut cuts = 0;
    for _ in 0..100 {
        match agent.cycle() {
            Ok((outcome, _)) => {
                let finished = done(&outcome);
                seen.push(outcome);
                if finished {
                    return (seen, cuts);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                assert!(!agent.device().is_powered(), "only a power cut fails: {e}");
                cuts += 1;
                agent.device_mut().power_on().unwrap();
                agent.restart().unwrap();
            }
        }
    }
    panic!("the device did not converge: {seen:?}");
}

fn device_state(world: &World, id: &str) -> Value {
    world.admin_call(Method::GET, &format!("/api/v1/devices/{id}"), None)["state"].clone()
}

/// Asserts that a decommissioned device kept nothing: no state, no UDS, a key that
/// cannot sign, and a server that refuses it.
fn assert_erased(world: &World, agent: &Agent<SimDevice>, dir: &std::path::Path, key: &PublicKey) {
    let id = &agent.device().identity().device_id;
    assert!(!dir.exists(), "the state directory is erased");
    let name = dir.file_name().unwrap().to_str().unwrap();
    assert!(
        !dir.with_file_name(format!(".{name}.erasing")).exists(),
        "the erase is over"
    );
    assert!(agent.device().uds_killed(), "the UDS is killed for good");
    assert!(
        agent.device().identity().key.sign(b"anything").is_err(),
        "the identity key is gone"
    );
    assert_eq!(agent.device().identity().key.public_key(), *key);
    assert_eq!(device_state(world, id), "decommissioned");
}

#[test]
fn a_decommission_order_erases_the_device_which_then_cannot_authenticate_anywhere() {
    let world = World::start();
    let (mut agent, dir) = agent_with(&world, "dec-1", world.agent_config(&world.base));
    let key = agent.device().identity().key.public_key();
    let held = agent.device().identity().key.sign(b"before").unwrap();
    assert_eq!(held.len(), 64);

    let issued = order(&world, "dec-1", json!({"action": "decommission"}));
    assert_eq!(issued.status(), 201);
    let issued: Value = issued.json().unwrap();
    assert_eq!(issued["action"], "decommission");
    assert_eq!(
        device_state(&world, "dec-1"),
        "active",
        "not before the device reports"
    );

    let (outcome, _) = agent.cycle().unwrap();
    assert_eq!(outcome, Outcome::Decommissioned);
    assert_erased(&world, &agent, &dir, &key);
    // Nothing derives its DICE identity after a reset, and the agent does nothing more.
    agent.device_mut().reboot().unwrap();
    assert!(agent.device().handoff().is_none(), "no DeviceID, no Alias");
    assert_eq!(agent.cycle().unwrap().0, Outcome::Decommissioned);

    // The server refuses the device everything and keeps its history.
    let client = ServerClient::new(world.http.clone(), &world.base, AnswerLimits::default());
    let uds = new_uds().unwrap();
    let (other_key, _) = world.dice_identity("dec-1", &uds);
    match whoami(&client, "dec-1", &other_key) {
        Err(ServerError::Refused { status: 401, .. }) => {}
        other => panic!("another key was not refused: {other:?}"),
    }
    let audit = world.admin_call(Method::GET, "/api/v1/audit", None);
    let details: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(
        details.iter().any(|d| d.contains("decommission order")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("erased its credentials")),
        "{details:?}"
    );
    // No more orders for it.
    assert_eq!(
        order(&world, "dec-1", json!({"action": "decommission"})).status(),
        409
    );
}

#[test]
fn power_cuts_anywhere_in_a_decommission_end_with_the_device_erased() {
    let world = World::start();
    // The flash and OTP operations of an uncut decommission.
    let (mut agent, _) = agent_with(&world, "cut-dec-ref", world.agent_config(&world.base));
    assert_eq!(
        order(&world, "cut-dec-ref", json!({"action": "decommission"})).status(),
        201
    );
    let before = agent.device().operations();
    assert_eq!(agent.cycle().unwrap().0, Outcome::Decommissioned);
    let total = agent.device().operations() - before;
    assert!(total > 0, "erasing touches the OTP");

    for at in 0..total {
        let kind = if at % 2 == 0 {
            CutKind::Torn
        } else {
            CutKind::Before
        };
        let id = format!("cut-dec-{at}");
        let (mut agent, dir) = agent_with(&world, &id, world.agent_config(&world.base));
        let key = agent.device().identity().key.public_key();
        assert_eq!(
            order(&world, &id, json!({"action": "decommission"})).status(),
            201
        );
        agent.device().schedule_power_cut(at, kind, at);
        let (_, cuts) = run_until(&mut agent, |o| *o == Outcome::Decommissioned);
        assert_eq!(cuts, 1, "cut at operation {at} of {total}");
        assert_erased(&world, &agent, &dir, &key);
    }
}

#[test]
fn an_order_the_device_does_not_trust_or_the_server_did_not_issue_changes_nothing() {
    let world = World::start();
    // This device obeys only the manufacturer CA, not the operator's device CA that signs.
    let config = rota_agent::Config {
        operator_cas: vec![world.ca.public_key()],
        ..world.agent_config(&world.base)
    };
    let (mut agent, dir) = agent_with(&world, "wary-1", config);
    assert_eq!(
        order(&world, "wary-1", json!({"action": "decommission"})).status(),
        201
    );
    let Outcome::Refused(why) = agent.cycle().unwrap().0 else {
        panic!("an order from an untrusted CA was carried out");
    };
    assert!(why.contains("does not take orders from"), "{why}");
    assert!(dir.join("agent-state.json").exists());
    assert!(!agent.device().uds_killed());
    agent.device().identity().key.sign(b"still here").unwrap();
    assert_eq!(device_state(&world, "wary-1"), "active");

    // The operator withdraws it: the device is left alone and offered updates again.
    let withdraw = || {
        world
            .http
            .delete(world.url("/api/v1/devices/wary-1/orders"))
            .bearer_auth(&world.admin)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(withdraw(), 204);
    assert_eq!(withdraw(), 404, "nothing left to withdraw");
    assert_eq!(agent.cycle().unwrap().0, Outcome::UpToDate);
    let release = world.publish(&world.release("1.1.0", 2, 0));
    world.rollout(&release, &[100.0], 1, 0.5);
    run_until(&mut agent, |o| *o == Outcome::Confirmed(2));

    // A report of an order the server does not hold (forged, replaced) is refused.
    let forged = rota_protocol::order::issue_order(
        &world.device_ca,
        &rota_protocol::order::OrderBody::new(
            &world.device_ca.public_key(),
            "wary-1",
            rota_protocol::order::OrderAction::Decommission,
            None,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            60,
        )
        .unwrap(),
    )
    .unwrap();
    let client = ServerClient::new(world.http.clone(), &world.base, AnswerLimits::default());
    match client.order_done(agent.device().identity(), &forged) {
        Err(ServerError::Refused { status: 409, .. }) => {}
        other => panic!("a report of another order was taken: {other:?}"),
    }
    assert_eq!(device_state(&world, "wary-1"), "active");

    // Bad orders are refused when issued: a transfer without its operator, a root that
    // is not cross-signed, an unknown device, a bad lifetime.
    for (id, body, status) in [
        ("wary-1", json!({"action": "transfer"}), 400),
        (
            "wary-1",
            json!({"action": "decommission", "valid_days": 31}),
            400,
        ),
        ("nobody", json!({"action": "decommission"}), 404),
        ("wary-1", json!({"action": "erase"}), 422),
    ] {
        assert_eq!(order(&world, id, body.clone()).status(), status, "{body}");
    }
    let other = World::start();
    let not_crossed = json!({
        "action": "transfer",
        "server": other.base,
        "device_ca": hex::encode(other.device_ca.public_key().as_bytes()),
        "tuf_root": base64_text(&other.root_json()),
    });
    let refused = order(&world, "wary-1", not_crossed);
    assert_eq!(refused.status(), 400);
    assert!(refused.text().unwrap().contains("cross-signed"));
}

fn base64_text(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Two operators' servers, the new one trusting the old one's CAs for transfers (the
/// sale's agreement), and the new repository's root cross-signed by the old one's.
fn two_operators() -> (World, World, Vec<u8>) {
    let old = World::start();
    let mut new = World::start();
    // The firmware is the manufacturer's, whoever operates the device.
    new.firmware = old.firmware.clone();
    for (ca, name) in [
        (&old.ca, "previous factory"),
        (&old.device_ca, "previous operator"),
    ] {
        new.admin_call(
            Method::POST,
            "/api/v1/cas",
            Some(json!({"public_key": hex::encode(ca.public_key().as_bytes()), "name": name})),
        );
    }
    let crossed =
        rota_repo::cross_sign_root(&old.root_json(), &new.root_json(), &[&old.root]).unwrap();
    (old, new, crossed)
}

fn transfer_order(new: &World, crossed: &[u8]) -> Value {
    json!({
        "action": "transfer",
        "server": new.base,
        "device_ca": hex::encode(new.device_ca.public_key().as_bytes()),
        "tuf_root": base64_text(crossed),
    })
}

/// The device is certified by the new operator, trusts its repository, and is refused
/// by the old one.
fn assert_moved(
    old: &World,
    new: &World,
    agent: &Agent<SimDevice>,
    dir: &std::path::Path,
    crossed: &[u8],
) {
    let id = &agent.device().identity().device_id;
    let owner = agent.state().owner.as_ref().expect("a new owner");
    assert_eq!(owner.server, new.base);
    assert!(owner.presenting.is_none(), "certified by the new server");
    let certificate = owner.certificate.as_ref().unwrap();
    assert_eq!(
        certificate.claims_unverified().unwrap().issuer,
        key_id_hex(&new.device_ca)
    );
    assert_eq!(std::fs::read(dir.join("tuf/root.json")).unwrap(), crossed);
    assert_eq!(device_state(old, id), "decommissioned");
    let here = device_state(new, id);
    assert!(here == "provisioned" || here == "active", "{here}");
}

#[test]
fn a_device_moves_to_a_new_operator_who_sees_none_of_its_history() {
    let (old, new, crossed) = two_operators();
    let (mut agent, dir) = agent_with(&old, "mv-1", old.agent_config(&old.base));
    // History at the old operator: an update installed and confirmed.
    let release = old.publish(&old.release("1.1.0", 2, 0));
    old.rollout(&release, &[100.0], 1, 0.5);
    run_until(&mut agent, |o| *o == Outcome::Confirmed(2));
    run_until(&mut agent, |_| {
        old.admin_call(Method::GET, "/api/v1/devices/mv-1", None)["last_result"] == "confirmed"
    });

    // The old operator orders the transfer, with the new root cross-signed.
    let issued = order(&old, "mv-1", transfer_order(&new, &crossed));
    assert_eq!(issued.status(), 201);
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    agent.on_event(move |e| sink.lock().unwrap().push(e.clone()));
    run_until(&mut agent, |_| {
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::Transferred { .. }))
    });

    // The old server refuses it from now on and records where it went.
    assert_eq!(device_state(&old, "mv-1"), "decommissioned");
    let old_client = ServerClient::new(old.http.clone(), &old.base, AnswerLimits::default());
    match old_client.attestation_nonce(agent.device().identity()) {
        Err(ServerError::Refused { status: 403, .. }) => {}
        other => panic!("the old server still serves it: {other:?}"),
    }
    let audit = old.admin_call(Method::GET, "/api/v1/audit", None);
    assert!(
        audit.as_array().unwrap().iter().any(|e| e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("transferred to"))),
        "{audit}"
    );

    // The new server certified it with its own device CA and knows nothing of its past.
    let info = new.admin_call(Method::GET, "/api/v1/devices/mv-1", None);
    assert!(info["last_result"].is_null(), "{info}");
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.join("agent-state.json")).unwrap()).unwrap();
    let certificate: DeviceCertificate =
        serde_json::from_value(state["owner"]["certificate"].clone()).unwrap();
    assert_eq!(
        certificate.claims_unverified().unwrap().issuer,
        key_id_hex(&new.device_ca)
    );
    assert!(state["outbox"].as_array().unwrap().is_empty());
    assert!(state["last"].is_null());
    let trusted = std::fs::read(dir.join("tuf/root.json")).unwrap();
    assert_eq!(
        trusted, crossed,
        "the device trusts the new repository's root"
    );

    // It updates from the new operator's repository, also after a restart.
    agent.restart().unwrap();
    let release = new.publish(&new.release("2.0.0", 3, 0));
    new.rollout(&release, &[100.0], 1, 0.5);
    run_until(&mut agent, |o| *o == Outcome::Confirmed(3));
    run_until(&mut agent, |_| {
        new.admin_call(Method::GET, "/api/v1/devices/mv-1", None)["running_version"] == 3
    });
}

/// Cuts before every file operation of a transfer and of a decommission (the state file,
/// the TUF root, the erase), one at a time: after a restart each ends moved or erased.
#[test]
fn power_cuts_between_the_file_operations_of_a_transfer_or_a_decommission_converge() {
    use rota_agent::state::cut;
    let (old, new, crossed) = two_operators();
    let restart = |agent: &mut Agent<SimDevice>| {
        agent.device_mut().reboot().unwrap();
        agent.restart().unwrap();
    };
    for k in 0.. {
        assert!(k < 100, "a transfer takes fewer file operations than that");
        let id = format!("mv-cut-{k}");
        let (mut agent, dir) = agent_with(&old, &id, old.agent_config(&old.base));
        assert_eq!(
            order(&old, &id, transfer_order(&new, &crossed)).status(),
            201
        );
        cut::after(k);
        for _ in 0..50 {
            if agent.cycle().is_err() {
                restart(&mut agent);
            }
            if agent
                .state()
                .owner
                .as_ref()
                .is_some_and(|o| o.certificate.is_some())
            {
                break;
            }
        }
        let fired = cut::fired();
        assert_moved(&old, &new, &agent, &dir, &crossed);
        if !fired {
            eprintln!("a transfer takes {k} file operations; each was cut");
            break;
        }
    }
    for k in 0.. {
        assert!(
            k < 100,
            "a decommission takes fewer file operations than that"
        );
        let id = format!("dec-cut-{k}");
        let (mut agent, dir) = agent_with(&old, &id, old.agent_config(&old.base));
        let key = agent.device().identity().key.public_key();
        assert_eq!(
            order(&old, &id, json!({"action": "decommission"})).status(),
            201
        );
        cut::after(k);
        let mut erased = false;
        for _ in 0..50 {
            match agent.cycle() {
                Ok((Outcome::Decommissioned, _)) => {
                    erased = true;
                    break;
                }
                Ok(_) => {}
                Err(_) => restart(&mut agent),
            }
        }
        let fired = cut::fired();
        assert!(erased, "cut at file operation {k}");
        assert_erased(&old, &agent, &dir, &key);
        if !fired {
            eprintln!("a decommission takes {k} file operations; each was cut");
            break;
        }
    }
}

/// In a class that attests, a DICE device rotates only with fresh evidence of its boot
/// that passes appraisal: its attested state, not only its old key, vouches for the new.
#[test]
fn in_an_attesting_class_a_dice_device_rotates_only_with_evidence_that_passes() {
    let world = World::start();
    world.publish(&world.release("1.0.0", 1, 0));
    world.admin_call(
        Method::PUT,
        &format!(
            "/api/v1/classes/{}/attestation",
            support::class_text(support::CLASS)
        ),
        Some(json!({ "policy": "required", "bootloaders": [] })),
    );
    let (mut device, client, _, _) = device(&world, "att-rot-1");

    // Without evidence: refused, nothing changes.
    let current = device.identity().key.public_key();
    let pending = device
        .new_identity_key(rota_keys::Algorithm::Ed25519)
        .unwrap();
    let bare = KeyRotation {
        public_key: hex::encode(pending.public_key().as_bytes()),
        proof: pending
            .sign(&rotation_message(
                "att-rot-1",
                &current,
                &pending.public_key(),
            ))
            .unwrap()
            .try_into()
            .unwrap(),
        evidence: None,
    };
    match client.rotate(device.identity(), &bare) {
        Err(ServerError::Refused {
            status: 403,
            message,
        }) => assert!(message.contains("send evidence"), "{message}"),
        other => panic!("a rotation without evidence was taken: {other:?}"),
    }
    assert_eq!(device.identity().key.public_key(), current);

    // With evidence of a boot of the signed factory release: rotated.
    let certificate = rotate(&mut device, &client).unwrap();
    assert_ne!(device.identity().key.public_key(), current);
    let record = world.admin_call(Method::GET, "/api/v1/devices/att-rot-1", None);
    assert_eq!(record["attestation"], "ok", "{record}");
    assert_eq!(
        certificate.claims_unverified().unwrap().issuer,
        key_id_hex(&world.device_ca)
    );
}
