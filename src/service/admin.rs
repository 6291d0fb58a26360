//! The admin API, on its own listener (loopback by default) and behind a
//! bearer token compared in constant time. Every admin action is audited.
//!
//! Routes: `POST /admin/v1/channels/refresh` (drop and reload the channel
//! cache). Key rotation and viewer revocation join it with the control module.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::channels::ChannelCache;
use super::error::AppError;

/// `[admin]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the admin API listens; keep it on loopback or a private network.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// Lowercase hex SHA-256 of the bearer token admins send.
    pub token_sha256: String,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}

impl AdminConfig {
    /// Checks the section; errors name the key.
    pub fn validate(&self) -> Result<[u8; 32], String> {
        super::config::sha256_from_hex(&self.token_sha256).ok_or_else(|| {
            "admin.token_sha256: must be 64 lowercase hex digits (sha256sum of the token)".into()
        })
    }
}

#[derive(Clone)]
struct AdminState {
    token_hash: [u8; 32],
    channels: ChannelCache,
}

/// The admin router.
pub fn router(token_hash: [u8; 32], channels: ChannelCache) -> Router {
    let state = AdminState {
        token_hash,
        channels,
    };
    Router::new()
        .route("/admin/v1/channels/refresh", post(refresh_channels))
        .fallback(|| async { AppError::NoRoute.into_response() })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Refuses every request without the right bearer token, before routing.
async fn require_token(
    State(state): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| Sha256::digest(t.trim().as_bytes()));
    let ok = presented.is_some_and(|hash| bool::from(hash.as_slice().ct_eq(&state.token_hash)));
    if !ok {
        tracing::warn!(target: "audit", admin = true, peer = %peer, path = %request.uri().path(), decision = "refused", reason = "bad or missing admin token");
        return AppError::Unauthenticated(
            "the admin API needs `Authorization: Bearer <admin token>`".into(),
        )
        .into_response();
    }
    tracing::info!(target: "audit", admin = true, peer = %peer, path = %request.uri().path(), decision = "allowed");
    next.run(request).await
}

async fn refresh_channels(State(state): State<AdminState>) -> Response {
    state.channels.invalidate().await;
    match state.channels.refresh().await {
        Ok(count) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "refreshed": true, "named_channels": count }).to_string(),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "admin channel refresh failed");
            AppError::Unavailable {
                code: "ivs_unavailable",
                message: "IVS could not be reached to reload the channels".into(),
            }
            .into_response()
        }
    }
}
