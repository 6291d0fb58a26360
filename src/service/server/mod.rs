//! The HTTP/1.1 server under every listener (the token API, the admin API,
//! the local IVS): hyper with its timer, so that a client must send its
//! headers within a deadline (which also bounds how long an idle keep-alive
//! connection is kept: hyper starts the same timer when a connection turns
//! idle), and must take its answers within another ([`io`]); with limits on
//! open connections, overall and per client address. A connection past a
//! limit is answered at once with a small JSON refusal and closed, without
//! reading from it, so that stalled clients cannot fill the process's file
//! descriptors and starve `/healthz` and the token API.
//!
//! With a certificate configured, connections are TLS ([`tls`]), the
//! handshake under the same deadline as the headers.

mod io;
mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use hyper::body::{Body as _, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

use self::io::{Guarded, MAX_BUFFER_BYTES};
pub(crate) use self::tls::Tls;

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    /// A client must send a request's headers within this, and an idle
    /// keep-alive connection is closed after it.
    pub(crate) header_read_timeout: Duration,
    /// A write that the client takes nothing of for this long ends the
    /// connection.
    pub(crate) write_timeout: Duration,
    /// Open connections at most, overall.
    pub(crate) max_connections: usize,
    /// Open connections at most from one client address (an IPv6 client:
    /// its /64).
    pub(crate) max_connections_per_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connections_per_ip: 128,
        }
    }
}

/// How many connections an address may hold and still be let into the
/// reserve.
const RESERVE_PER_ADDRESS: usize = 4;

impl ConnectionLimits {
    /// These limits with at most `max` connections (at least one), overall
    /// and from one address.
    pub(crate) fn at_most(self, max: usize) -> Self {
        let max = max.max(1);
        Self {
            max_connections: max,
            max_connections_per_ip: self.max_connections_per_ip.min(max),
            ..self
        }
    }

    /// The last eighth of the overall limit, kept for addresses that hold
    /// fewer than [`RESERVE_PER_ADDRESS`] connections.
    ///
    /// Why a reserve and not evicting the busiest address's oldest
    /// connection when full: eviction would cut requests in flight of a
    /// busy but honest backend (a pooling client holds many connections
    /// from one address), and needs a handle on every connection; a reserve
    /// only refuses new connections, at once and with a 503, and lets a
    /// health check or a new client in while a few addresses hold all the
    /// rest. An attacker needs `reserve / 4` more addresses to fill it too.
    fn reserve(&self) -> usize {
        self.max_connections / 8
    }
}

/// Open connections per client address, and overall.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// A client as the limits count it: an IPv4 address, or the /64 an IPv6
/// address is in (a single host is commonly given a whole /64, so one
/// attacker has 2^64 addresses). IPv4-mapped IPv6 addresses count as IPv4.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// A connection counted as open until dropped.
struct Slot {
    open: Arc<Mutex<Open>>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock() {
            open.total = open.total.saturating_sub(1);
            if let Some(n) = open.per_client.get_mut(&self.client) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.per_client.remove(&self.client);
                }
            }
        }
    }
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    /// Every slot is taken.
    Overall,
    /// Only the reserve is left, and this address holds too many for it.
    Reserve,
    /// This address holds its maximum.
    ThisClient,
}

fn take_slot(open: &Arc<Mutex<Open>>, ip: IpAddr, limits: &ConnectionLimits) -> Result<Slot, Full> {
    let client = client_of(ip);
    let mut state = open.lock().map_err(|_| Full::Overall)?;
    if state.total >= limits.max_connections {
        return Err(Full::Overall);
    }
    let mine = state.per_client.get(&client).copied().unwrap_or(0);
    if mine >= limits.max_connections_per_ip {
        return Err(Full::ThisClient);
    }
    let unreserved = limits.max_connections - limits.reserve();
    if state.total >= unreserved && mine >= RESERVE_PER_ADDRESS {
        return Err(Full::Reserve);
    }
    *state.per_client.entry(client).or_default() += 1;
    state.total += 1;
    Ok(Slot {
        open: Arc::clone(open),
        client,
    })
}

