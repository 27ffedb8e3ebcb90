//! The agent's figures, against a real rota-server on loopback:
//! - peak memory (max RSS) of the `rota-agent` process during a 16 MiB update, beside a
//!   1 MiB update and a pass with nothing to do, so what grows with the image shows;
//! - image bytes fetched again after an interruption: a connection cut at 8 MiB, and the
//!   agent process killed (SIGKILL, as a power cut) at 8 MiB;
//! - wall time of a 100-device, 3-stage rollout from creation to completed.
//!
//! Run with `scripts/bench-agent.sh`; results also go to target/bench-agent.json.

use rota_system_tests as support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rota_agent::firmware::SimFirmware;
use rota_agent::fleet::provision_key;
use rota_protocol::api::RolloutState;
use serde_json::json;
use support::proxy::{Action, FaultProxy};
use support::{CLASS, World};

const AGENT: &str = env!("CARGO_BIN_EXE_rota-agent");
const MIB: usize = 1024 * 1024;

/// A provisioned Linux device (flash file, OTP, key, certificate) in its own directory.
struct Gateway {
    dir: tempfile::TempDir,
    id: String,
}

impl Gateway {
    fn new(world: &World, id: &str, capacity: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let factory = world.release("1.0.0", 1, 0);
        std::fs::write(p("fw.pub"), world.firmware.public_key_pem().unwrap()).unwrap();
        std::fs::write(p("factory.suit"), &factory.envelope).unwrap();
        std::fs::write(p("factory.bin"), &factory.image).unwrap();
        std::fs::write(p("root.json"), world.root_json()).unwrap();
        let (key, certificate) = provision_key(
            &world.ca,
            id,
            CLASS,
            &[],
            rota_keys::Algorithm::Ed25519,
            None,
        )
        .unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        std::fs::write(p("device.key"), pem.as_bytes()).unwrap();
        std::fs::write(
            p("device.cert.json"),
            serde_json::to_vec(&certificate).unwrap(),
        )
        .unwrap();
        let status = Command::new(AGENT)
            .args([
                "provision",
                "--flash",
                "flash.bin",
                "--otp",
                "otp.bin",
                "--image-capacity",
                capacity,
                "--trust-anchor",
                "fw.pub",
                "--envelope",
                "factory.suit",
                "--image",
                "factory.bin",
                "--tuf-root",
                "root.json",
                "--state-dir",
                "state",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        Gateway { dir, id: id.into() }
    }

    fn spawn(&self, server: &str, capacity: &str) -> Child {
        // ROTA_BENCH_WRAP=heaptrack (or valgrind, strace) runs the agent under a profiler.
        let mut command = match std::env::var("ROTA_BENCH_WRAP") {
            Ok(wrapper) => {
                let mut c = Command::new(wrapper);
                c.arg(AGENT);
                c
            }
            Err(_) => Command::new(AGENT),
        };
        command
            .args([
                "run",
                "--once",
                "--server",
                server,
                "--state-dir",
                "state",
                "--flash",
                "flash.bin",
                "--otp",
                "otp.bin",
                "--image-capacity",
                capacity,
                "--device-key",
                "device.key",
                "--certificate",
                "device.cert.json",
                "--trust-anchor",
                "fw.pub",
            ])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// One `run --once`; returns whether it succeeded and its peak RSS in KiB.
    ///
    /// The peak is the kernel's high-water mark of the agent's own address space
    /// (`VmHWM`), sampled until it exits: `ru_maxrss` would also count the pages of this
    /// (large) bench process that the child shared between fork and exec.
    fn run_measured(&self, server: &str, capacity: &str) -> (bool, u64) {
        let mut child = self.spawn(server, capacity);
        let status_file = format!("/proc/{}/status", child.id());
        let mut peak = 0;
        loop {
            if let Some(hwm) = std::fs::read_to_string(&status_file)
                .ok()
                .and_then(|s| vm_hwm_kib(&s))
            {
                peak = peak.max(hwm);
            }
            if let Some(status) = child.try_wait().unwrap() {
                return (status.success(), peak);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// `VmHWM:     1234 kB` in /proc/PID/status (absent once the process is a zombie).
fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A release of `size` bytes for class CLASS.
fn big_release(world: &World, label: &str, version: u64, size: usize) -> support::Release {
    let image = SimFirmware {
        label: label.into(),
        fail_health_percent: 0,
    }
    .image(size);
    support::sign_release(label, version, 1, CLASS, image, &world.firmware)
}

/// Enrols the gateway (a pass with nothing to do), then rolls `release` out to it.
fn enrol_then_roll_out(
    world: &World,
    gw: &Gateway,
    release: &support::Release,
    server: &str,
    capacity: &str,
) -> u64 {
    let (ok, idle_rss) = gw.run_measured(server, capacity);
    assert!(ok, "{} could not enrol", gw.id);
    std::thread::sleep(Duration::from_millis(200));
    let id = world.publish(release);
    world.rollout(&id, &[100.0], 1, 0.5);
    idle_rss
}

fn memory(world: &World) -> serde_json::Value {
    let mut rows = Vec::new();
    for (version, size, capacity) in [(2, MIB, "2M"), (3, 16 * MIB, "17M")] {
        let gw = Gateway::new(world, &format!("mem-{version}"), capacity);
        let release = big_release(world, &format!("1.{version}.0"), version, size);
        let idle = enrol_then_roll_out(world, &gw, &release, &world.base, capacity);
        let (ok, peak) = gw.run_measured(&world.base, capacity);
        assert!(ok, "the {size}-byte update failed");
        println!(
            "peak RSS of rota-agent: {:>5} KiB during a {:>2} MiB update ({} KiB for a pass with nothing to do)",
            peak,
            size / MIB,
            idle
        );
        rows.push(json!({"image_bytes": size, "peak_rss_kib": peak, "idle_rss_kib": idle}));
        abort_all(world);
    }
    json!(rows)
}

fn abort_all(world: &World) {
    let rollouts = world.admin_call(reqwest::Method::GET, "/api/v1/rollouts", None);
    for r in rollouts.as_array().unwrap() {
        if r["state"] == "active" {
            let id = r["id"].as_str().unwrap();
            world.admin_call(
                reqwest::Method::POST,
                &format!("/api/v1/rollouts/{id}/abort"),
                None,
            );
        }
    }
}

fn image_bytes_served(proxy: &FaultProxy) -> u64 {
    proxy
        .stats()
        .by_path
        .iter()
        .filter(|(path, _)| path.starts_with("/tuf/targets/") && path.ends_with(".bin"))
        .map(|(_, s)| s.body_bytes_sent)
        .sum()
}

fn refetch(world: &World) -> serde_json::Value {
    let size = 16 * MIB;
    let cut_at = 8 * MIB as u64;
    let mut rows = Vec::new();
    for (n, how) in [(4u64, "connection cut"), (5, "process killed")].into_iter() {
        let proxy = FaultProxy::start(&world.base);
        let gw = Gateway::new(world, &format!("refetch-{n}"), "17M");
        let release = big_release(world, &format!("1.{n}.0"), n, size);
        enrol_then_roll_out(world, &gw, &release, &proxy.url(), "17M");
        proxy.reset_stats();
        let first = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let once = first.clone();
        let kill = how == "process killed";
        proxy.set_rule(move |req| {
            let image = req.path.starts_with("/tuf/targets/") && req.path.ends_with(".bin");
            if image && once.swap(false, std::sync::atomic::Ordering::SeqCst) {
                if kill {
                    Action::Stall {
                        after_body_bytes: cut_at,
                        stall: Duration::from_secs(30),
                    }
                } else {
                    Action::Cut {
                        after_body_bytes: cut_at,
                    }
                }
            } else {
                Action::Forward
            }
        });
        let mut child = gw.spawn(&proxy.url(), "17M");
        if kill {
            // Once the 8 MiB are sent and written, the power goes.
            let deadline = Instant::now() + Duration::from_secs(60);
            while image_bytes_served(&proxy) < cut_at {
                assert!(Instant::now() < deadline);
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(300));
            child.kill().unwrap();
        }
        let _ = child.wait();
        proxy.clear_rule();
        let (ok, _) = gw.run_measured(&proxy.url(), "17M");
        assert!(ok, "the resumed update failed ({how})");
        let served = image_bytes_served(&proxy);
        let again = served - size as u64;
        println!(
            "after a {how} at 8 MiB of a 16 MiB image: {served} image bytes served, {again} fetched again"
        );
        rows.push(json!({"interruption": how, "image_bytes": size, "served": served, "fetched_again": again}));
        abort_all(world);
    }
    json!(rows)
}

fn rollout_wall_time(image_size: usize) -> f64 {
    let world = World::start();
    let mut spec = world.fleet_spec(100, &world.base, "bench");
    let v1 = big_release(&world, "1.0.0", 1, image_size);
    spec.factory.envelope = v1.envelope;
    spec.factory.image = v1.image;
    spec.factory.image_capacity = (image_size as u32).next_multiple_of(4096);
    let fleet = rota_agent::fleet::Fleet::start(&spec, &world.http).unwrap();
    let release = world.publish(&big_release(&world, "1.1.0", 2, image_size));
    let started = Instant::now();
    let rollout = world.rollout(&release, &[10.0, 50.0, 100.0], 5, 0.2);
    let done = world.wait_for_state(
        &rollout,
        &[RolloutState::Completed, RolloutState::Halted],
        Duration::from_secs(600),
    );
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(done.state, RolloutState::Completed);
    assert_eq!(done.counts.total.confirmed, 100);
    fleet.stop();
    println!(
        "100 devices, 3 stages (10/50/100 %), {} KiB images: rollout completed in {wall:.2} s",
        image_size / 1024
    );
    wall
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would run this too: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let world = World::start();
    let memory = memory(&world);
    let refetch = refetch(&world);
    drop(world);
    let small = rollout_wall_time(support::IMAGE_SIZE);
    let demo = rollout_wall_time(256 * 1024);
    let report = json!({
        "memory": memory,
        "refetch": refetch,
        "rollout_100_devices_s": {"image_48k": small, "image_256k": demo},
    });
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-agent.json");
    std::fs::write(path, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    println!("wrote target/bench-agent.json");
}
