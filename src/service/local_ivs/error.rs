//! Errors as IVS sends them: the code in `x-amzn-ErrorType`, the message in
//! `{"exceptionMessage": "..."}`, the model's status code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One IVS error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationException", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }

    /// A stream operation on a channel that is not live (the model's
    /// ChannelNotBroadcasting, 404).
    pub(crate) fn channel_not_broadcasting(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ChannelNotBroadcasting", message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "ConflictException", message)
    }

    pub(crate) fn quota(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYMENT_REQUIRED,
            "ServiceQuotaExceededException",
            message,
        )
    }

    pub(crate) fn access_denied(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// Over a rate quota (the model's ThrottlingException, 429).
    pub(crate) fn throttling(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            message,
        )
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            message,
        )
    }

    pub(crate) fn unknown_operation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "UnknownOperationException", message)
    }

    pub(crate) fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ValidationException",
            message,
        )
    }

    /// An error injected by a fault rule: any code, with its usual status.
    pub(crate) fn injected(code: &str) -> Option<Self> {
        let (status, code) = match code {
            "ThrottlingException" => (StatusCode::TOO_MANY_REQUESTS, "ThrottlingException"),
            "InternalServerException" => {
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerException")
            }
            "ServiceUnavailable" => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            "AccessDeniedException" => (StatusCode::FORBIDDEN, "AccessDeniedException"),
            "PendingVerification" => (StatusCode::FORBIDDEN, "PendingVerification"),
            "ValidationException" => (StatusCode::BAD_REQUEST, "ValidationException"),
            "ConflictException" => (StatusCode::CONFLICT, "ConflictException"),
            _ => return None,
        };
        Some(Self::new(status, code, "injected by /_local/faults"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "exceptionMessage": self.message }).to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert("x-amzn-ErrorType", HeaderValue::from_static(self.code));
        response
    }
}
