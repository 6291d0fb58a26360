//! Token request bodies: JSON read within the size limit, then each field
//! checked by hand so that every error names the field at fault (with its
//! position in a batch). The channel reference is parsed here, once.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use http_body_util::LengthLimitError;
use serde_json::{Map, Value};

use super::error::AppError;
use crate::MaximumResolution;
use crate::service::channel::ChannelRef;
use crate::service::mint::TokenRequest;

/// Most channels in one batch request.
pub(crate) const MAX_BATCH: usize = 50;

/// How a request body is read: at most `max` bytes, within `timeout`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    pub(crate) max: usize,
    pub(crate) timeout: Duration,
}

/// Reads a whole body: 413 if it declares (or turns out) longer than the
/// limit, before anything is read when it declares; 408 if it does not
/// arrive in time; 400 if the client broke it off.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: BodyLimits,
) -> Result<Bytes, AppError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max as u64) {
        return Err(AppError::PayloadTooLarge(limits.max));
    }
    match tokio::time::timeout(limits.timeout, axum::body::to_bytes(body, limits.max)).await {
        Err(_) => Err(AppError::RequestTimeout(limits.timeout)),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let inner = e.into_inner();
            if inner.downcast_ref::<LengthLimitError>().is_some() {
                Err(AppError::PayloadTooLarge(limits.max))
            } else {
                Err(AppError::BadRequest {
                    code: "invalid_body",
                    message: format!("the request body could not be read: {inner}"),
                    field: None,
                })
            }
        }
    }
}

/// Reads a JSON body: 415 if it is not JSON, then as [`read_body`], then
/// 400 if it is not JSON after all.
pub(crate) async fn read_json(
    headers: &HeaderMap,
    body: Body,
    limits: BodyLimits,
) -> Result<Value, AppError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_type);
    if !is_json {
        return Err(AppError::UnsupportedMediaType);
    }
    let bytes = read_body(headers, body, limits).await?;
    serde_json::from_slice(&bytes).map_err(|e| AppError::BadRequest {
        code: "invalid_json",
        message: format!("the body is not valid JSON: {e}"),
        field: None,
    })
}

/// Whether a `Content-Type` names JSON (`application/json` or `*+json`,
/// parameters aside), compared without regard to case and without a
/// lower-cased copy per request.
fn is_json_type(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .as_bytes();
    media.eq_ignore_ascii_case(b"application/json")
        || media
            .len()
            .checked_sub(5)
            .is_some_and(|at| media[at..].eq_ignore_ascii_case(b"+json"))
}

/// The items of a batch body `{"requests": [...]}`.
pub(crate) fn batch_items(value: &Value) -> Result<&[Value], AppError> {
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
    Ok(items)
}

/// A token request from JSON, naming the field at fault; `at` prefixes the
/// field names (`requests[3].` in a batch).
pub(crate) fn parse_request(value: &Value, at: &str) -> Result<TokenRequest, AppError> {
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
    let channel = ChannelRef::parse(&channel)
        .map_err(|message| AppError::field(field("channel"), message))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_known_in_any_case() {
        for json in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            " application/json ;charset=UTF-8",
            "application/merge-patch+json",
            "APPLICATION/VND.API+JSON",
        ] {
            assert!(is_json_type(json), "{json}");
        }
        for other in [
            "",
            "json",
            "text/plain",
            "application/jsonp",
            "application/x-www-form-urlencoded",
            "text/plain; note=+json",
        ] {
            assert!(!is_json_type(other), "{other}");
        }
    }
}
