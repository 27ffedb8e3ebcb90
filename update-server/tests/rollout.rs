//! The staged-rollout engine against both databases: stage membership, gates and soak,
//! the failure threshold and its minimum sample, timeouts, retries, idempotent reports,
//! operator state changes, dynamic membership, and replicas acting at the same time.
//!
//! Every test passes explicit times and never sleeps.

mod support;

use std::time::Duration;

use futures::future::join_all;
use rota_protocol::api::{
    Assignment, Report, ReportAck, ReportKind, RolloutCreate, RolloutState, RolloutStatus,
    Selector, Stage, new_event_id, rollout_bucket,
};
use rota_server::db::{Backend, Db};
use rota_server::rollout::{DeviceView, Engine, Proof, RolloutError};
use support::TestDb;
use support::server::{Keys, TestDevice, TestServer};

/// Generates `NAME::sqlite` and `NAME::postgres` tests from `async fn NAME(Backend)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(rota_server::db::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(rota_server::db::Backend::Postgres).await;
            }
        }
    )*};
}

on_both_backends!(
    percent_stage_membership_is_deterministic_and_near_the_percentages,
    count_stages_take_exactly_their_counts,
    stage_waits_for_success_gate_and_soak_and_advances_once,
    failures_below_min_sample_never_halt_and_the_crossing_report_halts,
    failure_threshold_counts_completed_devices_only,
    timeout_counts_as_failure_and_can_halt,
    revert_fails_and_confirming_another_version_is_not_success,
    failed_device_is_retried_until_retries_run_out,
    duplicate_reports_count_once,
    pause_stops_offers_resume_restores_abort_is_terminal,
    resume_from_halted_starts_a_new_failure_window,
    devices_registered_after_creation_join_their_stage,
    concurrent_reports_crossing_the_threshold_halt_exactly,
    selector_filters_by_tags_and_versions,
    create_checks_release_class_and_one_live_rollout_per_release,
    completed_rollout_keeps_offering_until_every_member_has_updated,
    decommissioned_device_does_not_fail_the_rollout,
    rollout_counters_agree_with_a_recount_after_concurrent_reports,
    count_stage_members_are_drawn_once_not_ranked_at_each_check_in,
    slow_pollers_that_check_in_after_completion_all_end_on_the_new_version,
    member_counts_are_shared_within_the_interval_and_renewed_after_it_or_a_change,
);

const CLASS: &str = "5b1f3a0e-8c2d-4e7f-9a6b-1c2d3e4f5a6b";
const OTHER_CLASS: &str = "0f0e0d0c-0b0a-4908-8706-050403020100";
const T0: i64 = 1_700_000_000_000;
const SOAK_S: u64 = 60;
const SOAK_MS: i64 = SOAK_S as i64 * 1000;
const TIMEOUT_S: u64 = 3_600;

// ---------------------------------------------------------------------------------------
// Seeding and helpers
// ---------------------------------------------------------------------------------------

async fn seed_release(db: &Db, id: &str, class_id: &str, version: u64) {
    sqlx::query(
        "INSERT INTO releases (id, target, envelope_target, class_id, version, \
         security_version, length, sha256, targets_version, created_at) \
         VALUES ($1, $2, $3, $4, $5, 1, 4096, $6, 1, 0)",
    )
    .bind(id)
    .bind(format!("{id}.bin"))
    .bind(format!("{id}.suit"))
    .bind(class_id)
    .bind(version as i64)
    .bind("ab".repeat(32))
    .execute(&db.write)
    .await
    .unwrap();
}

/// A device of `CLASS` in state active.
async fn seed_device(db: &Db, id: &str, tags: &[&str], running_version: Option<u64>) {
    seed_device_of(db, id, CLASS, tags, running_version, "active").await;
}

async fn seed_device_of(
    db: &Db,
    id: &str,
    class_id: &str,
    tags: &[&str],
    running_version: Option<u64>,
    state: &str,
) {
    sqlx::query(
        "INSERT INTO devices (id, public_key, class_id, tags, state, certificate, \
         created_at, updated_at, running_version) VALUES ($1, 'pk', $2, $3, $4, 'cert', 0, 0, $5)",
    )
    .bind(id)
    .bind(class_id)
    .bind(serde_json::to_string(tags).unwrap())
    .bind(state)
    .bind(running_version.map(|v| v as i64))
    .execute(&db.write)
    .await
    .unwrap();
}

/// `n` untagged devices running version 1, named `dev-0000`…
async fn seed_fleet(db: &Db, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("dev-{i:04}")).collect();
    let mut tx = db.write.begin().await.unwrap();
    for id in &ids {
        sqlx::query(
            "INSERT INTO devices (id, public_key, class_id, tags, state, certificate, \
             created_at, updated_at, running_version) VALUES ($1, 'pk', $2, '[]', 'active', 'cert', 0, 0, 1)",
        )
        .bind(id)
        .bind(CLASS)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    ids
}

/// A rollout of release `rel-2` (version 2) to every device of `CLASS`.
fn policy(stages: Vec<Stage>) -> RolloutCreate {
    RolloutCreate {
        release_id: "rel-2".into(),
        selector: Selector {
            class_id: CLASS.into(),
            tags: vec![],
            versions: vec![],
        },
        stages,
        success_gate: 1.0,
        failure_threshold: 0.2,
        min_sample: 5,
        device_timeout_s: TIMEOUT_S,
        soak_s: SOAK_S,
        max_retries: 0,
    }
}

/// A database with release `rel-2` (version 2) and `fleet` devices running version 1.
async fn setup(backend: Backend, fleet: usize) -> (TestDb, Engine, Vec<String>) {
    let t = TestDb::new(backend).await;
    seed_release(&t.db, "rel-2", CLASS, 2).await;
    let ids = seed_fleet(&t.db, fleet).await;
    let engine = Engine::new(t.db.clone());
    (t, engine, ids)
}

/// Another server replica: its own pools on the same database.
async fn replica(t: &TestDb) -> Engine {
    Engine::new(Db::connect(&t.url, Db::ACQUIRE_TIMEOUT).await.unwrap())
}

fn view(id: &str, running_version: u64) -> DeviceView {
    DeviceView {
        id: id.into(),
        class_id: CLASS.into(),
        tags: vec![],
        running_version,
    }
}

async fn offer(engine: &Engine, id: &str, now: i64) -> Option<Assignment> {
    engine.offer(&view(id, 1), now).await.unwrap()
}

fn event(rollout: &RolloutStatus, kind: ReportKind, version: u64) -> Report {
    Report {
        event_id: new_event_id().unwrap(),
        rollout_id: Some(rollout.id.clone()),
        kind,
        version,
        reason: None,
        evidence: None,
    }
}

async fn send(engine: &Engine, device: &str, report: &Report, now: i64) -> ReportAck {
    engine
        .report(device, report, &Proof::NotRequired, now)
        .await
        .unwrap()
}

/// A new event of `kind` for version 2, reported by `device` at `now`.
async fn report(
    engine: &Engine,
    rollout: &RolloutStatus,
    device: &str,
    kind: ReportKind,
    now: i64,
) -> ReportAck {
    send(engine, device, &event(rollout, kind, 2), now).await
}

/// Reports the full successful path of `device` (downloading … confirmed of version 2).
async fn succeed(engine: &Engine, rollout: &RolloutStatus, device: &str, now: i64) {
    for kind in [
        ReportKind::Downloading,
        ReportKind::Trial,
        ReportKind::Confirmed,
    ] {
        report(engine, rollout, device, kind, now).await;
    }
}

