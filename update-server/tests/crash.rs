//! Crash safety: the real `rota-server` binary is killed with SIGKILL while device reports,
//! device registrations, token creations and an artifact upload are in flight, then
//! restarted on the same data directory and database. Everything the server acknowledged
//! (a 2xx) must still be there; an upload the kill cut must not be servable.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use rota_protocol::api::{DeviceRegister, Report, ReportKind, RolloutStatus};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::process::{
    ServerProcess, device_checkin, device_report, management_call, random_below, random_bytes,
};
use support::server::{CLASS, Keys, TestDevice, TestServer, put_created};
use tokio::io::AsyncWriteExt;

/// Devices in the rollout, each sending its reports from its own task.
const DEVICES: usize = 24;
/// The upload the kill cuts: large enough that part of it is on disk by then (the
/// artifact store buffers 10 MiB in memory before it writes).
const BIG: usize = 16 * 1024 * 1024;
const SENT_BEFORE_KILL: usize = 12 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_across_kill_9_sqlite() {
    nothing_acknowledged_is_lost_across_kill_9(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_across_kill_9_postgres() {
    let url = support::postgres_schema_url().await;
    nothing_acknowledged_is_lost_across_kill_9(Some(url)).await;
}

/// What became of one request: answered (with its status and body), or no answer at all
/// (the kill cut it, or it was sent after the kill) — then it may or may not have been
/// stored, and the test only requires consistency.
#[derive(Debug)]
enum Outcome {
    Answered(StatusCode, Value),
    NoAnswer,
}

impl Outcome {
    fn acknowledged(&self) -> bool {
        matches!(self, Outcome::Answered(status, _) if status.is_success())
    }
}

/// Counters the workers share with the test.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    in_flight: AtomicUsize,
    /// Acknowledged reports, registrations and token creations.
    reports: AtomicUsize,
    devices: AtomicUsize,
    tokens: AtomicUsize,
}

impl Load {
    /// Runs `request` counted as in flight, and counts it in `acknowledged` if it was.
    async fn track<F>(&self, acknowledged: &AtomicUsize, request: F) -> Outcome
    where
        F: Future<Output = reqwest::Result<(StatusCode, Value)>>,
    {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let outcome = match request.await {
            Ok((status, body)) => Outcome::Answered(status, body),
            Err(_) => Outcome::NoAnswer,
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if outcome.acknowledged() {
            acknowledged.fetch_add(1, Ordering::SeqCst);
        }
        outcome
    }

    /// Sends `request` for each of `items` in turn, tracked and counted in `acknowledged`,
    /// until the test stops the load or a request goes unanswered (the kill came): the
    /// items sent, each with what became of it.
    async fn send_each<T, F>(
        &self,
        acknowledged: &AtomicUsize,
        items: impl IntoIterator<Item = T>,
        request: impl Fn(&T) -> F,
    ) -> Vec<(T, Outcome)>
    where
        F: Future<Output = reqwest::Result<(StatusCode, Value)>>,
    {
        let mut sent = Vec::new();
        for item in items {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let outcome = self.track(acknowledged, request(&item)).await;
            let answered = matches!(outcome, Outcome::Answered(..));
            sent.push((item, outcome));
            if !answered {
                break;
            }
        }
        sent
    }
}

async fn nothing_acknowledged_is_lost_across_kill_9(database_url: Option<String>) {
    let keys = Keys::new();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();

    // Set up with an in-process server on the same data directory and database: the
    // repository, a release, the devices, and a rollout that has assigned every device.
    let setup = TestServer::start_in(&keys, dir, database_url.clone(), |_| {}).await;
    setup.init_repo(&keys).await;
    let release = setup.publish(&keys, CLASS, 2, b"firmware two").await;
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        let device = TestDevice::new(&keys, &format!("dev-{i:02}"), CLASS, &[]);
        setup.register(&device).await;
        devices.push(device);
    }
    let rollout = setup
        .admin(
            Method::POST,
            "/api/v1/rollouts",
            Some(json!({
                "release_id": release,
                "selector": {"class_id": CLASS, "tags": [], "versions": []},
                "stages": [{"percent": 100.0}],
                "success_gate": 1.0,
                "failure_threshold": 0.5,
                "min_sample": 1000,
                "device_timeout_s": 86400,
                "soak_s": 0,
                "max_retries": 0
            })),
        )
        .await;
    let rollout_id = rollout["id"].as_str().unwrap().to_string();
    for device in &devices {
        let (status, _, body) = device.checkin(&setup, None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.unwrap().assignment.is_some(), "{} assigned", device.id);
    }
    setup.stop().await;

    // The real binary on the same data directory and database.
    let url = database_url.as_deref();
    let mut server = ServerProcess::spawn(dir, url, &["--tick", "50"]).await;
    let admin = server.admin.clone();
    let started_ms = rota_server::db::now_ms();

    // An artifact upload that the kill will cut: headers and the first 12 of 16 MiB, then
    // the connection stays open, waiting, until the process dies.
    let big = random_bytes(BIG);
    let big_sha = hex::encode(Sha256::digest(&big));
    let mut upload = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "PUT /api/v1/artifacts/{big_sha} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {admin}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {BIG}\r\n\r\n",
        server.base.trim_start_matches("http://"),
    );
    let partial = big[..SENT_BEFORE_KILL].to_vec();
    let cut_upload = tokio::spawn(async move {
        upload.write_all(head.as_bytes()).await.unwrap();
        // Fails only if the server is already gone.
        let _ = upload.write_all(&partial).await;
        let _ = upload.flush().await;
        upload
    });
    // The upload is in progress once its staging object is on disk.
    let uploads = dir.join("artifacts").join("uploads");
    poll(
        Duration::from_secs(60),
        "the upload's staging object",
        || std::fs::read_dir(&uploads).is_ok_and(|mut d| d.next().is_some()),
    )
    .await;
    let upload_conn = cut_upload.await.unwrap();

    // The load: every device reports from its own task; management clients register new
    // devices and create tokens.
    let load = Arc::new(Load::default());
    let mut reporters = Vec::new();
    for device in devices.clone() {
        let load = load.clone();
        let http = server.http.clone();
        let base = server.base.clone();
        let rollout_id = rollout_id.clone();
        reporters.push(tokio::spawn(async move {
            // The update's progress and confirmation, then a stream of reports that belong
            // to no rollout (stored, counted nowhere).
            let progress = [
                ReportKind::Downloading,
                ReportKind::Downloaded,
                ReportKind::Installed,
                ReportKind::Trial,
                ReportKind::Confirmed,
            ]
            .map(|kind| TestDevice::event(kind, 2, &rollout_id, None));
            let unrelated = std::iter::repeat_with(|| {
                Report::new(ReportKind::Confirmed, 2, None, None).unwrap()
            });
            let (http, base, sender) = (&http, &base, &device);
            let sent = load
                .send_each(
                    &load.reports,
                    progress.into_iter().chain(unrelated),
                    |report| {
                        let report = report.clone();
                        async move { device_report(http, base, sender, &report).await }
                    },
                )
                .await;
            (device, sent)
        }));
    }
    let mut registrars = Vec::new();
    for worker in 0..2 {
        let load = load.clone();
        let http = server.http.clone();
        let base = server.base.clone();
        let admin = admin.clone();
        let newcomers: Vec<TestDevice> = (0..300)
            .map(|i| TestDevice::new(&keys, &format!("new-{worker}-{i:03}"), CLASS, &[]))
            .collect();
        registrars.push(tokio::spawn(async move {
            load.send_each(&load.devices, newcomers, |device| {
                let body = serde_json::to_value(DeviceRegister {
                    certificate: device.certificate.clone(),
                })
                .unwrap();
                management_call(
                    &http,
                    &base,
                    &admin,
                    Method::POST,
                    "/api/v1/devices",
                    Some(body),
                )
            })
            .await
        }));
    }
    let mut token_makers = Vec::new();
    for worker in 0..2 {
        let load = load.clone();
        let http = server.http.clone();
        let base = server.base.clone();
        let admin = admin.clone();
        let bodies = (0..300)
            .map(move |i| json!({"name": format!("viewer-{worker}-{i}"), "role": "viewer"}));
        token_makers.push(tokio::spawn(async move {
            load.send_each(&load.tokens, bodies, |body| {
                management_call(
                    &http,
                    &base,
                    &admin,
                    Method::POST,
                    "/api/v1/tokens",
                    Some(body.clone()),
                )
            })
            .await
        }));
    }

    // Kill at a random moment once requests of every kind have been acknowledged, with
    // others in flight.
    poll(
        Duration::from_secs(120),
        "acknowledged requests of every kind",
        || {
            load.reports.load(Ordering::SeqCst) >= 40
                && load.devices.load(Ordering::SeqCst) >= 5
                && load.tokens.load(Ordering::SeqCst) >= 5
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(random_below(400))).await;
    let in_flight = load.in_flight.load(Ordering::SeqCst);
    server.kill_9();
    load.stop.store(true, Ordering::SeqCst);

    assert!(
        in_flight > 0,
        "the kill must cut requests in flight (besides the upload)"
    );

    let mut reports = Vec::new();
    for task in reporters {
        reports.push(task.await.unwrap());
    }
    let mut registrations = Vec::new();
    for task in registrars {
        registrations.extend(task.await.unwrap());
    }
    let mut tokens = Vec::new();
    for task in token_makers {
        tokens.extend(task.await.unwrap());
    }
    drop(upload_conn);
    // Every answer the server gave before it died was a success: the load is all valid.
    for (_, outcome) in reports.iter().flat_map(|(_, sent)| sent) {
        if let Outcome::Answered(status, body) = outcome {
            assert!(status.is_success(), "a report got {status} {body}");
        }
    }
    let management = registrations.iter().map(|(_, o)| o);
    for outcome in management.chain(tokens.iter().map(|(_, o)| o)) {
        if let Outcome::Answered(status, body) = outcome {
            assert!(
                status.is_success(),
                "a management request got {status} {body}"
            );
        }
    }

    // Restart on the same data directory and database.
    let server = ServerProcess::spawn(dir, url, &["--tick", "50"]).await;
    assert!(server.healthy().await, "/healthz after the restart");

    // Reports: the counts before any retry are exactly the confirmations that were
    // stored, and every acknowledged report is stored (a resend is a duplicate).
    let before: RolloutStatus = serde_json::from_value(
        server
            .admin(Method::GET, &format!("/api/v1/rollouts/{rollout_id}"), None)
            .await,
    )
    .unwrap();
    let mut acknowledged_reports = 0;
    let mut stored_confirmations = 0;
    let mut sent_confirmations = 0;
    for (device, sent) in &reports {
        for (report, outcome) in sent {
            let (status, ack) = device_report(&server.http, &server.base, device, report)
                .await
                .unwrap();
            assert_eq!(status, StatusCode::OK, "resending {report:?}: {ack}");
            if outcome.acknowledged() {
                acknowledged_reports += 1;
                assert_eq!(
                    ack["duplicate"], true,
                    "{} acknowledged {report:?} before the kill, but it was lost",
                    device.id
                );
            }
            if report.kind == ReportKind::Confirmed && report.rollout_id.is_some() {
                sent_confirmations += 1;
                if ack["duplicate"] == true {
                    stored_confirmations += 1;
                }
            }
        }
    }
    assert_eq!(
        before.counts.total.confirmed, stored_confirmations,
        "the rollout counts every stored confirmation, and nothing else: {before:?}"
    );
    let after: RolloutStatus = serde_json::from_value(
        server
            .admin(Method::GET, &format!("/api/v1/rollouts/{rollout_id}"), None)
            .await,
    )
    .unwrap();
    assert_eq!(after.counts.total.confirmed, sent_confirmations);
    assert_eq!(after.counts.total.assigned, DEVICES as u64);

    // Devices: every acknowledged registration exists; the new devices can take part.
    let mut acknowledged_devices = 0;
    for (device, outcome) in &registrations {
        let (status, info) = server
            .call(
                &server.admin,
                Method::GET,
                &format!("/api/v1/devices/{}", device.id),
                None,
            )
            .await
            .unwrap();
        if outcome.acknowledged() {
            acknowledged_devices += 1;
            assert_eq!(
                status,
                StatusCode::OK,
                "device {} was acknowledged before the kill, but it was lost",
                device.id
            );
            assert_eq!(info["state"], "provisioned");
        } else {
            assert!(
                status == StatusCode::OK || status == StatusCode::NOT_FOUND,
                "{status} {info}"
            );
        }
    }
    let (newcomer, _) = registrations
        .iter()
        .find(|(_, o)| o.acknowledged())
        .expect("some registration was acknowledged");
    let (status, body) = device_checkin(&server.http, &server.base, newcomer).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.unwrap().assignment.is_some(),
        "the rollout still assigns after the restart"
    );

    // Tokens: every acknowledged token exists, works, and its creation is audited.
    let listed = server.admin(Method::GET, "/api/v1/tokens", None).await;
    let audit = server
        .admin(
            Method::GET,
            &format!("/api/v1/audit?since={}&limit=1000", started_ms / 1000),
            None,
        )
        .await;
    let audit = audit.as_array().unwrap();
    assert!(audit.len() < 1000, "the audit query must see every record");
    let mut acknowledged_tokens = 0;
    for (_, outcome) in &tokens {
        let Outcome::Answered(status, created) = outcome else {
            continue;
        };
        assert!(status.is_success());
        acknowledged_tokens += 1;
        let id = created["id"].as_str().unwrap();
        let token = created["token"].as_str().unwrap();
        assert!(
            listed.as_array().unwrap().iter().any(|t| t["id"] == id),
            "token {id} was acknowledged before the kill, but it was lost"
        );
        let (status, _) = server
            .call(token, Method::GET, "/api/v1/releases", None)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "token {id} works after the restart");
        assert!(
            audit.iter().any(|e| e["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with(&format!("token {id} ")))),
            "the creation of token {id} is audited"
        );
    }

    // The cut upload left nothing servable, and uploading it again works.
    let target = format!("/tuf/targets/{big_sha}.bin");
    let resp = server.http.get(server.url(&target)).send().await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "a cut upload is served"
    );
    assert!(!dir.join("artifacts/targets").join(&big_sha).exists());
    put_created(
        &server.http,
        server.url(&format!("/api/v1/artifacts/{big_sha}")),
        &server.admin,
        big.clone(),
    )
    .await;
    // Stored whole (it is served once signed targets list it).
    let stored = std::fs::read(dir.join("artifacts/targets").join(&big_sha)).unwrap();
    assert!(stored == big, "the re-uploaded artifact is stored whole");

    eprintln!(
        "killed with {in_flight} requests in flight: {acknowledged_reports} reports ({} confirmations stored at the kill, \
         {sent_confirmations} sent), {acknowledged_devices} registrations, \
         {acknowledged_tokens} tokens acknowledged; all kept",
        before.counts.total.confirmed
    );
}

/// Waits until `done` holds, checking every 20 ms, failing after `limit`.
async fn poll(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
