//! The world rota's system tests run in: a real rota-server (SQLite, in-process, on a
//! loopback port), the offline keys a release engineer and a manufacturer hold, signed
//! releases of simulated firmware, fleets of simulated devices, and a fault-injecting
//! proxy ([`proxy`]). Used by `tests/system/` and by rota-agent's tests of its binary
//! and its bench.

pub mod proxy;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use reqwest::blocking::Client;
use rota_agent::Config;
use rota_agent::backoff::Backoff;
use rota_agent::device::Identity;
use rota_agent::device::sim::{Factory, SimDevice};
use rota_agent::firmware::SimFirmware;
use rota_agent::fleet::{Fleet, FleetSpec, provision_key};
use rota_manifest::PublicKey;
use rota_manifest::builder::ImageManifest;
use rota_manifest::signer::{Sign, SoftwareKey};
use rota_protocol::api::{RolloutCreate, RolloutState, RolloutStatus, Selector, Stage};
use rota_repo::{RepoKey, RoleKeys, RootParams, RotaTarget, TargetFile};
use rota_server::config::Settings;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const VENDOR: [u8; 16] = *b"rota-e2e-vendor!";
pub const CLASS: [u8; 16] = *b"rota-e2e-class-1";
pub const OTHER_CLASS: [u8; 16] = *b"rota-e2e-class-2";
/// Image size of the fleet tests' firmware, and the slot capacity of their devices.
pub const IMAGE_SIZE: usize = 48 * 1024;
pub const CAPACITY: u32 = 64 * 1024;

pub fn class_text(class: [u8; 16]) -> String {
    uuid::Uuid::from_bytes(class).hyphenated().to_string()
}

/// A signed release: the image, its SUIT envelope, the names it is published under.
#[derive(Clone)]
pub struct Release {
    pub label: String,
    pub version: u64,
    pub security_version: u64,
    pub class: [u8; 16],
    pub image: Vec<u8>,
    pub envelope: Vec<u8>,
    pub signer: [u8; 32],
}

impl Release {
    pub fn target(&self) -> String {
        format!("firmware/{}-{}.bin", class_text(self.class), self.version)
    }
    pub fn envelope_target(&self) -> String {
        format!("{}.suit", self.target())
    }
}

pub struct World {
    pub rt: tokio::runtime::Runtime,
    pub base: String,
    pub admin: String,
    pub http: Client,
    pub data: tempfile::TempDir,
    pub devices_dir: tempfile::TempDir,
    pub root: RepoKey,
    pub targets: RepoKey,
    pub ca: SoftwareKey,
    /// The operator's device CA (online, in the server), which certifies rotated keys.
    pub device_ca: SoftwareKey,
    /// The firmware key every device trusts.
    pub firmware: SoftwareKey,
    /// A key no device trusts.
    pub attacker: SoftwareKey,
    root_json: Vec<u8>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

fn seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    seed
}

impl World {
    /// A server on embedded defaults with a repository (root v1, empty targets).
    pub fn start() -> World {
        World::start_with(|_| {})
    }

