//! The agent's check-in sessions against a real rota-server, seen through a proxy that
//! records how each request was authenticated: check-ins and reports ride on one session
//! opened by a signed request; a refused session is followed by a signed request and a
//! new session; a server without sessions is signed to as before.

use std::sync::{Arc, Mutex};

use rota_agent::device::Identity;
use rota_agent::server::{AnswerLimits, CheckIn, ServerClient};
use rota_keys::{Algorithm, Sign, SoftwareKey};
use rota_protocol::api::{CheckInQuery, LastResult, Report, ReportKind, SlotState};
use rota_protocol::session::SESSION_PATH;
use rota_system_tests::proxy::{Action, FaultProxy};
use rota_system_tests::{CLASS, World};

/// How a request reached the server: (method, path, "mac" | "signature").
type Seen = Arc<Mutex<Vec<(String, String, &'static str)>>>;

fn record(
    proxy: &FaultProxy,
    refuse: impl Fn(&str, bool) -> Option<Action> + Send + Sync + 'static,
) -> Seen {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    proxy.set_rule(move |req| {
        let by_mac = req.header("rota-mac").is_some();
        log.lock().unwrap().push((
            req.method.clone(),
            req.path.clone(),
            if by_mac { "mac" } else { "signature" },
        ));
        refuse(&req.path, by_mac).unwrap_or(Action::Forward)
    });
    seen
}

fn enrolled(world: &World, client: &ServerClient, id: &str) -> Identity {
    let key = SoftwareKey::generate(Algorithm::Ed25519).unwrap();
    let certificate = rota_protocol::certify(
        &world.ca,
        id,
        &key.public_key(),
        None,
        &uuid::Uuid::from_bytes(CLASS),
        vec![],
    )
    .unwrap();
    let identity = Identity {
        device_id: id.into(),
        key: Box::new(key),
    };
    client.enroll(&identity, &certificate).unwrap();
    identity
}

fn check_in(client: &ServerClient, identity: &Identity, previous: Option<&CheckIn>) -> CheckIn {
    let query = CheckInQuery {
        version: 1,
        slot: SlotState::Confirmed,
        last: Some(LastResult::None),
    };
    client.check_in(identity, &query, previous).unwrap()
}

fn how(seen: &Seen, path: &str) -> Vec<&'static str> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(_, p, _)| p == path)
        .map(|(_, _, how)| *how)
        .collect()
}

#[test]
fn check_ins_and_reports_ride_on_one_session() {
    let world = World::start();
    let proxy = FaultProxy::start(&world.base);
    let client = ServerClient::new(world.http.clone(), &proxy.url(), AnswerLimits::default());
    let identity = enrolled(&world, &client, "sess-1");
    let seen = record(&proxy, |_, _| None);
    let first = check_in(&client, &identity, None);
    let second = check_in(&client, &identity, Some(&first));
    check_in(&client, &identity, Some(&second));
    let report = Report::new(ReportKind::Downloading, 2, None, None).unwrap();
    client.report(&identity, &report).unwrap();
    assert!(client.has_session("sess-1"));

    assert_eq!(
        how(&seen, SESSION_PATH),
        ["signature"],
        "one session, opened signed"
    );
    assert_eq!(how(&seen, "/api/v1/device/checkin"), ["mac"; 3]);
    assert_eq!(how(&seen, "/api/v1/device/report"), ["mac"]);
    // Anything else is still signed.
    client.attestation_nonce(&identity).unwrap();
    assert_eq!(
        how(&seen, "/api/v1/device/attestation/nonce"),
        ["signature"]
    );
    let metrics = world
        .http
        .get(world.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("rota_session_checkins_total ")),
        "the server counted session check-ins"
    );
}

#[test]
fn a_refused_session_is_followed_by_a_signed_request_and_a_new_session() {
    let world = World::start();
    let proxy = FaultProxy::start(&world.base);
    let client = ServerClient::new(world.http.clone(), &proxy.url(), AnswerLimits::default());
    let identity = enrolled(&world, &client, "sess-2");
    let first = check_in(&client, &identity, None);
    // The server forgets the session (it expired, or its secret changed): one 401.
    let refused = Arc::new(Mutex::new(false));
    let once = refused.clone();
    let seen = record(&proxy, move |path, by_mac| {
        let mut done = once.lock().unwrap();
        (path == "/api/v1/device/checkin" && by_mac && !*done).then(|| {
            *done = true;
            Action::Respond {
                status: 401,
                headers: vec![("content-type".into(), "application/json".into())],
                body: br#"{"error":"the session expired: open a new session"}"#.to_vec(),
            }
        })
    });
    let second = check_in(&client, &identity, Some(&first));
    assert_eq!(second, first, "the check-in succeeded, signed");
    check_in(&client, &identity, Some(&second));
    assert_eq!(
        how(&seen, "/api/v1/device/checkin"),
        ["mac", "signature", "mac"],
        "refused, signed again at once, then on a new session"
    );
    assert_eq!(how(&seen, SESSION_PATH), ["signature"], "a new session");
}

#[test]
fn a_server_without_sessions_is_signed_to_as_before() {
    let world = World::start();
    let proxy = FaultProxy::start(&world.base);
    let client = ServerClient::new(world.http.clone(), &proxy.url(), AnswerLimits::default());
    let identity = enrolled(&world, &client, "sess-3");
    let seen = record(&proxy, |path, _| {
        (path == SESSION_PATH).then(|| Action::Respond {
            status: 404,
            headers: vec![],
            body: b"not found".to_vec(),
        })
    });
    let first = check_in(&client, &identity, None);
    let second = check_in(&client, &identity, Some(&first));
    check_in(&client, &identity, Some(&second));
    assert!(!client.has_session("sess-3"));
    assert_eq!(how(&seen, "/api/v1/device/checkin"), ["signature"; 3]);
    assert_eq!(
        how(&seen, SESSION_PATH).len(),
        1,
        "asked once, not at every check-in"
    );
}
