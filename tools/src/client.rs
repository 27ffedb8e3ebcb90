//! The update server's management API, as the commands that talk to it use it.
//!
//! Every failure is one sentence that says what failed: "the server refused the rollout:
//! `<its error text>` (HTTP 400)", "cannot reach the server at URL: connection refused".

use std::error::Error as _;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::StatusCode;
use reqwest::blocking::{Body, Client as Http, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::files;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a management request (not an upload) may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Uploads may take this long plus one second for every [`UPLOAD_MIN_RATE`] bytes.
const UPLOAD_BASE_TIMEOUT: Duration = Duration::from_secs(60);
/// The slowest upload rate, in bytes per second, before an upload times out.
const UPLOAD_MIN_RATE: u64 = 64 * 1024;
/// The largest answer read from the server (a page of 1000 devices is far smaller).
const MAX_ANSWER: u64 = 32 * 1024 * 1024;
/// The largest token file read.
const MAX_TOKEN_FILE: u64 = 4096;

/// Where the update server is and the management token to use.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The update server's base URL, such as `https://updates.example.com`.
    #[arg(long, env = "ROTA_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// A management token of the server (created by its admin; a new server writes its
    /// first admin token to DATA_DIR/admin.token).
    #[arg(long, env = "ROTA_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Read the management token from FILE (such as the server's DATA_DIR/admin.token);
    /// takes precedence over --token and ROTA_TOKEN.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

impl ServerArgs {
    /// Whether a server was named (with --server or ROTA_SERVER).
    pub fn is_given(&self) -> bool {
        self.server.is_some()
    }
}

/// A connection to the update server's management API.
pub struct Client {
    base: String,
    token: String,
    http: Http,
    uploads: Http,
}

/// An answer that is not a success: its status and the server's error text.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Client {
    /// Checks the server URL and reads the token; nothing is sent yet.
    pub fn connect(args: &ServerArgs) -> Result<Client> {
        let Some(server) = &args.server else {
            bail!("no update server given: pass --server URL or set ROTA_SERVER");
        };
        let base = server.trim().trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base).map_err(|e| {
            anyhow!("--server {server:?} is not a URL ({e}); give one such as https://updates.example.com")
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            bail!("--server {server:?} is not an http:// or https:// URL");
        }
        if url.query().is_some() || url.fragment().is_some() {
            bail!("--server {server:?} must not have a query or fragment");
        }
        let token = match (&args.token_file, &args.token) {
            (Some(path), _) => read_token_file(path)?,
            (None, Some(token)) => token.trim().to_string(),
            (None, None) => bail!(
                "no management token given: pass --token TOKEN or --token-file FILE, or set ROTA_TOKEN"
            ),
        };
        if token.is_empty() {
            bail!("the management token is empty");
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("the management token has characters that cannot be sent in an HTTP header");
        }
        if url.scheme() == "http" && !is_loopback(&url) {
            eprintln!(
                "warning: {base} is plain http: the management token crosses the network unencrypted"
            );
        }
        let build = |timeout: Option<Duration>| {
            Http::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(timeout)
                .user_agent(concat!("rota/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| anyhow!("cannot set up HTTP: {}", reason(&e)))
        };
        Ok(Client {
            base,
            token,
            http: build(Some(REQUEST_TIMEOUT))?,
            uploads: build(None)?,
        })
    }

    /// The server's base URL, as given.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `request`; a connection failure is "cannot reach the server at URL: ...".
    fn send(&self, request: RequestBuilder) -> Result<Response> {
        request
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| self.unreachable(&e))
    }

    fn unreachable(&self, e: &reqwest::Error) -> anyhow::Error {
        anyhow!("cannot reach the server at {}: {}", self.base, reason(e))
    }

    /// The answer's body, or a [`Refusal`] for a status that is not a success.
    fn answer(&self, response: Response) -> Result<std::result::Result<Vec<u8>, Refusal>> {
        let status = response.status();
        let body = read_body(response).map_err(|e| {
            anyhow!(
                "cannot read the answer of the server at {}: {}",
                self.base,
                reason_io(&e)
            )
        })?;
        if status.is_success() {
            Ok(Ok(body))
        } else {
            Ok(Err(Refusal {
                status,
                message: error_text(status, &body),
            }))
        }
    }

    /// "the server refused {what}: {message} (HTTP {status})".
    pub fn refused(what: &str, refusal: &Refusal) -> anyhow::Error {
        anyhow!(
            "the server refused {what}: {} (HTTP {})",
            refusal.message,
            refusal.status.as_u16()
        )
    }

    fn decode<T: DeserializeOwned>(&self, body: &[u8], path: &str) -> Result<T> {
        serde_json::from_slice(body).map_err(|e| {
            anyhow!(
                "the server at {} answered {path} with something rota cannot read: {e}",
                self.base
            )
        })
    }

    /// Sends `request` (to `path`) and decodes the answer; `what` completes "the server
    /// refused ..." on failure.
    fn decoded<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        path: &str,
        what: &str,
    ) -> Result<T> {
        let response = self.send(request)?;
        match self.answer(response)? {
            Ok(body) => self.decode(&body, path),
            Err(refusal) => Err(Self::refused(what, &refusal)),
        }
    }

    /// `GET path`, decoded; `what` completes "the server refused ..." on failure.
    pub fn get<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        self.decoded(self.http.get(self.url(path)), path, what)
    }

    /// `GET path` with a query, decoded.
    pub fn get_query<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        what: &str,
    ) -> Result<T> {
        self.decoded(self.http.get(self.url(path)).query(query), path, what)
    }

    /// `POST path` with a JSON body, decoded.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        what: &str,
    ) -> Result<T> {
        self.decoded(self.http.post(self.url(path)).json(body), path, what)
    }

    /// `DELETE path`; the answer has no body.
    pub fn delete(&self, path: &str, what: &str) -> Result<()> {
        let response = self.send(self.http.delete(self.url(path)))?;
        match self.answer(response)? {
            Ok(_) => Ok(()),
            Err(refusal) => Err(Self::refused(what, &refusal)),
        }
    }

    /// `POST path` without a body, decoded.
    pub fn post_empty<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        self.decoded(self.http.post(self.url(path)), path, what)
    }

    /// `PUT path` with a JSON document (signed TUF metadata), as the raw answer.
    pub fn put_json_bytes(&self, path: &str, bytes: &[u8], what: &str) -> Result<Vec<u8>> {
        let request = self
            .http
            .put(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes.to_vec());
        let response = self.send(request)?;
        self.answer(response)?
            .map_err(|refusal| Self::refused(what, &refusal))
    }

    /// `PUT path` with a JSON document, decoded.
    pub fn put_json<T: DeserializeOwned>(&self, path: &str, bytes: &[u8], what: &str) -> Result<T> {
        let body = self.put_json_bytes(path, bytes, what)?;
        self.decode(&body, path)
    }

    /// A public TUF metadata file (`/tuf/metadata/{file}`), or `None` when the server does
    /// not have it (404).
    pub fn metadata(&self, file: &str) -> Result<Option<Vec<u8>>> {
        let path = format!("/tuf/metadata/{file}");
        let response = self.send(self.http.get(self.url(&path)))?;
        match self.answer(response)? {
            Ok(body) => Ok(Some(body)),
            Err(refusal) if refusal.status == StatusCode::NOT_FOUND => Ok(None),
            Err(refusal) => Err(Self::refused(&format!("to serve {file}"), &refusal)),
        }
    }

    /// Uploads `path` (`length` bytes, SHA-256 `sha256`) as an artifact, streamed from the
    /// file with a progress bar on a terminal. Returns whether the server already had it.
    pub fn upload(&self, path: &Path, length: u64, sha256: &[u8; 32]) -> Result<bool> {
        let file = files::open_regular(path)?;
        let progress = ProgressBar::new(length);
        progress.set_style(
            ProgressStyle::with_template(
                "uploading {msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ({eta})",
            )
            .expect("static template"),
        );
        progress.set_message(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let reader = ProgressReader {
            file,
            path: path.to_path_buf(),
            progress: progress.clone(),
        };
        let timeout = UPLOAD_BASE_TIMEOUT + Duration::from_secs(length / UPLOAD_MIN_RATE);
        let request = self
            .uploads
            .put(self.url(&format!("/api/v1/artifacts/{}", hex::encode(sha256))))
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::sized(reader, length));
        let sent = self.send(request);
        progress.finish_and_clear();
        let response = sent?;
        // 200: the server already had this file; 201: stored now.
        let already = response.status() == StatusCode::OK;
        match self.answer(response)? {
            Ok(_) => Ok(already),
            Err(refusal) => Err(Self::refused(
                &format!("the upload of {}", path.display()),
                &refusal,
            )),
        }
    }
}

