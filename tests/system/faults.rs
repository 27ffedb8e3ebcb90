//! Faults the field brings: connections cut mid-download, a server that stalls or
//! answers 500, and power cuts at every stage of a download and an install. No device
//! may brick, every download resumes where flash says it stopped, and every device
//! converges once the faults stop.

use crate::support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::blocking::Client;
use rota_agent::device::Device;
use rota_agent::device::sim::{ERASE_SIZE, SimDevice};
use rota_agent::fleet::{Fleet, new_uds, provision};
use rota_agent::{Agent, Event, Outcome};
use rota_boot::sim::CutKind;
use rota_protocol::api::RolloutState;
use support::proxy::{Action, FaultProxy};
use support::{IMAGE_SIZE, World};

/// A client that gives up on a silent server after one second, as a device would.
fn impatient_client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

#[test]
fn a_fleet_converges_through_cut_connections_stalls_and_server_errors() {
    let world = World::start();
    let proxy = FaultProxy::start(&world.base);
    let devices = 20;
    let fleet = Fleet::start(
        &world.fleet_spec(devices, &proxy.url(), "net"),
        &impatient_client(),
    )
    .unwrap();
    let release = world.publish(&world.release("1.1.0", 2, 0));

    // The first 30 image requests fail in turns: cut mid-body at varying offsets,
    // stalled past the client's patience, or answered with a 500; check-ins and
    // reports fail now and then too.
    let faults = Arc::new(AtomicU64::new(0));
    let counted = faults.clone();
    proxy.set_rule(move |req| {
        // TUF 1.0.34 §5.7.3 names: /tuf/targets/firmware/HASH.NAME.bin
        let image = req.path.starts_with("/tuf/targets/") && req.path.ends_with(".bin");
        let api = req.path.starts_with("/api/v1/device/");
        if !(image || api) || counted.load(Ordering::SeqCst) >= 30 {
            return Action::Forward;
        }
        if api && req.seq % 7 != 0 {
            return Action::Forward;
        }
        let n = counted.fetch_add(1, Ordering::SeqCst);
        match (image, n % 3) {
            (true, 0) => Action::Cut {
                after_body_bytes: 1000 + (n * 7919) % (IMAGE_SIZE as u64 - 2000),
            },
            (true, 1) => Action::Stall {
                after_body_bytes: 5000 + n * 100,
                stall: Duration::from_secs(3),
            },
            _ => Action::Respond {
                status: 500,
                headers: vec![],
                body: br#"{"error":"simulated outage"}"#.to_vec(),
            },
        }
    });
    let rollout = world.rollout(&release, &[50.0, 100.0], 5, 0.5);
    let done = world.wait_for_state(
        &rollout,
        &[RolloutState::Completed, RolloutState::Halted],
        Duration::from_secs(120),
    );
    assert_eq!(done.state, RolloutState::Completed, "{done:?}");
    assert_eq!(done.counts.total.confirmed, devices as u64);
    assert!(faults.load(Ordering::SeqCst) >= 10, "the faults happened");

    // Resumed, not restarted: beyond one copy of the image per device, each
    // interruption cost at most the sector it tore plus what was in flight.
    let stats = proxy.stats();
    let image_bytes: u64 = stats
        .by_path
        .iter()
        .filter(|(path, _)| path.ends_with(".bin"))
        .map(|(_, s)| s.body_bytes_sent)
        .sum();
    let needed = devices as u64 * IMAGE_SIZE as u64;
    let interruptions = faults.load(Ordering::SeqCst);
    eprintln!(
        "figure: {devices} devices, {interruptions} faults: {image_bytes} image bytes served for {needed} needed ({} fetched again)",
        image_bytes - needed
    );
    assert!(image_bytes >= needed);
    assert!(
        image_bytes - needed <= interruptions * 2 * ERASE_SIZE as u64,
        "{image_bytes} bytes for {needed}"
    );
    let devices_back = fleet.stop();
    for device in &devices_back {
        assert_eq!(device.running().unwrap().version, 2);
    }
}

/// One device driven pass by pass, its events recorded.
fn device_agent(world: &World, id: &str) -> (Agent<SimDevice>, Arc<Mutex<Vec<Event>>>) {
    let uds = new_uds().unwrap();
    let (identity, certificate) = provision(
        &world.ca,
        id,
        support::CLASS,
        &[],
        rota_keys::Algorithm::Ed25519,
        Some(&uds),
    )
    .unwrap();
    let state_dir = world.state_root("cuts").join(id);
    let tuf = state_dir.join("tuf");
    std::fs::create_dir_all(&tuf).unwrap();
    std::fs::write(tuf.join("root.json"), world.root_json()).unwrap();
    let device = SimDevice::manufacture(identity, &world.factory(), state_dir, Some(uds)).unwrap();
    let mut agent = Agent::new(
        device,
        world.agent_config(&world.base),
        world.http.clone(),
        Some(certificate),
    )
    .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    agent.on_event(move |e| log.lock().unwrap().push(e.clone()));
    (agent, events)
}

