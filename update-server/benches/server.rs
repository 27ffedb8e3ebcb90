//! rota-server beside nginx, on this machine, in one run (`scripts/bench-server.sh`):
//!
//! 1. "Nothing new" check-ins per second: the release `rota-server` binary, a separate
//!    process on its embedded defaults (SQLite and artifacts in a temporary data
//!    directory), with a registered fleet of one class and a live rollout of another
//!    class (so every check-in evaluates a live rollout and answers "nothing new"). Each
//!    request is signed by its device with a fresh nonce and carries `If-None-Match` with
//!    the answer's tag, so each answer is `304`. The requests are signed before the
//!    measured window, so the client spends no signing time in it; a short run signing on
//!    the fly is reported beside it. Then the same on check-in sessions
//!    (`rota_protocol::session`): each device opens one with a signed request, and its
//!    check-ins carry an HMAC under the session key instead of a signature (MAC'd before
//!    the window; a short run MAC'ing on the fly beside it).
//! 2. nginx (foreground child, generated config, `access_log off`) serving a 100-byte
//!    static file, hit by the same load tool with the same connections and duration.
//! 3. Download throughput of one 16 MiB artifact: rota-server's `/tuf/targets/…` and
//!    nginx, one client in a row and several clients at once.
//! 4. Halt latency: a rollout ([100%], min_sample 5, failure threshold 0.2) with 20
//!    assigned devices that report `reverted` one by one. From the acknowledgement of the
//!    report that crosses the threshold, never-assigned devices check in one after
//!    another (each would be assigned if the rollout were still active) until one is told
//!    "nothing new". Repeated, with a fresh rollout each time.
//!
//! Prints a table with the machine's facts and writes it as JSON (target/bench-server.json).
//! The load tool, rota-server and nginx share this machine's cores: the CPU each used in
//! the window is reported beside its rate.

// The bench's crate root is benches/server.rs; its modules live in benches/server/.
#[path = "server/fleet.rs"]
mod fleet;
#[path = "server/load.rs"]
mod load;
#[path = "server/procs.rs"]
mod procs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Request, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use fleet::{Admin, Device, Keys, Session, checkin_path, rollout_body};
use load::{DownloadResult, LoadResult, LoadSpec};
use procs::Child;

/// The class of the benchmarked fleet.
const FLEET_CLASS: &str = "8a1c3c1e-3b2a-4f5e-9d3a-0c1b2a3d4e5f";
/// The class of the live rollout the fleet's check-ins evaluate (and of the 16 MiB image).
const OTHER_CLASS: &str = "0b2d4f6a-8c0e-4a1b-9c3d-5e7f9a1b3c5d";
/// The class of the halt-latency rollouts.
const HALT_CLASS: &str = "5c9e2a71-6d4b-4f08-a3e1-7b2c9d0e4f16";

