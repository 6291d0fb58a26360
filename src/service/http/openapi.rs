//! The token API described as OpenAPI 3, served at `/openapi.json`.
//!
//! The handlers parse their bodies by hand (to name the field at fault in
//! every error), so the shapes are described here, next to each other, and a
//! test checks them against what the service really answers.

#![allow(dead_code)] // the functions below exist only to carry #[utoipa::path]

use utoipa::{OpenApi, ToSchema};

/// `POST /v1/token` body.
#[derive(ToSchema)]
pub(crate) struct TokenRequest {
    /// A channel ARN, or a channel name resolved through the cache.
    #[schema(example = "demo")]
    channel: String,
    /// The application's user id; pseudonymised (HMAC-SHA-256) into
    /// `aws:viewer-id`. API keys only; viewers get theirs from `sub`.
    viewer_id: Option<String>,
    /// Make the token single-use (`aws:single-use-uuid`), if allowed.
    single_use: Option<bool>,
    /// Lifetime in seconds, at most the caller's maximum (595 s for viewer and
    /// single-use tokens).
    #[schema(minimum = 1)]
    ttl_seconds: Option<u64>,
    /// Origins to allow (`aws:access-control-allow-origin`), within the
    /// caller's allowed origins.
    origins: Option<Vec<String>>,
    /// Check the origin on every request (`aws:strict-origin-enforcement`).
    strict_origin: Option<bool>,
    /// `SD`, `HD` or `FULL_HD`.
    #[schema(example = "HD")]
    maximum_resolution: Option<String>,
}

/// `POST /v1/token` answer.
#[derive(ToSchema)]
pub(crate) struct TokenResponse {
    /// The IVS playback token (ES384 JWT).
    token: String,
    /// The channel's playback URL with `?token=`.
    playback_url: String,
    /// The channel.
    channel_arn: String,
    /// The token's `exp`, Unix seconds.
    expires_at: u64,
    /// When to ask for a new token, Unix seconds.
    refresh_after: u64,
}

/// Every error answer.
#[derive(ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// The error.
#[derive(ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable code: invalid_json, invalid_field, missing_field,
    /// unauthenticated, not_entitled, policy_denied, policy_unverifiable,
    /// viewer_revoked,
    /// channel_not_found, channel_not_private, payload_too_large,
    /// unsupported_media_type, rate_limited, ivs_unavailable, timeout,
    /// no_active_key, not_found.
    code: String,
    /// What went wrong, in words.
    message: String,
    /// The request field at fault, when there is one.
    field: Option<String>,
}

/// `POST /v1/tokens` body.
#[derive(ToSchema)]
pub(crate) struct BatchRequest {
    /// 1 to 50 token requests.
    requests: Vec<TokenRequest>,
}

/// `POST /v1/tokens` answer: one result per request, in order; a failed item
/// is an `ErrorBody` plus its `status`.
#[derive(ToSchema)]
pub(crate) struct BatchResponse {
    results: Vec<serde_json::Value>,
}

/// Get a playback token for a channel.
#[utoipa::path(
    post,
    path = "/v1/token",
    request_body(content = TokenRequest, content_type = "application/json"),
    params(("X-Api-Key" = Option<String>, Header, description = "A trusted backend's API key"),
           ("Authorization" = Option<String>, Header, description = "Bearer viewer JWT from the identity provider")),
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, body = ErrorBody, description = "invalid_json, invalid_field, missing_field"),
        (status = 401, body = ErrorBody, description = "unauthenticated"),
        (status = 403, body = ErrorBody, description = "not_entitled; policy_denied (network or country rules, or the private channel's playback restriction policy: a country it does not allow, or no origin both it and the caller allow); policy_unverifiable (the channel's playback restriction policy limits countries and no trusted country header is configured); viewer_revoked"),
        (status = 404, body = ErrorBody, description = "channel_not_found: no such ARN at IVS, or a name the last channel listing does not hold (names are found at the next background refresh)"),
        (status = 409, body = ErrorBody, description = "channel_not_private"),
        (status = 413, body = ErrorBody, description = "payload_too_large"),
        (status = 415, body = ErrorBody, description = "unsupported_media_type"),
        (status = 429, body = ErrorBody, description = "rate_limited, with Retry-After: the caller's limit, or the budget of IVS lookups shared by channel ARNs missing from the cache"),
        (status = 503, body = ErrorBody, description = "ivs_unavailable, timeout"),
    ),
    tag = "tokens"
)]
fn token() {}

/// Get tokens for up to 50 channels at once.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    request_body(content = BatchRequest, content_type = "application/json"),
    responses((status = 200, body = BatchResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)),
    tag = "tokens"
)]
fn tokens() {}

/// Alive.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")), tag = "operations")]
fn healthz() {}

/// Ready: an active key is loaded and the channel cache is warm.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready"), (status = 503, description = "not ready")), tag = "operations")]
fn readyz() {}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format")), tag = "operations")]
fn metrics() {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ivs-playback-auth",
        description = "Amazon IVS playback-authorization tokens for private channels"
    ),
    paths(token, tokens, healthz, readyz, metrics),
    components(schemas(
        TokenRequest,
        TokenResponse,
        ErrorBody,
        ErrorDetail,
        BatchRequest,
        BatchResponse
    ))
)]
struct ApiDoc;

/// The OpenAPI document as JSON.
pub(crate) fn json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}
