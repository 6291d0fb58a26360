//! `POST /v1/token` and `POST /v1/tokens`. One request reads top-down:
//! admit (network rules, then credentials) → rate limit → parse (the channel
//! reference once) → resolve → entitle (deny-list included) → mint → answer,
//! with one clock read per request. The single request is rate-limited
//! before its body is read; a batch after, when its size is known.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::ser::{Serialize, SerializeStruct as _, Serializer};
use serde_json::{Value, json};

use super::AppState;
use super::auth::{admit, country};
use super::error::AppError;
use super::request::{batch_items, parse_request, read_json};
use crate::service::channel::ChannelInfo;
use crate::service::mint::minter::Minted;
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
    let parts = &state.inner;
    let mint = &parts.mint;
    let result = async {
        let caller = within(parts.timeout, admit(mint, peer.ip(), &headers)).await?;
        mint.rate_limit(&caller, 1)?;
        let value = read_json(&headers, body, parts.body).await?;
        let request =
            parse_request(&value, "").inspect_err(|e| audit_refusal(&caller, &value, e))?;
        let viewer_country = country(mint, &headers);
        let answer = within(
            parts.timeout,
            mint_one(mint, &caller, &request, viewer_country, now),
        )
        .await?;
        answer.body()
    }
    .await;
    finish(started, result)
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
    let parts = &state.inner;
    let mint = &parts.mint;
    let result = async {
        let caller = within(parts.timeout, admit(mint, peer.ip(), &headers)).await?;
        let value = read_json(&headers, body, parts.body).await?;
        let items = batch_items(&value)?;
        mint.rate_limit(&caller, u32::try_from(items.len()).unwrap_or(u32::MAX))?;
        let viewer_country = country(mint, &headers);
        let work = async {
            let mut results = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let at = format!("requests[{i}].");
                let outcome = match parse_request(item, &at) {
                    Ok(request) => mint_one(mint, &caller, &request, viewer_country, now)
                        .await
                        .map_err(|e| e.within(&at))
                        .and_then(|answer| serde_json::to_value(&answer).map_err(answer_error)),
                    Err(e) => {
                        audit_refusal(&caller, item, &e);
                        Err(e)
                    }
                };
                results.push(outcome.unwrap_or_else(|e| {
                    let mut body = e.body();
                    body["status"] = json!(e.status().as_u16());
                    body
                }));
            }
            Ok(Bytes::from(json!({ "results": results }).to_string()))
        };
        within(parts.timeout, work).await
    }
    .await;
    finish(started, result)
}

/// A token answer that serde_json could not write (it cannot fail for
/// these fields; logged and a 500 rather than a panic).
fn answer_error(e: serde_json::Error) -> AppError {
    tracing::error!(error = %e, "writing a token answer");
    AppError::Internal
}

/// A minted token's answer: `channel_arn`, `expires_at`, `playback_url`,
/// `refresh_after`, `token`.
struct TokenAnswer {
    channel: Arc<ChannelInfo>,
    minted: Minted,
}

impl TokenAnswer {
    /// The answer's JSON, written straight from the parts (no JSON value in
    /// between); a shared token's answer is written once and then handed
    /// out by reference, the same bytes to every caller of its bucket.
    fn body(&self) -> Result<Bytes, AppError> {
        let write = || serde_json::to_vec(self).map_err(answer_error);
        match &self.minted.shared_answer {
            Some(shared) => shared
                .get_or_write(&self.channel.playback_url, write)
                .map(Bytes::from_owner),
            None => write().map(Bytes::from),
        }
    }
}