#[derive(Debug, Parser)]
#[command(
    name = "server",
    about = "rota-server check-ins/s and downloads beside nginx; rollout halt latency"
)]
struct Args {
    /// Seconds of each measured load window.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before each window (not measured).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Concurrent keep-alive connections of the load tool.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Registered devices whose check-ins are benchmarked (round-robin).
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Tokio worker threads of the load tool (default: the number of CPUs).
    #[arg(long)]
    client_threads: Option<usize>,
    /// nginx worker processes.
    #[arg(long, default_value_t = 2)]
    nginx_workers: usize,
    /// Size of the downloaded artifact, in MiB.
    #[arg(long, default_value_t = 16)]
    artifact_mib: usize,
    /// Downloads per client, after one unmeasured download.
    #[arg(long, default_value_t = 8)]
    downloads: usize,
    /// Clients of the concurrent download run.
    #[arg(long, default_value_t = 4)]
    download_clients: usize,
    /// Repetitions of the halt-latency measurement.
    #[arg(long, default_value_t = 20)]
    halt_reps: usize,
    /// Devices assigned in each halt-latency rollout.
    #[arg(long, default_value_t = 20)]
    halt_fleet: usize,
    /// The rota-server binary (default: the release build next to this bench).
    #[arg(long, env = "ROTA_BENCH_SERVER_BIN")]
    server_bin: Option<PathBuf>,
    /// The nginx binary.
    #[arg(long, default_value = "nginx")]
    nginx: PathBuf,
    /// Where the JSON results go (default: target/bench-server.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let threads = args.client_threads.unwrap_or_else(nproc).max(1);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The servers are children owned by `run`'s future: an error, a panic or a signal
    // drops it, and dropping them stops them.
    let result = runtime.block_on(async {
        tokio::select! {
            r = run(&args, threads) => r,
            s = signals() => Err(anyhow::anyhow!("interrupted by {s}")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn signals() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The directory cargo builds into: two levels above this bench's executable
/// (target/release/deps/server-…), or CARGO_TARGET_DIR, or the workspace's target/.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        let release = exe.parent()?.parent()?;
        Some(release.parent()?.to_path_buf())
    });
    from_exe
        .filter(|dir| dir.join("CACHEDIR.TAG").exists())
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

#[derive(Debug, Serialize)]
struct Machine {
    nproc: usize,
    cpu_model: String,
    kernel: String,
    nginx: String,
    rota_git: String,
    client_threads: usize,
    loadavg_start: f64,
    loadavg_end: f64,
    /// CPU cores other processes used in the second before the bench started anything.
    busy_cores_before: f64,
}

#[derive(Debug, Serialize)]
struct LoadRow {
    name: String,
    what: String,
    /// The 1-minute load average when the run began (other work on the machine shows here).
    loadavg_before: f64,
    /// The server's CPU time per answered request, in microseconds: what the rate would
    /// be bounded by with a whole core to itself, whatever else ran beside it.
    server_cpu_us_per_request: f64,
    #[serde(flatten)]
    result: LoadResult,
}

#[derive(Debug, Serialize)]
struct DownloadRow {
    name: String,
    #[serde(flatten)]
    result: DownloadResult,
}

#[derive(Debug, Serialize)]
struct HaltRep {
    /// From sending the crossing report to reading its acknowledgement.
    report_ack_ms: f64,
    /// From the acknowledgement to the first "nothing new" answer to a fresh device.
    halt_latency_ms: f64,
    /// From the acknowledgement to sending that check-in.
    checkin_sent_after_ack_us: f64,
    /// The control check-in just before the crossing report (a fresh device, assigned):
    /// one check-in's round trip through the rollout engine, for scale.
    control_checkin_ms: f64,
    /// Fresh devices given the release after the acknowledgement (0 expected).
    assigned_after_ack: usize,
    halted_reason: String,
}

#[derive(Debug, Serialize)]
struct Halt {
    stages: Value,
    min_sample: u32,
    failure_threshold: f64,
    assigned_devices: usize,
    reports_to_cross: usize,
    repetitions: usize,
    report_ack_ms_median: f64,
    report_ack_ms_max: f64,
    halt_latency_ms_median: f64,
    halt_latency_ms_max: f64,
    checkin_sent_after_ack_us_median: f64,
    control_checkin_ms_median: f64,
    assigned_after_ack_total: usize,
    reps: Vec<HaltRep>,
}

#[derive(Debug, Serialize)]
struct Report {
    command: String,
    machine: Machine,
    duration_s: f64,
    warmup_s: f64,
    connections: usize,
    devices: usize,
    signing: Signing,
    load: Vec<LoadRow>,
    checkin_vs_nginx: f64,
    /// Check-ins on sessions (MAC'd), as a fraction of nginx's static file.
    session_checkin_vs_nginx: f64,
    session_mac: Signing,
    artifact_bytes: u64,
    downloads: Vec<DownloadRow>,
    halt: Halt,
}

#[derive(Debug, Serialize)]
struct Signing {
    mode: &'static str,
    pool: usize,
    microseconds_per_request: f64,
    threads: usize,
}

async fn run(args: &Args, client_threads: usize) -> Result<()> {
    ensure!(
        args.duration > 0.0 && args.warmup >= 0.0,
        "--duration must be positive"
    );
    ensure!(
        args.connections > 0 && args.devices > 0,
        "--connections and --devices must be positive"
    );
    ensure!(
        args.halt_fleet >= 5,
        "--halt-fleet must be at least the min_sample of 5"
    );
    let duration = Duration::from_secs_f64(args.duration);
    let warmup = Duration::from_secs_f64(args.warmup);
    let target = target_dir();
    let server_bin = args
        .server_bin
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rota-server")));
    ensure!(
        server_bin.exists(),
        "{} does not exist: build it with `cargo build --release -p rota-server`",
        server_bin.display()
    );
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let machine_start = procs::loadavg();
    // What the rest of the machine uses before anything of the bench runs.
    let idle_probe = procs::machine_busy_seconds();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busy_before = procs::machine_busy_seconds() - idle_probe;
    let git = {
        let rev = procs::command_line(
            Path::new("git"),
            &["rev-parse", "--short", "HEAD"],
            Some(&workspace),
        );
        let dirty = Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .current_dir(&workspace)
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false);
        if dirty {
            format!("{rev} (with uncommitted changes)")
        } else {
            rev
        }
    };
    let nginx_version = procs::command_line(&args.nginx, &["-v"], None);
    eprintln!(
        "bench: {} CPUs ({}), load average {machine_start:.2}; server {}",
        nproc(),
        procs::cpu_model(),
        server_bin.display()
    );

    // --- rota-server -----------------------------------------------------------------
    let data = tempfile::Builder::new()
        .prefix("rota-bench-server.")
        .tempdir()?;
    let keys = Keys::new()?;
    keys.install(data.path())?;
    let rota_addr = procs::free_port()?;
    let mut cmd = Command::new(&server_bin);
    cmd.arg("--data-dir")
        .arg(data.path())
        .arg("--listen")
        .arg(rota_addr.to_string())
        .env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ROTA_SERVER_") {
            cmd.env_remove(name);
        }
    }
    let mut rota = Child::spawn("rota-server", &mut cmd, &data.path().join("server.log"))?;
    let probe = reqwest::Client::new();
    let health = format!("http://{rota_addr}/healthz");
    procs::wait_ready(&mut rota, Duration::from_secs(20), || {
        let req = probe.get(&health).send();
        async move { req.await.is_ok_and(|r| r.status().is_success()) }
    })
    .await?;
    let admin = Admin::new(rota_addr, data.path())?;
    admin
        .init_repo(&keys)
        .await
        .context("initialising the repository")?;

