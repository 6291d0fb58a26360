//! What the IVS edge does with a playback request: check the token of a
//! private channel against the key pairs imported now, and answer with a
//! multivariant playlist or a 403 that says why.
//!
//! The edge writes its own session URLs into the multivariant playlist; the
//! player fetches variant playlists and segments from them without the
//! token. The session remembers what the token allowed (origins, strict
//! enforcement, maximum resolution, viewer) for those later requests.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::error::ApiError;
use super::percent_decode;
use super::state::{PlaybackRestrictionPolicy, RegionState, Scope};
use crate::claims::unix_seconds;
use crate::{AllowedOrigins, ChannelArn, MaximumResolution, PublicKey, Verifier};

/// How long a playback session's URLs stay valid.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A failed playback request: status and the reason in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) error_code: &'static str,
    pub(crate) reason: String,
}

impl Refusal {
    fn token(reason: impl Into<String>) -> Self {
        Self {
            status: 403,
            error_code: "invalid_playback_auth_token",
            reason: reason.into(),
        }
    }

    /// A request for a session URL that does not exist (any more).
    pub(crate) fn session(reason: impl Into<String>) -> Self {
        Self {
            status: 404,
            error_code: "not_found",
            reason: reason.into(),
        }
    }

    /// A channel that exists but is not broadcasting. The IVS Web Player
    /// reports a 404 on the multivariant playlist as `ErrorNotAvailable`,
    /// "the stream is invalid (e.g., the playback URL is incorrect) or not
    /// online" (IVS Player SDK reference, `PlayerError`). The body's words
    /// are ours; `not_found` is the code Twitch's edge, whose body shape IVS
    /// shares, gives an offline channel (streamlink/streamlink#5709:
    /// `twirp error not_found: transcode does not exist`) [OPEN: IVS's exact
    /// body].
    pub(crate) fn offline(channel_arn: &str) -> Self {
        Self {
            status: 404,
            error_code: "not_found",
            reason: format!(
                "channel {channel_arn} is offline: no stream is live on it (started by a broadcaster, here by `POST /_local/streams/start`)"
            ),
        }
    }

    /// A viewer the channel's playback restriction policy does not allow.
    /// IVS documents the policy, not the edge's refusal: a 403, as for a
    /// token, which the player reports as `ErrorAuthorization` [OPEN: IVS's
    /// status and code].
    fn restricted(reason: impl Into<String>) -> Self {
        Self {
            status: 403,
            error_code: "playback_restricted",
            reason: reason.into(),
        }
    }

    /// A playback path that names nothing.
    pub(crate) fn not_found(reason: impl Into<String>) -> Self {
        Self {
            status: 404,
            error_code: "not_found",
            reason: reason.into(),
        }
    }

    /// An injected fault or a failed save, in the edge's shape: a player
    /// sees the same kind of body whatever went wrong.
    pub(crate) fn from_fault(e: &ApiError) -> Self {
        Self {
            status: e.status.as_u16(),
            error_code: e.code,
            reason: e.message.clone(),
        }
    }

    /// The IVS edge's body: `[{"url","error","error_code","type"}]`.
    pub(crate) fn body(&self, url: &str) -> String {
        json!([{
            "url": url,
            "error": self.reason,
            "error_code": self.error_code,
            "type": "error",
        }])
        .to_string()
    }
}

/// One rendition of the local stream.
pub(crate) struct Rendition {
    pub(crate) name: &'static str,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) bandwidth: u32,
}

/// The renditions every channel offers, best first.
pub(crate) const RENDITIONS: &[Rendition] = &[
    Rendition {
        name: "720p30",
        width: 1280,
        height: 720,
        bandwidth: 700_000,
    },
    Rendition {
        name: "360p30",
        width: 640,
        height: 360,
        bandwidth: 350_000,
    },
];

/// A started playback.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) scope: Scope,
    pub(crate) channel_arn: String,
    pub(crate) origins: Option<AllowedOrigins>,
    pub(crate) strict: bool,
    pub(crate) max_height: u32,
    pub(crate) viewer: Option<(String, u32)>,
    /// The stream the session plays: once it ends, so does the session.
    pub(crate) stream_id: String,
    /// A public channel's policy with strict origin enforcement: its ARN and
    /// the origins every later request must carry one of.
    pub(crate) policy_origins: Option<(String, Vec<String>)>,
    pub(crate) expires: SystemTime,
    /// The token was single-use and this start consumed it.
    pub(crate) consumed_single_use: bool,
}

