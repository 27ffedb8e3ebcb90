//! Test helpers: fetchers that record requests, a repository simulator that signs with
//! ed25519-dalek over rota-tuf's canonical JSON, and a loopback HTTP/1.0 server.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signer, SigningKey};
use rota_tuf::{Fetch, FetchError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

pub const METADATA_URL: &str = "https://repo.test/metadata/";
pub const TARGETS_URL: &str = "https://repo.test/targets/";

/// 2030-01-01T00:00:00Z: the fixed "now" of simulated repositories.
pub const NOW: u64 = 1_893_456_000;

pub fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

pub fn now() -> SystemTime {
    at(NOW)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of `days` after NOW (negative: before).
pub fn expires_in_days(days: i64) -> String {
    let t = NOW as i64 + days * 86_400;
    let (days_since, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days_since);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Shared served files and request log: a [`Fetch`] over an in-memory map.
#[derive(Clone, Default)]
pub struct MemFetcher {
    pub files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl MemFetcher {
    pub fn put(&self, url: &str, bytes: Vec<u8>) {
        self.files.lock().unwrap().insert(url.to_owned(), bytes);
    }
    pub fn get(&self, url: &str) -> Option<Vec<u8>> {
        self.files.lock().unwrap().get(url).cloned()
    }
    pub fn remove(&self, url: &str) {
        self.files.lock().unwrap().remove(url);
    }
    /// Requested URLs since the last call, with the metadata/targets base URLs removed.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
            .into_iter()
            .map(|u| {
                u.strip_prefix(METADATA_URL)
                    .map(str::to_owned)
                    .or_else(|| u.strip_prefix(TARGETS_URL).map(|t| format!("targets/{t}")))
                    .unwrap_or(u)
            })
            .collect()
    }
}

impl Fetch for MemFetcher {
    fn fetch(&self, url: &str, max_len: u64) -> Result<Vec<u8>, FetchError> {
        self.log.lock().unwrap().push(url.to_owned());
        match self.get(url) {
            None => Err(FetchError::NotFound),
            Some(b) if b.len() as u64 > max_len => Err(FetchError::TooLarge),
            Some(b) => Ok(b),
        }
    }
}

/// A fetcher serving a static repository directory: `metadata/` under METADATA_URL and
/// `targets/` under TARGETS_URL.
pub fn dir_fetcher(repo: &Path) -> MemFetcher {
    let fetcher = MemFetcher::default();
    for (sub, base) in [("metadata", METADATA_URL), ("targets", TARGETS_URL)] {
        let root = repo.join(sub);
        for file in walk(&root) {
            let rel = file
                .strip_prefix(&root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            fetcher.put(&format!("{base}{rel}"), std::fs::read(&file).unwrap());
        }
    }
    fetcher
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Sorted file names in `dir`.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// An ed25519 signer with a deterministic key; its key id is a label (as in the real
/// repositories, it need not be a hash of the key).
#[derive(Clone)]
pub struct Signer2 {
    pub keyid: String,
    pub key: SigningKey,
}

pub fn signer(seed: u8) -> Signer2 {
    let key = SigningKey::from_bytes(&[seed.wrapping_add(1); 32]);
    Signer2 {
        keyid: format!("{:064x}", u64::from(seed) + 0x1000),
        key,
    }
}

impl Signer2 {
    pub fn public_json(&self) -> Value {
        json!({
            "keytype": "ed25519",
            "scheme": "ed25519",
            "keyval": {"public": hex::encode(self.key.verifying_key().as_bytes())}
        })
    }
}

/// Signs `signed` with `signers` over rota-tuf's canonical JSON.
pub fn sign(signed: &Value, signers: &[Signer2]) -> Vec<u8> {
    let canonical = rota_tuf::json::canonical_bytes(&serde_json::to_vec(signed).unwrap()).unwrap();
    let signatures: Vec<Value> = signers
        .iter()
        .map(|s| json!({"keyid": s.keyid, "sig": hex::encode(s.key.sign(&canonical).to_bytes())}))
        .collect();
    let mut out =
        serde_json::to_vec_pretty(&json!({"signatures": signatures, "signed": signed})).unwrap();
    out.push(b'\n');
    out
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

pub fn sha512_hex(b: &[u8]) -> String {
    hex::encode(Sha512::digest(b))
}

/// A repository simulator in the spirit of tuf-conformance's `RepositorySimulator`: each
/// role is a JSON value that tests edit, then `publish` signs and serves it.
pub struct Repo {
    pub root: Value,
    pub timestamp: Value,
    pub snapshot: Value,
    pub targets: Value,
    pub delegated: HashMap<String, Value>,
    /// Signers per role name (top-level and delegated).
    pub signers: HashMap<String, Vec<Signer2>>,
    /// Add length and hashes to snapshot's and timestamp's meta entries.
    pub meta_hashes: bool,
    pub fetcher: MemFetcher,
}

impl Repo {
    /// Root v1 (root key 0, timestamp 1, snapshot 2, targets 3, thresholds 1, consistent
    /// snapshots), everything expiring in 365 days, all published once.
    pub fn new() -> Self {
        let mut repo = Repo {
            root: json!({
                "_type": "root", "spec_version": "1.0.31", "version": 1,
                "expires": expires_in_days(365), "consistent_snapshot": true,
                "keys": {}, "roles": {}
            }),
            timestamp: json!({
                "_type": "timestamp", "spec_version": "1.0.31", "version": 1,
                "expires": expires_in_days(365), "meta": {"snapshot.json": {"version": 1}}
            }),
            snapshot: json!({
                "_type": "snapshot", "spec_version": "1.0.31", "version": 1,
                "expires": expires_in_days(365), "meta": {"targets.json": {"version": 1}}
            }),
            targets: json!({
                "_type": "targets", "spec_version": "1.0.31", "version": 1,
                "expires": expires_in_days(365), "targets": {}
            }),
            delegated: HashMap::new(),
            signers: HashMap::new(),
            meta_hashes: false,
            fetcher: MemFetcher::default(),
        };
        for (i, role) in ["root", "timestamp", "snapshot", "targets"]
            .iter()
            .enumerate()
        {
            repo.set_role_keys(role, &[signer(i as u8)], 1);
        }
        repo.publish_all();
        repo
    }

    /// Lists `keys` (threshold `threshold`) for top-level `role` in root, and signs `role`
    /// with them from now on.
    pub fn set_role_keys(&mut self, role: &str, keys: &[Signer2], threshold: u64) {
        for k in keys {
            self.root["keys"][&k.keyid] = k.public_json();
        }
        let ids: Vec<&str> = keys.iter().map(|k| k.keyid.as_str()).collect();
        self.root["roles"][role] = json!({"keyids": ids, "threshold": threshold});
        self.signers.insert(role.to_owned(), keys.to_vec());
    }

    pub fn value(&mut self, role: &str) -> &mut Value {
        match role {
            "root" => &mut self.root,
            "timestamp" => &mut self.timestamp,
            "snapshot" => &mut self.snapshot,
            "targets" => &mut self.targets,
            other => self.delegated.get_mut(other).expect("no such role"),
        }
    }

    pub fn version(&mut self, role: &str) -> u64 {
        self.value(role)["version"].as_u64().unwrap()
    }

    pub fn bump(&mut self, role: &str) {
        let v = self.version(role);
        self.value(role)["version"] = json!(v + 1);
    }

    /// Signs `role` with its signers and serves it; returns the bytes.
    pub fn publish(&mut self, role: &str) -> Vec<u8> {
        let signers = self.signers.get(role).cloned().unwrap_or_default();
        self.publish_signed_by(role, &signers)
    }

    /// Signs `role` with `signers`, serves it under its versioned and plain names, and
    /// records it in the meta of the role above (snapshot, timestamp).
    pub fn publish_signed_by(&mut self, role: &str, signers: &[Signer2]) -> Vec<u8> {
        let bytes = sign(&self.value(role).clone(), signers);
        let v = self.version(role);
        let name = rota_tuf::encode_name(role);
        if role == "root" {
            self.fetcher
                .put(&format!("{METADATA_URL}{v}.root.json"), bytes.clone());
            return bytes;
        }
        if role != "timestamp" {
            self.fetcher
                .put(&format!("{METADATA_URL}{v}.{name}.json"), bytes.clone());
        }
        self.fetcher
            .put(&format!("{METADATA_URL}{name}.json"), bytes.clone());
        let mut meta = json!({"version": v});
        if self.meta_hashes {
            meta["length"] = json!(bytes.len());
            meta["hashes"] = json!({"sha256": sha256_hex(&bytes)});
        }
        match role {
            "timestamp" => {}
            "snapshot" => self.timestamp["meta"]["snapshot.json"] = meta,
            _ => self.snapshot["meta"][format!("{role}.json")] = meta,
        }
        bytes
    }

    /// Root, targets and delegated roles, snapshot, timestamp, in that order.
    pub fn publish_all(&mut self) {
        self.publish("root");
        self.publish("targets");
        let mut names: Vec<String> = self.delegated.keys().cloned().collect();
        names.sort();
        for n in names {
            self.publish(&n);
        }
        self.publish("snapshot");
        self.publish("timestamp");
    }

    /// A new release: bump and publish targets, snapshot and timestamp.
    pub fn release(&mut self) {
        for role in ["targets", "snapshot", "timestamp"] {
            self.bump(role);
            self.publish(role);
        }
    }

    /// Bump and publish snapshot and timestamp (after editing or publishing others).
    pub fn update_snapshot(&mut self) {
        for role in ["snapshot", "timestamp"] {
            self.bump(role);
            self.publish(role);
        }
    }

    /// Lists a target in `role` and serves its content under both URL forms.
    pub fn add_target(&mut self, role: &str, path: &str, content: &[u8]) {
        let hash = sha256_hex(content);
        self.value(role)["targets"][path] =
            json!({"length": content.len(), "hashes": {"sha256": hash}});
        self.serve_target(path, &hash, content);
    }

    pub fn serve_target(&self, path: &str, hash: &str, content: &[u8]) {
        let hashed = match path.rsplit_once('/') {
            Some((d, b)) => format!("{d}/{hash}.{b}"),
            None => format!("{hash}.{path}"),
        };
        self.fetcher
            .put(&format!("{TARGETS_URL}{hashed}"), content.to_vec());
        self.fetcher
            .put(&format!("{TARGETS_URL}{path}"), content.to_vec());
    }

    /// Adds a delegated role `name` to `delegator`, with its own key (seed), `paths`
    /// patterns, and an empty targets map.
    pub fn delegate(
        &mut self,
        delegator: &str,
        name: &str,
        seed: u8,
        paths: &[&str],
        terminating: bool,
    ) {
        let key = signer(seed);
        let d = self.value(delegator);
        if d.get("delegations").is_none() {
            d["delegations"] = json!({"keys": {}, "roles": []});
        }
        d["delegations"]["keys"][&key.keyid] = key.public_json();
        d["delegations"]["roles"]
            .as_array_mut()
            .unwrap()
            .push(json!({
                "name": name, "keyids": [key.keyid], "threshold": 1,
                "terminating": terminating, "paths": paths
            }));
        self.delegated.insert(
            name.to_owned(),
            json!({
                "_type": "targets", "spec_version": "1.0.31", "version": 1,
                "expires": expires_in_days(365), "targets": {}
            }),
        );
        self.signers.insert(name.to_owned(), vec![key]);
    }

    /// The v1 root bytes (what `init` would get).
    pub fn root_v1(&self) -> Vec<u8> {
        self.fetcher
            .get(&format!("{METADATA_URL}1.root.json"))
            .unwrap()
    }

    /// A metadata dir initialised with root v1.
    pub fn init_dir(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.json"), self.root_v1()).unwrap();
        dir
    }

    pub fn client(&self, dir: &Path) -> Result<rota_tuf::Client<MemFetcher>, rota_tuf::Error> {
        self.client_at(dir, now())
    }

    pub fn client_at(
        &self,
        dir: &Path,
        start: SystemTime,
    ) -> Result<rota_tuf::Client<MemFetcher>, rota_tuf::Error> {
        rota_tuf::Client::new(
            dir,
            rota_tuf::Config::new(METADATA_URL, TARGETS_URL),
            self.fetcher.clone(),
            start,
        )
    }

    /// One fresh client's refresh (a CLI `refresh` invocation).
    pub fn refresh(&self, dir: &Path) -> Result<(), rota_tuf::Error> {
        self.client(dir)?.refresh()
    }
}

/// A loopback HTTP/1.0 server serving `files` (path → bytes, paths as requested, without
/// the leading `/`), 404 otherwise; records request paths.
pub struct HttpServer {
    pub base: String,
    pub files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl HttpServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (f, l) = (files.clone(), log.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                }
                let path = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/')
                    .to_owned();
                l.lock().unwrap().push(path.clone());
                let body = f.lock().unwrap().get(&path).cloned();
                let _ = match body {
                    Some(b) => {
                        let head = format!(
                            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            b.len()
                        );
                        stream
                            .write_all(head.as_bytes())
                            .and_then(|_| stream.write_all(&b))
                    }
                    None => stream.write_all(
                        b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            }
        });
        HttpServer { base, files, log }
    }

    pub fn put(&self, path: &str, bytes: Vec<u8>) {
        self.files.lock().unwrap().insert(path.to_owned(), bytes);
    }

    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SSZ`.
pub fn unix_of(iso: &str) -> u64 {
    let n = |a: usize, b: usize| -> i64 { iso[a..b].parse().unwrap() };
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    (days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19)) as u64
}