/// Runs passes until the device confirms `version`; a device failure is a power cut:
/// power on (the bootloader decides), restart the agent from its files.
fn run_to_confirmed(agent: &mut Agent<SimDevice>, version: u64) -> u32 {
    let mut cuts = 0;
    let mut seen = Vec::new();
    for _ in 0..200 {
        match agent.cycle() {
            Ok((Outcome::Confirmed(v), _)) if v == version => return cuts,
            Ok((Outcome::Refused(why), _)) => panic!("refused: {why}"),
            Ok((outcome, _)) => {
                seen.push(outcome);
                // The server's view of a new rollout follows within a tick.
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => {
                assert!(
                    !agent.device().is_powered(),
                    "only a power cut fails the device"
                );
                cuts += 1;
                agent.device_mut().power_on().unwrap();
                assert!(agent.device().running().is_some(), "the device is bricked");
                agent.restart().unwrap();
            }
        }
    }
    panic!("the device did not converge: {seen:?}");
}

#[test]
fn power_cuts_anywhere_in_download_install_and_confirm_never_brick_and_downloads_resume() {
    let world = World::start();
    // Each device gets a release and a rollout of its own once the server knows it
    // (a newer version each time, so that the newest rollout is the one offered).
    let enrol_and_roll_out = |agent: &mut Agent<SimDevice>, version: u64| {
        assert_eq!(agent.cycle().unwrap().0, Outcome::UpToDate);
        let label = format!("1.{version}.0");
        let release = world.publish(&world.release_with(
            &label,
            version,
            1,
            0,
            support::CLASS,
            &world.firmware,
        ));
        world.rollout(&release, &[100.0], 1000, 0.99)
    };
    // Done with a device: its rollout ends, so the next device is offered only its own.
    let abort = |rollout: String| {
        world.admin_call(
            reqwest::Method::POST,
            &format!("/api/v1/rollouts/{rollout}/abort"),
            None,
        );
    };

    // A clean update, to count its flash and OTP operations.
    let (mut clean, _) = device_agent(&world, "cut-clean");
    let rollout = enrol_and_roll_out(&mut clean, 2);
    let before = clean.device().operations();
    run_to_confirmed(&mut clean, 2);
    abort(rollout);
    let total = clean.device().operations() - before;
    assert!(total > 20, "{total} operations");

    // Cut at a spread of operations across the whole update, and at each of its last
    // operations (mark pending, the trial boot, confirm, the floor burn), both cleanly
    // and tearing the operation.
    let mut points: Vec<u64> = (0..total).step_by((total / 24).max(1) as usize).collect();
    points.extend(total.saturating_sub(12)..total);
    for (i, at) in points.into_iter().enumerate() {
        let kind = if i % 2 == 0 {
            CutKind::Torn
        } else {
            CutKind::Before
        };
        let (mut agent, events) = device_agent(&world, &format!("cut-{i:03}"));
        let version = 3 + i as u64;
        let rollout = enrol_and_roll_out(&mut agent, version);
        agent.device().schedule_power_cut(at, kind, i as u64);
        let cuts = run_to_confirmed(&mut agent, version);
        abort(rollout);
        assert_eq!(cuts, 1, "cut at operation {at} of {total}");
        let running = agent.device().running().unwrap();
        assert_eq!(running.version, version, "cut at {at}");

        // Every attempt after the first resumed within a sector of where the last one
        // had got to on flash.
        let events = events.lock().unwrap();
        let mut reached = 0u64;
        let mut first_of_attempt = true;
        for event in events.iter() {
            match event {
                Event::Downloading { at: pos, .. } => {
                    if first_of_attempt && reached > 0 {
                        assert!(
                            *pos + 2 * ERASE_SIZE as u64 >= reached,
                            "cut at {at}: resumed at {pos} after reaching {reached}"
                        );
                    }
                    first_of_attempt = false;
                    reached = reached.max(*pos);
                }
                Event::Outcome(_) => first_of_attempt = true,
                Event::Attested(_) | Event::Rotated | Event::Transferred { .. } => {}
            }
        }
    }
}

/// A state file that cannot be written stops the agent with a device error instead of
/// being forgotten: an enrolment (or an acknowledged report) whose save failed used to be
/// dropped silently, and the device would run on with state it never recorded.
#[test]
fn a_state_file_that_cannot_be_saved_stops_the_agent() {
    let world = World::start();
    let (mut agent, _) = device_agent(&world, "unsaved-0001");
    // A directory where the state file goes: the atomic write's final rename fails.
    let state_file = agent.device().state_dir().join("agent-state.json");
    std::fs::create_dir(&state_file).unwrap();
    match agent.cycle() {
        Err(rota_agent::DeviceError::State(rota_agent::StateError::Write { path, .. })) => {
            assert_eq!(path, state_file);
        }
        other => panic!("the enrolment was not saved, yet the pass ended with {other:?}"),
    }
    // Once the state can be written again, the restarted agent enrols and carries on.
    std::fs::remove_dir(&state_file).unwrap();
    agent.restart().unwrap();
    assert_eq!(agent.cycle().unwrap().0, Outcome::UpToDate);
    assert!(agent.state().enrolled);
}

/// Backpressure end to end: a server that answers 503 with `Retry-After` (its database
/// is behind) is left alone that long, not retried on the agent's shorter backoff.
#[test]
fn a_busy_servers_retry_after_is_honoured() {
    use std::io::{Read, Write};
    let world = World::start();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                request.push(byte[0]);
            }
            let body = br#"{"error":"the server is busy"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }
    });
    let uds = new_uds().unwrap();
    let (key, certificate) = world.dice_identity("busy-1", &uds);
    let device = world.manufacture(
        "busy-1",
        &key,
        uds,
        &world.factory(),
        world.state_root("busy").join("busy-1"),
    );
    let config = world.agent_config(&format!("http://{address}"));
    assert!(config.backoff.cap < Duration::from_secs(7));
    let mut agent = Agent::new(device, config, world.http.clone(), Some(certificate)).unwrap();
    let (outcome, wait) = agent.cycle().unwrap();
    assert!(matches!(outcome, Outcome::Retrying(_)), "{outcome:?}");
    assert_eq!(wait, Duration::from_secs(7));
}
