//! Private channels: playback key pairs and viewer-session revocation.

use serde_json::{Value, json};

use super::{Context, find, page, str_of, tags_of, with_token};
use crate::PublicKey;
use crate::service::local_ivs::error::ApiError;
use crate::service::local_ivs::state::{KeyPair, RegionState, State, new_id};

/// IVS's quota of playback key pairs per region.
const MAX_KEY_PAIRS: usize = 3;

pub(super) fn doc(pair: &KeyPair, with_fingerprint: bool) -> Value {
    let mut doc = json!({ "arn": pair.arn, "name": pair.name, "tags": pair.tags });
    if with_fingerprint {
        doc["fingerprint"] = json!(pair.fingerprint);
    }
    doc
}

pub(super) fn import(
    input: &Value,
    state: &mut State,
    ctx: &Context<'_>,
) -> Result<Value, ApiError> {
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
    let out = json!({ "keyPair": doc(&pair, true) });
    region.key_pairs.insert(id, pair);
    Ok(out)
}

pub(super) fn list(input: &Value, region: &RegionState) -> Result<Value, ApiError> {
    let items = region
        .key_pairs
        .values()
        .map(|k| (k.seq, doc(k, false)))
        .collect();
    // "Default: your service quota or 100, whichever is smaller."
    let (pairs, next) = page(items, input, MAX_KEY_PAIRS as u64)?;
    Ok(with_token(json!({ "keyPairs": pairs }), next))
}

pub(super) fn revoke(region: &mut RegionState, session: &Value) -> Result<(), ApiError> {
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

/// Revokes each session; one error per session that cannot be.
pub(super) fn revoke_batch(region: &mut RegionState, input: &Value) -> Value {
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
    json!({ "errors": errors })
}
