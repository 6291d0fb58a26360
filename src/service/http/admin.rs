//! The admin API's handlers, on their own listener (loopback by default) and behind a
//! bearer token compared in constant time. Every admin action is audited.
//!
//! Routes:
//! - `GET /admin/v1/keys`: the key store's record and IVS's key pairs side by side;
//! - `POST /admin/v1/keys/rotate` (`Idempotency-Key` header): rotate now;
//! - `POST /admin/v1/keys/{fingerprint}/revoke`: delete a non-active key now;
//! - `POST /admin/v1/viewers/revoke`: end viewers' sessions, deny them tokens;
//! - `POST /admin/v1/channels/refresh`: drop and reload the channel cache.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::error::AppError;
use super::request::{BodyLimits, read_body};
use crate::claims::unix_seconds;
use crate::service::channel::ChannelRef;
use crate::service::control::coordination::{Claim, Coordination};
use crate::service::control::ivs::{Ivs, ViewerSession};
use crate::service::control::rotation::{RotationError, Rotator};
use crate::service::mint::Mint;
use crate::service::mint::channels::Lookup;

/// What the admin API works on.
pub(crate) struct AdminParts {
    /// SHA-256 of the admin bearer token.
    pub(crate) token_hash: [u8; 32],
    /// The mint room: its channel cache, shareable tokens and deny-list.
    pub(crate) mint: Arc<Mint>,
    /// The keys.
    pub(crate) rotator: Rotator,
    /// IVS, for viewer-session revocation.
    pub(crate) ivs: Ivs,
    /// With replicas: the table that shares idempotency records and the
    /// deny-list among them.
    pub(crate) coordination: Option<Coordination>,
}

#[derive(Clone)]
struct AdminState {
    inner: Arc<AdminParts>,
    /// Answers of rotations by idempotency key (a retried request gets the
    /// first answer instead of a second rotation).
    rotations: moka::future::Cache<String, (StatusCode, String)>,
    /// One idempotent rotation request at a time.
    rotating: Arc<tokio::sync::Mutex<()>>,
}

/// Most sessions one revocation request may name.
pub(crate) const MAX_REVOCATIONS: usize = 200;

/// The admin router.
pub(crate) fn router(parts: AdminParts) -> Router {
    let state = AdminState {
        inner: Arc::new(parts),
        rotations: moka::future::Cache::builder()
            .max_capacity(1_000)
            .time_to_live(Duration::from_secs(24 * 3600))
            .build(),
        rotating: Arc::new(tokio::sync::Mutex::new(())),
    };
    let gate = Arc::new(Gate {
        token_hash: state.inner.token_hash,
        failures: RateLimiter::keyed(
            Quota::per_minute(NonZeroU32::MIN.saturating_add(FAILURES_PER_MINUTE - 1))
                .allow_burst(NonZeroU32::MIN.saturating_add(FAILURE_BURST - 1)),
        ),
        blocked: std::sync::Mutex::default(),
    });
    Router::new()
        .route("/admin/v1/channels/refresh", post(refresh_channels))
        .route("/admin/v1/keys", get(list_keys))
        .route("/admin/v1/keys/rotate", post(rotate_keys))
        .route("/admin/v1/keys/{fingerprint}/revoke", post(revoke_key))
        .route("/admin/v1/viewers/revoke", post(revoke_viewers))
        .fallback(|| async { AppError::NoRoute.into_response() })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed.into_response() })
        .layer(middleware::from_fn_with_state(gate, require_token))
        .with_state(state)
}

/// Failed admin authentications one client address may make per minute,
/// and at once; past them it is answered 429 without a check (and without
/// a log line each), so that guessing the token is slow and quiet.
const FAILURES_PER_MINUTE: u32 = 10;
const FAILURE_BURST: u32 = 10;
/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 256 * 1024;

/// The admin token and the failed attempts per client address.
struct Gate {
    token_hash: [u8; 32],
    failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses past their failures, until when: answered 429 before the
    /// token is even compared, so that a 200 cannot tell a throttled
    /// guesser that this guess was right.
    blocked: std::sync::Mutex<std::collections::HashMap<IpAddr, std::time::Instant>>,
}

impl Gate {
    fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        let now = std::time::Instant::now();
        let mut blocked = self.blocked.lock().ok()?;
        match blocked.get(&ip) {
            Some(until) if *until > now => Some(*until - now),
            Some(_) => {
                blocked.remove(&ip);
                None
            }
            None => None,
        }
    }

    fn block(&self, ip: IpAddr, wait: Duration) {
        if let Ok(mut blocked) = self.blocked.lock() {
            let now = std::time::Instant::now();
            if blocked.len() > 10_000 {
                blocked.retain(|_, until| *until > now);
            }
            blocked.insert(ip, now + wait);
        }
    }
}

