//! Firmware trust-anchor rollover end to end (`docs/design/lifecycle.md`, section 4): a
//! command signed by a firmware key the device trusts, published as a TUF target signed
//! by the targets keys, applied by the agent through rota-boot before its next install.
//! A device moves from firmware key A to key B (add B, releases signed by B, revoke A),
//! refuses A's releases from then on, burns nothing for a forged or tampered command and
//! keeps updating, and a power cut at any operation of applying a command leaves the old
//! trust or the new.

use crate::support;

use std::time::Duration;

use rota_agent::anchors::{self, Report};
use rota_agent::device::Device;
use rota_agent::device::sim::SimDevice;
use rota_agent::fleet::new_uds;
use rota_agent::release::Repo;
use rota_agent::{Agent, Outcome};
use rota_boot::anchor::{AnchorCommand, Change};
use rota_boot::sim::CutKind;
use rota_boot::{RootOfTrust, TrustStatus};
use rota_manifest::signer::{Sign, SoftwareKey};
use rota_repo::{RotaTarget, TargetFile};
use support::{CLASS, World, ed25519, far_future};

/// A trust-anchor command for the world's class, signed by `signer`.
fn command(signer: &SoftwareKey, counter: u32, change: Change) -> Vec<u8> {
    AnchorCommand {
        class_id: CLASS,
        counter,
        change,
    }
    .sign(&ed25519(signer), |message| {
        Ok::<_, ()>(signer.sign(message).unwrap().try_into().unwrap())
    })
    .unwrap()
    .as_bytes()
    .to_vec()
}

fn add(slot: usize, key: &SoftwareKey) -> Change {
    Change::Add {
        slot,
        key_hash: key.public_key().key_id(),
    }
}

