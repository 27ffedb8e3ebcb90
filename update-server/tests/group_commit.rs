//! Group commits (`rota_server::db::batch`) on both databases: many devices' writes share
//! one transaction and one fsync, and each caller still gets its own answer, only once it
//! is on disk; one failing write fails alone; a full write queue is a 503 with
//! Retry-After that stored nothing; and the poll hint lengthens while writes wait.

mod support;

use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use rota_protocol::api::{ENROLL_PATH, REPORT_PATH, Report, ReportKind, RolloutStatus};
use rota_server::db::batch::WriteKey;
use rota_server::db::{Backend, Db};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Connection, Executor};
use support::TestDb;
use support::process::random_bytes;
use support::server::{CLASS, Keys, TestDevice, TestServer};
use tokio::sync::oneshot;

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
    a_failing_write_rolls_back_alone_and_its_neighbours_commit,
    an_answer_waits_for_the_commit_that_stores_it,
    concurrent_enrolments_offers_and_reports_are_stored_exactly_once,
    a_full_write_queue_is_answered_503_with_retry_after_and_stores_nothing,
    the_poll_hint_grows_while_writes_wait_and_returns_after,
);

/// The `/metrics` gauge is one per process: the tests that read it, or move it with
/// check-ins, take turns.
static METRICS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------
// The batcher itself
// ---------------------------------------------------------------------------------------

/// A write that holds the writer until `release` is sent; `started` says it runs.
fn hold_the_writer(db: &Db) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
    let (started_tx, started) = oneshot::channel();
    let (release, release_rx) = oneshot::channel::<()>();
    let writes = db.writes.clone();
    tokio::spawn(async move {
        writes
            .run(WriteKey::device("~holder"), move |_conn| {
                Box::pin(async move {
                    let _ = started_tx.send(());
                    let _ = release_rx.await;
                    Ok::<_, sqlx::Error>(())
                })
            })
            .await
            .unwrap();
    });
    (started, release)
}

async fn wait_for_pending(db: &Db, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while db.writes.pending() < count {
        assert!(
            Instant::now() < deadline,
            "{} writes queued",
            db.writes.pending()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn probe_table(db: &Db) {
    db.write
        .execute("CREATE TABLE batch_probe (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();
}

async fn probe_ids(db: &Db) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM batch_probe ORDER BY id")
        .fetch_all(&db.read)
        .await
        .unwrap()
}

/// Twenty writes queued behind a held writer commit as one transaction; the one that
/// breaks a constraint and the one that panics are rolled back alone (their first
/// inserts too) and only their callers hear of it.
async fn a_failing_write_rolls_back_alone_and_its_neighbours_commit(backend: Backend) {
    const FAILING: i64 = 7;
    const PANICKING: i64 = 13;
    let t = TestDb::new(backend).await;
    let db = &t.db;
    probe_table(db).await;
    let (started, release) = hold_the_writer(db);
    started.await.unwrap();
    let before = db.writes.stats();
    let writes: Vec<_> = (0..20i64)
        .map(|i| {
            let writes = db.writes.clone();
            tokio::spawn(async move {
                writes
                    .run(WriteKey::device(&format!("dev-{i:02}")), move |conn| {
                        Box::pin(async move {
                            let insert = "INSERT INTO batch_probe (id) VALUES ($1)";
                            sqlx::query(insert).bind(i).execute(&mut *conn).await?;
                            if i == FAILING {
                                // The same key again: a unique violation.
                                sqlx::query(insert).bind(i).execute(&mut *conn).await?;
                            }
                            if i == PANICKING {
                                panic!("write {i} panics on purpose");
                            }
                            Ok::<_, sqlx::Error>(i)
                        })
                    })
                    .await
            })
        })
        .collect();
    wait_for_pending(db, 21).await;
    release.send(()).unwrap();
    let results: Vec<_> = join_all(writes)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();

    for (i, result) in (0..20i64).zip(&results) {
        match (i, result) {
            (FAILING, Err(sqlx::Error::Database(e))) => assert!(e.is_unique_violation(), "{e}"),
            (PANICKING, Err(sqlx::Error::WorkerCrashed)) => {}
            (FAILING | PANICKING, other) => panic!("write {i} answered {other:?}"),
            (i, result) => assert_eq!(result.as_ref().ok(), Some(&i), "write {i}"),
        }
    }
    let expected: Vec<i64> = (0..20)
        .filter(|i| ![FAILING, PANICKING].contains(i))
        .collect();
    assert_eq!(probe_ids(db).await, expected);
    let after = db.writes.stats();
    assert_eq!(
        (
            after.commits - before.commits,
            after.operations - before.operations
        ),
        (2, 21),
        "the holder's batch, then one batch of the twenty"
    );
}

/// A write that ran is not answered until its batch commits: until then the caller
/// waits and no other connection sees it.
async fn an_answer_waits_for_the_commit_that_stores_it(backend: Backend) {
    let t = TestDb::new(backend).await;
    let db = &t.db;
    probe_table(db).await;
    let (first_started, first_release) = hold_the_writer(db);
    first_started.await.unwrap();
    let (ran_tx, ran) = oneshot::channel();
    let writes = db.writes.clone();
    let write = tokio::spawn(async move {
        writes
            .run(WriteKey::device("a"), move |conn| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO batch_probe (id) VALUES (1)")
                        .execute(&mut *conn)
                        .await?;
                    let _ = ran_tx.send(());
                    Ok::<_, sqlx::Error>(())
                })
            })
            .await
    });
    // Queued behind it in the same batch (keys order the batch: "a" before "~holder").
    wait_for_pending(db, 2).await;
    let (second_started, second_release) = hold_the_writer(db);
    wait_for_pending(db, 3).await;
    first_release.send(()).unwrap();
    ran.await.unwrap();
    second_started.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!write.is_finished(), "answered before its commit");
    assert!(probe_ids(db).await.is_empty(), "visible before its commit");
    second_release.send(()).unwrap();
    write.await.unwrap().unwrap();
    assert_eq!(probe_ids(db).await, vec![1]);
}

