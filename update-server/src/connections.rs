//! The HTTP listener: HTTP/1.1 connections with a header-read timeout, at most
//! `max-connections` of them at once.
//!
//! `axum::serve` has neither, and both were exploited live on loopback (issue 12):
//!
//! - **Slow headers.** A request whose headers ended 75 s after the connection opened was
//!   still answered. hyper now closes a connection that has not sent a whole request head
//!   within `header-read-timeout`; the same timer runs while a keep-alive connection waits
//!   for its next request, so it is also the idle timeout.
//! - **Connection exhaustion.** 80 half-sent requests used up a 64-file limit, and
//!   `/healthz` waited in the accept queue until it timed out. Now at most
//!   `max-connections` are open, lowered at start-up to fit the open-file limit (each
//!   connection may also hold an artifact file), so accepting can never starve the
//!   database of file descriptors. At the limit the connection that has waited longest
//!   *without a request in flight* is closed to make room, as nginx reuses idle
//!   keep-alive connections: a client that sends its request at once, such as a health
//!   check, is served while slow connections hold every slot. Only when every connection
//!   is busy is the new one closed at once; none waits in a queue.
//!
//! HTTP/2 is not offered: devices and the CLI speak HTTP/1.1, and TLS (with HTTP/2 if
//! wanted) belongs to the proxy in front.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::Limits;

/// File descriptors kept for the database, logs and the runtime, beyond those the
/// server holds when it starts listening.
const FD_HEADROOM: u64 = 16;
/// How long a new connection waits for the one closed to make room to let go of its slot.
const EVICTION_GRACE: Duration = Duration::from_secs(1);

/// One open connection, as the limit sees it.
struct Slot {
    /// Requests in flight, from a parsed request head until the response body has been
    /// sent or dropped.
    in_flight: AtomicUsize,
    /// Closes the connection to make room for a new one.
    evict: CancellationToken,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Open {
    next: u64,
    slots: BTreeMap<u64, Arc<Slot>>,
}

/// Serves `app` on `listener` until `shutdown` completes, then lets every open connection
/// finish its request in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) {
    let max = connection_budget(limits.max_connections);
    let permits = Arc::new(Semaphore::new(max as usize));
    let open = Arc::new(Mutex::new(Open::default()));
    let stopping = CancellationToken::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_s))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors or a connection reset before it was
                    // accepted: pause rather than spin, as hyper's own accept loops do.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(permit) = slot_for_new_connection(&permits, &open).await else {
            metrics::counter!("rota_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let (id, slot) = {
            let mut open = open.lock().unwrap();
            let id = open.next;
            open.next += 1;
            let slot = Arc::new(Slot {
                in_flight: AtomicUsize::new(0),
                evict: CancellationToken::new(),
            });
            open.slots.insert(id, slot.clone());
            (id, slot)
        };
        let connection = Connection {
            id,
            slot,
            open: open.clone(),
            _permit: permit,
        };
        tokio::spawn(connection.serve(http.clone(), stream, peer, app.clone(), stopping.clone()));
    }
    drop(listener);
    stopping.cancel();
    // Every connection holds a permit until it has closed.
    let _ = permits.acquire_many(max).await;
}

/// A free slot, or one made by closing the connection that has waited longest without a
/// request in flight; `None` when every connection is busy.
async fn slot_for_new_connection(
    permits: &Arc<Semaphore>,
    open: &Mutex<Open>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = permits.clone().try_acquire_owned() {
        return Some(permit);
    }
    let victim = {
        let open = open.lock().unwrap();
        open.slots
            .values()
            .find(|s| s.in_flight.load(Ordering::Acquire) == 0 && !s.evict.is_cancelled())
            .cloned()
    }?;
    victim.evict.cancel();
    metrics::counter!("rota_http_connections_evicted_total").increment(1);
    tokio::time::timeout(EVICTION_GRACE, permits.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// An accepted connection: its slot in [`Open`] and its permit, both given back when
/// it ends however it ends.
struct Connection {
    id: u64,
    slot: Arc<Slot>,
    open: Arc<Mutex<Open>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.open.lock().unwrap().slots.remove(&self.id);
    }
}

impl Connection {
    async fn serve(
        self,
        http: http1::Builder,
        stream: TcpStream,
        peer: SocketAddr,
        app: Router,
        stopping: CancellationToken,
    ) {
        let slot = self.slot.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let in_flight = InFlight::start(&slot);
            // Handlers and the audit log see the peer's address as axum's `ConnectInfo`.
            request.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let response = app.oneshot(request.map(Body::new)).await?;
                // The request stays in flight until hyper drops the response body.
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _ = &in_flight;
                        frame
                    }))
                }))
            }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, %peer, "connection ended with an error");
                }
            }
            () = self.slot.evict.cancelled() => {
                tracing::debug!(%peer, "closed a waiting connection to make room");
            }
            () = stopping.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }
}

/// Marks a request in flight on its connection for as long as it lives.
struct InFlight(Arc<Slot>);

impl InFlight {
    fn start(slot: &Arc<Slot>) -> InFlight {
        slot.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(slot.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `configured`, lowered so that every connection and an artifact file for each fit in
/// the process's open-file limit beside what is open now.
fn connection_budget(configured: u32) -> u32 {
    let Some((limit, open_now)) = open_file_limit() else {
        return configured;
    };
    let fitting = limit.saturating_sub(open_now + FD_HEADROOM) / 2;
    let budget = u64::from(configured).min(fitting).max(1) as u32;
    if budget < configured {
        tracing::warn!(
            configured,
            serving = budget,
            open_file_limit = limit,
            "max-connections does not fit the open-file limit (ulimit -n); serving fewer"
        );
    }
    budget
}

/// The soft open-file limit and the number of files open now, where the system says.
#[cfg(unix)]
#[allow(unsafe_code)] // getrlimit(2): libc has no safe wrapper.
fn open_file_limit() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    let open_now = std::fs::read_dir("/dev/fd").ok()?.count() as u64;
    #[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on some targets
    Some((limit.rlim_cur as u64, open_now))
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<(u64, u64)> {
    None
}
