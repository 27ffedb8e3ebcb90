//! The device side of rota-server's device API: every request signed with the device's
//! identity key (rota_protocol::auth), except check-ins and reports, which ride on a
//! session once one is open (rota_protocol::session, [`ServerClient`]); answers read
//! strictly and never past their limit ([`AnswerLimits`]), failures sorted into "try again
//! later" and "refused".

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder};
use rota_protocol::DeviceCertificate;
use rota_protocol::api::{
    ATTESTATION_NONCE_PATH, ATTESTATION_PATH, Attest, AttestationChallenge, AttestationResult,
    CheckInQuery, CheckInResponse, ENROLL_PATH, Enroll, Evidence, KeyRotated, KeyRotation,
    POLL_AFTER_HEADER, REPORT_PATH, ROTATE_PATH, Report, ReportAck,
};
use rota_protocol::auth::{Nonce, sign_request};
use rota_protocol::order::{ORDER_DONE_PATH, OrderDone, SignedOrder, TRANSFER_PATH, TransferIn};
use rota_protocol::session::{
    DeviceEphemeral, MAX_SESSION_LIFETIME_S, SESSION_PATH, SessionKey, SessionOpened, mac_request,
    session_allowed,
};

use crate::device::Identity;

/// Why a request to the server did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    /// The network or the server failed (no connection, a timeout, a cut answer, a 5xx,
    /// 408, 429): the same request may succeed later.
    #[error("the server is unreachable or failing: {0}")]
    Transient(String),
    /// The server answered that it will not do this (a 4xx); retrying will not help.
    #[error("the server refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    /// The answer is longer than the agent's limit for its kind: a broken or hostile
    /// server. Nothing past the limit was read; a later request may succeed.
    #[error(
        "the server's {answer} answer is longer than the agent's limit of {limit} bytes for it"
    )]
    TooLarge { answer: &'static str, limit: u64 },
}

/// The most the agent reads of each kind of answer, in bytes. A hostile or broken server
/// could otherwise send an endless answer and exhaust the device's memory: the agent
/// reads an answer incrementally and gives up one byte past its limit (or at once, when
/// `Content-Length` already says it is over). An error answer is read up to the same
/// limit and its message cut there. (TUF metadata and targets have their own limits, in
/// `rota_tuf::Config` and the signed lengths.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerLimits {
    /// A check-in answer: `poll_after_s` and at most one assignment (ids, two target
    /// names of up to 1 KiB each, a hash), under 3 KiB in practice.
    pub check_in: u64,
    /// A report acknowledgement (`{"duplicate":false}`).
    pub report: u64,
    /// An enrolment answer (empty on success), a key rotation's (a certificate), or a
    /// session's (two keys, a token and its lifetime).
    pub enroll: u64,
    /// An attestation challenge or verdict (a nonce, or a state and a reason).
    pub attestation: u64,
}

impl Default for AnswerLimits {
    /// 64 KiB for a check-in, 4 KiB for a report or an enrolment: far above any genuine
    /// answer, far below a device's memory.
    fn default() -> Self {
        Self {
            check_in: 64 * 1024,
            report: 4 * 1024,
            enroll: 4 * 1024,
            attestation: 4 * 1024,
        }
    }
}

/// Which answer is read, for its limit and for error messages.
#[derive(Clone, Copy, Debug)]
enum AnswerKind {
    CheckIn,
    Report,
    Enroll,
    Attestation,
    Session,
}

impl AnswerKind {
    fn name(self) -> &'static str {
        match self {
            AnswerKind::CheckIn => "check-in",
            AnswerKind::Report => "report",
            AnswerKind::Enroll => "enrolment",
            AnswerKind::Attestation => "attestation",
            AnswerKind::Session => "session",
        }
    }

    fn limit(self, limits: &AnswerLimits) -> u64 {
        match self {
            AnswerKind::CheckIn => limits.check_in,
            AnswerKind::Report => limits.report,
            AnswerKind::Enroll | AnswerKind::Session => limits.enroll,
            AnswerKind::Attestation => limits.attestation,
        }
    }
}

/// The answer to a check-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckIn {
    pub answer: CheckInResponse,
    /// The server's ETag for it: sent back as `If-None-Match` next time.
    pub etag: Option<String>,
}