    // The 16 MiB image, a release of another class, and its live rollout.
    let artifact_len = (args.artifact_mib * 1024 * 1024) as u64;
    let mut image = vec![0u8; artifact_len as usize];
    fill_pseudo_random(&mut image);
    let image_sha = hex::encode(Sha256::digest(&image));
    eprintln!(
        "bench: publishing a {} MiB release and its rollout",
        args.artifact_mib
    );
    let (other_release, image_name) = admin.publish(&keys, OTHER_CLASS, 2, &image).await?;
    // One member that never confirms keeps the rollout's only stage open (a rollout whose
    // stage has no members completes at the next tick).
    let other_device = Device::new(&keys, "other-000000", OTHER_CLASS, &[])?;
    admin
        .register_all(std::slice::from_ref(&other_device))
        .await?;
    let other_rollout = admin
        .rollout(rollout_body(
            &other_release,
            OTHER_CLASS,
            &[],
            json!([{"percent": 100}]),
            0.2,
            5,
        ))
        .await?;
    let rota_download = format!("/tuf/targets/{image_sha}.{image_name}");

    // The fleet: registered, then a first check-in each (activates it; gives the tag).
    eprintln!("bench: registering {} devices", args.devices);
    let devices: Vec<Device> = (0..args.devices)
        .map(|i| Device::new(&keys, &format!("bench-{i:06}"), FLEET_CLASS, &["bench"]))
        .collect::<Result<_>>()?;
    admin.register_all(&devices).await?;
    let path = checkin_path();
    let tags: Vec<Result<String>> = futures::stream::iter(&devices)
        .map(|d| first_checkin(rota_addr, d, &path))
        .buffer_unordered(8)
        .collect()
        .await;
    let mut tag = None;
    for t in tags {
        let t = t?;
        match &tag {
            None => tag = Some(t),
            Some(first) => ensure!(*first == t, "devices of one class got different tags"),
        }
    }
    let tag = HeaderValue::from_str(&tag.context("no device checked in")?)?;
    {
        let status = admin.rollout_status(&other_rollout).await?;
        ensure!(
            status["state"] == "active",
            "the other class's rollout is not active: {status}"
        );
    }

    let rota_pid = rota.pid();
    let rota_cpu = |label: &str| {
        vec![
            ("rota-server".to_string(), rota_pid, false),
            (label.to_string(), std::process::id(), false),
        ]
    };
    let mut load_rows = Vec::new();

    // Calibration: signed on the fly, a short window; sizes the pre-signed pool.
    eprintln!("bench: check-ins signed on the fly (calibration)");
    let next = Arc::new(AtomicUsize::new(0));
    let on_the_fly: load::Source = {
        let (devices, next, path, tag) = (
            Arc::new(devices.clone()),
            next.clone(),
            path.clone(),
            tag.clone(),
        );
        Arc::new(move || {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let device = &devices[i % devices.len()];
            let mut headers = device.sign("GET", &path, b"").ok()?;
            headers.insert(hyper::header::IF_NONE_MATCH, tag.clone());
            Some(load::get(rota_addr, &path, &headers))
        })
    };
    let load_calibration = procs::loadavg();
    let calibration = load::run(LoadSpec {
        addr: rota_addr,
        connections: args.connections,
        warmup: Duration::from_millis(500),
        duration: Duration::from_secs(2).min(duration),
        expect_status: StatusCode::NOT_MODIFIED,
        expect_len: Some(0),
        source: on_the_fly,
        cpu: rota_cpu("load tool"),
    })
    .await?;
    ensure_clean("rota-server check-ins (signed on the fly)", &calibration)?;

    // The pool: twice the calibrated rate over warm-up and window, plus a margin.
    let pool_size = ((calibration.requests_per_s * 2.0 * (args.warmup + args.duration)) as usize
        + 20_000)
        .min(4_000_000);
    eprintln!("bench: pre-signing {pool_size} check-ins");
    let (pool, sign_us) = presign(&devices, &path, &tag, pool_size)?;
    let pool = Arc::new(pool);
    let signing = Signing {
        mode: "pre-signed before the window (distinct nonces)",
        pool: pool.len(),
        microseconds_per_request: sign_us,
        threads: nproc(),
    };
    let sample_headers = pool[0].clone();
    let presigned: load::Source = {
        let (pool, next, path) = (pool.clone(), Arc::new(AtomicUsize::new(0)), path.clone());
        Arc::new(move || {
            let i = next.fetch_add(1, Ordering::Relaxed);
            pool.get(i)
                .map(|headers| load::get(rota_addr, &path, headers))
        })
    };
    eprintln!("bench: rota-server check-ins");
    let load_checkins = procs::loadavg();
    let checkins = load::run(LoadSpec {
        addr: rota_addr,
        connections: args.connections,
        warmup,
        duration,
        expect_status: StatusCode::NOT_MODIFIED,
        expect_len: Some(0),
        source: presigned,
        cpu: rota_cpu("load tool"),
    })
    .await?;
    ensure_clean("rota-server check-ins", &checkins)?;
    drop(pool);
    rota.check_running()?;

