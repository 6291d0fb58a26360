//! The claims of an IVS playback token, as types that only hold values IVS
//! accepts.
//!
//! Each claim has a newtype that parses (`ChannelArn`, `ExpiresAt`,
//! `AllowedOrigins`, `ViewerId`, `ViewerSessionVersion`,
//! `MaximumResolution`), and [`PlaybackClaims::builder`] checks the rules that
//! tie claims together (the 10-minute limit on `exp` for viewer-id and
//! single-use tokens, at most 5 origins with strict enforcement). A
//! `PlaybackClaims` that exists is one IVS accepts: the facts are in
//! `ivs-playback-spec.md` §1.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::ser::{Serialize, SerializeMap as _, Serializer};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::{ClaimError, Error};

/// The wire names of the eight IVS claims.
pub mod names {
    /// `aws:channel-arn`: the channel the token plays.
    pub const CHANNEL_ARN: &str = "aws:channel-arn";
    /// `aws:access-control-allow-origin`: comma-separated origins allowed to play.
    pub const ALLOW_ORIGIN: &str = "aws:access-control-allow-origin";
    /// `aws:strict-origin-enforcement`: check the origin on every request.
    pub const STRICT_ORIGIN: &str = "aws:strict-origin-enforcement";
    /// `aws:single-use-uuid`: the token starts playback once.
    pub const SINGLE_USE_UUID: &str = "aws:single-use-uuid";
    /// `aws:viewer-id`: a pseudonymous viewer, needed for revocation.
    pub const VIEWER_ID: &str = "aws:viewer-id";
    /// `aws:viewer-session-version`: revocation generation of the viewer.
    pub const VIEWER_SESSION_VERSION: &str = "aws:viewer-session-version";
    /// `aws:maximum-resolution`: `SD`, `HD` or `FULL_HD`.
    pub const MAXIMUM_RESOLUTION: &str = "aws:maximum-resolution";
    /// `exp`: expiry, Unix time in seconds.
    pub const EXP: &str = "exp";
}

/// IVS refuses `exp` more than 10 minutes ahead on tokens with a viewer id
/// or a single-use UUID.
pub const SHORT_LIVED_LIMIT: Duration = Duration::from_secs(600);

/// The default clock-skew margin that the builder keeps below
/// [`SHORT_LIVED_LIMIT`], so that a token is still inside the limit when
/// IVS's clock runs a little ahead of ours.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// At most this many origins may be listed with strict origin enforcement.
pub const MAX_STRICT_ORIGINS: usize = 5;

/// The largest viewer-session version that can still be revoked: the
/// revocation API's filter is a 32-bit signed integer.
pub const MAX_VIEWER_SESSION_VERSION: u32 = i32::MAX as u32;

/// `exp` values from here on are read as milliseconds by mistake: as seconds
/// they lie past the year 5000. The AWS docs' Node example makes exactly this
/// mistake, which makes tokens that never expire.
pub(crate) const MILLISECONDS_THRESHOLD: u64 = 100_000_000_000;

const CHANNEL_ARN_MAX_LEN: usize = 128;
const VIEWER_ID_MAX_LEN: usize = 40;

/// An IVS channel ARN: `arn:aws:ivs:REGION:ACCOUNT:channel/ID`.
///
/// Parsing enforces the service model's pattern
/// `arn:aws:ivs:[a-z0-9-]+:[0-9]+:channel/[a-zA-Z0-9-]+` over the whole string
/// and its length of 1 to 128 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelArn(Box<str>);

impl ChannelArn {
    /// Parses a channel ARN.
    pub fn parse(arn: &str) -> Result<Self, ClaimError> {
        let err = |rule: String| ClaimError::new(names::CHANNEL_ARN, rule);
        if arn.is_empty() || arn.len() > CHANNEL_ARN_MAX_LEN {
            return Err(err(format!(
                "must be 1 to {CHANNEL_ARN_MAX_LEN} characters, got {}",
                arn.len()
            )));
        }
        let shape = "must look like arn:aws:ivs:REGION:ACCOUNT:channel/ID";
        let rest = arn
            .strip_prefix("arn:aws:ivs:")
            .ok_or_else(|| err(format!("{shape} (it does not start with `arn:aws:ivs:`)")))?;
        let (region, rest) = rest.split_once(':').ok_or_else(|| err(shape.to_owned()))?;
        let (account, rest) = rest.split_once(':').ok_or_else(|| err(shape.to_owned()))?;
        let id = rest.strip_prefix("channel/").ok_or_else(|| {
            err(format!(
                "{shape} (the resource is not `channel/...`; a playback-key or stream-key ARN is not a channel)"
            ))
        })?;
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err(format!(
                "{shape}: region `{region}` must be lowercase letters, digits and `-`"
            )));
        }
        if account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(format!("{shape}: account `{account}` must be digits")));
        }
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(err(format!(
                "{shape}: channel id `{id}` must be letters, digits and `-`"
            )));
        }
        Ok(Self(arn.into()))
    }

    /// The ARN as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn parts(&self) -> (&str, &str, &str) {
        // Parsing guaranteed the shape arn:aws:ivs:REGION:ACCOUNT:channel/ID.
        let rest = &self.0["arn:aws:ivs:".len()..];
        let (region, rest) = rest.split_once(':').unwrap_or_default();
        let (account, rest) = rest.split_once(':').unwrap_or_default();
        (
            region,
            account,
            rest.strip_prefix("channel/").unwrap_or(rest),
        )
    }

    /// The AWS region, such as `us-west-2`.
    pub fn region(&self) -> &str {
        self.parts().0
    }

    /// The AWS account id.
    pub fn account_id(&self) -> &str {
        self.parts().1
    }

    /// The channel's resource id, the part after `channel/`.
    pub fn channel_id(&self) -> &str {
        self.parts().2
    }
}

