//! Revocation across two replicas on one PostgreSQL database: a device key, a certificate
//! and a CA's certificates issued after a time, each revoked through one replica and
//! refused by the other within the device cache's lifetime (one second); the devices a CA
//! revocation refuses are listed; a revoked certificate cannot enrol again.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use rota_protocol::api::ENROLL_PATH;
use rota_protocol::{CertBody, Sign as _, SoftwareKey, issue};
use rota_server::device::directory::CACHE_TTL_MS;
use serde_json::{Value, json};
use support::server::{CLASS, Keys, TestDevice, TestServer, rand_seed};

/// A device whose certificate says it was issued at `issued_at` (unix seconds).
fn device_issued_at(keys: &Keys, id: &str, issued_at: u64) -> TestDevice {
    let key = SoftwareKey::from_ed25519_seed(rand_seed());
    let body = CertBody::new(
        &keys.ca.public_key(),
        id,
        &key.public_key(),
        &CLASS.parse().unwrap(),
        vec![],
        issued_at,
    );
    TestDevice {
        id: id.into(),
        certificate: issue(&keys.ca, &body).unwrap(),
        key,
        version: 1,
    }
}

async fn revoke(server: &TestServer, body: Value) -> (StatusCode, Value) {
    server
        .call(
            &server.admin,
            Method::POST,
            "/api/v1/revocations",
            Some(body),
        )
        .await
}

/// Past the device cache's lifetime: every replica now reads the revocation.
async fn past_the_cache() {
    tokio::time::sleep(Duration::from_millis(CACHE_TTL_MS as u64 + 200)).await;
}

async fn checkin_status(device: &TestDevice, server: &TestServer) -> StatusCode {
    device.checkin(server, None).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_through_one_replica_are_refused_by_the_other_within_a_second() {
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
    let b = TestServer::start_in(&keys, dir_b.path(), Some(url.clone()), |_| {}).await;

    let by_key = TestDevice::new(&keys, "rev-key", CLASS, &[]);
    let by_cert = TestDevice::new(&keys, "rev-cert", CLASS, &[]);
    let old_line = device_issued_at(&keys, "old-line", 1_000_000);
    let new_line = device_issued_at(&keys, "new-line", 2_000_000);
    for device in [&by_key, &by_cert, &old_line, &new_line] {
        a.register(device).await;
        // Every device works through replica b, and b has it cached now.
        assert_eq!(
            checkin_status(device, &b).await,
            StatusCode::OK,
            "{}",
            device.id
        );
    }

    // A device key.
    let (status, revoked) = revoke(
        &a,
        json!({
            "kind": "device_key",
            "subject": hex::encode(by_key.key.public_key().as_bytes()),
            "reason": "key extracted from a returned unit",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{revoked}");
    assert_eq!(revoked["devices"], 1, "{revoked}");
    past_the_cache().await;
    let resp = by_key
        .send(&b, Method::GET, "/api/v1/device/self", Vec::new(), &[])
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("key extracted from a returned unit"),
        "{text}"
    );
    assert_eq!(checkin_status(&by_cert, &b).await, StatusCode::OK);

    // One certificate.
    let (status, _) = revoke(
        &b,
        json!({
            "kind": "certificate",
            "subject": hex::encode(by_cert.certificate.fingerprint()),
            "reason": "issued in error",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    past_the_cache().await;
    assert_eq!(checkin_status(&by_cert, &a).await, StatusCode::FORBIDDEN);

    // A CA's certificates issued at or after a time: a compromised factory line.
    let (status, ca) = revoke(
        &a,
        json!({
            "kind": "ca",
            "subject": hex::encode(keys.ca.public_key().key_id()),
            "issued_after": 1_500_000,
            "reason": "factory line 2 compromised",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{ca}");
    past_the_cache().await;
    assert_eq!(checkin_status(&new_line, &b).await, StatusCode::FORBIDDEN);
    assert_eq!(checkin_status(&old_line, &b).await, StatusCode::OK);
    // The devices it refuses, listed: the new line's, and the earlier revocations' own
    // devices are not counted under it.
    let (status, affected) = b
        .call(
            &b.admin,
            Method::GET,
            &format!("/api/v1/revocations/{}/devices", ca["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = affected
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    // rev-key and rev-cert were issued at 0, before the time.
    assert_eq!(ids, ["new-line"], "{affected}");

    // A revoked certificate cannot enrol, through either replica.
    let body = serde_json::to_vec(&rota_protocol::api::Enroll {
        certificate: new_line.certificate.clone(),
    })
    .unwrap();
    let resp = new_line
        .send(&a, Method::POST, ENROLL_PATH, body, &[])
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.text().await.unwrap().contains("revoked"));

    // Listed, newest first; the same revocation twice is a conflict; bad input is a 400.
    let (_, list) = a
        .call(&a.admin, Method::GET, "/api/v1/revocations", None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    assert_eq!(list[0]["kind"], "ca");
    let (status, _) = revoke(
        &b,
        json!({
            "kind": "certificate",
            "subject": hex::encode(by_cert.certificate.fingerprint()),
            "reason": "again",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    for bad in [
        json!({"kind": "device_key", "subject": "xyz", "reason": "r"}),
        json!({"kind": "certificate", "subject": "00".repeat(32), "reason": ""}),
        json!({"kind": "certificate", "subject": "00".repeat(32), "issued_after": 1, "reason": "r"}),
        json!({"kind": "firmware", "subject": "00".repeat(32), "reason": "r"}),
    ] {
        let (status, body) = revoke(&a, bad.clone()).await;
        assert!(status.is_client_error(), "{bad}: {status} {body}");
    }
    // An operator token may not revoke.
    let operator = a.token("operator").await;
    let (status, _) = a
        .call(
            &operator,
            Method::POST,
            "/api/v1/revocations",
            Some(json!({"kind": "ca", "subject": "00".repeat(32), "reason": "r"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    a.stop().await;
    b.stop().await;
}
