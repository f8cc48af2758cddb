//! The accept loop: TCP (and TLS) connections admitted under the gateway's limits, HTTP/1.1 with
//! a deadline for each request's headers, and a shutdown that ends every connection, whatever
//! state its client left it in.
//!
//! Admission happens before a single byte of HTTP is parsed: a connection past
//! `limits.max_connections`, or from an address opening connections faster than
//! `limits.new_connections_per_ip_per_sec`, is answered 503 or 429 and closed (over TLS it is
//! closed before the handshake, which is where the CPU would go). An admitted connection holds a
//! [`ConnectionPermit`] until it closes; a WebSocket upgraded from it keeps the permit, so the
//! limit counts live calls' sockets as well as pending requests.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use crate::AppState;
use crate::metrics::Refusal;

/// How long a connection that has not finished a request may stay once shutdown begins.
const HTTP_DRAIN_GRACE: Duration = Duration::from_secs(1);
/// How long a refused connection is kept to deliver its 503/429 (then it is dropped).
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// Refused connections being answered at once; past this they are closed without an answer.
const MAX_REFUSALS_IN_FLIGHT: usize = 256;
/// Addresses the per-IP rate remembers; when full, idle ones are forgotten.
const MAX_TRACKED_ADDRESSES: usize = 65_536;
/// Bytes of headers a request may have (hyper's default is ~400 KiB).
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// When a listener stops, and how many connections it holds at once.
#[derive(Clone)]
pub(crate) struct Gate {
    /// Cancelled when the listener stops accepting (its connections then get a short grace).
    pub(crate) stop: CancellationToken,
    /// Its connections open now (HTTP requests and upgraded WebSockets).
    pub(crate) open: Arc<AtomicUsize>,
    /// The most it may hold.
    pub(crate) max_open: usize,
}

/// Serves `listener` until `gate.stop`, then lets its HTTP connections end (at most
/// [`HTTP_DRAIN_GRACE`]). Upgraded WebSockets are not waited for here: they belong to the
/// connection tracker, which the shutdown drains.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    state: Arc<AppState>,
    gate: Gate,
) {
    let admission = Arc::new(Admission::new(&state, &gate));
    let connections = TaskTracker::new();
    let refusals = Arc::new(AtomicUsize::new(0));
    let mut accept_errors = LogLimiter::default();
    loop {
        let accepted = tokio::select! {
            biased;
            () = gate.stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if accept_errors.should_log() {
                    tracing::warn!(error = %e, "accept failed");
                }
                // Out of file descriptors (or similar): give the process a moment instead of
                // spinning on an error that accept returns at once.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // 20 ms frames are small writes: Nagle would hold one back until the previous one is
        // acknowledged, which on a delayed ACK is tens of milliseconds.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let permit = match admission.admit(remote.ip(), Instant::now()) {
            Ok(permit) => permit,
            Err(refusal) => {
                state.metrics.connection_refused(refusal);
                refuse(tcp, refusal, tls.is_some(), &refusals);
                continue;
            }
        };
        let task = serve_connection(
            tcp,
            remote,
            tls.clone(),
            router.clone(),
            Arc::clone(&state),
            permit,
            gate.stop.clone(),
        );
        connections.spawn(task);
    }
    connections.close();
    // Every connection task ends within HTTP_DRAIN_GRACE of draining; this only bounds a bug.
    let _ = tokio::time::timeout(HTTP_DRAIN_GRACE * 2, connections.wait()).await;
}

/// One admitted connection: the TLS handshake (bounded), then HTTP/1.1 until it closes or is
/// upgraded; on shutdown, a short grace, then dropped.
async fn serve_connection(
    tcp: TcpStream,
    remote: SocketAddr,
    tls: Option<TlsAcceptor>,
    router: Router,
    state: Arc<AppState>,
    permit: ConnectionPermit,
    stop: CancellationToken,
) {
    let limits = &state.config.limits;
    match tls {
        None => serve_http(tcp, remote, router, &state, permit, &stop).await,
        Some(acceptor) => {
            let handshake = Duration::from_secs(limits.tls_handshake_timeout_secs);
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                accepted = tokio::time::timeout(handshake, acceptor.accept(tcp)) => accepted,
            };
            match accepted {
                Ok(Ok(stream)) => serve_http(stream, remote, router, &state, permit, &stop).await,
                Ok(Err(e)) => {
                    state.metrics.tls_handshake_failed("error");
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    state.metrics.tls_handshake_failed("timeout");
                    tracing::debug!(%remote, "TLS handshake timed out");
                }
            }
        }
    }
}

async fn serve_http<I>(
    io: I,
    remote: SocketAddr,
    router: Router,
    state: &AppState,
    permit: ConnectionPermit,
    stop: &CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        // What the handlers may ask of their connection: the peer's address, and the permit a
        // WebSocket keeps for its life.
        request.extensions_mut().insert(ConnectInfo(remote));
        request.extensions_mut().insert(permit.clone());
        let mut router = router.clone();
        async move { router.call(request).await }
    });
    let header_timeout = Duration::from_secs(state.config.limits.header_read_timeout_secs);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // The deadline also covers a kept-alive connection waiting for its next request, so an
        // idle client holds its permit no longer than a slow one. (Turning keep-alive off
        // instead would put `connection: close` on the WebSocket upgrade's 101, which breaks it.)
        .max_buf_size(MAX_HEADER_BYTES.max(8192));
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(HTTP_DRAIN_GRACE, connection.as_mut()).await {
                Ok(result) => result,
                Err(_) => return, // dropped: a half-sent request never holds up shutdown
            }
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            state.metrics.connection_refused(Refusal::HeaderTimeout);
            tracing::debug!(%remote, "request headers not received in time");
        } else {
            tracing::debug!(%remote, error = %e, "HTTP connection failed");
        }
    }
}

