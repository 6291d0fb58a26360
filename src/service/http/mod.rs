//! The HTTP room: the token API's routes (`POST /v1/token`, `POST
//! /v1/tokens`, `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, the
//! viewer page), the admin API ([`admin`]), authentication (headers →
//! caller, [`auth`]), request bodies ([`request`]), and the one mapping of
//! errors and refusals to JSON answers ([`error`]).

pub(crate) mod admin;
pub(crate) mod auth;
pub(crate) mod error;
pub(crate) mod openapi;
pub(crate) mod request;
pub(crate) mod token;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use self::error::AppError;
use crate::service::control::coordination::Freshness;
use crate::service::mint::Mint;
use crate::service::origins::OriginList;

/// Everything a token request needs; cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    inner: Arc<AppParts>,
}

/// What the handlers share.
pub(crate) struct AppParts {
    /// The mint room.
    pub(crate) mint: Arc<Mint>,
    /// How request bodies are read (size, deadline).
    pub(crate) body: request::BodyLimits,
    /// Longest a request may take.
    pub(crate) timeout: Duration,
    /// When the active key started signing (Unix seconds), for the key-age
    /// metric; the control room keeps it current.
    pub(crate) active_since: Arc<AtomicU64>,
    /// With replicas: how fresh this replica's view of the shared stores
    /// is, and how stale it may get before the replica is not ready.
    pub(crate) freshness: Option<(Arc<Freshness>, u64)>,
}

impl AppState {
    /// Shares the parts.
    pub(crate) fn new(parts: AppParts) -> Self {
        Self {
            inner: Arc::new(parts),
        }
    }

    /// Periodic clean-up of per-client state.
    pub(crate) fn housekeeping(&self) {
        self.inner.mint.housekeeping(SystemTime::now());
    }
}

/// The process-wide Prometheus recorder (installed once).
pub(crate) fn metrics_handle() -> Option<&'static PrometheusHandle> {
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
pub(crate) fn router(
    state: AppState,
    cors_origins: &[String],
    viewer_dir: &std::path::Path,
) -> Router {
    let _ = metrics_handle();
    // Shown at 0 from the start: a log line lost is one an operator must see.
    metrics::counter!(crate::service::log_writer::DROPPED_METRIC).increment(0);
    let router = Router::new()
        .route("/v1/token", post(token::token))
        .route("/v1/tokens", post(token::tokens))
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
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed.into_response() })
        .with_state(state);
    let cors = if cors_origins.is_empty() {
        None
    } else {
        // Config::load refused lists that do not parse; an unparsable list
        // (never reached) would allow no origin rather than every one.
        let allow = match OriginList::from_config(cors_origins) {
            Ok(OriginList::Any) => AllowOrigin::any(),
            Ok(OriginList::Only(list)) => AllowOrigin::list(
                list.iter()
                    .filter_map(|o| HeaderValue::from_str(o.as_str()).ok()),
            ),
            Err(_) => AllowOrigin::list([]),
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::POST, Method::GET])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    header::HeaderName::from_static(auth::API_KEY_HEADER),
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

async fn openapi() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        openapi::json(),
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
    let mint = &state.inner.mint;
    let set = mint.minter.signer().key_set().snapshot();
    let active = set.active();
    let warm = mint.channels.is_warm();
    let mut body = json!({
        "ready": warm,
        "active_key": active.fingerprint().to_string(),
        "channel_cache_warm": warm,
        "channels": mint.channels.snapshot().len(),
    });
    let mut ready = warm;
    // With replicas: signing goes on with the keys held while the shared
    // stores are out of reach, but a replica that has not heard from them
    // for too long may miss a rotation or a revocation, so it asks for no
    // more traffic until it has.
    if let Some((freshness, limit)) = &state.inner.freshness {
        let age = freshness.age(crate::claims::unix_seconds(SystemTime::now()));
        let fresh = age <= *limit;
        ready &= fresh;
        body["ready"] = ready.into();
        body["stores_fresh"] = fresh.into();
        body["stores_synced_seconds_ago"] = age.into();
    }
    let status = if ready {
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
    let set = state.inner.mint.minter.signer().key_set().snapshot();
    metrics::gauge!("active_key_info", "fingerprint" => set.active().fingerprint().to_string())
        .set(1.0);
    let age = crate::claims::unix_seconds(SystemTime::now())
        .saturating_sub(state.inner.active_since.load(Ordering::Relaxed));
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
