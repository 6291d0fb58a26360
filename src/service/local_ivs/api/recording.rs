//! Recording configurations: where a channel's streams would be recorded (an
//! S3 bucket), with thumbnails and renditions. Nothing is recorded; the
//! configuration is kept, checked and referenced as IVS does.
//!
//! State: CreateRecordingConfiguration answers `CREATING`, as IVS does; the
//! outcome is decided at creation and every later read answers it: `ACTIVE`,
//! or `CREATE_FAILED` for a bucket this local IVS is told is missing
//! (`LocalIvsConfig::missing_buckets`). Settling at the next read needs no
//! timer and no write on a read, and a client that polls Get until the state
//! leaves `CREATING` (as IVS's documentation implies) sees it on its first
//! poll.

use serde_json::{Map, Value, json};

use super::channels;
use super::{Context, find, page, remove, str_of, tags_of, with_token};
use crate::service::local_ivs::error::ApiError;
use crate::service::local_ivs::state::{RecordingConfiguration, RegionState, State, new_id};

/// Recording configurations per region. The quotas page of our references
/// does not show the resource quotas; 20 is IVS's published default as we
/// know it [OPEN].
const MAX_RECORDING_CONFIGURATIONS: usize = 20;

const SUMMARY: &[&str] = &["arn", "name", "destinationConfiguration", "state"];

pub(super) fn create(
    input: &Value,
    state: &mut State,
    ctx: &Context<'_>,
) -> Result<Value, ApiError> {
    let bucket = bucket_of(input)?;
    let thumbnails = thumbnail_configuration(&input["thumbnailConfiguration"])?;
    let renditions = rendition_configuration(&input["renditionConfiguration"])?;
    let tags = tags_of(input)?;
    let seq = state.take_seq();
    let region = state.region_mut(ctx.scope);
    if region.recording_configurations.len() >= MAX_RECORDING_CONFIGURATIONS {
        return Err(ApiError::quota(format!(
            "at most {MAX_RECORDING_CONFIGURATIONS} recording configurations per region; delete one first"
        )));
    }
    let id = new_id(12);
    let outcome = if ctx.missing_buckets.contains(bucket) {
        "CREATE_FAILED"
    } else {
        "ACTIVE"
    };
    let mut doc = Map::new();
    doc.insert(
        "arn".into(),
        json!(ctx.scope.arn("recording-configuration", &id)),
    );
    doc.insert(
        "name".into(),
        input
            .get("name")
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or_else(|| json!("")),
    );
    doc.insert(
        "destinationConfiguration".into(),
        json!({ "s3": { "bucketName": bucket } }),
    );
    doc.insert("state".into(), json!(outcome));
    doc.insert("thumbnailConfiguration".into(), thumbnails);
    doc.insert("renditionConfiguration".into(), renditions);
    doc.insert(
        "recordingReconnectWindowSeconds".into(),
        input
            .get("recordingReconnectWindowSeconds")
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or_else(|| json!(0)),
    );
    let config = RecordingConfiguration { seq, doc, tags };
    let mut out = full_doc(&config);
    out["state"] = json!("CREATING");
    region.recording_configurations.insert(id, config);
    Ok(json!({ "recordingConfiguration": out }))
}

pub(super) fn get(input: &Value, region: &RegionState) -> Result<Value, ApiError> {
    let config = find(&region.recording_configurations, str_of(input, "arn"))?;
    Ok(json!({ "recordingConfiguration": full_doc(config) }))
}

pub(super) fn list(input: &Value, region: &RegionState) -> Result<Value, ApiError> {
    let items = region
        .recording_configurations
        .values()
        .map(|c| {
            let mut doc: Map<String, Value> = SUMMARY
                .iter()
                .filter_map(|k| Some(((*k).to_owned(), c.doc.get(*k)?.clone())))
                .collect();
            doc.insert("tags".into(), json!(c.tags));
            (c.seq, Value::Object(doc))
        })
        .collect();
    // "Default: your service quota or 100, whichever is smaller."
    let (configs, next) = page(items, input, MAX_RECORDING_CONFIGURATIONS as u64)?;
    Ok(with_token(
        json!({ "recordingConfigurations": configs }),
        next,
    ))
}

/// Deletes a configuration no channel uses: one still named by a channel's
/// `recordingConfigurationArn` is a 409, as IVS documents.
pub(super) fn delete(input: &Value, region: &mut RegionState) -> Result<Value, ApiError> {
    let arn = str_of(input, "arn");
    find(&region.recording_configurations, arn)?;
    if let Some(channel) = channels::in_use(region, "recordingConfigurationArn", arn) {
        return Err(ApiError::conflict(format!(
            "recording configuration {arn} is used by channel {channel}; set the channel's recordingConfigurationArn to \"\" (UpdateChannel) first"
        )));
    }
    remove(&mut region.recording_configurations, arn)?;
    Ok(Value::Null)
}

pub(super) fn full_doc(config: &RecordingConfiguration) -> Value {
    let mut doc = config.doc.clone();
    doc.insert("tags".into(), json!(config.tags));
    Value::Object(doc)
}

