//! A fault-injecting HTTP/1 reverse proxy on loopback, between the simulated devices and the
//! update server. A test programs it with a rule that picks, per request, an [`Action`]:
//! forward, answer by itself, cut or stall the response body, or rewrite it. It counts the
//! response-body bytes it sends, e.g. to measure what a resumed download fetched again.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{CONNECTION, CONTENT_LENGTH, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;
type Rule = dyn Fn(&RequestInfo) -> Action + Send + Sync;

/// What the proxy does with one request.
#[derive(Clone)]
pub enum Action {
    Forward,
    /// Answer without asking upstream.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Forward, but after `after_body_bytes` bytes of the response body abort the connection
    /// (the client sees a truncated body). A body no longer than that is forwarded whole.
    Cut {
        after_body_bytes: u64,
    },
    /// Forward, send `after_body_bytes` of the body, then send nothing for `stall` (the
    /// connection stays open), then abort the connection. A body no longer than that is
    /// forwarded whole.
    Stall {
        after_body_bytes: u64,
        stall: Duration,
    },
    /// Forward, buffer the whole upstream body, replace it with `f(status, body)`'s result;
    /// Content-Length is fixed.
    Mutate(Arc<dyn Fn(u16, Vec<u8>) -> Vec<u8> + Send + Sync>),
    /// Answer by itself with `bytes` bytes of JSON whitespace, made as they are sent (never
    /// held whole): with a Content-Length when `declare_length`, chunked otherwise.
    Flood {
        status: u16,
        bytes: u64,
        declare_length: bool,
    },
}

/// The request as the rule sees it.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// Global request counter from 0 (not reset by `reset_stats`).
    pub seq: u64,
    pub method: String,
    /// The path only.
    pub path: String,
    pub query: Option<String>,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
}

impl RequestInfo {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub requests: u64,
    /// Response-body bytes handed to client connections.
    pub body_bytes_sent: u64,
    pub by_path: BTreeMap<String, PathStats>,
}

#[derive(Clone, Debug, Default)]
pub struct PathStats {
    pub requests: u64,
    pub body_bytes_sent: u64,
    /// Response statuses, including the proxy's own answers (Respond, 502).
    pub statuses: BTreeMap<u16, u64>,
}

