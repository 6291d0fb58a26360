//! The HTTP API: `POST /v1/token`, `POST /v1/tokens` (batch), `/healthz`,
//! `/readyz`, `/metrics`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Map, Value, json};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use super::channels::{ChannelCache, Lookup};
use super::error::AppError;
use super::policy::{Caller, Policy, TokenRequest};
use super::revocation::Revocations;
use super::rotation::Rotator;
use super::tokens::{Minted, Minter};
use super::viewer::ViewerAuth;
use crate::MaximumResolution;

/// Most channels in one batch request.
pub const MAX_BATCH: usize = 50;

/// Everything a request needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<AppParts>,
}

/// What the handlers share.
pub struct AppParts {
    /// The channel cache.
    pub channels: ChannelCache,
    /// Viewer JWT verification, when configured.
    pub viewers: Option<Arc<ViewerAuth>>,
    /// Who may mint what.
    pub policy: Policy,
    /// Signing and the shared-token cache.
    pub minter: Arc<Minter>,
    /// Largest request body.
    pub max_body: usize,
    /// Longest a request may take.
    pub timeout: Duration,
    /// Mint for public channels too.
    pub allow_public: bool,
    /// Revoked viewers.
    pub revocations: Arc<Revocations>,
    /// The keys (for the key-age metric).
    pub rotator: Rotator,
}

impl AppState {
    /// Periodic clean-up of per-client state.
    pub fn housekeeping(&self) {
        self.inner.policy.housekeeping();
        self.inner
            .revocations
            .prune(crate::claims::unix_seconds(SystemTime::now()));
    }

    /// Shares the parts.
    pub fn new(parts: AppParts) -> Self {
        Self {
            inner: Arc::new(parts),
        }
    }
}

/// The process-wide Prometheus recorder (installed once).
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&[0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0])
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// The whole router.
pub fn router(state: AppState, cors_origins: &[String], viewer_dir: &std::path::Path) -> Router {
    let _ = metrics_handle();
    let router = Router::new()
        .route("/v1/token", post(token))
        .route("/v1/tokens", post(tokens))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi));
    // The viewer page, when it was built; else a 404 that says how.
    let router = if viewer_dir.is_dir() {
        router
            .route(
                "/",
                get(|| async { axum::response::Redirect::to("/viewer/") }),
            )
            .nest_service(
                "/viewer",
                tower_http::services::ServeDir::new(viewer_dir)
                    .append_index_html_on_directories(true),
            )
    } else {
        let missing = viewer_dir.display().to_string();
        let not_built = get(move || {
            let missing = missing.clone();
            async move {
                AppError::NotFound {
                    code: "viewer_not_built",
                    message: format!(
                        "the viewer page is not built ({missing} is missing): cd viewer && npm ci && npm run build"
                    ),
                }
                .into_response()
            }
        });
        router
            .route("/viewer", not_built.clone())
            .route("/viewer/", not_built.clone())
            .route("/viewer/{*rest}", not_built)
    };
    let router = router.fallback(not_found).with_state(state);
    let cors = if cors_origins.is_empty() {
        None
    } else {
        let allow = if cors_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                cors_origins
                    .iter()
                    .filter_map(|o| crate::Origin::parse(o).ok())
                    .filter_map(|o| HeaderValue::from_str(o.as_str()).ok()),
            )
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::POST, Method::GET])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::HeaderName::from_static("x-api-key"),
                ])
                .max_age(Duration::from_secs(600)),
        )
    };
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

async fn not_found() -> Response {
    AppError::NoRoute.into_response()
}

/// Reads a JSON body: 415 if it is not JSON, 413 if too large, 400 if broken.
async fn read_json(headers: &HeaderMap, body: Body, max: usize) -> Result<Value, AppError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            ct == "application/json" || ct.ends_with("+json")
        });
    if !is_json {
        return Err(AppError::UnsupportedMediaType);
    }
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| AppError::PayloadTooLarge(max))?;
    serde_json::from_slice(&bytes).map_err(|e| AppError::BadRequest {
        code: "invalid_json",
        message: format!("the body is not valid JSON: {e}"),
        field: None,
    })
}

