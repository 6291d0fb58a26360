//! What `serve` prints once it is up: where everything listens, the key,
//! and the commands that get and play a demo token.

use std::io::{self, Write as _};

/// Prints the start-up banner on stdout.
pub(super) fn print_banner(info: &crate::service::StartupInfo) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "token API:   {}", info.api_url);
    if let Some(url) = &info.admin_url {
        let _ = writeln!(out, "admin API:   {url}");
    }
    if let Some(url) = &info.local_ivs_url {
        let _ = writeln!(out, "local IVS:   {url}");
    }
    let generated = if info.key_generated {
        " (generated now)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "signing key: {}{generated}, fingerprint {}",
        info.key_location, info.fingerprint
    );
    if let Some(demo) = &info.demo_channel {
        let _ = writeln!(
            out,
            "demo channel: {} (private, anonymous access)",
            demo.arn
        );
        let request = format!(
            "curl -s -X POST {}/v1/token -H 'content-type: application/json' -d '{{\"channel\":\"demo\"}}'",
            info.api_url
        );
        let _ = writeln!(out, "\nget a token:\n  {request}");
        let _ = writeln!(
            out,
            "play it against the local IVS:\n  curl -s \"$({request} | sed -n 's/.*\"playback_url\":\"\\([^\"]*\\)\".*/\\1/p')\""
        );
    }
    match &info.viewer_url {
        Some(url) => {
            let _ = writeln!(out, "watch it in the IVS player:\n  {url}");
        }
        None => {
            let _ = writeln!(
                out,
                "watch it in the IVS player: build the viewer page first (cd viewer && npm ci && npm run build)"
            );
        }
    }
    let _ = out.flush();
}