/// Sessions by id. Kept in memory only: a restart ends playback, as a new
/// edge would.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_id: HashMap<String, Session>,
}

/// Most sessions kept at once. Each play starts one that lives for hours,
/// so without a bound a long run (a soak at thousands of plays a minute)
/// grows memory for as long; past the bound the sessions started longest
/// ago go first, as an edge would drop its idlest viewers.
const MAX_SESSIONS: usize = 10_000;

impl Sessions {
    pub(crate) fn insert(&mut self, id: String, session: Session, now: SystemTime) {
        // Pruned only when full, so that a start costs no scan of every
        // session.
        if self.by_id.len() >= MAX_SESSIONS {
            self.by_id.retain(|_, s| s.expires > now);
        }
        if self.by_id.len() >= MAX_SESSIONS {
            let mut expiries: Vec<SystemTime> = self.by_id.values().map(|s| s.expires).collect();
            expiries.sort_unstable();
            if let Some(cut) = expiries.get(MAX_SESSIONS / 4).copied() {
                self.by_id.retain(|_, s| s.expires > cut);
            }
        }
        self.by_id.insert(id, session);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn get(&self, id: &str, now: SystemTime) -> Option<&Session> {
        self.by_id.get(id).filter(|s| s.expires > now)
    }
}

/// The `token` query parameter of a playback request, percent-decoded, as
/// browsers and players send it (`None` when absent or empty).
///
/// `+` is kept as it is: a JWT has none, and a `+` means a token in standard
/// base64, which the verifier names, where a space would only puzzle. The
/// parameter twice is refused: what the edge does with two is not documented
/// [OPEN], and choosing one of them could play a token nobody meant.
pub(crate) fn token_from_query(query: Option<&str>) -> Result<Option<String>, Refusal> {
    let mut found: Vec<String> = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(name).as_deref() != Some("token") {
            continue;
        }
        let value = percent_decode(value).ok_or_else(|| {
            Refusal::token(
                "the `token` query parameter is not valid percent-encoding (a `%` not followed by two hex digits, or not UTF-8)",
            )
        })?;
        found.push(value);
    }
    match found.len() {
        0 | 1 => Ok(found.pop().filter(|t| !t.is_empty())),
        n => Err(Refusal::token(format!(
            "the request has {n} `token` query parameters; send exactly one"
        ))),
    }
}

/// The channel a playback file name names: `REGION.ACCOUNT.channel.ID.m3u8`.
pub(crate) fn parse_playback_file(file: &str) -> Option<(Scope, String)> {
    let stem = file.strip_suffix(".m3u8")?;
    let mut parts = stem.split('.');
    let (Some(region), Some(account), Some("channel"), Some(id), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some((
        Scope {
            account: account.to_owned(),
            region: region.to_owned(),
        },
        id.to_owned(),
    ))
}

/// Who asks for playback: the `token` query parameter, the `Origin` header,
/// and the country the trusted header names.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Viewer<'a> {
    pub(crate) token: Option<&'a str>,
    pub(crate) origin: Option<&'a str>,
    pub(crate) country: Option<&'a str>,
}

