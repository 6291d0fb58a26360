//! Who may get a token, for what: callers (API keys, anonymous, viewers),
//! their entitlements, and what a caller gets for one channel (a [`Grant`]).
//!
//! A caller can narrow what it may do (shorter TTL, fewer origins, a lower
//! resolution, single-use, strict origins), never widen it. Decisions only:
//! no HTTP, no IVS.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::TokenRequest;
use super::refusal::Refusal;
use super::viewer::Viewer;
use crate::claims::{DEFAULT_CLOCK_SKEW, SHORT_LIVED_LIMIT};
use crate::service::channel::ChannelInfo;
use crate::service::config::{Config, ViewerJwtConfig, sha256_from_hex};
use crate::service::origins::OriginList;
use crate::{AllowedOrigins, ChannelArn, MaximumResolution, Origin, ViewerId, ViewerIdHasher};

/// A channel pattern: an exact ARN or name, or a glob with `*`.
#[derive(Debug, Clone)]
struct Pattern(String);

impl Pattern {
    fn matches(&self, channel: &ChannelInfo) -> bool {
        glob(&self.0, channel.arn.as_str())
            || (!channel.name.is_empty() && glob(&self.0, &channel.name))
    }

    fn matches_arn(&self, arn: &ChannelArn) -> bool {
        glob(&self.0, arn.as_str())
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
        || text.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// A trusted backend and what it may mint.
pub(crate) struct ApiKeyRule {
    pub(crate) name: String,
    /// `api_key:NAME`, as logs and the audit name this caller.
    audit_name: String,
    /// Its position in `api_keys`, where its rate-limit bucket is too.
    pub(crate) index: usize,
    hash: [u8; 32],
    channels: Vec<Pattern>,
    max_ttl: u64,
    default_origins: Option<AllowedOrigins>,
    allowed_origins: OriginList,
    allow_single_use: bool,
    allowed_resolutions: Vec<MaximumResolution>,
}

impl std::fmt::Debug for ApiKeyRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyRule")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Who is asking.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// A trusted backend.
    ApiKey(Arc<ApiKeyRule>),
    /// Nobody in particular, from this address.
    Anonymous(IpAddr),
    /// A viewer with a verified JWT.
    Viewer(Arc<ViewerCaller>),
}

/// A verified viewer, as the policy sees it.
#[derive(Debug)]
pub(crate) struct ViewerCaller {
    /// `sub`, kept only for the rate limiter's key.
    pub(crate) subject: String,
    /// `aws:viewer-id` for this viewer.
    pub(crate) pseudonym: ViewerId,
    channels: Vec<Pattern>,
}

impl Caller {
    /// For logs and audit (an API key's, made once with its rule).
    pub(crate) fn name(&self) -> Cow<'_, str> {
        match self {
            Self::ApiKey(rule) => Cow::Borrowed(&rule.audit_name),
            Self::Anonymous(_) => Cow::Borrowed("anonymous"),
            // The pseudonym, never `sub`: it may be personal data.
            Self::Viewer(v) => Cow::Owned(format!("viewer:{}", v.pseudonym)),
        }
    }
}

/// What a caller gets for one channel.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// Lifetime.
    pub(crate) ttl: Duration,
    /// `aws:access-control-allow-origin`.
    pub(crate) origins: Option<AllowedOrigins>,
    /// `aws:strict-origin-enforcement`.
    pub(crate) strict: bool,
    /// `aws:single-use-uuid`.
    pub(crate) single_use: bool,
    /// `aws:viewer-id`, pseudonymised.
    pub(crate) viewer: Option<ViewerId>,
    /// `aws:maximum-resolution`.
    pub(crate) resolution: Option<MaximumResolution>,
}

/// Every entitlement rule, built once from the configuration.
pub(crate) struct Policy {
    api_keys: Vec<Arc<ApiKeyRule>>,
    anonymous_channels: Vec<Pattern>,
    anonymous_ttl: u64,
    anonymous_origins: Option<AllowedOrigins>,
    default_ttl: u64,
    viewer_ids: ViewerIdHasher,
    viewer_jwt: Option<ViewerJwtConfig>,
    viewer_origins: Option<AllowedOrigins>,
}

/// A configured origin list as a claim value (`Config::load` refused lists
/// that do not parse).
fn claim_of(list: &[String]) -> Option<AllowedOrigins> {
    OriginList::from_config(list).ok()?.to_claim()
}