// ---------------------------------------------------------------------------------------
// Through the server
// ---------------------------------------------------------------------------------------

async fn database_url(backend: Backend) -> Option<String> {
    match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(support::postgres_schema_url().await),
    }
}

/// The server's database, opened beside it.
async fn open_beside(server: &TestServer, url: &Option<String>) -> Db {
    let url = url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", server.data_dir.join("rota.db").display()));
    Db::connect(&url, Db::ACQUIRE_TIMEOUT).await.unwrap()
}

async fn enrol(server: &TestServer, device: &TestDevice) -> StatusCode {
    let body = serde_json::to_vec(&json!({ "certificate": device.certificate })).unwrap();
    device
        .send(
            server,
            Method::POST,
            ENROLL_PATH,
            body,
            &[("content-type", "application/json")],
        )
        .await
        .status()
}

/// Sends `report`; the status, the Retry-After header and the body.
async fn report(
    server: &TestServer,
    device: &TestDevice,
    report: &Report,
) -> (StatusCode, Option<String>, Value) {
    send_report(&server.http, &server.base, device, report).await
}

async fn send_report(
    http: &reqwest::Client,
    base: &str,
    device: &TestDevice,
    report: &Report,
) -> (StatusCode, Option<String>, Value) {
    let resp = support::process::device_send(
        http,
        base,
        device,
        Method::POST,
        REPORT_PATH,
        serde_json::to_vec(report).unwrap(),
        &[("content-type", "application/json")],
    )
    .await
    .unwrap();
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (
        status,
        retry_after,
        resp.json().await.unwrap_or(Value::Null),
    )
}

fn devices(keys: &Keys, count: usize) -> Vec<TestDevice> {
    (0..count)
        .map(|i| TestDevice::new(keys, &format!("dev-{i:03}"), CLASS, &[]))
        .collect()
}

/// `count` devices, enrolled and checked in once (so activated), one after another.
async fn fleet(server: &TestServer, keys: &Keys, count: usize) -> Vec<TestDevice> {
    let devices = devices(keys, count);
    for device in &devices {
        assert_eq!(enrol(server, device).await, StatusCode::CREATED);
        assert_eq!(device.checkin(server, None).await.0, StatusCode::OK);
    }
    devices
}

