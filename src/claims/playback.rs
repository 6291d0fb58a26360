//! `PlaybackClaims` and its builder: the rules that tie the claims together.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::ser::{Serialize, SerializeMap as _, Serializer};
use uuid::Uuid;

use super::{
    AllowedOrigins, ChannelArn, DEFAULT_CLOCK_SKEW, ExpiresAt, MAX_STRICT_ORIGINS,
    MAX_VIEWER_SESSION_VERSION, MaximumResolution, SHORT_LIVED_LIMIT, ViewerId,
    ViewerSessionVersion, names, random_uuid, unix_seconds,
};
use crate::error::{ClaimError, Error};

/// The claims of one IVS playback token. Build them with
/// [`PlaybackClaims::builder`]; a value that exists passed every IVS rule when
/// it was built.
///
/// Only the claims IVS documents are written (private-channels-generate-tokens;
/// `docs/ivs-facts.md` §1): `aws:channel-arn` and `exp` always, the others
/// when set. The time rules depend on when the token is signed, so
/// [`TokenSigner::sign`](crate::TokenSigner::sign) checks them again: claims
/// built a while ago may have expired since.
///
/// `Serialize` writes the token's JSON payload (see [`to_json`](Self::to_json)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaybackClaims {
    channel_arn: ChannelArn,
    exp: ExpiresAt,
    allowed_origins: Option<AllowedOrigins>,
    strict_origin_enforcement: bool,
    single_use_uuid: Option<Uuid>,
    viewer_id: Option<ViewerId>,
    viewer_session_version: Option<ViewerSessionVersion>,
    maximum_resolution: Option<MaximumResolution>,
}

impl PlaybackClaims {
    /// Starts claims for a channel. `exp` must be set with
    /// [`expires_in`](PlaybackClaimsBuilder::expires_in) or
    /// [`expires_at`](PlaybackClaimsBuilder::expires_at); nothing else is
    /// required.
    pub fn builder(channel_arn: ChannelArn) -> PlaybackClaimsBuilder {
        PlaybackClaimsBuilder {
            claims: Self {
                channel_arn,
                exp: ExpiresAt(0),
                allowed_origins: None,
                strict_origin_enforcement: false,
                single_use_uuid: None,
                viewer_id: None,
                viewer_session_version: None,
                maximum_resolution: None,
            },
            expiry: Expiry::Unset,
            generate_single_use: false,
            clock_skew: DEFAULT_CLOCK_SKEW,
        }
    }

    /// `aws:channel-arn`: the channel the token plays.
    pub fn channel_arn(&self) -> &ChannelArn {
        &self.channel_arn
    }

    /// `exp`, Unix seconds.
    pub fn expires_at(&self) -> ExpiresAt {
        self.exp
    }

    /// `aws:access-control-allow-origin`; `None` when absent (any origin).
    pub fn allowed_origins(&self) -> Option<&AllowedOrigins> {
        self.allowed_origins.as_ref()
    }

    /// `aws:strict-origin-enforcement` (absent means false).
    pub fn strict_origin_enforcement(&self) -> bool {
        self.strict_origin_enforcement
    }

    /// `aws:single-use-uuid`; `None` when the token is not single-use.
    pub fn single_use_uuid(&self) -> Option<Uuid> {
        self.single_use_uuid
    }

    /// `aws:viewer-id`; `None` when the token names no viewer.
    pub fn viewer_id(&self) -> Option<&ViewerId> {
        self.viewer_id.as_ref()
    }

    /// `aws:viewer-session-version`; `None` when absent (IVS reads 0).
    pub fn viewer_session_version(&self) -> Option<ViewerSessionVersion> {
        self.viewer_session_version
    }

    /// `aws:maximum-resolution`; `None` when absent (no cap).
    pub fn maximum_resolution(&self) -> Option<MaximumResolution> {
        self.maximum_resolution
    }

    /// Whether IVS caps `exp` at 10 minutes for these claims (viewer id or
    /// single-use UUID present; private-channels-generate-tokens).
    pub fn is_short_lived(&self) -> bool {
        self.viewer_id.is_some() || self.single_use_uuid.is_some()
    }

    /// Whether one token with these claims may be handed to many viewers
    /// (and cached until shortly before `exp`): false for single-use tokens,
    /// which IVS accepts once, and per-viewer tokens, which would let one
    /// viewer's revocation end everyone's session.
    pub fn is_shareable(&self) -> bool {
        !self.is_short_lived()
    }

