//! Playback restriction policies: the countries and origins a channel's
//! playback is allowed from. They are stored typed (`state`), so that the
//! edge can enforce them; a channel names one by `playbackRestrictionPolicyArn`.

use serde_json::{Value, json};

use super::with_token;
use super::{Context, channels, countries, find, find_mut, page, remove, str_of, tags_of};
use crate::Origin;
use crate::service::local_ivs::error::ApiError;
use crate::service::local_ivs::state::{PlaybackRestrictionPolicy, RegionState, State, new_id};

pub(super) fn create(
    input: &Value,
    state: &mut State,
    ctx: &Context<'_>,
) -> Result<Value, ApiError> {
    let allowed_countries = countries_of(input)?.unwrap_or_default();
    let allowed_origins = origins_of(input)?.unwrap_or_default();
    let tags = tags_of(input)?;
    let seq = state.take_seq();
    let id = new_id(12);
    // IVS lists ServiceQuotaExceededException for this operation but our
    // references show no number for policies: none is enforced [OPEN].
    let policy = PlaybackRestrictionPolicy {
        seq,
        arn: ctx.scope.arn("playback-restriction-policy", &id),
        name: str_of(input, "name").to_owned(),
        allowed_countries,
        allowed_origins,
        enable_strict_origin_enforcement: input["enableStrictOriginEnforcement"]
            .as_bool()
            .unwrap_or(false),
        tags,
    };
    let out = json!({ "playbackRestrictionPolicy": doc(&policy) });
    state
        .region_mut(ctx.scope)
        .playback_restriction_policies
        .insert(id, policy);
    Ok(out)
}

pub(super) fn get(input: &Value, region: &RegionState) -> Result<Value, ApiError> {
    let policy = find(&region.playback_restriction_policies, str_of(input, "arn"))?;
    Ok(json!({ "playbackRestrictionPolicy": doc(policy) }))
}

pub(super) fn list(input: &Value, region: &RegionState) -> Result<Value, ApiError> {
    let items = region
        .playback_restriction_policies
        .values()
        .map(|p| (p.seq, doc(p)))
        .collect();
    // The model: "Maximum number of policies to return. Default: 1."
    let (policies, next) = page(items, input, 1)?;
    Ok(with_token(
        json!({ "playbackRestrictionPolicies": policies }),
        next,
    ))
}

/// Changes the members given; the others keep their values. Every member is
/// checked before any is changed.
pub(super) fn update(input: &Value, region: &mut RegionState) -> Result<Value, ApiError> {
    let countries = countries_of(input)?;
    let origins = origins_of(input)?;
    let policy = find_mut(
        &mut region.playback_restriction_policies,
        str_of(input, "arn"),
    )?;
    if let Some(countries) = countries {
        policy.allowed_countries = countries;
    }
    if let Some(origins) = origins {
        policy.allowed_origins = origins;
    }
    if let Some(strict) = input["enableStrictOriginEnforcement"].as_bool() {
        policy.enable_strict_origin_enforcement = strict;
    }
    if let Some(name) = input["name"].as_str() {
        policy.name = name.to_owned();
    }
    Ok(json!({ "playbackRestrictionPolicy": doc(policy) }))
}

/// Deletes a policy no channel uses; one still named by a channel is a 409,
/// as for recording configurations (the model lists ConflictException).
pub(super) fn delete(input: &Value, region: &mut RegionState) -> Result<Value, ApiError> {
    let arn = str_of(input, "arn");
    find(&region.playback_restriction_policies, arn)?;
    if let Some(channel) = channels::in_use(region, "playbackRestrictionPolicyArn", arn) {
        return Err(ApiError::conflict(format!(
            "playback restriction policy {arn} is used by channel {channel}; set the channel's playbackRestrictionPolicyArn to \"\" (UpdateChannel) first"
        )));
    }
    remove(&mut region.playback_restriction_policies, arn)?;
    Ok(Value::Null)
}