impl FromStr for ChannelArn {
    type Err = ClaimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ChannelArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ChannelArn {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The `exp` claim: Unix time in **seconds**.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExpiresAt(u64);

impl ExpiresAt {
    /// `exp` from Unix seconds. Values that can only be milliseconds (past the
    /// year 5000 as seconds) are refused.
    pub fn from_unix_seconds(seconds: u64) -> Result<Self, ClaimError> {
        if seconds == 0 {
            return Err(ClaimError::new(
                names::EXP,
                "must be a Unix time in seconds, got 0",
            ));
        }
        if seconds >= MILLISECONDS_THRESHOLD {
            return Err(ClaimError::new(
                names::EXP,
                format!(
                    "{seconds} looks like milliseconds; IVS reads `exp` as Unix seconds (a millisecond value makes a token that never expires)"
                ),
            ));
        }
        Ok(Self(seconds))
    }

    /// `exp` at `now + ttl`, rounded down to a whole second (never later than
    /// asked).
    pub fn after(now: SystemTime, ttl: Duration) -> Result<Self, ClaimError> {
        let at = now
            .checked_add(ttl)
            .ok_or_else(|| ClaimError::new(names::EXP, "now + ttl overflows"))?;
        Self::from_unix_seconds(unix_seconds(at))
    }

    /// Unix seconds.
    pub fn unix_seconds(self) -> u64 {
        self.0
    }

    /// As a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0)
    }
}

impl fmt::Display for ExpiresAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Whole Unix seconds of `t`, 0 before 1970.
pub(crate) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One origin in `aws:access-control-allow-origin`, normalised to
/// `scheme://host[:port]`.
///
/// Scheme and host are lowercased, a default port (80 for http, 443 for https)
/// and a single trailing `/` are dropped. A host may start with the wildcard
/// label `*.` (`https://*.example.com`). Paths, queries, fragments, user info,
/// spaces and non-ASCII hosts (use punycode) are refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin(Box<str>);

impl Origin {
    /// Parses and normalises one origin.
    pub fn parse(origin: &str) -> Result<Self, ClaimError> {
        let err = |rule: String| ClaimError::new(names::ALLOW_ORIGIN, rule);
        if origin == "*" {
            return Err(err(
                "`*` allows every origin and must be the only value; use AllowedOrigins::any()"
                    .into(),
            ));
        }
        if origin.is_empty() {
            return Err(err("an origin is empty".into()));
        }
        if let Some(c) = origin
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == ',')
        {
            return Err(err(format!(
                "origin `{}` contains {c:?}; an origin is scheme://host[:port]",
                origin.escape_debug()
            )));
        }
        let (scheme, rest) = origin.split_once("://").ok_or_else(|| {
            err(format!(
                "origin `{origin}` has no scheme; write it as scheme://host[:port], e.g. https://example.com"
            ))
        })?;
        let scheme = scheme.to_ascii_lowercase();
        let mut scheme_chars = scheme.chars();
        let scheme_ok = scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return Err(err(format!("origin `{origin}` has an invalid scheme")));
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(err(format!(
                "origin `{origin}` has a path, query or fragment; an origin is only scheme://host[:port]"
            )));
        }
        if authority.contains('@') {
            return Err(err(format!(
                "origin `{origin}` has user info; an origin is only scheme://host[:port]"
            )));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| err(format!("origin `{origin}` has an invalid port")))?;
        let host = host.to_ascii_lowercase();
        if host.is_empty() {
            return Err(err(format!("origin `{origin}` has no host")));
        }
        if !host.is_ascii() {
            return Err(err(format!(
                "origin `{origin}` has a non-ASCII host; write it in punycode (xn--...)"
            )));
        }
        if host.starts_with('[') {
            let inner = &host[1..host.len() - 1];
            if inner.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(err(format!("origin `{origin}` has an invalid IPv6 host")));
            }
        } else {
            let (wild, labels) = match host.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, host.as_str()),
            };
            for label in labels.split('.') {
                let ok = !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    && !label.starts_with('-')
                    && !label.ends_with('-');
                if !ok {
                    let why = if label.contains('*') {
                        "the wildcard `*.` may only be the first label of the host"
                    } else {
                        "each host label must be 1 to 63 letters, digits, `-` or `_`"
                    };
                    return Err(err(format!("origin `{origin}`: {why}")));
                }
            }
            if wild && !labels.contains('.') && labels != "localhost" {
                return Err(err(format!(
                    "origin `{origin}`: the wildcard needs at least two labels after it (`*.example.com`); `*.{labels}` would allow every site under `{labels}`"
                )));
            }
        }
        let default_port = match scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        };
        let normalised = match port {
            Some(p) if Some(p) != default_port => format!("{scheme}://{host}:{p}"),
            _ => format!("{scheme}://{host}"),
        };
        Ok(Self(normalised.into()))
    }

    /// The normalised origin.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the host starts with the `*.` wildcard label.
    pub fn is_wildcard(&self) -> bool {
        self.0.contains("://*.")
    }

    /// Whether a browser's `Origin` header value is allowed by this entry.
    ///
    /// The header is normalised the same way first. The wildcard `*.` stands
    /// for exactly one host label. IVS does not document its matching rules
    /// [OPEN]: one label is the narrowest reading, so a token that plays here
    /// does not rely on a looser match.
    pub fn matches(&self, header: &str) -> bool {
        let Ok(candidate) = Origin::parse(header) else {
            return false;
        };
        if candidate.is_wildcard() {
            return false;
        }
        let Some((pattern_prefix, pattern_suffix)) = self.0.split_once("*.") else {
            return candidate.0 == self.0;
        };
        let Some(rest) = candidate.0.strip_prefix(pattern_prefix) else {
            return false;
        };
        let Some(label) = rest.strip_suffix(pattern_suffix) else {
            return false;
        };
        label.len() > 1 && label.ends_with('.') && !label[..label.len() - 1].contains('.')
    }
}