/// Refuses every request without the right bearer token, before routing.
async fn require_token(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let throttled = |retry_after: Duration| {
        metrics::counter!("admin_auth_throttled_total").increment(1);
        AppError::RateLimited {
            retry_after,
            message: "too many failed admin authentications from this address".into(),
        }
        .into_response()
    };
    if let Some(wait) = gate.blocked_for(peer.ip()) {
        return throttled(wait);
    }
    let presented =
        super::auth::bearer(request.headers()).map(|t| Sha256::digest(t.trim().as_bytes()));
    let ok = presented.is_some_and(|hash| bool::from(hash.as_slice().ct_eq(&gate.token_hash)));
    if !ok {
        if let Err(not_until) = gate.failures.check_key(&peer.ip()) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            gate.block(peer.ip(), wait);
            tracing::warn!(target: "audit", admin = true, peer = %peer, decision = "throttled", retry_after_ms = wait.as_millis() as u64, "too many failed admin authentications: this address is refused without a check until then");
            return throttled(wait);
        }
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
    // A reload, not a flush: what is cached keeps answering meanwhile.
    match state.inner.mint.channels.reload().await {
        Ok(count) => {
            state.inner.mint.warn_unverifiable();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::json!({ "refreshed": true, "named_channels": count }).to_string(),
            )
                .into_response()
        }
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

fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A key operation's failure as an API error.
fn rotation_error(e: &RotationError) -> AppError {
    let message = e.to_string();
    match e {
        RotationError::QuotaFull { .. } => AppError::Conflict {
            code: "key_quota_full",
            message,
        },
        RotationError::ActiveKey(_) => AppError::Conflict {
            code: "active_key",
            message,
        },
        RotationError::AlreadyDeleted(_) => AppError::Conflict {
            code: "already_deleted",
            message,
        },
        RotationError::UnknownKey(_) => AppError::NotFound {
            code: "unknown_key",
            message,
        },
        RotationError::Ivs(_) => AppError::Unavailable {
            code: "ivs_unavailable",
            message,
        },
        RotationError::Store(_) => AppError::Unavailable {
            code: "key_store_unavailable",
            message,
        },
        RotationError::Check(_) => AppError::Unavailable {
            code: "rotation_check_failed",
            message,
        },
        RotationError::NoKey(_) => AppError::Unavailable {
            code: "no_active_key",
            message,
        },
        RotationError::Busy(_) => AppError::Unavailable {
            code: "rotation_busy",
            message,
        },
    }
}

async fn list_keys(State(state): State<AdminState>) -> Response {
    match state.inner.rotator.view().await {
        Ok(view) => (StatusCode::OK, axum::Json(view)).into_response(),
        Err(e) => rotation_error(&e).into_response(),
    }
}

async fn rotate_keys(State(state): State<AdminState>, headers: axum::http::HeaderMap) -> Response {
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= 128 => Some(k.to_owned()),
        Some(_) => {
            return AppError::BadRequest {
                code: "invalid_header",
                message: "Idempotency-Key must be 1 to 128 visible ASCII characters".into(),
                field: Some("Idempotency-Key".into()),
            }
            .into_response();
        }
    };
    let _one_at_a_time = state.rotating.lock().await;
    if let (Some(key), Some(table)) = (&key, &state.inner.coordination) {
        return rotate_once_across_replicas(&state, table, key).await;
    }
    if let Some(key) = &key
        && let Some((status, body)) = state.rotations.get(key).await
    {
        return answer(status, body, true);
    }
    let (status, body) = rotate_now(&state).await;
    // A refusal or failure is not remembered: retrying with the same key
    // tries again once the cause is gone.
    if let Some(key) = key
        && status.is_success()
    {
        state.rotations.insert(key, (status, body.clone())).await;
    }
    answer(status, body, false)
}

/// How long a rotation's answer is replayed for its `Idempotency-Key`.
const IDEMPOTENCY_KEPT: Duration = Duration::from_secs(24 * 3600);

/// An idempotent rotation with replicas: the first replica to claim the
/// key in the table rotates and records the answer; one that finds the key
/// claimed waits for that answer and replays it.
async fn rotate_once_across_replicas(
    state: &AdminState,
    table: &Coordination,
    key: &str,
) -> Response {
    let deadline = std::time::Instant::now() + table.lease_duration() * 3 + Duration::from_secs(10);
    loop {
        match table.claim(key, table.lease_duration()).await {
            Ok(Claim::Mine) => {
                let (status, body) = rotate_now(state).await;
                if status.is_success() {
                    if let Err(e) = table
                        .complete(key, status.as_u16(), &body, IDEMPOTENCY_KEPT)
                        .await
                    {
                        tracing::warn!(error = %e, "a rotation's answer could not be recorded for its Idempotency-Key");
                    }
                } else {
                    table.abandon(key).await;
                }
                return answer(status, body, false);
            }
            Ok(Claim::Done { status, body }) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                return answer(status, body, true);
            }
            Ok(Claim::Pending { owner }) if std::time::Instant::now() >= deadline => {
                return AppError::Unavailable {
                    code: "rotation_busy",
                    message: format!("replica {owner} is still running the request with this Idempotency-Key; retry it later"),
                }
                .into_response();
            }
            Ok(Claim::Pending { .. }) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => {
                tracing::warn!(error = %e, "the idempotency record could not be read");
                return AppError::Unavailable {
                    code: "coordination_unavailable",
                    message: "the coordination table could not be reached to check the Idempotency-Key; retry later".into(),
                }
                .into_response();
            }
        }
    }
}