/// The running proxy; dropping it shuts it down and closes its connections.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: String,
    client: Client<HttpConnector, Incoming>,
    rule: Mutex<Arc<Rule>>,
    stats: Mutex<Stats>,
    seq: AtomicU64,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` ("http://127.0.0.1:PORT") on a free loopback port.
    pub fn start(upstream: &str) -> FaultProxy {
        // Bound here, not in the thread, so the port accepts connections once this returns.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy port");
        listener
            .set_nonblocking(true)
            .expect("make the proxy port non-blocking");
        let addr = listener.local_addr().expect("the proxy's address");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("start the proxy's runtime");
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            rule: Mutex::new(Arc::new(|_: &RequestInfo| Action::Forward)),
            stats: Mutex::default(),
            seq: AtomicU64::new(0),
        });
        let (shutdown, stop) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn({
                let shared = shared.clone();
                // Dropping the runtime at the end drops every connection task with it.
                move || runtime.block_on(serve(listener, shared, stop))
            })
            .expect("spawn the proxy thread");
        FaultProxy {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the rule; it applies to requests that arrive from now on.
    pub fn set_rule(&self, rule: impl Fn(&RequestInfo) -> Action + Send + Sync + 'static) {
        *lock(&self.shared.rule) = Arc::new(rule);
    }

    /// Back to forwarding everything.
    pub fn clear_rule(&self) {
        self.set_rule(|_| Action::Forward);
    }

    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn count_request(&self, path: &str) {
        let mut stats = lock(&self.stats);
        stats.requests += 1;
        stats.by_path.entry(path.to_string()).or_default().requests += 1;
    }

    fn count_status(&self, path: &str, status: StatusCode) {
        let mut stats = lock(&self.stats);
        let path = stats.by_path.entry(path.to_string()).or_default();
        *path.statuses.entry(status.as_u16()).or_default() += 1;
    }

    fn count_body_bytes(&self, path: &str, n: u64) {
        let mut stats = lock(&self.stats);
        stats.body_bytes_sent += n;
        stats
            .by_path
            .entry(path.to_string())
            .or_default()
            .body_bytes_sent += n;
    }
}

/// A test that panicked while holding a lock must not take the proxy down with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // E.g. out of file descriptors: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve_connection(stream, shared.clone()));
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let (flushed_tx, flushed) = watch::channel(());
    let io = TokioIo::new(FlushSignal {
        inner: stream,
        flushed: flushed_tx,
    });
    let service = hyper::service::service_fn(move |request| {
        let (shared, flushed) = (shared.clone(), flushed.clone());
        async move { Ok::<_, Infallible>(handle(request, shared, flushed).await) }
    });
    // The errors here are clients going away and the aborts injected on purpose.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    flushed: watch::Receiver<()>,
) -> Response<Body> {
    let info = RequestInfo {
        seq: shared.seq.fetch_add(1, Ordering::Relaxed),
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
        query: request.uri().query().map(str::to_string),
        headers: request
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect(),
    };
    shared.count_request(&info.path);
    // Cloned out so that the rule runs without holding the lock.
    let rule = lock(&shared.rule).clone();
    let (response, limit) = match rule(&info) {
        Action::Forward => (forward(request, &shared).await, None),
        Action::Respond {
            status,
            headers,
            body,
        } => (respond(status, headers, body), None),
        Action::Cut { after_body_bytes } => (
            forward(request, &shared).await,
            Some((after_body_bytes, Duration::ZERO)),
        ),
        Action::Stall {
            after_body_bytes,
            stall,
        } => (
            forward(request, &shared).await,
            Some((after_body_bytes, stall)),
        ),
        Action::Mutate(f) => (mutate(forward(request, &shared).await, &*f).await, None),
        Action::Flood {
            status,
            bytes,
            declare_length,
        } => (flood(status, bytes, declare_length), None),
    };
    let (response, limit) = match response {
        Ok(response) => (response, limit),
        Err(error) => (bad_gateway(&error), None),
    };
    shared.count_status(&info.path, response.status());
    let path = info.path;
    response.map(|body| {
        let shaper = Shaper {
            body: Some(body),
            rest: None,
            limit,
            sent: 0,
            flushed,
            shared,
            path,
        };
        StreamBody::new(futures_util::stream::unfold(shaper, Shaper::next)).boxed_unsync()
    })
}

async fn forward(request: Request<Incoming>, shared: &Shared) -> Result<Response<Body>, BoxError> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{}{path}", shared.upstream).parse()?;
    strip_hop_by_hop(&mut parts.headers);
    // The client sets the upstream's.
    parts.headers.remove(HOST);
    // The request body streams through as the upstream reads it.
    let response = shared
        .client
        .request(Request::from_parts(parts, body))
        .await?;
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        body.map_err(BoxError::from).boxed_unsync(),
    ))
}

fn respond(
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<Response<Body>, BoxError> {
    let length = HeaderValue::from(body.len());
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::from_u16(status)?;
    for (name, value) in headers {
        let (name, value) = (HeaderName::try_from(name)?, HeaderValue::try_from(value)?);
        response.headers_mut().append(name, value);
    }
    // Framed by length, not chunked, like the server's answers (a rule may set its own).
    response
        .headers_mut()
        .entry(CONTENT_LENGTH)
        .or_insert(length);
    Ok(response)
}

async fn mutate(
    response: Result<Response<Body>, BoxError>,
    f: &(dyn Fn(u16, Vec<u8>) -> Vec<u8> + Send + Sync),
) -> Result<Response<Body>, BoxError> {
    let (mut parts, body) = response?.into_parts();
    let body = f(
        parts.status.as_u16(),
        body.collect().await?.to_bytes().to_vec(),
    );
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    Ok(Response::from_parts(parts, full(body)))
}

fn flood(status: u16, bytes: u64, declare_length: bool) -> Result<Response<Body>, BoxError> {
    const CHUNK: u64 = 64 * 1024;
    let filler = Bytes::from(vec![b' '; CHUNK as usize]);
    let chunks = futures_util::stream::unfold(bytes, move |left| {
        let filler = filler.clone();
        async move {
            let n = left.min(CHUNK);
            (n > 0).then(|| (Ok(Frame::data(filler.slice(..n as usize))), left - n))
        }
    });
    let mut response = Response::new(StreamBody::new(chunks).boxed_unsync());
    *response.status_mut() = StatusCode::from_u16(status)?;
    if declare_length {
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(bytes));
    }
    Ok(response)
}

fn bad_gateway(error: &BoxError) -> Response<Body> {
    let body = format!("fault proxy: upstream failed: {error}\n").into_bytes();
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

fn full(body: Vec<u8>) -> Body {
    Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Headers about one connection, not the message (RFC 9110 §7.6.1), plus those that the
/// Connection header names: each hop sets its own.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    const HOP_BY_HOP: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    let named: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    for name in named.iter().map(String::as_str).chain(HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// Streams a response body to the client: counts the bytes as they are handed to the
/// connection and, for Cut and Stall, ends the body after `limit` bytes with an error, on which
/// hyper drops the connection mid-message (the client sees a truncated body, not a clean end).
struct Shaper {
    body: Option<Body>,
    /// What a cut split off the last chunk.
    rest: Option<Bytes>,
    /// Bytes to send, then how long to stall before the abort.
    limit: Option<(u64, Duration)>,
    sent: u64,
    flushed: watch::Receiver<()>,
    shared: Arc<Shared>,
    path: String,
}

type Step = Result<Frame<Bytes>, BoxError>;

impl Shaper {
    async fn next(mut self) -> Option<(Step, Self)> {
        let frame = match self.rest.take() {
            Some(rest) => Ok(Frame::data(rest)),
            // None once the body has ended or failed.
            None => self.body.as_mut()?.frame().await?,
        };
        let frame = match frame {
            Ok(frame) => frame,
            // The upstream failed mid-body: the client's connection fails too.
            Err(error) => return Some((self.abort(Duration::ZERO, error).await, self)),
        };
        let frame = match frame.into_data() {
            Ok(mut data) => {
                if let Some((limit, stall)) = self.limit {
                    // Only once more data comes: a body no longer than `limit` ends cleanly.
                    if self.sent >= limit && !data.is_empty() {
                        let abort = "fault proxy: connection aborted on purpose".into();
                        return Some((self.abort(stall, abort).await, self));
                    }
                    // Split the chunk: the cut falls on the exact byte.
                    let room = usize::try_from(limit - self.sent).unwrap_or(usize::MAX);
                    if data.len() > room {
                        self.rest = Some(data.split_off(room));
                    }
                }
                self.sent += data.len() as u64;
                self.shared.count_body_bytes(&self.path, data.len() as u64);
                Frame::data(data)
            }
            Err(trailers) => trailers,
        };
        Some((Ok(frame), self))
    }

    /// Ends the body with `error`, on which hyper closes the connection.
    async fn abort(&mut self, stall: Duration, error: BoxError) -> Step {
        self.body = None;
        // hyper closes without flushing its write buffer: wait for the next flush of the
        // socket (see `FlushSignal`), so that all the `sent` bytes go out first.
        self.flushed.mark_unchanged();
        let _ = self.flushed.changed().await;
        tokio::time::sleep(stall).await;
        Err(error)
    }
}

/// The client connection, telling each completed flush to the bodies it carries. hyper flushes
/// the socket only once its write buffer is empty and polls the body first, so a flush after a
/// body frame was handed over means the frame is in the socket.
struct FlushSignal {
    inner: TcpStream,
    flushed: watch::Sender<()>,
}

impl AsyncRead for FlushSignal {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FlushSignal {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = ready!(Pin::new(&mut this.inner).poll_flush(cx));
        this.flushed.send_replace(());
        Poll::Ready(flushed)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
