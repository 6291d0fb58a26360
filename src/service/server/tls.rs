//! TLS for a listener (rustls): the certificate chain and key files, read
//! again when they change, so that a renewed certificate is served without a
//! restart; and a plain-HTTP request sent to a TLS listener, answered in
//! plain text with what to do instead of a failed handshake.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

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
    /// SEC1 or PKCS#1); the error names the setting, the file and what is
    /// wrong.
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

    pub(super) fn acceptor(&self) -> TlsAcceptor {
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
        .map_err(|e| {
            format!(
                "server.tls_cert_file: {}: not a PEM certificate chain: {e}",
                cert_file.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "server.tls_cert_file: {}: holds no CERTIFICATE block",
            cert_file.display()
        ));
    }
    check_key_is_private(key_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        format!(
            "server.tls_key_file: {}: not a PEM private key (PKCS#8, SEC1 or PKCS#1): {e}",
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
                "server.tls_key_file: {} does not fit the certificate {}: {e}",
                key_file.display(),
                cert_file.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Refuses a TLS private key that group or others may read, as the signing
/// keys are refused: the key is the server's identity. Unlike the signing
/// keys, a link is followed (certbot's `live/` files and Kubernetes secret
/// volumes are links), and the file it leads to is checked.
fn check_key_is_private(key_file: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(key_file)
            .map_err(|e| format!("server.tls_key_file: {}: {e}", key_file.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "server.tls_key_file: {} is readable by group or others (mode {mode:o}); a private key must be its owner's alone: chmod 600 {} (in Kubernetes, mount the secret with defaultMode: 0600)",
                key_file.display(),
                key_file.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = key_file;
    Ok(())
}

/// Whether the client's first bytes are plain HTTP rather than a TLS
/// ClientHello: a TLS record starts with its type (22, handshake), an
/// HTTP/1 request with its method, in capitals. Waits for the first byte.
pub(super) async fn sends_plain_http(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.peek(&mut first).await, Ok(1) if first[0].is_ascii_uppercase())
}

/// The answer to plain HTTP on a TLS listener: complete, and
/// `Connection: close`.
pub(super) fn plain_http_refusal() -> Vec<u8> {
    let body = serde_json::json!({"error": {
        "code": "tls_required",
        "message": "this listener speaks TLS; use https://",
    }})
    .to_string();
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