async fn fail(engine: &Engine, rollout: &RolloutStatus, device: &str, now: i64) -> ReportAck {
    report(engine, rollout, device, ReportKind::Failed, now).await
}

/// A single-stage rollout (every device at once), created at T0.
async fn create_single_stage(engine: &Engine) -> RolloutStatus {
    engine
        .create(&policy(vec![Stage::Percent(100.0)]), T0)
        .await
        .unwrap()
}

async fn status(engine: &Engine, rollout: &RolloutStatus) -> RolloutStatus {
    engine.status(&rollout.id).await.unwrap()
}

/// The devices whose bucket puts them below `percent`.
fn below(rollout: &RolloutStatus, ids: &[String], percent: f64) -> Vec<String> {
    ids.iter()
        .filter(|id| rollout_bucket(&rollout.id, id) * 100.0 < percent)
        .cloned()
        .collect()
}

/// Offers each of `ids` its assignment at `now`; each must get one.
async fn assign(engine: &Engine, ids: &[String], now: i64) {
    for id in ids {
        assert!(offer(engine, id, now).await.is_some(), "{id} got no offer");
    }
}

/// The ids `offer` assigns, in order, among `ids`.
async fn offered(engine: &Engine, ids: &[String], now: i64) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        if offer(engine, id, now).await.is_some() {
            out.push(id.clone());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Stage membership
// ---------------------------------------------------------------------------------------

async fn percent_stage_membership_is_deterministic_and_near_the_percentages(backend: Backend) {
    let (t, engine, ids) = setup(backend, 1000).await;
    let stages = vec![
        Stage::Percent(10.0),
        Stage::Percent(50.0),
        Stage::Percent(100.0),
    ];
    let rollout = engine.create(&policy(stages), T0).await.unwrap();

    let expected0 = below(&rollout, &ids, 10.0);
    let expected1 = below(&rollout, &ids, 50.0).len() - expected0.len();
    // Binomial over 1,000 devices: five standard deviations are 47 around 100 and 77
    // around 400 (the rollout id, and so the buckets, are new each run).
    assert!(
        (53..=147).contains(&expected0.len()),
        "stage 0 has {}",
        expected0.len()
    );
    assert!((323..=477).contains(&expected1), "stage 1 has {expected1}");

    // The cached view agrees with the engine, device by device.
    let live = engine.live_rollouts().await.unwrap();
    assert_eq!(live.len(), 1);
    let got = offered(&engine, &ids, T0).await;
    assert_eq!(got, expected0);
    for id in &ids {
        assert_eq!(
            live[0].may_offer(&view(id, 1)),
            expected0.contains(id),
            "{id}"
        );
    }
    // Another replica decides the same, and a re-check-in gets the same assignment.
    let other = replica(&t).await;
    assert_eq!(offered(&other, &ids, T0 + 1).await, expected0);

    let s = status(&engine, &rollout).await;
    let members: Vec<u64> = s.counts.stages.iter().map(|c| c.members).collect();
    assert_eq!(
        members,
        vec![
            expected0.len() as u64,
            expected1 as u64,
            (1000 - expected0.len() - expected1) as u64
        ]
    );
    assert_eq!(s.counts.total.members, 1000);
    assert_eq!(s.counts.stages[0].assigned, expected0.len() as u64);
    assert_eq!(s.counts.stages[0].in_progress, expected0.len() as u64);
    assert_eq!(s.counts.stages[1].assigned, 0);
}

async fn count_stages_take_exactly_their_counts(backend: Backend) {
    let (_t, engine, ids) = setup(backend, 50).await;
    let stages = vec![Stage::Count(3), Stage::Count(10), Stage::Percent(100.0)];
    let rollout = engine.create(&policy(stages), T0).await.unwrap();
    let mut ranked = ids.clone();
    ranked
        .sort_by(|a, b| rollout_bucket(&rollout.id, a).total_cmp(&rollout_bucket(&rollout.id, b)));

    let mut first = offered(&engine, &ids, T0).await;
    first.sort_by_key(|id| ranked.iter().position(|r| r == id));
    assert_eq!(first, ranked[..3]);
    let s = status(&engine, &rollout).await;
    let members: Vec<u64> = s.counts.stages.iter().map(|c| c.members).collect();
    assert_eq!(members, vec![3, 7, 40]);

    for id in &first {
        succeed(&engine, &rollout, id, T0 + 1).await;
    }
    engine.tick(T0 + 2).await.unwrap();
    engine.tick(T0 + 2 + SOAK_MS).await.unwrap();
    assert_eq!(status(&engine, &rollout).await.current_stage, 1);
    let mut second = offered(&engine, &ids, T0 + 3 + SOAK_MS).await;
    second.retain(|id| !first.contains(id));
    second.sort_by_key(|id| ranked.iter().position(|r| r == id));
    assert_eq!(second, ranked[3..10]);
}

// ---------------------------------------------------------------------------------------
// Success gate and soak
// ---------------------------------------------------------------------------------------

async fn stage_waits_for_success_gate_and_soak_and_advances_once(backend: Backend) {
    let (t, engine, ids) = setup(backend, 40).await;
    let mut req = policy(vec![Stage::Percent(50.0), Stage::Percent(100.0)]);
    req.success_gate = 0.75;
    let rollout = engine.create(&req, T0).await.unwrap();
    let stage0 = offered(&engine, &ids, T0).await;
    assert_eq!(stage0, below(&rollout, &ids, 50.0));
    let needed = (stage0.len() * 3).div_ceil(4);
    assert!(needed >= 2 && needed < stage0.len());

    // One confirmation short of the gate: no stage change, however long we wait.
    for id in &stage0[..needed - 1] {
        succeed(&engine, &rollout, id, T0 + 1).await;
    }
    // The others are busy, not failed: assigned-but-unfinished devices do not count.
    report(
        &engine,
        &rollout,
        &stage0[needed - 1],
        ReportKind::Downloading,
        T0 + 1,
    )
    .await;
    engine.tick(T0 + 2).await.unwrap();
    engine.tick(T0 + 2 + 10 * SOAK_MS).await.unwrap();
    assert_eq!(status(&engine, &rollout).await.current_stage, 0);

    // The gate is met at t1; the soak runs from there.
    let t1 = T0 + 3 + 10 * SOAK_MS;
    succeed(&engine, &rollout, &stage0[needed - 1], t1).await;
    engine.tick(t1).await.unwrap();
    engine.tick(t1 + SOAK_MS - 1).await.unwrap();
    let s = status(&engine, &rollout).await;
    assert_eq!(s.current_stage, 0);
    assert_eq!(s.state, RolloutState::Active);
    assert!(
        offer(&engine, &below_not(&rollout, &ids, 50.0)[0], t1)
            .await
            .is_none()
    );

    // Two replicas tick at the same moment after the soak: the stage advances once.
    let other = replica(&t).await;
    let (a, b) = tokio::join!(engine.tick(t1 + SOAK_MS), other.tick(t1 + SOAK_MS));
    a.unwrap();
    b.unwrap();
    let s = status(&engine, &rollout).await;
    assert_eq!(s.current_stage, 1);
    assert_eq!(s.state, RolloutState::Active);
    let stage1 = offered(&engine, &below_not(&rollout, &ids, 50.0), t1 + SOAK_MS).await;
    assert_eq!(stage1.len(), ids.len() - stage0.len());

    // The last stage's gate and soak complete the rollout, once.
    let t2 = t1 + 2 * SOAK_MS;
    for id in &stage1 {
        succeed(&engine, &rollout, id, t2).await;
    }
    engine.tick(t2).await.unwrap();
    assert_eq!(status(&engine, &rollout).await.state, RolloutState::Active);
    let (a, b) = tokio::join!(engine.tick(t2 + SOAK_MS), other.tick(t2 + SOAK_MS));
    a.unwrap();
    b.unwrap();
    let s = status(&engine, &rollout).await;
    assert_eq!(s.state, RolloutState::Completed);
    assert_eq!(s.current_stage, 1);
    assert_eq!(s.counts.total.confirmed, (needed + stage1.len()) as u64);
}

/// The devices at or above `percent`.
fn below_not(rollout: &RolloutStatus, ids: &[String], percent: f64) -> Vec<String> {
    let low = below(rollout, ids, percent);
    ids.iter().filter(|id| !low.contains(id)).cloned().collect()
}

// ---------------------------------------------------------------------------------------
// Failure threshold
// ---------------------------------------------------------------------------------------

async fn failures_below_min_sample_never_halt_and_the_crossing_report_halts(backend: Backend) {
    let (_t, engine, ids) = setup(backend, 30).await;
    let rollout = create_single_stage(&engine).await;
    assign(&engine, &ids[..10], T0).await;
    // 4 completed (min_sample is 5), even at 100% failures: no halt.
    for id in &ids[..4] {
        fail(&engine, &rollout, id, T0 + 1).await;
    }
    engine.tick(T0 + 2).await.unwrap();
    assert_eq!(status(&engine, &rollout).await.state, RolloutState::Active);
    assert!(offer(&engine, &ids[10], T0 + 2).await.is_some());

    // The fifth completion crosses min_sample with 4/5 > 20%: that report halts.
    succeed(&engine, &rollout, &ids[4], T0 + 3).await;
    let s = status(&engine, &rollout).await;
    assert_eq!(s.state, RolloutState::Halted);
    let reason = s.halted_reason.unwrap();
    assert!(reason.contains("4 of 5 completed devices"), "{reason}");
    // The very next offer, to a device never assigned, gets nothing.
    assert!(offer(&engine, &ids[11], T0 + 3).await.is_none());
    // Nor does a device that had an assignment.
    assert!(offer(&engine, &ids[5], T0 + 3).await.is_none());
    assert!(
        engine
            .live_rollouts()
            .await
            .unwrap()
            .iter()
            .all(|r| !r.may_offer(&view(&ids[12], 1)))
    );
}

async fn failure_threshold_counts_completed_devices_only(backend: Backend) {
    let (_t, engine, ids) = setup(backend, 100).await;
    let mut req = policy(vec![Stage::Percent(100.0)]);
    req.failure_threshold = 0.5;
    let rollout = engine.create(&req, T0).await.unwrap();
    assert_eq!(offered(&engine, &ids, T0).await.len(), 100);
    succeed(&engine, &rollout, &ids[0], T0 + 1).await;
    succeed(&engine, &rollout, &ids[1], T0 + 1).await;
    fail(&engine, &rollout, &ids[2], T0 + 1).await;
    fail(&engine, &rollout, &ids[3], T0 + 1).await;
    assert_eq!(status(&engine, &rollout).await.state, RolloutState::Active);
    // 3 of 5 completed failed; the 95 silent assigned devices do not dilute it to 3%.
    fail(&engine, &rollout, &ids[4], T0 + 1).await;
    let s = status(&engine, &rollout).await;
    assert_eq!(s.state, RolloutState::Halted);
    assert_eq!(s.counts.total.in_progress, 95);
    assert_eq!(s.counts.total.failed, 3);
}

async fn timeout_counts_as_failure_and_can_halt(backend: Backend) {
    let (_t, engine, ids) = setup(backend, 10).await;
    let rollout = create_single_stage(&engine).await;
    assign(&engine, &ids[..6], T0).await;
    for id in &ids[..3] {
        succeed(&engine, &rollout, id, T0 + 1).await;
    }
    report(&engine, &rollout, &ids[3], ReportKind::Downloading, T0 + 1).await;
    let deadline = T0 + TIMEOUT_S as i64 * 1000;
    engine.tick(deadline - 1).await.unwrap();
    let s = status(&engine, &rollout).await;
    assert_eq!(
        (s.state, s.counts.total.timed_out),
        (RolloutState::Active, 0)
    );

    // Assigned and in-progress devices alike time out; 3 of 6 completed failed: halt.
    engine.tick(deadline).await.unwrap();
    let s = status(&engine, &rollout).await;
    assert_eq!(s.counts.total.timed_out, 3);
    assert_eq!(s.counts.total.confirmed, 3);
    assert_eq!(s.state, RolloutState::Halted);
    assert!(offer(&engine, &ids[7], deadline).await.is_none());
    // A timed-out device is done with the rollout: a late confirmation changes nothing.
    let late = report(
        &engine,
        &rollout,
        &ids[3],
        ReportKind::Confirmed,
        deadline + 1,
    )
    .await;
    assert!(!late.duplicate);
    assert_eq!(status(&engine, &rollout).await.counts.total.timed_out, 3);
}

async fn revert_fails_and_confirming_another_version_is_not_success(backend: Backend) {
    let (_t, engine, ids) = setup(backend, 10).await;
    let mut req = policy(vec![Stage::Percent(100.0)]);
    req.max_retries = 3;
    let rollout = engine.create(&req, T0).await.unwrap();
    assign(&engine, &ids[..2], T0).await;

    // A revert is a failure even with retries left, and is not offered again.
    report(&engine, &rollout, &ids[0], ReportKind::Trial, T0 + 1).await;
    report(&engine, &rollout, &ids[0], ReportKind::Reverted, T0 + 2).await;
    assert!(offer(&engine, &ids[0], T0 + 3).await.is_none());

    // Confirming version 1 (the old image) is not a success of version 2.
    send(
        &engine,
        &ids[1],
        &event(&rollout, ReportKind::Confirmed, 1),
        T0 + 2,
    )
    .await;
    let s = status(&engine, &rollout).await;
    assert_eq!(s.counts.total.failed, 1);
    assert_eq!(s.counts.total.confirmed, 0);
    assert_eq!(s.counts.total.in_progress, 1);
    assert_eq!(offer(&engine, &ids[1], T0 + 3).await.unwrap().version, 2);
}

async fn failed_device_is_retried_until_retries_run_out(backend: Backend) {
    let (_t, engine, ids) = setup(backend, 10).await;
    let mut req = policy(vec![Stage::Percent(100.0)]);
    req.max_retries = 1;
    let rollout = engine.create(&req, T0).await.unwrap();
    let first = offer(&engine, &ids[0], T0).await.unwrap();

    // One retry left: assigned again, not counted as failed.
    fail(&engine, &rollout, &ids[0], T0 + 1).await;
    assert_eq!(offer(&engine, &ids[0], T0 + 2).await, Some(first));
    let s = status(&engine, &rollout).await;
    assert_eq!((s.counts.total.failed, s.counts.total.in_progress), (0, 1));

    // The retry's timeout runs from the failure, not from the first assignment.
    engine.tick(T0 + TIMEOUT_S as i64 * 1000).await.unwrap();
    assert_eq!(status(&engine, &rollout).await.counts.total.timed_out, 0);

    // Retries exhausted: failed, and not offered again.
    fail(&engine, &rollout, &ids[0], T0 + 3).await;
    assert!(offer(&engine, &ids[0], T0 + 4).await.is_none());
    let s = status(&engine, &rollout).await;
    assert_eq!((s.counts.total.failed, s.counts.total.in_progress), (1, 0));
}

async fn duplicate_reports_count_once(backend: Backend) {
    let (t, engine, ids) = setup(backend, 10).await;
    let mut req = policy(vec![Stage::Percent(100.0)]);
    // Applied twice, a failure would use up both retries and fail the device.
    req.max_retries = 2;
    let rollout = engine.create(&req, T0).await.unwrap();
    assert!(offer(&engine, &ids[0], T0).await.is_some());

    let retried = event(&rollout, ReportKind::Failed, 2);
    assert!(!send(&engine, &ids[0], &retried, T0 + 1).await.duplicate);
    assert!(send(&engine, &ids[0], &retried, T0 + 2).await.duplicate);

    // The same event at the same time through two replicas: stored and applied once.
    let other = replica(&t).await;
    let racing = event(&rollout, ReportKind::Failed, 2);
    let (a, b) = tokio::join!(
        engine.report(&ids[0], &racing, &Proof::NotRequired, T0 + 3),
        other.report(&ids[0], &racing, &Proof::NotRequired, T0 + 3)
    );
    let mut dups = [a.unwrap().duplicate, b.unwrap().duplicate];
    dups.sort();
    assert_eq!(dups, [false, true]);

    let s = status(&engine, &rollout).await;
    assert_eq!((s.counts.total.failed, s.counts.total.in_progress), (0, 1));
    assert!(offer(&engine, &ids[0], T0 + 4).await.is_some());
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM device_events WHERE device_id = $1")
        .bind(&ids[0])
        .fetch_one(&t.db.read)
        .await
        .unwrap();
    assert_eq!(stored, 2);
}

// ---------------------------------------------------------------------------------------
// Operator state changes
// ---------------------------------------------------------------------------------------

async fn pause_stops_offers_resume_restores_abort_is_terminal(backend: Backend) {
    let (_t, engine, ids) = setup(backend, 10).await;
    let rollout = create_single_stage(&engine).await;
    let first = offer(&engine, &ids[0], T0).await.unwrap();
    // A re-check-in gets the same assignment.
    assert_eq!(offer(&engine, &ids[0], T0 + 1).await.as_ref(), Some(&first));

    let s = engine.pause(&rollout.id, T0 + 2).await.unwrap();
    assert_eq!(s.state, RolloutState::Paused);
    assert_eq!(
        engine.pause(&rollout.id, T0 + 2).await.unwrap().state,
        RolloutState::Paused
    );
    assert!(offer(&engine, &ids[1], T0 + 3).await.is_none());
    assert!(offer(&engine, &ids[0], T0 + 3).await.is_none());

    let s = engine.resume(&rollout.id, T0 + 4).await.unwrap();
    assert_eq!(s.state, RolloutState::Active);
    assert!(offer(&engine, &ids[1], T0 + 5).await.is_some());
    assert_eq!(offer(&engine, &ids[0], T0 + 5).await, Some(first));

    let s = engine.abort(&rollout.id, T0 + 6).await.unwrap();
    assert_eq!(s.state, RolloutState::Aborted);
    assert!(offer(&engine, &ids[2], T0 + 7).await.is_none());
    assert!(offer(&engine, &ids[0], T0 + 7).await.is_none());
    assert_eq!(
        engine.abort(&rollout.id, T0 + 8).await.unwrap().state,
        RolloutState::Aborted
    );
    match engine.resume(&rollout.id, T0 + 8).await {
        Err(RolloutError::Conflict(m)) => {
            assert_eq!(m, "the rollout is aborted and cannot be resumed")
        }
        other => panic!("resuming an aborted rollout gave {other:?}"),
    }
    assert!(matches!(
        engine.pause(&rollout.id, T0 + 8).await,
        Err(RolloutError::Conflict(_))
    ));
    engine.tick(T0 + 10 * SOAK_MS).await.unwrap();
    assert_eq!(status(&engine, &rollout).await.state, RolloutState::Aborted);
    assert!(engine.live_rollouts().await.unwrap().is_empty());
    assert!(matches!(
        engine.pause("no-such-rollout", T0).await,
        Err(RolloutError::NotFound(_))
    ));
}

async fn resume_from_halted_starts_a_new_failure_window(backend: Backend) {
    let (_t, engine, ids) = setup(backend, 20).await;
    let rollout = create_single_stage(&engine).await;
    assign(&engine, &ids[..10], T0).await;
    for id in &ids[..5] {
        fail(&engine, &rollout, id, T0 + 1).await;
    }
    assert_eq!(status(&engine, &rollout).await.state, RolloutState::Halted);
    assert!(matches!(
        engine.pause(&rollout.id, T0 + 2).await,
        Err(RolloutError::Conflict(_))
    ));

    let s = engine.resume(&rollout.id, T0 + 2).await.unwrap();
    assert_eq!(s.state, RolloutState::Active);
    assert_eq!(s.halted_reason, None);
    // The old failures do not halt it again, on a report or a tick.
    succeed(&engine, &rollout, &ids[5], T0 + 3).await;
    engine.tick(T0 + 4).await.unwrap();
    assert_eq!(status(&engine, &rollout).await.state, RolloutState::Active);
    assert!(offer(&engine, &ids[10], T0 + 4).await.is_some());
    // New failures do: 4 successes and 1 failure (20%) hold, a second failure (2 of 6) halts.
    for id in &ids[6..9] {
        succeed(&engine, &rollout, id, T0 + 5).await;
    }
    fail(&engine, &rollout, &ids[9], T0 + 5).await;
    assert_eq!(status(&engine, &rollout).await.state, RolloutState::Active);
    fail(&engine, &rollout, &ids[10], T0 + 6).await;
    let s = status(&engine, &rollout).await;
    assert_eq!(s.state, RolloutState::Halted);
    let reason = s.halted_reason.unwrap();
    assert!(
        reason.contains("2 of 6 completed devices since the rollout was last resumed"),
        "{reason}"
    );
}

// ---------------------------------------------------------------------------------------
// Membership over time, replicas, selectors
// ---------------------------------------------------------------------------------------

async fn devices_registered_after_creation_join_their_stage(backend: Backend) {
    let (t, engine, _) = setup(backend, 0).await;
    let rollout = engine
        .create(
            &policy(vec![Stage::Percent(50.0), Stage::Percent(100.0)]),
            T0,
        )
        .await
        .unwrap();
    let candidates: Vec<String> = (0..100).map(|i| format!("late-{i}")).collect();
    let low = below(&rollout, &candidates, 50.0)[0].clone();
    let high = below_not(&rollout, &candidates, 50.0)[0].clone();
    seed_device(&t.db, &low, &[], Some(1)).await;
    seed_device(&t.db, &high, &[], Some(1)).await;

    let s = status(&engine, &rollout).await;
    assert_eq!(
        (s.counts.stages[0].members, s.counts.stages[1].members),
        (1, 1)
    );
    assert!(offer(&engine, &low, T0 + 1).await.is_some());
    assert!(offer(&engine, &high, T0 + 1).await.is_none());
    // Stage 0's gate now waits for the late device.
    engine.tick(T0 + 2).await.unwrap();
    engine.tick(T0 + 2 + SOAK_MS).await.unwrap();
    assert_eq!(status(&engine, &rollout).await.current_stage, 0);
    succeed(&engine, &rollout, &low, T0 + 3).await;
    engine.tick(T0 + 4).await.unwrap();
    engine.tick(T0 + 4 + SOAK_MS).await.unwrap();
    assert_eq!(status(&engine, &rollout).await.current_stage, 1);
    assert!(offer(&engine, &high, T0 + 5 + SOAK_MS).await.is_some());
}

async fn concurrent_reports_crossing_the_threshold_halt_exactly(backend: Backend) {
    let (t, engine, ids) = setup(backend, 60).await;
    let mut req = policy(vec![Stage::Percent(100.0)]);
    req.min_sample = 10;
    req.failure_threshold = 0.5;
    let rollout = engine.create(&req, T0).await.unwrap();
    assert_eq!(offered(&engine, &ids[..38], T0).await.len(), 38);
    for id in &ids[..8] {
        succeed(&engine, &rollout, id, T0 + 1).await;
    }
    // 30 failures at once through two replicas, with offers to new devices racing them.
    let other = replica(&t).await;
    let reports: Vec<(String, Report)> = ids[8..38]
        .iter()
        .map(|id| (id.clone(), event(&rollout, ReportKind::Failed, 2)))
        .collect();
    let engines = [&engine, &other];
    let report_futures = reports
        .iter()
        .enumerate()
        .map(|(i, (id, r))| engines[i % 2].report(id, r, &Proof::NotRequired, T0 + 2));
    let views: Vec<DeviceView> = ids[38..].iter().map(|id| view(id, 1)).collect();
    let offer_futures = views
        .iter()
        .enumerate()
        .map(|(i, v)| engines[i % 2].offer(v, T0 + 2));
    let (acks, offers) = tokio::join!(join_all(report_futures), join_all(offer_futures));
    assert!(acks.into_iter().all(|a| !a.unwrap().duplicate));
    let offers: Vec<_> = offers.into_iter().map(Result::unwrap).collect();

    // Serialized behind the rollout's lock, the 9th failure (9 of 17 > 50%) halted it;
    // the 8th (8 of 16) did not. Reports after the halt still count.
    let s = status(&engine, &rollout).await;
    assert_eq!(s.state, RolloutState::Halted);
    let reason = s.halted_reason.unwrap();
    assert!(reason.contains("9 of 17 completed devices"), "{reason}");
    assert_eq!((s.counts.total.confirmed, s.counts.total.failed), (8, 30));
    // Every offer that got an assignment committed before the halt: assigned and counted.
    let assigned = offers.iter().filter(|a| a.is_some()).count() as u64;
    assert_eq!(s.counts.total.assigned, 38 + assigned);
    assert_eq!(s.counts.total.in_progress, assigned);
    assert!(offer(&engine, &ids[59], T0 + 3).await.is_none());
}

async fn selector_filters_by_tags_and_versions(backend: Backend) {
    let t = TestDb::new(backend).await;
    seed_release(&t.db, "rel-3", CLASS, 3).await;
    seed_release(&t.db, "rel-other", OTHER_CLASS, 3).await;
    let engine = Engine::new(t.db.clone());
    let tagged = RolloutCreate {
        release_id: "rel-3".into(),
        selector: Selector {
            class_id: CLASS.into(),
            tags: vec!["eu".into(), "beta".into()],
            versions: vec![1, 2],
        },
        ..policy(vec![Stage::Percent(100.0)])
    };
    engine.create(&tagged, T0).await.unwrap();
    // Any tags, any version: only "newer only" filters.
    let open = RolloutCreate {
        release_id: "rel-other".into(),
        selector: Selector {
            class_id: OTHER_CLASS.into(),
            tags: vec![],
            versions: vec![],
        },
        ..policy(vec![Stage::Percent(100.0)])
    };
    engine.create(&open, T0).await.unwrap();
    let live = engine.live_rollouts().await.unwrap();

    // (device id, class, tags, running version, the release it is offered)
    type Case<'a> = (&'a str, &'a str, &'a [&'a str], u64, Option<&'a str>);
    let cases: [Case; 8] = [
        ("both-tags-v1", CLASS, &["eu", "beta"], 1, Some("rel-3")),
        (
            "more-tags-v2",
            CLASS,
            &["beta", "x", "eu"],
            2,
            Some("rel-3"),
        ),
        ("one-tag", CLASS, &["eu"], 1, None),
        ("no-tags", CLASS, &[], 1, None),
        ("unlisted-version", CLASS, &["eu", "beta"], 0, None),
        (
            "other-class",
            OTHER_CLASS,
            &["eu", "beta"],
            1,
            Some("rel-other"),
        ),
        ("already-on-release", OTHER_CLASS, &[], 3, None),
        ("newer-than-release", OTHER_CLASS, &[], 4, None),
    ];
    for (id, class_id, tags, version, expected) in cases {
        seed_device_of(&t.db, id, class_id, tags, Some(version), "active").await;
        let device = DeviceView {
            id: id.into(),
            class_id: class_id.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            running_version: version,
        };
        assert_eq!(
            live.iter().any(|r| r.may_offer(&device)),
            expected.is_some(),
            "{id}"
        );
        let got = engine.offer(&device, T0 + 1).await.unwrap();
        assert_eq!(
            got.as_ref().map(|a| a.release_id.as_str()),
            expected,
            "{id}"
        );
        if let Some(a) = got {
            assert_eq!((a.version, a.target), (3, format!("{}.bin", a.release_id)));
        }
    }
    // Only selected devices are members; a suspended one is not.
    seed_device_of(
        &t.db,
        "suspended",
        CLASS,
        &["eu", "beta"],
        Some(1),
        "suspended",
    )
    .await;
    let all = engine.list().await.unwrap();
    let members = |release: &str| {
        all.iter()
            .find(|s| s.release_id == release)
            .unwrap()
            .counts
            .total
            .members
    };
    assert_eq!((members("rel-3"), members("rel-other")), (2, 1));
}

async fn create_checks_release_class_and_one_live_rollout_per_release(backend: Backend) {
    let (t, engine, _) = setup(backend, 0).await;
    let mut missing = policy(vec![Stage::Percent(100.0)]);
    missing.release_id = "rel-none".into();
    assert!(matches!(
        engine.create(&missing, T0).await,
        Err(RolloutError::Invalid(_))
    ));
    let mut other_class = policy(vec![Stage::Percent(100.0)]);
    other_class.selector.class_id = OTHER_CLASS.into();
    assert!(matches!(
        engine.create(&other_class, T0).await,
        Err(RolloutError::Invalid(_))
    ));
    let mut invalid = policy(vec![Stage::Percent(100.0)]);
    invalid.success_gate = 0.0;
    assert!(matches!(
        engine.create(&invalid, T0).await,
        Err(RolloutError::Invalid(_))
    ));

    let first = create_single_stage(&engine).await;
    assert_eq!(
        (first.state, first.current_stage),
        (RolloutState::Active, 0)
    );
    assert_eq!(first.created_at, (T0 / 1000) as u64);
    let again = engine
        .create(&policy(vec![Stage::Percent(100.0)]), T0 + 1)
        .await;
    match again {
        Err(RolloutError::Conflict(m)) => assert!(m.contains(&first.id), "{m}"),
        other => panic!("a second live rollout of the release gave {other:?}"),
    }
    // Once it is over, a new one may start; two at once through two replicas: one wins.
    engine.abort(&first.id, T0 + 2).await.unwrap();
    let other = replica(&t).await;
    let req = policy(vec![Stage::Percent(100.0)]);
    let (a, b) = tokio::join!(engine.create(&req, T0 + 3), other.create(&req, T0 + 3));
    let (second, lost) = match (a, b) {
        (Ok(s), Err(e)) | (Err(e), Ok(s)) => (s, e),
        other => panic!("two concurrent creates gave {other:?}"),
    };
    assert!(matches!(lost, RolloutError::Conflict(_)), "{lost:?}");
    let all = engine.list().await.unwrap();
    assert_eq!(
        all.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [second.id.as_str(), first.id.as_str()]
    );
    assert!(matches!(
        engine.status("no-such-rollout").await,
        Err(RolloutError::NotFound(_))
    ));
}

// ---------------------------------------------------------------------------------------
// No member left behind, decommissioned devices, running counts
// ---------------------------------------------------------------------------------------

/// Marks `id` decommissioned, as `rota device decommission` does.
async fn decommission(db: &Db, id: &str) {
    sqlx::query("UPDATE devices SET state = 'decommissioned' WHERE id = $1")
        .bind(id)
        .execute(&db.write)
        .await
        .unwrap();
}

/// Each device's stage by the rule "stage membership" for percent stages.
fn percent_stage(rollout: &RolloutStatus, id: &str, percents: &[f64]) -> usize {
    let bucket = rollout_bucket(&rollout.id, id);
    percents.iter().position(|p| bucket * 100.0 < *p).unwrap()
}

/// The failure: with a success gate below 1, the last stage passed, the rollout completed
/// and stopped assigning, and the members that had not checked in yet never got the
/// release (4 of 300 and 21 of 1,000 in live runs).
async fn completed_rollout_keeps_offering_until_every_member_has_updated(backend: Backend) {
    const PERCENTS: [f64; 3] = [10.0, 50.0, 100.0];
    let (_t, engine, ids) = setup(backend, 300).await;
    let mut req = policy(PERCENTS.iter().map(|p| Stage::Percent(*p)).collect());
    req.success_gate = 0.85;
    let rollout = engine.create(&req, T0).await.unwrap();
    // In each stage, every tenth device polls only after the rollout completed.
    let mut slow = Vec::new();
    let mut fast = Vec::new();
    for k in 0..PERCENTS.len() {
        let in_stage: Vec<&String> = ids
            .iter()
            .filter(|id| percent_stage(&rollout, id, &PERCENTS) == k)
            .collect();
        for (i, id) in in_stage.into_iter().enumerate() {
            if i % 10 == 0 { &mut slow } else { &mut fast }.push(id.clone());
        }
    }

    let mut now = T0;
    for k in 0..PERCENTS.len() {
        let stage: Vec<String> = fast
            .iter()
            .filter(|id| percent_stage(&rollout, id, &PERCENTS) == k)
            .cloned()
            .collect();
        assign(&engine, &stage, now).await;
        for id in &stage {
            succeed(&engine, &rollout, id, now + 1).await;
        }
        engine.tick(now + 2).await.unwrap();
        now += 2 + SOAK_MS;
        engine.tick(now).await.unwrap();
    }
    let s = status(&engine, &rollout).await;
    assert_eq!(s.state, RolloutState::Completed);
    assert_eq!(s.counts.total.members, 300);
    assert_eq!(s.counts.total.confirmed, fast.len() as u64);
    // `rota rollout status` shows who is still on the old version.
    assert_eq!(s.counts.total.pending, slow.len() as u64);
    for (k, counts) in s.counts.stages.iter().enumerate() {
        let slow_in_stage = slow
            .iter()
            .filter(|id| percent_stage(&rollout, id, &PERCENTS) == k)
            .count();
        assert_eq!(counts.pending, slow_in_stage as u64, "stage {k}");
    }

    // The slow pollers check in after completion: still offered, by the cached view and
    // by the engine, on any number of ticks later.
    engine.tick(now + 1).await.unwrap();
    let live = engine.live_rollouts().await.unwrap();
    for id in &slow {
        assert!(live.iter().any(|r| r.may_offer(&view(id, 1))), "{id}");
        let offered = offer(&engine, id, now + 2).await;
        assert_eq!(offered.map(|a| a.version), Some(2), "{id} was left behind");
    }
    assert_eq!(
        status(&engine, &rollout).await.counts.total.pending,
        slow.len() as u64
    );
    // A completed rollout is not paused or resumed, only aborted.
    assert!(matches!(
        engine.pause(&rollout.id, now + 2).await,
        Err(RolloutError::Conflict(_))
    ));
    for id in &slow {
        succeed(&engine, &rollout, id, now + 3).await;
    }
    engine.tick(now + 4).await.unwrap();

    // Every member settled: it offers nothing more and leaves the live view.
    let s = status(&engine, &rollout).await;
    assert_eq!(s.state, RolloutState::Completed);
    assert_eq!((s.counts.total.confirmed, s.counts.total.pending), (300, 0));
    assert!(engine.live_rollouts().await.unwrap().is_empty());
    assert!(matches!(
        engine.abort(&rollout.id, now + 5).await,
        Err(RolloutError::Conflict(_))
    ));
}

/// The failure: a device decommissioned while its assignment was open timed out as a
/// failure, and a decommission halted a rollout of a good release.
async fn decommissioned_device_does_not_fail_the_rollout(backend: Backend) {
    let (t, engine, ids) = setup(backend, 10).await;
    let rollout = create_single_stage(&engine).await;
    assign(&engine, &ids, T0).await;
    for id in &ids[..6] {
        succeed(&engine, &rollout, id, T0 + 1).await;
    }
    report(&engine, &rollout, &ids[6], ReportKind::Downloading, T0 + 1).await;
    for id in &ids[6..] {
        decommission(&t.db, id).await;
    }
    // 4 of 10 completed would be 40%, above the 20% threshold, were they failures.
    let deadline = T0 + TIMEOUT_S as i64 * 1000;
    engine.tick(deadline).await.unwrap();
    let s = status(&engine, &rollout).await;
    assert_eq!(s.state, RolloutState::Active, "{:?}", s.halted_reason);
    assert_eq!(
        (
            s.counts.total.timed_out,
            s.counts.total.failed,
            s.counts.total.decommissioned
        ),
        (0, 0, 4)
    );
    // They left the fleet: not members, so the stage's gate (1.0) is met without them.
    assert_eq!((s.counts.total.members, s.counts.total.pending), (6, 0));
    engine.tick(deadline + SOAK_MS).await.unwrap();
    assert_eq!(
        status(&engine, &rollout).await.state,
        RolloutState::Completed
    );
}

/// The failure it guards: reports recounted every device row of the rollout (O(fleet) per
/// report); the running counts that replace the recount must never drift from it, with
/// reports of every kind, duplicates, offers and timeouts racing through two replicas.
async fn rollout_counters_agree_with_a_recount_after_concurrent_reports(backend: Backend) {
    let (t, engine, ids) = setup(backend, 120).await;
    let other = replica(&t).await;
    let engines = [&engine, &other];
    let mut req = policy(vec![Stage::Percent(30.0), Stage::Percent(100.0)]);
    req.max_retries = 1;
    req.min_sample = 1_000;
    let rollout = engine.create(&req, T0).await.unwrap();
    // Stage 0 first; then the stage advances and the rest are assigned, all at once.
    let first = below(&rollout, &ids, 30.0);
    assign(&engine, &first, T0).await;
    for id in &first {
        succeed(&engine, &rollout, id, T0 + 1).await;
    }
    engine.tick(T0 + 2).await.unwrap();
    engine.tick(T0 + 2 + SOAK_MS).await.unwrap();
    let now = T0 + 3 + SOAK_MS;
    let views: Vec<DeviceView> = ids.iter().map(|id| view(id, 1)).collect();
    let offers = views
        .iter()
        .enumerate()
        .map(|(i, v)| engines[i % 2].offer(v, now));
    for offered in join_all(offers).await {
        offered.unwrap();
    }

    // Each device's story, by its index; every device's reports go through both replicas
    // and are sent twice, all devices at once.
    let stories = ids.iter().enumerate().map(|(i, id)| {
        let rollout = &rollout;
        async move {
            let kinds: &[ReportKind] = match i % 5 {
                0 => &[
                    ReportKind::Downloading,
                    ReportKind::Trial,
                    ReportKind::Confirmed,
                ],
                1 => &[ReportKind::Failed],
                2 => &[ReportKind::Failed, ReportKind::Failed],
                3 => &[ReportKind::Trial, ReportKind::Reverted],
                _ => &[ReportKind::Downloading],
            };
            for kind in kinds {
                let r = event(rollout, *kind, 2);
                let (a, b) = tokio::join!(
                    engines[i % 2].report(id, &r, &Proof::NotRequired, now + 1),
                    engines[(i + 1) % 2].report(id, &r, &Proof::NotRequired, now + 1)
                );
                assert_ne!(a.unwrap().duplicate, b.unwrap().duplicate);
            }
        }
    });
    join_all(stories).await;
    for id in ids.iter().skip(4).step_by(10) {
        decommission(&t.db, id).await;
    }
    let deadline = now + TIMEOUT_S as i64 * 1000;
    let (a, b) = tokio::join!(engine.tick(deadline), other.tick(deadline));
    a.unwrap();
    b.unwrap();

    let recount: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT stage, CASE WHEN status IN ('assigned', 'in_progress') THEN 'open' \
         ELSE status END, COUNT(*) FROM rollout_devices WHERE rollout_id = $1 \
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(&rollout.id)
    .fetch_all(&t.db.read)
    .await
    .unwrap();
    let counters: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT stage, outcome, devices FROM rollout_counts \
         WHERE rollout_id = $1 AND devices <> 0 ORDER BY 1, 2",
    )
    .bind(&rollout.id)
    .fetch_all(&t.db.read)
    .await
    .unwrap();
    assert_eq!(counters, recount);
    // Every outcome occurred, so the comparison covers each move.
    let outcomes: std::collections::BTreeSet<&str> =
        recount.iter().map(|(_, o, _)| o.as_str()).collect();
    assert_eq!(
        outcomes.into_iter().collect::<Vec<_>>(),
        ["confirmed", "decommissioned", "failed", "open", "timed_out"]
    );
    let s = status(&engine, &rollout).await;
    let total = |outcome: &str| {
        recount
            .iter()
            .filter(|(_, o, _)| o == outcome)
            .map(|(_, _, n)| *n as u64)
            .sum::<u64>()
    };
    assert_eq!(s.counts.total.confirmed, total("confirmed"));
    assert_eq!(s.counts.total.failed, total("failed"));
    assert_eq!(s.counts.total.timed_out, total("timed_out"));
    assert_eq!(s.counts.total.decommissioned, total("decommissioned"));
    assert_eq!(s.counts.total.assigned, 120);
}

