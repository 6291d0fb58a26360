//! The HTTP clients for the calls the service makes itself: the rotation's
//! canary play and the identity provider's JWKS.
//!
//! A client that may speak HTTPS to the internet loads the system's
//! certificate authorities when it is built, and fails there when the
//! system has none (a slim container image without `ca-certificates`).
//! reqwest reports that as a bare "builder error": the message here names
//! what is missing and what to install. A client that only ever speaks
//! plain HTTP on loopback (local mode) loads no authority at all, so it
//! runs on a system without them.

use std::time::Duration;

/// Which certificate authorities a client trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trust {
    /// None: plain HTTP only (the local IVS on loopback). An `https://` URL
    /// fails verification.
    PlainHttp,
    /// The system's (`/etc/ssl/certs`, or `SSL_CERT_FILE`/`SSL_CERT_DIR`).
    System,
}

impl Trust {
    /// What a call to `url` needs: the system's authorities for HTTPS.
    pub(crate) fn for_url(url: &str) -> Self {
        if url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        {
            Self::System
        } else {
            Self::PlainHttp
        }
    }
}

/// An HTTP client with this trust and an overall timeout per request.
/// `purpose` leads the error (the setting that needs the client).
pub(crate) fn client(
    trust: Trust,
    timeout: Duration,
    purpose: &str,
) -> Result<reqwest::Client, String> {
    let builder = reqwest::Client::builder().timeout(timeout);
    let builder = match trust {
        // No proxy either: a proxy from the environment cannot reach this
        // host's loopback.
        Trust::PlainHttp => builder.tls_certs_only([]).no_proxy(),
        Trust::System => builder,
    };
    builder.build().map_err(|e| match trust {
        Trust::System => format!(
            "{purpose} needs the system's CA certificates, and they could not be loaded \
             ({}): install them (Debian/Ubuntu: apt-get install ca-certificates; Alpine: apk add \
             ca-certificates), or point SSL_CERT_FILE at a PEM bundle",
            error_chain(&e)
        ),
        Trust::PlainHttp => format!("{purpose}: HTTP client: {}", error_chain(&e)),
    })
}

/// An error and its sources, `: `-separated: reqwest's own messages are
/// terse ("builder error", "error sending request"), the cause ("No CA
/// certificates were loaded from the system", "Connection refused") is in
/// the sources.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_urls_need_the_system_authorities() {
        assert_eq!(
            Trust::for_url("https://idp.example.com/jwks"),
            Trust::System
        );
        assert_eq!(
            Trust::for_url("HTTPS://idp.example.com/jwks"),
            Trust::System
        );
        assert_eq!(Trust::for_url("http://127.0.0.1:9/jwks"), Trust::PlainHttp);
        assert_eq!(Trust::for_url("http"), Trust::PlainHttp);
    }

    #[test]
    fn a_plain_http_client_loads_no_authority() {
        // Built even where the system has no CA certificates (what CI's
        // image check runs in a container without them).
        assert!(client(Trust::PlainHttp, Duration::from_secs(1), "test").is_ok());
    }
}
