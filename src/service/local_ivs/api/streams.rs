//! Streams and stream sessions over the looping clip: GetStream,
//! ListStreams, StopStream, GetStreamSession, ListStreamSessions.
//!
//! There is no ingest here: a stream starts when a channel is created (with
//! `LocalIvsConfig::live_on_create`, the default) or when a test asks for it
//! with the channel's stream key (`POST /_local/streams/start`), and ends
//! with StopStream. Each start is a new stream session that keeps, as IVS's
//! do, the channel and its recording configuration as they were then.

use serde_json::{Value, json};

use super::channels::channel_doc;
use super::recording::full_doc;
use super::{find, page, str_of, with_token};
use crate::service::local_ivs::error::ApiError;
use crate::service::local_ivs::state::{RegionState, State, StreamSession, new_id};

/// Ended sessions kept per channel, newest first; older ones are forgotten
/// so that a long run's state file stays bounded. IVS documents no number
/// [OPEN].
const MAX_ENDED_SESSIONS: usize = 100;

/// The state names of IVS's EventBridge "IVS Stream State Change" events
/// (IVS User Guide, "Using Amazon EventBridge with IVS").
const STATE_CHANGE: &str = "IVS Stream State Change";

/// What the local stream sends, as IVS would describe its ingest: the clip's
/// encoding (assets/clip/make-clip.sh, the 720p30 rendition).
fn ingest_configuration() -> Value {
    json!({
        "video": {
            "avcProfile": "Main",
            "avcLevel": "3.1",
            "codec": "avc1.4D401F",
            "encoder": "local-ivs clip",
            "targetBitrate": 700_000,
            "targetFramerate": 30,
            "videoHeight": 720,
            "videoWidth": 1280,
        },
        "audio": {
            "codec": "mp4a.40.2",
            "targetBitrate": 48_000,
            "sampleRate": 48_000,
            "channels": 2,
        },
    })
}

/// Milliseconds since the Unix epoch as IVS's timestamps (ISO 8601, UTC,
/// `2026-01-02T03:04:05.678Z`).
pub(crate) fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days (Howard Hinnant's algorithm), for days >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

fn event(name: &str, ms: u64) -> Value {
    json!({ "name": name, "type": STATE_CHANGE, "eventTime": iso8601(ms) })
}

/// Starts a stream on a channel that exists: a new session, `HEALTHY` unless
/// `health` says otherwise. A channel already live is a conflict, as a
/// second broadcaster on one stream key is refused.
pub(crate) fn start(
    state: &mut State,
    region_key: &str,
    channel_id: &str,
    health: &str,
    base_url: &str,
    now_ms: u64,
) -> Result<Value, ApiError> {
    let seq = state.take_seq();
    let region = state
        .regions
        .get_mut(region_key)
        .ok_or_else(|| ApiError::not_found("no such region"))?;
    let channel = region
        .channels
        .get(channel_id)
        .ok_or_else(|| ApiError::not_found(format!("channel {channel_id} does not exist")))?;
    let channel_arn = channel.arn().to_owned();
    if let Some(live) = region.live_session(&channel_arn) {
        return Err(ApiError::conflict(format!(
            "channel {channel_arn} is already broadcasting (stream {}): stop it first",
            live.stream_id
        )));
    }
    let recording_configuration = channel
        .doc
        .get("recordingConfigurationArn")
        .and_then(Value::as_str)
        .filter(|arn| !arn.is_empty())
        .and_then(|arn| find(&region.recording_configurations, arn).ok())
        .map(full_doc);
    // IVS's stream ids are `st-` and 23 letters and digits (the model's
    // StreamId: 26 characters, `st-[a-zA-Z0-9]+`).
    let stream_id = format!("st-{}", new_id(23));
    let session = StreamSession {
        seq,
        stream_id: stream_id.clone(),
        channel_arn: channel_arn.clone(),
        start_ms: now_ms,
        end_ms: None,
        health: health.to_owned(),
        channel: channel_doc(channel, base_url),
        recording_configuration,
        events: vec![
            event("Session Created", now_ms),
            event("Stream Start", now_ms),
        ],
    };
    region.stream_sessions.insert(stream_id.clone(), session);
    Ok(json!({ "channelArn": channel_arn, "streamId": stream_id }))
}

/// The live stream session of a channel that exists.
pub(super) fn live<'r>(
    region: &'r RegionState,
    channel_arn: &str,
) -> Result<&'r StreamSession, ApiError> {
    find(&region.channels, channel_arn)?;
    region.live_session(channel_arn).ok_or_else(|| {
        ApiError::channel_not_broadcasting(format!(
            "channel {channel_arn} is not broadcasting: no stream is live on it"
        ))
    })
}

