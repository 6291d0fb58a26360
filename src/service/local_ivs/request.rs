//! What a control-plane request asks: its operation (from the method and
//! path), and its input (body, and for the tag operations path and query),
//! checked against the IVS model.

use axum::http::{Method, Uri};
use serde_json::Value;

use super::api;
use super::error::ApiError;
use super::model::{self, Model};

/// The operation a control-plane request names.
pub(crate) fn operation_of(
    method: &Method,
    path: &str,
) -> Result<(String, Option<String>), ApiError> {
    if let Some(arn) = path.strip_prefix("/tags/") {
        let op = match *method {
            Method::POST => "TagResource",
            Method::DELETE => "UntagResource",
            Method::GET => "ListTagsForResource",
            _ => {
                return Err(ApiError::unknown_operation(format!(
                    "{method} /tags/{{resourceArn}} is not an IVS operation"
                )));
            }
        };
        let decoded = percent_decode(arn)
            .ok_or_else(|| ApiError::validation("resourceArn is not valid percent-encoding"))?;
        return Ok((op.to_owned(), Some(decoded)));
    }
    let name = path.trim_start_matches('/');
    if *method == Method::POST && api::OPERATIONS.contains(&name) {
        return Ok((name.to_owned(), None));
    }
    Err(ApiError::unknown_operation(format!(
        "{method} {path} is not an operation of the local IVS"
    )))
}

/// `%XX` sequences decoded; `None` for a broken one or bytes that are not
/// UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn query_values(uri: &Uri, name: &str) -> Vec<String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| percent_decode(&v.replace('+', " ")).unwrap_or_default())
        })
        .collect()
}

/// An operation's input from its body (and, for the tag operations, its
/// path and query), checked against the IVS model.
pub(crate) fn control_input(
    operation: &str,
    resource_arn: Option<String>,
    uri: &Uri,
    body: &[u8],
) -> Result<(Value, &'static model::Operation), ApiError> {
    let mut input: Value = if body.is_empty() {
        Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::validation(format!("the request body is not valid JSON: {e}")))?
    };
    if !input.is_object() {
        return Err(ApiError::validation(
            "the request body must be a JSON object",
        ));
    }
    if let Some(arn) = resource_arn {
        input["resourceArn"] = Value::String(arn);
        if operation == "UntagResource" {
            input["tagKeys"] = Value::from(query_values(uri, "tagKeys"));
        }
    }
    let model = Model::get();
    let op = model.operation(operation).ok_or_else(|| {
        ApiError::unknown_operation(format!("{operation} is not in the IVS model"))
    })?;
    model.validate(op, &input).map_err(ApiError::validation)?;
    Ok((input, op))
}