    pub fn start_with(adjust: impl FnOnce(&mut Settings)) -> World {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let data = tempfile::tempdir().unwrap();
        let snapshot = RepoKey::generate().unwrap();
        let timestamp = RepoKey::generate().unwrap();
        let online = data.path().join("tuf-online-keys");
        std::fs::create_dir_all(&online).unwrap();
        std::fs::write(
            online.join("snapshot.key"),
            snapshot.to_pkcs8_pem().unwrap().as_bytes(),
        )
        .unwrap();
        std::fs::write(
            online.join("timestamp.key"),
            timestamp.to_pkcs8_pem().unwrap().as_bytes(),
        )
        .unwrap();
        let ca = SoftwareKey::from_ed25519_seed(seed());
        let cas = data.path().join("device-ca");
        std::fs::create_dir_all(&cas).unwrap();
        std::fs::write(cas.join("factory.pub"), ca.public_key_pem().unwrap()).unwrap();
        // The operator's online device CA, which certifies rotated device keys.
        let device_ca = SoftwareKey::from_ed25519_seed(seed());
        let device_ca_key = data.path().join("device-ca.key");
        std::fs::write(&device_ca_key, device_ca.to_pkcs8_pem().unwrap().as_bytes()).unwrap();

        let mut settings = Settings {
            data_dir: Some(data.path().to_path_buf()),
            tick: Some(50),
            poll_interval: Some(1),
            device_ca_key: Some(device_ca_key.display().to_string()),
            ..Default::default()
        };
        adjust(&mut settings);
        let config = settings.resolve(None).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let base = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(rota_server::serve(config, listener, async move {
                let _ = rx.await;
            }));
            base
        });
        let http = Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(256)
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !http
            .get(format!("{base}/healthz"))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let admin = std::fs::read_to_string(data.path().join("admin.token"))
            .unwrap()
            .trim()
            .to_string();

        let root = RepoKey::generate().unwrap();
        let targets = RepoKey::generate().unwrap();
        let params = RootParams {
            root: RoleKeys::new(vec![root.public().clone()], 1),
            targets: RoleKeys::new(vec![targets.public().clone()], 1),
            snapshot: RoleKeys::new(vec![snapshot.public().clone()], 1),
            timestamp: RoleKeys::new(vec![timestamp.public().clone()], 1),
            expires: SystemTime::now() + Duration::from_secs(365 * 86400),
        };
        let root_json = rota_repo::init_root(&params, &[&root]).unwrap().bytes;
        let world = World {
            rt,
            base,
            admin,
            http,
            data,
            devices_dir: tempfile::tempdir().unwrap(),
            root,
            targets,
            ca,
            device_ca,
            firmware: SoftwareKey::from_ed25519_seed(seed()),
            attacker: SoftwareKey::from_ed25519_seed(seed()),
            root_json,
            shutdown: Some(tx),
        };
        world.put("/api/v1/repo/root", world.root_json.clone());
        let empty = rota_repo::sign_targets(None, &[], &[&world.targets], far_future()).unwrap();
        world.put("/api/v1/repo/targets", empty.bytes);
        world
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn root_json(&self) -> Vec<u8> {
        self.root_json.clone()
    }

    /// `PUT` signed metadata (a root, targets) as the admin; it must be accepted.
    pub fn put(&self, path: &str, body: Vec<u8>) {
        let resp = self
            .http
            .put(self.url(path))
            .bearer_auth(&self.admin)
            .body(body)
            .send()
            .unwrap();
        let status = resp.status();
        assert!(
            status.is_success(),
            "PUT {path}: {status} {}",
            resp.text().unwrap()
        );
    }

    pub fn admin_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), self.url(path))
            .bearer_auth(&self.admin);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().unwrap();
        let status = resp.status();
        let text = resp.text().unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Release `version` of simulated firmware `label`, signed by the trusted firmware key.
    pub fn release(&self, label: &str, version: u64, fail_health_percent: u8) -> Release {
        self.release_with(
            label,
            version,
            version,
            fail_health_percent,
            CLASS,
            &self.firmware,
        )
    }

    pub fn release_with(
        &self,
        label: &str,
        version: u64,
        security_version: u64,
        fail_health_percent: u8,
        class: [u8; 16],
        signer: &SoftwareKey,
    ) -> Release {
        let image = SimFirmware {
            label: label.into(),
            fail_health_percent,
        }
        .image(IMAGE_SIZE);
        sign_release(label, version, security_version, class, image, signer)
    }

    /// Uploads the image and envelope and signs targets N+1 naming both; returns the
    /// release id the server gives it.
    pub fn publish(&self, release: &Release) -> String {
        self.upload(&release.image);
        self.upload(&release.envelope);
        let image = TargetFile::from_bytes(
            release.target(),
            &release.image,
            RotaTarget::Image {
                class_id: uuid::Uuid::from_bytes(release.class),
                version: release.version,
                security_version: release.security_version,
                envelope: release.envelope_target(),
            }
            .to_custom(),
        );
        let envelope = TargetFile::from_bytes(
            release.envelope_target(),
            &release.envelope,
            RotaTarget::Envelope {
                image: release.target(),
            }
            .to_custom(),
        );
        let current = self
            .http
            .get(self.url("/tuf/metadata/targets.json"))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        let signed = rota_repo::sign_targets(
            Some(&current),
            &[image, envelope],
            &[&self.targets],
            far_future(),
        )
        .unwrap();
        self.put("/api/v1/repo/targets", signed.bytes);
        let releases = self.admin_call(reqwest::Method::GET, "/api/v1/releases", None);
        releases
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["target"] == release.target().as_str())
            .map(|r| r["id"].as_str().unwrap().to_string())
            .expect("the published release is listed")
    }

    pub fn upload(&self, bytes: &[u8]) {
        let sha = hex::encode(Sha256::digest(bytes));
        let resp = self
            .http
            .put(self.url(&format!("/api/v1/artifacts/{sha}")))
            .bearer_auth(&self.admin)
            .body(bytes.to_vec())
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().unwrap());
    }

    /// A rollout of `release_id` to every device of `CLASS` in `stages` (percent).
    pub fn rollout(
        &self,
        release_id: &str,
        stages: &[f64],
        min_sample: u32,
        threshold: f64,
    ) -> String {
        let create = RolloutCreate {
            release_id: release_id.into(),
            selector: Selector {
                class_id: class_text(CLASS),
                tags: vec![],
                versions: vec![],
            },
            stages: stages.iter().map(|p| Stage::Percent(*p)).collect(),
            success_gate: 1.0,
            failure_threshold: threshold,
            min_sample,
            device_timeout_s: 600,
            soak_s: 0,
            max_retries: 0,
        };
        let created = self.admin_call(
            reqwest::Method::POST,
            "/api/v1/rollouts",
            Some(serde_json::to_value(create).unwrap()),
        );
        created["id"].as_str().unwrap().to_string()
    }

    pub fn status(&self, rollout: &str) -> RolloutStatus {
        serde_json::from_value(self.admin_call(
            reqwest::Method::GET,
            &format!("/api/v1/rollouts/{rollout}"),
            None,
        ))
        .unwrap()
    }

    /// Waits until the rollout is in one of `states`; panics after `timeout`.
    pub fn wait_for_state(
        &self,
        rollout: &str,
        states: &[RolloutState],
        timeout: Duration,
    ) -> RolloutStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status(rollout);
            if states.contains(&status.state) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "rollout still {:?} after {timeout:?}: {status:?}",
                status.state
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the devices of this world are built with: factory firmware v1.
    pub fn factory(&self) -> Factory {
        let v1 = self.release("1.0.0", 1, 0);
        Factory {
            vendor_id: VENDOR,
            class_id: CLASS,
            anchors: vec![self.firmware.public_key()],
            signer: ed25519(&self.firmware),
            envelope: v1.envelope,
            image: v1.image,
            image_capacity: CAPACITY,
            bootloader: rota_agent::device::sim::sim_bootloader(),
        }
    }

    /// Agent settings for tests: quick polls and retries, short timeouts.
    pub fn agent_config(&self, server: &str) -> Config {
        Config {
            backoff: Backoff {
                base: Duration::from_millis(50),
                cap: Duration::from_millis(500),
            },
            poll_min: Duration::from_millis(200),
            poll_max: Duration::from_millis(500),
            chunk_size: 4096,
            operator_cas: vec![self.device_ca.public_key()],
            ..Config::new(server)
        }
    }

    pub fn fleet_spec(&self, count: usize, server: &str, prefix: &str) -> FleetSpec {
        FleetSpec {
            count,
            id_prefix: prefix.into(),
            ca: std::sync::Arc::new(self.ca.clone()),
            key_algorithm: rota_keys::Algorithm::Ed25519,
            tags: vec![],
            factory: self.factory(),
            trusted_root: self.root_json(),
            state_root: self.devices_dir.path().join(prefix),
            agent: self.agent_config(server),
            replicas: vec![],
            workers: 0,
            faults: rota_agent::fleet::Faults::default(),
        }
    }

    pub fn fleet(&self, count: usize) -> Fleet {
        Fleet::start(&self.fleet_spec(count, &self.base, "dev"), &self.http).unwrap()
    }

    /// An identity for device `id` whose UDS is `uds`, as a production line makes one: a
    /// new Ed25519 key, certified by the world's CA with the UDS's DeviceID bound.
    pub fn dice_identity(
        &self,
        id: &str,
        uds: &[u8; 32],
    ) -> (SoftwareKey, rota_protocol::DeviceCertificate) {
        provision_key(
            &self.ca,
            id,
            CLASS,
            &[],
            rota_keys::Algorithm::Ed25519,
            Some(uds),
        )
        .unwrap()
    }

    /// Device `id` off `factory`'s line with `uds` and identity `key`, its files in `dir`
    /// (the world's TUF root installed): booted once, not enrolled.
    pub fn manufacture(
        &self,
        id: &str,
        key: &SoftwareKey,
        uds: [u8; 32],
        factory: &Factory,
        dir: PathBuf,
    ) -> SimDevice {
        std::fs::create_dir_all(dir.join("tuf")).unwrap();
        std::fs::write(dir.join("tuf/root.json"), self.root_json()).unwrap();
        let identity = Identity {
            device_id: id.into(),
            key: Box::new(key.clone()),
        };
        SimDevice::manufacture(identity, factory, dir, Some(uds)).unwrap()
    }

    pub fn state_root(&self, prefix: &str) -> PathBuf {
        self.devices_dir.path().join(prefix)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn ed25519(signer: &SoftwareKey) -> [u8; 32] {
    match signer.public_key() {
        PublicKey::Ed25519(key) => key,
        other => panic!("not Ed25519: {other:?}"),
    }
}

pub fn sign_release(
    label: &str,
    version: u64,
    security_version: u64,
    class: [u8; 16],
    image: Vec<u8>,
    signer: &SoftwareKey,
) -> Release {
    let manifest = ImageManifest {
        vendor_id: VENDOR,
        class_id: class,
        image_digest: Sha256::digest(&image).into(),
        image_size: image.len() as u64,
        sequence_number: version,
        security_version,
        ..ImageManifest::default()
    };
    let envelope = manifest.build_envelope(&[signer]).unwrap();
    Release {
        label: label.into(),
        version,
        security_version,
        class,
        image,
        envelope,
        signer: ed25519(signer),
    }
}

pub fn far_future() -> SystemTime {
    SystemTime::now() + Duration::from_secs(180 * 86400)
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