fn summary(session: &StreamSession) -> Value {
    json!({
        "channelArn": session.channel_arn,
        "streamId": session.stream_id,
        "state": "LIVE",
        "health": session.health,
        // The local IVS does not count viewers [OPEN: a count of playback
        // sessions could stand in].
        "viewerCount": 0,
        "startTime": iso8601(session.start_ms),
    })
}

pub(super) fn get(input: &Value, region: &RegionState) -> Result<Value, ApiError> {
    let session = live(region, str_of(input, "channelArn"))?;
    let mut stream = summary(session);
    stream["playbackUrl"] = session.channel["playbackUrl"].clone();
    Ok(json!({ "stream": stream }))
}

pub(super) fn list(input: &Value, region: &RegionState) -> Result<Value, ApiError> {
    let health = input["filterBy"]["health"].as_str();
    let items = region
        .stream_sessions
        .values()
        .filter(|s| s.end_ms.is_none() && health.is_none_or(|h| h == s.health))
        .map(|s| (s.seq, summary(s)))
        .collect();
    let (streams, next) = page(items, input, 100)?;
    Ok(with_token(json!({ "streams": streams }), next))
}

pub(super) fn stop(
    input: &Value,
    region: &mut RegionState,
    now_ms: u64,
) -> Result<Value, ApiError> {
    let channel_arn = str_of(input, "channelArn");
    let stream_id = live(region, channel_arn)?.stream_id.clone();
    if let Some(session) = region.stream_sessions.get_mut(&stream_id) {
        session.end_ms = Some(now_ms.max(session.start_ms));
        session.events.push(event("Stream End", now_ms));
        session.events.push(event("Session Ended", now_ms));
    }
    // Only the newest ended sessions of the channel are kept.
    let mut ended: Vec<(u64, String)> = region
        .stream_sessions
        .values()
        .filter(|s| s.channel_arn == channel_arn && s.end_ms.is_some())
        .map(|s| (s.seq, s.stream_id.clone()))
        .collect();
    ended.sort_unstable_by(|a, b| b.cmp(a));
    for (_, id) in ended.iter().skip(MAX_ENDED_SESSIONS) {
        region.stream_sessions.remove(id);
    }
    Ok(json!({}))
}

fn session_doc(session: &StreamSession) -> Value {
    let mut doc = json!({
        "streamId": session.stream_id,
        "startTime": iso8601(session.start_ms),
        "channel": session.channel,
        "ingestConfiguration": ingest_configuration(),
        "truncatedEvents": session.events,
    });
    if let Some(end) = session.end_ms {
        doc["endTime"] = json!(iso8601(end));
    }
    if let Some(config) = &session.recording_configuration {
        doc["recordingConfiguration"] = config.clone();
    }
    doc
}

/// A session of a channel: the one named, or without `streamId` the most
/// recent, as the model documents.
pub(super) fn get_session(input: &Value, region: &RegionState) -> Result<Value, ApiError> {
    let channel_arn = str_of(input, "channelArn");
    find(&region.channels, channel_arn)?;
    let of_channel = region
        .stream_sessions
        .values()
        .filter(|s| s.channel_arn == channel_arn);
    let session = match input["streamId"].as_str() {
        Some(id) => of_channel.clone().find(|s| s.stream_id == id),
        None => of_channel.max_by_key(|s| s.seq),
    };
    let session = session.ok_or_else(|| match input["streamId"].as_str() {
        Some(id) => ApiError::not_found(format!(
            "stream session {id} does not exist on channel {channel_arn}"
        )),
        None => ApiError::not_found(format!("channel {channel_arn} has no stream session yet")),
    })?;
    Ok(json!({ "streamSession": session_doc(session) }))
}

/// A channel's sessions, newest first [OPEN: IVS's order is not documented;
/// its console lists the newest first].
pub(super) fn list_sessions(input: &Value, region: &RegionState) -> Result<Value, ApiError> {
    let channel_arn = str_of(input, "channelArn");
    find(&region.channels, channel_arn)?;
    let items = region
        .stream_sessions
        .values()
        .filter(|s| s.channel_arn == channel_arn)
        .map(|s| {
            let mut summary = json!({
                "streamId": s.stream_id,
                "startTime": iso8601(s.start_ms),
                "hasErrorEvent": false,
            });
            if let Some(end) = s.end_ms {
                summary["endTime"] = json!(iso8601(end));
            }
            // Newest first: the page helper orders by ascending key.
            (u64::MAX - s.seq, summary)
        })
        .collect();
    let (sessions, next) = page(items, input, 100)?;
    Ok(with_token(json!({ "streamSessions": sessions }), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso8601_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(1_798_761_599_999), "2026-12-31T23:59:59.999Z");
    }
}