/// The failure: a count stage ranked the whole class on every check-in (112 ms each at
/// 20,000 devices), and the ranking moved as devices registered, so who the canaries were
/// depended on when they asked.
async fn count_stage_members_are_drawn_once_not_ranked_at_each_check_in(backend: Backend) {
    let (t, engine, ids) = setup(backend, 20).await;
    let stages = vec![Stage::Count(3), Stage::Percent(100.0)];
    let rollout = engine.create(&policy(stages), T0).await.unwrap();
    let mut ranked = ids.clone();
    ranked
        .sort_by(|a, b| rollout_bucket(&rollout.id, a).total_cmp(&rollout_bucket(&rollout.id, b)));
    let canaries = ranked[..3].to_vec();
    // Devices registered after the draw, at least 60 and as many more as it takes for
    // five to rank before the last canary (the buckets are new each run: a fixed list
    // would sometimes have none that does).
    let ranks_first =
        |id: &str| rollout_bucket(&rollout.id, id) < rollout_bucket(&rollout.id, &canaries[2]);
    let mut late: Vec<String> = Vec::new();
    while late.len() < 60 || late.iter().filter(|id| ranks_first(id)).count() < 5 {
        late.push(format!("late-{:04}", late.len()));
    }
    for id in &late {
        seed_device(&t.db, id, &[], Some(1)).await;
    }

    let everyone: Vec<String> = late.iter().chain(&ids).cloned().collect();
    let mut got = offered(&engine, &everyone, T0 + 1).await;
    got.sort_by_key(|id| ranked.iter().position(|r| r == id));
    assert_eq!(got, canaries);
    // Another replica, later, agrees.
    let other = replica(&t).await;
    let mut again = offered(&other, &everyone, T0 + 2).await;
    again.sort_by_key(|id| ranked.iter().position(|r| r == id));
    assert_eq!(again, canaries);
    let s = status(&engine, &rollout).await;
    assert_eq!(
        (s.counts.stages[0].members, s.counts.stages[1].members),
        (3, (ids.len() + late.len() - 3) as u64)
    );
}

