//! Errors of both HTTP APIs: one enum, one `match` from error to status and
//! stable code, a JSON body `{"error": {"code", "message", "field"}}`. The
//! mint room's [`Refusal`] becomes an answer here, in one conversion.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::mint::Refusal;

/// An error answer of the token API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AppError {
    /// The request is malformed or a field is invalid (400).
    BadRequest {
        /// Stable code: `invalid_json`, `invalid_field`, `missing_field`.
        code: &'static str,
        /// What is wrong.
        message: String,
        /// The field at fault, if one.
        field: Option<String>,
    },
    /// No valid credentials (401).
    Unauthenticated(String),
    /// The caller may not have this (403); the message names the rule.
    Forbidden {
        /// Stable code: `not_entitled`, `policy_denied`,
        /// `policy_unverifiable`, `viewer_revoked`.
        code: &'static str,
        /// Which rule refused.
        message: String,
        /// The field at fault, if one.
        field: Option<String>,
    },
    /// IVS does not know the channel (404).
    ChannelNotFound(String),
    /// The channel is public: a token would be pointless (409).
    ChannelNotPrivate(String),
    /// The body is larger than allowed (413).
    PayloadTooLarge(usize),
    /// The body is not JSON (415).
    UnsupportedMediaType,
    /// The client did not send the whole body in time (408).
    RequestTimeout(std::time::Duration),
    /// The method is not one the route answers (405).
    MethodNotAllowed,
    /// Too many requests (429).
    RateLimited {
        /// When to try again.
        retry_after: Duration,
        /// Which limit.
        message: String,
    },
    /// The service cannot mint now (503): no key, IVS unreachable.
    Unavailable {
        /// Stable code: `no_active_key`, `ivs_unavailable`, `timeout`.
        code: &'static str,
        /// Why.
        message: String,
    },
    /// No such endpoint (404).
    NoRoute,
    /// Something named does not exist (404), e.g. `unknown_key`.
    NotFound {
        /// Stable code.
        code: &'static str,
        /// What was not found.
        message: String,
    },
    /// The request conflicts with the current state (409), e.g.
    /// `key_quota_full`, `active_key`.
    Conflict {
        /// Stable code.
        code: &'static str,
        /// Why.
        message: String,
    },
    /// A fault of ours (500); the details are logged, not sent.
    Internal,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl AppError {
    /// A 400 naming a field.
    pub(crate) fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code: "invalid_field",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// The same error with its field named within a batch item (`at` is
    /// `requests[3].`).
    pub(crate) fn within(self, at: &str) -> Self {
        match self {
            Self::BadRequest {
                code,
                message,
                field: Some(field),
            } if !field.starts_with(at) => Self::BadRequest {
                code,
                message,
                field: Some(format!("{at}{field}")),
            },
            Self::Forbidden {
                code,
                message,
                field: Some(field),
            } if !field.starts_with(at) => Self::Forbidden {
                code,
                message,
                field: Some(format!("{at}{field}")),
            },
            other => other,
        }
    }

    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::ChannelNotFound(_) | Self::NoRoute | Self::NotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            Self::ChannelNotPrivate(_) | Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Forbidden { code, .. }
            | Self::Unavailable { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. } => code,
            Self::Unauthenticated(_) => "unauthenticated",
            Self::ChannelNotFound(_) => "channel_not_found",
            Self::ChannelNotPrivate(_) => "channel_not_private",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RequestTimeout(_) => "request_timeout",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RateLimited { .. } => "rate_limited",
            Self::NoRoute => "not_found",
            Self::Internal => "internal",
        }
    }

    /// The message for the caller.
    pub(crate) fn message(&self) -> String {
        match self {
            Self::BadRequest { message, .. }
            | Self::Forbidden { message, .. }
            | Self::Unavailable { message, .. }
            | Self::NotFound { message, .. }
            | Self::Conflict { message, .. }
            | Self::RateLimited { message, .. }
            | Self::Unauthenticated(message) => message.clone(),
            Self::ChannelNotFound(c) => format!(
                "no channel `{c}`: IVS does not hold it, or it is not in the channel listing yet (names are resolved from the listing, refreshed in the background)"
            ),
            Self::ChannelNotPrivate(c) => {
                format!("channel {c} is public (authorized: false): IVS plays it without a token")
            }
            Self::PayloadTooLarge(max) => format!("the request body is larger than {max} bytes"),
            Self::RequestTimeout(t) => format!(
                "the request body did not arrive within {} ms (server.body_read_timeout_ms)",
                t.as_millis()
            ),
            Self::MethodNotAllowed => {
                "this route does not answer this method; see /openapi.json".into()
            }
            Self::UnsupportedMediaType => {
                "the request body must be JSON (Content-Type: application/json)".into()
            }
            Self::NoRoute => "no such endpoint; tokens come from POST /v1/token".into(),
            Self::Internal => "internal error; it has been logged".into(),
        }
    }

    /// The field at fault.
    pub(crate) fn field_name(&self) -> Option<&str> {
        match self {
            Self::BadRequest { field, .. } | Self::Forbidden { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> serde_json::Value {
        let message = self.message();
        serde_json::to_value(Body {
            error: Detail {
                code: self.code(),
                message: &message,
                field: self.field_name(),
            },
        })
        .unwrap_or_default()
    }
}

impl From<Refusal> for AppError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid { field, message } => Self::BadRequest {
                code: "invalid_field",
                message,
                field: Some(field),
            },
            Refusal::Unauthenticated(message) => Self::Unauthenticated(message),
            Refusal::NotEntitled { field, message } => Self::Forbidden {
                code: "not_entitled",
                message,
                field,
            },
            Refusal::PolicyDenied(message) => Self::Forbidden {
                code: "policy_denied",
                message,
                field: None,
            },
            Refusal::PolicyUnverifiable(message) => Self::Forbidden {
                code: "policy_unverifiable",
                message,
                field: None,
            },
            Refusal::ViewerRevoked(message) => Self::Forbidden {
                code: "viewer_revoked",
                message,
                field: None,
            },
            Refusal::ChannelNotFound(c) => Self::ChannelNotFound(c),
            Refusal::ChannelNotPrivate(c) => Self::ChannelNotPrivate(c),
            Refusal::RateLimited {
                retry_after,
                message,
            } => Self::RateLimited {
                retry_after,
                message,
            },
            Refusal::Unavailable { code, message } => Self::Unavailable { code, message },
            Refusal::Internal => Self::Internal,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.body().to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Self::RateLimited { retry_after, .. } = &self {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