    // Sessions: one signed request each opens one; check-ins then carry a MAC.
    eprintln!("bench: opening {} check-in sessions", devices.len());
    let sessions: Vec<Result<Session>> = futures::stream::iter(&devices)
        .map(|d| open_session(rota_addr, d))
        .buffered(8)
        .collect()
        .await;
    let sessions = Arc::new(sessions.into_iter().collect::<Result<Vec<_>>>()?);
    let devices = Arc::new(devices);
    eprintln!("bench: check-ins on sessions, MAC'd on the fly (calibration)");
    let mac_on_the_fly: load::Source = {
        let (devices, sessions, next, path, tag) = (
            devices.clone(),
            sessions.clone(),
            Arc::new(AtomicUsize::new(0)),
            path.clone(),
            tag.clone(),
        );
        Arc::new(move || {
            let i = next.fetch_add(1, Ordering::Relaxed) % devices.len();
            let mut headers = devices[i].mac(&sessions[i], "GET", &path, b"").ok()?;
            headers.insert(hyper::header::IF_NONE_MATCH, tag.clone());
            Some(load::get(rota_addr, &path, &headers))
        })
    };
    let load_session_calibration = procs::loadavg();
    let session_calibration = load::run(LoadSpec {
        addr: rota_addr,
        connections: args.connections,
        warmup: Duration::from_millis(500),
        duration: Duration::from_secs(2).min(duration),
        expect_status: StatusCode::NOT_MODIFIED,
        expect_len: Some(0),
        source: mac_on_the_fly,
        cpu: rota_cpu("load tool"),
    })
    .await?;
    ensure_clean(
        "rota-server check-ins on sessions (MAC'd on the fly)",
        &session_calibration,
    )?;
    let session_pool_size =
        ((session_calibration.requests_per_s * 2.0 * (args.warmup + args.duration)) as usize
            + 20_000)
            .min(4_000_000);
    eprintln!("bench: MAC'ing {session_pool_size} check-ins");
    let (session_pool, mac_us) = prebuild(session_pool_size, |i| {
        let i = i % devices.len();
        let mut headers = devices[i].mac(&sessions[i], "GET", &path, b"")?;
        headers.insert(hyper::header::IF_NONE_MATCH, tag.clone());
        Ok(headers)
    })?;
    let session_mac = Signing {
        mode: "MAC'd on sessions before the window (distinct nonces)",
        pool: session_pool.len(),
        microseconds_per_request: mac_us,
        threads: nproc(),
    };
    let session_pool = Arc::new(session_pool);
    let premaced: load::Source = {
        let (pool, next, path) = (
            session_pool.clone(),
            Arc::new(AtomicUsize::new(0)),
            path.clone(),
        );
        Arc::new(move || {
            let i = next.fetch_add(1, Ordering::Relaxed);
            pool.get(i)
                .map(|headers| load::get(rota_addr, &path, headers))
        })
    };
    eprintln!("bench: rota-server check-ins on sessions");
    let load_session_checkins = procs::loadavg();
    let session_checkins = load::run(LoadSpec {
        addr: rota_addr,
        connections: args.connections,
        warmup,
        duration,
        expect_status: StatusCode::NOT_MODIFIED,
        expect_len: Some(0),
        source: premaced,
        cpu: rota_cpu("load tool"),
    })
    .await?;
    ensure_clean("rota-server check-ins on sessions", &session_checkins)?;
    drop(session_pool);
    rota.check_running()?;
    let status = admin.rollout_status(&other_rollout).await?;
    ensure!(
        status["state"] == "active",
        "the other class's rollout was not active throughout the check-ins: {status}"
    );

    // --- nginx -------------------------------------------------------------------------
    let ngx_dir = tempfile::Builder::new()
        .prefix("rota-bench-nginx.")
        .tempdir()?;
    let www = ngx_dir.path().join("www");
    std::fs::create_dir_all(&www)?;
    let mut small = b"rota bench: a static file of one hundred bytes, served by nginx".to_vec();
    small.resize(99, b'.');
    small.push(b'\n');
    std::fs::write(www.join("small.txt"), &small)?;
    std::fs::write(www.join("artifact.bin"), &image)?;
    drop(image);
    let ngx_addr = procs::free_port()?;
    let mut nginx = procs::start_nginx(
        &args.nginx,
        ngx_dir.path(),
        &www,
        ngx_addr,
        args.nginx_workers,
    )
    .context("nginx could not start")?;
    procs::wait_ready(&mut nginx, Duration::from_secs(10), || async move {
        match load::connect(ngx_addr).await {
            Ok(mut s) => {
                load::exchange(&mut s, load::get(ngx_addr, "/small.txt", &HeaderMap::new()))
                    .await
                    .is_ok_and(|(status, len)| status == StatusCode::OK && len == 100)
            }
            Err(_) => false,
        }
    })
    .await
    .context("nginx could not start")?;
    eprintln!("bench: nginx static file");
    let ngx_headers = sample_headers.clone();
    let load_static = procs::loadavg();
    let static_file = load::run(LoadSpec {
        addr: ngx_addr,
        connections: args.connections,
        warmup,
        duration,
        expect_status: StatusCode::OK,
        expect_len: Some(small.len() as u64),
        source: Arc::new(move || Some(load::get(ngx_addr, "/small.txt", &ngx_headers))),
        cpu: vec![
            ("nginx".to_string(), nginx.pid(), true),
            ("load tool".to_string(), std::process::id(), false),
        ],
    })
    .await?;
    ensure_clean("nginx static file", &static_file)?;
    nginx.check_running()?;