/// A policy as Get, Create, Update and List answer it (the summary has the
/// same members).
fn doc(policy: &PlaybackRestrictionPolicy) -> Value {
    json!({
        "arn": policy.arn,
        "name": policy.name,
        "allowedCountries": policy.allowed_countries,
        "allowedOrigins": policy.allowed_origins,
        "enableStrictOriginEnforcement": policy.enable_strict_origin_enforcement,
        "tags": policy.tags,
    })
}

/// A violation in AWS's words, naming the list member (`allowedCountries.2.member`).
fn member_error(value: &str, list: &str, index: usize, rule: &str) -> ApiError {
    ApiError::validation(format!(
        "1 validation error detected: Value '{value}' at '{list}.{}.member' failed to satisfy constraint: {rule}",
        index + 1
    ))
}

/// `allowedCountries`, if given: officially assigned ISO 3166-1 alpha-2
/// codes, as the model's documentation says. Codes are upper case, as ISO
/// writes them; a lower-case code is refused with a hint rather than
/// silently changed [OPEN].
fn countries_of(input: &Value) -> Result<Option<Vec<String>>, ApiError> {
    let Some(list) = input["allowedCountries"].as_array() else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, code) in list.iter().filter_map(Value::as_str).enumerate() {
        if !countries::is_assigned(code) {
            let hint = if countries::is_assigned(&code.to_ascii_uppercase()) {
                format!(" (write it in upper case: {})", code.to_ascii_uppercase())
            } else {
                String::new()
            };
            return Err(member_error(
                code,
                "allowedCountries",
                i,
                &format!(
                    "Member must be an officially assigned ISO 3166-1 alpha-2 country code{hint}"
                ),
            ));
        }
        out.push(code.to_owned());
    }
    Ok(Some(out))
}

/// `allowedOrigins`, if given: values of the `Origin` header, that is
/// `scheme://host[:port]` (or `null`), as the model's documentation says.
/// They are stored as given. A wildcard host (`https://*.example.com`) is
/// accepted as the token claim accepts it: IVS documents no form [OPEN].
fn origins_of(input: &Value) -> Result<Option<Vec<String>>, ApiError> {
    let Some(list) = input["allowedOrigins"].as_array() else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, origin) in list.iter().filter_map(Value::as_str).enumerate() {
        if origin != "null" && Origin::parse(origin).is_err() {
            return Err(member_error(
                origin,
                "allowedOrigins",
                i,
                "Member must be an Origin header value: scheme://host[:port], e.g. https://example.com",
            ));
        }
        out.push(origin.to_owned());
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_must_be_assigned_codes_and_the_error_names_the_member() {
        let ok = countries_of(&json!({"allowedCountries": ["US", "DE"]})).unwrap();
        assert_eq!(ok, Some(vec!["US".to_owned(), "DE".to_owned()]));
        assert_eq!(countries_of(&json!({})).unwrap(), None);
        let err = countries_of(&json!({"allowedCountries": ["US", "XK"]})).unwrap_err();
        assert!(
            err.message.contains("'XK' at 'allowedCountries.2.member'"),
            "{}",
            err.message
        );
        let err = countries_of(&json!({"allowedCountries": ["de"]})).unwrap_err();
        assert!(err.message.contains("upper case: DE"), "{}", err.message);
    }

    #[test]
    fn origins_must_be_origin_header_values() {
        let ok = origins_of(
            &json!({"allowedOrigins": ["https://a.example.com", "http://localhost:3000", "null"]}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(ok.len(), 3);
        for bad in ["example.com", "https://a.example.com/path", "", "*"] {
            let err = origins_of(&json!({"allowedOrigins": [bad]})).unwrap_err();
            assert!(
                err.message.contains("allowedOrigins.1.member"),
                "{bad}: {}",
                err.message
            );
        }
    }
}