/// Checks a playback request for a channel. On success the session to start;
/// `region` is changed only to consume a single-use token.
pub(crate) fn authorize(
    region: &mut RegionState,
    scope: &Scope,
    channel_id: &str,
    viewer: Viewer<'_>,
    now: SystemTime,
) -> Result<Session, Refusal> {
    let Viewer {
        token,
        origin,
        country,
    } = viewer;
    let channel = region.channels.get(channel_id).ok_or_else(|| Refusal {
        status: 404,
        error_code: "channel_not_found",
        reason: format!(
            "no channel {channel_id} in {} {}",
            scope.account, scope.region
        ),
    })?;
    let channel_arn = channel.arn().to_owned();
    // Liveness is told only to a viewer who may watch: it is checked after
    // the token or the policy [OPEN: IVS's order].
    let stream_id = region
        .live_session(&channel_arn)
        .map(|s| s.stream_id.clone());
    let live = || {
        stream_id
            .clone()
            .ok_or_else(|| Refusal::offline(&channel_arn))
    };
    let open = Session {
        scope: scope.clone(),
        channel_arn: channel_arn.clone(),
        origins: None,
        strict: false,
        max_height: u32::MAX,
        viewer: None,
        stream_id: String::new(),
        policy_origins: None,
        expires: now + SESSION_LIFETIME,
        consumed_single_use: false,
    };
    if !channel.authorized() {
        // "Playback restriction policies are not applied to private
        // channels" is the other side of this: only public channels are
        // checked against theirs (docs/ivs-facts.md §1).
        let policy = channel
            .doc
            .get("playbackRestrictionPolicyArn")
            .and_then(serde_json::Value::as_str)
            .filter(|arn| !arn.is_empty())
            .and_then(|arn| {
                region
                    .playback_restriction_policies
                    .values()
                    .find(|p| p.arn == arn)
            });
        let policy_origins = match policy {
            Some(policy) => check_policy(policy, origin, country)?,
            None => None,
        };
        return Ok(Session {
            stream_id: live()?,
            policy_origins,
            ..open
        });
    }
    let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
        Refusal::token("the channel is private and the request has no `token` query parameter")
    })?;
    let keys: Vec<PublicKey> = region
        .key_pairs
        .values()
        .filter_map(|k| PublicKey::from_pem(&k.public_key_pem).ok())
        .collect();
    let expected = ChannelArn::parse(&channel_arn)
        .map_err(|e| Refusal::token(format!("the channel's ARN is not valid: {e}")))?;
    let verified = Verifier::new(&keys)
        .expect_channel(expected)
        .verify_at(token, now)
        .map_err(|r| Refusal::token(r.to_string()))?;
    let claims = verified.claims();

    let viewer = claims.viewer_id().map(|v| {
        (
            v.as_str().to_owned(),
            claims.viewer_session_version().map_or(0, |v| v.get()),
        )
    });
    if let Some((id, version)) = &viewer {
        check_revocation(region, &channel_arn, id, *version)?;
    }
    check_origin(
        claims.allowed_origins(),
        claims.strict_origin_enforcement(),
        origin,
    )?;
    // Before a single-use token is spent: an offline channel does not use it.
    let stream_id = live()?;
    if let Some(uuid) = claims.single_use_uuid() {
        let key = uuid.hyphenated().to_string();
        let now_s = unix_seconds(now);
        region.used_single_use.retain(|_, exp| *exp > now_s);
        if region.used_single_use.contains_key(&key) {
            return Err(Refusal::token(format!(
                "single-use token already used (aws:single-use-uuid {key})"
            )));
        }
        region
            .used_single_use
            .insert(key, claims.expires_at().unix_seconds());
    }
    Ok(Session {
        origins: claims.allowed_origins().cloned(),
        strict: claims.strict_origin_enforcement(),
        max_height: match claims.maximum_resolution() {
            Some(MaximumResolution::Sd) => 480,
            Some(MaximumResolution::Hd) => 720,
            Some(MaximumResolution::FullHd) | None => u32::MAX,
        },
        viewer,
        stream_id,
        consumed_single_use: claims.single_use_uuid().is_some(),
        ..open
    })
}

/// A revoked viewer's sessions fail, at start and on every later request.
pub(crate) fn check_revocation(
    region: &RegionState,
    channel_arn: &str,
    viewer: &str,
    version: u32,
) -> Result<(), Refusal> {
    if let Some(revoked) = region
        .revocations
        .get(channel_arn)
        .and_then(|m| m.get(viewer))
        .filter(|&&revoked| i64::from(version) <= revoked)
    {
        return Err(Refusal::token(format!(
            "the viewer session is revoked: aws:viewer-id {viewer} with aws:viewer-session-version {version} (revoked up to {revoked})"
        )));
    }
    Ok(())
}