    load_rows.push(LoadRow {
        name: "rota-server check-in → 304".into(),
        what: format!(
            "GET {} signed (pre-signed pool), If-None-Match, {} devices round-robin, live rollout of another class",
            checkin_path(),
            args.devices
        ),
        loadavg_before: load_checkins,
        server_cpu_us_per_request: f64::NAN,
        result: checkins,
    });
    load_rows.push(LoadRow {
        name: "nginx 100-byte static file → 200".into(),
        what: "GET /small.txt with the same request headers as a check-in".into(),
        loadavg_before: load_static,
        server_cpu_us_per_request: f64::NAN,
        result: static_file,
    });
    load_rows.push(LoadRow {
        name: "rota-server check-in, signed on the fly".into(),
        what:
            "as the first row, the load tool signing each request in the window (calibration, 2 s)"
                .into(),
        loadavg_before: load_calibration,
        server_cpu_us_per_request: f64::NAN,
        result: calibration,
    });
    load_rows.push(LoadRow {
        name: "rota-server check-in on a session → 304".into(),
        what: "as the first row, each request MAC'd under its device's session (pre-MAC'd pool) instead of signed".into(),
        loadavg_before: load_session_checkins,
        server_cpu_us_per_request: f64::NAN,
        result: session_checkins,
    });
    load_rows.push(LoadRow {
        name: "rota-server check-in, MAC'd on the fly".into(),
        what: "as the session row, the load tool MAC'ing each request in the window (calibration, 2 s)".into(),
        loadavg_before: load_session_calibration,
        server_cpu_us_per_request: f64::NAN,
        result: session_calibration,
    });

    for row in &mut load_rows {
        let (rate, server_cores) = (row.result.requests_per_s, row.result.cpu_cores[0].1);
        row.server_cpu_us_per_request = server_cores / rate * 1e6;
    }

    // --- downloads ---------------------------------------------------------------------
    eprintln!("bench: downloads");
    let mut downloads = Vec::new();
    for clients in [1, args.download_clients] {
        for (name, addr, path, cpu) in [
            (
                "rota-server /tuf/targets/…",
                rota_addr,
                rota_download.as_str(),
                (rota_pid, false),
            ),
            ("nginx", ngx_addr, "/artifact.bin", (nginx.pid(), true)),
        ] {
            let result = load::download(addr, path, artifact_len, clients, args.downloads, cpu)
                .await
                .with_context(|| format!("downloading from {name}"))?;
            downloads.push(DownloadRow {
                name: name.to_string(),
                result,
            });
        }
    }
    drop(nginx);

    // --- halt latency ------------------------------------------------------------------
    eprintln!("bench: halt latency ({} repetitions)", args.halt_reps);
    let halt = halt_latency(&admin, &keys, rota_addr, args).await?;
    rota.check_running()?;
    drop(rota);

    // --- the report --------------------------------------------------------------------
    let checkin_rate = load_rows[0].result.requests_per_s;
    let static_rate = load_rows[1].result.requests_per_s;
    let session_checkin_rate = load_rows[3].result.requests_per_s;
    let report = Report {
        command: std::env::var("ROTA_BENCH_COMMAND")
            .unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" ")),
        machine: Machine {
            nproc: nproc(),
            cpu_model: procs::cpu_model(),
            kernel: procs::kernel(),
            nginx: nginx_version,
            rota_git: git,
            client_threads,
            loadavg_start: machine_start,
            busy_cores_before: busy_before,
            loadavg_end: procs::loadavg(),
        },
        duration_s: args.duration,
        warmup_s: args.warmup,
        connections: args.connections,
        devices: args.devices,
        signing,
        load: load_rows,
        checkin_vs_nginx: checkin_rate / static_rate,
        session_checkin_vs_nginx: session_checkin_rate / static_rate,
        session_mac,
        artifact_bytes: artifact_len,
        downloads,
        halt,
    };
    print_report(&report, args);
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| target.join("bench-server.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    println!("\nJSON: {}", json_path.display());
    Ok(())
}

/// Fails on any error or unexpected answer in a load run: its rate would not mean what
/// the table says.
fn ensure_clean(name: &str, r: &LoadResult) -> Result<()> {
    if r.errors > 0 || r.unexpected > 0 || r.requests == 0 {
        bail!(
            "{name}: {} answers, {} unexpected, {} errors (first: {})",
            r.requests,
            r.unexpected,
            r.errors,
            r.first_problem.as_deref().unwrap_or("none")
        );
    }
    Ok(())
}

/// Cheap deterministic bytes (xorshift), so the artifact does not compress.
fn fill_pseudo_random(buf: &mut [u8]) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

/// A device's first check-in: 200, nothing new; returns the answer's tag.
async fn first_checkin(addr: SocketAddr, device: &Device, path: &str) -> Result<String> {
    let mut sender = load::connect(addr).await?;
    let headers = device.sign("GET", path, b"")?;
    let (status, body) = load::exchange_full(&mut sender, load::get(addr, path, &headers)).await?;
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    ensure!(
        status == StatusCode::OK && answer["assignment"].is_null(),
        "first check-in of {}: {status} {answer}",
        device.id
    );
    // The tag is only in the headers; ask again with a wildcard to get it in a 304.
    let mut headers = device.sign("GET", path, b"")?;
    headers.insert(hyper::header::IF_NONE_MATCH, HeaderValue::from_static("*"));
    let req = load::get(addr, path, &headers);
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    ensure!(
        resp.status() == StatusCode::NOT_MODIFIED,
        "a wildcard check-in answered {}",
        resp.status()
    );
    let tag = resp
        .headers()
        .get(hyper::header::ETAG)
        .context("a check-in answer has no ETag")?
        .to_str()?
        .to_string();
    Ok(tag)
}

