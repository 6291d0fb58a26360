//! Properties over arbitrary claims: every valid set of claims signs and
//! verifies back to itself, with every backend; every invalid value is
//! refused, naming its claim.

// Helpers outside #[test] functions unwrap too: a set-up failure should stop
// the test loudly.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::signer_for;
use ivs_playback_auth::claims::names;
use ivs_playback_auth::{
    AllowedOrigins, Backend, ChannelArn, Error, ExpiresAt, MaximumResolution, Origin,
    PlaybackClaims, PrivateKey, Verifier, ViewerId, ViewerSessionVersion,
};
use proptest::prelude::*;

fn key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate().unwrap())
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn channel_arn() -> impl Strategy<Value = String> {
    (
        "[a-z]{2}-[a-z]{4,9}-[1-9]",
        "[0-9]{12}",
        "[a-zA-Z0-9][a-zA-Z0-9-]{0,40}",
    )
        .prop_map(|(region, account, id)| format!("arn:aws:ivs:{region}:{account}:channel/{id}"))
}

fn origin() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["http", "https", "HTTPS"]),
        prop::bool::ANY,
        prop::collection::vec("[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", 1..4),
        prop::option::of(1u16..),
    )
        .prop_map(|(scheme, wild, labels, port)| {
            let host = labels.join(".");
            let host = if wild && labels.len() >= 2 {
                format!("*.{host}")
            } else {
                host
            };
            match port {
                Some(p) => format!("{scheme}://{host}:{p}"),
                None => format!("{scheme}://{host}"),
            }
        })
}

#[derive(Debug, Clone)]
struct Input {
    channel: String,
    ttl: u64,
    origins: Option<Vec<String>>,
    any_origin: bool,
    strict: bool,
    single_use: bool,
    viewer: Option<String>,
    version: Option<u32>,
    resolution: Option<MaximumResolution>,
}

fn valid_input() -> impl Strategy<Value = Input> {
    (
        channel_arn(),
        prop::option::of(prop::collection::vec(origin(), 1..6)),
        prop::bool::ANY,
        prop::bool::ANY,
        prop::bool::ANY,
        prop::option::of("[ -~]{1,40}"),
        0u32..=i32::MAX as u32,
        prop::option::of(prop::sample::select(vec![
            MaximumResolution::Sd,
            MaximumResolution::Hd,
            MaximumResolution::FullHd,
        ])),
        1u64..100_000,
    )
        .prop_map(
            |(
                channel,
                origins,
                any_origin,
                strict,
                single_use,
                viewer,
                version,
                resolution,
                ttl,
            )| {
                let short = single_use || viewer.is_some();
                let ttl = if short { 1 + ttl % 595 } else { ttl };
                let version = viewer.as_ref().map(|_| version);
                Input {
                    channel,
                    ttl,
                    strict: strict && (origins.is_some() || any_origin),
                    origins,
                    any_origin,
                    single_use,
                    viewer,
                    version,
                    resolution,
                }
            },
        )
}

fn build(input: &Input) -> Result<PlaybackClaims, Error> {
    let mut b = PlaybackClaims::builder(ChannelArn::parse(&input.channel)?)
        .expires_in(Duration::from_secs(input.ttl))
        .strict_origin_enforcement(input.strict);
    if input.any_origin {
        b = b.allowed_origins(AllowedOrigins::any());
    } else if let Some(origins) = &input.origins {
        let parsed = origins
            .iter()
            .map(|o| Origin::parse(o))
            .collect::<Result<Vec<_>, _>>()?;
        b = b.allowed_origins(AllowedOrigins::from_origins(parsed)?);
    }
    if input.single_use {
        b = b.single_use();
    }
    if let Some(v) = &input.viewer {
        b = b.viewer_id(ViewerId::parse(v)?);
    }
    if let Some(v) = input.version {
        b = b.viewer_session_version(ViewerSessionVersion::new(v.into())?);
    }
    if let Some(r) = input.resolution {
        b = b.maximum_resolution(r);
    }
    b.build_at(now())
}