/// A token request from JSON, naming the field at fault.
pub fn parse_request(value: &Value, at: &str) -> Result<TokenRequest, AppError> {
    let field = |name: &str| format!("{at}{name}");
    let object: &Map<String, Value> = value.as_object().ok_or_else(|| AppError::BadRequest {
        code: "invalid_json",
        message: "the body must be a JSON object".into(),
        field: (!at.is_empty()).then(|| at.trim_end_matches('.').to_owned()),
    })?;
    const KNOWN: &[&str] = &[
        "channel",
        "viewer_id",
        "single_use",
        "ttl_seconds",
        "origins",
        "strict_origin",
        "maximum_resolution",
    ];
    if let Some(unknown) = object.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(AppError::field(
            field(unknown),
            format!("unknown field; known fields are {}", KNOWN.join(", ")),
        ));
    }
    let string = |name: &str| -> Result<Option<String>, AppError> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(AppError::field(
                field(name),
                format!("must be a string, got {other}"),
            )),
        }
    };
    let boolean = |name: &str| -> Result<bool, AppError> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(AppError::field(
                field(name),
                format!("must be true or false, got {other}"),
            )),
        }
    };
    let channel = string("channel")?.ok_or_else(|| AppError::BadRequest {
        code: "missing_field",
        message: "`channel` is required: a channel ARN or name".into(),
        field: Some(field("channel")),
    })?;
    if channel.is_empty() || channel.len() > 256 {
        return Err(AppError::field(
            field("channel"),
            "must be a channel ARN or name of 1 to 256 characters",
        ));
    }
    let ttl_seconds = match object.get("ttl_seconds") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            AppError::field(
                field("ttl_seconds"),
                format!("must be a whole number of seconds, got {v}"),
            )
        })?),
    };
    let origins = match object.get("origins") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            if items.len() > 20 {
                return Err(AppError::field(field("origins"), "at most 20 origins"));
            }
            Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_str().map(str::to_owned).ok_or_else(|| {
                            AppError::field(field(&format!("origins[{i}]")), "must be a string")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
        Some(other) => {
            return Err(AppError::field(
                field("origins"),
                format!("must be a list of origins, got {other}"),
            ));
        }
    };
    let maximum_resolution = string("maximum_resolution")?
        .map(|s| {
            s.parse::<MaximumResolution>().map_err(|_| {
                AppError::field(
                    field("maximum_resolution"),
                    format!("must be SD, HD or FULL_HD, got `{s}`"),
                )
            })
        })
        .transpose()?;
    Ok(TokenRequest {
        channel,
        viewer_id: string("viewer_id")?,
        single_use: boolean("single_use")?,
        ttl_seconds,
        origins,
        strict_origin: boolean("strict_origin")?,
        maximum_resolution,
    })
}

fn answer(minted: &Minted, channel: &super::ivs::ChannelInfo) -> Value {
    json!({
        "token": minted.token,
        "playback_url": format!("{}?token={}", channel.playback_url, minted.token),
        "channel_arn": channel.arn.as_str(),
        "expires_at": minted.expires_at,
        "refresh_after": minted.refresh_after,
    })
}

/// The caller: a viewer JWT in `Authorization: Bearer`, an API key, or
/// nobody.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    ip: std::net::IpAddr,
) -> Result<Caller, AppError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (bearer, &state.inner.viewers) {
        (Some(token), Some(viewers)) if !headers.contains_key(super::policy::API_KEY_HEADER) => {
            let viewer = viewers.verify(token.trim()).await?;
            Ok(state.inner.policy.viewer_caller(viewer))
        }
        _ => state.inner.policy.authenticate(headers, ip),
    }
}

/// The network policy first, then who is calling.
async fn admit(
    state: &AppState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
) -> Result<Caller, AppError> {
    state.inner.policy.check_network(ip, headers)?;
    authenticate(state, headers, ip).await
}

/// One request, from the caller to the answer.
/// A channel reference must be a channel ARN or an IVS channel name, so that
/// nothing malformed ever reaches IVS.
fn check_channel_reference(reference: &str) -> Result<(), AppError> {
    if reference.starts_with("arn:") {
        return crate::ChannelArn::parse(reference)
            .map(|_| ())
            .map_err(|e| AppError::field("channel", e.to_string()));
    }
    let name_ok = reference.len() <= 128
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if name_ok {
        Ok(())
    } else {
        Err(AppError::field(
            "channel",
            "must be a channel ARN or a channel name (letters, digits, `-` and `_`, at most 128)",
        ))
    }
}

