//! The HTTP/1.1 server under both listeners (and the local IVS): hyper with
//! its timer, so that a client must send its headers within a deadline
//! (which also bounds how long an idle keep-alive connection is kept: hyper
//! starts the same timer when a connection turns idle), and with limits on
//! open connections, overall and per client address. A connection past a
//! limit is answered at once with a small JSON refusal and closed, without
//! reading from it, so that stalled clients cannot fill the process's file
//! descriptors and starve `/healthz` and the token API.
//!
//! With a certificate configured, connections are TLS (rustls), the
//! handshake under the same deadline as the headers; the certificate and key
//! files are read again when they change, so that a renewed certificate is
//! served without a restart.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
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
            header_read_timeout: Duration::from_secs(30),
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
            stream.shutdown().await?;
            // A lingering close (RFC 9112 section 9.6): closing with the
            // client's request unread would send a reset, which may erase
            // the refusal from the client's buffer before it reads it. So
            // read and drop what the client sent, a little and briefly.
            let mut sink = [0u8; 4096];
            for _ in 0..16 {
                if stream.read(&mut sink).await? == 0 {
                    break;
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
    });
}

/// TLS for a listener: the certificate chain and key files, and the
/// configuration made of them, swapped when the files change.
pub(crate) struct Tls {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: ArcSwap<rustls::ServerConfig>,
    /// The files' modification times the current configuration was read at.
    read_at: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl Tls {
    /// Reads the certificate chain (PEM) and its private key (PEM: PKCS#8,
    /// SEC1 or PKCS#1); the error names the file and what is wrong.
    pub(crate) fn load(cert_file: &Path, key_file: &Path) -> Result<Self, String> {
        let config = server_config(cert_file, key_file)?;
        Ok(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: ArcSwap::from_pointee(config),
            read_at: Mutex::new((modified(cert_file), modified(key_file))),
        })
    }

    /// Reads the files again if either changed since they were read; a
    /// pair that does not load is logged and the current one kept.
    pub(crate) fn reload_if_changed(&self) {
        let now = (modified(&self.cert_file), modified(&self.key_file));
        let Ok(mut read_at) = self.read_at.lock() else {
            return;
        };
        if *read_at == now {
            return;
        }
        match server_config(&self.cert_file, &self.key_file) {
            Ok(config) => {
                self.current.store(Arc::new(config));
                *read_at = now;
                tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate not reloaded; serving the previous one")
            }
        }
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn server_config(cert_file: &Path, key_file: &Path) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: holds no CERTIFICATE block",
            cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        format!(
            "{}: not a PEM private key (PKCS#8, SEC1 or PKCS#1): {e}",
            key_file.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "{} and {}: the key does not fit the certificate: {e}",
                cert_file.display(),
                key_file.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
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
        let service = TowerToHyperService::new(service);
        match &tls {
            None => {
                let connection =
                    graceful.watch(http.serve_connection(TokioIo::new(stream), service));
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
                tokio::spawn(async move {
                    // The handshake, off the accept loop and under the header
                    // deadline: a client that stalls in it holds only its slot.
                    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            let connection = watcher
                                .watch(http.serve_connection(TokioIo::new(tls_stream), service));
                            if let Err(e) = connection.await {
                                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed")
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
