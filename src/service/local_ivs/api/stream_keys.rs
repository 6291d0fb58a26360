//! Stream keys.

use serde_json::{Value, json};

use super::{Context, find, page, str_of, tags_of, with_token};
use crate::service::local_ivs::error::ApiError;
use crate::service::local_ivs::state::{RegionState, State, StreamKey, new_id};

/// IVS's quota of stream keys per channel.
const MAX_STREAM_KEYS_PER_CHANNEL: usize = 1;

pub(super) fn doc(key: &StreamKey, with_value: bool) -> Value {
    let mut doc = json!({ "arn": key.arn, "channelArn": key.channel_arn, "tags": key.tags });
    if with_value {
        doc["value"] = json!(key.value);
    }
    doc
}

pub(super) fn create(
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
    let out = json!({ "streamKey": doc(&key, true) });
    region.stream_keys.insert(id, key);
    Ok(out)
}

pub(super) fn list(input: &Value, region: &RegionState) -> Result<Value, ApiError> {
    let channel_arn = str_of(input, "channelArn");
    find(&region.channels, channel_arn)?;
    let items = region
        .stream_keys
        .values()
        .filter(|k| k.channel_arn == channel_arn)
        .map(|k| (k.seq, doc(k, false)))
        .collect();
    // IVS's documented default page size for stream keys is 1.
    let (keys, next) = page(items, input, 1)?;
    Ok(with_token(json!({ "streamKeys": keys }), next))
}