/// End to end over HTTP: devices that sign their requests, some of which poll only after
/// the last stage passed (gate 0.75), all end on the new version.
async fn slow_pollers_that_check_in_after_completion_all_end_on_the_new_version(backend: Backend) {
    const DEVICES: usize = 24;
    let keys = Keys::new();
    let url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(support::postgres_schema_url().await),
    };
    let server = TestServer::start(&keys, url).await;
    server.init_repo(&keys).await;
    let release = server
        .publish(&keys, support::server::CLASS, 2, b"two")
        .await;
    let mut devices: Vec<TestDevice> = (0..DEVICES)
        .map(|i| TestDevice::new(&keys, &format!("dev-{i:02}"), support::server::CLASS, &[]))
        .collect();
    for device in &devices {
        server.register(device).await;
    }
    let body = serde_json::json!({
        "release_id": release,
        "selector": {"class_id": support::server::CLASS, "tags": [], "versions": []},
        "stages": [{"percent": 50.0}, {"percent": 100.0}],
        "success_gate": 0.75,
        "failure_threshold": 0.2,
        "min_sample": 5,
        "device_timeout_s": 3600,
        "soak_s": 0,
        "max_retries": 0
    });
    let created = server
        .admin(reqwest::Method::POST, "/api/v1/rollouts", Some(body))
        .await;
    let rollout: RolloutStatus = serde_json::from_value(created).unwrap();
    // At most a fifth of each stage (every fifth member, so ⌊n/5⌋ of n) polls late: the
    // rest meet the 0.75 gate whatever the split. ⌈n/5⌉ would be 3 of 11, below the gate,
    // and the rollout would never complete.
    let stage = |d: &TestDevice| percent_stage(&rollout, &d.id, &[50.0, 100.0]);
    let mut slow = [false; DEVICES];
    for k in 0..2 {
        let in_stage: Vec<usize> = (0..DEVICES).filter(|i| stage(&devices[*i]) == k).collect();
        for i in in_stage.iter().skip(4).step_by(5) {
            slow[*i] = true;
        }
    }

    let path = format!("/api/v1/rollouts/{}", rollout.id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s: RolloutStatus =
            serde_json::from_value(server.admin(reqwest::Method::GET, &path, None).await).unwrap();
        if s.state == RolloutState::Completed {
            assert!(s.counts.total.pending > 0, "{s:?}");
            break;
        }
        assert_eq!(s.state, RolloutState::Active, "{s:?}");
        assert!(std::time::Instant::now() < deadline, "not completed: {s:?}");
        for (i, device) in devices.iter_mut().enumerate() {
            if !slow[i] && device.version == 1 {
                update_over_http(&server, device).await;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Every device still on version 1 checks in after completion: the slow pollers, and
    // any punctual one the gate's completion overtook within the last polling round.
    for (i, device) in devices.iter_mut().enumerate() {
        if device.version == 1 {
            assert!(
                update_over_http(&server, device).await,
                "{} (slow: {}) was left behind",
                device.id,
                slow[i]
            );
        }
    }
    // Every member runs version 2, as the server sees it too.
    let s: RolloutStatus =
        serde_json::from_value(server.admin(reqwest::Method::GET, &path, None).await).unwrap();
    assert_eq!(
        (s.counts.total.confirmed, s.counts.total.pending),
        (DEVICES as u64, 0),
        "{s:?}"
    );
    assert!(devices.iter().all(|d| d.version == 2));
    server.stop().await;
}

/// One check-in and, if it brings an assignment, the reports of a good update; returns
/// whether the device updated.
async fn update_over_http(server: &TestServer, device: &mut TestDevice) -> bool {
    let (code, _, body) = device.checkin(server, None).await;
    assert_eq!(code, reqwest::StatusCode::OK);
    let Some(assignment) = body.unwrap().assignment else {
        return false;
    };
    for kind in [
        ReportKind::Downloading,
        ReportKind::Trial,
        ReportKind::Confirmed,
    ] {
        let r = TestDevice::event(kind, assignment.version, &assignment.rollout_id, None);
        assert_eq!(device.report(server, &r).await.0, reqwest::StatusCode::OK);
    }
    device.version = assignment.version;
    true
}

/// What it guards: every report of a rollout waited for its lock, which a group commit
/// holds until it commits, so two PostgreSQL replicas took turns on every report. Progress
/// changes no count and takes no lock; a report that can settle a device still waits.
/// (On SQLite the one writer serializes every write anyway.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn progress_reports_do_not_wait_for_the_rollout_lock_and_settling_ones_do() {
    let (t, engine, ids) = setup(Backend::Postgres, 5).await;
    let rollout = create_single_stage(&engine).await;
    assign(&engine, &ids[..1], T0).await;
    // Another replica's transaction holds the rollout's lock.
    let other = Db::connect(&t.url, Db::ACQUIRE_TIMEOUT).await.unwrap();
    let mut holder = other.write.begin().await.unwrap();
    sqlx::query("UPDATE rollouts SET state = state WHERE id = $1")
        .bind(&rollout.id)
        .execute(&mut *holder)
        .await
        .unwrap();

    let progress = report(&engine, &rollout, &ids[0], ReportKind::Downloading, T0 + 1);
    tokio::time::timeout(Duration::from_secs(30), progress)
        .await
        .expect("a progress report waited for the rollout's lock");
    let s = status(&engine, &rollout).await;
    assert_eq!(s.counts.total.in_progress, 1);

    let settling = tokio::spawn({
        let (engine, rollout, id) = (engine.clone(), rollout.clone(), ids[0].clone());
        async move { report(&engine, &rollout, &id, ReportKind::Confirmed, T0 + 2).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !settling.is_finished(),
        "a confirmation did not wait for the rollout's lock"
    );
    holder.commit().await.unwrap();
    settling.await.unwrap();
    assert_eq!(status(&engine, &rollout).await.counts.total.confirmed, 1);
}

/// What it guards: the rollout's lock was an `UPDATE rollouts SET state = state`, a new
/// version of the row for every offer and report (hundreds per group commit), which every
/// check-in's read of the rollouts stepped over until vacuum. A row lock writes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offers_and_reports_write_no_new_version_of_the_rollout_row() {
    let (t, engine, ids) = setup(Backend::Postgres, 5).await;
    let rollout = create_single_stage(&engine).await;
    let version = || async {
        sqlx::query_scalar::<_, String>("SELECT xmin::text FROM rollouts WHERE id = $1")
            .bind(&rollout.id)
            .fetch_one(&t.db.read)
            .await
            .unwrap()
    };
    let before = version().await;
    assign(&engine, &ids[..3], T0).await;
    for id in &ids[..2] {
        succeed(&engine, &rollout, id, T0 + 1).await;
    }
    fail(&engine, &rollout, &ids[2], T0 + 1).await;
    assert_eq!(status(&engine, &rollout).await.counts.total.confirmed, 2);
    assert_eq!(version().await, before);
}

// ---------------------------------------------------------------------------------------
// Cost at scale (a measurement, not a timed assert)
// ---------------------------------------------------------------------------------------

/// Prints the cost of a check-in and of a report at 20,000 devices on SQLite:
/// `cargo test -p rota-server --all-features --test rollout -- --ignored --nocapture
/// cost_of_check_ins_and_reports_at_20000_devices`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement: run it by name with --ignored --nocapture"]
async fn cost_of_check_ins_and_reports_at_20000_devices() {
    const FLEET: usize = 20_000;
    const SAMPLE: usize = 100;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0 / SAMPLE as f64;

    // Check-ins during a count stage and during a percent stage, nothing assigned yet.
    for stages in [
        vec![Stage::Count(1), Stage::Percent(100.0)],
        vec![Stage::Percent(1.0), Stage::Percent(100.0)],
    ] {
        let (_t, engine, ids) = setup(Backend::Sqlite, FLEET).await;
        engine.create(&policy(stages.clone()), T0).await.unwrap();
        let started = std::time::Instant::now();
        for id in ids.iter().step_by(FLEET / SAMPLE) {
            offer(&engine, id, T0 + 1).await;
        }
        println!(
            "check-in, stages {stages:?}: {:.2} ms",
            ms(started.elapsed())
        );
    }

    // Reports with every device of the fleet assigned.
    let (_t, engine, ids) = setup(Backend::Sqlite, FLEET).await;
    let mut req = policy(vec![Stage::Percent(100.0)]);
    req.min_sample = 1;
    req.failure_threshold = 0.99;
    let rollout = engine.create(&req, T0).await.unwrap();
    let started = std::time::Instant::now();
    assign(&engine, &ids, T0).await;
    println!(
        "assigning {FLEET} devices: {:.2} ms per check-in",
        started.elapsed().as_secs_f64() * 1000.0 / FLEET as f64
    );
    let started = std::time::Instant::now();
    for id in ids.iter().take(SAMPLE) {
        report(&engine, &rollout, id, ReportKind::Confirmed, T0 + 1).await;
    }
    println!(
        "report with {FLEET} devices assigned: {:.2} ms",
        ms(started.elapsed())
    );
    let started = std::time::Instant::now();
    for _ in 0..SAMPLE {
        status(&engine, &rollout).await;
    }
    println!("rollout status: {:.2} ms", ms(started.elapsed()));
}

/// With a member-count interval, a live rollout's members are counted once per interval
/// for the same rollout row (tick and status share the count: a scan of the class at
/// every 250 ms tick kept a core busy at 100,000 devices): a device that joins is counted
/// once the interval has passed, or at once when the rollout changes (a pause).
async fn member_counts_are_shared_within_the_interval_and_renewed_after_it_or_a_change(
    backend: Backend,
) {
    let (t, _, _) = setup(backend, 10).await;
    let patient = Engine::with_member_count_interval(t.db.clone(), Duration::from_secs(600));
    let brief = Engine::with_member_count_interval(t.db.clone(), Duration::from_millis(200));
    let rollout = create_single_stage(&patient).await;
    assert_eq!(status(&patient, &rollout).await.counts.total.members, 10);
    assert_eq!(status(&brief, &rollout).await.counts.total.members, 10);

    seed_device(&t.db, "late-1", &[], Some(1)).await;
    assert_eq!(
        status(&patient, &rollout).await.counts.total.members,
        10,
        "counted again within the interval"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(status(&brief, &rollout).await.counts.total.members, 11);

    seed_device(&t.db, "late-2", &[], Some(1)).await;
    let paused = patient.pause(&rollout.id, T0 + 1).await.unwrap();
    assert_eq!(
        paused.counts.total.members, 12,
        "a changed rollout is counted afresh"
    );
}