/// The S3 bucket of a destination. The model allows `[a-z0-9-.]{3,63}`; S3's
/// naming rules say more, and a name S3 can never have is refused here
/// rather than left to fail later: IVS does not document which of these it
/// checks at creation [OPEN].
fn bucket_of(input: &Value) -> Result<&str, ApiError> {
    const AT: &str = "destinationConfiguration.s3.bucketName";
    let Some(bucket) = input["destinationConfiguration"]["s3"]["bucketName"].as_str() else {
        // The model requires destinationConfiguration but none of its
        // members; S3 is the only destination, so it is required here.
        return Err(ApiError::validation(
            "1 validation error detected: Value null at 'destinationConfiguration.s3' failed to satisfy constraint: Member must not be null (S3 is the only recording destination)",
        ));
    };
    let bytes = bucket.as_bytes();
    let alnum = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rule = if !alnum(bytes.first()) || !alnum(bytes.last()) {
        Some("a bucket name must begin and end with a lowercase letter or a digit")
    } else if bucket.contains("..") {
        Some("a bucket name must not contain two adjacent periods")
    } else if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        Some("a bucket name must not be formatted as an IP address")
    } else {
        None
    };
    match rule {
        Some(rule) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{bucket}' at '{AT}' failed to satisfy constraint: {rule} (S3 bucket naming rules)"
        ))),
        None => Ok(bucket),
    }
}

/// A thumbnail configuration with IVS's documented defaults filled in:
/// recordingMode INTERVAL, targetIntervalSeconds 60, storage [SEQUENTIAL];
/// resolution stays absent ("Default: Null (source resolution)").
fn thumbnail_configuration(given: &Value) -> Result<Value, ApiError> {
    let mode = given["recordingMode"].as_str().unwrap_or("INTERVAL");
    let interval = given["targetIntervalSeconds"].as_i64();
    // "configurable (and required) only if recordingMode is INTERVAL": an
    // interval given with DISABLED is refused, not ignored [OPEN].
    if mode == "DISABLED" && interval.is_some() {
        return Err(ApiError::validation(
            "thumbnailConfiguration.targetIntervalSeconds is configurable only when recordingMode is INTERVAL",
        ));
    }
    let mut storage: Vec<&str> = Vec::new();
    for s in given["storage"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !storage.contains(&s) {
            storage.push(s);
        }
    }
    // An empty list is read as "not given" [OPEN].
    if storage.is_empty() {
        storage.push("SEQUENTIAL");
    }
    let mut out = json!({
        "recordingMode": mode,
        "targetIntervalSeconds": interval.unwrap_or(60),
        "storage": storage,
    });
    if let Some(resolution) = given["resolution"].as_str() {
        out["resolution"] = json!(resolution);
    }
    Ok(out)
}

/// A rendition configuration with the default selection ALL; CUSTOM must
/// name its renditions ("If CUSTOM is specified, a set of renditions must be
/// specified").
fn rendition_configuration(given: &Value) -> Result<Value, ApiError> {
    let selection = given["renditionSelection"].as_str().unwrap_or("ALL");
    let renditions: Vec<&str> = given["renditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if selection == "CUSTOM" && renditions.is_empty() {
        return Err(ApiError::validation(
            "renditionConfiguration.renditions must name at least one rendition when renditionSelection is CUSTOM",
        ));
    }
    Ok(json!({ "renditionSelection": selection, "renditions": renditions }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(name: &str) -> Result<String, ApiError> {
        bucket_of(&json!({"destinationConfiguration": {"s3": {"bucketName": name}}}))
            .map(str::to_owned)
    }

    #[test]
    fn bucket_names_follow_s3_rules_beyond_the_model_pattern() {
        for ok in ["abc", "my-bucket.v2", "0recordings9"] {
            assert_eq!(bucket(ok).unwrap(), ok);
        }
        for (bad, words) in [
            ("-abc", "begin and end"),
            ("abc.", "begin and end"),
            ("a..b", "adjacent periods"),
            ("192.168.1.10", "IP address"),
        ] {
            let err = bucket(bad).unwrap_err();
            assert!(err.message.contains(words), "{bad}: {}", err.message);
            assert!(
                err.message
                    .contains("destinationConfiguration.s3.bucketName"),
                "{}",
                err.message
            );
        }
        let err = bucket_of(&json!({"destinationConfiguration": {}})).unwrap_err();
        assert!(
            err.message.contains("destinationConfiguration.s3"),
            "{}",
            err.message
        );
    }

    #[test]
    fn thumbnails_and_renditions_get_the_documented_defaults() {
        let t = thumbnail_configuration(&Value::Null).unwrap();
        assert_eq!(
            t,
            json!({"recordingMode": "INTERVAL", "targetIntervalSeconds": 60, "storage": ["SEQUENTIAL"]})
        );
        let t = thumbnail_configuration(
            &json!({"storage": ["LATEST", "LATEST", "SEQUENTIAL"], "resolution": "HD"}),
        )
        .unwrap();
        assert_eq!(t["storage"], json!(["LATEST", "SEQUENTIAL"]));
        assert_eq!(t["resolution"], "HD");
        assert!(
            thumbnail_configuration(
                &json!({"recordingMode": "DISABLED", "targetIntervalSeconds": 5})
            )
            .is_err()
        );
        let r = rendition_configuration(&Value::Null).unwrap();
        assert_eq!(r, json!({"renditionSelection": "ALL", "renditions": []}));
        assert!(rendition_configuration(&json!({"renditionSelection": "CUSTOM"})).is_err());
        assert!(
            rendition_configuration(&json!({"renditionSelection": "CUSTOM", "renditions": ["HD"]}))
                .is_ok()
        );
    }
}
