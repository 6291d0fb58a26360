//! The test controls under `/_local/` (served only when enabled): reset,
//! faults, calls, and starting a stream, which stands in for a broadcaster
//! connecting with its stream key.

use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::api::streams;
use super::error::ApiError;
use super::faults::FaultRequest;
use super::playback::Sessions;
use super::state::State;
use super::{App, lock, unix_ms};

pub(super) async fn reset(AxumState(app): AxumState<App>) -> Response {
    let result = app
        .with_state(true, |state| {
            *state = State::empty();
            Ok(())
        })
        .await;
    app.inner.faults.clear();
    lock(&app.inner.calls).clear();
    *lock(&app.inner.sessions) = Sessions::default();
    *lock(&app.inner.metadata.cues) = super::cue_queue::CueQueue::default();
    *lock(&app.inner.metadata.quota) = super::api::metadata::Quota::default();
    *lock(&app.inner.metadata.paused_at) = None;
    match result {
        Ok(()) => (StatusCode::OK, "{}").into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /_local/calls`: `{"calls": {"GetChannel": 3, ...}, "pending_faults":
/// 0}`, the calls answered (or faulted) since the start or the last reset.
pub(super) async fn calls(AxumState(app): AxumState<App>) -> Response {
    let calls = lock(&app.inner.calls).clone();
    let body = serde_json::json!({
        "calls": calls,
        "pending_faults": app.inner.faults.pending(),
    });
    json_response(StatusCode::OK, body.to_string())
}

pub(super) async fn add_fault(AxumState(app): AxumState<App>, body: Bytes) -> Response {
    let request: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return ApiError::validation(format!("fault: {e}")).into_response(),
    };
    match app.inner.faults.add(request) {
        Ok(()) => (StatusCode::OK, "{}").into_response(),
        Err(e) => ApiError::validation(format!("fault: {e}")).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct QuotaClock {
    #[serde(default)]
    pause: Option<bool>,
    #[serde(default)]
    advance_ms: Option<u64>,
}

/// `POST /_local/quota-clock {"pause": true}` stops the clock that
/// PutMetadata's rate quotas read, `{"advanceMs": 1000}` moves the paused
/// clock on, `{"pause": false}` goes back to real time (as does a reset):
/// a test decides what "within one second" means, however slow its host.
/// Answers `{"paused": bool}`.
pub(super) async fn quota_clock(AxumState(app): AxumState<App>, body: Bytes) -> Response {
    let request: QuotaClock = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::validation(format!(
                "quota-clock: {e}; send {{\"pause\": true}}, {{\"advanceMs\": 1000}} or {{\"pause\": false}}"
            ))
            .into_response();
        }
    };
    let mut paused = lock(&app.inner.metadata.paused_at);
    match request.pause {
        Some(true) => *paused = Some(paused.unwrap_or_else(std::time::Instant::now)),
        Some(false) => *paused = None,
        None => {}
    }
    if let Some(ms) = request.advance_ms {
        let Some(at) = paused.as_mut() else {
            return ApiError::validation(
                "quota-clock: advanceMs moves a paused clock; pause it first ({\"pause\": true})",
            )
            .into_response();
        };
        *at += std::time::Duration::from_millis(ms);
    }
    json_response(
        StatusCode::OK,
        serde_json::json!({ "paused": paused.is_some() }).to_string(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StartStream {
    stream_key: String,
    /// The health ListStreams reports (`HEALTHY` unless given).
    #[serde(default)]
    health: Option<String>,
}

/// `POST /_local/streams/start {"streamKey": "sk_...", "health"?: "STARVING"}`:
/// a broadcaster connects with the stream key, and the key's channel goes
/// live. Answers `{"channelArn", "streamId"}`; an unknown key is 404
/// `ResourceNotFoundException`, a channel already live 409
/// `ConflictException`, in IVS's error shape.
pub(super) async fn start_stream(AxumState(app): AxumState<App>, body: Bytes) -> Response {
    let request: StartStream = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::validation(format!(
                "streams/start: {e}; send {{\"streamKey\": \"sk_...\"}}"
            ))
            .into_response();
        }
    };
    let health = request.health.as_deref().unwrap_or("HEALTHY").to_owned();
    if !["HEALTHY", "STARVING", "UNKNOWN"].contains(&health.as_str()) {
        return ApiError::validation(format!(
            "streams/start: health `{health}` is not one of HEALTHY, STARVING, UNKNOWN"
        ))
        .into_response();
    }
    let base_url = app.inner.base_url.clone();
    let now_ms = unix_ms(SystemTime::now());
    let result = app
        .with_state(true, |state| {
            // The key's value is unique across accounts and regions.
            let found = state.regions.iter().find_map(|(region_key, region)| {
                let key = region
                    .stream_keys
                    .values()
                    .find(|k| k.value == request.stream_key)?;
                let channel_id = key.channel_arn.rsplit('/').next()?.to_owned();
                Some((region_key.clone(), channel_id))
            });
            // The key's value is a secret: never echoed.
            let (region_key, channel_id) = found.ok_or_else(|| {
                ApiError::not_found("no channel has this stream key (deleted, or never created)")
            })?;
            streams::start(state, &region_key, &channel_id, &health, &base_url, now_ms)
        })
        .await;
    match result {
        Ok(out) => json_response(StatusCode::OK, out.to_string()),
        Err(e) => e.into_response(),
    }
}

/// With `live_on_create`: starts a stream on every channel that never had
/// one (a state file from before streams, or from a local IVS with the
/// option off).
pub(super) fn start_never_streamed(state: &mut State, base_url: &str) {
    let now_ms = unix_ms(SystemTime::now());
    let never: Vec<(String, String)> = state
        .regions
        .iter()
        .flat_map(|(region_key, region)| {
            region
                .channels
                .iter()
                .filter(|(_, c)| {
                    !region
                        .stream_sessions
                        .values()
                        .any(|s| s.channel_arn == c.arn())
                })
                .map(|(id, _)| (region_key.clone(), id.clone()))
        })
        .collect();
    for (region_key, channel_id) in never {
        // Cannot fail: the channel exists and is not live.
        let _ = streams::start(state, &region_key, &channel_id, "HEALTHY", base_url, now_ms);
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
