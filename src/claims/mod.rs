//! The claims of an IVS playback token, as types that only hold values IVS
//! accepts.
//!
//! Each claim has a newtype that parses (`ChannelArn`, `ExpiresAt`,
//! `AllowedOrigins`, `ViewerId`, `ViewerSessionVersion`,
//! `MaximumResolution`), and [`PlaybackClaims::builder`] checks the rules that
//! tie claims together (the 10-minute limit on `exp` for viewer-id and
//! single-use tokens, at most 5 origins with strict enforcement). A
//! `PlaybackClaims` that exists is one IVS accepts: the facts, with their
//! sources, are in `docs/ivs-facts.md` §1, taken from the IVS page
//! [private-channels-generate-tokens](https://docs.aws.amazon.com/ivs/latest/LowLatencyUserGuide/private-channels-generate-tokens.html)
//! and the IVS service model.
//!
//! The types are re-exported at the crate root; this module adds the wire
//! [`names`] of the claims and the limits IVS sets.
//!
//! Times are Unix time in whole **seconds** everywhere (IVS reads `exp` so);
//! lengths of text are counted in characters (Unicode scalar values), as the
//! IVS docs and the service model count them.

mod arn;
mod expiry;
mod origin;
mod playback;
mod resolution;
mod viewer;

pub use self::arn::ChannelArn;
pub use self::expiry::ExpiresAt;
pub(crate) use self::expiry::NumericDate;
pub use self::origin::{AllowedOrigins, Origin};
pub(crate) use self::playback::payload_map;
pub use self::playback::{PlaybackClaims, PlaybackClaimsBuilder};
pub use self::resolution::MaximumResolution;
pub use self::viewer::{ViewerId, ViewerIdHasher, ViewerSessionVersion};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wire names of the eight IVS claims (private-channels-generate-tokens),
/// and of `nbf`, which the verifier reads. [`ClaimError::claim`] is one of
/// these.
///
/// [`ClaimError::claim`]: crate::ClaimError::claim
pub mod names {
    /// `aws:channel-arn`: the channel the token plays (a string; required in
    /// practice).
    ///
    /// See `ChannelArn`.
    pub const CHANNEL_ARN: &str = "aws:channel-arn";
    /// `aws:access-control-allow-origin`: comma-separated origins allowed to
    /// play (a string; optional).
    ///
    /// See `AllowedOrigins`.
    pub const ALLOW_ORIGIN: &str = "aws:access-control-allow-origin";
    /// `aws:strict-origin-enforcement`: check the origin on every playlist
    /// and segment request, not only the first (a boolean; optional).
    pub const STRICT_ORIGIN: &str = "aws:strict-origin-enforcement";
    /// `aws:single-use-uuid`: the token starts playback once (a UUID string;
    /// optional; caps `exp` at 10 minutes).
    pub const SINGLE_USE_UUID: &str = "aws:single-use-uuid";
    /// `aws:viewer-id`: a pseudonymous viewer, needed for revocation (a
    /// string of 1 to 40 characters; optional; caps `exp` at 10 minutes).
    ///
    /// See `ViewerId`.
    pub const VIEWER_ID: &str = "aws:viewer-id";
    /// `aws:viewer-session-version`: revocation generation of the viewer (an
    /// integer; optional, needs `aws:viewer-id`).
    ///
    /// See `ViewerSessionVersion`.
    pub const VIEWER_SESSION_VERSION: &str = "aws:viewer-session-version";
    /// `aws:maximum-resolution`: `SD`, `HD` or `FULL_HD` (a string;
    /// optional).
    ///
    /// See `MaximumResolution`.
    pub const MAXIMUM_RESOLUTION: &str = "aws:maximum-resolution";
    /// `exp`: expiry, Unix time in **seconds** (an integer; required in
    /// practice).
    ///
    /// See `ExpiresAt`.
    pub const EXP: &str = "exp";
    /// `nbf`: not before, Unix time in seconds. Not an IVS claim: verifiers
    /// enforce it as RFC 7519 says, the signer never writes it.
    pub const NBF: &str = "nbf";
}

