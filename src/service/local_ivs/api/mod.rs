//! The IVS control-plane operations, over the state of one account and
//! region. Inputs arrive already checked against the service model; what is
//! checked here is what the model cannot say (existence, references, quotas,
//! conflicts). One file per resource; this one dispatches, and holds what
//! they share: lookup by ARN, tags and pagination.

mod channels;
mod countries;
mod key_pairs;
pub(crate) mod metadata;
mod policies;
mod recording;
mod stream_keys;
pub(crate) mod streams;

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::error::ApiError;
use super::state::{
    Channel, KeyPair, PlaybackRestrictionPolicy, RecordingConfiguration, RegionState, Scope, State,
    StreamKey,
};

const MAX_TAGS: usize = 50;

/// Where a request runs: its account and region, the base URL that playback
/// URLs point at, the S3 buckets this local IVS is told do not exist, the
/// time, whether a new channel starts live, and PutMetadata's quotas and
/// cue queue.
pub(crate) struct Context<'a> {
    pub(crate) scope: &'a Scope,
    pub(crate) base_url: &'a str,
    pub(crate) missing_buckets: &'a BTreeSet<String>,
    /// Milliseconds since the Unix epoch.
    pub(crate) now_ms: u64,
    /// A new channel's stream starts at once (`LocalIvsConfig::live_on_create`).
    pub(crate) live_on_create: bool,
    pub(crate) metadata: &'a metadata::TimedMetadata,
}

/// Whether an operation changes state (and so must be saved).
pub(crate) fn is_mutating(operation: &str) -> bool {
    [
        "Create",
        "Update",
        "Delete",
        "Import",
        "TagResource",
        "UntagResource",
        "StartViewerSessionRevocation",
        "BatchStartViewerSessionRevocation",
        "StopStream",
    ]
    .iter()
    .any(|p| operation.starts_with(p))
}

