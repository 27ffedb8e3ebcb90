//! A real rota-server on a loopback port, with the offline keys a release engineer and a
//! manufacturer would hold, and devices that sign their requests.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode};
use rota_protocol::api::{
    CheckInQuery, CheckInResponse, DeviceRegister, LastResult, Report, ReportKind, SlotState,
};
use rota_protocol::{CertBody, DeviceCertificate, Sign as _, SoftwareKey, issue};
use rota_repo::{RepoKey, RoleKeys, RootParams, RotaTarget, TargetFile};
use rota_server::config::Settings;
use serde_json::Value;

use super::process::{device_report, device_send, management_call};

pub const CLASS: &str = "8a1c3c1e-3b2a-4f5e-9d3a-0c1b2a3d4e5f";
pub const OTHER_CLASS: &str = "0b2d4f6a-8c0e-4a1b-9c3d-5e7f9a1b3c5d";

/// The keys that live outside the server: TUF root and targets (offline), the manufacturer
/// CA, and the online keys handed to the server.
pub struct Keys {
    pub root: RepoKey,
    pub targets: RepoKey,
    pub snapshot: RepoKey,
    pub timestamp: RepoKey,
    pub ca: SoftwareKey,
}

impl Keys {
    pub fn new() -> Keys {
        Keys {
            root: RepoKey::generate().unwrap(),
            targets: RepoKey::generate().unwrap(),
            snapshot: RepoKey::generate().unwrap(),
            timestamp: RepoKey::generate().unwrap(),
            ca: SoftwareKey::from_ed25519_seed(rand_seed()),
        }
    }

    /// Writes the server's share into `data_dir`: the online keys and the CA's public key.
    pub fn install(&self, data_dir: &Path) {
        let online = data_dir.join("tuf-online-keys");
        std::fs::create_dir_all(&online).unwrap();
        std::fs::write(
            online.join("snapshot.key"),
            self.snapshot.to_pkcs8_pem().unwrap().as_bytes(),
        )
        .unwrap();
        std::fs::write(
            online.join("timestamp.key"),
            self.timestamp.to_pkcs8_pem().unwrap().as_bytes(),
        )
        .unwrap();
        let cas = data_dir.join("device-ca");
        std::fs::create_dir_all(&cas).unwrap();
        let pem = self.ca.public_key_pem().unwrap();
        std::fs::write(cas.join("factory.pub"), pem).unwrap();
    }

    pub fn root_v1(&self) -> Vec<u8> {
        let params = RootParams {
            root: RoleKeys::new(vec![self.root.public().clone()], 1),
            targets: RoleKeys::new(vec![self.targets.public().clone()], 1),
            snapshot: RoleKeys::new(vec![self.snapshot.public().clone()], 1),
            timestamp: RoleKeys::new(vec![self.timestamp.public().clone()], 1),
            expires: SystemTime::now() + Duration::from_secs(365 * 86400),
        };
        rota_repo::init_root(&params, &[&self.root]).unwrap().bytes
    }
}

pub fn rand_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    seed
}

/// A server running in this test process.
pub struct TestServer {
    pub base: String,
    pub admin: String,
    pub data_dir: PathBuf,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _temp: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server on embedded defaults (SQLite in a new data directory), or on `database_url`.
    pub async fn start(keys: &Keys, database_url: Option<String>) -> TestServer {
        let temp = tempfile::tempdir().unwrap();
        let mut server = TestServer::start_in(keys, temp.path(), database_url, |_| {}).await;
        server._temp = Some(temp);
        server
    }

    /// A server on embedded defaults or on `database_url`, with `adjust` applied to its
    /// settings.
    pub async fn start_with(
        keys: &Keys,
        database_url: Option<String>,
        adjust: impl FnOnce(&mut Settings),
    ) -> TestServer {
        let temp = tempfile::tempdir().unwrap();
        let mut server = TestServer::start_in(keys, temp.path(), database_url, adjust).await;
        server._temp = Some(temp);
        server
    }