async fn mint_one(
    state: &AppState,
    caller: &Caller,
    request: &TokenRequest,
) -> Result<Value, AppError> {
    let inner = &state.inner;
    check_channel_reference(&request.channel)?;
    let channel = inner
        .channels
        .resolve(&request.channel)
        .await
        .map_err(|e| match e {
            Lookup::NotFound => AppError::ChannelNotFound(request.channel.clone()),
            Lookup::Unavailable(e) => {
                tracing::warn!(error = %e, "channel lookup failed");
                AppError::Unavailable {
                    code: "ivs_unavailable",
                    message: "IVS could not be reached to look the channel up; try again".into(),
                }
            }
        })?;
    if !channel.authorized && !inner.allow_public {
        return Err(AppError::ChannelNotPrivate(channel.arn.to_string()));
    }
    let grant = inner.policy.entitle(caller, &channel, request)?;
    if let Some(viewer) = &grant.viewer {
        let now = crate::claims::unix_seconds(SystemTime::now());
        if let Some(until) = inner
            .revocations
            .denied_until(&channel.arn, viewer.as_str(), now)
        {
            return Err(AppError::Forbidden {
                code: "viewer_revoked",
                message: format!(
                    "this viewer's sessions on {} were revoked; no token until {until} (Unix seconds)",
                    channel.arn
                ),
                field: None,
            });
        }
    }
    let minted = inner.minter.mint(&channel, &grant, SystemTime::now())?;
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
    Ok(answer(&minted, &channel))
}

fn audit_refusal(caller: &str, channel: &str, e: &AppError) {
    tracing::info!(
        target: "audit",
        caller = %caller,
        channel = %channel,
        decision = "refused",
        code = e.code(),
        reason = %e.message(),
    );
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

async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let ip = peer.ip();
    let timeout = state.inner.timeout;
    let work = async {
        let policy = &state.inner.policy;
        let caller = admit(&state, ip, &headers).await?;
        policy.rate_limit(&caller, 1)?;
        let value = read_json(&headers, body, state.inner.max_body).await?;
        let request = parse_request(&value, "")?;
        mint_one(&state, &caller, &request).await.inspect_err(|e| {
            audit_refusal(&caller.name(), &request.channel, e);
        })
    };
    finish(started, within(timeout, work).await)
}

async fn tokens(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let ip = peer.ip();
    let timeout = state.inner.timeout;
    let work = async {
        let policy = &state.inner.policy;
        let caller = admit(&state, ip, &headers).await?;
        let value = read_json(&headers, body, state.inner.max_body).await?;
        let items = value
            .get("requests")
            .and_then(Value::as_array)
            .ok_or_else(|| AppError::field("requests", "must be a list of token requests"))?;
        if items.is_empty() || items.len() > MAX_BATCH {
            return Err(AppError::field(
                "requests",
                format!("must hold 1 to {MAX_BATCH} requests, got {}", items.len()),
            ));
        }
        if let Some(k) = value
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "requests"))
        {
            return Err(AppError::field(
                k.clone(),
                "unknown field; the batch body is {\"requests\": [...]}",
            ));
        }
        policy.rate_limit(&caller, u32::try_from(items.len()).unwrap_or(u32::MAX))?;
        let mut results = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let outcome = match parse_request(item, &format!("requests[{i}].")) {
                Ok(request) => mint_one(&state, &caller, &request).await.inspect_err(|e| {
                    audit_refusal(&caller.name(), &request.channel, e);
                }),
                Err(e) => Err(e),
            };
            results.push(match outcome {
                Ok(v) => v,
                Err(e) => {
                    let mut body = e.body();
                    body["status"] = json!(e.status().as_u16());
                    body
                }
            });
        }
        Ok(json!({ "results": results }))
    };
    finish(started, within(timeout, work).await)
}

async fn openapi() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::json(),
    )
        .into_response()
}

async fn healthz() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let set = state.inner.minter.signer().key_set().snapshot();
    let active = set.active();
    let warm = state.inner.channels.is_warm();
    let body = json!({
        "ready": warm,
        "active_key": active.fingerprint().to_string(),
        "channel_cache_warm": warm,
        "channels": state.inner.channels.snapshot().len(),
    });
    let status = if warm {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let set = state.inner.minter.signer().key_set().snapshot();
    metrics::gauge!("active_key_info", "fingerprint" => set.active().fingerprint().to_string())
        .set(1.0);
    let age = crate::claims::unix_seconds(SystemTime::now())
        .saturating_sub(state.inner.rotator.active_since());
    metrics::gauge!("active_key_age_seconds").set(age as f64);
    match metrics_handle() {
        Some(handle) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => AppError::Internal.into_response(),
    }
}