/// Runs one operation. `Value::Null` is an empty answer (204 operations).
pub(crate) fn execute(
    operation: &str,
    input: &Value,
    state: &mut State,
    ctx: &Context<'_>,
) -> Result<Value, ApiError> {
    match operation {
        "CreateChannel" => {
            let out = channels::create(input, state, ctx)?;
            if ctx.live_on_create {
                // As if a broadcaster connected at once (see streams.rs).
                let id = id_of(out["channel"]["arn"].as_str().unwrap_or_default()).to_owned();
                streams::start(
                    state,
                    &ctx.scope.key(),
                    &id,
                    "HEALTHY",
                    ctx.base_url,
                    ctx.now_ms,
                )?;
            }
            Ok(out)
        }
        "GetChannel" => channels::get(input, region(state, ctx), ctx.base_url),
        "BatchGetChannel" => {
            let region = region(state, ctx);
            Ok(batch_get(input, "channels", |arn| {
                find(&region.channels, arn).map(|c| channels::channel_doc(c, ctx.base_url))
            }))
        }
        "ListChannels" => channels::list(input, region(state, ctx)),
        "UpdateChannel" => channels::update(input, state.region_mut(ctx.scope), ctx.base_url),
        "DeleteChannel" => channels::delete(input, state.region_mut(ctx.scope)),
        "CreateStreamKey" => stream_keys::create(input, state, ctx),
        "GetStreamKey" => {
            let key = find(&region(state, ctx).stream_keys, str_of(input, "arn"))?;
            Ok(json!({ "streamKey": stream_keys::doc(key, true) }))
        }
        "BatchGetStreamKey" => {
            let region = region(state, ctx);
            Ok(batch_get(input, "streamKeys", |arn| {
                find(&region.stream_keys, arn).map(|k| stream_keys::doc(k, true))
            }))
        }
        "ListStreamKeys" => stream_keys::list(input, region(state, ctx)),
        "DeleteStreamKey" => {
            remove(
                &mut state.region_mut(ctx.scope).stream_keys,
                str_of(input, "arn"),
            )?;
            Ok(Value::Null)
        }
        "ImportPlaybackKeyPair" => key_pairs::import(input, state, ctx),
        "GetPlaybackKeyPair" => {
            let pair = find(&region(state, ctx).key_pairs, str_of(input, "arn"))?;
            Ok(json!({ "keyPair": key_pairs::doc(pair, true) }))
        }
        "ListPlaybackKeyPairs" => key_pairs::list(input, region(state, ctx)),
        "DeletePlaybackKeyPair" => {
            remove(
                &mut state.region_mut(ctx.scope).key_pairs,
                str_of(input, "arn"),
            )?;
            Ok(json!({}))
        }
        "StartViewerSessionRevocation" => {
            key_pairs::revoke(state.region_mut(ctx.scope), input)?;
            Ok(json!({}))
        }
        "BatchStartViewerSessionRevocation" => {
            Ok(key_pairs::revoke_batch(state.region_mut(ctx.scope), input))
        }
        "CreateRecordingConfiguration" => recording::create(input, state, ctx),
        "GetRecordingConfiguration" => recording::get(input, region(state, ctx)),
        "ListRecordingConfigurations" => recording::list(input, region(state, ctx)),
        "DeleteRecordingConfiguration" => recording::delete(input, state.region_mut(ctx.scope)),
        "CreatePlaybackRestrictionPolicy" => policies::create(input, state, ctx),
        "GetPlaybackRestrictionPolicy" => policies::get(input, region(state, ctx)),
        "ListPlaybackRestrictionPolicies" => policies::list(input, region(state, ctx)),
        "UpdatePlaybackRestrictionPolicy" => policies::update(input, state.region_mut(ctx.scope)),
        "DeletePlaybackRestrictionPolicy" => policies::delete(input, state.region_mut(ctx.scope)),
        "GetStream" => streams::get(input, region(state, ctx)),
        "ListStreams" => streams::list(input, region(state, ctx)),
        "StopStream" => streams::stop(input, state.region_mut(ctx.scope), ctx.now_ms),
        "GetStreamSession" => streams::get_session(input, region(state, ctx)),
        "ListStreamSessions" => streams::list_sessions(input, region(state, ctx)),
        "PutMetadata" => metadata::put(input, region(state, ctx), ctx),
        "TagResource" => {
            let tags = tags_of(input)?;
            let existing =
                resource_tags(state.region_mut(ctx.scope), str_of(input, "resourceArn"))?;
            let mut merged = existing.clone();
            merged.extend(tags);
            if merged.len() > MAX_TAGS {
                return Err(ApiError::validation(format!(
                    "a resource can have at most {MAX_TAGS} tags; this would make {}",
                    merged.len()
                )));
            }
            *existing = merged;
            Ok(json!({}))
        }
        "UntagResource" => {
            // Tags with the reserved prefix cannot be removed either.
            check_tag_keys(
                input["tagKeys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str),
            )?;
            let tags = resource_tags(state.region_mut(ctx.scope), str_of(input, "resourceArn"))?;
            for key in input["tagKeys"].as_array().into_iter().flatten() {
                if let Some(k) = key.as_str() {
                    tags.remove(k);
                }
            }
            Ok(json!({}))
        }
        "ListTagsForResource" => {
            let tags = resource_tags(state.region_mut(ctx.scope), str_of(input, "resourceArn"))?;
            Ok(json!({ "tags": tags }))
        }
        other => Err(ApiError::unknown_operation(format!(
            "the local IVS does not implement {other}"
        ))),
    }
}

/// The operations the local IVS implements.
pub(crate) const OPERATIONS: &[&str] = &[
    "CreateChannel",
    "GetChannel",
    "BatchGetChannel",
    "ListChannels",
    "UpdateChannel",
    "DeleteChannel",
    "CreateStreamKey",
    "GetStreamKey",
    "BatchGetStreamKey",
    "ListStreamKeys",
    "DeleteStreamKey",
    "ImportPlaybackKeyPair",
    "GetPlaybackKeyPair",
    "ListPlaybackKeyPairs",
    "DeletePlaybackKeyPair",
    "StartViewerSessionRevocation",
    "BatchStartViewerSessionRevocation",
    "CreateRecordingConfiguration",
    "GetRecordingConfiguration",
    "ListRecordingConfigurations",
    "DeleteRecordingConfiguration",
    "CreatePlaybackRestrictionPolicy",
    "GetPlaybackRestrictionPolicy",
    "ListPlaybackRestrictionPolicies",
    "UpdatePlaybackRestrictionPolicy",
    "DeletePlaybackRestrictionPolicy",
    "GetStream",
    "ListStreams",
    "StopStream",
    "GetStreamSession",
    "ListStreamSessions",
    "PutMetadata",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
];

fn region<'s>(state: &'s mut State, ctx: &Context<'_>) -> &'s RegionState {
    state.region_mut(ctx.scope)
}

fn str_of<'v>(input: &'v Value, member: &str) -> &'v str {
    input[member].as_str().unwrap_or_default()
}

/// The tags of a request. Lengths, characters and the 50-tag limit of a
/// request are checked against the model before this; what the model cannot
/// say is checked here, before anything is stored: the `aws:` prefix (in
/// any case) is reserved for AWS (AWS tagging rules, "Tag naming limits and
/// requirements").
fn tags_of(input: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let tags: BTreeMap<String, String> = input["tags"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    check_tag_keys(tags.keys().map(String::as_str))?;
    Ok(tags)
}

fn check_tag_keys<'k>(mut keys: impl Iterator<Item = &'k str>) -> Result<(), ApiError> {
    match keys.find(|k| k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"))) {
        Some(key) => Err(ApiError::validation(format!(
            "tag key '{key}' starts with 'aws:', a prefix reserved for AWS use; choose a key without it"
        ))),
        None => Ok(()),
    }
}

