//! Channels, and the resources they name: a channel's recording
//! configuration and playback restriction policy must exist when it is set.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::stream_keys;
use super::{Context, find, find_mut, page, remove, str_of, tags_of, with_token};
use crate::service::local_ivs::error::ApiError;
use crate::service::local_ivs::state::{Channel, RegionState, State, StreamKey, new_id};

/// A channel as GetChannel answers it. The playback URL is made from the
/// current base URL, so that it stays right when a restarted local IVS
/// listens elsewhere.
pub(super) fn channel_doc(channel: &Channel, base_url: &str) -> Value {
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

pub(super) fn create(
    input: &Value,
    state: &mut State,
    ctx: &Context<'_>,
) -> Result<Value, ApiError> {
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
    check_references(&doc, state.region_mut(scope))?;
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
    let out = json!({ "channel": channel_doc(&channel, ctx.base_url), "streamKey": stream_keys::doc(&key, true) });
    let region = state.region_mut(scope);
    let key_id = key.arn.rsplit('/').next().unwrap_or_default().to_owned();
    region.channels.insert(id, channel);
    region.stream_keys.insert(key_id, key);
    Ok(out)
}

pub(super) fn update(
    input: &Value,
    region: &mut RegionState,
    base_url: &str,
) -> Result<Value, ApiError> {
    let mut doc = find(&region.channels, str_of(input, "arn"))?.doc.clone();
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
    check_references(&doc, region)?;
    let channel = find_mut(&mut region.channels, str_of(input, "arn"))?;
    channel.doc = doc;
    Ok(json!({ "channel": channel_doc(channel, base_url) }))
}

pub(super) fn list(input: &Value, region: &RegionState) -> Result<Value, ApiError> {
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

pub(super) fn get(input: &Value, region: &RegionState, base_url: &str) -> Result<Value, ApiError> {
    let channel = find(&region.channels, str_of(input, "arn"))?;
    Ok(json!({ "channel": channel_doc(channel, base_url) }))
}

pub(super) fn delete(input: &Value, region: &mut RegionState) -> Result<Value, ApiError> {
    let arn = str_of(input, "arn").to_owned();
    find(&region.channels, &arn)?;
    // The model's DeleteChannel documentation: "If you try to delete a live
    // channel, you will get an error (409 ConflictException)".
    if let Some(live) = region.live_session(&arn) {
        return Err(ApiError::conflict(format!(
            "channel {arn} is live (stream {}): call StopStream first, then DeleteChannel",
            live.stream_id
        )));
    }
    remove(&mut region.channels, &arn)?;
    region.stream_keys.retain(|_, k| k.channel_arn != arn);
    region.stream_sessions.retain(|_, s| s.channel_arn != arn);
    region.revocations.remove(&arn);
    Ok(Value::Null)
}

/// A channel's recording configuration and playback restriction policy, when
/// set (not ""), must exist in its account and region: CreateChannel and
/// UpdateChannel answer ResourceNotFoundException otherwise, as the model
/// lists. A recording configuration in CREATE_FAILED is accepted: IVS
/// documents no state rule for the reference [OPEN].
fn check_references(doc: &Map<String, Value>, region: &RegionState) -> Result<(), ApiError> {
    let set = |field: &str| {
        doc.get(field)
            .and_then(Value::as_str)
            .filter(|arn| !arn.is_empty())
    };
    if let Some(arn) = set("recordingConfigurationArn") {
        find(&region.recording_configurations, arn)?;
    }
    if let Some(arn) = set("playbackRestrictionPolicyArn") {
        find(&region.playback_restriction_policies, arn)?;
    }
    Ok(())
}

/// Whether a channel of the region names `arn` in `field`: a resource so
/// named cannot be deleted (409).
pub(super) fn in_use<'r>(region: &'r RegionState, field: &str, arn: &str) -> Option<&'r str> {
    region
        .channels
        .values()
        .find(|c| c.doc.get(field).and_then(Value::as_str) == Some(arn))
        .map(Channel::arn)
}
