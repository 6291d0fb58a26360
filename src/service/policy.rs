//! Who may get a token, for what: callers (API keys, anonymous), their
//! entitlements, the network policy, and rate limits.
//!
//! A caller can narrow what it may do (shorter TTL, fewer origins, a lower
//! resolution, single-use, strict origins), never widen it.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::config::{AnonymousConfig, ApiKeyConfig, Config, PolicyConfig, sha256_from_hex};
use super::error::AppError;
use super::ivs::ChannelInfo;
use super::viewer::{Viewer, ViewerJwtConfig};
use crate::claims::SHORT_LIVED_LIMIT;
use crate::{AllowedOrigins, MaximumResolution, Origin, ViewerId, ViewerIdHasher};

/// The header trusted backends send their API key in.
pub const API_KEY_HEADER: &str = "x-api-key";

/// What a caller asked for, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRequest {
    /// Channel ARN or name.
    pub channel: String,
    /// The application's user id (pseudonymised before it goes in a token).
    pub viewer_id: Option<String>,
    /// Make the token single-use.
    pub single_use: bool,
    /// Requested lifetime.
    pub ttl_seconds: Option<u64>,
    /// Requested origins.
    pub origins: Option<Vec<String>>,
    /// Requested strict origin enforcement.
    pub strict_origin: bool,
    /// Requested resolution cap.
    pub maximum_resolution: Option<MaximumResolution>,
}

/// A channel pattern: an exact ARN or name, or a glob with `*`.
#[derive(Debug, Clone)]
struct Pattern(String);