/// A file read for an upload, advancing a progress bar.
struct ProgressReader {
    file: File,
    path: PathBuf,
    progress: ProgressBar,
}

impl Read for ProgressReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot read {}: {}", self.path.display(), files::reason(&e)),
            )
        })?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// Percent-encodes `text` for one path segment (ids are opaque to the CLI).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn read_token_file(path: &Path) -> Result<String> {
    let bytes = files::read_limited(path, MAX_TOKEN_FILE, "a token file")?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow!("{} is not a token file (it is not text)", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!(
            "{} is empty; it should hold a management token",
            path.display()
        );
    }
    if token.lines().count() > 1 {
        bail!(
            "{} has more than one line; it should hold just a management token",
            path.display()
        );
    }
    Ok(token.to_string())
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Reads at most [`MAX_ANSWER`] bytes of an answer.
fn read_body(response: Response) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    response.take(MAX_ANSWER + 1).read_to_end(&mut body)?;
    if body.len() as u64 > MAX_ANSWER {
        return Err(io::Error::other(format!(
            "the answer is larger than {MAX_ANSWER} bytes"
        )));
    }
    Ok(body)
}

/// The server's error text: the `error` of its JSON error body, else the first line of
/// the body, else the status's name.
fn error_text(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        let text = one_line(&parsed.error);
        if !text.is_empty() {
            return text;
        }
    }
    let text = one_line(&String::from_utf8_lossy(body));
    if !text.is_empty() && !text.starts_with('<') {
        return text;
    }
    status
        .canonical_reason()
        .unwrap_or("the request failed")
        .to_lowercase()
}

/// The first line of `text`, at most 300 characters.
fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

/// A reqwest error in words: the innermost cause, without the request's URL.
fn reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "it did not answer in time".into();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    let mut innermost = None;
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return "it did not answer in time".into();
            }
            // An io::Error that wraps another error (a read of an upload) says it all.
            if io.get_ref().is_none() || io.kind() != io::ErrorKind::Other {
                return reason_io(io);
            }
        }
        innermost = Some(cause);
        source = cause.source();
    }
    match innermost {
        Some(cause) => one_line(&cause.to_string()),
        None => one_line(&e.to_string()),
    }
}

/// An io::Error in words.
fn reason_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "the connection was reset".into(),
        io::ErrorKind::ConnectionAborted => "the connection was aborted".into(),
        io::ErrorKind::TimedOut => "it did not answer in time".into(),
        io::ErrorKind::UnexpectedEof => "the connection closed early".into(),
        io::ErrorKind::BrokenPipe => "the server closed the connection".into(),
        _ => one_line(&e.to_string()),
    }
}