    /// The claims as JSON, as they go into the token's payload: the IVS
    /// claim names, in a fixed order, absent claims left out, `exp` as an
    /// integer. Never panics.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: strings, integers and bools only.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Rules that tie claims together; `limit` is the allowed lifetime of a
    /// short-lived token, already adjusted for skew by the caller.
    fn check_combination(&self) -> Result<(), ClaimError> {
        if self.viewer_session_version.is_some() && self.viewer_id.is_none() {
            return Err(ClaimError::new(
                names::VIEWER_SESSION_VERSION,
                "requires aws:viewer-id: a session version only means something for a viewer",
            ));
        }
        if self.strict_origin_enforcement {
            match &self.allowed_origins {
                None => {
                    return Err(ClaimError::new(
                        names::STRICT_ORIGIN,
                        "requires aws:access-control-allow-origin: strict enforcement checks every request against it",
                    ));
                }
                Some(origins) if origins.len() > MAX_STRICT_ORIGINS => {
                    return Err(ClaimError::new(
                        names::ALLOW_ORIGIN,
                        format!(
                            "at most {MAX_STRICT_ORIGINS} origins with aws:strict-origin-enforcement, got {}",
                            origins.len()
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// `exp` must be after `now`, and for short-lived tokens at most
    /// `short_limit` ahead of it.
    pub(crate) fn check_lifetime(
        &self,
        now: SystemTime,
        short_limit: Duration,
    ) -> Result<(), ClaimError> {
        let now_s = unix_seconds(now);
        let exp = self.exp.0;
        if exp <= now_s {
            return Err(ClaimError::new(
                names::EXP,
                format!(
                    "{exp} is not in the future (now is {now_s}, {} s later)",
                    now_s - exp
                ),
            ));
        }
        if self.is_short_lived() && exp - now_s > short_limit.as_secs() {
            let which = if self.viewer_id.is_some() {
                names::VIEWER_ID
            } else {
                names::SINGLE_USE_UUID
            };
            return Err(ClaimError::new(
                names::EXP,
                format!(
                    "is {} s ahead; with {which} IVS allows at most {} s (this limit keeps a margin for clock skew)",
                    exp - now_s,
                    short_limit.as_secs()
                ),
            ));
        }
        Ok(())
    }

    /// Parses a token payload, checking every claim's type and value (not the
    /// time rules, which need a `now`). Unknown claims are returned by name.
    #[cfg(test)]
    pub(crate) fn from_payload(payload: &[u8]) -> Result<(Self, Vec<String>), ClaimError> {
        Self::from_map(&payload_map(payload)?)
    }

    /// Claims from a parsed payload (see [`payload_map`]).
    pub(crate) fn from_map(
        map: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(Self, Vec<String>), ClaimError> {
        let mut unknown = Vec::new();
        let mut channel_arn = None;
        let mut exp = None;
        let mut claims = Self::builder(ChannelArn(Box::from(""))).claims;
        for (name, value) in map {
            match name.as_str() {
                names::CHANNEL_ARN => {
                    channel_arn = Some(ChannelArn::parse(json_str(names::CHANNEL_ARN, value)?)?);
                }
                names::EXP => exp = Some(ExpiresAt::from_numeric_date(value)?),
                names::ALLOW_ORIGIN => {
                    claims.allowed_origins = Some(AllowedOrigins::parse(json_str(
                        names::ALLOW_ORIGIN,
                        value,
                    )?)?);
                }
                names::STRICT_ORIGIN => {
                    claims.strict_origin_enforcement = value.as_bool().ok_or_else(|| {
                        ClaimError::new(
                            names::STRICT_ORIGIN,
                            format!("must be true or false, got {value}"),
                        )
                    })?;
                }
                names::SINGLE_USE_UUID => {
                    let s = json_str(names::SINGLE_USE_UUID, value)?;
                    claims.single_use_uuid = Some(Uuid::parse_str(s).map_err(|_| {
                        ClaimError::new(names::SINGLE_USE_UUID, format!("`{s}` is not a UUID"))
                    })?);
                }
                names::VIEWER_ID => {
                    claims.viewer_id = Some(ViewerId::parse(json_str(names::VIEWER_ID, value)?)?);
                }
                names::VIEWER_SESSION_VERSION => {
                    let n = value.as_u64().ok_or_else(|| {
                        ClaimError::new(
                            names::VIEWER_SESSION_VERSION,
                            format!("must be a whole number 0 to {MAX_VIEWER_SESSION_VERSION}, got {value}"),
                        )
                    })?;
                    claims.viewer_session_version = Some(ViewerSessionVersion::new(n)?);
                }
                names::MAXIMUM_RESOLUTION => {
                    claims.maximum_resolution =
                        Some(json_str(names::MAXIMUM_RESOLUTION, value)?.parse()?);
                }
                _ => unknown.push(name.clone()),
            }
        }
        claims.channel_arn = channel_arn.ok_or_else(|| {
            ClaimError::new(
                names::CHANNEL_ARN,
                "is missing; IVS needs the channel the token plays",
            )
        })?;
        claims.exp = exp.ok_or_else(|| {
            ClaimError::new(names::EXP, "is missing; a token without expiry is refused")
        })?;
        claims.check_combination()?;
        Ok((claims, unknown))
    }
}

/// A token payload as a JSON object.
pub(crate) fn payload_map(
    payload: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, ClaimError> {
    serde_json::from_slice(payload)
        .map_err(|e| ClaimError::new("payload", format!("is not a JSON object of claims: {e}")))
}

fn json_str<'a>(claim: &'static str, value: &'a serde_json::Value) -> Result<&'a str, ClaimError> {
    value
        .as_str()
        .ok_or_else(|| ClaimError::new(claim, format!("must be a string, got {value}")))
}

impl Serialize for PlaybackClaims {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(names::CHANNEL_ARN, self.channel_arn.as_str())?;
        if let Some(origins) = &self.allowed_origins {
            map.serialize_entry(names::ALLOW_ORIGIN, &DisplayStr(origins))?;
        }
        if self.strict_origin_enforcement {
            map.serialize_entry(names::STRICT_ORIGIN, &true)?;
        }
        if let Some(uuid) = &self.single_use_uuid {
            map.serialize_entry(names::SINGLE_USE_UUID, &DisplayStr(&uuid.hyphenated()))?;
        }
        if let Some(id) = &self.viewer_id {
            map.serialize_entry(names::VIEWER_ID, id.as_str())?;
        }
        if let Some(version) = self.viewer_session_version {
            map.serialize_entry(names::VIEWER_SESSION_VERSION, &version.0)?;
        }
        if let Some(resolution) = self.maximum_resolution {
            map.serialize_entry(names::MAXIMUM_RESOLUTION, resolution.as_str())?;
        }
        map.serialize_entry(names::EXP, &self.exp.0)?;
        map.end()
    }
}

/// Serialises a `Display` value as a JSON string without an intermediate
/// `String`.
struct DisplayStr<'a, T>(&'a T);

impl<T: fmt::Display> Serialize for DisplayStr<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
}

#[derive(Clone, Copy, Debug)]
enum Expiry {
    Unset,
    At(ExpiresAt),
    In(Duration),
}

/// Builds [`PlaybackClaims`]; [`build`](Self::build) checks every IVS rule.
///
/// The setters only record values: each claim's own value was checked when
/// its type was parsed, and the rules that tie claims together are checked
/// by `build`. A setter called twice keeps the last value.
#[derive(Clone, Debug)]
#[must_use = "call build() to get the claims"]
pub struct PlaybackClaimsBuilder {
    claims: PlaybackClaims,
    expiry: Expiry,
    generate_single_use: bool,
    clock_skew: Duration,
}

impl PlaybackClaimsBuilder {
    /// Expire `ttl` after the time the claims are built, rounded down to a
    /// whole second. At most 595 s (10 minutes less
    /// [`clock_skew`](Self::clock_skew)) with a viewer id or a single-use
    /// UUID; otherwise unlimited, but IVS checks `exp` only when playback
    /// starts, so a few minutes is usually enough (see the crate docs).
    pub fn expires_in(mut self, ttl: Duration) -> Self {
        self.expiry = Expiry::In(ttl);
        self
    }

    /// Expire at a fixed time (Unix seconds), for example to share one token
    /// until the end of an event.
    pub fn expires_at(mut self, exp: ExpiresAt) -> Self {
        self.expiry = Expiry::At(exp);
        self
    }

    /// Only these origins may play (`aws:access-control-allow-origin`). Leave
    /// it unset to let any origin play.
    pub fn allowed_origins(mut self, origins: AllowedOrigins) -> Self {
        self.claims.allowed_origins = Some(origins);
        self
    }

    /// Check the origin on every playlist and segment request, not only the
    /// multivariant playlist (`aws:strict-origin-enforcement`); needs allowed
    /// origins, at most 5 (private-channels-generate-tokens). `false` leaves
    /// the claim out.
    pub fn strict_origin_enforcement(mut self, strict: bool) -> Self {
        self.claims.strict_origin_enforcement = strict;
        self
    }

    /// Make the token single-use (`aws:single-use-uuid`) with a fresh random
    /// (v4) UUID, drawn by `build`: IVS refuses the token once it has started
    /// playback, and caps its `exp` at 10 minutes. Never cache such a token.
    pub fn single_use(mut self) -> Self {
        self.generate_single_use = true;
        self.claims.single_use_uuid = None;
        self
    }

    /// Make the token single-use with a given UUID (for replays in tests or a
    /// UUID you track yourself). Replaces a pending [`single_use`](Self::single_use).
    pub fn single_use_uuid(mut self, uuid: Uuid) -> Self {
        self.generate_single_use = false;
        self.claims.single_use_uuid = Some(uuid);
        self
    }

    /// Identify the viewer (`aws:viewer-id`), which makes the session
    /// revocable and caps `exp` at 10 minutes
    /// (private-channels-generate-tokens).
    pub fn viewer_id(mut self, id: ViewerId) -> Self {
        self.claims.viewer_id = Some(id);
        self
    }

    /// The viewer's session version (`aws:viewer-session-version`); needs a
    /// viewer id, as a revocation only targets a viewer's sessions.
    pub fn viewer_session_version(mut self, version: ViewerSessionVersion) -> Self {
        self.claims.viewer_session_version = Some(version);
        self
    }

    /// Cap the resolution the viewer gets (`aws:maximum-resolution`).
    pub fn maximum_resolution(mut self, resolution: MaximumResolution) -> Self {
        self.claims.maximum_resolution = Some(resolution);
        self
    }

    /// The margin kept below the 10-minute limit of short-lived tokens, for
    /// clocks that disagree (default [`DEFAULT_CLOCK_SKEW`], 5 s; at most
    /// 60 s, or `build` fails). `Duration::ZERO` allows the full 600 s.
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Checks every rule against the current time and returns the claims.
    ///
    /// # Errors
    ///
    /// As [`build_at`](Self::build_at). Never panics.
    pub fn build(self) -> Result<PlaybackClaims, Error> {
        self.build_at(SystemTime::now())
    }

    /// Checks every rule against `now` and returns the claims.
    ///
    /// # Errors
    ///
    /// [`Error::Claim`] with a [`ClaimError`] naming the claim at fault:
    ///
    /// - `exp` when no expiry was set; when `exp` is not after `now`; when
    ///   `now + ttl` is not a valid [`ExpiresAt`]; when the token has a
    ///   viewer id or a single-use UUID and `exp` is more than 10 minutes less
    ///   the clock skew after `now`; when the clock skew is over 60 s;
    /// - `aws:viewer-session-version` when it is set without a viewer id;
    /// - `aws:strict-origin-enforcement` when it is on without allowed
    ///   origins;
    /// - `aws:access-control-allow-origin` when strict enforcement is on and
    ///   more than 5 origins are listed.
    ///
    /// [`Error::Random`] when the operating system's random number generator
    /// fails while drawing a [`single_use`](Self::single_use) UUID
    /// ([`single_use_uuid`](Self::single_use_uuid) draws nothing). Never
    /// panics.
    pub fn build_at(self, now: SystemTime) -> Result<PlaybackClaims, Error> {
        let Self {
            mut claims,
            expiry,
            generate_single_use,
            clock_skew,
        } = self;
        if clock_skew > Duration::from_secs(60) {
            return Err(ClaimError::new(
                names::EXP,
                format!(
                    "clock skew margin must be at most 60 s, got {} s",
                    clock_skew.as_secs()
                ),
            )
            .into());
        }
        claims.exp = match expiry {
            Expiry::Unset => {
                return Err(ClaimError::new(
                    names::EXP,
                    "is required: set expires_in or expires_at",
                )
                .into());
            }
            Expiry::At(exp) => exp,
            Expiry::In(ttl) => ExpiresAt::after(now, ttl)?,
        };
        if generate_single_use {
            claims.single_use_uuid = Some(random_uuid()?);
        }
        claims.check_combination()?;
        claims.check_lifetime(now, SHORT_LIVED_LIMIT - clock_skew)?;
        Ok(claims)
    }
}