/// Rotates: the answer's status and body.
async fn rotate_now(state: &AdminState) -> (StatusCode, String) {
    match state.inner.rotator.rotate().await {
        Ok(done) => match serde_json::to_string(&done) {
            Ok(body) => (StatusCode::OK, body),
            Err(e) => {
                tracing::error!(error = %e, "serialising a rotation's answer");
                let e = AppError::Internal;
                (e.status(), e.body().to_string())
            }
        },
        Err(e) => {
            tracing::warn!(target: "audit", admin = true, action = "rotate", decision = "failed", error = %e);
            let e = rotation_error(&e);
            (e.status(), e.body().to_string())
        }
    }
}

/// A JSON answer; `replay` marks one replayed for its `Idempotency-Key`.
fn answer(status: StatusCode, body: String, replay: bool) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if replay {
        response.headers_mut().insert(
            header::HeaderName::from_static("idempotent-replay"),
            header::HeaderValue::from_static("true"),
        );
    }
    response
}

async fn revoke_key(State(state): State<AdminState>, Path(fingerprint): Path<String>) -> Response {
    // `aa:bb:...` or the same 32 hex digits without colons.
    let fingerprint =
        if fingerprint.len() == 32 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
            fingerprint
                .as_bytes()
                .chunks(2)
                .map(|c| String::from_utf8_lossy(c).to_lowercase())
                .collect::<Vec<_>>()
                .join(":")
        } else {
            fingerprint.to_lowercase()
        };
    if fingerprint.parse::<crate::Fingerprint>().is_err() {
        return AppError::field(
            "fingerprint",
            "must be an IVS key fingerprint: 16 hex bytes, `aa:bb:...` or 32 hex digits",
        )
        .into_response();
    }
    match state.inner.rotator.revoke(&fingerprint).await {
        Ok(revoked) => {
            state.inner.mint.minter.forget_shared();
            tracing::warn!(target: "audit", admin = true, action = "key_revoked", fingerprint = %revoked.fingerprint, killed = revoked.unexpired_tokens_killed);
            (StatusCode::OK, axum::Json(revoked)).into_response()
        }
        Err(e) => rotation_error(&e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeViewers {
    sessions: Vec<SessionRef>,
    /// How long the service refuses tokens to these viewers (default a day;
    /// at least the second of the revocation).
    #[serde(default = "default_block")]
    block_seconds: u64,
}

fn default_block() -> u64 {
    24 * 3600
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionRef {
    /// Channel ARN or name.
    channel: String,
    /// The viewer as the application knows it (what it sent as `viewer_id`,
    /// or the viewer JWT's `sub`); hashed as the token API hashes it.
    #[serde(default)]
    viewer_id: Option<String>,
    /// Or the `aws:viewer-id` itself, as seen in tokens and audit lines.
    #[serde(default)]
    pseudonym: Option<String>,
}

async fn revoke_viewers(
    State(state): State<AdminState>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let limits = BodyLimits {
        max: MAX_ADMIN_BODY,
        timeout: Duration::from_secs(10),
    };
    let body = match read_body(&headers, body, limits).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let request = match parse_revocation(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let now = unix_seconds(SystemTime::now());
    let Ok(up_to) = i32::try_from(now) else {
        return AppError::Unavailable {
            code: "clock",
            message: "the clock is past 2038: session versions no longer fit IVS's filter".into(),
        }
        .into_response();
    };
    let until = now + request.block_seconds.max(1);
    // Each item resolved and denied on its own (a bad item fails alone);
    // minting stops at once, before IVS is even asked.
    let mut results: Vec<serde_json::Value> = Vec::with_capacity(request.sessions.len());
    let mut to_revoke = Vec::new();
    for (i, item) in request.sessions.iter().enumerate() {
        match resolve_session(&state, item, up_to).await {
            Ok(session) => {
                state
                    .inner
                    .mint
                    .revocations
                    .deny(&session.channel_arn, &session.viewer_id, until);
                let mut result = serde_json::json!({
                    "index": i,
                    "channel_arn": session.channel_arn.as_str(),
                    "viewer_id": session.viewer_id,
                });
                // The other replicas refuse the viewer from their next poll.
                if let Some(table) = &state.inner.coordination {
                    let shared = table
                        .deny(session.channel_arn.as_str(), &session.viewer_id, until)
                        .await;
                    if let Err(e) = &shared {
                        tracing::warn!(error = %e, "a viewer denial could not be shared with the other replicas");
                    }
                    result["shared_with_replicas"] = shared.is_ok().into();
                }
                results.push(result);
                to_revoke.push((results.len() - 1, session));
            }
            Err((code, field, message)) => results.push(item_error(i, code, field, &message)),
        }
    }
    let sessions: Vec<ViewerSession> = to_revoke.iter().map(|(_, s)| s.clone()).collect();
    let outcome = if sessions.is_empty() {
        Ok(Vec::new())
    } else {
        state.inner.ivs.revoke_viewer_sessions(&sessions).await
    };
    let answers: Vec<Option<(String, String)>> = match outcome {
        Ok(answers) => answers,
        Err(e) => {
            tracing::warn!(error = %e, "viewer revocation failed at IVS");
            vec![Some(("ivs_unavailable".into(), e.to_string())); to_revoke.len()]
        }
    };
    for ((at, _), answer) in to_revoke.iter().zip(answers) {
        if let Some(obj) = results[*at].as_object_mut() {
            obj.insert("revoked".into(), answer.is_none().into());
            if let Some((code, message)) = answer {
                obj.insert(
                    "error".into(),
                    serde_json::json!({ "code": code, "message": message }),
                );
            }
        }
    }
    tracing::warn!(target: "audit", admin = true, action = "viewers_revoked", sessions = results.len(), versions_up_to = up_to, blocked_until = until);
    json(
        StatusCode::OK,
        &serde_json::json!({
            "results": results,
            "versions_up_to": up_to,
            "blocked_until": until,
        }),
    )
}

/// The revocation body, checked as a whole.
fn parse_revocation(body: &[u8]) -> Result<RevokeViewers, AppError> {
    let request: RevokeViewers = serde_json::from_slice(body).map_err(|e| AppError::BadRequest {
        code: "invalid_json",
        message: format!("the body must be {{\"sessions\": [{{\"channel\", \"viewer_id\" | \"pseudonym\"}}], \"block_seconds\"?}}: {e}"),
        field: None,
    })?;
    if request.sessions.is_empty() || request.sessions.len() > MAX_REVOCATIONS {
        return Err(AppError::field(
            "sessions",
            format!("must list 1 to {MAX_REVOCATIONS} sessions"),
        ));
    }
    if request.block_seconds > 366 * 24 * 3600 {
        return Err(AppError::field("block_seconds", "must be at most a year"));
    }
    Ok(request)
}

/// One item: its viewer's `aws:viewer-id` and its channel, or the item's
/// error as (code, field, message).
async fn resolve_session(
    state: &AdminState,
    item: &SessionRef,
    up_to: i32,
) -> Result<ViewerSession, (&'static str, &'static str, String)> {
    let viewer = match (&item.viewer_id, &item.pseudonym) {
        (Some(v), None) if !v.is_empty() && v.len() <= 1024 => state
            .inner
            .mint
            .revocations
            .pseudonym(v)
            .as_str()
            .to_owned(),
        (None, Some(p)) => crate::ViewerId::parse(p)
            .map(|v| v.as_str().to_owned())
            .map_err(|e| ("invalid_field", "pseudonym", e.to_string()))?,
        _ => {
            return Err((
                "invalid_field",
                "viewer_id",
                "give exactly one of viewer_id (1 to 1024 bytes) and pseudonym".into(),
            ));
        }
    };
    let reference =
        ChannelRef::parse(&item.channel).map_err(|e| ("invalid_field", "channel", e))?;
    // Admins are trusted: a miss may ask IVS by ARN or by name.
    let channel = match state.inner.mint.channels.resolve_trusted(&reference).await {
        Ok(c) => c,
        Err(Lookup::NotFound) => {
            return Err((
                "channel_not_found",
                "channel",
                format!("IVS has no channel `{}`", item.channel),
            ));
        }
        Err(Lookup::Unavailable(e)) => {
            return Err(("ivs_unavailable", "channel", e.to_string()));
        }
        Err(Lookup::Busy(_)) => {
            // The trusted path spends no budget; kept for exhaustiveness.
            return Err(("ivs_unavailable", "channel", "try again shortly".into()));
        }
    };
    Ok(ViewerSession {
        channel_arn: channel.arn.clone(),
        viewer_id: viewer,
        versions_up_to: up_to,
    })
}

fn item_error(index: usize, code: &str, field: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "index": index,
        "revoked": false,
        "error": { "code": code, "message": message, "field": field },
    })
}