/// A client of one server, for any number of devices (a fleet shares one).
///
/// Check-ins and reports ride on a session (rota_protocol::session): opened lazily with a
/// signed request before a device's first one, renewed before it expires, dropped when the
/// device's key changes or the server refuses it (401: the request is sent again signed,
/// and the next opens a new session). A server without sessions (404 or 405 to the
/// opening) is asked again after [`SESSION_RETRY_UNSUPPORTED`]; any other failure to open
/// one after [`SESSION_RETRY_FAILED`]; meanwhile every request is signed. Sessions live in
/// memory only: a restarted agent opens new ones.
pub struct ServerClient {
    http: Client,
    base: String,
    limits: AnswerLimits,
    /// The latest `Retry-After` of a refusal (a 429, or a 503 from a busy server), in
    /// seconds, until the agent takes it ([`ServerClient::take_retry_after`]).
    retry_after_s: std::sync::atomic::AtomicU64,
    /// Each device's session, by device id.
    sessions: Mutex<HashMap<String, SessionState>>,
}

/// How long the agent signs every request after a server answered that it has no
/// sessions (404 or 405), before it asks again.
pub const SESSION_RETRY_UNSUPPORTED: Duration = Duration::from_secs(3600);
/// How long the agent signs every request after opening a session failed otherwise.
pub const SESSION_RETRY_FAILED: Duration = Duration::from_secs(300);

/// A device's session, as the agent holds it.
enum SessionState {
    Open(HeldSession),
    /// No session until then: sign.
    Unavailable {
        retry_at: Instant,
    },
}

#[derive(Clone)]
struct HeldSession {
    key: SessionKey,
    token: String,
    /// The device key that opened it: a rotated key needs a new session.
    device_key_id: [u8; 32],
    /// A new session is opened from then on: a tenth of the lifetime (at least 30 s,
    /// at most half) before the server's expiry, so clock drift and the request's own
    /// travel do not meet it.
    renew_at: Instant,
}

impl HeldSession {
    fn new(key: SessionKey, answer: SessionOpened, device_key_id: [u8; 32]) -> Self {
        let lifetime =
            Duration::from_secs(u64::from(answer.lifetime_s.min(MAX_SESSION_LIFETIME_S)));
        let margin = (lifetime / 10)
            .max(Duration::from_secs(30))
            .min(lifetime / 2);
        Self {
            key,
            token: answer.token,
            device_key_id,
            renew_at: Instant::now() + (lifetime - margin),
        }
    }
}

/// How one request is authenticated.
enum Auth<'a> {
    Signed,
    Session(&'a HeldSession),
}