    /// A server in `data_dir`, with `adjust` applied to its settings.
    pub async fn start_in(
        keys: &Keys,
        data_dir: &Path,
        database_url: Option<String>,
        adjust: impl FnOnce(&mut Settings),
    ) -> TestServer {
        keys.install(data_dir);
        let mut settings = Settings {
            data_dir: Some(data_dir.to_path_buf()),
            database_url,
            tick: Some(50),
            ..Default::default()
        };
        adjust(&mut settings);
        let config = settings.resolve(None).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(rota_server::serve(config, listener, async move {
            let _ = rx.await;
        }));
        let http = reqwest::Client::new();
        // Ready when /healthz answers; the admin token exists by then.
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let admin = admin_token(data_dir);
        TestServer {
            base,
            admin,
            data_dir: data_dir.to_path_buf(),
            http,
            shutdown: Some(tx),
            task: Some(task),
            _temp: None,
        }
    }

    /// Stops the server gracefully.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A management request with `token`.
    /// The Prometheus exposition at `/metrics`.
    pub async fn metrics(&self) -> String {
        let resp = self.http.get(self.url("/metrics")).send().await.unwrap();
        resp.text().await.unwrap()
    }

    pub async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        management_call(&self.http, &self.base, token, method, path, body)
            .await
            .unwrap()
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(&self.admin, method, path, body).await;
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    }

    /// A new token of `role`.
    pub async fn token(&self, role: &str) -> String {
        let v = self
            .admin(
                Method::POST,
                "/api/v1/tokens",
                Some(serde_json::json!({"name": role, "role": role})),
            )
            .await;
        v["token"].as_str().unwrap().to_string()
    }

    /// Uploads a new root and an empty targets metadata.
    pub async fn init_repo(&self, keys: &Keys) {
        self.init_repo_with_root(keys, &keys.root_v1()).await;
    }

    /// Uploads `root` (version 1) and an empty targets metadata.
    pub async fn init_repo_with_root(&self, keys: &Keys, root: &[u8]) {
        put_created(
            &self.http,
            self.url("/api/v1/repo/root"),
            &self.admin,
            root.to_vec(),
        )
        .await;
        let targets = rota_repo::sign_targets(None, &[], &[&keys.targets], far_future()).unwrap();
        self.put_targets(&targets.bytes).await;
    }

    pub async fn current_targets(&self) -> Vec<u8> {
        let resp = self
            .http
            .get(self.url("/tuf/metadata/targets.json"))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
        resp.bytes().await.unwrap().to_vec()
    }

    pub async fn put_targets(&self, bytes: &[u8]) {
        put_created(
            &self.http,
            self.url("/api/v1/repo/targets"),
            &self.admin,
            bytes.to_vec(),
        )
        .await;
    }

    pub async fn upload(&self, bytes: &[u8]) {
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
        let resp = self
            .http
            .put(self.url(&format!("/api/v1/artifacts/{sha}")))
            .bearer_auth(&self.admin)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    }

    /// Publishes firmware `version` for `class` (image and envelope targets) and returns
    /// the release id.
    pub async fn publish(&self, keys: &Keys, class: &str, version: u64, image: &[u8]) -> String {
        let name = format!("fw-{class}-{version}.bin");
        let envelope_name = format!("{name}.suit");
        let envelope = format!("envelope of {name}").into_bytes();
        self.upload(image).await;
        self.upload(&envelope).await;
        let image_target = TargetFile::from_bytes(
            name.clone(),
            image,
            RotaTarget::Image {
                class_id: class.parse().unwrap(),
                version,
                security_version: version,
                envelope: envelope_name.clone(),
            }
            .to_custom(),
        );
        let envelope_target = TargetFile::from_bytes(
            envelope_name,
            &envelope,
            RotaTarget::Envelope {
                image: name.clone(),
            }
            .to_custom(),
        );
        let current = self.current_targets().await;
        let signed = rota_repo::sign_targets(
            Some(&current),
            &[image_target, envelope_target],
            &[&keys.targets],
            far_future(),
        )
        .unwrap();
        self.put_targets(&signed.bytes).await;
        let releases = self.admin(Method::GET, "/api/v1/releases", None).await;
        releases
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["target"] == name)
            .map(|r| r["id"].as_str().unwrap().to_string())
            .unwrap()
    }

    /// Registers `device` through the management API.
    pub async fn register(&self, device: &TestDevice) {
        let body = serde_json::to_value(DeviceRegister {
            certificate: device.certificate.clone(),
        })
        .unwrap();
        let (status, value) = self
            .call(&self.admin, Method::POST, "/api/v1/devices", Some(body))
            .await;
        assert!(status.is_success(), "{status} {value}");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A PUT of `body` to `url` with `token` that must be answered 201 Created (a new root,
/// targets or artifact, not one already stored).
pub async fn put_created(http: &reqwest::Client, url: String, token: &str, body: Vec<u8>) {
    let resp = http
        .put(url)
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
}

pub fn far_future() -> SystemTime {
    SystemTime::now() + Duration::from_secs(180 * 86400)
}

pub fn admin_token(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_string()
}

/// A device with a manufacturer certificate, signing its requests.
#[derive(Clone)]
pub struct TestDevice {
    pub id: String,
    pub key: SoftwareKey,
    pub certificate: DeviceCertificate,
    pub version: u64,
}

impl TestDevice {
    pub fn new(keys: &Keys, id: &str, class: &str, tags: &[&str]) -> TestDevice {
        Self::with_key(
            keys,
            id,
            class,
            tags,
            SoftwareKey::from_ed25519_seed(rand_seed()),
        )
    }

    /// A device whose identity key is `key` (a P-256 key, as a TPM holds).
    pub fn with_key(
        keys: &Keys,
        id: &str,
        class: &str,
        tags: &[&str],
        key: SoftwareKey,
    ) -> TestDevice {
        let body = CertBody::new(
            &keys.ca.public_key(),
            id,
            &key.public_key(),
            &class.parse().unwrap(),
            tags.iter().map(|t| t.to_string()).collect(),
            0,
        );
        let certificate = issue(&keys.ca, &body).unwrap();
        TestDevice {
            id: id.to_string(),
            key,
            certificate,
            version: 1,
        }
    }

    /// Sends a signed request.
    pub async fn send(
        &self,
        server: &TestServer,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        device_send(
            &server.http,
            &server.base,
            self,
            method,
            path_and_query,
            body,
            extra,
        )
        .await
        .unwrap()
    }

    /// A check-in; returns the status, the entity tag and the answer (None on 304).
    pub async fn checkin(
        &self,
        server: &TestServer,
        etag: Option<&str>,
    ) -> (StatusCode, String, Option<CheckInResponse>) {
        let query = CheckInQuery {
            version: self.version,
            slot: SlotState::Confirmed,
            last: Some(LastResult::None),
        };
        let extra: Vec<(&str, &str)> = etag.map(|e| ("if-none-match", e)).into_iter().collect();
        let resp = self
            .send(
                server,
                Method::GET,
                &query.path_and_query(),
                Vec::new(),
                &extra,
            )
            .await;
        let status = resp.status();
        let tag = resp
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = if status == StatusCode::OK {
            Some(resp.json().await.unwrap())
        } else {
            None
        };
        (status, tag, body)
    }

    /// A report; returns the status and the parsed body.
    pub async fn report(&self, server: &TestServer, report: &Report) -> (StatusCode, Value) {
        device_report(&server.http, &server.base, self, report)
            .await
            .unwrap()
    }

    pub fn event(kind: ReportKind, version: u64, rollout: &str, reason: Option<&str>) -> Report {
        Report::new(
            kind,
            version,
            Some(rollout.to_string()),
            reason.map(String::from),
        )
        .unwrap()
    }
}
