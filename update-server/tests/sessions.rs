//! Check-in sessions (`rota_protocol::session`) against a real server: a device opens one
//! with a signed request and then checks in and reports with a MAC; the session is refused
//! for anything else, once replayed, once expired, after the device key is revoked or
//! replaced, and for a server of another fleet; a session opened on one replica works on
//! another that shares the database.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use rota_protocol::Sign as _;
use rota_protocol::api::{CheckInQuery, LastResult, REPORT_PATH, Report, ReportKind, SlotState};
use rota_protocol::auth::Nonce;
use rota_protocol::session::{
    DeviceEphemeral, SESSION_PATH, Session, SessionHeaders, SessionKey, SessionOpened, TokenSealer,
    mac_request,
};
use rota_server::db::{Db, now_ms};
use rota_server::device::directory::CACHE_TTL_MS;
use serde_json::{Value, json};
use support::server::{CLASS, Keys, TestDevice, TestServer};

/// What a device holds of its session.
struct DeviceSession {
    key: SessionKey,
    token: String,
}

/// Opens a session for `device` (a signed request with its ephemeral key).
async fn open_session(server: &TestServer, device: &TestDevice) -> DeviceSession {
    let ephemeral = DeviceEphemeral::generate().unwrap();
    let body = serde_json::to_vec(&ephemeral.request()).unwrap();
    let resp = device
        .send(server, Method::POST, SESSION_PATH, body, &[])
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let opened: SessionOpened = resp.json().await.unwrap();
    assert_eq!(opened.lifetime_s, 3600, "the default lifetime");
    DeviceSession {
        key: ephemeral.finish(&device.id, &opened).unwrap(),
        token: opened.token,
    }
}

fn mac(
    session: &DeviceSession,
    device: &TestDevice,
    method: &Method,
    path: &str,
    body: &[u8],
) -> SessionHeaders {
    mac_request(
        &session.key,
        &session.token,
        &device.id,
        method.as_str(),
        path,
        body,
        now_ms() as u64,
        Nonce::random().unwrap(),
    )
}

/// Sends a request with these session headers (and no signature).
async fn send_with(
    server: &TestServer,
    headers: &SessionHeaders,
    method: Method,
    path: &str,
    body: Vec<u8>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = server.http.request(method, server.url(path)).body(body);
    for (name, value) in headers.iter() {
        req = req.header(name, value);
    }
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    req.send().await.unwrap()
}

/// A MAC'd request.
async fn send_mac(
    server: &TestServer,
    session: &DeviceSession,
    device: &TestDevice,
    method: Method,
    path: &str,
    body: Vec<u8>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let headers = mac(session, device, &method, path, &body);
    send_with(server, &headers, method, path, body, extra).await
}

fn checkin_path() -> String {
    CheckInQuery {
        version: 1,
        slot: SlotState::Confirmed,
        last: Some(LastResult::None),
    }
    .path_and_query()
}

async fn checkin_mac(
    server: &TestServer,
    session: &DeviceSession,
    device: &TestDevice,
    etag: Option<&str>,
) -> reqwest::Response {
    let extra: Vec<(&str, &str)> = etag.map(|e| ("if-none-match", e)).into_iter().collect();
    send_mac(
        server,
        session,
        device,
        Method::GET,
        &checkin_path(),
        Vec::new(),
        &extra,
    )
    .await
}

