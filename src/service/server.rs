//! The HTTP/1.1 server under both listeners (and the local IVS): hyper with
//! its timer, so that a client must send its headers within a deadline
//! (which also bounds how long an idle keep-alive connection is kept: hyper
//! starts the same timer when a connection turns idle), and with limits on
//! open connections, overall and per client address. A connection past a
//! limit is answered at once with a small JSON refusal and closed, without
//! reading from it, so that stalled clients cannot fill the process's file
//! descriptors and starve `/healthz` and the token API.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    /// A client must send a request's headers within this, and an idle
    /// keep-alive connection is closed after it.
    pub(crate) header_read_timeout: Duration,
    /// Open connections at most, overall.
    pub(crate) max_connections: usize,
    /// Open connections at most from one client address.
    pub(crate) max_connections_per_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_ip: 128,
        }
    }
}

/// Open connections per client address, and overall.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// A connection counted as open until dropped.
struct Slot {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock() {
            open.total = open.total.saturating_sub(1);
            if let Some(n) = open.per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    open.per_ip.remove(&self.ip);
                }
            }
        }
    }
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    Overall,
    ThisClient,
}

fn take_slot(open: &Arc<Mutex<Open>>, ip: IpAddr, limits: &ConnectionLimits) -> Result<Slot, Full> {
    let mut state = open.lock().map_err(|_| Full::Overall)?;
    if state.total >= limits.max_connections {
        return Err(Full::Overall);
    }
    let mine = state.per_ip.entry(ip).or_default();
    if *mine >= limits.max_connections_per_ip {
        return Err(Full::ThisClient);
    }
    *mine += 1;
    state.total += 1;
    Ok(Slot {
        open: Arc::clone(open),
        ip,
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

fn refuse(mut stream: TcpStream, full: Full, peer: SocketAddr) {
    metrics::counter!("connections_refused_total", "limit" => match full {
        Full::Overall => "overall",
        Full::ThisClient => "per_ip",
    })
    .increment(1);
    tracing::debug!(peer = %peer, ?full, "connection refused: limit reached");
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
            stream.write_all(&refusal(full)).await?;
            stream.shutdown().await
        })
        .await;
    });
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops
/// accepting and waits for the open connections to finish their requests.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let open = Arc::new(Mutex::new(Open::default()));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
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
        let service =
            router
                .clone()
                .map_request(move |mut request: axum::http::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_address_and_overall_and_freed_on_drop() {
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(1),
            max_connections: 3,
            max_connections_per_ip: 2,
        };
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
        assert_eq!(open.lock().unwrap().per_ip.len(), 2);
    }

    #[test]
    fn refusals_are_complete_http_answers() {
        for full in [Full::Overall, Full::ThisClient] {
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
    }
}