/// Forty-eight devices enrol (twice), take their assignment and report three events
/// (each twice, at once) all concurrently: every registration and every event is stored
/// once, every repeat is answered as a repeat, and the rollout's counts are exact.
async fn concurrent_enrolments_offers_and_reports_are_stored_exactly_once(backend: Backend) {
    const DEVICES: usize = 48;
    let _metrics = METRICS.lock().await;
    let keys = Keys::new();
    let url = database_url(backend).await;
    let server = TestServer::start(&keys, url.clone()).await;
    server.init_repo(&keys).await;
    let release = server.publish(&keys, CLASS, 2, &random_bytes(4096)).await;
    let devices = devices(&keys, DEVICES);
    let enrolled = join_all(devices.iter().map(|d| enrol(&server, d))).await;
    assert!(
        enrolled.iter().all(|s| *s == StatusCode::CREATED),
        "{enrolled:?}"
    );
    let again = join_all(devices.iter().map(|d| enrol(&server, d))).await;
    assert!(again.iter().all(|s| *s == StatusCode::OK), "{again:?}");
    let rollout = server
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

    let updates = devices.iter().map(|device| {
        let (server, rollout_id) = (&server, &rollout_id);
        async move {
            let (a, b) = tokio::join!(device.checkin(server, None), device.checkin(server, None));
            let (a, b) = (a.2.unwrap().assignment, b.2.unwrap().assignment);
            assert_eq!(a, b, "{}: two answers", device.id);
            assert_eq!(a.unwrap().rollout_id, *rollout_id);
            for kind in [
                ReportKind::Downloading,
                ReportKind::Installed,
                ReportKind::Confirmed,
            ] {
                let event = TestDevice::event(kind, 2, rollout_id, None);
                let (a, b) = tokio::join!(
                    report(server, device, &event),
                    report(server, device, &event)
                );
                assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK), "{a:?} {b:?}");
                let mut duplicates = [&a.2["duplicate"], &b.2["duplicate"]];
                duplicates.sort_by_key(|d| d.as_bool());
                assert_eq!(
                    duplicates,
                    [false, true],
                    "{}: {kind:?} stored once",
                    device.id
                );
            }
        }
    });
    join_all(updates).await;

    let status: RolloutStatus = serde_json::from_value(
        server
            .admin(Method::GET, &format!("/api/v1/rollouts/{rollout_id}"), None)
            .await,
    )
    .unwrap();
    let total = &status.counts.total;
    assert_eq!(
        (
            total.assigned,
            total.confirmed,
            total.in_progress,
            total.failed
        ),
        (DEVICES as u64, DEVICES as u64, 0, 0),
        "{status:?}"
    );
    let db = open_beside(&server, &url).await;
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&db.read)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM devices").await, DEVICES as i64);
    assert_eq!(
        count("SELECT COUNT(*) FROM device_events").await,
        3 * DEVICES as i64
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM rollout_devices WHERE status = 'confirmed'").await,
        DEVICES as i64,
        "the running counts agree with a recount"
    );
    server.stop().await;
}

/// Holds the database's write lock from outside the server: on SQLite an immediate
/// transaction on another connection, on PostgreSQL an exclusive lock on the reports'
/// table. Reports then wait in the server's write queue; reads go on.
async fn stall_writes(server: &TestServer, url: &Option<String>) -> AnyConnection {
    sqlx::any::install_default_drivers();
    let (url, stall) = match url {
        Some(url) => (
            url.clone(),
            "BEGIN; LOCK TABLE device_events IN EXCLUSIVE MODE",
        ),
        None => (
            format!("sqlite://{}", server.data_dir.join("rota.db").display()),
            "BEGIN IMMEDIATE",
        ),
    };
    let mut conn = AnyConnection::connect(&url).await.unwrap();
    conn.execute(stall).await.unwrap();
    conn
}

/// A server whose writer takes one write at a time and queues four more.
async fn small_queue_server(keys: &Keys, url: Option<String>) -> TestServer {
    TestServer::start_with(keys, url, |s| {
        s.write_batch_max = Some(1);
        s.write_queue_max = Some(4);
        s.poll_interval = Some(100);
    })
    .await
}

/// One report in the stalled writer, four queued, the rest refused at once.
async fn fill_the_write_queue(
    server: &TestServer,
    devices: &[TestDevice],
) -> (
    Vec<tokio::task::JoinHandle<(StatusCode, Option<String>, Value)>>,
    Vec<Report>,
) {
    let events: Vec<Report> = devices
        .iter()
        .map(|_| Report::new(ReportKind::Downloading, 1, None, None).unwrap())
        .collect();
    let send = |i: usize| {
        let (http, base) = (server.http.clone(), server.base.clone());
        let (device, event) = (devices[i].clone(), events[i].clone());
        tokio::spawn(async move { send_report(&http, &base, &device, &event).await })
    };
    let mut sent = vec![send(0)];
    // The first is taken by the writer, which waits on the lock.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sent.extend((1..devices.len()).map(send));
    (sent, events)
}

