//! The network a simulated device sees: for a device picked for a network fault, a TCP
//! relay on loopback of its own between it and the server, which can slow the
//! server's bytes down to a link's rate or drop the link for a while (every open
//! connection reset, new ones refused), as a cellular device loses its network.
//!
//! A relay per faulty device (its own port on 127.0.0.1) is what lets a fault hit
//! exactly one device: the agents share one HTTP client, and not every request they
//! make (TUF metadata, images) names the device. The relay works below HTTP, so the
//! agent's requests and their signatures pass unchanged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Bytes a relay moves at a time; also the granularity of its rate limit.
const CHUNK: usize = 4096;

/// One device's link.
#[derive(Clone)]
pub struct Link {
    address: SocketAddr,
    state: Arc<LinkState>,
}

struct LinkState {
    /// When the link comes back, in milliseconds since `epoch`; 0 while it is up.
    down_until_ms: AtomicU64,
    epoch: Instant,
    /// Bumped on every drop: each open connection watches it and dies with the link.
    drops: watch::Sender<u64>,
    /// The server-to-device rate in bytes per second (`None`: as fast as loopback).
    rate: Option<u64>,
}

impl Link {
    /// A relay from a new port on 127.0.0.1 to `upstream`, served on the current tokio
    /// runtime; `rate` limits what the device receives.
    pub async fn start(upstream: SocketAddr, rate: Option<u64>) -> std::io::Result<Link> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let address = listener.local_addr()?;
        let state = Arc::new(LinkState {
            down_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            drops: watch::channel(0).0,
            rate,
        });
        tokio::spawn(accept(listener, upstream, state.clone()));
        Ok(Link { address, state })
    }

    /// The address the device dials instead of the server's.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Drops the link for `outage`: open connections are reset now, new ones refused
    /// until it ends.
    pub fn drop_for(&self, outage: Duration) {
        let until = self.state.epoch.elapsed() + outage;
        self.state
            .down_until_ms
            .store(until.as_millis().max(1) as u64, Ordering::SeqCst);
        self.state.drops.send_modify(|n| *n += 1);
    }

    /// How many times the link was dropped.
    pub fn drops(&self) -> u64 {
        *self.state.drops.borrow()
    }
}

impl LinkState {
    fn is_down(&self) -> bool {
        let until = self.down_until_ms.load(Ordering::SeqCst);
        until != 0 && (self.epoch.elapsed().as_millis() as u64) < until
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, state: Arc<LinkState>) {
    loop {
        let Ok((device, _)) = listener.accept().await else {
            continue;
        };
        if state.is_down() {
            // No network: the device's connection attempt ends at once.
            drop(device);
            continue;
        }
        tokio::spawn(relay(device, upstream, state.clone()));
    }
}

/// Moves bytes both ways until either side closes or the link drops.
async fn relay(device: TcpStream, upstream: SocketAddr, state: Arc<LinkState>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = device.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut dropped = state.drops.subscribe();
    let (mut from_device, mut to_device) = device.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let up = tokio::io::copy(&mut from_device, &mut to_server);
    let down = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = from_server.read(&mut buf).await?;
            if n == 0 {
                return to_device.shutdown().await;
            }
            // The bytes take their time on the link before they arrive.
            if let Some(rate) = state.rate {
                tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate.max(1) as f64)).await;
            }
            to_device.write_all(&buf[..n]).await?;
        }
    };
    // Either direction ending ends the connection, as does a drop of the link: the
    // halves are dropped, which resets both connections.
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = dropped.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        address
    }

    #[tokio::test]
    async fn a_link_relays_then_drops_then_comes_back() {
        let link = Link::start(echo_server().await, None).await.unwrap();
        let mut c = TcpStream::connect(link.address()).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");

        link.drop_for(Duration::from_millis(300));
        // The open connection dies with the link…
        let mut rest = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), c.read(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        // …a new one gets nothing while it is down…
        let mut d = TcpStream::connect(link.address()).await.unwrap();
        let _ = d.write_all(b"x").await;
        let read = tokio::time::timeout(Duration::from_secs(5), d.read(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        // …and after the outage the link works again.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let mut e = TcpStream::connect(link.address()).await.unwrap();
        e.write_all(b"pong").await.unwrap();
        e.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        assert_eq!(link.drops(), 1);
    }

    #[tokio::test]
    async fn a_slow_link_delivers_at_its_rate() {
        // 16 KiB at 32 KiB/s: half a second at least.
        let link = Link::start(echo_server().await, Some(32 * 1024))
            .await
            .unwrap();
        let mut c = TcpStream::connect(link.address()).await.unwrap();
        let started = Instant::now();
        let payload = vec![7u8; 16 * 1024];
        let (mut r, mut w) = c.split();
        let send = w.write_all(&payload);
        let mut got = vec![0u8; payload.len()];
        let (sent, read) = tokio::join!(send, r.read_exact(&mut got));
        sent.unwrap();
        read.unwrap();
        assert_eq!(got, payload);
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
}