/// The answer to a connection past a limit: complete, self-contained, and
/// `Connection: close`.
fn refusal(full: Full) -> Vec<u8> {
    let (status, message) = match full {
        Full::Overall => (
            "503 Service Unavailable",
            "the server holds its maximum of open connections",
        ),
        Full::Reserve => (
            "503 Service Unavailable",
            "the server holds nearly its maximum of open connections; the rest is kept for clients that hold few",
        ),
        Full::ThisClient => (
            "429 Too Many Requests",
            "this client address holds its maximum of open connections",
        ),
    };
    let body = format!(r#"{{"error":{{"code":"too_many_connections","message":"{message}"}}}}"#);
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// How long a refused client gets to take its refusal.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

fn refuse(stream: TcpStream, full: Full, peer: SocketAddr) {
    metrics::counter!("connections_refused_total", "limit" => match full {
        Full::Overall => "overall",
        Full::Reserve => "reserve",
        Full::ThisClient => "per_ip",
    })
    .increment(1);
    tracing::debug!(peer = %peer, ?full, "connection refused: limit reached");
    tokio::spawn(answer_and_close(stream, refusal(full)));
}

/// Refused connections closing lingeringly at once, at most. Each holds a
/// descriptor outside the connection limits for up to
/// [`REFUSAL_WRITE_TIMEOUT`]: unbounded, a client refused over and over
/// could spend the descriptors the limits keep in reserve (64, for the
/// listeners, key files and calls to IVS).
static LINGERING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(32);

/// Writes a complete answer and closes, within [`REFUSAL_WRITE_TIMEOUT`].
async fn answer_and_close(mut stream: TcpStream, answer: Vec<u8>) {
    let Ok(_lingering) = LINGERING.try_acquire() else {
        // Past the bound: no waiting. Drop what the client has sent so far
        // (so that the close is a FIN, not a reset that could erase the
        // answer), write the answer if the socket takes it at once, close.
        metrics::counter!("connections_refused_unlingering_total").increment(1);
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            match stream.try_read(&mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let _ = stream.try_write(&answer);
        return;
    };
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        // A lingering close (RFC 9112 section 9.6): closing with the
        // client's request unread would send a reset, which may erase the
        // answer from the client's buffer before it reads it. So read and
        // drop what the client sent, a little and briefly.
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            if stream.read(&mut sink).await? == 0 {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// A request body that records whether it was read to its end.
struct Tracked {
    inner: Incoming,
    read: Arc<AtomicBool>,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.read.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `router` for one connection: the peer's address given to the handlers,
/// and `Connection: close` on every answer sent before its request's body
/// was read to the end (an early refusal, a 404, a GET with a body, a 413
/// on the declared length). hyper would then close the connection without
/// a word, or after draining a little, and a pooling client's next request
/// on it would fail; said once here, it holds for every route and listener.
fn per_connection(
    router: Router,
    peer: SocketAddr,
) -> impl tower::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Future<Output = Result<axum::response::Response, Infallible>> + Send,
> + Clone {
    tower::service_fn(move |request: Request<Incoming>| {
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ConnectInfo(peer));
        // A request with no body (most GETs) has nothing left unread: no
        // tracking, no allocation for it.
        let read = (!body.is_end_stream()).then(|| Arc::new(AtomicBool::new(false)));
        let body = match &read {
            Some(read) => axum::body::Body::new(Tracked {
                inner: body,
                read: Arc::clone(read),
            }),
            None => axum::body::Body::new(body),
        };
        let call = router.clone().oneshot(Request::from_parts(parts, body));
        async move {
            let mut response = call.await?;
            if read.is_some_and(|read| !read.load(Ordering::Relaxed)) {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        }
    })
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops
/// accepting and waits for the open connections to finish their requests.
/// With `tls`, every connection is TLS.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    let open = Arc::new(Mutex::new(Open::default()));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        // One buffer per connection, each way: a request head larger than
        // it is refused 431, and a client that pipelines requests without
        // reading the answers can pile up this much of them, no more (hyper
        // stops reading requests while an answer waits to be buffered).
        .max_buf_size(MAX_BUFFER_BYTES)
        .writev(false)
        // Aggregated flushes lift the cap on buffered answers.
        .pipeline_flush(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors (or a connection that died in the
                // backlog): wait a moment for connections to close instead
                // of spinning, and go on.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match take_slot(&open, peer.ip(), &limits) {
            Ok(slot) => slot,
            Err(full) => {
                refuse(stream, full, peer);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(per_connection(router.clone(), peer));
        match &tls {
            None => {
                let io = TokioIo::new(Guarded::new(stream, limits.write_timeout));
                let connection = graceful.watch(http.serve_connection(io, service));
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                    drop(slot);
                });
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                let http = http.clone();
                let watcher = graceful.watcher();
                let deadline = limits.header_read_timeout;
                let write_timeout = limits.write_timeout;
                tokio::spawn(async move {
                    // The handshake, off the accept loop and under the header
                    // deadline: a client that stalls in it holds only its slot.
                    let handshake = async {
                        if tls::sends_plain_http(&stream).await {
                            answer_and_close(stream, tls::plain_http_refusal()).await;
                            return None;
                        }
                        Some(acceptor.accept(stream).await)
                    };
                    match tokio::time::timeout(deadline, handshake).await {
                        Ok(Some(Ok(tls_stream))) => {
                            let io = TokioIo::new(Guarded::new(tls_stream, write_timeout));
                            let connection = watcher.watch(http.serve_connection(io, service));
                            if let Err(e) = connection.await {
                                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                            }
                        }
                        Ok(Some(Err(e))) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed")
                        }
                        Ok(None) => {
                            tracing::debug!(peer = %peer, "plain HTTP on a TLS listener refused")
                        }
                        Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                    }
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Raises the soft limit of open file descriptors to the hard limit, so that
/// the connection limits, not the default soft limit (often 1024), decide
/// when connections are refused. Returns the limit now in force.
pub(crate) fn raise_fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit");
            None
        }
    }
}

/// A listening address as a client on this host writes it: an unspecified
/// address (`0.0.0.0`, `::`) becomes loopback.
pub(crate) fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, max_connections_per_ip: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            max_connections_per_ip,
            ..ConnectionLimits::default()
        }
    }

    #[test]
    fn slots_are_counted_per_address_and_overall_and_freed_on_drop() {
        let limits = limits(3, 2);
        let open = Arc::new(Mutex::new(Open::default()));
        let a = IpAddr::from([127, 0, 0, 2]);
        let b = IpAddr::from([127, 0, 0, 3]);
        let first = take_slot(&open, a, &limits).unwrap();
        let _second = take_slot(&open, a, &limits).unwrap();
        assert_eq!(take_slot(&open, a, &limits).err(), Some(Full::ThisClient));
        let _third = take_slot(&open, b, &limits).unwrap();
        assert_eq!(take_slot(&open, b, &limits).err(), Some(Full::Overall));
        drop(first);
        assert!(take_slot(&open, a, &limits).is_ok());
        assert_eq!(open.lock().unwrap().per_client.len(), 2);
    }

    #[test]
    fn the_reserve_lets_new_clients_in_when_a_few_addresses_hold_the_rest() {
        // 80 connections: the last 10 are the reserve.
        let limits = limits(80, 40);
        let open = Arc::new(Mutex::new(Open::default()));
        let mut held = Vec::new();
        for attacker in [2, 3] {
            let ip = IpAddr::from([10, 0, 0, attacker]);
            while let Ok(slot) = take_slot(&open, ip, &limits) {
                held.push(slot);
            }
        }
        // The first took its 40; the second stopped at the reserve.
        assert_eq!(held.len(), 70);
        let second = IpAddr::from([10, 0, 0, 3]);
        assert_eq!(take_slot(&open, second, &limits).err(), Some(Full::Reserve));
        // A health checker and a new client still get in, a few each.
        let checker = IpAddr::from([10, 0, 0, 9]);
        for _ in 0..RESERVE_PER_ADDRESS {
            held.push(take_slot(&open, checker, &limits).unwrap());
        }
        assert_eq!(
            take_slot(&open, checker, &limits).err(),
            Some(Full::Reserve)
        );
        held.push(take_slot(&open, IpAddr::from([10, 0, 0, 10]), &limits).unwrap());
        // A freed slot below the reserve goes to anyone again.
        held.truncate(10);
        assert!(take_slot(&open, second, &limits).is_ok());
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let limits = limits(100, 2);
        let open = Arc::new(Mutex::new(Open::default()));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _a = take_slot(&open, ip("2001:db8:1:2::1"), &limits).unwrap();
        let _b = take_slot(&open, ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), &limits).unwrap();
        assert_eq!(
            take_slot(&open, ip("2001:db8:1:2:abcd::9"), &limits).err(),
            Some(Full::ThisClient),
            "the same /64"
        );
        let _c = take_slot(&open, ip("2001:db8:1:3::1"), &limits).unwrap();
        assert_eq!(open.lock().unwrap().per_client.len(), 2);
        // An IPv4-mapped address counts as its IPv4 address.
        let _d = take_slot(&open, ip("::ffff:192.0.2.1"), &limits).unwrap();
        let _e = take_slot(&open, ip("192.0.2.1"), &limits).unwrap();
        assert_eq!(
            take_slot(&open, ip("192.0.2.1"), &limits).err(),
            Some(Full::ThisClient)
        );
        assert_eq!(client_of(ip("2001:db8:1:2:abcd::9")), ip("2001:db8:1:2::"));
    }

    #[test]
    fn refusals_are_complete_http_answers() {
        for full in [Full::Overall, Full::Reserve, Full::ThisClient] {
            let bytes = refusal(full);
            let text = std::str::from_utf8(&bytes).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let declared: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(declared, body.len(), "{text}");
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(json["error"]["code"], "too_many_connections");
        }
        let plain = tls::plain_http_refusal();
        let text = std::str::from_utf8(&plain).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "tls_required");
    }
}
