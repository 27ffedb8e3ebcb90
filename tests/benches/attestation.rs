//! What attestation costs the server per report (`scripts/bench-attestation.sh`):
//!
//! 1. `rota_protocol::attestation::verify` alone, on one core: hardware-rooted evidence
//!    (two Ed25519 verifications, the Alias certificate and the token) and
//!    software-measured evidence (one).
//! 2. Through a real rota-server on its embedded defaults (SQLite), one device, requests
//!    one after another over loopback: `POST /api/v1/device/attestation` (the signed
//!    request, verification, the nonce used in the database, the release lookup, the
//!    verdict written), beside a plain signed device request (`GET /api/v1/device/self`)
//!    as the baseline every device request pays. The challenge is fetched and the
//!    evidence made outside the timed span.
//!
//! Prints medians and means in microseconds.

use std::time::{Duration, Instant};

use reqwest::Method;
use rota_agent::attest;
use rota_agent::device::Device;
use rota_agent::device::sim::sim_bootloader;
use rota_agent::fleet::new_uds;
use rota_agent::server::{AnswerLimits, ServerClient};
use rota_boot::Slot;
use rota_boot::dice::{Measurement, Mode, Secret, derive};
use rota_protocol::SoftwareKey;
use rota_protocol::api::AttestationState;
use rota_protocol::attestation::{Statement, hardware_evidence, software_evidence, verify};
use rota_system_tests::{CLASS, World, class_text};

fn stats(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<58} median {:>8.1} µs  mean {:>8.1} µs  ({} runs)",
        median.as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6,
        samples.len()
    );
}

fn time(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect()
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2000);

    // 1. Verification alone.
    let measurement = Measurement {
        image_digest: [1; 32],
        security_version: 1,
        sequence: 1,
        slot: Slot::A,
        signer: [9; 32],
        bootloader: sim_bootloader(),
    };
    let handoff = derive(Secret::new([3; 32]), &measurement, Mode::Normal).unwrap();
    let alias = SoftwareKey::from_ed25519_seed(*handoff.alias_seed.expose());
    let identity = SoftwareKey::from_ed25519_seed([4; 32]);
    let statement = Statement {
        nonce: &[5; 32],
        boot_count: 1,
    };
    let hardware = hardware_evidence(
        &alias,
        handoff.certificate(),
        &handoff.device_id,
        &statement,
    )
    .unwrap();
    let software = software_evidence(&identity, &measurement, &statement).unwrap();
    let identity_public = rota_protocol::Sign::public_key(&identity);
    println!(
        "evidence: hardware-rooted {} bytes, software-measured {} bytes",
        hardware.len(),
        software.len()
    );
    stats(
        "verify, hardware-rooted (chain + token)",
        time(runs, || {
            verify(&hardware, &identity_public, Some(&handoff.device_id)).unwrap();
        }),
    );
    stats(
        "verify, software-measured (token)",
        time(runs, || {
            verify(&software, &identity_public, None).unwrap();
        }),
    );

    // 2. Through the server.
    // The per-device report quota would otherwise refuse a loop of appraisals.
    let world = World::start_with(|s| {
        s.reports_per_minute = Some(1_000_000);
        s.report_burst = Some(1_000_000);
    });
    world.publish(&world.release("1.0.0", 1, 0));
    world.admin_call(
        Method::PUT,
        &format!("/api/v1/classes/{}/attestation", class_text(CLASS)),
        Some(serde_json::json!({
            "policy": "required",
            "bootloaders": [hex::encode(sim_bootloader())],
        })),
    );
    let uds = new_uds().unwrap();
    let (key, certificate) = world.dice_identity("bench-1", &uds);
    let dir = world.state_root("bench").join("bench-1");
    let device = world.manufacture("bench-1", &key, uds, &world.factory(), dir);
    let client = ServerClient::new(world.http.clone(), &world.base, AnswerLimits::default());
    client.enroll(device.identity(), &certificate).unwrap();
    let server_runs = runs.min(1000);
    // Warm up the connection and the caches.
    for _ in 0..20 {
        let nonce = client.attestation_nonce(device.identity()).unwrap();
        let evidence = attest::evidence(&device, &nonce).unwrap();
        client.attest(device.identity(), evidence).unwrap();
    }
    let whoami = world.url("/api/v1/device/self");
    let signed_get = || {
        let headers = rota_protocol::sign_request(
            &device.identity().key,
            "bench-1",
            "GET",
            "/api/v1/device/self",
            b"",
            rota_agent::server::unix_ms(),
            rota_protocol::Nonce::random().unwrap(),
        )
        .unwrap();
        let mut request = world.http.get(&whoami);
        for (name, value) in headers.iter() {
            request = request.header(name, value);
        }
        request
    };
    stats(
        "server: a signed device request (GET /api/v1/device/self)",
        (0..server_runs)
            .map(|_| {
                let request = signed_get();
                let start = Instant::now();
                assert!(request.send().unwrap().status().is_success());
                start.elapsed()
            })
            .collect(),
    );
    stats(
        "server: attestation appraised (POST /api/v1/device/attestation)",
        (0..server_runs)
            .map(|_| {
                let nonce = client.attestation_nonce(device.identity()).unwrap();
                let evidence = attest::evidence(&device, &nonce).unwrap();
                let start = Instant::now();
                let result = client.attest(device.identity(), evidence).unwrap();
                let spent = start.elapsed();
                assert_eq!(result.attestation, AttestationState::Ok);
                spent
            })
            .collect(),
    );
    stats(
        "server: a challenge (POST /api/v1/device/attestation/nonce)",
        (0..server_runs)
            .map(|_| {
                let start = Instant::now();
                let nonce = client.attestation_nonce(device.identity()).unwrap();
                let spent = start.elapsed();
                // Use it, so the device stays under its limit of unused challenges.
                let evidence = attest::evidence(&device, &nonce).unwrap();
                client.attest(device.identity(), evidence).unwrap();
                spent
            })
            .collect(),
    );
}