/// `n` signed check-ins with `If-None-Match: tag`, round-robin over `devices`, signed on
/// every CPU; returns them and the CPU time spent per request in microseconds.
fn presign(
    devices: &[Device],
    path: &str,
    tag: &HeaderValue,
    n: usize,
) -> Result<(Vec<HeaderMap>, f64)> {
    prebuild(n, |i| {
        let mut headers = devices[i % devices.len()].sign("GET", path, b"")?;
        headers.insert(hyper::header::IF_NONE_MATCH, tag.clone());
        Ok(headers)
    })
}

/// The headers of `n` requests, `make(i)` for request i, made on every CPU; returns them
/// in order and the CPU time spent per request in microseconds.
fn prebuild(
    n: usize,
    make: impl Fn(usize) -> Result<HeaderMap> + Sync,
) -> Result<(Vec<HeaderMap>, f64)> {
    let threads = nproc();
    let chunk = n.div_ceil(threads);
    let make = &make;
    let parts: Vec<Result<(Vec<HeaderMap>, f64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let cpu = procs::thread_cpu_seconds();
                    let range = (t * chunk)..((t + 1) * chunk).min(n);
                    let mut out = Vec::with_capacity(range.len());
                    for i in range {
                        out.push(make(i)?);
                    }
                    Ok((out, procs::thread_cpu_seconds() - cpu))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a signing thread panicked")))
            })
            .collect()
    });
    let mut pool = Vec::with_capacity(n);
    let mut cpu = 0.0;
    for part in parts {
        let (part, seconds) = part?;
        pool.extend(part);
        cpu += seconds;
    }
    Ok((pool, cpu * 1e6 / n as f64))
}

/// Opens `device`'s check-in session: a signed `POST /api/v1/device/session` with an
/// ephemeral X25519 key.
async fn open_session(addr: SocketAddr, device: &Device) -> Result<Session> {
    let ephemeral = rota_protocol::session::DeviceEphemeral::generate()?;
    let body = serde_json::to_vec(&ephemeral.request())?;
    let mut sender: Conn = load::connect(addr).await?;
    let req = signed_request(
        addr,
        device,
        "POST",
        rota_protocol::session::SESSION_PATH,
        &body,
    )?;
    let (status, answer) = load::exchange_full(&mut sender, req).await?;
    ensure!(
        status == StatusCode::OK,
        "opening a session for {} answered {status}: {}",
        device.id,
        String::from_utf8_lossy(&answer)
    );
    let opened: rota_protocol::session::SessionOpened = serde_json::from_slice(&answer)?;
    Ok(Session {
        key: ephemeral.finish(&device.id, &opened)?,
        token: opened.token,
    })
}

type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

fn signed_request(
    addr: SocketAddr,
    device: &Device,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Request<Full<Bytes>>> {
    let mut req = Request::builder().method(method).uri(path);
    for (name, value) in device.sign(method, path, body)?.iter() {
        req = req.header(name, value);
    }
    req = req.header(hyper::header::HOST, addr.to_string());
    if !body.is_empty() {
        req = req.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    Ok(req.body(Full::new(Bytes::copy_from_slice(body)))?)
}

/// A check-in's assignment's rollout id, or None for "nothing new".
async fn checkin_assignment(conn: &mut Conn, req: Request<Full<Bytes>>) -> Result<Option<String>> {
    let (status, body) = load::exchange_full(conn, req).await?;
    ensure!(
        status == StatusCode::OK,
        "a check-in answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let answer: Value = serde_json::from_slice(&body)?;
    Ok(answer["assignment"]["rollout_id"]
        .as_str()
        .map(String::from))
}

fn report_body(kind: &str, rollout: &str) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&json!({
        "event_id": rota_protocol::api::new_event_id().map_err(|e| anyhow::anyhow!("{e}"))?,
        "rollout_id": rollout,
        "kind": kind,
        "version": 2,
        "reason": "bench: the trial boot failed",
    }))?)
}