/// The longest `Retry-After` the agent honours: a broken or hostile server cannot park
/// a device for longer than the agent's own longest poll.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl ServerClient {
    /// A client for the server at `base` (`http://host:port`) that reads no answer past
    /// `limits`.
    pub fn new(http: Client, base: &str, limits: AnswerLimits) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            limits,
            retry_after_s: Default::default(),
            sessions: Mutex::default(),
        }
    }

    fn session_states(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionState>> {
        // Every update is one insert or remove: a panic elsewhere leaves it consistent.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a session of `device_id`'s is open now (for tests and status).
    pub fn has_session(&self, device_id: &str) -> bool {
        matches!(
            self.session_states().get(device_id),
            Some(SessionState::Open(s)) if Instant::now() < s.renew_at
        )
    }

    /// The device's session: the one open, or a new one; `None` while sessions are
    /// unavailable (then the request is signed).
    fn session(&self, identity: &Identity) -> Option<HeldSession> {
        let key_id = identity.key.public_key().key_id();
        let now = Instant::now();
        match self.session_states().get(&identity.device_id) {
            Some(SessionState::Open(s)) if s.device_key_id == key_id && now < s.renew_at => {
                return Some(s.clone());
            }
            Some(SessionState::Unavailable { retry_at }) if now < *retry_at => return None,
            _ => {}
        }
        let state = match self.open_session(identity, key_id) {
            Ok(session) => SessionState::Open(session),
            Err(err) => {
                let wait = match err {
                    ServerError::Refused {
                        status: 404 | 405, ..
                    } => SESSION_RETRY_UNSUPPORTED,
                    _ => SESSION_RETRY_FAILED,
                };
                tracing::info!(device = %identity.device_id, error = %err, "no check-in session: requests are signed");
                SessionState::Unavailable {
                    retry_at: now + wait,
                }
            }
        };
        let open = match &state {
            SessionState::Open(s) => Some(s.clone()),
            SessionState::Unavailable { .. } => None,
        };
        self.session_states()
            .insert(identity.device_id.clone(), state);
        open
    }

    /// `POST /api/v1/device/session`, signed: an ephemeral X25519 key agreement.
    fn open_session(
        &self,
        identity: &Identity,
        device_key_id: [u8; 32],
    ) -> Result<HeldSession, ServerError> {
        let ephemeral =
            DeviceEphemeral::generate().map_err(|e| ServerError::Transient(e.to_string()))?;
        let body = serde_json::to_vec(&ephemeral.request())
            .map_err(|e| ServerError::Transient(e.to_string()))?;
        let answer = self.send_as(
            identity,
            Auth::Signed,
            AnswerKind::Session,
            "POST",
            SESSION_PATH,
            &body,
            None,
        )?;
        let opened: SessionOpened = serde_json::from_slice(&answer.body).map_err(|e| {
            ServerError::Transient(format!("the session answer is not valid JSON: {e}"))
        })?;
        let key = ephemeral
            .finish(&identity.device_id, &opened)
            .map_err(|e| ServerError::Transient(format!("the session answer: {e}")))?;
        Ok(HeldSession::new(key, opened, device_key_id))
    }

    /// How long the server last asked to be left alone (`Retry-After`, in seconds, at
    /// most [`MAX_RETRY_AFTER`]); cleared by the call.
    pub fn take_retry_after(&self) -> Option<Duration> {
        let seconds = self
            .retry_after_s
            .swap(0, std::sync::atomic::Ordering::Relaxed);
        (seconds > 0).then(|| Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST /api/v1/device/enroll`: registers the device by its certificate (a no-op
    /// when it is registered already).
    pub fn enroll(
        &self,
        identity: &Identity,
        certificate: &DeviceCertificate,
    ) -> Result<(), ServerError> {
        let body = serde_json::to_vec(&Enroll {
            certificate: certificate.clone(),
        })
        .map_err(|e| ServerError::Transient(e.to_string()))?;
        self.send(
            identity,
            AnswerKind::Enroll,
            "POST",
            ENROLL_PATH,
            body,
            None,
        )?;
        Ok(())
    }

    /// `GET /api/v1/device/checkin`. With `etag`, an unchanged answer comes back as
    /// `previous` (the server sent 304 Not Modified).
    pub fn check_in(
        &self,
        identity: &Identity,
        query: &CheckInQuery,
        previous: Option<&CheckIn>,
    ) -> Result<CheckIn, ServerError> {
        let etag = previous.and_then(|p| p.etag.as_deref());
        let answer = self.send(
            identity,
            AnswerKind::CheckIn,
            "GET",
            &query.path_and_query(),
            Vec::new(),
            etag,
        )?;
        let poll_after = answer
            .headers
            .get(POLL_AFTER_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        if answer.status == StatusCode::NOT_MODIFIED {
            let mut same = previous.cloned().ok_or_else(|| {
                ServerError::Transient("a 304 to an unconditional check-in".into())
            })?;
            if let Some(poll) = poll_after {
                same.answer.poll_after_s = poll;
            }
            return Ok(same);
        }
        let answer_etag = answer
            .headers
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let response: CheckInResponse = serde_json::from_slice(&answer.body).map_err(|e| {
            ServerError::Transient(format!("the check-in answer is not valid JSON: {e}"))
        })?;
        Ok(CheckIn {
            answer: response,
            etag: answer_etag,
        })
    }

    /// `POST /api/v1/device/report`.
    pub fn report(&self, identity: &Identity, report: &Report) -> Result<ReportAck, ServerError> {
        let body = serde_json::to_vec(report).map_err(|e| ServerError::Transient(e.to_string()))?;
        let answer = self.send(
            identity,
            AnswerKind::Report,
            "POST",
            REPORT_PATH,
            body,
            None,
        )?;
        serde_json::from_slice(&answer.body).map_err(|e| {
            ServerError::Transient(format!("the report answer is not valid JSON: {e}"))
        })
    }

    /// `POST /api/v1/device/attestation/nonce`: a fresh, single-use challenge.
    pub fn attestation_nonce(&self, identity: &Identity) -> Result<Vec<u8>, ServerError> {
        let answer = self.send(
            identity,
            AnswerKind::Attestation,
            "POST",
            ATTESTATION_NONCE_PATH,
            Vec::new(),
            None,
        )?;
        let challenge: AttestationChallenge =
            serde_json::from_slice(&answer.body).map_err(|e| {
                ServerError::Transient(format!("the attestation challenge is not valid JSON: {e}"))
            })?;
        Ok(challenge.nonce)
    }

    /// `POST /api/v1/device/rotate`: the device's new certificate for its new key.
    pub fn rotate(
        &self,
        identity: &Identity,
        rotation: &KeyRotation,
    ) -> Result<KeyRotated, ServerError> {
        let body =
            serde_json::to_vec(rotation).map_err(|e| ServerError::Transient(e.to_string()))?;
        let answer = self.send(
            identity,
            AnswerKind::Enroll,
            "POST",
            ROTATE_PATH,
            body,
            None,
        )?;
        serde_json::from_slice(&answer.body).map_err(|e| {
            ServerError::Transient(format!("the key rotation answer is not valid JSON: {e}"))
        })
    }

    /// `POST /api/v1/device/order-done`: the operator's order was carried out (the
    /// device's last word to this server; a repeat after a lost answer is answered the same).
    pub fn order_done(&self, identity: &Identity, order: &SignedOrder) -> Result<(), ServerError> {
        let body = serde_json::to_vec(&OrderDone {
            order: hex::encode(order.fingerprint()),
        })
        .map_err(|e| ServerError::Transient(e.to_string()))?;
        self.send(
            identity,
            AnswerKind::Report,
            "POST",
            ORDER_DONE_PATH,
            body,
            None,
        )?;
        Ok(())
    }

    /// `POST /api/v1/device/transfer` to the new operator's server: the device's current
    /// certificate and the transfer order; answers the new operator's certificate.
    pub fn transfer_in(
        &self,
        identity: &Identity,
        transfer: &TransferIn,
    ) -> Result<KeyRotated, ServerError> {
        let body =
            serde_json::to_vec(transfer).map_err(|e| ServerError::Transient(e.to_string()))?;
        let answer = self.send(
            identity,
            AnswerKind::Enroll,
            "POST",
            TRANSFER_PATH,
            body,
            None,
        )?;
        serde_json::from_slice(&answer.body).map_err(|e| {
            ServerError::Transient(format!("the transfer answer is not valid JSON: {e}"))
        })
    }

    /// `POST /api/v1/device/attestation`: evidence, and the server's verdict on it.
    pub fn attest(
        &self,
        identity: &Identity,
        evidence: Evidence,
    ) -> Result<AttestationResult, ServerError> {
        let body = serde_json::to_vec(&Attest { evidence })
            .map_err(|e| ServerError::Transient(e.to_string()))?;
        let answer = self.send(
            identity,
            AnswerKind::Attestation,
            "POST",
            ATTESTATION_PATH,
            body,
            None,
        )?;
        serde_json::from_slice(&answer.body).map_err(|e| {
            ServerError::Transient(format!("the attestation answer is not valid JSON: {e}"))
        })
    }

    /// Sends a request: on the device's session where the server takes one for it (a
    /// check-in, a report), signed otherwise, or when the server refused the session.
    fn send(
        &self,
        identity: &Identity,
        kind: AnswerKind,
        method: &str,
        path_and_query: &str,
        body: Vec<u8>,
        if_none_match: Option<&str>,
    ) -> Result<Answer, ServerError> {
        if session_allowed(method, path_and_query) {
            if let Some(session) = self.session(identity) {
                match self.send_as(
                    identity,
                    Auth::Session(&session),
                    kind,
                    method,
                    path_and_query,
                    &body,
                    if_none_match,
                ) {
                    // Expired, unknown to this server's fleet, or bound to a replaced
                    // key: sign this one; the next request opens a new session.
                    Err(ServerError::Refused { status: 401, .. }) => {
                        self.session_states().remove(&identity.device_id);
                    }
                    answer => return answer,
                }
            }
        }
        self.send_as(
            identity,
            Auth::Signed,
            kind,
            method,
            path_and_query,
            &body,
            if_none_match,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn send_as(
        &self,
        identity: &Identity,
        auth: Auth<'_>,
        kind: AnswerKind,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        if_none_match: Option<&str>,
    ) -> Result<Answer, ServerError> {
        // A keep-alive connection the server closed as this request went out (it closes
        // idle ones at its connection limit) answered nothing: a repeatable request is
        // sent once more, freshly signed (the first nonce may have reached the server).
        let repeatable = repeatable(method, path_and_query);
        let mut tries = 0;
        let response = loop {
            tries += 1;
            let request =
                self.request(identity, &auth, method, path_and_query, body, if_none_match)?;
            match request.send() {
                Ok(response) => break response,
                Err(e) if repeatable && tries < 2 && closed_connection(&e) => {
                    tracing::debug!(path = path_and_query, error = %e, "the connection closed; sending once more");
                }
                Err(e) => return Err(transient(e)),
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let limit = kind.limit(&self.limits);
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            let body = read_at_most(response, limit)?.ok_or(ServerError::TooLarge {
                answer: kind.name(),
                limit,
            })?;
            return Ok(Answer {
                status,
                headers,
                body,
            });
        }
        // RFC 9110 §10.2.3, delay-seconds only (an HTTP date is not worth a device clock).
        if let Some(seconds) = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            self.retry_after_s
                .store(seconds, std::sync::atomic::Ordering::Relaxed);
        }
        // Only the status decides; the message is cut at the limit.
        let mut body = Vec::new();
        let _ = response.take(limit).read_to_end(&mut body);
        Err(classify(status, &body))
    }

    /// The request, authenticated: signed with a fresh nonce, or MACed on the session.
    fn request(
        &self,
        identity: &Identity,
        auth: &Auth<'_>,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        if_none_match: Option<&str>,
    ) -> Result<RequestBuilder, ServerError> {
        let nonce = Nonce::random().map_err(|e| ServerError::Transient(e.to_string()))?;
        let headers: Vec<(&'static str, String)> = match *auth {
            // A key that cannot sign now (a locked element) is worth retrying later.
            Auth::Signed => sign_request(
                &identity.key,
                &identity.device_id,
                method,
                path_and_query,
                body,
                unix_ms(),
                nonce,
            )
            .map_err(|e| ServerError::Transient(e.to_string()))?
            .iter()
            .collect(),
            Auth::Session(session) => mac_request(
                &session.key,
                &session.token,
                &identity.device_id,
                method,
                path_and_query,
                body,
                unix_ms(),
                nonce,
            )
            .iter()
            .collect(),
        };
        let url = format!("{}{path_and_query}", self.base);
        let mut request = match method {
            "GET" => self.http.get(url),
            _ => self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec()),
        };
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(etag) = if_none_match {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        Ok(request)
    }
}

/// The body of `response` if it has at most `limit` bytes, `None` if it is longer. Memory
/// stays within the limit: a declared longer `Content-Length` is refused unread, and
/// otherwise reading stops one byte past the limit, whatever the headers claimed.
fn read_at_most(
    response: reqwest::blocking::Response,
    limit: u64,
) -> Result<Option<Vec<u8>>, ServerError> {
    let declared = response.content_length();
    if declared.is_some_and(|n| n > limit) {
        return Ok(None);
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
    response
        .take(limit.saturating_add(1))
        .read_to_end(&mut body)
        .map_err(|e| ServerError::Transient(format!("the answer broke off: {e}")))?;
    Ok((body.len() as u64 <= limit).then_some(body))
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

/// Whether a request may reach the server twice: a check-in, a report (idempotent by its
/// event id), an enrolment (a no-op once registered), a session or an attestation nonce (a
/// fresh one either way). Key rotations, orders and evidence are sent once; the agent's
/// next pass retries them.
fn repeatable(method: &str, path_and_query: &str) -> bool {
    let path = path_and_query
        .split_once('?')
        .map_or(path_and_query, |(path, _)| path);
    method == "GET"
        || [
            REPORT_PATH,
            ENROLL_PATH,
            SESSION_PATH,
            ATTESTATION_NONCE_PATH,
        ]
        .contains(&path)
}

/// Whether `e` is the connection closing under the request (hyper's incomplete message or
/// cancelled dispatch, a reset or broken pipe), rather than a refused connection, a
/// timeout or an answer.
fn closed_connection(e: &reqwest::Error) -> bool {
    use std::io::ErrorKind;
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let hyper_closed = cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_canceled());
        let io_closed = cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            )
        });
        if hyper_closed || io_closed {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A network failure, with its causes (reqwest's top-level message alone is vague).
pub fn transient(e: reqwest::Error) -> ServerError {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    ServerError::Transient(text)
}

/// Sorts an error answer: 5xx, 408 and 429 may pass; any other 4xx will not.
pub fn classify(status: StatusCode, body: &[u8]) -> ServerError {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        ServerError::Transient(format!("{status}: {message}"))
    } else {
        ServerError::Refused {
            status: status.as_u16(),
            message,
        }
    }
}

/// The device clock in unix milliseconds (request signatures carry it).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::Arc;

    use rota_keys::{Algorithm, Sign, SoftwareKey};
    use rota_protocol::auth::NONCE_HEADER;

    use super::*;

    /// A server on loopback that reads each request and closes the connection unanswered
    /// `close_first` times, then answers 200 with an empty body. Returns its URL and each
    /// request's nonce header, recorded before the request is answered or closed on.
    fn closing_server(close_first: usize) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let nonces = Arc::new(Mutex::new(Vec::new()));
        let seen = nonces.clone();
        // Left running: the test's process ends it.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut reader = BufReader::new(stream.unwrap());
                let (mut length, mut nonce) = (0usize, String::new());
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap();
                    } else if name.eq_ignore_ascii_case(NONCE_HEADER) {
                        nonce = value.trim().to_string();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let mut nonces = seen.lock().unwrap();
                nonces.push(nonce);
                if nonces.len() > close_first {
                    let answer =
                        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                    reader.get_mut().write_all(answer).unwrap();
                }
                // Dropped: closed, answered or not.
            }
        });
        (url, nonces)
    }

    fn enrol(url: &str) -> Result<(), ServerError> {
        let key = SoftwareKey::generate(Algorithm::Ed25519).unwrap();
        let certificate = rota_protocol::certify(
            &key,
            "dev-1",
            &key.public_key(),
            None,
            &uuid::Uuid::nil(),
            vec![],
        )
        .unwrap();
        let identity = Identity {
            device_id: "dev-1".into(),
            key: Box::new(key),
        };
        let client = ServerClient::new(Client::new(), url, AnswerLimits::default());
        client.enroll(&identity, &certificate)
    }

    #[test]
    fn a_repeatable_request_whose_connection_closes_unanswered_is_sent_once_more_freshly_signed() {
        let (url, nonces) = closing_server(1);
        enrol(&url).unwrap();
        let nonces = nonces.lock().unwrap();
        assert_eq!(nonces.len(), 2);
        assert!(!nonces[0].is_empty());
        assert_ne!(
            nonces[0], nonces[1],
            "the second try reuses the first nonce"
        );
    }

    #[test]
    fn a_connection_closed_on_the_second_try_too_is_an_error() {
        let (url, nonces) = closing_server(usize::MAX);
        let err = enrol(&url).unwrap_err();
        assert!(matches!(err, ServerError::Transient(_)), "{err:?}");
        assert_eq!(nonces.lock().unwrap().len(), 2);
    }

    #[test]
    fn only_requests_that_may_reach_the_server_twice_are_repeated() {
        for (method, path) in [
            ("GET", "/api/v1/device/checkin?version=1"),
            ("POST", REPORT_PATH),
            ("POST", ENROLL_PATH),
            ("POST", SESSION_PATH),
            ("POST", ATTESTATION_NONCE_PATH),
        ] {
            assert!(repeatable(method, path), "{method} {path}");
        }
        for path in [
            ROTATE_PATH,
            ORDER_DONE_PATH,
            TRANSFER_PATH,
            ATTESTATION_PATH,
        ] {
            assert!(!repeatable("POST", path), "POST {path}");
        }
    }
}
