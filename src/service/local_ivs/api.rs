//! The IVS control-plane operations, over the state of one account and
//! region. Inputs arrive already checked against the service model; what is
//! checked here is what the model cannot say (existence, quotas, conflicts).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::state::{Channel, KeyPair, RegionState, Scope, State, StreamKey, new_id};
use crate::PublicKey;

/// IVS's quota of playback key pairs per region.
pub(crate) const MAX_KEY_PAIRS: usize = 3;
/// IVS's quota of stream keys per channel.
const MAX_STREAM_KEYS_PER_CHANNEL: usize = 1;
const MAX_TAGS: usize = 50;

/// Where a request runs: its account and region, and the base URL that
/// playback URLs point at.
pub(crate) struct Context<'a> {
    pub(crate) scope: &'a Scope,
    pub(crate) base_url: &'a str,
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
    ]
    .iter()
    .any(|p| operation.starts_with(p))
}

/// Runs one operation. `Ok(None)` is an empty answer (204 operations).
pub(crate) fn execute(
    operation: &str,
    input: &Value,
    state: &mut State,
    ctx: &Context<'_>,
) -> Result<Value, ApiError> {
    match operation {
        "CreateChannel" => create_channel(input, state, ctx),
        "GetChannel" => {
            let region = region(state, ctx);
            let channel = find(&region.channels, str_of(input, "arn"))?;
            Ok(json!({ "channel": channel_doc(channel, ctx.base_url) }))
        }
        "BatchGetChannel" => Ok(batch_get_channel(input, region(state, ctx), ctx.base_url)),
        "ListChannels" => list_channels(input, region(state, ctx)),
        "UpdateChannel" => update_channel(input, state.region_mut(ctx.scope), ctx.base_url),
        "DeleteChannel" => {
            let region = state.region_mut(ctx.scope);
            let arn = str_of(input, "arn").to_owned();
            remove(&mut region.channels, &arn)?;
            region.stream_keys.retain(|_, k| k.channel_arn != arn);
            region.revocations.remove(&arn);
            Ok(Value::Null)
        }
        "CreateStreamKey" => create_stream_key(input, state, ctx),
        "GetStreamKey" => {
            let key = find(&region(state, ctx).stream_keys, str_of(input, "arn"))?;
            Ok(json!({ "streamKey": stream_key_doc(key, true) }))
        }
        "ListStreamKeys" => list_stream_keys(input, region(state, ctx)),
        "DeleteStreamKey" => {
            remove(
                &mut state.region_mut(ctx.scope).stream_keys,
                str_of(input, "arn"),
            )?;
            Ok(Value::Null)
        }
        "ImportPlaybackKeyPair" => import_key_pair(input, state, ctx),
        "GetPlaybackKeyPair" => {
            let pair = find(&region(state, ctx).key_pairs, str_of(input, "arn"))?;
            Ok(json!({ "keyPair": key_pair_doc(pair, true) }))
        }
        "ListPlaybackKeyPairs" => list_key_pairs(input, region(state, ctx)),
        "DeletePlaybackKeyPair" => {
            remove(
                &mut state.region_mut(ctx.scope).key_pairs,
                str_of(input, "arn"),
            )?;
            Ok(json!({}))
        }
        "StartViewerSessionRevocation" => {
            let region = state.region_mut(ctx.scope);
            revoke(region, input)?;
            Ok(json!({}))
        }
        "BatchStartViewerSessionRevocation" => {
            let region = state.region_mut(ctx.scope);
            let mut errors = Vec::new();
            for session in input["viewerSessions"].as_array().into_iter().flatten() {
                if let Err(e) = revoke(region, session) {
                    errors.push(json!({
                        "channelArn": session["channelArn"],
                        "viewerId": session["viewerId"],
                        "code": e.code,
                        "message": e.message,
                    }));
                }
            }
            Ok(json!({ "errors": errors }))
        }
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
    "ListStreamKeys",
    "DeleteStreamKey",
    "ImportPlaybackKeyPair",
    "GetPlaybackKeyPair",
    "ListPlaybackKeyPairs",
    "DeletePlaybackKeyPair",
    "StartViewerSessionRevocation",
    "BatchStartViewerSessionRevocation",
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

fn id_of(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or_default()
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
    Err(not_found("resource", arn))
}

/// A channel as GetChannel answers it. The playback URL is made from the
/// current base URL, so that it stays right when a restarted local IVS
/// listens elsewhere.
fn channel_doc(channel: &Channel, base_url: &str) -> Value {
    let mut doc = channel.doc.clone();
    if let Ok(arn) = crate::ChannelArn::parse(channel.arn()) {
        doc.insert(
            "playbackUrl".into(),
            json!(format!(
                "{base_url}/api/video/v1/{}.{}.channel.{}.m3u8",
                arn.region(),
                arn.account_id(),
                arn.channel_id()
            )),
        );
    }
    doc.insert("tags".into(), json!(channel.tags));
    Value::Object(doc)
}

fn channel_summary(channel: &Channel) -> Value {
    const SUMMARY: &[&str] = &[
        "arn",
        "name",
        "latencyMode",
        "authorized",
        "recordingConfigurationArn",
        "insecureIngest",
        "type",
        "preset",
        "playbackRestrictionPolicyArn",
        "adConfigurationArn",
        "failoverSlateConfigurationArn",
    ];
    let mut doc: Map<String, Value> = SUMMARY
        .iter()
        .filter_map(|k| Some(((*k).to_owned(), channel.doc.get(*k)?.clone())))
        .collect();
    doc.insert("tags".into(), json!(channel.tags));
    Value::Object(doc)
}

fn stream_key_doc(key: &StreamKey, with_value: bool) -> Value {
    let mut doc = json!({ "arn": key.arn, "channelArn": key.channel_arn, "tags": key.tags });
    if with_value {
        doc["value"] = json!(key.value);
    }
    doc
}

fn key_pair_doc(pair: &KeyPair, with_fingerprint: bool) -> Value {
    let mut doc = json!({ "arn": pair.arn, "name": pair.name, "tags": pair.tags });
    if with_fingerprint {
        doc["fingerprint"] = json!(pair.fingerprint);
    }
    doc
}

/// Makes a field's default value.
type MakeDefault = fn() -> Value;

/// Channel fields a request may set, with the defaults IVS documents.
const CHANNEL_FIELDS: &[(&str, MakeDefault)] = &[
    ("name", || json!("")),
    ("latencyMode", || json!("LOW")),
    ("type", || json!("STANDARD")),
    ("authorized", || json!(false)),
    ("recordingConfigurationArn", || json!("")),
    ("insecureIngest", || json!(false)),
    ("preset", || json!("")),
    ("playbackRestrictionPolicyArn", || json!("")),
    ("containerFormat", || json!("TS")),
    ("adConfigurationArn", || json!("")),
    ("failoverSlateConfigurationArn", || json!("")),
];

/// The rules between channel fields that the model cannot express.
fn check_channel(doc: &mut Map<String, Value>, preset_given: bool) -> Result<(), ApiError> {
    let kind = doc
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("STANDARD");
    let advanced = kind.starts_with("ADVANCED_");
    let preset = doc.get("preset").and_then(Value::as_str).unwrap_or("");
    if !advanced && preset_given && !preset.is_empty() {
        return Err(ApiError::validation(
            "preset is selectable only for ADVANCED_HD and ADVANCED_SD channel types",
        ));
    }
    if advanced && preset.is_empty() {
        doc.insert("preset".into(), json!("HIGHER_BANDWIDTH_DELIVERY"));
    }
    if !advanced {
        doc.insert("preset".into(), json!(""));
    }
    let multitrack = doc
        .get("multitrackInputConfiguration")
        .and_then(|m| m["enabled"].as_bool())
        .unwrap_or(false);
    if multitrack && doc.get("containerFormat").and_then(Value::as_str) != Some("FRAGMENTED_MP4") {
        return Err(ApiError::validation(
            "containerFormat must be FRAGMENTED_MP4 when multitrackInputConfiguration is enabled",
        ));
    }
    Ok(())
}

fn create_channel(input: &Value, state: &mut State, ctx: &Context<'_>) -> Result<Value, ApiError> {
    let id = new_id(12);
    let scope = ctx.scope;
    let arn = scope.arn("channel", &id);
    let ingest = format!(
        "{}.global-contribute.live-video.net",
        new_id(12).to_lowercase()
    );
    let mut doc = Map::new();
    doc.insert("arn".into(), json!(arn));
    for (field, default) in CHANNEL_FIELDS {
        let value = input
            .get(*field)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or_else(default);
        doc.insert((*field).into(), value);
    }
    doc.insert(
        "multitrackInputConfiguration".into(),
        input
            .get("multitrackInputConfiguration")
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or_else(
                || json!({ "enabled": false, "policy": "ALLOW", "maximumResolution": "FULL_HD" }),
            ),
    );
    doc.insert("ingestEndpoint".into(), json!(ingest));
    doc.insert(
        "srt".into(),
        json!({ "endpoint": ingest, "passphrase": new_id(32) }),
    );
    check_channel(&mut doc, input.get("preset").is_some_and(|p| !p.is_null()))?;
    let channel = Channel {
        seq: state.take_seq(),
        doc,
        tags: tags_of(input)?,
    };
    let key = StreamKey {
        seq: state.take_seq(),
        arn: scope.arn("stream-key", &new_id(12)),
        value: format!("sk_{}_{}", scope.region, new_id(30)),
        channel_arn: arn,
        tags: BTreeMap::new(),
    };
    let out = json!({ "channel": channel_doc(&channel, ctx.base_url), "streamKey": stream_key_doc(&key, true) });
    let region = state.region_mut(scope);
    let key_id = key.arn.rsplit('/').next().unwrap_or_default().to_owned();
    region.channels.insert(id, channel);
    region.stream_keys.insert(key_id, key);
    Ok(out)
}

fn update_channel(
    input: &Value,
    region: &mut RegionState,
    base_url: &str,
) -> Result<Value, ApiError> {
    let channel = find_mut(&mut region.channels, str_of(input, "arn"))?;
    let mut doc = channel.doc.clone();
    for (field, _) in CHANNEL_FIELDS {
        if let Some(v) = input.get(*field).filter(|v| !v.is_null()) {
            doc.insert((*field).into(), v.clone());
        }
    }
    if let Some(v) = input
        .get("multitrackInputConfiguration")
        .filter(|v| !v.is_null())
    {
        doc.insert("multitrackInputConfiguration".into(), v.clone());
    }
    check_channel(&mut doc, input.get("preset").is_some_and(|p| !p.is_null()))?;
    channel.doc = doc;
    Ok(json!({ "channel": channel_doc(channel, base_url) }))
}

fn batch_get_channel(input: &Value, region: &RegionState, base_url: &str) -> Value {
    let mut channels = Vec::new();
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
        match find(&region.channels, arn) {
            Ok(c) => channels.push(channel_doc(c, base_url)),
            Err(e) => errors.push(json!({ "arn": arn, "code": e.code, "message": e.message })),
        }
    }
    json!({ "channels": channels, "errors": errors })
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
    let max = usize::try_from(input["maxResults"].as_u64().unwrap_or(default_max)).unwrap_or(100);
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

fn list_channels(input: &Value, region: &RegionState) -> Result<Value, ApiError> {
    const FILTERS: &[(&str, &str)] = &[
        ("filterByName", "name"),
        (
            "filterByRecordingConfigurationArn",
            "recordingConfigurationArn",
        ),
        (
            "filterByPlaybackRestrictionPolicyArn",
            "playbackRestrictionPolicyArn",
        ),
        ("filterByAdConfigurationArn", "adConfigurationArn"),
        (
            "filterByFailoverSlateConfigurationArn",
            "failoverSlateConfigurationArn",
        ),
    ];
    let given: Vec<(&str, &str)> = FILTERS
        .iter()
        .filter_map(|(f, field)| Some((*field, input.get(*f)?.as_str()?)))
        .collect();
    if given.len() > 1 {
        return Err(ApiError::conflict(
            "the filterBy... parameters are mutually exclusive: give at most one",
        ));
    }
    // A filter matches the field exactly: IVS documents "match the specified
    // name" without saying more [OPEN]; exact is the narrowest reading.
    let items = region
        .channels
        .values()
        .filter(|c| {
            given
                .iter()
                .all(|(field, want)| c.doc.get(*field).and_then(Value::as_str) == Some(*want))
        })
        .map(|c| (c.seq, channel_summary(c)))
        .collect();
    let (channels, next) = page(items, input, 100)?;
    Ok(with_token(json!({ "channels": channels }), next))
}

fn create_stream_key(
    input: &Value,
    state: &mut State,
    ctx: &Context<'_>,
) -> Result<Value, ApiError> {
    let channel_arn = str_of(input, "channelArn").to_owned();
    let seq = state.take_seq();
    let region = state.region_mut(ctx.scope);
    find(&region.channels, &channel_arn)?;
    let existing = region
        .stream_keys
        .values()
        .filter(|k| k.channel_arn == channel_arn)
        .count();
    if existing >= MAX_STREAM_KEYS_PER_CHANNEL {
        return Err(ApiError::quota(format!(
            "a channel can have at most {MAX_STREAM_KEYS_PER_CHANNEL} stream key; delete the existing one first"
        )));
    }
    let id = new_id(12);
    let key = StreamKey {
        seq,
        arn: ctx.scope.arn("stream-key", &id),
        value: format!("sk_{}_{}", ctx.scope.region, new_id(30)),
        channel_arn,
        tags: tags_of(input)?,
    };
    let out = json!({ "streamKey": stream_key_doc(&key, true) });
    region.stream_keys.insert(id, key);
    Ok(out)
}

fn list_stream_keys(input: &Value, region: &RegionState) -> Result<Value, ApiError> {
    let channel_arn = str_of(input, "channelArn");
    find(&region.channels, channel_arn)?;
    let items = region
        .stream_keys
        .values()
        .filter(|k| k.channel_arn == channel_arn)
        .map(|k| (k.seq, stream_key_doc(k, false)))
        .collect();
    // IVS's documented default page size for stream keys is 1.
    let (keys, next) = page(items, input, 1)?;
    Ok(with_token(json!({ "streamKeys": keys }), next))
}

fn import_key_pair(input: &Value, state: &mut State, ctx: &Context<'_>) -> Result<Value, ApiError> {
    let material = str_of(input, "publicKeyMaterial");
    let public = PublicKey::from_pem(material).map_err(|e| {
        ApiError::validation(format!(
            "publicKeyMaterial must be an ECDSA P-384 public key in PEM (BEGIN PUBLIC KEY): {e}"
        ))
    })?;
    let fingerprint = public.fingerprint().to_string();
    let seq = state.take_seq();
    let region = state.region_mut(ctx.scope);
    if let Some(existing) = region
        .key_pairs
        .values()
        .find(|k| k.fingerprint == fingerprint)
    {
        return Err(ApiError::conflict(format!(
            "a key pair with this public key already exists: {}",
            existing.arn
        )));
    }
    if region.key_pairs.len() >= MAX_KEY_PAIRS {
        return Err(ApiError::quota(format!(
            "at most {MAX_KEY_PAIRS} playback key pairs per region; delete one first"
        )));
    }
    let id = new_id(12);
    let pair = KeyPair {
        seq,
        arn: ctx.scope.arn("playback-key", &id),
        name: str_of(input, "name").to_owned(),
        fingerprint,
        public_key_pem: public.to_pem(),
        tags: tags_of(input)?,
    };
    let out = json!({ "keyPair": key_pair_doc(&pair, true) });
    region.key_pairs.insert(id, pair);
    Ok(out)
}

fn list_key_pairs(input: &Value, region: &RegionState) -> Result<Value, ApiError> {
    let items = region
        .key_pairs
        .values()
        .map(|k| (k.seq, key_pair_doc(k, false)))
        .collect();
    // "Default: your service quota or 100, whichever is smaller."
    let (pairs, next) = page(items, input, MAX_KEY_PAIRS as u64)?;
    Ok(with_token(json!({ "keyPairs": pairs }), next))
}

fn revoke(region: &mut RegionState, session: &Value) -> Result<(), ApiError> {
    let channel_arn = str_of(session, "channelArn");
    find(&region.channels, channel_arn)?;
    let viewer = str_of(session, "viewerId").to_owned();
    let version = session["viewerSessionVersionsLessThanOrEqualTo"]
        .as_i64()
        .unwrap_or(0);
    let entry = region
        .revocations
        .entry(channel_arn.to_owned())
        .or_default()
        .entry(viewer)
        .or_insert(version);
    *entry = (*entry).max(version);
    Ok(())
}