/// With the writer stalled and its queue full, a new report is answered at once with 503
/// and Retry-After, and is not stored: sent again later, it is new. The queued reports
/// are stored once the writer moves.
async fn a_full_write_queue_is_answered_503_with_retry_after_and_stores_nothing(backend: Backend) {
    let keys = Keys::new();
    let url = database_url(backend).await;
    let server = small_queue_server(&keys, url.clone()).await;
    let devices = fleet(&server, &keys, 12).await;
    let mut stall = stall_writes(&server, &url).await;
    let (sent, events) = fill_the_write_queue(&server, &devices).await;
    // Refusals come at once, while the writer is still stalled.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sent.iter().filter(|s| s.is_finished()).count() < 7 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused_early = sent.iter().filter(|s| s.is_finished()).count();
    conn_release(&mut stall).await;
    let answers: Vec<_> = join_all(sent)
        .await
        .into_iter()
        .map(|a| a.unwrap())
        .collect();
    assert_eq!(refused_early, 7, "{answers:?}");
    let refused: Vec<usize> = (0..answers.len())
        .filter(|i| answers[*i].0 == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!(refused.len(), 7, "1 writing + 4 queued of 12: {answers:?}");
    for i in &refused {
        assert_eq!(
            answers[*i].1.as_deref(),
            Some("5"),
            "Retry-After: {answers:?}"
        );
        assert!(answers[*i].2["error"].as_str().unwrap().contains("busy"));
    }
    for (i, answer) in answers.iter().enumerate() {
        if !refused.contains(&i) {
            assert_eq!(answer.0, StatusCode::OK, "{answer:?}");
            assert_eq!(answer.2["duplicate"], false);
        }
    }
    let db = open_beside(&server, &url).await;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM device_events")
        .fetch_one(&db.read)
        .await
        .unwrap();
    assert_eq!(stored, 5, "a refused report is not stored");
    for i in refused {
        let (status, _, ack) = report(&server, &devices[i], &events[i]).await;
        assert_eq!((status, &ack["duplicate"]), (StatusCode::OK, &json!(false)));
    }
    server.stop().await;
}

async fn conn_release(conn: &mut AnyConnection) {
    conn.execute("ROLLBACK").await.unwrap();
}

/// While writes wait, check-ins ask for up to `poll-hint-max-factor` (4) poll intervals
/// and the gauge says so; once the queue drains, one interval again.
async fn the_poll_hint_grows_while_writes_wait_and_returns_after(backend: Backend) {
    let _metrics = METRICS.lock().await;
    let keys = Keys::new();
    let url = database_url(backend).await;
    let server = small_queue_server(&keys, url.clone()).await;
    let devices = fleet(&server, &keys, 6).await;
    let hint = |answer: (
        StatusCode,
        String,
        Option<rota_protocol::api::CheckInResponse>,
    )| {
        assert_eq!(answer.0, StatusCode::OK);
        answer.2.unwrap().poll_after_s
    };
    let idle = hint(devices[0].checkin(&server, None).await);
    assert!((80..=120).contains(&idle), "100 s ±20 %: {idle}");

    let mut stall = stall_writes(&server, &url).await;
    let (sent, _) = fill_the_write_queue(&server, &devices[..5]).await;
    // 1 writing, 4 queued: the queue is full.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !sent.iter().any(|s| s.is_finished()),
        "nothing is refused yet"
    );
    let loaded = hint(devices[5].checkin(&server, None).await);
    let metrics = server.metrics().await;
    conn_release(&mut stall).await;
    assert!((320..=480).contains(&loaded), "4 × 100 s ±20 %: {loaded}");
    let factor = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rota_poll_hint_factor "))
        .map(|v| v.parse::<f64>().unwrap());
    assert_eq!(factor, Some(4.0), "the gauge shows the factor");
    for answer in join_all(sent).await {
        assert_eq!(answer.unwrap().0, StatusCode::OK);
    }
    let drained = hint(devices[5].checkin(&server, None).await);
    assert!(
        (80..=120).contains(&drained),
        "100 s ±20 % again: {drained}"
    );
    server.stop().await;
}