impl Serialize for TokenAnswer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// The playback URL with the token appended, written without
        /// building it first.
        struct PlaybackUrl<'a>(&'a str, &'a str);
        impl Serialize for PlaybackUrl<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&format_args!("{}?token={}", self.0, self.1))
            }
        }
        let token: &str = &self.minted.token;
        // In the order a JSON object of serde_json has always written them
        // (its keys sorted), so that the bytes are what they were.
        let mut answer = serializer.serialize_struct("TokenAnswer", 5)?;
        answer.serialize_field("channel_arn", self.channel.arn.as_str())?;
        answer.serialize_field("expires_at", &self.minted.expires_at)?;
        answer.serialize_field(
            "playback_url",
            &PlaybackUrl(&self.channel.playback_url, token),
        )?;
        answer.serialize_field("refresh_after", &self.minted.refresh_after)?;
        answer.serialize_field("token", token)?;
        answer.end()
    }
}

/// One parsed request: resolve → entitle → mint → the JSON answer, with an
/// audit line either way; `country` is the trusted header's value.
async fn mint_one(
    mint: &Mint,
    caller: &Caller,
    request: &TokenRequest,
    country: Option<&str>,
    now: SystemTime,
) -> Result<TokenAnswer, AppError> {
    let outcome = async {
        let channel = mint.resolve(caller, &request.channel).await?;
        let grant = mint.entitle(caller, &channel, request, country, now)?;
        let minted = mint.sign(&channel, &grant, now)?;
        // Strings rather than Display values where they exist already: the
        // JSON is the same, without formatting each one again.
        tracing::info!(
            target: "audit",
            caller = &*caller.name(),
            channel = channel.arn.as_str(),
            key = %minted.fingerprint,
            viewer = grant.viewer.as_ref().map(|v| v.as_str()).unwrap_or(""),
            single_use = grant.single_use,
            cached = minted.cached,
            exp = minted.expires_at,
            decision = "minted",
        );
        Ok::<_, Refusal>(TokenAnswer { channel, minted })
    };
    outcome.await.map_err(|refusal: Refusal| {
        let e = AppError::from(refusal);
        tracing::info!(
            target: "audit",
            caller = &*caller.name(),
            channel = %request.channel,
            decision = "refused",
            code = e.code(),
            reason = %e.message(),
        );
        e
    })
}

/// The audit line of a request refused before it could be parsed, with the
/// channel as the caller wrote it (if it wrote one).
fn audit_refusal(caller: &Caller, body: &Value, e: &AppError) {
    let channel = body
        .get("channel")
        .and_then(Value::as_str)
        .map_or("", |c| c.get(..256).unwrap_or(c));
    tracing::info!(
        target: "audit",
        caller = &*caller.name(),
        channel = %channel,
        decision = "refused",
        code = e.code(),
        reason = %e.message(),
    );
}

/// The request's work, or 503 `timeout` when it takes too long (the body
/// is read under its own deadline, outside this one).
async fn within<T>(
    timeout: Duration,
    work: impl std::future::Future<Output = Result<T, AppError>>,
) -> Result<T, AppError> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(AppError::Unavailable {
                code: "timeout",
                message: format!("the request took longer than {} ms", timeout.as_millis()),
            })
        })
}

/// The metrics of every answer, registered once (on the first request,
/// after [`super::router`] installed the recorder): a token costs two
/// atomic updates, not two registry look-ups.
struct AnswerMetrics {
    minted: metrics::Counter,
    seconds: metrics::Histogram,
}

fn answer_metrics() -> &'static AnswerMetrics {
    static METRICS: OnceLock<AnswerMetrics> = OnceLock::new();
    METRICS.get_or_init(|| AnswerMetrics {
        minted: metrics::counter!("tokens_total", "outcome" => "minted"),
        seconds: metrics::histogram!("token_request_seconds"),
    })
}

/// The answer (its JSON body), counted and timed. (An early refusal that
/// leaves the body unread says `Connection: close` through the server's
/// body tracking.)
fn finish(started: Instant, result: Result<Bytes, AppError>) -> Response {
    let metrics = answer_metrics();
    match &result {
        Ok(_) => metrics.minted.increment(1),
        Err(e) => metrics::counter!("tokens_total", "outcome" => e.code()).increment(1),
    }
    metrics.seconds.record(started.elapsed().as_secs_f64());
    match result {
        Ok(body) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
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
