//! `POST /v1/token` and `POST /v1/tokens`. One request reads top-down:
//! admit (network, credentials, rate) → parse (the channel reference once)
//! → resolve → entitle (deny-list included) → mint → answer, with one clock
//! read per request.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::auth::admit;
use super::error::AppError;
use super::request::{batch_items, parse_request, read_json};
use crate::service::mint::policy::Caller;
use crate::service::mint::{Mint, Refusal, TokenRequest};

/// `POST /v1/token`.
pub(crate) async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let now = SystemTime::now();
    let mint = &state.inner.mint;
    let work = async {
        let caller = admit(mint, peer.ip(), &headers).await?;
        mint.limits.take(&caller, 1)?;
        let value = read_json(&headers, body, state.inner.max_body).await?;
        let request = parse_request(&value, "")?;
        mint_one(mint, &caller, &request, now).await
    };
    finish(started, within(state.inner.timeout, work).await)
}

/// `POST /v1/tokens`: up to 50 requests, each answered on its own.
pub(crate) async fn tokens(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let now = SystemTime::now();
    let mint = &state.inner.mint;
    let work = async {
        let caller = admit(mint, peer.ip(), &headers).await?;
        let value = read_json(&headers, body, state.inner.max_body).await?;
        let items = batch_items(&value)?;
        mint.limits
            .take(&caller, u32::try_from(items.len()).unwrap_or(u32::MAX))?;
        let mut results = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let outcome = match parse_request(item, &format!("requests[{i}].")) {
                Ok(request) => mint_one(mint, &caller, &request, now).await,
                Err(e) => Err(e),
            };
            results.push(outcome.unwrap_or_else(|e| {
                let mut body = e.body();
                body["status"] = json!(e.status().as_u16());
                body
            }));
        }
        Ok(json!({ "results": results }))
    };
    finish(started, within(state.inner.timeout, work).await)
}

/// One parsed request: resolve → entitle → mint → the JSON answer, with an
/// audit line either way.
async fn mint_one(
    mint: &Mint,
    caller: &Caller,
    request: &TokenRequest,
    now: SystemTime,
) -> Result<Value, AppError> {
    let outcome = async {
        let channel = mint.resolve(caller, &request.channel).await?;
        let grant = mint.entitle(caller, &channel, request, now)?;
        let minted = mint.sign(&channel, &grant, now)?;
        tracing::info!(
            target: "audit",
            caller = %caller.name(),
            channel = %channel.arn,
            key = %minted.fingerprint,
            viewer = grant.viewer.as_ref().map(|v| v.as_str()).unwrap_or(""),
            single_use = grant.single_use,
            cached = minted.cached,
            exp = minted.expires_at,
            decision = "minted",
        );
        Ok::<_, Refusal>(json!({
            "token": minted.token,
            "playback_url": format!("{}?token={}", channel.playback_url, minted.token),
            "channel_arn": channel.arn.as_str(),
            "expires_at": minted.expires_at,
            "refresh_after": minted.refresh_after,
        }))
    };
    outcome.await.map_err(|refusal: Refusal| {
        let e = AppError::from(refusal);
        tracing::info!(
            target: "audit",
            caller = %caller.name(),
            channel = %request.channel,
            decision = "refused",
            code = e.code(),
            reason = %e.message(),
        );
        e
    })
}

/// The request's work, or 503 `timeout` when it takes too long.
async fn within(
    timeout: Duration,
    work: impl std::future::Future<Output = Result<Value, AppError>>,
) -> Result<Value, AppError> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(AppError::Unavailable {
                code: "timeout",
                message: format!("the request took longer than {} ms", timeout.as_millis()),
            })
        })
}

fn finish(started: Instant, result: Result<Value, AppError>) -> Response {
    let outcome = match &result {
        Ok(_) => "minted",
        Err(e) => e.code(),
    };
    metrics::counter!("tokens_total", "outcome" => outcome).increment(1);
    metrics::histogram!("token_request_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok(body) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body.to_string(),
        )
            .into_response(),
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(code = e.code(), "token request failed");
            }
            e.into_response()
        }
    }
}
