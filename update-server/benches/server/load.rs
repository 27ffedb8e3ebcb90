//! The load tool: N HTTP/1.1 keep-alive connections over loopback (hyper's client
//! connection, no pool, no TLS), each sending its next request as soon as the previous
//! answer is read in full, for a warm-up and then a fixed window. The same code drives
//! rota-server and nginx.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

pub type Req = Request<Empty<Bytes>>;
pub type Sender = SendRequest<Empty<Bytes>>;

/// The next request of a load run; `None` once a pre-built pool is used up.
pub type Source = Arc<dyn Fn() -> Option<Req> + Send + Sync>;

/// A GET of `path_and_query` with `headers` (a Host header is added).
pub fn get(addr: SocketAddr, path_and_query: &str, headers: &HeaderMap) -> Req {
    let mut req = Request::get(path_and_query)
        .body(Empty::new())
        .expect("a valid request");
    *req.headers_mut() = headers.clone();
    req.headers_mut().insert(
        hyper::header::HOST,
        HeaderValue::from_str(&addr.to_string()).expect("an address is a valid header"),
    );
    req
}

/// A new keep-alive connection sending bodies of type `B`.
pub async fn connect<B>(addr: SocketAddr) -> Result<SendRequest<B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends `req` and reads the whole answer; returns the status and the body length.
pub async fn exchange(sender: &mut Sender, req: Req) -> Result<(StatusCode, u64)> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            len += data.len() as u64;
        }
    }
    Ok((status, len))
}