/// Answers a refused connection (503 or 429) and closes it, off the accept loop and bounded in
/// time and number; over TLS it is closed at once (no handshake is spent on it).
fn refuse(mut tcp: TcpStream, refusal: Refusal, tls: bool, in_flight: &Arc<AtomicUsize>) {
    if tls || in_flight.load(Ordering::Relaxed) >= MAX_REFUSALS_IN_FLIGHT {
        return; // dropped: closed
    }
    in_flight.fetch_add(1, Ordering::Relaxed);
    let in_flight = Arc::clone(in_flight);
    let response: &'static [u8] = match refusal {
        Refusal::RateLimited => {
            b"HTTP/1.1 429 Too Many Requests\r\nconnection: close\r\ncontent-length: 0\r\nretry-after: 1\r\n\r\n"
        }
        _ => {
            b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\nretry-after: 1\r\n\r\n"
        }
    };
    tokio::spawn(async move {
        let answer = async {
            tcp.write_all(response).await?;
            tcp.shutdown().await?;
            // Read what the client sent until it closes, so the close is not a reset that could
            // destroy the answer before the client reads it.
            let mut sink = [0u8; 1024];
            while tcp.read(&mut sink).await? > 0 {}
            std::io::Result::Ok(())
        };
        let _ = tokio::time::timeout(REFUSAL_LINGER, answer).await;
        in_flight.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Decides which connections are served: the connection limit and the per-address rate.
struct Admission {
    open: Arc<AtomicUsize>,
    max_open: usize,
    rate: Option<PerAddressRate>,
}

impl Admission {
    fn new(state: &AppState, gate: &Gate) -> Self {
        let limits = &state.config.limits;
        Admission {
            open: Arc::clone(&gate.open),
            max_open: gate.max_open,
            rate: (limits.new_connections_per_ip_per_sec > 0.0).then(|| {
                PerAddressRate::new(
                    limits.new_connections_per_ip_per_sec,
                    f64::from(limits.new_connections_burst_per_ip),
                    MAX_TRACKED_ADDRESSES,
                )
            }),
        }
    }

    fn admit(&self, ip: IpAddr, now: Instant) -> Result<ConnectionPermit, Refusal> {
        if let Some(rate) = &self.rate {
            if !rate.allow(ip, now) {
                return Err(Refusal::RateLimited);
            }
        }
        // Take a place first, then check: two accepts can never both take the last one.
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_open {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::MaxConnections);
        }
        Ok(ConnectionPermit(Arc::new(PermitInner {
            open: Arc::clone(&self.open),
        })))
    }
}

/// A place among `limits.max_connections`, held by a connection (and the WebSocket upgraded
/// from it) until both are gone.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionPermit(#[allow(dead_code)] Arc<PermitInner>); // held, never read

#[derive(Debug)]
struct PermitInner {
    open: Arc<AtomicUsize>,
}

impl Drop for PermitInner {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A token bucket per address: `rate` new connections a second, `burst` at once. IPv6 addresses
/// count per /64 (one host can own a whole one). The map is bounded: when it is full, addresses
/// whose bucket has refilled are forgotten (they are indistinguishable from new ones), and if
/// none has, all are.
struct PerAddressRate {
    rate: f64,
    burst: f64,
    max_addresses: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl PerAddressRate {
    fn new(rate: f64, burst: f64, max_addresses: usize) -> Self {
        PerAddressRate {
            rate,
            burst: burst.max(1.0),
            max_addresses,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let key = address_key(ip);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= self.max_addresses && !buckets.contains_key(&key) {
            buckets.retain(|_, bucket| self.refilled(*bucket, now) < self.burst);
            if buckets.len() >= self.max_addresses {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        bucket.tokens = self.refilled(*bucket, now);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.rate).min(self.burst)
    }
}

/// The address a rate counts against: IPv4 as is (also when mapped into IPv6), IPv6 by /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// At most one log line per 10 s for a repeating error.
#[derive(Default)]
struct LogLimiter {
    last: Option<Instant>,
}

impl LogLimiter {
    fn should_log(&mut self) -> bool {
        let now = Instant::now();
        match self.last {
            Some(at) if now.duration_since(at) < Duration::from_secs(10) => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_allows_the_burst_then_the_rate() {
        let rate = PerAddressRate::new(10.0, 3.0, 16);
        let ip: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let t0 = Instant::now();
        assert!((0..3).all(|_| rate.allow(ip, t0)));
        assert!(!rate.allow(ip, t0), "burst spent");
        assert!(
            rate.allow(ip, t0 + Duration::from_millis(100)),
            "one refilled"
        );
        assert!(!rate.allow(ip, t0 + Duration::from_millis(100)));
        let other: IpAddr = "192.0.2.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert!(rate.allow(other, t0), "addresses are counted apart");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8::1".parse().unwrap_or(IpAddr::from([0; 16]));
        let b: IpAddr = "2001:db8::ffff:1".parse().unwrap_or(IpAddr::from([0; 16]));
        let c: IpAddr = "2001:db8:0:1::1".parse().unwrap_or(IpAddr::from([0; 16]));
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap_or(IpAddr::from([0; 16]));
        assert_eq!(address_key(mapped), IpAddr::from([192, 0, 2, 1]));
    }

    #[test]
    fn the_address_map_stays_bounded() {
        let rate = PerAddressRate::new(1.0, 1.0, 8);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            assert!(rate.allow(IpAddr::from(i.to_be_bytes()), t0));
            let len = rate.buckets.lock().map(|b| b.len()).unwrap_or(0);
            assert!(len <= 8, "{len} addresses tracked");
        }
    }
}