impl Policy {
    /// Builds the rules (the configuration was validated already);
    /// `extra_anonymous` adds channels anyone may watch (the demo channel).
    pub(crate) fn new(
        config: &Config,
        extra_anonymous: &[String],
        viewer_ids: ViewerIdHasher,
    ) -> Self {
        let api_keys = config
            .api_keys
            .iter()
            // Config::load refused keys whose hash or origins do not parse.
            .enumerate()
            .filter_map(|(index, k)| {
                Some(Arc::new(ApiKeyRule {
                    name: k.name.clone(),
                    audit_name: format!("api_key:{}", k.name),
                    index,
                    hash: sha256_from_hex(&k.sha256)?,
                    channels: k.channels.iter().cloned().map(Pattern).collect(),
                    max_ttl: k.max_ttl_seconds,
                    default_origins: claim_of(&k.default_origins),
                    allowed_origins: OriginList::from_config(&k.allowed_origins).ok()?,
                    allow_single_use: k.allow_single_use,
                    allowed_resolutions: k.allowed_resolutions.clone(),
                }))
            })
            .collect();
        let anonymous_channels = config
            .anonymous
            .channels
            .iter()
            .chain(extra_anonymous)
            .cloned()
            .map(Pattern)
            .collect();
        Self {
            api_keys,
            anonymous_channels,
            anonymous_ttl: config.anonymous.ttl_seconds,
            anonymous_origins: claim_of(&config.anonymous.origins),
            default_ttl: config.tokens.default_ttl_seconds,
            viewer_ids,
            viewer_origins: config
                .viewer_jwt
                .as_ref()
                .and_then(|v| claim_of(&v.origins)),
            viewer_jwt: config.viewer_jwt.clone(),
        }
    }

    /// The caller an `X-Api-Key` value names.
    pub(crate) fn api_key_caller(&self, key: &str) -> Result<Caller, Refusal> {
        let hash: [u8; 32] = Sha256::digest(key.trim().as_bytes()).into();
        // Every configured key is compared, in constant time, so that the
        // time taken says nothing about which (if any) matched.
        let mut found = None;
        for rule in &self.api_keys {
            if bool::from(rule.hash.ct_eq(&hash)) {
                found = Some(Arc::clone(rule));
            }
        }
        found
            .map(Caller::ApiKey)
            .ok_or_else(|| Refusal::Unauthenticated("the API key is not valid".into()))
    }

    /// The caller for a verified viewer JWT.
    pub(crate) fn viewer_caller(&self, viewer: Viewer) -> Caller {
        Caller::Viewer(Arc::new(ViewerCaller {
            pseudonym: self.viewer_ids.viewer_id(&viewer.subject),
            subject: viewer.subject,
            channels: viewer.channels.into_iter().map(Pattern).collect(),
        }))
    }

    /// Whether the caller could be entitled to a channel known only by its
    /// ARN (a cache miss), decided before IVS is asked about it: the
    /// caller's channel patterns must match the ARN itself. Refuses as
    /// [`Policy::entitle`] would for a known channel.
    pub(crate) fn may_look_up(&self, caller: &Caller, arn: &ChannelArn) -> Result<(), Refusal> {
        let allowed = match caller {
            Caller::ApiKey(rule) => rule.channels.iter().any(|p| p.matches_arn(arn)),
            Caller::Anonymous(_) => self.anonymous_channels.iter().any(|p| p.matches_arn(arn)),
            Caller::Viewer(v) => v.channels.iter().any(|p| p.matches_arn(arn)),
        };
        if allowed {
            return Ok(());
        }
        Err(match caller {
            Caller::ApiKey(rule) => not_entitled_to(rule, arn, true),
            Caller::Anonymous(_) => needs_credentials(),
            Caller::Viewer(_) => self.viewer_not_listed(arn),
        })
    }

    /// What the caller gets for this channel, or why not.
    pub(crate) fn entitle(
        &self,
        caller: &Caller,
        channel: &ChannelInfo,
        request: &TokenRequest,
    ) -> Result<Grant, Refusal> {
        match caller {
            Caller::ApiKey(rule) => self.entitle_api_key(rule, channel, request),
            Caller::Anonymous(_) => self.entitle_anonymous(channel, request),
            Caller::Viewer(v) => self.entitle_viewer(v, channel, request),
        }
    }

    fn ttl(requested: Option<u64>, default: u64, max: u64, rule: &str) -> Result<u64, Refusal> {
        match requested {
            Some(0) => Err(Refusal::invalid("ttl_seconds", "must be at least 1")),
            Some(ttl) if ttl > max => Err(Refusal::not_entitled(
                Some("ttl_seconds"),
                format!("{rule} allows tokens of at most {max} s, {ttl} s asked"),
            )),
            Some(ttl) => Ok(ttl),
            None => Ok(default.min(max)),
        }
    }