/// Sends `req` and returns the status and the body.
pub async fn exchange_full<B>(
    sender: &mut SendRequest<B>,
    req: Request<B>,
) -> Result<(StatusCode, Bytes)>
where
    B: hyper::body::Body + Send + 'static,
{
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

pub struct LoadSpec {
    pub addr: SocketAddr,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// An answer with another status, or another body length, counts as unexpected.
    pub expect_status: StatusCode,
    pub expect_len: Option<u64>,
    pub source: Source,
    /// Processes whose CPU time over the window is reported: (label, pid, with children).
    pub cpu: Vec<(String, u32, bool)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    pub connections: usize,
    /// Seconds of the measured window (shorter than asked if the request pool ran out).
    pub window_s: f64,
    /// Expected answers completed in the window.
    pub requests: u64,
    pub requests_per_s: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// Answers with an unexpected status or body length, in the window.
    pub unexpected: u64,
    /// Connection or protocol errors, in the window.
    pub errors: u64,
    /// The first unexpected answer or error, for diagnosis.
    pub first_problem: Option<String>,
    /// Whether the pre-signed request pool ran out before the window ended.
    pub pool_exhausted: bool,
    /// CPU cores each watched process used over the window (CPU seconds / window), then
    /// those all other processes on the machine used.
    pub cpu_cores: Vec<(String, f64)>,
}

#[derive(Default)]
struct WorkerStats {
    latencies_ns: Vec<u64>,
    unexpected: u64,
    errors: u64,
    first_problem: Option<String>,
    last_done: Option<Instant>,
}

/// Runs `spec`: warm-up, then the measured window. Requests completing in the window are
/// counted; their latency is from sending to the last byte of the answer.
pub async fn run(spec: LoadSpec) -> Result<LoadResult> {
    let start = Instant::now();
    let window_start = start + spec.warmup;
    let end = window_start + spec.duration;
    let exhausted = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::with_capacity(spec.connections);
    for _ in 0..spec.connections {
        let source = spec.source.clone();
        let exhausted = exhausted.clone();
        let (addr, expect_status, expect_len) = (spec.addr, spec.expect_status, spec.expect_len);
        workers.push(tokio::spawn(async move {
            let mut stats = WorkerStats {
                latencies_ns: Vec::with_capacity(64 * 1024),
                ..Default::default()
            };
            let mut sender: Option<Sender> = None;
            let problem = |stats: &mut WorkerStats, what: String| {
                if stats.first_problem.is_none() {
                    stats.first_problem = Some(what);
                }
            };
            loop {
                if Instant::now() >= end {
                    break;
                }
                let Some(req) = source() else {
                    exhausted.store(true, Ordering::Relaxed);
                    break;
                };
                if sender.is_none() {
                    match connect(addr).await {
                        Ok(s) => sender = Some(s),
                        Err(e) => {
                            if Instant::now() >= window_start {
                                stats.errors += 1;
                            }
                            problem(&mut stats, format!("{e:#}"));
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let sent = Instant::now();
                let result = exchange(sender.as_mut().expect("connected"), req).await;
                let done = Instant::now();
                let counted = done >= window_start && done <= end;
                match result {
                    Ok((status, len))
                        if status == expect_status && expect_len.is_none_or(|l| l == len) =>
                    {
                        if counted {
                            stats.latencies_ns.push((done - sent).as_nanos() as u64);
                            stats.last_done = Some(done);
                        }
                    }
                    Ok((status, len)) => {
                        if counted {
                            stats.unexpected += 1;
                        }
                        problem(&mut stats, format!("answer {status} with {len} bytes"));
                    }
                    Err(e) => {
                        if counted {
                            stats.errors += 1;
                        }
                        problem(&mut stats, format!("{e:#}"));
                        sender = None;
                    }
                }
            }
            stats
        }));
    }
    // CPU time of the watched processes over the window.
    tokio::time::sleep_until(window_start.into()).await;
    let machine_before = super::procs::machine_busy_seconds();
    let cpu_before: Vec<f64> = spec
        .cpu
        .iter()
        .map(|(_, pid, children)| super::procs::cpu_seconds(*pid, *children))
        .collect();
    tokio::time::sleep_until(end.into()).await;
    let machine_after = super::procs::machine_busy_seconds();
    let cpu_after: Vec<f64> = spec
        .cpu
        .iter()
        .map(|(_, pid, children)| super::procs::cpu_seconds(*pid, *children))
        .collect();

    let mut all = WorkerStats::default();
    for worker in workers {
        let stats = worker.await.context("a load worker panicked")?;
        all.latencies_ns.extend(stats.latencies_ns);
        all.unexpected += stats.unexpected;
        all.errors += stats.errors;
        all.first_problem = all.first_problem.or(stats.first_problem);
        all.last_done = all.last_done.max(stats.last_done);
    }
    let pool_exhausted = exhausted.load(Ordering::Relaxed);
    let window = if pool_exhausted {
        match all.last_done {
            Some(last) if last > window_start => last - window_start,
            _ => bail!("the pre-signed request pool ran out before the measured window began"),
        }
    } else {
        spec.duration
    };
    let window_s = window.as_secs_f64();
    let mut lat = all.latencies_ns;
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1000.0
    };
    let cores = |seconds: f64| {
        if pool_exhausted {
            f64::NAN
        } else {
            seconds / spec.duration.as_secs_f64()
        }
    };
    let mut cpu_cores: Vec<(String, f64)> = spec
        .cpu
        .iter()
        .zip(cpu_before.iter().zip(&cpu_after))
        .map(|((label, _, _), (before, after))| (label.clone(), cores(after - before)))
        .collect();
    // Everything else on the machine: other work competing for the same CPUs.
    let watched: f64 = cpu_cores.iter().map(|(_, c)| c).sum();
    let machine = cores(machine_after - machine_before);
    cpu_cores.push(("rest of machine".into(), (machine - watched).max(0.0)));
    Ok(LoadResult {
        connections: spec.connections,
        window_s,
        requests: lat.len() as u64,
        requests_per_s: lat.len() as f64 / window_s,
        p50_us: pct(0.50),
        p90_us: pct(0.90),
        p99_us: pct(0.99),
        max_us: lat.last().map_or(f64::NAN, |&n| n as f64 / 1000.0),
        unexpected: all.unexpected,
        errors: all.errors,
        first_problem: all.first_problem,
        pool_exhausted,
        cpu_cores,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct DownloadResult {
    pub clients: usize,
    pub downloads: usize,
    pub bytes: u64,
    pub wall_s: f64,
    pub mib_per_s: f64,
    /// Median and slowest time of one download, in milliseconds.
    pub median_ms: f64,
    pub max_ms: f64,
    /// CPU cores the server used while the downloads ran.
    pub server_cores: f64,
}

/// `clients` connections each GET `path` `per_client` times in a row (after one
/// unmeasured download each); every answer must be 200 with `length` bytes. `server` is
/// the (pid, with children) whose CPU time is reported.
pub async fn download(
    addr: SocketAddr,
    path: &str,
    length: u64,
    clients: usize,
    per_client: usize,
    server: (u32, bool),
) -> Result<DownloadResult> {
    let mut senders = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut sender = connect(addr).await?;
        let (status, len) = exchange(&mut sender, get(addr, path, &HeaderMap::new())).await?;
        if status != StatusCode::OK || len != length {
            bail!("GET {path} answered {status} with {len} bytes, not 200 with {length}");
        }
        senders.push(sender);
    }
    let cpu = super::procs::cpu_seconds(server.0, server.1);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for mut sender in senders {
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let t = Instant::now();
                let (status, len) =
                    exchange(&mut sender, get(addr, &path, &HeaderMap::new())).await?;
                if status != StatusCode::OK || len != length {
                    bail!("GET {path} answered {status} with {len} bytes, not 200 with {length}");
                }
                times.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(times)
        }));
    }
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await.context("a download client panicked")??);
    }
    let wall = start.elapsed();
    let cpu = super::procs::cpu_seconds(server.0, server.1) - cpu;
    times.sort_unstable();
    let bytes = length * times.len() as u64;
    Ok(DownloadResult {
        clients,
        downloads: times.len(),
        bytes,
        wall_s: wall.as_secs_f64(),
        mib_per_s: bytes as f64 / (1024.0 * 1024.0) / wall.as_secs_f64(),
        median_ms: times[times.len() / 2].as_secs_f64() * 1000.0,
        max_ms: times.last().map_or(f64::NAN, |t| t.as_secs_f64() * 1000.0),
        server_cores: cpu / wall.as_secs_f64(),
    })
}