/// Splits `host[:port]` (with `[v6]` hosts); `None` for a bad port.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest.strip_prefix(':') {
            Some(p) => Some((host, Some(parse_port(p)?))),
            None if rest.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, p)) => Some((host, Some(parse_port(p)?))),
        None => Some((authority, None)),
    }
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok().filter(|&p| p != 0)
}

impl FromStr for Origin {
    type Err = ClaimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The value of `aws:access-control-allow-origin`: every origin (`*`), or a
/// list of origins.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AllowedOrigins(OriginsRepr);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum OriginsRepr {
    Any,
    List(Vec<Origin>),
}

impl AllowedOrigins {
    /// `*`: every origin may play.
    pub fn any() -> Self {
        Self(OriginsRepr::Any)
    }

    /// A list of origins, in order, duplicates (after normalisation) removed.
    /// An empty list is refused: leave the claim out instead.
    pub fn from_origins(origins: impl IntoIterator<Item = Origin>) -> Result<Self, ClaimError> {
        let mut list: Vec<Origin> = Vec::new();
        for origin in origins {
            if !list.contains(&origin) {
                list.push(origin);
            }
        }
        if list.is_empty() {
            return Err(ClaimError::new(
                names::ALLOW_ORIGIN,
                "the list of origins is empty; leave the claim out to allow any origin",
            ));
        }
        Ok(Self(OriginsRepr::List(list)))
    }

    /// Parses the claim's wire form: `*`, or comma-separated origins (spaces
    /// around the commas are allowed).
    pub fn parse(value: &str) -> Result<Self, ClaimError> {
        if value.trim() == "*" {
            return Ok(Self::any());
        }
        let mut origins = Vec::new();
        for part in value.split(',') {
            let part = part.trim();
            if part == "*" {
                return Err(ClaimError::new(
                    names::ALLOW_ORIGIN,
                    "`*` must be the only value when present",
                ));
            }
            if part.is_empty() {
                return Err(ClaimError::new(
                    names::ALLOW_ORIGIN,
                    format!("`{value}` has an empty entry between commas"),
                ));
            }
            origins.push(Origin::parse(part)?);
        }
        Self::from_origins(origins)
    }

    /// Whether this is `*`.
    pub fn is_any(&self) -> bool {
        matches!(self.0, OriginsRepr::Any)
    }

    /// The listed origins (empty for `*`).
    pub fn origins(&self) -> &[Origin] {
        match &self.0 {
            OriginsRepr::Any => &[],
            OriginsRepr::List(list) => list,
        }
    }

    /// How many entries the claim holds (`*` counts as one).
    pub fn len(&self) -> usize {
        match &self.0 {
            OriginsRepr::Any => 1,
            OriginsRepr::List(list) => list.len(),
        }
    }

    /// Never true: an empty list cannot be built.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether a browser's `Origin` header value is allowed.
    pub fn allows(&self, header: &str) -> bool {
        match &self.0 {
            OriginsRepr::Any => true,
            OriginsRepr::List(list) => list.iter().any(|o| o.matches(header)),
        }
    }
}

