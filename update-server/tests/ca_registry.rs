//! Manufacturer CA rollover and scheduled key rotation (issue 16), against a real server:
//! a new CA is introduced beside the old, the old one cannot be retired while a device
//! depends on it, the device rotates (re-certified by the device CA), the old CA is
//! retired and refused at enrolment from then on, and no device is locked out at any
//! point; across two replicas on PostgreSQL the retirement holds on both within a second.
//! A class's maximum certificate age makes the check-in ask for a rotation.

mod support;

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use rota_protocol::api::{
    DeviceRegister, ENROLL_PATH, Enroll, KeyRotated, KeyRotation, ROTATE_PATH, rotation_message,
};
use rota_protocol::{CertBody, Sign as _, SoftwareKey, issue};
use rota_server::device::directory::CACHE_TTL_MS;
use serde_json::{Value, json};
use support::server::{CLASS, Keys, TestDevice, TestServer, rand_seed};

/// Writes the operator's device CA key into `data_dir` and starts a server that uses it.
async fn start_with_device_ca(
    keys: &Keys,
    data_dir: &Path,
    device_ca: &SoftwareKey,
    database_url: Option<String>,
) -> TestServer {
    let path = data_dir.join("device-ca.key");
    std::fs::write(&path, device_ca.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    TestServer::start_in(keys, data_dir, database_url, |s| {
        s.device_ca_key = Some(path.display().to_string());
    })
    .await
}

/// A device certified by `ca` at `issued_at` (unix seconds).
fn device_of(ca: &SoftwareKey, id: &str, issued_at: u64) -> TestDevice {
    let key = SoftwareKey::from_ed25519_seed(rand_seed());
    let body = CertBody::new(
        &ca.public_key(),
        id,
        &key.public_key(),
        &CLASS.parse().unwrap(),
        vec![],
        issued_at,
    );
    TestDevice {
        id: id.into(),
        certificate: issue(ca, &body).unwrap(),
        key,
        version: 1,
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn key_id(ca: &SoftwareKey) -> String {
    hex::encode(ca.public_key().key_id())
}

/// The device enrols itself (a request signed by its certified key).
async fn enrol(server: &TestServer, device: &TestDevice) -> (StatusCode, String) {
    let body = serde_json::to_vec(&Enroll {
        certificate: device.certificate.clone(),
    })
    .unwrap();
    let resp = device
        .send(server, Method::POST, ENROLL_PATH, body, &[])
        .await;
    (resp.status(), resp.text().await.unwrap())
}

/// The device rotates its key through `POST /api/v1/device/rotate` (signed by its current
/// key, the new key's proof of possession); returns it with its new key and certificate.
async fn rotate(server: &TestServer, device: &TestDevice) -> TestDevice {
    let new_key = SoftwareKey::from_ed25519_seed(rand_seed());
    let proof = new_key
        .sign(&rotation_message(
            &device.id,
            &device.key.public_key(),
            &new_key.public_key(),
        ))
        .unwrap();
    let request = KeyRotation {
        public_key: hex::encode(new_key.public_key().as_bytes()),
        proof: proof.try_into().unwrap(),
        evidence: None,
    };
    let resp = device
        .send(
            server,
            Method::POST,
            ROTATE_PATH,
            serde_json::to_vec(&request).unwrap(),
            &[],
        )
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{}",
        resp.text().await.unwrap()
    );
    let rotated: KeyRotated = resp.json().await.unwrap();
    TestDevice {
        id: device.id.clone(),
        key: new_key,
        certificate: rotated.certificate,
        version: device.version,
    }
}

/// Whether the device is served: a check-in answered 200.
async fn works(server: &TestServer, device: &TestDevice) -> bool {
    device.checkin(server, None).await.0 == StatusCode::OK
}

/// Whether its check-in asks it to rotate.
async fn asked_to_rotate(server: &TestServer, device: &TestDevice) -> bool {
    let (status, _, answer) = device.checkin(server, None).await;
    assert_eq!(status, StatusCode::OK);
    answer.unwrap().rotate
}

fn add_body(ca: &SoftwareKey, name: &str) -> Value {
    json!({"public_key": ca.public_key_pem().unwrap(), "name": name})
}

fn ca_named<'a>(list: &'a Value, key_id: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["key_id"] == key_id)
        .unwrap_or_else(|| panic!("{key_id} is not listed: {list}"))
}

