//! Child processes for the tests that need more than an in-process server: the real
//! `rota-server` binary (to kill it with SIGKILL), and an S3-compatible object store
//! (moto). Also signed device requests against any base URL, as [`TestDevice`] sends them
//! to a [`TestServer`](super::server::TestServer).

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use rota_protocol::api::{CheckInQuery, CheckInResponse, LastResult, Report, SlotState};
use rota_protocol::{Nonce, sign_request};
use serde_json::Value;

use super::server::{TestDevice, admin_token};

/// A port nothing listens on right now: bound to `127.0.0.1:0`, read, and released.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A random number below `bound`.
pub fn random_below(bound: u64) -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    u64::from_le_bytes(bytes) % bound.max(1)
}

/// `len` random bytes.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

/// The `rota-server` binary running as a child process on a loopback port.
pub struct ServerProcess {
    pub base: String,
    pub admin: String,
    pub data_dir: PathBuf,
    pub http: reqwest::Client,
    child: Option<Child>,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `rota-server --data-dir DATA_DIR --listen 127.0.0.1:PORT` (and
    /// `--database-url`, and `extra` flags) and waits until `/healthz` answers. Its output
    /// goes to `DATA_DIR/server-<port>.log`. The admin token must exist by then (the
    /// server writes it on a fresh database).
    pub async fn spawn(data_dir: &Path, database_url: Option<&str>, extra: &[&str]) -> Self {
        Self::spawn_limited(data_dir, database_url, extra, None).await
    }

    /// As [`spawn`](Self::spawn), with the child's open-file limit (`ulimit -n`) set to
    /// `file_limit`.
    #[allow(unsafe_code)] // pre_exec: the child's setrlimit has no safe wrapper.
    pub async fn spawn_limited(
        data_dir: &Path,
        database_url: Option<&str>,
        extra: &[&str],
        file_limit: Option<u64>,
    ) -> Self {
        let port = free_port();
        let log = data_dir.join(format!("server-{port}.log"));
        let out = File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_rota-server"));
        command
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env_remove("ROTA_SERVER_CONFIG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if let Some(url) = database_url {
            command.arg("--database-url").arg(url);
        }
        if let Some(limit) = file_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe, and the closure touches nothing else.
            unsafe {
                command.pre_exec(move || {
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command.spawn().expect("cannot start rota-server");
        let mut server = ServerProcess {
            base: format!("http://127.0.0.1:{port}"),
            admin: String::new(),
            data_dir: data_dir.to_path_buf(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if server.healthy().await {
                break;
            }
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("rota-server exited with {status}:\n{}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "rota-server did not answer /healthz within 60 s:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.admin = admin_token(data_dir);
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Whether `/healthz` answers 200.
    pub async fn healthy(&self) -> bool {
        match self.http.get(self.url("/healthz")).send().await {
            Ok(r) => r.status() == StatusCode::OK,
            Err(_) => false,
        }
    }

    /// What the server wrote to its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no graceful shutdown, no last tick, nothing flushed.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// A management request with `token`; `Err` when no answer came (connection refused
    /// or cut).
    pub async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Result<(StatusCode, Value)> {
        management_call(&self.http, &self.base, token, method, path, body).await
    }

    /// A management request with the admin token that must succeed.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self
            .call(&self.admin, method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// A management request with `token` to `base`: the status and the body (as JSON, or as
/// a string when it is not); `Err` when no answer came (connection refused or cut).
pub async fn management_call(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Result<(StatusCode, Value)> {
    let mut req = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// A request signed by `device`, sent to `base`.
pub async fn device_send(
    http: &reqwest::Client,
    base: &str,
    device: &TestDevice,
    method: Method,
    path_and_query: &str,
    body: Vec<u8>,
    extra: &[(&str, &str)],
) -> reqwest::Result<reqwest::Response> {
    let now = rota_server::db::now_ms() as u64;
    let headers = sign_request(
        &device.key,
        &device.id,
        method.as_str(),
        path_and_query,
        &body,
        now,
        Nonce::random().unwrap(),
    )
    .unwrap();
    let mut req = http
        .request(method, format!("{base}{path_and_query}"))
        .body(body);
    for (name, value) in headers.iter() {
        req = req.header(name, value);
    }
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    req.send().await
}

/// A report by `device` to `base`; `Err` when no answer came.
pub async fn device_report(
    http: &reqwest::Client,
    base: &str,
    device: &TestDevice,
    report: &Report,
) -> reqwest::Result<(StatusCode, Value)> {
    let resp = device_send(
        http,
        base,
        device,
        Method::POST,
        rota_protocol::api::REPORT_PATH,
        serde_json::to_vec(report).unwrap(),
        &[("content-type", "application/json")],
    )
    .await?;
    let status = resp.status();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A check-in by `device` (running `device.version`, confirmed) at `base`.
pub async fn device_checkin(
    http: &reqwest::Client,
    base: &str,
    device: &TestDevice,
) -> (StatusCode, Option<CheckInResponse>) {
    let query = CheckInQuery {
        version: device.version,
        slot: SlotState::Confirmed,
        last: Some(LastResult::None),
    };
    let resp = device_send(
        http,
        base,
        device,
        Method::GET,
        &query.path_and_query(),
        Vec::new(),
        &[],
    )
    .await
    .unwrap();
    let status = resp.status();
    let body = if status == StatusCode::OK {
        Some(resp.json().await.unwrap())
    } else {
        None
    };
    (status, body)
}

/// moto's S3-compatible server on a loopback port (`moto_server`, or `python3 -m
/// moto.server`), killed when dropped.
pub struct Moto {
    pub endpoint: String,
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Moto {
    /// Starts moto and waits until it accepts connections; `None` if moto is not
    /// installed.
    pub fn start() -> Option<Moto> {
        let port = free_port().to_string();
        let args = ["-H", "127.0.0.1", "-p", port.as_str()];
        let have_module = Command::new("python3")
            .args(["-c", "import moto.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let mut command = if have_module {
            let mut c = Command::new("python3");
            c.args(["-m", "moto.server"]).args(args);
            c
        } else {
            let mut c = Command::new("moto_server");
            c.args(args);
            c
        };
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .ok()?;
        let mut moto = Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok() {
                return Some(moto);
            }
            if moto.child.try_wait().ok().flatten().is_some() {
                // It exited: moto (or its server extra) is not installed.
                return None;
            }
            assert!(Instant::now() < deadline, "moto did not listen within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Moto {
    /// moto's log so far: one line per request it served.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