impl fmt::Display for AllowedOrigins {
    /// The wire form: `*` or origins joined by `,`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            OriginsRepr::Any => f.write_str("*"),
            OriginsRepr::List(list) => {
                for (i, origin) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(origin.as_str())?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for AllowedOrigins {
    type Err = ClaimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// `aws:viewer-id`: 1 to 40 characters identifying a viewer, with no
/// personal data (IVS's rule). Use [`ViewerIdHasher`] to derive one from an
/// application user id.
///
/// The length is counted in UTF-8 bytes: IVS says "characters" without saying
/// how it counts [OPEN], and bytes are the strictest reading. Control
/// characters are refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewerId(Box<str>);

impl ViewerId {
    /// Parses a viewer id.
    pub fn parse(id: &str) -> Result<Self, ClaimError> {
        if id.is_empty() || id.len() > VIEWER_ID_MAX_LEN {
            return Err(ClaimError::new(
                names::VIEWER_ID,
                format!(
                    "must be 1 to {VIEWER_ID_MAX_LEN} characters, got {}",
                    id.len()
                ),
            ));
        }
        if id.chars().any(char::is_control) {
            return Err(ClaimError::new(
                names::VIEWER_ID,
                "must not contain control characters",
            ));
        }
        Ok(Self(id.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ViewerId {
    type Err = ClaimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ViewerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `aws:viewer-session-version`: 0 to 2^31-1, so that a revocation (whose
/// filter is a 32-bit signed integer) can always reach it. Unix seconds fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewerSessionVersion(u32);

impl ViewerSessionVersion {
    /// A version in 0..=2^31-1.
    pub fn new(version: u64) -> Result<Self, ClaimError> {
        u32::try_from(version)
            .ok()
            .filter(|&v| v <= MAX_VIEWER_SESSION_VERSION)
            .map(Self)
            .ok_or_else(|| {
                ClaimError::new(
                    names::VIEWER_SESSION_VERSION,
                    format!(
                        "must be 0 to {MAX_VIEWER_SESSION_VERSION}, got {version}; a larger version can never be revoked (the revocation filter is a 32-bit integer)"
                    ),
                )
            })
    }

    /// The version.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl FromStr for ViewerSessionVersion {
    type Err = ClaimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = s.parse::<u64>().map_err(|_| {
            ClaimError::new(
                names::VIEWER_SESSION_VERSION,
                format!("must be a whole number 0 to {MAX_VIEWER_SESSION_VERSION}, got `{s}`"),
            )
        })?;
        Self::new(n)
    }
}

impl fmt::Display for ViewerSessionVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `aws:maximum-resolution`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MaximumResolution {
    /// `SD`
    Sd,
    /// `HD`
    Hd,
    /// `FULL_HD`
    FullHd,
}

impl MaximumResolution {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sd => "SD",
            Self::Hd => "HD",
            Self::FullHd => "FULL_HD",
        }
    }
}

impl FromStr for MaximumResolution {
    type Err = ClaimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "SD" => Ok(Self::Sd),
            "HD" => Ok(Self::Hd),
            "FULL_HD" => Ok(Self::FullHd),
            _ => Err(ClaimError::new(
                names::MAXIMUM_RESOLUTION,
                format!("must be SD, HD or FULL_HD, got `{s}`"),
            )),
        }
    }
}

impl Serialize for MaximumResolution {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for MaximumResolution {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for MaximumResolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims of one IVS playback token. Build them with
/// [`PlaybackClaims::builder`]; a value that exists passed every IVS rule when
/// it was built.
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
    /// [`expires_at`](PlaybackClaimsBuilder::expires_at).
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

    /// `aws:channel-arn`.
    pub fn channel_arn(&self) -> &ChannelArn {
        &self.channel_arn
    }

    /// `exp`.
    pub fn expires_at(&self) -> ExpiresAt {
        self.exp
    }

    /// `aws:access-control-allow-origin`.
    pub fn allowed_origins(&self) -> Option<&AllowedOrigins> {
        self.allowed_origins.as_ref()
    }

    /// `aws:strict-origin-enforcement` (absent means false).
    pub fn strict_origin_enforcement(&self) -> bool {
        self.strict_origin_enforcement
    }

    /// `aws:single-use-uuid`.
    pub fn single_use_uuid(&self) -> Option<Uuid> {
        self.single_use_uuid
    }

    /// `aws:viewer-id`.
    pub fn viewer_id(&self) -> Option<&ViewerId> {
        self.viewer_id.as_ref()
    }

    /// `aws:viewer-session-version`.
    pub fn viewer_session_version(&self) -> Option<ViewerSessionVersion> {
        self.viewer_session_version
    }

    /// `aws:maximum-resolution`.
    pub fn maximum_resolution(&self) -> Option<MaximumResolution> {
        self.maximum_resolution
    }

    /// Whether IVS caps `exp` at 10 minutes for these claims (viewer id or
    /// single-use UUID present).
    pub fn is_short_lived(&self) -> bool {
        self.viewer_id.is_some() || self.single_use_uuid.is_some()
    }

    /// Whether one token with these claims may be handed to many viewers:
    /// false for single-use and per-viewer tokens.
    pub fn is_shareable(&self) -> bool {
        !self.is_short_lived()
    }

    /// The claims as JSON, as they go into the token.
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
                names::EXP => {
                    let n = value.as_u64().ok_or_else(|| {
                        ClaimError::new(
                            names::EXP,
                            format!("must be a whole number of Unix seconds, got {value}"),
                        )
                    })?;
                    exp = Some(ExpiresAt::from_unix_seconds(n)?);
                }
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
#[derive(Clone, Debug)]
#[must_use = "call build() to get the claims"]
pub struct PlaybackClaimsBuilder {
    claims: PlaybackClaims,
    expiry: Expiry,
    generate_single_use: bool,
    clock_skew: Duration,
}

impl PlaybackClaimsBuilder {
    /// Expire `ttl` after the time the claims are built.
    pub fn expires_in(mut self, ttl: Duration) -> Self {
        self.expiry = Expiry::In(ttl);
        self
    }

    /// Expire at a fixed time.
    pub fn expires_at(mut self, exp: ExpiresAt) -> Self {
        self.expiry = Expiry::At(exp);
        self
    }

    /// Only these origins may play (`aws:access-control-allow-origin`).
    pub fn allowed_origins(mut self, origins: AllowedOrigins) -> Self {
        self.claims.allowed_origins = Some(origins);
        self
    }

    /// Check the origin on every playlist and segment request, not only the
    /// first (`aws:strict-origin-enforcement`); needs allowed origins, at most 5.
    pub fn strict_origin_enforcement(mut self, strict: bool) -> Self {
        self.claims.strict_origin_enforcement = strict;
        self
    }

    /// Make the token single-use with a fresh random (v4) UUID.
    pub fn single_use(mut self) -> Self {
        self.generate_single_use = true;
        self.claims.single_use_uuid = None;
        self
    }

    /// Make the token single-use with a given UUID (for replays in tests or a
    /// UUID you track yourself).
    pub fn single_use_uuid(mut self, uuid: Uuid) -> Self {
        self.generate_single_use = false;
        self.claims.single_use_uuid = Some(uuid);
        self
    }

    /// Identify the viewer (`aws:viewer-id`), which makes the session
    /// revocable and caps `exp` at 10 minutes.
    pub fn viewer_id(mut self, id: ViewerId) -> Self {
        self.claims.viewer_id = Some(id);
        self
    }

    /// The viewer's session version; needs a viewer id.
    pub fn viewer_session_version(mut self, version: ViewerSessionVersion) -> Self {
        self.claims.viewer_session_version = Some(version);
        self
    }

    /// Cap the resolution the viewer gets.
    pub fn maximum_resolution(mut self, resolution: MaximumResolution) -> Self {
        self.claims.maximum_resolution = Some(resolution);
        self
    }

    /// The margin kept below the 10-minute limit of short-lived tokens, for
    /// clocks that disagree (default [`DEFAULT_CLOCK_SKEW`], at most 60 s).
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Checks every rule against the current time and returns the claims.
    pub fn build(self) -> Result<PlaybackClaims, Error> {
        self.build_at(SystemTime::now())
    }

    /// Checks every rule against `now` and returns the claims.
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
            claims.single_use_uuid = Some(Uuid::new_v4());
        }
        claims.check_combination()?;
        claims.check_lifetime(now, SHORT_LIVED_LIMIT - clock_skew)?;
        Ok(claims)
    }
}

/// Derives pseudonymous viewer ids from application user ids with a keyed
/// hash, because IVS forbids personal data in `aws:viewer-id`.
///
/// `viewer-id = base64url(HMAC-SHA-256(secret, user_id)[..30])`: 40 characters,
/// stable for a given secret, and not reversible without the secret. Keep the
/// secret as safe as a signing key: whoever holds it can link viewer ids to
/// users. Clones hold their own copy of the secret, zeroized on drop.
#[derive(Clone)]
pub struct ViewerIdHasher {
    secret: Zeroizing<Vec<u8>>,
}

impl ViewerIdHasher {
    /// Minimum secret length in bytes.
    pub const MIN_SECRET_LEN: usize = 32;

    /// A hasher with a secret of at least [`Self::MIN_SECRET_LEN`] bytes.
    pub fn new(secret: &[u8]) -> Result<Self, Error> {
        if secret.len() < Self::MIN_SECRET_LEN {
            return Err(Error::ViewerIdSecret(
                "must be at least 32 bytes of random data",
            ));
        }
        Ok(Self {
            secret: Zeroizing::new(secret.to_vec()),
        })
    }

    /// The viewer id of an application user.
    pub fn viewer_id(&self, user_id: &str) -> ViewerId {
        // HMAC accepts keys of any length, and the secret was checked in `new`.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            unreachable!("HMAC takes keys of any length")
        };
        mac.update(user_id.as_bytes());
        let tag = mac.finalize().into_bytes();
        // 30 bytes encode to exactly 40 base64url characters, IVS's maximum.
        ViewerId(URL_SAFE_NO_PAD.encode(&tag[..30]).into())
    }
}

impl fmt::Debug for ViewerIdHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ViewerIdHasher { secret: <redacted> }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:ivs:us-west-2:123456789012:channel/abcdEFGH1234";

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn arn() -> ChannelArn {
        ChannelArn::parse(ARN).unwrap()
    }

    fn build(b: PlaybackClaimsBuilder) -> Result<PlaybackClaims, ClaimError> {
        match b.build_at(now()) {
            Ok(c) => Ok(c),
            Err(Error::Claim(e)) => Err(e),
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    #[test]
    fn parses_channel_arn_and_its_parts() {
        let arn = arn();
        assert_eq!(arn.region(), "us-west-2");
        assert_eq!(arn.account_id(), "123456789012");
        assert_eq!(arn.channel_id(), "abcdEFGH1234");
    }

    #[test]
    fn rejects_channel_arns_off_the_model_pattern() {
        for bad in [
            "",
            "arn:aws:ivs:us-west-2:123456789012:playback-key/abc",
            "arn:aws:ivs:US-WEST-2:123456789012:channel/abc",
            "arn:aws:ivs:us-west-2:12345678901x:channel/abc",
            "arn:aws:ivs:us-west-2:123456789012:channel/",
            "arn:aws:ivs:us-west-2:123456789012:channel/ab_c",
            "arn:aws:ivs::123456789012:channel/abc",
            "arn:aws:s3:us-west-2:123456789012:channel/abc",
            " arn:aws:ivs:us-west-2:123456789012:channel/abc",
            "arn:aws:ivs:us-west-2:123456789012:channel/abc/def",
        ] {
            let err = ChannelArn::parse(bad).unwrap_err();
            assert_eq!(err.claim(), names::CHANNEL_ARN, "{bad}");
        }
        let long = format!(
            "arn:aws:ivs:us-west-2:123456789012:channel/{}",
            "a".repeat(100)
        );
        assert!(
            ChannelArn::parse(&long)
                .unwrap_err()
                .rule()
                .contains("1 to 128")
        );
    }

    #[test]
    fn refuses_exp_in_milliseconds() {
        let err = ExpiresAt::from_unix_seconds(1_800_000_000_000).unwrap_err();
        assert!(err.rule().contains("milliseconds"), "{err}");
        assert!(ExpiresAt::from_unix_seconds(0).is_err());
        assert!(ExpiresAt::from_unix_seconds(99_999_999_999).is_ok());
    }

    #[test]
    fn normalises_origins() {
        for (input, want) in [
            ("https://Example.COM", "https://example.com"),
            ("https://example.com/", "https://example.com"),
            ("https://example.com:443", "https://example.com"),
            ("http://example.com:80", "http://example.com"),
            ("https://example.com:8443", "https://example.com:8443"),
            ("HTTP://localhost:3000", "http://localhost:3000"),
            ("https://*.example.com", "https://*.example.com"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("capacitor://localhost", "capacitor://localhost"),
        ] {
            assert_eq!(Origin::parse(input).unwrap().as_str(), want, "{input}");
        }
    }

    #[test]
    fn rejects_origins_that_are_not_scheme_host_port() {
        for bad in [
            "example.com",
            "https://",
            "https://example.com/path",
            "https://example.com?q=1",
            "https://user@example.com",
            "https://exa mple.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://example.com:",
            "https://a.*.example.com",
            "https://*example.com",
            "https://*",
            "https://*.com",
            "https://exämple.com",
            "https://-bad.com",
            "1https://example.com",
            "*",
        ] {
            let err = Origin::parse(bad).unwrap_err();
            assert_eq!(err.claim(), names::ALLOW_ORIGIN, "{bad}");
        }
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        let o = Origin::parse("https://*.example.com").unwrap();
        assert!(o.matches("https://app.example.com"));
        assert!(o.matches("https://APP.example.com:443"));
        assert!(!o.matches("https://example.com"));
        assert!(!o.matches("https://a.b.example.com"));
        assert!(!o.matches("http://app.example.com"));
        assert!(!o.matches("https://app.example.com.evil.com"));
        assert!(!o.matches("https://appexample.com"));
        let plain = Origin::parse("http://localhost:3000").unwrap();
        assert!(plain.matches("http://localhost:3000"));
        assert!(!plain.matches("http://localhost:3001"));
        assert!(!plain.matches("null"));
    }

    #[test]
    fn parses_origin_lists_with_star_alone() {
        let o = AllowedOrigins::parse("https://a.com, https://b.com,https://a.com/").unwrap();
        assert_eq!(o.to_string(), "https://a.com,https://b.com");
        assert_eq!(AllowedOrigins::parse("*").unwrap().to_string(), "*");
        assert!(AllowedOrigins::parse("*,https://a.com").is_err());
        assert!(AllowedOrigins::parse("https://a.com,,https://b.com").is_err());
        assert!(AllowedOrigins::parse("").is_err());
        assert!(AllowedOrigins::from_origins([]).is_err());
        assert!(AllowedOrigins::any().allows("https://anything.example"));
    }

    #[test]
    fn rejects_viewer_id_over_40_chars() {
        assert!(ViewerId::parse(&"a".repeat(40)).is_ok());
        let err = ViewerId::parse(&"a".repeat(41)).unwrap_err();
        assert_eq!(err.claim(), names::VIEWER_ID);
        assert!(err.rule().contains("1 to 40"));
        assert!(ViewerId::parse("").is_err());
        assert!(ViewerId::parse("a\nb").is_err());
        // 20 two-byte characters are 40 bytes; 21 are too many.
        assert!(ViewerId::parse(&"é".repeat(20)).is_ok());
        assert!(ViewerId::parse(&"é".repeat(21)).is_err());
    }

    #[test]
    fn keeps_viewer_session_version_revocable() {
        assert!(ViewerSessionVersion::new(0).is_ok());
        assert!(ViewerSessionVersion::new(2_147_483_647).is_ok());
        let err = ViewerSessionVersion::new(2_147_483_648).unwrap_err();
        assert!(err.rule().contains("revoked"));
        assert!("-1".parse::<ViewerSessionVersion>().is_err());
    }

    #[test]
    fn parses_maximum_resolution() {
        assert_eq!(
            "FULL_HD".parse::<MaximumResolution>().unwrap(),
            MaximumResolution::FullHd
        );
        assert!("full_hd".parse::<MaximumResolution>().is_err());
        assert!("4K".parse::<MaximumResolution>().is_err());
    }

    #[test]
    fn serialises_every_claim_under_its_ivs_name() {
        let uuid = Uuid::parse_str("6a1a9c5e-0d3b-4c2f-9f4f-0b1f0e3c2a11").unwrap();
        let claims = build(
            PlaybackClaims::builder(arn())
                .expires_in(Duration::from_secs(300))
                .allowed_origins(AllowedOrigins::parse("https://a.com,https://*.b.com").unwrap())
                .strict_origin_enforcement(true)
                .single_use_uuid(uuid)
                .viewer_id(ViewerId::parse("viewer-1").unwrap())
                .viewer_session_version(ViewerSessionVersion::new(7).unwrap())
                .maximum_resolution(MaximumResolution::Hd),
        )
        .unwrap();
        assert_eq!(
            claims.to_json(),
            format!(
                r#"{{"aws:channel-arn":"{ARN}","aws:access-control-allow-origin":"https://a.com,https://*.b.com","aws:strict-origin-enforcement":true,"aws:single-use-uuid":"6a1a9c5e-0d3b-4c2f-9f4f-0b1f0e3c2a11","aws:viewer-id":"viewer-1","aws:viewer-session-version":7,"aws:maximum-resolution":"HD","exp":1800000300}}"#
            )
        );
    }

    #[test]
    fn leaves_absent_claims_out() {
        let claims =
            build(PlaybackClaims::builder(arn()).expires_in(Duration::from_secs(3600))).unwrap();
        assert_eq!(
            claims.to_json(),
            format!(r#"{{"aws:channel-arn":"{ARN}","exp":1800003600}}"#)
        );
        assert!(claims.is_shareable());
    }

    #[test]
    fn requires_exp() {
        let err = build(PlaybackClaims::builder(arn())).unwrap_err();
        assert_eq!(err.claim(), names::EXP);
    }

    #[test]
    fn refuses_exp_in_the_past_or_now() {
        let past = ExpiresAt::from_unix_seconds(1_800_000_000).unwrap();
        let err = build(PlaybackClaims::builder(arn()).expires_at(past)).unwrap_err();
        assert!(err.rule().contains("not in the future"), "{err}");
    }

    #[test]
    fn caps_viewer_and_single_use_tokens_below_ten_minutes() {
        let viewer = ViewerId::parse("v").unwrap();
        let ok = PlaybackClaims::builder(arn())
            .viewer_id(viewer.clone())
            .expires_in(Duration::from_secs(595));
        assert!(build(ok).is_ok());
        let too_long = PlaybackClaims::builder(arn())
            .viewer_id(viewer.clone())
            .expires_in(Duration::from_secs(600));
        let err = build(too_long).unwrap_err();
        assert_eq!(err.claim(), names::EXP);
        assert!(err.rule().contains("aws:viewer-id"), "{err}");
        let no_skew = PlaybackClaims::builder(arn())
            .viewer_id(viewer)
            .clock_skew(Duration::ZERO)
            .expires_in(Duration::from_secs(600));
        assert!(build(no_skew).is_ok());
        let single = PlaybackClaims::builder(arn())
            .single_use()
            .expires_in(Duration::from_secs(601));
        assert!(
            build(single)
                .unwrap_err()
                .rule()
                .contains("aws:single-use-uuid")
        );
        // Long-lived shareable tokens have no cap.
        assert!(
            build(PlaybackClaims::builder(arn()).expires_in(Duration::from_secs(86_400))).is_ok()
        );
    }

    #[test]
    fn generates_a_fresh_v4_uuid_for_single_use() {
        let b = PlaybackClaims::builder(arn())
            .single_use()
            .expires_in(Duration::from_secs(60));
        let a = build(b.clone()).unwrap().single_use_uuid().unwrap();
        let c = build(b).unwrap().single_use_uuid().unwrap();
        assert_ne!(a, c);
        assert_eq!(a.get_version_num(), 4);
    }

    #[test]
    fn strict_origin_needs_at_most_five_origins() {
        let five = AllowedOrigins::parse(
            "https://a.com,https://b.com,https://c.com,https://d.com,https://e.com",
        )
        .unwrap();
        let six = AllowedOrigins::parse(
            "https://a.com,https://b.com,https://c.com,https://d.com,https://e.com,https://f.com",
        )
        .unwrap();
        let base = PlaybackClaims::builder(arn()).expires_in(Duration::from_secs(60));
        assert!(
            build(
                base.clone()
                    .allowed_origins(five)
                    .strict_origin_enforcement(true)
            )
            .is_ok()
        );
        let err = build(
            base.clone()
                .allowed_origins(six.clone())
                .strict_origin_enforcement(true),
        )
        .unwrap_err();
        assert!(err.rule().contains("at most 5"), "{err}");
        assert!(build(base.clone().allowed_origins(six)).is_ok());
        let err = build(base.strict_origin_enforcement(true)).unwrap_err();
        assert_eq!(err.claim(), names::STRICT_ORIGIN);
    }

    #[test]
    fn session_version_needs_a_viewer_id() {
        let err = build(
            PlaybackClaims::builder(arn())
                .expires_in(Duration::from_secs(60))
                .viewer_session_version(ViewerSessionVersion::new(1).unwrap()),
        )
        .unwrap_err();
        assert_eq!(err.claim(), names::VIEWER_SESSION_VERSION);
    }

    #[test]
    fn refuses_a_large_clock_skew() {
        let err = build(
            PlaybackClaims::builder(arn())
                .expires_in(Duration::from_secs(60))
                .clock_skew(Duration::from_secs(61)),
        )
        .unwrap_err();
        assert!(err.rule().contains("clock skew"));
    }

    #[test]
    fn parses_payload_back_and_names_bad_types() {
        let claims = build(
            PlaybackClaims::builder(arn())
                .expires_in(Duration::from_secs(60))
                .viewer_id(ViewerId::parse("v").unwrap()),
        )
        .unwrap();
        let (back, unknown) = PlaybackClaims::from_payload(claims.to_json().as_bytes()).unwrap();
        assert_eq!(back, claims);
        assert!(unknown.is_empty());
        let err = PlaybackClaims::from_payload(
            format!(r#"{{"aws:channel-arn":"{ARN}","exp":"1800000060"}}"#).as_bytes(),
        )
        .unwrap_err();
        assert_eq!(err.claim(), names::EXP);
        let err = PlaybackClaims::from_payload(
            format!(r#"{{"aws:channel-arn":"{ARN}","exp":1800000060.5}}"#).as_bytes(),
        )
        .unwrap_err();
        assert_eq!(err.claim(), names::EXP);
        let (_, unknown) = PlaybackClaims::from_payload(
            format!(r#"{{"aws:channel-arn":"{ARN}","exp":1800000060,"iat":1}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(unknown, ["iat"]);
        let err = PlaybackClaims::from_payload(br#"{"exp":1800000060}"#).unwrap_err();
        assert_eq!(err.claim(), names::CHANNEL_ARN);
    }

    #[test]
    fn derives_stable_pseudonymous_viewer_ids() {
        let hasher = ViewerIdHasher::new(&[7u8; 32]).unwrap();
        let a = hasher.viewer_id("alice@example.com");
        assert_eq!(a.as_str().len(), 40);
        assert_eq!(a, hasher.viewer_id("alice@example.com"));
        assert_ne!(a, hasher.viewer_id("bob@example.com"));
        assert!(!a.as_str().contains("alice"));
        let other = ViewerIdHasher::new(&[8u8; 32]).unwrap();
        assert_ne!(a, other.viewer_id("alice@example.com"));
        assert!(ViewerIdHasher::new(&[1u8; 31]).is_err());
        assert!(!format!("{hasher:?}").contains('7'));
    }
}