    fn viewer(&self, request: &TokenRequest) -> Result<Option<ViewerId>, Refusal> {
        match &request.viewer_id {
            None => Ok(None),
            Some(id) if id.is_empty() || id.chars().count() > 256 => Err(Refusal::invalid(
                "viewer_id",
                "must be 1 to 256 characters (it is pseudonymised before it goes in the token)",
            )),
            Some(id) => Ok(Some(self.viewer_ids.viewer_id(id))),
        }
    }

    fn viewer_not_listed(&self, arn: &ChannelArn) -> Refusal {
        let claim = self
            .viewer_jwt
            .as_ref()
            .map_or("ivs_channels", |c| c.channels_claim.as_str());
        Refusal::not_entitled(
            Some("channel"),
            format!("the viewer token does not list channel {arn} in `{claim}`"),
        )
    }

    fn entitle_api_key(
        &self,
        rule: &ApiKeyRule,
        channel: &ChannelInfo,
        request: &TokenRequest,
    ) -> Result<Grant, Refusal> {
        if !rule.channels.iter().any(|p| p.matches(channel)) {
            return Err(not_entitled_to(rule, &channel.arn, false));
        }
        let short_lived = request.viewer_id.is_some() || request.single_use;
        let default_ttl = if short_lived {
            self.default_ttl
                .min(SHORT_LIVED_LIMIT.as_secs() - DEFAULT_CLOCK_SKEW.as_secs())
        } else {
            self.default_ttl
        };
        let ttl = Self::ttl(
            request.ttl_seconds,
            default_ttl,
            rule.max_ttl,
            &format!("API key {}", rule.name),
        )?;
        if request.single_use && !rule.allow_single_use {
            return Err(Refusal::not_entitled(
                Some("single_use"),
                format!("API key {} may not mint single-use tokens", rule.name),
            ));
        }
        let origins = match request.origins.as_deref() {
            None => rule.default_origins.clone(),
            Some([]) => {
                return Err(Refusal::invalid(
                    "origins",
                    "must not be empty; leave it out for the defaults",
                ));
            }
            Some(list) => match parse_requested(list)? {
                OriginList::Any if !rule.allowed_origins.is_any() => {
                    return Err(Refusal::not_entitled(
                        Some("origins"),
                        format!(
                            "API key {} may not allow every origin (`*`); list the origins to allow",
                            rule.name
                        ),
                    ));
                }
                OriginList::Any => Some(AllowedOrigins::any()),
                OriginList::Only(parsed) => {
                    for (i, origin) in parsed.iter().enumerate() {
                        let in_defaults = rule
                            .default_origins
                            .as_ref()
                            .is_some_and(|d| d.is_any() || d.origins().contains(origin));
                        if !in_defaults && !rule.allowed_origins.allows(origin) {
                            return Err(Refusal::not_entitled(
                                Some(&format!("origins[{i}]")),
                                format!("API key {} may not allow origin {origin}", rule.name),
                            ));
                        }
                    }
                    Some(
                        AllowedOrigins::from_origins(parsed)
                            .map_err(|e| Refusal::invalid("origins", e.to_string()))?,
                    )
                }
            },
        };
        let resolution = match (
            request.maximum_resolution,
            rule.allowed_resolutions.as_slice(),
        ) {
            (r, []) => r,
            (Some(r), allowed) if allowed.contains(&r) => Some(r),
            (Some(r), _) => {
                return Err(Refusal::not_entitled(
                    Some("maximum_resolution"),
                    format!("API key {} may not ask for {r}", rule.name),
                ));
            }
            (None, allowed) => allowed.iter().copied().max_by_key(|r| rank(*r)),
        };
        Ok(Grant {
            ttl: Duration::from_secs(ttl),
            origins,
            strict: request.strict_origin,
            single_use: request.single_use,
            viewer: self.viewer(request)?,
            resolution,
        })
    }

    fn entitle_viewer(
        &self,
        viewer: &ViewerCaller,
        channel: &ChannelInfo,
        request: &TokenRequest,
    ) -> Result<Grant, Refusal> {
        let Some(config) = &self.viewer_jwt else {
            return Err(Refusal::Unauthenticated(
                "viewer tokens are not configured".into(),
            ));
        };
        if !viewer.channels.iter().any(|p| p.matches(channel)) {
            return Err(self.viewer_not_listed(&channel.arn));
        }
        if request.viewer_id.is_some() {
            return Err(Refusal::not_entitled(
                Some("viewer_id"),
                "a viewer's id comes from its token's `sub`; leave viewer_id out",
            ));
        }
        if request.single_use && !config.allow_single_use {
            return Err(Refusal::not_entitled(
                Some("single_use"),
                "viewers may not ask for single-use tokens",
            ));
        }
        let ttl = Self::ttl(
            request.ttl_seconds,
            self.default_ttl.min(config.max_ttl_seconds),
            config.max_ttl_seconds,
            "viewer access",
        )?;
        let origins = narrow_origins(
            request.origins.as_deref(),
            self.viewer_origins.as_ref(),
            "viewer tokens",
        )?;
        Ok(Grant {
            ttl: Duration::from_secs(ttl),
            origins,
            strict: request.strict_origin,
            single_use: request.single_use,
            viewer: Some(viewer.pseudonym.clone()),
            resolution: request.maximum_resolution,
        })
    }