/// IVS refuses `exp` more than 10 minutes (600 s) after issue on tokens with
/// `aws:viewer-id` or `aws:single-use-uuid` (private-channels-generate-tokens;
/// `docs/ivs-facts.md` §1).
///
/// [`TokenSigner::sign`](crate::TokenSigner::sign) refuses to sign past it,
/// and [`Verifier`](crate::Verifier) rejects tokens past it.
pub const SHORT_LIVED_LIMIT: Duration = Duration::from_secs(600);

/// The default clock-skew margin (5 s) that the builder keeps below
/// [`SHORT_LIVED_LIMIT`], so that a token is still inside the limit when
/// our clock runs a little ahead of IVS's (with no issue time in the token,
/// IVS can only measure the 10 minutes on its own clock): by default the longest lifetime of a viewer-id or
/// single-use token is 595 s. Change it with
/// [`PlaybackClaimsBuilder::clock_skew`].
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// At most this many origins (5) may be listed in
/// `aws:access-control-allow-origin` when `aws:strict-origin-enforcement` is
/// on; without it the list is unlimited (private-channels-generate-tokens).
pub const MAX_STRICT_ORIGINS: usize = 5;

/// The largest viewer-session version that can still be revoked, 2^31-1
/// (2 147 483 647): the claim is a 64-bit integer, but the revocation API's
/// filter, `viewerSessionVersionsLessThanOrEqualTo`, is a 32-bit signed
/// integer in the IVS service model (`docs/ivs-facts.md` §1, §5), so a larger
/// version could never be revoked.
pub const MAX_VIEWER_SESSION_VERSION: u32 = i32::MAX as u32;

/// `exp` values from here on are read as milliseconds by mistake: as seconds
/// they lie past the year 5000. The AWS docs' Node example makes exactly this
/// mistake, which makes tokens that never expire.
pub(crate) const MILLISECONDS_THRESHOLD: u64 = 100_000_000_000;

const CHANNEL_ARN_MAX_LEN: usize = 128;
const VIEWER_ID_MAX_LEN: usize = 40;

/// Whole Unix seconds of `t`, 0 before 1970.
/// A random (version 4) UUID, or [`Error::Random`] when the system
/// generator fails (`Uuid::new_v4` would panic then).
pub(crate) fn random_uuid() -> Result<uuid::Uuid, crate::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| crate::Error::Random)?;
    Ok(uuid::Builder::from_random_bytes(bytes).into_uuid())
}

pub(crate) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::error::{ClaimError, Error};

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
        let err = AllowedOrigins::parse("").unwrap_err();
        assert!(err.rule().starts_with("is empty"), "{err}");
        assert!(!err.rule().contains("between"), "{err}");
        let err = AllowedOrigins::parse("https://a.com,").unwrap_err();
        assert!(err.rule().contains("a comma too many"), "{err}");
        // Messages speak of values, never of Rust API names.
        for bad in ["*,https://a.com", "https://a.com,*"] {
            let err = AllowedOrigins::parse(bad).unwrap_err().to_string();
            assert!(
                !err.contains("::") && !err.contains("AllowedOrigins"),
                "{err}"
            );
        }
        let err = Origin::parse("*").unwrap_err().to_string();
        assert!(!err.contains("::") && err.contains("only value"), "{err}");
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
        // Counted in characters, as the IVS docs and model count: 21 `é`
        // (42 bytes) are 21 characters, 40 `é` too are fine, 41 are not.
        assert!(ViewerId::parse(&"é".repeat(21)).is_ok());
        assert!(ViewerId::parse(&"é".repeat(40)).is_ok());
        let err = ViewerId::parse(&"é".repeat(41)).unwrap_err();
        assert!(err.rule().contains("got 41"), "{err}");
        assert!(err.rule().contains("not bytes"), "{err}");
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
        // A NumericDate may have a fraction (RFC 7519 §2): rounded down.
        let (back, _) = PlaybackClaims::from_payload(
            format!(r#"{{"aws:channel-arn":"{ARN}","exp":1800000060.5}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(back.expires_at().unix_seconds(), 1_800_000_060);
        for bad in ["-1", "-0.5", "true", "null", "[1]"] {
            let err = PlaybackClaims::from_payload(
                format!(r#"{{"aws:channel-arn":"{ARN}","exp":{bad}}}"#).as_bytes(),
            )
            .unwrap_err();
            assert_eq!(err.claim(), names::EXP, "{bad}");
            assert!(err.rule().contains("NumericDate"), "{bad}: {err}");
        }
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