fn not_found(what: &str, arn: &str) -> ApiError {
    ApiError::not_found(format!("{what} {arn} does not exist"))
}

/// A stored resource. Resources are kept by id, the last segment of their
/// ARN; the whole ARN must match too, so another account, region or
/// resource type is "not found", as in IVS.
trait Resource {
    const KIND: &'static str;
    fn arn(&self) -> &str;
}

impl Resource for Channel {
    const KIND: &'static str = "channel";
    fn arn(&self) -> &str {
        Channel::arn(self)
    }
}

impl Resource for StreamKey {
    const KIND: &'static str = "stream key";
    fn arn(&self) -> &str {
        &self.arn
    }
}

impl Resource for KeyPair {
    const KIND: &'static str = "playback key pair";
    fn arn(&self) -> &str {
        &self.arn
    }
}

impl Resource for RecordingConfiguration {
    const KIND: &'static str = "recording configuration";
    fn arn(&self) -> &str {
        RecordingConfiguration::arn(self)
    }
}

impl Resource for PlaybackRestrictionPolicy {
    const KIND: &'static str = "playback restriction policy";
    fn arn(&self) -> &str {
        &self.arn
    }
}

fn id_of(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or_default()
}

/// A BatchGet operation: `get` for each of `input.arns`, once each (a
/// repeated ARN is answered once), the documents found under `key` and an
/// error per ARN that is not.
fn batch_get(input: &Value, key: &str, get: impl Fn(&str) -> Result<Value, ApiError>) -> Value {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let mut seen = Vec::new();
    for arn in input["arns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if seen.contains(&arn) {
            continue;
        }
        seen.push(arn);
        match get(arn) {
            Ok(doc) => found.push(doc),
            Err(e) => errors.push(json!({ "arn": arn, "code": e.code, "message": e.message })),
        }
    }
    json!({ key: found, "errors": errors })
}

fn find<'m, T: Resource>(map: &'m BTreeMap<String, T>, arn: &str) -> Result<&'m T, ApiError> {
    map.get(id_of(arn))
        .filter(|r| r.arn() == arn)
        .ok_or_else(|| not_found(T::KIND, arn))
}

fn find_mut<'m, T: Resource>(
    map: &'m mut BTreeMap<String, T>,
    arn: &str,
) -> Result<&'m mut T, ApiError> {
    map.get_mut(id_of(arn))
        .filter(|r| r.arn() == arn)
        .ok_or_else(|| not_found(T::KIND, arn))
}

fn remove<T: Resource>(map: &mut BTreeMap<String, T>, arn: &str) -> Result<T, ApiError> {
    find(map, arn)?;
    map.remove(id_of(arn))
        .ok_or_else(|| not_found(T::KIND, arn))
}

fn resource_tags<'r>(
    region: &'r mut RegionState,
    arn: &str,
) -> Result<&'r mut BTreeMap<String, String>, ApiError> {
    if find(&region.channels, arn).is_ok() {
        return Ok(&mut find_mut(&mut region.channels, arn)?.tags);
    }
    if find(&region.key_pairs, arn).is_ok() {
        return Ok(&mut find_mut(&mut region.key_pairs, arn)?.tags);
    }
    if find(&region.stream_keys, arn).is_ok() {
        return Ok(&mut find_mut(&mut region.stream_keys, arn)?.tags);
    }
    if find(&region.recording_configurations, arn).is_ok() {
        return Ok(&mut find_mut(&mut region.recording_configurations, arn)?.tags);
    }
    if find(&region.playback_restriction_policies, arn).is_ok() {
        return Ok(&mut find_mut(&mut region.playback_restriction_policies, arn)?.tags);
    }
    Err(not_found("resource", arn))
}

/// A page of `items` (ordered by creation) after the position in `token`.
fn page<T>(
    items: Vec<(u64, T)>,
    input: &Value,
    default_max: u64,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let after = match input["nextToken"].as_str().filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("seq:").and_then(|n| n.parse::<u64>().ok()))
            .ok_or_else(|| ApiError::validation("The nextToken is invalid"))?,
    };
    // At least 1: the model's minimum, kept here too so that `max - 1`
    // below can never underflow.
    let max = usize::try_from(input["maxResults"].as_u64().unwrap_or(default_max))
        .unwrap_or(100)
        .max(1);
    let mut items: Vec<(u64, T)> = items.into_iter().filter(|(seq, _)| *seq > after).collect();
    items.sort_by_key(|(seq, _)| *seq);
    let next = if items.len() > max {
        Some(URL_SAFE_NO_PAD.encode(format!("seq:{}", items[max - 1].0)))
    } else {
        None
    };
    items.truncate(max);
    Ok((items.into_iter().map(|(_, t)| t).collect(), next))
}

fn with_token(mut out: Value, next: Option<String>) -> Value {
    if let Some(token) = next {
        out["nextToken"] = json!(token);
    }
    out
}