    fn entitle_anonymous(
        &self,
        channel: &ChannelInfo,
        request: &TokenRequest,
    ) -> Result<Grant, Refusal> {
        if !self.anonymous_channels.iter().any(|p| p.matches(channel)) {
            return Err(needs_credentials());
        }
        if request.viewer_id.is_some() {
            return Err(Refusal::not_entitled(
                Some("viewer_id"),
                "anonymous callers cannot name a viewer",
            ));
        }
        let ttl = Self::ttl(
            request.ttl_seconds,
            self.anonymous_ttl,
            self.anonymous_ttl,
            "anonymous access",
        )?;
        let origins = narrow_origins(
            request.origins.as_deref(),
            self.anonymous_origins.as_ref(),
            "anonymous tokens",
        )?;
        Ok(Grant {
            ttl: Duration::from_secs(ttl),
            origins,
            strict: request.strict_origin,
            single_use: request.single_use,
            viewer: None,
            resolution: request.maximum_resolution,
        })
    }
}

/// `unlisted`: the channel is not in the channel listing, so entitlements
/// by name could not be matched against it.
fn not_entitled_to(rule: &ApiKeyRule, arn: &ChannelArn, unlisted: bool) -> Refusal {
    let hint = if unlisted {
        " (it is not in the channel listing: entitlements by name apply to listed channels; a channel made since the last refresh is found at the next one, or at once through POST /admin/v1/channels/refresh)"
    } else {
        ""
    };
    Refusal::not_entitled(
        Some("channel"),
        format!(
            "API key {} is not entitled to channel {arn}{hint}",
            rule.name
        ),
    )
}

/// The one refusal an anonymous caller gets for any channel it may not
/// watch, existing or not: it names no channel and no account.
pub(crate) fn needs_credentials() -> Refusal {
    Refusal::Unauthenticated(
        "this channel needs credentials, or there is no such channel: send an API key in X-Api-Key or a viewer token in Authorization".into(),
    )
}

/// A caller's origin list, each entry parsed; the error names the entry.
fn parse_requested(list: &[String]) -> Result<OriginList, Refusal> {
    OriginList::from_request(list)
        .map_err(|(i, e)| Refusal::invalid(format!("origins[{i}]"), e.to_string()))
}

/// The origins a caller without its own origin rights gets: the configured
/// ones, or a subset it asks for.
fn narrow_origins(
    requested: Option<&[String]>,
    configured: Option<&AllowedOrigins>,
    who: &str,
) -> Result<Option<AllowedOrigins>, Refusal> {
    let Some(list) = requested else {
        return Ok(configured.cloned());
    };
    if list.is_empty() {
        return Err(Refusal::invalid(
            "origins",
            "must not be empty; leave it out for the defaults",
        ));
    }
    let parsed: Vec<Origin> = match parse_requested(list)? {
        // `["*"]` asks for every origin: granted only where every origin is
        // what is configured.
        OriginList::Any if configured.is_some_and(AllowedOrigins::is_any) => {
            return Ok(Some(AllowedOrigins::any()));
        }
        OriginList::Any => {
            return Err(Refusal::not_entitled(
                Some("origins"),
                format!(
                    "{who} may not allow every origin (`*`); list origins among the configured ones, or leave `origins` out"
                ),
            ));
        }
        OriginList::Only(parsed) => parsed,
    };
    if let Some(configured) = configured.filter(|c| !c.is_any())
        && let Some((i, o)) = parsed
            .iter()
            .enumerate()
            .find(|(_, o)| !configured.origins().contains(o))
    {
        return Err(Refusal::not_entitled(
            Some(&format!("origins[{i}]")),
            format!("{who} may not allow origin {o}"),
        ));
    }
    AllowedOrigins::from_origins(parsed)
        .map(Some)
        .map_err(|e| Refusal::invalid("origins", e.to_string()))
}

fn rank(r: MaximumResolution) -> u8 {
    match r {
        MaximumResolution::Sd => 0,
        MaximumResolution::Hd => 1,
        MaximumResolution::FullHd => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_shells() {
        assert!(glob("*", "anything"));
        assert!(glob("team-*", "team-a"));
        assert!(!glob("team-*", "other"));
        assert!(glob("*-live", "news-live"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxc"));
        assert!(glob("exact", "exact"));
        assert!(!glob("ab*ba", "aba"));
    }
}
