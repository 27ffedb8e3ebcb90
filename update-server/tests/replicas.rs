//! Two replicas on one PostgreSQL database and one artifact directory run one staged
//! rollout: they give every device the same answer, advance each stage once, halt for
//! both the moment one of them takes the report that crosses the failure threshold, serve
//! byte-identical TUF metadata, and re-sign the timestamp once when both try at once.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use rota_protocol::api::{Assignment, ReportKind, RolloutState, RolloutStatus, rollout_bucket};
use rota_repo::RoleName;
use rota_server::app::AppState;
use rota_server::config::Settings;
use serde_json::{Value, json};
use support::process::{random_below, random_bytes};
use support::server::{CLASS, Keys, TestDevice, TestServer};

const DEVICES: usize = 200;
const PERCENTS: [f64; 3] = [10.0, 50.0, 100.0];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgres_run_one_rollout_consistently() {
    let keys = Keys::new();
    let url = support::postgres_schema_url().await;
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let shared = tempfile::tempdir().unwrap();
    let artifacts = shared.path().display().to_string();
    let a = TestServer::start_in(&keys, dir_a.path(), Some(url.clone()), |s| {
        s.artifacts = Some(artifacts.clone())
    })
    .await;
    // The first replica made the admin token; the second finds tokens and makes none.
    std::fs::copy(
        dir_a.path().join("admin.token"),
        dir_b.path().join("admin.token"),
    )
    .unwrap();
    let b = TestServer::start_in(&keys, dir_b.path(), Some(url.clone()), |s| {
        s.artifacts = Some(artifacts.clone())
    })
    .await;
    let replicas = [&a, &b];
    let pick = || random_below(2) as usize;

    a.init_repo(&keys).await;
    let image2 = random_bytes(4096);
    let release2 = a.publish(&keys, CLASS, 2, &image2).await;
    let mut devices: Vec<TestDevice> = (0..DEVICES)
        .map(|i| TestDevice::new(&keys, &format!("dev-{i:03}"), CLASS, &[]))
        .collect();
    for device in &devices {
        replicas[pick()].register(device).await;
    }

    // --- One rollout in three stages, driven through both replicas. ---
    let rollout = a
        .admin(
            Method::POST,
            "/api/v1/rollouts",
            Some(rollout_body(&release2, &PERCENTS)),
        )
        .await;
    let rollout_id = rollout["id"].as_str().unwrap().to_string();
    // Each device's stage, as the rule "stage membership" puts it.
    let stage_of: Vec<usize> = devices
        .iter()
        .map(|d| {
            let bucket = rollout_bucket(&rollout_id, &d.id);
            PERCENTS.iter().position(|p| bucket * 100.0 < *p).unwrap()
        })
        .collect();
    let members: Vec<u64> = (0..PERCENTS.len())
        .map(|k| stage_of.iter().filter(|s| **s == k).count() as u64)
        .collect();
    assert!(
        members.iter().all(|m| *m >= 2),
        "every stage has devices: {members:?}"
    );

    let mut confirmed = [false; DEVICES];
    for k in 0..PERCENTS.len() {
        let previous = (k > 0).then(|| (RolloutState::Active, k as u32 - 1));
        wait_for_state(
            &a,
            &b,
            &rollout_id,
            (RolloutState::Active, k as u32),
            previous,
        )
        .await;
        // A replica learns a stage change made by the other within a tick (its view of
        // live rollouts): wait until each offers the new stage to one of its devices.
        let in_stage: Vec<usize> = (0..DEVICES).filter(|i| stage_of[*i] == k).collect();
        wait_until_offered(&a, &devices[in_stage[0]], &rollout_id).await;
        wait_until_offered(&b, &devices[in_stage[1]], &rollout_id).await;

        // Every device that has not updated asks both replicas at the same moment.
        let mut order: Vec<usize> = (0..DEVICES).filter(|i| !confirmed[*i]).collect();
        shuffle(&mut order);
        for i in order {
            let device = &devices[i];
            let first = pick();
            let (x, y) = tokio::join!(
                device.checkin(replicas[first], None),
                device.checkin(replicas[1 - first], None)
            );
            assert_eq!((x.0, y.0), (StatusCode::OK, StatusCode::OK));
            let (x, y) = (x.2.unwrap().assignment, y.2.unwrap().assignment);
            assert_eq!(
                x, y,
                "{} got different answers from the replicas",
                device.id
            );
            assert_eq!(
                x.is_some(),
                stage_of[i] <= k,
                "{} (stage {}) at stage {k}",
                device.id,
                stage_of[i]
            );
            if let Some(assignment) = x {
                check_assignment(&assignment, &rollout_id, &release2, 2);
            }
        }
        let (sa, sb) = statuses(&a, &b, &rollout_id).await;
        assert_eq!(sa, sb, "both replicas report the same rollout");
        let status: RolloutStatus = serde_json::from_value(sa).unwrap();
        for (j, counts) in status.counts.stages.iter().enumerate() {
            assert_eq!(counts.members, members[j], "stage {j} members: {status:?}");
            let expect_assigned = if j <= k { members[j] } else { 0 };
            let expect_confirmed = if j < k { members[j] } else { 0 };
            assert_eq!(counts.assigned, expect_assigned, "stage {j}: {status:?}");
            assert_eq!(counts.confirmed, expect_confirmed, "stage {j}: {status:?}");
            assert_eq!(counts.in_progress, expect_assigned - expect_confirmed);
            assert_eq!(counts.failed + counts.timed_out, 0);
        }

        // The stage's devices confirm, each through one replica; a retry through the
        // other is a duplicate.
        for i in (0..DEVICES).filter(|i| stage_of[*i] == k) {
            let report = TestDevice::event(ReportKind::Confirmed, 2, &rollout_id, None);
            let first = pick();
            let (status, ack) = devices[i].report(replicas[first], &report).await;
            assert_eq!(status, StatusCode::OK, "{ack}");
            assert_eq!(ack["duplicate"], false);
            let (status, ack) = devices[i].report(replicas[1 - first], &report).await;
            assert_eq!(status, StatusCode::OK, "{ack}");
            assert_eq!(ack["duplicate"], true, "the other replica knows the event");
            confirmed[i] = true;
            devices[i].version = 2;
        }
    }
    // The last stage's gate completes the rollout, once.
    wait_for_state(
        &a,
        &b,
        &rollout_id,
        (RolloutState::Completed, 2),
        Some((RolloutState::Active, 2)),
    )
    .await;
    let (sa, sb) = statuses(&a, &b, &rollout_id).await;
    assert_eq!(sa, sb);
    let status: RolloutStatus = serde_json::from_value(sa).unwrap();
    assert_eq!(status.counts.total.confirmed, DEVICES as u64);
    assert_eq!(status.counts.total.assigned, DEVICES as u64);
    for (j, counts) in status.counts.stages.iter().enumerate() {
        assert_eq!(
            (counts.assigned, counts.confirmed),
            (members[j], members[j]),
            "stage {j}"
        );
    }

    // --- A second release, published through the other replica, whose devices revert. ---
    let image3 = random_bytes(4096);
    let release3 = b.publish(&keys, CLASS, 3, &image3).await;
    let rollout = b
        .admin(
            Method::POST,
            "/api/v1/rollouts",
            Some(rollout_body(&release3, &[100.0])),
        )
        .await;
    let rollout3 = rollout["id"].as_str().unwrap().to_string();
    // B made the rollout; A learns of it within a tick.
    let early = &devices[..10];
    let assignment = wait_until_offered(&b, &early[0], &rollout3).await;
    check_assignment(&assignment, &rollout3, &release3, 3);
    wait_until_offered(&a, &early[1], &rollout3).await;
    // The artifact B stored is served by A from the shared store.
    let served = a
        .http
        .get(a.url(&format!(
            "/tuf/targets/{}.{}",
            assignment.sha256, assignment.target
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert!(served.bytes().await.unwrap()[..] == image3[..]);
    for device in &early[2..] {
        let first = pick();
        let (x, y) = tokio::join!(
            device.checkin(replicas[first], None),
            device.checkin(replicas[1 - first], None)
        );
        let (x, y) = (x.2.unwrap().assignment, y.2.unwrap().assignment);
        assert_eq!(x, y);
        check_assignment(&x.expect("assigned"), &rollout3, &release3, 3);
    }
    // Four confirm and one reverts: 1 of 5 completed failed, not more than 20 %.
    for (i, device) in early[..5].iter().enumerate() {
        let kind = if i < 4 {
            ReportKind::Confirmed
        } else {
            ReportKind::Reverted
        };
        let report = TestDevice::event(kind, 3, &rollout3, Some("trial boot failed"));
        let (status, ack) = device.report(replicas[pick()], &report).await;
        assert_eq!((status, &ack["duplicate"]), (StatusCode::OK, &json!(false)));
    }
    let (sa, sb) = statuses(&a, &b, &rollout3).await;
    assert_eq!(sa, sb);
    assert_eq!(sa["state"], "active", "{sa}");
    // The second revert crosses the threshold (2 of 6) at one replica…
    let x = pick();
    let report = TestDevice::event(ReportKind::Reverted, 3, &rollout3, Some("trial failed"));
    let (status, ack) = early[5].report(replicas[x], &report).await;
    assert_eq!((status, &ack["duplicate"]), (StatusCode::OK, &json!(false)));
    // …and from the moment that is acknowledged, the other replica assigns nothing: a
    // device that never checked in for this rollout gets no assignment, and the halt is
    // visible there within a second.
    let other = replicas[1 - x];
    let newcomer = &devices[DEVICES - 1];
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (status, _, body) = newcomer.checkin(other, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body.unwrap().assignment,
            None,
            "a replica assigned after the halting report was acknowledged by the other"
        );
        let seen = other
            .admin(Method::GET, &format!("/api/v1/rollouts/{rollout3}"), None)
            .await;
        if seen["state"] == "halted" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the halt is not visible at the other replica within 1 s: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (sa, sb) = statuses(&a, &b, &rollout3).await;
    assert_eq!(sa, sb);
    let halted: RolloutStatus = serde_json::from_value(sa).unwrap();
    assert_eq!(halted.state, RolloutState::Halted);
    assert!(halted.halted_reason.is_some());
    assert_eq!(halted.counts.total.assigned, early.len() as u64);
    assert_eq!(halted.counts.total.confirmed, 4);
    assert_eq!(halted.counts.total.failed, 2);
    for replica in replicas {
        let (_, _, body) = newcomer.checkin(replica, None).await;
        assert_eq!(body.unwrap().assignment, None);
    }

    // --- The TUF metadata both replicas serve is the same, byte for byte. ---
    let same_metadata = |label: &'static str| {
        let (a, b) = (&a, &b);
        async move {
            let timestamp = metadata(a, "timestamp.json").await;
            assert_eq!(timestamp, metadata(b, "timestamp.json").await, "{label}");
            let ts: Value = serde_json::from_slice(&timestamp).unwrap();
            let n = ts["signed"]["meta"]["snapshot.json"]["version"]
                .as_u64()
                .unwrap();
            let snapshot_name = format!("{n}.snapshot.json");
            let snapshot = metadata(a, &snapshot_name).await;
            assert_eq!(snapshot, metadata(b, &snapshot_name).await, "{label}");
            let snap: Value = serde_json::from_slice(&snapshot).unwrap();
            let t = snap["signed"]["meta"]["targets.json"]["version"]
                .as_u64()
                .unwrap();
            for name in [format!("{t}.targets.json"), "1.root.json".to_string()] {
                assert_eq!(
                    metadata(a, &name).await,
                    metadata(b, &name).await,
                    "{label}"
                );
            }
            ts["signed"]["version"].as_u64().unwrap()
        }
    };
    let served_version = same_metadata("after publishing").await;

    // --- Both replicas re-sign the expiring timestamp at once: one new version. ---
    let settings = |dir: &std::path::Path| Settings {
        data_dir: Some(dir.to_path_buf()),
        database_url: Some(url.clone()),
        artifacts: Some(artifacts.clone()),
        timestamp_lifetime: Some(60),
        ..Default::default()
    };
    let state_a = AppState::open(settings(dir_a.path()).resolve(None).unwrap())
        .await
        .unwrap();
    let state_b = AppState::open(settings(dir_b.path()).resolve(None).unwrap())
        .await
        .unwrap();
    let latest = || async {
        state_a
            .repo
            .latest(RoleName::Timestamp)
            .await
            .unwrap()
            .unwrap()
            .version
    };
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM tuf_metadata WHERE role = 'timestamp'")
            .fetch_one(&state_a.db.read)
            .await
            .unwrap()
    };
    let start_version = latest().await;
    assert_eq!(start_version as u64, served_version);
    let start_count = count().await;
    for round in 1..=5i64 {
        // Days ahead: past the timestamp's expiry, well before the snapshot's half-life.
        let now = rota_server::db::now_ms() + round * 2 * 86_400_000;
        let (ra, rb) = tokio::join!(
            state_a.repo.refresh_expiring(now),
            state_b.repo.refresh_expiring(now)
        );
        ra.unwrap_or_else(|e| panic!("replica A re-signing in round {round}: {e:#}"));
        rb.unwrap_or_else(|e| panic!("replica B re-signing in round {round}: {e:#}"));
        assert_eq!(latest().await, start_version + round, "round {round}");
        assert_eq!(count().await, start_count + round, "round {round}");
    }
    let served_version = same_metadata("after re-signing").await;
    assert_eq!(served_version, (start_version + 5) as u64);

    a.stop().await;
    b.stop().await;
}

fn rollout_body(release: &str, percents: &[f64]) -> Value {
    let stages: Vec<Value> = percents.iter().map(|p| json!({"percent": p})).collect();
    json!({
        "release_id": release,
        "selector": {"class_id": CLASS, "tags": [], "versions": []},
        "stages": stages,
        "success_gate": 1.0,
        "failure_threshold": 0.2,
        "min_sample": 5,
        "device_timeout_s": 86400,
        "soak_s": 0,
        "max_retries": 0
    })
}

fn check_assignment(assignment: &Assignment, rollout: &str, release: &str, version: u64) {
    assert_eq!(assignment.rollout_id, rollout);
    assert_eq!(assignment.release_id, release);
    assert_eq!(assignment.version, version);
}

/// The rollout's status from each replica.
async fn statuses(a: &TestServer, b: &TestServer, rollout: &str) -> (Value, Value) {
    let path = format!("/api/v1/rollouts/{rollout}");
    tokio::join!(
        a.admin(Method::GET, &path, None),
        b.admin(Method::GET, &path, None)
    )
}

/// Waits (up to 30 s) until both replicas report `target` (state, current stage); until
/// then they may only report `previous`: a stage is never skipped or repeated. Then checks
/// that it stays there for a few ticks.
async fn wait_for_state(
    a: &TestServer,
    b: &TestServer,
    rollout: &str,
    target: (RolloutState, u32),
    previous: Option<(RolloutState, u32)>,
) {
    let allowed = [Some(target), previous];
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = |v: &Value| {
        let s: RolloutStatus = serde_json::from_value(v.clone()).unwrap();
        (s.state, s.current_stage)
    };
    loop {
        let (sa, sb) = statuses(a, b, rollout).await;
        let (x, y) = (seen(&sa), seen(&sb));
        for s in [x, y] {
            assert!(
                allowed.contains(&Some(s)),
                "rollout went to {s:?} while expected {target:?} after {previous:?}"
            );
        }
        if x == target && y == target {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout did not reach {target:?}: A {sa}, B {sb}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both replicas tick every 50 ms: give them several chances to advance it again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sa, sb) = statuses(a, b, rollout).await;
    assert_eq!((seen(&sa), seen(&sb)), (target, target), "it stays there");
}

/// Checks `device` in at `server` until it is offered an assignment of `rollout` (up to
/// 10 s), and returns it.
async fn wait_until_offered(server: &TestServer, device: &TestDevice, rollout: &str) -> Assignment {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = device.checkin(server, None).await;
        assert_eq!(status, StatusCode::OK);
        if let Some(assignment) = body.unwrap().assignment {
            assert_eq!(assignment.rollout_id, rollout);
            return assignment;
        }
        assert!(
            Instant::now() < deadline,
            "{} was not offered {rollout} at {} within 10 s",
            device.id,
            server.base
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metadata(server: &TestServer, name: &str) -> Vec<u8> {
    let resp = server
        .http
        .get(server.url(&format!("/tuf/metadata/{name}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{name} at {}", server.base);
    resp.bytes().await.unwrap().to_vec()
}

fn shuffle(items: &mut [usize]) {
    for i in (1..items.len()).rev() {
        let j = random_below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}