impl Pattern {
    fn matches(&self, channel: &ChannelInfo) -> bool {
        glob(&self.0, channel.arn.as_str())
            || (!channel.name.is_empty() && glob(&self.0, &channel.name))
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

/// Origins a caller may ask for.
#[derive(Debug, Clone)]
enum OriginRule {
    Any,
    Only(Vec<Origin>),
}

impl OriginRule {
    fn parse(list: &[String]) -> Self {
        if list.iter().any(|o| o == "*") {
            return Self::Any;
        }
        Self::Only(list.iter().filter_map(|o| Origin::parse(o).ok()).collect())
    }

    fn allows(&self, origin: &Origin) -> bool {
        match self {
            Self::Any => true,
            Self::Only(list) => list.contains(origin),
        }
    }
}

/// A trusted backend and what it may mint.
pub struct ApiKeyRule {
    name: String,
    hash: [u8; 32],
    channels: Vec<Pattern>,
    max_ttl: u64,
    default_origins: Option<AllowedOrigins>,
    allowed_origins: OriginRule,
    allow_single_use: bool,
    allowed_resolutions: Vec<MaximumResolution>,
    limiter: DefaultDirectRateLimiter,
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
pub enum Caller {
    /// A trusted backend.
    ApiKey(Arc<ApiKeyRule>),
    /// Nobody in particular, from this address.
    Anonymous(IpAddr),
    /// A viewer with a verified JWT.
    Viewer(Arc<ViewerCaller>),
}

/// A verified viewer, as the policy sees it.
#[derive(Debug)]
pub struct ViewerCaller {
    /// `sub`, kept only for the rate limiter's key.
    subject: String,
    /// `aws:viewer-id` for this viewer.
    pseudonym: ViewerId,
    channels: Vec<Pattern>,
}

impl Caller {
    /// For logs and audit.
    pub fn name(&self) -> String {
        match self {
            Self::ApiKey(rule) => format!("api_key:{}", rule.name),
            Self::Anonymous(_) => "anonymous".into(),
            // The pseudonym, never `sub`: it may be personal data.
            Self::Viewer(v) => format!("viewer:{}", v.pseudonym),
        }
    }
}

/// What a caller gets for one channel.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Lifetime.
    pub ttl: Duration,
    /// `aws:access-control-allow-origin`.
    pub origins: Option<AllowedOrigins>,
    /// `aws:strict-origin-enforcement`.
    pub strict: bool,
    /// `aws:single-use-uuid`.
    pub single_use: bool,
    /// `aws:viewer-id`, pseudonymised.
    pub viewer: Option<ViewerId>,
    /// `aws:maximum-resolution`.
    pub resolution: Option<MaximumResolution>,
}

/// Every rule, built once from the configuration.
pub struct Policy {
    api_keys: Vec<Arc<ApiKeyRule>>,
    anonymous_channels: Vec<Pattern>,
    anonymous: AnonymousConfig,
    anonymous_origins: Option<AllowedOrigins>,
    ip_limiter: DefaultKeyedRateLimiter<IpAddr>,
    network: PolicyConfig,
    default_ttl: u64,
    viewer_ids: ViewerIdHasher,
    viewer_jwt: Option<ViewerJwtConfig>,
    viewer_origins: Option<AllowedOrigins>,
    viewer_limiter: DefaultKeyedRateLimiter<String>,
}

fn quota(per_second: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
}

fn origins_of(list: &[String]) -> Option<AllowedOrigins> {
    if list.is_empty() {
        return None;
    }
    if list.iter().any(|o| o == "*") {
        return Some(AllowedOrigins::any());
    }
    AllowedOrigins::from_origins(list.iter().filter_map(|o| Origin::parse(o).ok())).ok()
}

impl Policy {
    /// Builds the rules (the configuration was validated already).
    pub fn new(config: &Config, extra_anonymous: &[String], viewer_ids: ViewerIdHasher) -> Self {
        let api_keys = config
            .api_keys
            .iter()
            // Config::load refused keys whose hash does not parse.
            .filter_map(|k: &ApiKeyConfig| Some((k, sha256_from_hex(&k.sha256)?)))
            .map(|(k, hash)| {
                Arc::new(ApiKeyRule {
                    name: k.name.clone(),
                    hash,
                    channels: k.channels.iter().cloned().map(Pattern).collect(),
                    max_ttl: k.max_ttl_seconds,
                    default_origins: origins_of(&k.default_origins),
                    allowed_origins: OriginRule::parse(&k.allowed_origins),
                    allow_single_use: k.allow_single_use,
                    allowed_resolutions: k.allowed_resolutions.clone(),
                    limiter: RateLimiter::direct(quota(k.rate_per_second)),
                })
            })
            .collect();
        let mut anonymous_channels: Vec<Pattern> = config
            .anonymous
            .channels
            .iter()
            .cloned()
            .map(Pattern)
            .collect();
        anonymous_channels.extend(extra_anonymous.iter().cloned().map(Pattern));
        Self {
            api_keys,
            anonymous_channels,
            anonymous: config.anonymous.clone(),
            anonymous_origins: origins_of(&config.anonymous.origins),
            ip_limiter: RateLimiter::keyed(quota(config.anonymous.rate_per_ip_per_second)),
            network: config.policy.clone(),
            default_ttl: config.tokens.default_ttl_seconds,
            viewer_ids,
            viewer_origins: config
                .viewer_jwt
                .as_ref()
                .and_then(|v| origins_of(&v.origins)),
            viewer_limiter: RateLimiter::keyed(quota(
                config
                    .viewer_jwt
                    .as_ref()
                    .map_or(1, |v| v.rate_per_viewer_per_second),
            )),
            viewer_jwt: config.viewer_jwt.clone(),
        }
    }

    /// The caller the request's credentials name; anonymous without any.
    pub fn authenticate(&self, headers: &HeaderMap, ip: IpAddr) -> Result<Caller, AppError> {
        if let Some(value) = headers.get(API_KEY_HEADER) {
            let key = value.to_str().map_err(|_| {
                AppError::Unauthenticated("the X-Api-Key header is not ASCII".into())
            })?;
            let hash: [u8; 32] = Sha256::digest(key.trim().as_bytes()).into();
            // Every configured key is compared, in constant time, so that the
            // time taken says nothing about which (if any) matched.
            let mut found = None;
            for rule in &self.api_keys {
                if bool::from(rule.hash.ct_eq(&hash)) {
                    found = Some(Arc::clone(rule));
                }
            }
            return found
                .map(Caller::ApiKey)
                .ok_or_else(|| AppError::Unauthenticated("the API key is not valid".into()));
        }
        if headers.contains_key(axum::http::header::AUTHORIZATION) {
            return Err(AppError::Unauthenticated(
                "Authorization is not accepted here: send an API key in X-Api-Key".into(),
            ));
        }
        Ok(Caller::Anonymous(ip))
    }

    /// The caller for a verified viewer JWT.
    pub fn viewer_caller(&self, viewer: Viewer) -> Caller {
        Caller::Viewer(Arc::new(ViewerCaller {
            pseudonym: self.viewer_ids.viewer_id(&viewer.subject),
            subject: viewer.subject,
            channels: viewer.channels.into_iter().map(Pattern).collect(),
        }))
    }

    /// IP and country rules, before anything else.
    pub fn check_network(&self, ip: IpAddr, headers: &HeaderMap) -> Result<(), AppError> {
        let denied = |message: String| AppError::Forbidden {
            code: "policy_denied",
            message,
            field: None,
        };
        if let Some(net) = self.network.deny_cidrs.iter().find(|n| n.contains(&ip)) {
            return Err(denied(format!(
                "client {ip} is in denied network {net} (policy.deny_cidrs)"
            )));
        }
        if !self.network.allow_cidrs.is_empty()
            && !self
                .network
                .allow_cidrs
                .iter()
                .any(|n: &IpNet| n.contains(&ip))
        {
            return Err(denied(format!(
                "client {ip} is not in an allowed network (policy.allow_cidrs)"
            )));
        }
        if let Some(header) = &self.network.country_header {
            let country = headers
                .get(header.as_str())
                .and_then(|v| v.to_str().ok())
                .map(|c| c.trim().to_ascii_uppercase());
            if let Some(c) = &country
                && self.network.deny_countries.contains(c)
            {
                return Err(denied(format!(
                    "country {c} is denied (policy.deny_countries)"
                )));
            }
            if !self.network.allow_countries.is_empty()
                && !country
                    .as_ref()
                    .is_some_and(|c| self.network.allow_countries.contains(c))
            {
                return Err(denied(format!(
                    "country {} is not allowed (policy.allow_countries)",
                    country.as_deref().unwrap_or("unknown")
                )));
            }
        }
        Ok(())
    }

    /// Forgets rate-limit state of clients and viewers that have been quiet
    /// long enough to be back at a full bucket, so that many distinct
    /// addresses cannot grow memory without bound.
    pub fn housekeeping(&self) {
        self.ip_limiter.retain_recent();
        self.ip_limiter.shrink_to_fit();
        self.viewer_limiter.retain_recent();
        self.viewer_limiter.shrink_to_fit();
    }

    /// Takes `n` requests from the caller's bucket.
    pub fn rate_limit(&self, caller: &Caller, n: u32) -> Result<(), AppError> {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let (result, which) = match caller {
            Caller::ApiKey(rule) => (rule.limiter.check_n(n), format!("API key {}", rule.name)),
            Caller::Anonymous(ip) => (self.ip_limiter.check_key_n(ip, n), format!("client {ip}")),
            Caller::Viewer(v) => (
                self.viewer_limiter.check_key_n(&v.subject, n),
                format!("viewer {}", v.pseudonym),
            ),
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(AppError::RateLimited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
                message: format!("rate limit of {which} exceeded"),
            }),
            Err(_) => Err(AppError::RateLimited {
                retry_after: Duration::from_secs(1),
                message: format!("a batch larger than the rate limit of {which}"),
            }),
        }
    }

    /// Whether anyone may have tokens for this channel.
    pub fn is_anonymous(&self, channel: &ChannelInfo) -> bool {
        self.anonymous_channels.iter().any(|p| p.matches(channel))
    }

    /// What the caller gets for this channel, or why not.
    pub fn entitle(
        &self,
        caller: &Caller,
        channel: &ChannelInfo,
        request: &TokenRequest,
    ) -> Result<Grant, AppError> {
        match caller {
            Caller::ApiKey(rule) => self.entitle_api_key(rule, channel, request),
            Caller::Anonymous(_) => self.entitle_anonymous(channel, request),
            Caller::Viewer(v) => self.entitle_viewer(v, channel, request),
        }
    }

    fn ttl(requested: Option<u64>, default: u64, max: u64, rule: &str) -> Result<u64, AppError> {
        match requested {
            Some(0) => Err(AppError::field("ttl_seconds", "must be at least 1")),
            Some(ttl) if ttl > max => Err(AppError::not_entitled(
                Some("ttl_seconds"),
                format!("{rule} allows tokens of at most {max} s, {ttl} s asked"),
            )),
            Some(ttl) => Ok(ttl),
            None => Ok(default.min(max)),
        }
    }

    fn viewer(&self, request: &TokenRequest) -> Result<Option<ViewerId>, AppError> {
        match &request.viewer_id {
            None => Ok(None),
            Some(id) if id.is_empty() || id.len() > 256 => Err(AppError::field(
                "viewer_id",
                "must be 1 to 256 characters (it is pseudonymised before it goes in the token)",
            )),
            Some(id) => Ok(Some(self.viewer_ids.viewer_id(id))),
        }
    }

    fn parse_origins(requested: &[String]) -> Result<Vec<Origin>, AppError> {
        requested
            .iter()
            .enumerate()
            .map(|(i, o)| {
                Origin::parse(o)
                    .map_err(|e| AppError::field(format!("origins[{i}]"), e.to_string()))
            })
            .collect()
    }

    fn entitle_api_key(
        &self,
        rule: &ApiKeyRule,
        channel: &ChannelInfo,
        request: &TokenRequest,
    ) -> Result<Grant, AppError> {
        if !rule.channels.iter().any(|p| p.matches(channel)) {
            return Err(AppError::not_entitled(
                Some("channel"),
                format!(
                    "API key {} is not entitled to channel {}",
                    rule.name, channel.arn
                ),
            ));
        }
        let short_lived = request.viewer_id.is_some() || request.single_use;
        let default_ttl = if short_lived {
            self.default_ttl
                .min(SHORT_LIVED_LIMIT.as_secs() - crate::claims::DEFAULT_CLOCK_SKEW.as_secs())
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
            return Err(AppError::not_entitled(
                Some("single_use"),
                format!("API key {} may not mint single-use tokens", rule.name),
            ));
        }
        let origins = match &request.origins {
            None => rule.default_origins.clone(),
            Some(list) if list.is_empty() => {
                return Err(AppError::field(
                    "origins",
                    "must not be empty; leave it out for the defaults",
                ));
            }
            Some(list) if list.len() == 1 && list[0] == "*" => {
                if !matches!(rule.allowed_origins, OriginRule::Any) {
                    return Err(AppError::not_entitled(
                        Some("origins"),
                        format!("API key {} may not allow every origin", rule.name),
                    ));
                }
                Some(AllowedOrigins::any())
            }
            Some(list) => {
                let parsed = Self::parse_origins(list)?;
                for (i, origin) in parsed.iter().enumerate() {
                    let in_defaults = rule
                        .default_origins
                        .as_ref()
                        .is_some_and(|d| d.is_any() || d.origins().contains(origin));
                    if !in_defaults && !rule.allowed_origins.allows(origin) {
                        return Err(AppError::not_entitled(
                            Some(&format!("origins[{i}]")),
                            format!("API key {} may not allow origin {origin}", rule.name),
                        ));
                    }
                }
                Some(
                    AllowedOrigins::from_origins(parsed)
                        .map_err(|e| AppError::field("origins", e.to_string()))?,
                )
            }
        };
        let resolution = match (
            request.maximum_resolution,
            rule.allowed_resolutions.as_slice(),
        ) {
            (r, []) => r,
            (Some(r), allowed) if allowed.contains(&r) => Some(r),
            (Some(r), _) => {
                return Err(AppError::not_entitled(
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

    /// The origins a caller without its own origin rights gets: the
    /// configured ones, or a subset it asks for.
    fn narrow_origins(
        requested: Option<&[String]>,
        configured: Option<&AllowedOrigins>,
        who: &str,
    ) -> Result<Option<AllowedOrigins>, AppError> {
        let Some(list) = requested else {
            return Ok(configured.cloned());
        };
        let parsed = Self::parse_origins(list)?;
        if let Some(configured) = configured.filter(|c| !c.is_any())
            && let Some((i, o)) = parsed
                .iter()
                .enumerate()
                .find(|(_, o)| !configured.origins().contains(o))
        {
            return Err(AppError::not_entitled(
                Some(&format!("origins[{i}]")),
                format!("{who} may not allow origin {o}"),
            ));
        }
        AllowedOrigins::from_origins(parsed)
            .map(Some)
            .map_err(|e| AppError::field("origins", e.to_string()))
    }

    fn entitle_viewer(
        &self,
        viewer: &ViewerCaller,
        channel: &ChannelInfo,
        request: &TokenRequest,
    ) -> Result<Grant, AppError> {
        let Some(config) = &self.viewer_jwt else {
            return Err(AppError::Unauthenticated(
                "viewer tokens are not configured".into(),
            ));
        };
        if !viewer.channels.iter().any(|p| p.matches(channel)) {
            return Err(AppError::not_entitled(
                Some("channel"),
                format!(
                    "the viewer token does not list channel {} in `{}`",
                    channel.arn, config.channels_claim
                ),
            ));
        }
        if request.viewer_id.is_some() {
            return Err(AppError::not_entitled(
                Some("viewer_id"),
                "a viewer's id comes from its token's `sub`; leave viewer_id out",
            ));
        }
        if request.single_use && !config.allow_single_use {
            return Err(AppError::not_entitled(
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
        let origins = Self::narrow_origins(
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
    ) -> Result<Grant, AppError> {
        if !self.is_anonymous(channel) {
            return Err(AppError::Unauthenticated(format!(
                "channel {} needs credentials: send an API key in X-Api-Key",
                channel.arn
            )));
        }
        if request.viewer_id.is_some() {
            return Err(AppError::not_entitled(
                Some("viewer_id"),
                "anonymous callers cannot name a viewer",
            ));
        }
        let ttl = Self::ttl(
            request.ttl_seconds,
            self.anonymous.ttl_seconds,
            self.anonymous.ttl_seconds,
            "anonymous access",
        )?;
        let origins = Self::narrow_origins(
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
    fn housekeeping_forgets_quiet_clients() {
        let mut config = Config::default();
        config.anonymous.rate_per_ip_per_second = 1000;
        let policy = Policy::new(&config, &[], ViewerIdHasher::new(&[1u8; 32]).unwrap());
        for i in 0..500u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            policy.rate_limit(&Caller::Anonymous(ip), 1).unwrap();
        }
        assert_eq!(policy.ip_limiter.len(), 500);
        std::thread::sleep(Duration::from_millis(50));
        policy.housekeeping();
        assert_eq!(policy.ip_limiter.len(), 0);
    }

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