/// Publishes `bytes` as command `counter` of the world's class (what `rota anchor
/// publish` does): uploaded, and listed in the next targets version with its signer and,
/// for an add, the new key.
fn publish_command(
    world: &World,
    counter: u32,
    bytes: &[u8],
    signer: &SoftwareKey,
    new_key: Option<&SoftwareKey>,
) {
    world.upload(bytes);
    let class_id = uuid::Uuid::from_bytes(CLASS);
    let target = TargetFile::from_bytes(
        RotaTarget::anchor_command_name(&class_id, counter),
        bytes,
        RotaTarget::AnchorCommand {
            class_id,
            counter,
            signer: hex::encode(ed25519(signer)),
            new_key: new_key.map(|k| hex::encode(ed25519(k))),
        }
        .to_custom(),
    );
    let current = world
        .http
        .get(world.url("/tuf/metadata/targets.json"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let signed =
        rota_repo::sign_targets(Some(&current), &[target], &[&world.targets], far_future())
            .unwrap();
    world.put("/api/v1/repo/targets", signed.bytes);
}

/// One enrolled device on the world's factory image (signed by key A, `world.firmware`).
fn device(world: &World, id: &str) -> SimDevice {
    let uds = new_uds().unwrap();
    let (key, _) = world.dice_identity(id, &uds);
    world.manufacture(
        id,
        &key,
        uds,
        &world.factory(),
        world.state_root("anchors").join(id),
    )
}

fn agent(world: &World, id: &str) -> Agent<SimDevice> {
    let uds = new_uds().unwrap();
    let (key, certificate) = world.dice_identity(id, &uds);
    let device = world.manufacture(
        id,
        &key,
        uds,
        &world.factory(),
        world.state_root("anchors").join(id),
    );
    let mut agent = Agent::new(
        device,
        world.agent_config(&world.base),
        world.http.clone(),
        Some(certificate),
    )
    .unwrap();
    assert_eq!(agent.cycle().unwrap().0, Outcome::UpToDate, "enrolled");
    agent
}

/// Publishes `release`, rolls it out to the class and runs the agent until it settles;
/// the rollout is then aborted so that the next one is the only one offered.
fn roll_out(world: &World, agent: &mut Agent<SimDevice>, release: &support::Release) -> Outcome {
    let id = world.publish(release);
    let rollout = world.rollout(&id, &[100.0], 1000, 0.99);
    let mut seen = Vec::new();
    let outcome = loop {
        assert!(seen.len() < 200, "the device did not settle: {seen:?}");
        match agent.cycle().unwrap().0 {
            outcome @ (Outcome::Confirmed(_) | Outcome::Refused(_)) => break outcome,
            other => {
                seen.push(other);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    world.admin_call(
        reqwest::Method::POST,
        &format!("/api/v1/rollouts/{rollout}/abort"),
        None,
    );
    outcome
}

fn trust(device: &mut SimDevice) -> TrustStatus {
    device
        .boot_parts()
        .updater()
        .unwrap()
        .trust_status()
        .unwrap()
}

fn last_report(device: &SimDevice) -> Report {
    Report::load(device.state_dir()).unwrap().expect("a report")
}

#[test]
fn a_firmware_key_rollover_through_tuf_moves_a_device_to_the_new_key_and_revokes_the_old() {
    let world = World::start();
    let key_a = &world.firmware;
    let key_b = SoftwareKey::from_ed25519_seed(new_uds().unwrap());
    let mut agent = agent(&world, "anchor-1");
    let factory = agent.trust_status().unwrap();
    assert_eq!(
        (
            factory.key_slots,
            factory.free_key_slots,
            factory.revoked_key_slots
        ),
        (4, 3, 0)
    );
    assert_eq!(
        (factory.anchor_commands, factory.anchor_commands_left),
        (0, 8)
    );

    // The rollover, published at once: add B (signed by A), a release signed by B, and
    // the revocation of A's slot (signed by B).
    publish_command(
        &world,
        1,
        &command(key_a, 1, add(1, &key_b)),
        key_a,
        Some(&key_b),
    );
    publish_command(
        &world,
        2,
        &command(&key_b, 2, Change::Revoke { slot: 0 }),
        &key_b,
        None,
    );
    let v2 = world.release_with("2.0.0", 2, 1, 0, CLASS, &key_b);
    // Before its install the device adds B and defers the revocation (A signs the image
    // it runs); once the B image is confirmed, it revokes A.
    assert_eq!(roll_out(&world, &mut agent, &v2), Outcome::Confirmed(2));
    let running = agent.device().running().unwrap();
    assert_eq!(running.signer, key_b.public_key().key_id());
    assert!(agent.device().trust_anchors().contains(&key_b.public_key()));
    let after = agent.trust_status().unwrap();
    assert_eq!(
        (
            after.free_key_slots,
            after.revoked_key_slots,
            after.anchor_commands,
            after.anchor_commands_left
        ),
        (2, 1, 2, 6),
        "{after:?}"
    );
    let report = last_report(agent.device());
    assert_eq!((report.applied, report.deferred), (vec![2], None));

    // A release signed by A is refused now, by the agent before any download.
    let v3 = world.release_with("3.0.0", 3, 1, 0, CLASS, key_a);
    match roll_out(&world, &mut agent, &v3) {
        Outcome::Refused(why) => assert!(why.contains("envelope does not verify"), "{why}"),
        other => panic!("a release signed by the revoked key was not refused: {other:?}"),
    }
    assert_eq!(agent.device().running().unwrap().version, 2);

    // A forged command (signed by a key the device does not trust, adding that key) is
    // refused, burns nothing, and the device keeps updating with B's releases.
    let attacker = &world.attacker;
    publish_command(
        &world,
        3,
        &command(attacker, 3, add(2, attacker)),
        attacker,
        Some(attacker),
    );
    let v4 = world.release_with("4.0.0", 4, 1, 0, CLASS, &key_b);
    assert_eq!(roll_out(&world, &mut agent, &v4), Outcome::Confirmed(4));
    assert_eq!(
        agent.trust_status().unwrap(),
        after,
        "the forged command burned nothing"
    );
    assert!(
        !agent
            .device()
            .trust_anchors()
            .contains(&attacker.public_key())
    );
    let refused = last_report(agent.device()).refused.expect("refused");
    assert_eq!(refused.counter, 3);
    assert!(refused.reason.contains("rota-boot refused"), "{refused:?}");

    // The publications are audited on the server.
    let audit = world.admin_call(reqwest::Method::GET, "/api/v1/audit", None);
    let name = RotaTarget::anchor_command_name(&uuid::Uuid::from_bytes(CLASS), 2);
    assert!(audit.to_string().contains(&name), "{audit}");
}

#[test]
fn a_tampered_command_burns_nothing_and_the_device_keeps_updating() {
    let world = World::start();
    let key_b = SoftwareKey::from_ed25519_seed(new_uds().unwrap());
    let mut agent = agent(&world, "anchor-tampered");
    let before = agent.trust_status().unwrap();
    // Signed by A, then altered: one bit of the new key's hash flipped after signing.
    let mut tampered = command(&world.firmware, 1, add(1, &key_b));
    let at = tampered.len() - 70;
    tampered[at] ^= 1;
    publish_command(&world, 1, &tampered, &world.firmware, Some(&key_b));
    let v2 = world.release_with("2.0.0", 2, 1, 0, CLASS, &world.firmware);
    assert_eq!(roll_out(&world, &mut agent, &v2), Outcome::Confirmed(2));
    assert_eq!(agent.trust_status().unwrap(), before);
    assert!(!agent.device().trust_anchors().contains(&key_b.public_key()));
    let refused = last_report(agent.device()).refused.expect("refused");
    assert_eq!(refused.counter, 1);
    assert!(refused.reason.contains("does not verify"), "{refused:?}");
}

#[test]
fn a_power_cut_at_any_operation_of_applying_a_command_leaves_the_old_trust_or_the_new() {
    let world = World::start();
    let key_b = SoftwareKey::from_ed25519_seed(new_uds().unwrap());
    publish_command(
        &world,
        1,
        &command(&world.firmware, 1, add(1, &key_b)),
        &world.firmware,
        Some(&key_b),
    );
    let config = world.agent_config(&world.base);
    let key_a_hash = world.firmware.public_key().key_id();
    let catch_up = |device: &mut SimDevice| {
        let tuf_dir = device.state_dir().join("tuf");
        let mut tuf = Repo {
            tuf_dir: &tuf_dir,
            tuf: config.tuf(),
            http: world.http.clone(),
        }
        .refreshed()
        .unwrap();
        anchors::catch_up(device, &mut tuf, CLASS)
    };
    // Trusted: B is in a valid, unrevoked slot and the agent verifies envelopes with it.
    let trusts_b = |device: &mut SimDevice| {
        anchors::trusted(device)
            .unwrap()
            .contains(&key_b.public_key())
    };

    let mut clean = device(&world, "anchor-cut-clean");
    let before = clean.operations();
    let report = catch_up(&mut clean).unwrap();
    assert_eq!(report.applied, vec![1]);
    let total = clean.operations() - before;
    assert!(trusts_b(&mut clean));
    assert!(total >= 3, "{total} operations");

    let mut cuts = 0;
    for at in 0..total {
        for (k, kind) in [CutKind::Before, CutKind::Torn, CutKind::After]
            .into_iter()
            .enumerate()
        {
            let mut device = device(&world, &format!("anchor-cut-{at}-{k}"));
            device.schedule_power_cut(at, kind, at * 3 + k as u64);
            let first = catch_up(&mut device);
            if device.is_powered() {
                // The cut fell after the last operation of the application.
                assert!(first.is_ok(), "cut {kind:?} at {at}: {:?}", first.err());
            } else {
                cuts += 1;
                device.power_on().unwrap();
                assert_eq!(
                    device.running().unwrap().version,
                    1,
                    "the factory image still boots"
                );
                // The old trust or the new, never a half-trusted key: slot 0 still
                // holds A, unrevoked; slot 1 holds B or nothing.
                let rot = device.boot_parts().rot;
                assert_eq!(
                    rot.key_hash(0).unwrap(),
                    Some(key_a_hash),
                    "cut {kind:?} at {at}"
                );
                assert!(!rot.is_revoked(0).unwrap());
                let slot_1 = rot.key_hash(1).unwrap();
                assert!(
                    slot_1.is_none() || slot_1 == Some(key_b.public_key().key_id()),
                    "cut {kind:?} at {at}: slot 1 holds {slot_1:?}"
                );
            }
            // Applying again completes it.
            catch_up(&mut device).unwrap();
            let status = trust(&mut device);
            assert_eq!(
                (status.free_key_slots, status.anchor_commands),
                (2, 1),
                "cut {kind:?} at {at}"
            );
            assert!(trusts_b(&mut device), "cut {kind:?} at {at}");
        }
    }
    assert!(cuts >= 2 * total, "{cuts} cuts over {total} operations");
}