fn claim_of(result: Result<PlaybackClaims, Error>) -> Option<&'static str> {
    match result {
        Err(Error::Claim(e)) => Some(e.claim()),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn valid_claims_sign_and_verify_back_to_themselves(input in valid_input()) {
        let origin_count = if input.any_origin { 1 } else { input.origins.as_ref().map_or(0, |o| {
            o.iter().map(|s| Origin::parse(s).unwrap()).collect::<std::collections::HashSet<_>>().len()
        }) };
        let claims = build(&input);
        if input.strict && origin_count > 5 {
            prop_assert_eq!(claim_of(claims), Some(names::ALLOW_ORIGIN));
            return Ok(());
        }
        let claims = claims.unwrap();
        let verifier = Verifier::new([key().public_key()])
            .expect_channel(ChannelArn::parse(&input.channel).unwrap());
        for &backend in Backend::ALL {
            let token = signer_for(key(), backend).sign_at(&claims, now()).unwrap();
            let verified = verifier.verify_at(token.as_str(), now()).unwrap();
            prop_assert_eq!(verified.claims(), &claims);
            prop_assert!(verified.unknown_claims().is_empty());
        }
    }

    #[test]
    fn channel_arns_off_the_pattern_are_refused(s in "\\PC{0,140}") {
        let matches_pattern = regex_like_channel_arn(&s);
        prop_assert_eq!(ChannelArn::parse(&s).is_ok(), matches_pattern, "{}", s);
    }

    #[test]
    fn mutated_channel_arns_are_judged_like_the_pattern(
        arn in channel_arn(),
        at in any::<prop::sample::Index>(),
        c in prop::sample::select(vec![':', '/', '_', 'A', '0', '-', ' ', '.', 'é']),
        replace in prop::bool::ANY,
    ) {
        let mut chars: Vec<char> = arn.chars().collect();
        let i = at.index(chars.len());
        if replace { chars[i] = c } else { chars.insert(i, c) }
        let s: String = chars.into_iter().collect();
        prop_assert_eq!(ChannelArn::parse(&s).is_ok(), regex_like_channel_arn(&s), "{}", s);
    }

    #[test]
    fn viewer_ids_over_40_bytes_are_refused(s in "[a-zA-Z0-9]{41,80}") {
        let err = ViewerId::parse(&s).unwrap_err();
        prop_assert_eq!(err.claim(), names::VIEWER_ID);
    }

    #[test]
    fn unrevocable_session_versions_are_refused(v in (i32::MAX as u64 + 1)..u64::MAX) {
        let err = ViewerSessionVersion::new(v).unwrap_err();
        prop_assert_eq!(err.claim(), names::VIEWER_SESSION_VERSION);
    }

    #[test]
    fn millisecond_exp_is_refused(ms in 100_000_000_000u64..u64::MAX) {
        let err = ExpiresAt::from_unix_seconds(ms).unwrap_err();
        prop_assert_eq!(err.claim(), names::EXP);
    }

    #[test]
    fn short_lived_tokens_over_the_limit_are_refused(ttl in 596u64..1_000_000, single in prop::bool::ANY) {
        let b = PlaybackClaims::builder(ChannelArn::parse(common::CHANNEL).unwrap())
            .expires_in(Duration::from_secs(ttl));
        let b = if single { b.single_use() } else { b.viewer_id(ViewerId::parse("v").unwrap()) };
        prop_assert_eq!(claim_of(b.build_at(now())), Some(names::EXP));
    }

    #[test]
    fn strict_enforcement_with_over_five_origins_is_refused(hosts in prop::collection::hash_set("[a-z]{1,10}", 6..12)) {
        let origins = hosts.iter().map(|h| Origin::parse(&format!("https://{h}.com")).unwrap());
        let b = PlaybackClaims::builder(ChannelArn::parse(common::CHANNEL).unwrap())
            .expires_in(Duration::from_secs(60))
            .allowed_origins(AllowedOrigins::from_origins(origins).unwrap())
            .strict_origin_enforcement(true);
        prop_assert_eq!(claim_of(b.build_at(now())), Some(names::ALLOW_ORIGIN));
    }

    #[test]
    fn origins_with_paths_are_refused(o in origin(), path in "/[a-z]{1,10}") {
        let err = Origin::parse(&format!("{o}{path}")).unwrap_err();
        prop_assert_eq!(err.claim(), names::ALLOW_ORIGIN);
    }

    #[test]
    fn arbitrary_text_never_panics_the_verifier(s in "\\PC{0,300}") {
        let _ = Verifier::new([key().public_key()]).verify_at(&s, now());
    }
}

/// The service model's pattern, `arn:aws:ivs:[a-z0-9-]+:[0-9]+:channel/[a-zA-Z0-9-]+`,
/// over the whole string, with its 128-character limit: written out by hand
/// so that the property does not test the parser against itself.
fn regex_like_channel_arn(s: &str) -> bool {
    if s.is_empty() || s.len() > 128 {
        return false;
    }
    let Some(rest) = s.strip_prefix("arn:aws:ivs:") else {
        return false;
    };
    let mut it = rest.splitn(3, ':');
    let (Some(region), Some(account), Some(resource)) = (it.next(), it.next(), it.next()) else {
        return false;
    };
    let Some(id) = resource.strip_prefix("channel/") else {
        return false;
    };
    !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !account.is_empty()
        && account.chars().all(|c| c.is_ascii_digit())
        && !id.is_empty()
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}