/// The `Origin` check: browsers send `Origin` and it must be allowed; with
/// strict enforcement every request must carry an allowed one.
pub(crate) fn check_origin(
    allowed: Option<&AllowedOrigins>,
    strict: bool,
    origin: Option<&str>,
) -> Result<(), Refusal> {
    match (allowed, origin) {
        (Some(allowed), Some(origin)) if !allowed.allows(origin) => Err(Refusal::token(format!(
            "origin {origin} is not allowed by aws:access-control-allow-origin ({allowed})"
        ))),
        (Some(allowed), None) if strict => Err(Refusal::token(format!(
            "aws:strict-origin-enforcement requires an Origin header matching {allowed}"
        ))),
        _ => Ok(()),
    }
}

/// A public channel's playback restriction policy at the start of playback:
/// the viewer's country must be allowed, and so must the `Origin` of a
/// browser (a request without one passes unless enforcement is strict),
/// as IVS's CreatePlaybackRestrictionPolicy documents `allowedCountries`,
/// `allowedOrigins` and `enableStrictOriginEnforcement`. Empty lists allow
/// all. On success, the origins every later request must carry, when
/// enforcement is strict.
pub(crate) fn check_policy(
    policy: &PlaybackRestrictionPolicy,
    origin: Option<&str>,
    country: Option<&str>,
) -> Result<Option<(String, Vec<String>)>, Refusal> {
    if !policy.allowed_countries.is_empty() {
        // The edge geolocates every viewer; the local IVS cannot, and a
        // viewer whose country it does not know is refused rather than let
        // through a geo-restriction [OPEN: what IVS does with an address it
        // cannot place].
        let Some(country) = country else {
            return Err(Refusal::restricted(format!(
                "the viewer's country is unknown and policy {} allows only {}: the local IVS takes the country from the header it is told to trust (--trusted-country-header)",
                policy.arn,
                policy.allowed_countries.join(", ")
            )));
        };
        if !policy.allowed_countries.iter().any(|c| c == country) {
            return Err(Refusal::restricted(format!(
                "country {country} is not allowed by playback restriction policy {} (allowed: {})",
                policy.arn,
                policy.allowed_countries.join(", ")
            )));
        }
    }
    if policy.allowed_origins.is_empty() {
        return Ok(None);
    }
    let strict = policy.enable_strict_origin_enforcement;
    check_policy_origin(&policy.allowed_origins, strict, origin, &policy.arn)?;
    Ok(strict.then(|| (policy.arn.clone(), policy.allowed_origins.clone())))
}

