//! End to end over loopback: a real rota-server on SQLite, simulated devices running the
//! real agent and the real rota-boot, staged rollouts through the management API.

use crate::support;

use std::time::{Duration, Instant};

use rota_agent::Outcome;
use rota_agent::device::Device;
use rota_agent::fleet::Fault;
use rota_protocol::api::RolloutState;
use support::World;

/// With attestation required: every confirmation counts only with evidence that the
/// device's bootloader measured the new image.
#[test]
fn a_hundred_devices_go_through_three_stages_and_a_bad_release_halts_at_its_first() {
    let world = World::start();
    // The factory image is a signed release, and the class requires hardware-rooted
    // evidence from the simulated bootloader.
    world.publish(&world.release("1.0.0", 1, 0));
    world.admin_call(
        reqwest::Method::PUT,
        &format!(
            "/api/v1/classes/{}/attestation",
            support::class_text(support::CLASS)
        ),
        Some(serde_json::json!({
            "policy": "required",
            "bootloaders": [hex::encode(rota_agent::device::sim::sim_bootloader())],
        })),
    );
    let fleet = world.fleet(100);

    let good = world.release("1.1.0", 2, 0);
    let release = world.publish(&good);
    let started = Instant::now();
    let rollout = world.rollout(&release, &[10.0, 50.0, 100.0], 5, 0.2);
    let done = world.wait_for_state(
        &rollout,
        &[RolloutState::Completed, RolloutState::Halted],
        Duration::from_secs(300),
    );
    let wall = started.elapsed();
    eprintln!(
        "figure: 100-device 3-stage rollout to completed in {:.2} s",
        wall.as_secs_f64()
    );
    assert_eq!(done.state, RolloutState::Completed, "{done:?}");
    assert_eq!(done.counts.total.confirmed, 100, "{done:?}");
    assert_eq!(done.counts.total.failed, 0);
    for stage in &done.counts.stages {
        assert_eq!(stage.confirmed, stage.members, "{done:?}");
    }
    // The devices agree with the server: every one runs 1.1.0, confirmed.
    support::wait_until(
        Duration::from_secs(10),
        "every device to show 1.1.0",
        || {
            fleet
                .views()
                .iter()
                .all(|v| v.version == 2 && v.firmware.as_deref() == Some("1.1.0"))
        },
    );

    // The server agrees from evidence: every device attested version 2, measured by its
    // bootloader.
    let devices = world.admin_call(reqwest::Method::GET, "/api/v1/devices?limit=1000", None);
    let devices = devices.as_array().cloned().unwrap_or_default();
    assert_eq!(devices.len(), 100);
    for d in &devices {
        assert_eq!(d["attestation"], "ok", "{d}");
        assert_eq!(d["attested_version"], 2, "{d}");
        assert_eq!(d["attested_by"], "bootloader", "{d}");
    }

    // A release whose self-test fails on every device: the first stage's failures halt
    // the rollout before the second stage starts.
    let bad = world.release("1.2.0-bad", 3, 100);
    let bad_release = world.publish(&bad);
    let rollout = world.rollout(&bad_release, &[10.0, 50.0, 100.0], 3, 0.2);
    let halted = world.wait_for_state(
        &rollout,
        &[RolloutState::Halted, RolloutState::Completed],
        Duration::from_secs(120),
    );
    assert_eq!(halted.state, RolloutState::Halted, "{halted:?}");
    assert_eq!(
        halted.current_stage, 0,
        "halted at the first stage: {halted:?}"
    );
    assert!(halted.counts.stages[0].failed >= 3, "{halted:?}");
    assert_eq!(halted.counts.total.confirmed, 0);
    for later in &halted.counts.stages[1..] {
        assert_eq!(
            later.assigned, 0,
            "no device of a later stage was assigned: {halted:?}"
        );
    }
    // Let the devices that were mid-trial finish reverting.
    support::wait_until(Duration::from_secs(30), "the reverts to settle", || {
        fleet
            .views()
            .iter()
            .all(|v| v.version == 2 && v.downloading.is_none())
    });
    let views = fleet.views();
    let reverted = views
        .iter()
        .filter(|v| matches!(v.last, Some(Outcome::Reverted { version: 3, .. })) || v.boots > 3)
        .count();
    assert!(
        reverted as u64 >= halted.counts.stages[0].failed,
        "{views:?}"
    );

    let devices = fleet.stop();
    assert_eq!(devices.len(), 100);
    for device in &devices {
        let running = device.running().expect("no device is bricked");
        assert_eq!(running.version, 2, "{}", device.identity().device_id);
    }
}