/// The error sentence of a refusal.
async fn refusal(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

/// A counter's value in the `/metrics` exposition (0 when absent).
async fn counter(server: &TestServer, name: &str) -> u64 {
    server
        .metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// The fleet's token secret, read from the server's SQLite database as an insider could.
async fn fleet_secret(server: &TestServer) -> TokenSealer {
    let db = Db::open_sqlite_in(&server.data_dir).await.unwrap();
    let (secret,): (String,) =
        sqlx::query_as("SELECT secret FROM server_secrets WHERE name = 'session-token'")
            .fetch_one(&db.read)
            .await
            .unwrap();
    TokenSealer::new(&hex::decode(secret).unwrap().try_into().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_checks_in_and_reports_on_a_session_after_one_signed_request() {
    let keys = Keys::new();
    let server = TestServer::start(&keys, None).await;
    let device = TestDevice::new(&keys, "dev-1", CLASS, &[]);
    server.register(&device).await;
    // The counters are the test process's (one metrics recorder): compare, never equate.
    let opened = counter(&server, "rota_sessions_opened_total").await;
    let checkins = counter(&server, "rota_session_checkins_total").await;
    let reports = counter(&server, "rota_session_reports_total").await;
    let session = open_session(&server, &device).await;
    assert!(counter(&server, "rota_sessions_opened_total").await > opened);

    let resp = checkin_mac(&server, &session, &device, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let tag = resp.headers()["etag"].to_str().unwrap().to_string();
    let resp = checkin_mac(&server, &session, &device, Some(&tag)).await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert!(counter(&server, "rota_session_checkins_total").await >= checkins + 2);

    let report = Report::new(ReportKind::Downloading, 2, None, None).unwrap();
    let body = serde_json::to_vec(&report).unwrap();
    let resp = send_mac(
        &server,
        &session,
        &device,
        Method::POST,
        REPORT_PATH,
        body,
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(counter(&server, "rota_session_reports_total").await > reports);

    // The MAC covers the request: another query under the same MAC is refused.
    let headers = mac(&session, &device, &Method::GET, &checkin_path(), b"");
    let other = checkin_path().replace("version=1", "version=2");
    let resp = send_with(&server, &headers, Method::GET, &other, Vec::new(), &[]).await;
    let (status, error) = refusal(resp).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error.contains("Rota-Mac does not verify"), "{error}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_refused_for_requests_that_must_be_signed() {
    let keys = Keys::new();
    let server = TestServer::start(&keys, None).await;
    let device = TestDevice::new(&keys, "dev-1", CLASS, &[]);
    server.register(&device).await;
    let session = open_session(&server, &device).await;
    let another = DeviceEphemeral::generate().unwrap().request();
    for (method, path, body) in [
        (Method::GET, "/api/v1/device/self", Vec::new()),
        (
            Method::POST,
            SESSION_PATH,
            serde_json::to_vec(&another).unwrap(),
        ),
        (
            Method::POST,
            rota_protocol::api::ATTESTATION_NONCE_PATH,
            Vec::new(),
        ),
        (
            Method::POST,
            rota_protocol::api::ROTATE_PATH,
            b"{}".to_vec(),
        ),
    ] {
        let resp = send_mac(
            &server,
            &session,
            &device,
            method.clone(),
            path,
            body,
            &[("content-type", "application/json")],
        )
        .await;
        let (status, error) = refusal(resp).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(error.contains("must be signed"), "{method} {path}: {error}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_session_request_is_refused() {
    let keys = Keys::new();
    let server = TestServer::start(&keys, None).await;
    let device = TestDevice::new(&keys, "dev-1", CLASS, &[]);
    server.register(&device).await;
    let session = open_session(&server, &device).await;
    let headers = mac(&session, &device, &Method::GET, &checkin_path(), b"");
    let resp = send_with(&server, &headers, Method::GET, &checkin_path(), vec![], &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send_with(&server, &headers, Method::GET, &checkin_path(), vec![], &[]).await;
    let (status, error) = refusal(resp).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error.contains("replay"), "{error}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_devices_session_is_refused() {
    let keys = Keys::new();
    let server = TestServer::start(&keys, None).await;
    let device = TestDevice::new(&keys, "dev-1", CLASS, &[]);
    server.register(&device).await;
    let session = open_session(&server, &device).await;
    let resp = checkin_mac(&server, &session, &device, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, body) = server
        .call(
            &server.admin,
            Method::POST,
            "/api/v1/revocations",
            Some(json!({
                "kind": "device_key",
                "subject": hex::encode(device.key.public_key().as_bytes()),
                "reason": "key extracted from a returned unit",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    tokio::time::sleep(Duration::from_millis(CACHE_TTL_MS as u64 + 200)).await;
    let (status, error) = refusal(checkin_mac(&server, &session, &device, None).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(error.contains("revoked"), "{error}");

    // Suspended: the session is refused as a signature would be.
    let other = TestDevice::new(&keys, "dev-2", CLASS, &[]);
    server.register(&other).await;
    let session = open_session(&server, &other).await;
    server
        .admin(Method::POST, "/api/v1/devices/dev-2/suspend", None)
        .await;
    tokio::time::sleep(Duration::from_millis(CACHE_TTL_MS as u64 + 200)).await;
    let (status, error) = refusal(checkin_mac(&server, &session, &other, None).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(error.contains("suspended"), "{error}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_replaced_key_and_foreign_sessions_are_refused() {
    let keys = Keys::new();
    let server = TestServer::start(&keys, None).await;
    let device = TestDevice::new(&keys, "dev-1", CLASS, &[]);
    server.register(&device).await;
    let genuine = open_session(&server, &device).await;
    // Tokens made with the fleet's own secret, as the server would have made them.
    let sealer = fleet_secret(&server).await;
    let key = SessionKey::from_bytes([3; 32]);
    let now = now_ms() as u64;
    let forge = |key_id: [u8; 32], expires_ms: u64| DeviceSession {
        key: key.clone(),
        token: sealer
            .seal(&Session {
                device_id: device.id.clone(),
                device_key_id: key_id,
                key: key.clone(),
                expires_ms,
            })
            .unwrap(),
    };
    let current = device.key.public_key().key_id();
    let fine = forge(current, now + 60_000);
    assert_eq!(
        checkin_mac(&server, &fine, &device, None).await.status(),
        StatusCode::OK,
        "the forged tokens differ from a genuine one only where each test says"
    );

    let expired = forge(current, now - 1);
    let (status, error) = refusal(checkin_mac(&server, &expired, &device, None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error.contains("session expired"), "{error}");

    // Opened with a key the device no longer has (rotated, or replaced by the operator).
    let replaced = forge([0xee; 32], now + 60_000);
    let (status, error) = refusal(checkin_mac(&server, &replaced, &device, None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error.contains("open a new session"), "{error}");

    // Another fleet's server (its own database, so its own secret) refuses the token.
    let stranger = TestServer::start(&keys, None).await;
    stranger.register(&device).await;
    let (status, error) = refusal(checkin_mac(&stranger, &genuine, &device, None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        error.contains("not a session this server opened"),
        "{error}"
    );

    // Another device's session, with a correct MAC under it, for this device's id.
    let other = TestDevice::new(&keys, "dev-2", CLASS, &[]);
    server.register(&other).await;
    let theirs = open_session(&server, &other).await;
    let (status, error) = refusal(checkin_mac(&server, &theirs, &device, None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        error.contains("not a session this server opened"),
        "{error}"
    );
    stranger.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_on_one_replica_works_on_another() {
    let keys = Keys::new();
    let url = support::postgres_schema_url().await;
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let a = TestServer::start_in(&keys, dir_a.path(), Some(url.clone()), |_| {}).await;
    std::fs::copy(
        dir_a.path().join("admin.token"),
        dir_b.path().join("admin.token"),
    )
    .unwrap();
    let b = TestServer::start_in(&keys, dir_b.path(), Some(url), |_| {}).await;
    let device = TestDevice::new(&keys, "dev-1", CLASS, &[]);
    a.register(&device).await;
    let session = open_session(&a, &device).await;
    let resp = checkin_mac(&b, &session, &device, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let tag = resp.headers()["etag"].to_str().unwrap().to_string();
    let resp = checkin_mac(&a, &session, &device, Some(&tag)).await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    b.stop().await;
    a.stop().await;
}
