//! Set-up shared by the integration tests.

// Each test crate uses a different part of this module, and `pub` here only
// means "shared with the test crates".
#![allow(dead_code, unreachable_pub)]
// A set-up failure should stop the test loudly (unwrap, panic).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "service")]
pub mod local_ivs;
#[cfg(feature = "service")]
pub mod moto;
#[cfg(feature = "service")]
pub mod replicas;
#[cfg(feature = "service")]
pub mod service;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ivs_playback_auth::{
    AllowedOrigins, ChannelArn, PlaybackClaims, PrivateKey, SigningKey, TokenSigner, ViewerId,
};

pub const CHANNEL: &str = "arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl";

/// The header IVS documents.
pub const HEADER: &str = r#"{"alg":"ES384","typ":"JWT"}"#;

/// A fixed "now", so that expiry never depends on the machine's clock.
pub fn fixed_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

pub fn channel() -> ChannelArn {
    ChannelArn::parse(CHANNEL).unwrap()
}

/// Claims with everything a real viewer token carries.
pub fn realistic_claims(now: SystemTime) -> PlaybackClaims {
    PlaybackClaims::builder(channel())
        .allowed_origins(
            AllowedOrigins::parse("https://www.example.com,https://app.example.com").unwrap(),
        )
        .viewer_id(ViewerId::parse("viewer-42").unwrap())
        .expires_in(Duration::from_secs(300))
        .build_at(now)
        .unwrap()
}

pub fn signer_for(key: &PrivateKey, backend: ivs_playback_auth::Backend) -> TokenSigner {
    TokenSigner::new(SigningKey::with_backend(key, backend).unwrap())
}

/// The three segments of a compact JWS, decoded.
pub fn decode_parts(token: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut parts = token.split('.');
    let mut next = || URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    (next(), next(), next())
}

/// How long a poll waits between two looks.
pub const POLL_EVERY: Duration = Duration::from_millis(100);

/// Looks at a condition every [`POLL_EVERY`] until `probe` gives `Ok`, and
/// returns that; after `within` (wall-clock time, even under a paused tokio
/// clock) it panics naming `what` it waited for and the last `Err` (what it
/// saw instead).
pub async fn poll_for<T>(
    within: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) if started.elapsed() >= within => {
                panic!("waited {within:?} for {what}, in vain; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(POLL_EVERY).await,
        }
    }
}

/// Looks at a condition every [`POLL_EVERY`] until it holds; after `within`
/// it panics naming `what` it waited for.
pub async fn poll_until(within: Duration, what: &str, mut ready: impl AsyncFnMut() -> bool) {
    poll_for(within, what, async || {
        if ready().await {
            Ok(())
        } else {
            Err("not yet".to_owned())
        }
    })
    .await;
}

/// The Unix time in whole seconds, as the service's clock reads it.
pub fn unix_seconds_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