async fn past_the_cache() {
    tokio::time::sleep(Duration::from_millis(CACHE_TTL_MS as u64 + 200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manufacturer_ca_rollover_locks_no_device_out() {
    let keys = Keys::new();
    let device_ca = SoftwareKey::from_ed25519_seed(rand_seed());
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_device_ca(&keys, dir.path(), &device_ca, None).await;
    let old_ca = key_id(&keys.ca);
    let new_ca = SoftwareKey::from_ed25519_seed(rand_seed());

    // Registered at start-up: the directory's CA and the device CA.
    let list = server.admin(Method::GET, "/api/v1/cas", None).await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(ca_named(&list, &old_ca)["name"], "factory");
    assert_eq!(ca_named(&list, &old_ca)["state"], "active");
    assert_eq!(ca_named(&list, &key_id(&device_ca))["device_ca"], true);

    let old_device = TestDevice::new(&keys, "old-line-1", CLASS, &[]);
    server.register(&old_device).await;
    assert!(works(&server, &old_device).await);

    // Introduce the new CA; its devices enrol.
    let (status, added) = server
        .call(
            &server.admin,
            Method::POST,
            "/api/v1/cas",
            Some(add_body(&new_ca, "factory 2")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["key_id"], key_id(&new_ca));
    assert_eq!(added["state"], "active");
    let new_device = device_of(&new_ca, "new-line-1", now_s());
    assert_eq!(enrol(&server, &new_device).await.0, StatusCode::CREATED);
    assert!(works(&server, &new_device).await);

    // The old CA cannot be retired while a device's current certificate is its own.
    let retire_old = format!("/api/v1/cas/{old_ca}/retire");
    let (status, refusal) = server
        .call(&server.admin, Method::POST, &retire_old, None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refusal}");
    let why = refusal["error"].as_str().unwrap();
    assert!(
        why.contains("certificates of 1 device that") && why.contains("old-line-1"),
        "{why}"
    );
    let dependents = server
        .admin(Method::GET, &format!("/api/v1/cas/{old_ca}/devices"), None)
        .await;
    assert_eq!(dependents.as_array().unwrap().len(), 1, "{dependents}");
    assert_eq!(dependents[0]["id"], "old-line-1");
    let list = server.admin(Method::GET, "/api/v1/cas", None).await;
    assert_eq!(ca_named(&list, &old_ca)["devices"], 1, "{list}");
    assert_eq!(ca_named(&list, &key_id(&new_ca))["devices"], 1, "{list}");

    // The device rotates: the device CA re-certifies it, and it keeps working.
    let old_device = rotate(&server, &old_device).await;
    let claims = old_device.certificate.claims_unverified().unwrap();
    assert_eq!(claims.issuer, key_id(&device_ca));
    assert!(works(&server, &old_device).await);

    // Now nothing depends on the old CA: it is retired.
    let retired = server.admin(Method::POST, &retire_old, None).await;
    assert_eq!(retired["state"], "retired", "{retired}");
    assert!(retired["retired_at"].is_u64(), "{retired}");
    assert_eq!(retired["devices"], 0);

    // Its certificates are refused at enrolment and at registration, saying why.
    let late = TestDevice::new(&keys, "old-line-2", CLASS, &[]);
    let (status, text) = enrol(&server, &late).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("retired") && text.contains(&old_ca), "{text}");
    let body = serde_json::to_value(DeviceRegister {
        certificate: late.certificate.clone(),
    })
    .unwrap();
    let (status, refusal) = server
        .call(&server.admin, Method::POST, "/api/v1/devices", Some(body))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refusal}");
    assert!(
        refusal["error"].as_str().unwrap().contains("retired"),
        "{refusal}"
    );

    // No device was locked out.
    assert!(works(&server, &old_device).await);
    assert!(works(&server, &new_device).await);

    // Refusals: the device CA, a retired CA, an unknown id, a duplicate, a malformed key,
    // a bad name; an operator may neither add nor retire.
    for (path, expected) in [
        (
            format!("/api/v1/cas/{}/retire", key_id(&device_ca)),
            StatusCode::CONFLICT,
        ),
        (retire_old.clone(), StatusCode::CONFLICT),
        (
            format!("/api/v1/cas/{}/retire", "0".repeat(64)),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/v1/cas/{}/devices", "0".repeat(64)),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let method = if path.ends_with("retire") {
            Method::POST
        } else {
            Method::GET
        };
        let (status, body) = server.call(&server.admin, method, &path, None).await;
        assert_eq!(status, expected, "{path}: {body}");
    }
    for (bad, expected) in [
        (add_body(&new_ca, "again"), StatusCode::CONFLICT),
        (
            json!({"public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "name": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"public_key": "ab".repeat(31), "name": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"public_key": keys.ca.to_pkcs8_pem().unwrap().as_str(), "name": "a private key"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            add_body(&SoftwareKey::from_ed25519_seed(rand_seed()), "line\nbreak"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, body) = server
            .call(
                &server.admin,
                Method::POST,
                "/api/v1/cas",
                Some(bad.clone()),
            )
            .await;
        assert_eq!(status, expected, "{bad}: {body}");
    }
    let operator = server.token("operator").await;
    let third = SoftwareKey::from_ed25519_seed(rand_seed());
    let (status, _) = server
        .call(
            &operator,
            Method::POST,
            "/api/v1/cas",
            Some(add_body(&third, "factory 3")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server
        .call(
            &operator,
            Method::POST,
            &format!("/api/v1/cas/{}/retire", key_id(&new_ca)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, list) = server
        .call(&operator, Method::GET, "/api/v1/cas", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");

    // Audited.
    let audit = server.admin(Method::GET, "/api/v1/audit", None).await;
    let details: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    for expected in [
        format!("introduced device CA {} (factory 2)", key_id(&new_ca)),
        format!("retired device CA {old_ca} (factory)"),
    ] {
        assert!(details.contains(&expected.as_str()), "{expected}: {audit}");
    }

    // A restart registers the directory's CA again, but does not revive it.
    server.stop().await;
    let server = start_with_device_ca(&keys, dir.path(), &device_ca, None).await;
    let list = server.admin(Method::GET, "/api/v1/cas", None).await;
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    assert_eq!(ca_named(&list, &old_ca)["state"], "retired");
    assert_eq!(enrol(&server, &late).await.0, StatusCode::FORBIDDEN);
    assert!(works(&server, &old_device).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retiring_through_one_replica_is_refused_by_the_other_within_a_second() {
    let keys = Keys::new();
    let device_ca = SoftwareKey::from_ed25519_seed(rand_seed());
    let url = support::postgres_schema_url().await;
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let a = start_with_device_ca(&keys, dir_a.path(), &device_ca, Some(url.clone())).await;
    std::fs::copy(
        dir_a.path().join("admin.token"),
        dir_b.path().join("admin.token"),
    )
    .unwrap();
    let b = start_with_device_ca(&keys, dir_b.path(), &device_ca, Some(url)).await;
    let old_ca = key_id(&keys.ca);
    let new_ca = SoftwareKey::from_ed25519_seed(rand_seed());

    let device = TestDevice::new(&keys, "pg-old-1", CLASS, &[]);
    assert_eq!(enrol(&b, &device).await.0, StatusCode::CREATED);
    // Replica b trusts the new CA within a second of its introduction through a.
    a.admin(
        Method::POST,
        "/api/v1/cas",
        Some(add_body(&new_ca, "factory 2")),
    )
    .await;
    past_the_cache().await;
    let new_device = device_of(&new_ca, "pg-new-1", now_s());
    assert_eq!(enrol(&b, &new_device).await.0, StatusCode::CREATED);

    // Refused through either replica while the device depends on the old CA.
    let retire_old = format!("/api/v1/cas/{old_ca}/retire");
    let (status, refusal) = b.call(&b.admin, Method::POST, &retire_old, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refusal}");
    assert!(
        refusal["error"].as_str().unwrap().contains("pg-old-1"),
        "{refusal}"
    );

    // It rotates through b; the old CA is retired through a, and b refuses its
    // certificates within a second, while the device works on both.
    let device = rotate(&b, &device).await;
    a.admin(Method::POST, &retire_old, None).await;
    past_the_cache().await;
    let late = TestDevice::new(&keys, "pg-old-2", CLASS, &[]);
    let (status, text) = enrol(&b, &late).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("retired"), "{text}");
    for server in [&a, &b] {
        assert!(works(server, &device).await);
        assert!(works(server, &new_device).await);
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rotation_asks_devices_whose_certificates_are_older_than_the_class_allows() {
    let keys = Keys::new();
    let device_ca = SoftwareKey::from_ed25519_seed(rand_seed());
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_device_ca(&keys, dir.path(), &device_ca, None).await;
    let old = device_of(&keys.ca, "aged-1", now_s() - 40 * 86_400);
    let fresh = device_of(&keys.ca, "fresh-1", now_s());
    for device in [&old, &fresh] {
        server.register(device).await;
    }
    // Without a policy nobody is asked.
    assert!(!asked_to_rotate(&server, &old).await);

    let path = format!("/api/v1/classes/{CLASS}/rotation");
    let operator = server.token("operator").await;
    let (status, set) = server
        .call(
            &operator,
            Method::PUT,
            &path,
            Some(json!({"max_certificate_age_days": 30})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    let got = server.admin(Method::GET, &path, None).await;
    assert_eq!(got["max_certificate_age_days"], 30);
    assert!(asked_to_rotate(&server, &old).await);
    assert!(!asked_to_rotate(&server, &fresh).await);

    // Once it rotated, its certificate is new and it is not asked again.
    let old = rotate(&server, &old).await;
    assert!(!asked_to_rotate(&server, &old).await);

    // An operator's request asks a device with a fresh certificate too.
    server
        .admin(Method::POST, "/api/v1/devices/fresh-1/rotate", None)
        .await;
    assert!(asked_to_rotate(&server, &fresh).await);

    // Cleared: no schedule.
    let aged = device_of(&keys.ca, "aged-2", 0);
    server.register(&aged).await;
    assert!(asked_to_rotate(&server, &aged).await);
    server
        .admin(
            Method::PUT,
            &path,
            Some(json!({"max_certificate_age_days": null})),
        )
        .await;
    assert!(!asked_to_rotate(&server, &aged).await);
    assert_eq!(
        server.admin(Method::GET, &path, None).await["max_certificate_age_days"],
        Value::Null
    );

    // Bad input, and a viewer may not set it.
    for (path, body) in [
        (path.clone(), json!({"max_certificate_age_days": 0})),
        (path.clone(), json!({"max_certificate_age_days": 100_000})),
        (path.clone(), json!({"max_age": 3})),
        (
            "/api/v1/classes/not-a-uuid/rotation".to_string(),
            json!({"max_certificate_age_days": 3}),
        ),
    ] {
        let (status, answer) = server
            .call(&server.admin, Method::PUT, &path, Some(body.clone()))
            .await;
        assert!(status.is_client_error(), "{body}: {status} {answer}");
    }
    let viewer = server.token("viewer").await;
    let (status, _) = server
        .call(
            &viewer,
            Method::PUT,
            &path,
            Some(json!({"max_certificate_age_days": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    server.stop().await;

    // A server without a device CA cannot rotate keys, so it takes no schedule.
    let plain = TestServer::start(&keys, None).await;
    let (status, answer) = plain
        .call(
            &plain.admin,
            Method::PUT,
            &path,
            Some(json!({"max_certificate_age_days": 30})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    plain.stop().await;
}
