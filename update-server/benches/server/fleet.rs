//! What the bench does as a release engineer, an operator and a fleet: the keys kept
//! outside the server, the repository's first root and targets, releases, rollouts, and
//! devices that sign their requests (as `tests/support/server.rs` does, over HTTP to a
//! separate server process).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use rota_protocol::api::{CheckInQuery, LastResult, SlotState};
use rota_protocol::session::{SessionKey, mac_request};
use rota_protocol::{
    CertBody, DeviceCertificate, Nonce, Sign as _, SoftwareKey, issue, sign_request,
};
use rota_repo::{RepoKey, RoleKeys, RootParams, RotaTarget, TargetFile};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The keys that live outside the server: TUF root and targets (offline), the online
/// snapshot and timestamp keys handed to the server, and the manufacturer CA.
pub struct Keys {
    pub root: RepoKey,
    pub targets: RepoKey,
    pub snapshot: RepoKey,
    pub timestamp: RepoKey,
    pub ca: SoftwareKey,
}

impl Keys {
    pub fn new() -> Result<Keys> {
        Ok(Keys {
            root: RepoKey::generate()?,
            targets: RepoKey::generate()?,
            snapshot: RepoKey::generate()?,
            timestamp: RepoKey::generate()?,
            ca: SoftwareKey::from_ed25519_seed(seed()?),
        })
    }

    /// Writes the server's share into its data directory: the online keys and the CA's
    /// public key, where the embedded defaults look for them.
    pub fn install(&self, data_dir: &Path) -> Result<()> {
        let online = data_dir.join("tuf-online-keys");
        std::fs::create_dir_all(&online)?;
        std::fs::write(
            online.join("snapshot.key"),
            self.snapshot.to_pkcs8_pem()?.as_bytes(),
        )?;
        std::fs::write(
            online.join("timestamp.key"),
            self.timestamp.to_pkcs8_pem()?.as_bytes(),
        )?;
        let cas = data_dir.join("device-ca");
        std::fs::create_dir_all(&cas)?;
        let pem = self.ca.public_key_pem()?;
        std::fs::write(cas.join("factory.pub"), pem)?;
        Ok(())
    }

    fn root_v1(&self) -> Result<Vec<u8>> {
        let params = RootParams {
            root: RoleKeys::new(vec![self.root.public().clone()], 1),
            targets: RoleKeys::new(vec![self.targets.public().clone()], 1),
            snapshot: RoleKeys::new(vec![self.snapshot.public().clone()], 1),
            timestamp: RoleKeys::new(vec![self.timestamp.public().clone()], 1),
            expires: SystemTime::now() + Duration::from_secs(365 * 86400),
        };
        Ok(rota_repo::init_root(&params, &[&self.root])?.bytes)
    }
}

pub fn seed() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(seed)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn far_future() -> SystemTime {
    SystemTime::now() + Duration::from_secs(180 * 86400)
}