async fn halt_latency(admin: &Admin, keys: &Keys, addr: SocketAddr, args: &Args) -> Result<Halt> {
    const MIN_SAMPLE: u32 = 5;
    const THRESHOLD: f64 = 0.2;
    const FRESH: usize = 10;
    let stages = json!([{"percent": 100}]);
    let (release, _) = admin
        .publish(keys, HALT_CLASS, 2, b"bench: the halting firmware")
        .await?;
    // Every report is `reverted`: after k of them, k of k completed devices failed, which
    // crosses the threshold once k reaches the minimum sample.
    let to_cross = (1..=args.halt_fleet)
        .find(|&k| {
            let (failed, completed) = (k as f64, k as f64);
            k >= MIN_SAMPLE as usize && failed / completed > THRESHOLD
        })
        .context("the fleet is too small to cross the threshold")?;
    let path = checkin_path();
    let mut reports_conn: Conn = load::connect(addr).await?;
    let mut checkin_conn: Conn = load::connect(addr).await?;
    let mut reps = Vec::with_capacity(args.halt_reps);
    for rep in 0..args.halt_reps {
        let tag = format!("rep-{rep}");
        let fleet: Vec<Device> = (0..args.halt_fleet)
            .map(|i| Device::new(keys, &format!("halt-{rep}-d{i}"), HALT_CLASS, &[&tag]))
            .collect::<Result<_>>()?;
        let fresh: Vec<Device> = (0..FRESH)
            .map(|i| Device::new(keys, &format!("halt-{rep}-f{i}"), HALT_CLASS, &[&tag]))
            .collect::<Result<_>>()?;
        admin.register_all(&fleet).await?;
        admin.register_all(&fresh).await?;
        // Activate every device before the rollout exists (its first request does that).
        for d in fleet.iter().chain(&fresh) {
            let (status, body) = load::exchange_full(
                &mut checkin_conn,
                signed_request(addr, d, "GET", "/api/v1/device/self", b"")?,
            )
            .await?;
            ensure!(
                status == StatusCode::OK,
                "{}: {status} {}",
                d.id,
                String::from_utf8_lossy(&body)
            );
        }
        let rollout = admin
            .rollout(rollout_body(
                &release,
                HALT_CLASS,
                &[&tag],
                stages.clone(),
                THRESHOLD,
                MIN_SAMPLE,
            ))
            .await?;
        for d in &fleet {
            let got = checkin_assignment(
                &mut checkin_conn,
                signed_request(addr, d, "GET", &path, b"")?,
            )
            .await?;
            ensure!(
                got.as_deref() == Some(&rollout),
                "{} was not assigned the rollout: {got:?}",
                d.id
            );
        }
        for d in &fleet[..to_cross - 1] {
            let (status, body) = load::exchange_full(
                &mut reports_conn,
                signed_request(
                    addr,
                    d,
                    "POST",
                    rota_protocol::api::REPORT_PATH,
                    &report_body("reverted", &rollout)?,
                )?,
            )
            .await?;
            ensure!(
                status == StatusCode::OK,
                "report: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        let status = admin.rollout_status(&rollout).await?;
        ensure!(
            status["state"] == "active",
            "the rollout halted before the crossing report: {status}"
        );
        // Control: right before the crossing report, a fresh device is assigned.
        let control = signed_request(addr, &fresh[0], "GET", &path, b"")?;
        let control_sent = Instant::now();
        let got = checkin_assignment(&mut checkin_conn, control).await?;
        let control_checkin_ms = control_sent.elapsed().as_secs_f64() * 1e3;
        ensure!(
            got.as_deref() == Some(&rollout),
            "a fresh device was not assigned before the crossing report: {got:?}"
        );
        // Everything signed in advance: the clock runs from here on.
        let crossing = signed_request(
            addr,
            &fleet[to_cross - 1],
            "POST",
            rota_protocol::api::REPORT_PATH,
            &report_body("reverted", &rollout)?,
        )?;
        let mut probes = fresh[1..]
            .iter()
            .map(|d| signed_request(addr, d, "GET", &path, b""))
            .collect::<Result<Vec<_>>>()?
            .into_iter();
        let sent = Instant::now();
        let (status, body) = load::exchange_full(&mut reports_conn, crossing).await?;
        let acked = Instant::now();
        ensure!(
            status == StatusCode::OK
                && serde_json::from_slice::<Value>(&body)?["duplicate"] == false,
            "the crossing report: {status} {}",
            String::from_utf8_lossy(&body)
        );
        let mut assigned_after = 0;
        let (probe_sent, answered) = loop {
            let Some(probe) = probes.next() else {
                bail!(
                    "{} fresh devices checked in after the crossing report and every one was assigned",
                    FRESH - 1
                );
            };
            let probe_sent = Instant::now();
            match checkin_assignment(&mut checkin_conn, probe).await? {
                None => break (probe_sent, Instant::now()),
                Some(_) => assigned_after += 1,
            }
        };
        let status = admin.rollout_status(&rollout).await?;
        ensure!(
            status["state"] == "halted",
            "the rollout is not halted after the crossing report: {status}"
        );
        reps.push(HaltRep {
            report_ack_ms: (acked - sent).as_secs_f64() * 1e3,
            halt_latency_ms: (answered - acked).as_secs_f64() * 1e3,
            checkin_sent_after_ack_us: (probe_sent - acked).as_secs_f64() * 1e6,
            control_checkin_ms,
            assigned_after_ack: assigned_after,
            halted_reason: status["halted_reason"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        });
        admin
            .json(
                reqwest::Method::POST,
                &format!("/api/v1/rollouts/{rollout}/abort"),
                None,
            )
            .await?;
    }
    let stat = |f: fn(&HaltRep) -> f64| {
        let mut v: Vec<f64> = reps.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        (median(&v), v.last().copied().unwrap_or(f64::NAN))
    };
    let (ack_median, ack_max) = stat(|r| r.report_ack_ms);
    let (halt_median, halt_max) = stat(|r| r.halt_latency_ms);
    let (sent_after_median, _) = stat(|r| r.checkin_sent_after_ack_us);
    let (control_median, _) = stat(|r| r.control_checkin_ms);
    Ok(Halt {
        stages,
        min_sample: MIN_SAMPLE,
        failure_threshold: THRESHOLD,
        assigned_devices: args.halt_fleet,
        reports_to_cross: to_cross,
        repetitions: reps.len(),
        report_ack_ms_median: ack_median,
        report_ack_ms_max: ack_max,
        halt_latency_ms_median: halt_median,
        halt_latency_ms_max: halt_max,
        checkin_sent_after_ack_us_median: sent_after_median,
        control_checkin_ms_median: control_median,
        assigned_after_ack_total: reps.iter().map(|r| r.assigned_after_ack).sum(),
        reps,
    })
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_report(r: &Report, args: &Args) {
    let m = &r.machine;
    println!("rota-server bench (git {}): {}", m.rota_git, r.command);
    println!(
        "machine: {} CPUs, {}, Linux {}; {}; load tool: {} tokio threads, {} connections, HTTP/1.1 keep-alive over loopback",
        m.nproc, m.cpu_model, m.kernel, m.nginx, m.client_threads, r.connections
    );
    println!(
        "the load tool, rota-server and nginx share these {} CPUs; other processes used {:.2} cores in the second before the bench (1-min load average {:.2} at start, {:.2} at end)",
        m.nproc, m.busy_cores_before, m.loadavg_start, m.loadavg_end
    );
    let others = r
        .load
        .iter()
        .filter_map(|row| row.result.cpu_cores.last().map(|(_, c)| *c))
        .fold(m.busy_cores_before, f64::max);
    if others > 0.2 {
        println!(
            "WARNING: other processes used up to {others:.2} cores while the bench ran: they took CPU from the servers, so the rates are low; the server CPU µs per request hold better",
        );
    }
    println!();
    println!(
        "Requests/s: {} s warm-up, then a {} s window; latency = send to last byte",
        r.warmup_s, r.duration_s
    );
    println!(
        "{:<42} {:>9} {:>8} {:>8} {:>8} {:>6} {:>11}  CPU cores used in the window",
        "", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "server µs/req"
    );
    for row in &r.load {
        let x = &row.result;
        let cpu = x
            .cpu_cores
            .iter()
            .map(|(label, cores)| format!("{label} {cores:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{:<42} {:>9} {:>8.3} {:>8.3} {:>8.2} {:>6} {:>11.1}  {}",
            row.name,
            thousands(x.requests_per_s),
            x.p50_us / 1000.0,
            x.p99_us / 1000.0,
            x.max_us / 1000.0,
            x.errors + x.unexpected,
            row.server_cpu_us_per_request,
            cpu
        );
    }
    println!(
        "check-ins/s as a fraction of nginx static-file GETs/s: signed {:.2}, on sessions {:.2}",
        r.checkin_vs_nginx, r.session_checkin_vs_nginx
    );
    println!(
        "session check-ins: each device opened one session with a signed request; each request MAC'd with a fresh nonce ({}; {:.1} µs of CPU per MAC, pool of {})",
        r.session_mac.mode,
        r.session_mac.microseconds_per_request,
        thousands(r.session_mac.pool as f64)
    );
    println!(
        "check-ins: {} devices round-robin, each request signed with a fresh nonce ({}; {:.1} µs of CPU per signature, pool of {})",
        r.devices,
        r.signing.mode,
        r.signing.microseconds_per_request,
        thousands(r.signing.pool as f64)
    );
    println!();
    println!(
        "Download of a {} MiB artifact ({} downloads per client, after one unmeasured each)",
        r.artifact_bytes / (1024 * 1024),
        args.downloads
    );
    println!(
        "{:<30} {:>7} {:>9} {:>9} {:>10} {:>9} {:>13}",
        "", "clients", "downloads", "MiB/s", "median ms", "max ms", "server cores"
    );
    for row in &r.downloads {
        let x = &row.result;
        println!(
            "{:<30} {:>7} {:>9} {:>9.0} {:>10.1} {:>9.1} {:>13.2}",
            row.name, x.clients, x.downloads, x.mib_per_s, x.median_ms, x.max_ms, x.server_cores
        );
    }
    println!();
    let h = &r.halt;
    println!(
        "Halt latency: rollout stages {}, min_sample {}, failure_threshold {}, {} devices assigned, reports `reverted` one by one; {} repetitions",
        h.stages, h.min_sample, h.failure_threshold, h.assigned_devices, h.repetitions
    );
    println!(
        "  crossing report (the {}th) sent → acknowledged:            median {:.3} ms, max {:.3} ms",
        h.reports_to_cross, h.report_ack_ms_median, h.report_ack_ms_max
    );
    println!(
        "  acknowledged → first never-assigned device told nothing new: median {:.3} ms, max {:.3} ms",
        h.halt_latency_ms_median, h.halt_latency_ms_max
    );
    println!(
        "    (that check-in was sent a median {:.1} µs after the acknowledgement; an assigning check-in just before the crossing report took a median {:.3} ms)",
        h.checkin_sent_after_ack_us_median, h.control_checkin_ms_median
    );
    println!(
        "  fresh devices assigned after the acknowledgement: {} in {} repetitions (a fresh device was assigned just before each crossing report)",
        h.assigned_after_ack_total, h.repetitions
    );
}