/// One request's `Origin` against a policy's allowed origins, matched as
/// the token service matches a token's origins ([`Origin::matches`](crate::Origin::matches):
/// normalised, `*.` for one host label), so that a wildcard CreatePlayback-
/// RestrictionPolicy accepts is one the edge can match. IVS documents no
/// matching rules for policies \[OPEN\]; a value that is not an origin
/// (`null`) matches only itself.
pub(crate) fn check_policy_origin(
    allowed: &[String],
    strict: bool,
    origin: Option<&str>,
    policy_arn: &str,
) -> Result<(), Refusal> {
    match origin {
        Some(origin)
            if !allowed.iter().any(|a| {
                a.eq_ignore_ascii_case(origin)
                    || crate::Origin::parse(a).is_ok_and(|allowed| allowed.matches(origin))
            }) =>
        {
            Err(Refusal::restricted(format!(
                "origin {origin} is not allowed by playback restriction policy {policy_arn} (allowed: {})",
                allowed.join(", ")
            )))
        }
        None if strict => Err(Refusal::restricted(format!(
            "playback restriction policy {policy_arn} enforces origins strictly: every request needs an Origin header matching one of {}",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// The multivariant playlist of a session.
pub(crate) fn multivariant_playlist(base_url: &str, session_id: &str, session: &Session) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for r in RENDITIONS.iter().filter(|r| r.height <= session.max_height) {
        out.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},RESOLUTION={}x{},CODECS=\"avc1.4D401F,mp4a.40.2\",FRAME-RATE=30.000\n{base_url}/api/video/v1/session/{session_id}/{}/playlist.m3u8\n",
            r.bandwidth, r.width, r.height, r.name
        ));
    }
    if session.max_height < RENDITIONS.iter().map(|r| r.height).min().unwrap_or(0) {
        // Every rendition is above the cap: offer the smallest rather than
        // nothing, as a real ladder always has an SD rung.
        if let Some(r) = RENDITIONS.last() {
            out.push_str(&format!(
                "#EXT-X-STREAM-INF:BANDWIDTH={},RESOLUTION={}x{}\n{base_url}/api/video/v1/session/{session_id}/{}/playlist.m3u8\n",
                r.bandwidth, r.width, r.height, r.name
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_origins_match_as_token_origins_do() {
        let allowed = vec![
            "https://*.example.com".to_owned(),
            "https://app.example.net:443".to_owned(),
        ];
        let check = |origin| check_policy_origin(&allowed, true, Some(origin), "arn:p").is_ok();
        assert!(check("https://a.example.com"));
        assert!(!check("https://a.b.example.com"), "one label only");
        assert!(!check("https://example.com"));
        assert!(check("https://APP.example.net"), "default port and case");
        assert!(!check("null"));
        assert!(check_policy_origin(&allowed, true, None, "arn:p").is_err());
    }

    #[test]
    fn parses_playback_file_names() {
        let (scope, id) = parse_playback_file("us-west-2.123456789012.channel.abcd.m3u8").unwrap();
        assert_eq!(scope.region, "us-west-2");
        assert_eq!(scope.account, "123456789012");
        assert_eq!(id, "abcd");
        assert!(parse_playback_file("us-west-2.123.stream.abcd.m3u8").is_none());
        assert!(parse_playback_file("us-west-2.123.channel.abcd").is_none());
    }

    #[test]
    fn reads_the_token_parameter_as_players_send_it() {
        assert_eq!(
            token_from_query(Some("token=a.b.c")),
            Ok(Some("a.b.c".into()))
        );
        assert_eq!(
            token_from_query(Some("x=1&token=a%2Eb.c&y")),
            Ok(Some("a.b.c".into()))
        );
        assert_eq!(
            token_from_query(Some("%74oken=a.b.c")),
            Ok(Some("a.b.c".into()))
        );
        assert_eq!(token_from_query(Some("token=a+b")), Ok(Some("a+b".into())));
        assert_eq!(token_from_query(Some("token=")), Ok(None));
        assert_eq!(token_from_query(None), Ok(None));
        assert_eq!(token_from_query(Some("tokens=a.b.c")), Ok(None));
        let twice = token_from_query(Some("token=a.b.c&token=a.b.c")).unwrap_err();
        assert_eq!(twice.status, 403);
        assert!(twice.reason.contains("2 `token`"), "{}", twice.reason);
        let bad = token_from_query(Some("token=a%zz")).unwrap_err();
        assert!(bad.reason.contains("percent-encoding"), "{}", bad.reason);
    }

    #[test]
    fn origin_rules() {
        let allowed = AllowedOrigins::parse("https://a.com").unwrap();
        assert!(check_origin(Some(&allowed), false, None).is_ok());
        assert!(check_origin(Some(&allowed), false, Some("https://a.com")).is_ok());
        assert!(check_origin(Some(&allowed), false, Some("https://b.com")).is_err());
        assert!(check_origin(Some(&allowed), true, None).is_err());
        assert!(check_origin(None, false, Some("https://b.com")).is_ok());
    }

    #[test]
    fn sessions_are_bounded_and_the_oldest_go_first() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let session = |n: u64| Session {
            scope: Scope {
                account: "123456789012".into(),
                region: "us-west-2".into(),
            },
            channel_arn: String::new(),
            origins: None,
            strict: false,
            max_height: u32::MAX,
            viewer: None,
            stream_id: String::new(),
            policy_origins: None,
            expires: now + Duration::from_secs(n),
            consumed_single_use: false,
        };
        let mut sessions = Sessions::default();
        for n in 0..(MAX_SESSIONS as u64 * 2) {
            sessions.insert(format!("s{n}"), session(n + 1), now);
        }
        assert!(sessions.len() <= MAX_SESSIONS);
        let last = format!("s{}", MAX_SESSIONS * 2 - 1);
        assert!(sessions.get(&last, now).is_some(), "the newest is kept");
        assert!(sessions.get("s0", now).is_none(), "the oldest went first");
    }
}