/// The management API as the admin.
pub struct Admin {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Admin {
    pub fn new(addr: SocketAddr, data_dir: &Path) -> Result<Admin> {
        let path = data_dir.join("admin.token");
        let token = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the first admin token {}", path.display()))?
            .trim()
            .to_string();
        Ok(Admin {
            base: format!("http://{addr}"),
            token,
            http: reqwest::Client::new(),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Value> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("{what}: no answer"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{what}: {status} {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        self.send(req, &format!("{method} {path}")).await
    }

    async fn put_bytes(&self, path: &str, bytes: Vec<u8>) -> Result<Value> {
        let req = self.http.put(format!("{}{path}", self.base)).body(bytes);
        self.send(req, &format!("PUT {path}")).await
    }

    /// The first root and an empty targets metadata, as `rota repo push` does.
    pub async fn init_repo(&self, keys: &Keys) -> Result<()> {
        self.put_bytes("/api/v1/repo/root", keys.root_v1()?).await?;
        let targets = rota_repo::sign_targets(None, &[], &[&keys.targets], far_future())?;
        self.put_bytes("/api/v1/repo/targets", targets.bytes)
            .await?;
        Ok(())
    }

    /// Publishes `image` as firmware `version` of `class` (image and envelope targets);
    /// returns the release id and the image's TUF target name.
    pub async fn publish(
        &self,
        keys: &Keys,
        class: &str,
        version: u64,
        image: &[u8],
    ) -> Result<(String, String)> {
        let name = format!("fw-{class}-{version}.bin");
        let envelope_name = format!("{name}.suit");
        let envelope = format!("envelope of {name}").into_bytes();
        for bytes in [image, &envelope[..]] {
            let sha = hex::encode(Sha256::digest(bytes));
            self.put_bytes(&format!("/api/v1/artifacts/{sha}"), bytes.to_vec())
                .await?;
        }
        let image_target = TargetFile::from_bytes(
            name.clone(),
            image,
            RotaTarget::Image {
                class_id: class.parse()?,
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
        let current = self
            .http
            .get(format!("{}/tuf/metadata/targets.json", self.base))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let signed = rota_repo::sign_targets(
            Some(&current),
            &[image_target, envelope_target],
            &[&keys.targets],
            far_future(),
        )?;
        self.put_bytes("/api/v1/repo/targets", signed.bytes).await?;
        let releases = self
            .json(reqwest::Method::GET, "/api/v1/releases", None)
            .await?;
        let id = releases
            .as_array()
            .and_then(|all| all.iter().find(|r| r["target"] == name))
            .and_then(|r| r["id"].as_str())
            .with_context(|| format!("release {name} is not listed after publishing"))?;
        Ok((id.to_string(), name))
    }

    /// Creates a rollout; returns its id.
    pub async fn rollout(&self, body: Value) -> Result<String> {
        let status = self
            .json(reqwest::Method::POST, "/api/v1/rollouts", Some(body))
            .await?;
        Ok(status["id"]
            .as_str()
            .context("the created rollout has no id")?
            .to_string())
    }

    pub async fn rollout_status(&self, id: &str) -> Result<Value> {
        self.json(
            reqwest::Method::GET,
            &format!("/api/v1/rollouts/{id}"),
            None,
        )
        .await
    }

    /// Registers `devices`, a few at a time.
    pub async fn register_all(&self, devices: &[Device]) -> Result<()> {
        let results: Vec<Result<Value>> = futures::stream::iter(devices)
            .map(|d| {
                self.json(
                    reqwest::Method::POST,
                    "/api/v1/devices",
                    Some(json!({ "certificate": d.certificate })),
                )
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for r in results {
            r?;
        }
        Ok(())
    }
}

/// A rollout policy as JSON.
pub fn rollout_body(
    release: &str,
    class: &str,
    tags: &[&str],
    stages: Value,
    failure_threshold: f64,
    min_sample: u32,
) -> Value {
    json!({
        "release_id": release,
        "selector": { "class_id": class, "tags": tags, "versions": [] },
        "stages": stages,
        "success_gate": 1.0,
        "failure_threshold": failure_threshold,
        "min_sample": min_sample,
        "device_timeout_s": 86400,
        "soak_s": 0,
        "max_retries": 0,
    })
}

/// A device with a manufacturer certificate, running firmware version 1.
#[derive(Clone)]
pub struct Device {
    pub id: String,
    pub key: SoftwareKey,
    pub certificate: DeviceCertificate,
}

impl Device {
    pub fn new(keys: &Keys, id: &str, class: &str, tags: &[&str]) -> Result<Device> {
        let key = SoftwareKey::from_ed25519_seed(seed()?);
        let body = CertBody::new(
            &keys.ca.public_key(),
            id,
            &key.public_key(),
            &class.parse()?,
            tags.iter().map(|t| t.to_string()).collect(),
            0,
        );
        let certificate = issue(&keys.ca, &body)?;
        Ok(Device {
            id: id.to_string(),
            key,
            certificate,
        })
    }

    /// The four signed `Rota-*` headers for one request, with a fresh nonce.
    pub fn sign(&self, method: &str, path_and_query: &str, body: &[u8]) -> Result<HeaderMap> {
        let signed = sign_request(
            &self.key,
            &self.id,
            method,
            path_and_query,
            body,
            now_ms(),
            Nonce::random().map_err(|e| anyhow::anyhow!("no randomness: {e}"))?,
        )?;
        header_map(signed.iter())
    }

    /// The five `Rota-*` headers of one request on `session`, with a fresh nonce.
    pub fn mac(
        &self,
        session: &Session,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<HeaderMap> {
        let headers = mac_request(
            &session.key,
            &session.token,
            &self.id,
            method,
            path_and_query,
            body,
            now_ms(),
            Nonce::random().map_err(|e| anyhow::anyhow!("no randomness: {e}"))?,
        );
        header_map(headers.iter())
    }
}

/// A device's check-in session (`rota_protocol::session`): its key and token.
#[derive(Clone)]
pub struct Session {
    pub key: SessionKey,
    pub token: String,
}

fn header_map(pairs: impl Iterator<Item = (&'static str, String)>) -> Result<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(7);
    for (name, value) in pairs {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(&value)?,
        );
    }
    Ok(headers)
}

/// The check-in a device running version 1, confirmed, with no update attempted, sends.
pub fn checkin_path() -> String {
    CheckInQuery {
        version: 1,
        slot: SlotState::Confirmed,
        last: Some(LastResult::None),
    }
    .path_and_query()
}