/// Many TPMs and secure elements hold no Ed25519 key: devices whose identity is an ECDSA
/// P-256 key enrol with their certificate, sign every check-in and report with it, and
/// install a release end to end, exactly as Ed25519 devices do.
#[test]
fn p256_device_identities_enrol_check_in_and_install_a_release() {
    let world = World::start();
    let mut spec = world.fleet_spec(5, &world.base, "tpm");
    spec.key_algorithm = rota_keys::Algorithm::EcdsaP256Sha256;
    let fleet = rota_agent::fleet::Fleet::start(&spec, &world.http).unwrap();

    let release = world.publish(&world.release("1.1.0", 2, 0));
    let rollout = world.rollout(&release, &[100.0], 5, 0.2);
    let done = world.wait_for_state(
        &rollout,
        &[RolloutState::Completed, RolloutState::Halted],
        Duration::from_secs(120),
    );
    assert_eq!(done.state, RolloutState::Completed, "{done:?}");
    assert_eq!(done.counts.total.confirmed, 5, "{done:?}");
    support::wait_until(
        Duration::from_secs(10),
        "every device to show 1.1.0",
        || fleet.views().iter().all(|v| v.version == 2),
    );
    // The server agrees once each has checked in again: five devices, all on version 2.
    support::wait_until(
        Duration::from_secs(30),
        "the server to see every device on version 2",
        || {
            let devices = world.admin_call(reqwest::Method::GET, "/api/v1/devices", None);
            let listed = devices.as_array().cloned().unwrap_or_default();
            listed.len() == 5 && listed.iter().all(|d| d["running_version"] == 2)
        },
    );
    drop(fleet);
}

/// Issue 17's fleet test: 2,000 simulated devices (tasks on a bounded worker pool, not
/// 2,000 threads) through a 4-stage rollout (1%, 10%, 50%, 100%) on embedded defaults,
/// 1% of them losing power mid-download and 1% losing the network mid-download. The
/// rollout completes and every device, faulty ones included, runs the new version.
#[test]
fn two_thousand_devices_with_power_and_network_faults_all_reach_the_new_version() {
    let devices = 2000;
    // A poll of 2 s (±20%) at the server: 1,000 check-ins a second from the fleet.
    let world = World::start_with(|s| s.poll_interval = Some(2));
    let mut spec = world.fleet_spec(devices, &world.base, "big");
    spec.agent.poll_min = Duration::from_secs(1);
    spec.agent.poll_max = Duration::from_secs(3);
    spec.agent.backoff.cap = Duration::from_secs(2);
    spec.workers = 32;
    spec.faults = rota_agent::fleet::Faults {
        power_cut: 1.0,
        network_drop: 1.0,
        outage: Duration::from_secs(2),
        seed: 17,
        ..Default::default()
    };
    let started = Instant::now();
    let fleet = rota_agent::fleet::Fleet::start(&spec, &world.http).unwrap();
    let manufactured = started.elapsed();
    let release = world.publish(&world.release("1.1.0", 2, 0));
    support::wait_until(Duration::from_secs(120), "every device to check in", || {
        fleet
            .views()
            .iter()
            .all(|v| v.last == Some(Outcome::UpToDate))
    });
    let enrolled = started.elapsed();

    let rollout = world.rollout(&release, &[1.0, 10.0, 50.0, 100.0], 10, 0.05);
    let done = world.wait_for_state(
        &rollout,
        &[RolloutState::Completed, RolloutState::Halted],
        Duration::from_secs(600),
    );
    eprintln!(
        "figure: {devices} devices manufactured in {:.1} s, checked in after {:.1} s, 4-stage rollout completed {:.1} s after that",
        manufactured.as_secs_f64(),
        enrolled.as_secs_f64(),
        (started.elapsed() - enrolled).as_secs_f64()
    );
    assert_eq!(done.state, RolloutState::Completed, "{done:?}");
    assert_eq!(done.counts.total.confirmed, devices as u64, "{done:?}");
    assert_eq!(done.counts.total.failed, 0, "{done:?}");

    let views = fleet.views();
    let faulty = |f| views.iter().filter(|v| v.fault == Some(f)).count();
    assert_eq!(faulty(Fault::PowerCut), 20);
    assert_eq!(faulty(Fault::NetworkDrop), 20);
    // Every power cut struck (the device rebooted mid-download), and struck once.
    for view in views.iter().filter(|v| v.fault == Some(Fault::PowerCut)) {
        assert_eq!(view.power_cuts, 1, "{view:?}");
    }
    // Every network drop struck once, and cost no reboot.
    for view in views.iter().filter(|v| v.fault == Some(Fault::NetworkDrop)) {
        assert_eq!((view.network_drops, view.power_cuts), (1, 0), "{view:?}");
    }
    let devices_back = fleet.stop();
    assert_eq!(devices_back.len(), devices);
    for device in &devices_back {
        let running = device.running().expect("no device is bricked");
        assert_eq!(running.version, 2, "{}", device.identity().device_id);
    }
}
