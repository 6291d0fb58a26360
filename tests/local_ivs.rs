//! The local IVS driven over HTTP by aws-sdk-ivs, and its playback check by
//! plain HTTP, as a player would.

// Helpers outside #[test] functions unwrap too: a set-up failure should stop
// the test loudly.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
/// PutMetadata: the payload in the segments, IVS's errors and rate quotas.
#[path = "local_ivs/metadata.rs"]
mod metadata;
/// Recording configurations, playback restriction policies, BatchGetStreamKey.
#[path = "local_ivs/resources.rs"]
mod resources;
/// Streams, stream sessions, offline channels and playback restriction
/// policies at the edge.
#[path = "local_ivs/streams.rs"]
mod streams;

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_ivs::error::ProvideErrorMetadata as _;
use aws_sdk_ivs::operation::import_playback_key_pair::ImportPlaybackKeyPairError;
use aws_sdk_ivs::types::{BatchStartViewerSessionRevocationViewerSession, ChannelType};
use common::local_ivs::{ACCESS_KEY, SECRET, TestIvs};
use ivs_playback_auth::service::local_ivs::LocalIvsConfig;
use ivs_playback_auth::{
    AllowedOrigins, ChannelArn, ExpiresAt, MaximumResolution, PlaybackClaims, PrivateKey,
    SigningKey, TokenSigner, ViewerId, ViewerSessionVersion,
};
use reqwest::Method;

const REGION: &str = "us-west-2";

/// A real P-256 public key (made with `openssl ecparam -name prime256v1`).
const P256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhRA9R6HwMS71L8EZV4q2YY5pQCxX
mjieswfpVla6ca8z7eb8Y1MX1zUpaUTtf7lCPqm5S/wRXneCp49GaPVdPQ==
-----END PUBLIC KEY-----
";

async fn private_channel(client: &aws_sdk_ivs::Client, name: &str) -> (ChannelArn, String) {
    let out = client
        .create_channel()
        .name(name)
        .authorized(true)
        .send()
        .await
        .unwrap();
    let channel = out.channel().unwrap();
    (
        ChannelArn::parse(channel.arn().unwrap()).unwrap(),
        channel.playback_url().unwrap().to_owned(),
    )
}

async fn import(client: &aws_sdk_ivs::Client, key: &PrivateKey) -> String {
    let out = client
        .import_playback_key_pair()
        .public_key_material(key.public_key().to_pem())
        .send()
        .await
        .unwrap();
    let pair = out.key_pair().unwrap();
    assert_eq!(pair.fingerprint().unwrap(), key.fingerprint().to_string());
    pair.arn().unwrap().to_owned()
}

fn sign(key: &PrivateKey, claims: &PlaybackClaims) -> String {
    TokenSigner::new(SigningKey::new(key).unwrap())
        .sign(claims)
        .unwrap()
        .into_string()
}

fn claims(channel: &ChannelArn) -> ivs_playback_auth::PlaybackClaimsBuilder {
    PlaybackClaims::builder(channel.clone()).expires_in(Duration::from_secs(300))
}

#[tokio::test]
async fn channels_live_their_whole_life_through_the_sdk() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let created = c
        .create_channel()
        .name("main-stage")
        .authorized(true)
        .tags("team", "video")
        .send()
        .await
        .unwrap();
    let channel = created.channel().unwrap();
    let arn = channel.arn().unwrap().to_owned();
    assert!(arn.starts_with("arn:aws:ivs:us-west-2:123456789012:channel/"));
    assert_eq!(channel.latency_mode().unwrap().as_str(), "LOW");
    assert_eq!(channel.r#type().unwrap(), &ChannelType::StandardChannelType);
    assert!(channel.authorized());
    assert!(channel.playback_url().unwrap().starts_with(t.url()));
    assert_eq!(channel.tags().unwrap()["team"], "video");
    let key = created.stream_key().unwrap();
    assert!(key.value().unwrap().starts_with("sk_us-west-2_"));

    let got = c.get_channel().arn(&arn).send().await.unwrap();
    assert_eq!(got.channel().unwrap().name().unwrap(), "main-stage");

    let updated = c
        .update_channel()
        .arn(&arn)
        .name("renamed")
        .authorized(false)
        .r#type(ChannelType::AdvancedHdChannelType)
        .send()
        .await
        .unwrap();
    let ch = updated.channel().unwrap();
    assert_eq!(ch.name().unwrap(), "renamed");
    assert!(!ch.authorized());
    assert_eq!(ch.preset().unwrap().as_str(), "HIGHER_BANDWIDTH_DELIVERY");

    let listed = c
        .list_channels()
        .filter_by_name("renamed")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.channels().len(), 1);
    assert_eq!(listed.channels()[0].arn().unwrap(), arn);
    let err = c
        .list_channels()
        .filter_by_name("renamed")
        .filter_by_recording_configuration_arn("")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_conflict_exception(), "{err:?}");

    let missing = "arn:aws:ivs:us-west-2:123456789012:channel/doesNotExist";
    let batch = c
        .batch_get_channel()
        .arns(&arn)
        .arns(missing)
        .send()
        .await
        .unwrap();
    assert_eq!(batch.channels().len(), 1);
    assert_eq!(batch.errors().len(), 1);
    assert_eq!(batch.errors()[0].arn().unwrap(), missing);
    assert_eq!(
        batch.errors()[0].code().unwrap(),
        "ResourceNotFoundException"
    );

    // Live since its creation: stopped first, as IVS requires.
    c.stop_stream().channel_arn(&arn).send().await.unwrap();
    c.delete_channel().arn(&arn).send().await.unwrap();
    let err = c
        .get_channel()
        .arn(&arn)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = c
        .delete_channel()
        .arn(&arn)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn stream_keys_follow_their_channel_and_its_quota() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let created = c.create_channel().send().await.unwrap();
    let arn = created.channel().unwrap().arn().unwrap().to_owned();
    let key_arn = created.stream_key().unwrap().arn().unwrap().to_owned();
    let err = c
        .create_stream_key()
        .channel_arn(&arn)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_service_quota_exceeded_exception(), "{err:?}");
    let listed = c.list_stream_keys().channel_arn(&arn).send().await.unwrap();
    assert_eq!(listed.stream_keys().len(), 1);
    let got = c.get_stream_key().arn(&key_arn).send().await.unwrap();
    assert_eq!(got.stream_key().unwrap().channel_arn().unwrap(), arn);
    c.delete_stream_key().arn(&key_arn).send().await.unwrap();
    let again = c
        .create_stream_key()
        .channel_arn(&arn)
        .send()
        .await
        .unwrap();
    let new_key = again.stream_key().unwrap().arn().unwrap().to_owned();
    // Live since its creation: stopped first, as IVS requires.
    c.stop_stream().channel_arn(&arn).send().await.unwrap();
    c.delete_channel().arn(&arn).send().await.unwrap();
    let err = c
        .get_stream_key()
        .arn(&new_key)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = c
        .list_stream_keys()
        .channel_arn(&arn)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn playback_key_pairs_obey_ivs_rules() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let keys: Vec<PrivateKey> = (0..4).map(|_| PrivateKey::generate().unwrap()).collect();
    let mut arns = Vec::new();
    for key in &keys[..3] {
        arns.push(import(&c, key).await);
    }
    let err = c
        .import_playback_key_pair()
        .public_key_material(keys[3].public_key().to_pem())
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 402);
    assert!(
        err.into_service_error()
            .is_service_quota_exceeded_exception()
    );
    let err = c
        .import_playback_key_pair()
        .public_key_material(keys[0].public_key().to_pem())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_conflict_exception(), "{err:?}");
    for bad in [
        "not a key".to_owned(),
        keys[0].to_pkcs8_pem().unwrap().to_string(),
        // A P-256 public key.
        P256_PUBLIC.to_owned(),
    ] {
        let err = c
            .import_playback_key_pair()
            .public_key_material(bad)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        let ImportPlaybackKeyPairError::ValidationException(v) = &err else {
            panic!("{err:?}");
        };
        let message = v.exception_message().unwrap_or_default();
        assert!(message.contains("P-384"), "{message}");
    }
    let got = c
        .get_playback_key_pair()
        .arn(&arns[1])
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.key_pair().unwrap().fingerprint().unwrap(),
        keys[1].fingerprint().to_string()
    );

    // Pages of one, through the SDK's paginator.
    let mut stream = c
        .list_playback_key_pairs()
        .max_results(1)
        .into_paginator()
        .send();
    let mut seen = Vec::new();
    while let Some(page) = stream.next().await {
        let page = page.unwrap();
        assert!(page.key_pairs().len() <= 1);
        seen.extend(page.key_pairs().iter().map(|k| k.arn().unwrap().to_owned()));
    }
    assert_eq!(seen, arns);

    let deleted = c.delete_playback_key_pair().arn(&arns[0]).send().await;
    assert!(deleted.is_ok(), "{deleted:?}");
    let err = c
        .delete_playback_key_pair()
        .arn(&arns[0])
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    // A slot is free again.
    import(&c, &keys[3]).await;
}

#[tokio::test]
async fn import_reads_public_keys_in_every_layout_openssl_reads() {
    // The corpus's public key (tests/data/keys, made by openssl), in the
    // layouts a console paste or a secret store hands over: IVS is given the
    // text, the local IVS reads it as OpenSSL would and fingerprints the key
    // in its canonical form [OPEN: what IVS fingerprints for an explicit or
    // compressed SPKI is not documented; the canonical form is what
    // `openssl ec -pubout` writes].
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/keys");
    let manifest = std::fs::read_to_string(corpus.join("MANIFEST")).unwrap();
    let want = manifest
        .lines()
        .find_map(|l| l.strip_prefix("spki.pem\tpublic\treads\t"))
        .unwrap();
    let spki = std::fs::read_to_string(corpus.join("spki.pem")).unwrap();
    let layouts = [
        std::fs::read_to_string(corpus.join("spki-one-line.pem")).unwrap(),
        std::fs::read_to_string(corpus.join("spki-explicit.pem")).unwrap(),
        std::fs::read_to_string(corpus.join("spki-compressed.pem")).unwrap(),
        spki.replace('\n', "\r\n"),
        format!("\u{feff}{spki}"),
        format!("\n\n{}  ", spki.trim_end()),
    ];
    for material in layouts {
        let t = TestIvs::start().await;
        let c = t.client(REGION);
        let out = c
            .import_playback_key_pair()
            .public_key_material(&material)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{material:?}: {:?}", e.into_service_error()));
        assert_eq!(
            out.key_pair().unwrap().fingerprint().unwrap(),
            want,
            "{material:?}"
        );
    }
    // What OpenSSL refuses is refused with the reason and the fix.
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    for (material, words) in [
        (spki.replace('\n', "\\n"), "literal `\\n`"),
        (spki.replace('\n', " "), "own line"),
        (
            {
                let end = spki.find("\n-----END").unwrap();
                format!("{}{}", &spki[..end - 1], &spki[end..])
            },
            "cut short",
        ),
    ] {
        let err = c
            .import_playback_key_pair()
            .public_key_material(&material)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        let ImportPlaybackKeyPairError::ValidationException(v) = &err else {
            panic!("{err:?}");
        };
        let message = v.exception_message().unwrap_or_default();
        assert!(
            message.contains("publicKeyMaterial") && message.contains(words),
            "{message}"
        );
    }
}

#[tokio::test]
async fn channel_lists_page_through_with_the_paginator() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let mut arns = Vec::new();
    for i in 0..7 {
        let out = c
            .create_channel()
            .name(format!("ch-{i}"))
            .send()
            .await
            .unwrap();
        arns.push(out.channel().unwrap().arn().unwrap().to_owned());
    }
    let pages: Vec<_> = c
        .list_channels()
        .max_results(2)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(pages.len(), 4);
    let listed: Vec<String> = pages
        .iter()
        .flat_map(|p| p.channels().iter().map(|c| c.arn().unwrap().to_owned()))
        .collect();
    assert_eq!(listed, arns);
    let err = c
        .list_channels()
        .next_token("bm90LWEtdG9rZW4")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_validation_exception(), "{err:?}");
    // Another region of the same account sees none of them.
    let east = t.client("us-east-1");
    assert!(
        east.list_channels()
            .send()
            .await
            .unwrap()
            .channels()
            .is_empty()
    );
}

#[tokio::test]
async fn tags_on_channels_and_key_pairs() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let (channel, _) = private_channel(&c, "tagged").await;
    let key_arn = import(&c, &PrivateKey::generate().unwrap()).await;
    for arn in [channel.as_str(), key_arn.as_str()] {
        c.tag_resource()
            .resource_arn(arn)
            .tags("a", "1")
            .tags("b", "2")
            .send()
            .await
            .unwrap();
        let tags = c
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap();
        assert_eq!(tags.tags().len(), 2);
        c.untag_resource()
            .resource_arn(arn)
            .tag_keys("a")
            .send()
            .await
            .unwrap();
        let tags = c
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap();
        assert_eq!(tags.tags().keys().collect::<Vec<_>>(), ["b"]);
    }
    let mut too_many = c.tag_resource().resource_arn(channel.as_str());
    for i in 0..50 {
        too_many = too_many.tags(format!("k{i}"), "v");
    }
    let err = too_many.send().await.unwrap_err().into_service_error();
    assert!(err.is_validation_exception(), "{err:?}");
    let err = c
        .list_tags_for_resource()
        .resource_arn("arn:aws:ivs:us-west-2:123456789012:channel/nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn viewer_revocation_single_and_batch() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let (channel, _) = private_channel(&c, "rev").await;
    c.start_viewer_session_revocation()
        .channel_arn(channel.as_str())
        .viewer_id("v1")
        .viewer_session_versions_less_than_or_equal_to(3)
        .send()
        .await
        .unwrap();
    let err = c
        .start_viewer_session_revocation()
        .channel_arn("arn:aws:ivs:us-west-2:123456789012:channel/nope")
        .viewer_id("v1")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let session = |arn: &str, viewer: &str| {
        BatchStartViewerSessionRevocationViewerSession::builder()
            .channel_arn(arn)
            .viewer_id(viewer)
            .build()
            .unwrap()
    };
    let out = c
        .batch_start_viewer_session_revocation()
        .viewer_sessions(session(channel.as_str(), "v2"))
        .viewer_sessions(session(
            "arn:aws:ivs:us-west-2:123456789012:channel/nope",
            "v3",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(out.errors().len(), 1);
    assert_eq!(out.errors()[0].viewer_id(), "v3");
    assert_eq!(out.errors()[0].code().unwrap(), "ResourceNotFoundException");
    let mut too_many = c.batch_start_viewer_session_revocation();
    for i in 0..21 {
        too_many = too_many.viewer_sessions(session(channel.as_str(), &format!("v{i}")));
    }
    let err = too_many.send().await.unwrap_err().into_service_error();
    assert!(err.is_validation_exception(), "{err:?}");
}

#[tokio::test]
async fn tokens_play_and_bad_tokens_are_refused_with_the_reason() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let key = PrivateKey::generate().unwrap();
    let key_arn = import(&c, &key).await;
    let (channel, url) = private_channel(&c, "private").await;
    let (other_channel, _) = private_channel(&c, "other").await;

    let good = sign(&key, &claims(&channel).build().unwrap());
    let (status, body) = t.play(&format!("{url}?token={good}"), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("#EXTM3U"));
    assert!(body.contains("RESOLUTION=1280x720"));

    let refused = |body: &str| -> String {
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json[0]["error_code"], "invalid_playback_auth_token");
        assert_eq!(json[0]["type"], "error");
        assert!(json[0]["url"].as_str().unwrap().starts_with(&url));
        json[0]["error"].as_str().unwrap().to_owned()
    };

    let (status, body) = t.play(&url, None).await;
    assert_eq!(status, 403);
    assert!(refused(&body).contains("no `token`"));

    // Altered after signing (one more character in the payload): the
    // signature is what fails, and the reason names the key tried.
    let not_signed = format!(
        "the signature does not verify with the one key tried (fingerprint {}): it was signed by another key, or altered after signing",
        key.fingerprint()
    );
    let mut tampered = good.clone();
    tampered.insert(good.find('.').unwrap() + 5, 'x');
    let (status, body) = t.play(&format!("{url}?token={tampered}"), None).await;
    assert_eq!(status, 403);
    assert_eq!(refused(&body), not_signed);

    let past = SystemTime::now() - Duration::from_secs(3600);
    let expired = PlaybackClaims::builder(channel.clone())
        .expires_at(
            ExpiresAt::from_unix_seconds(
                past.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    + 60,
            )
            .unwrap(),
        )
        .build_at(past)
        .unwrap();
    let expired = TokenSigner::new(SigningKey::new(&key).unwrap())
        .sign_at(&expired, past)
        .unwrap();
    let (status, body) = t.play(&format!("{url}?token={expired}"), None).await;
    assert_eq!(status, 403);
    assert!(refused(&body).contains("expired"));

    let wrong = sign(&key, &claims(&other_channel).build().unwrap());
    let (status, body) = t.play(&format!("{url}?token={wrong}"), None).await;
    assert_eq!(status, 403);
    assert!(refused(&body).contains("not arn:aws:ivs"), "{body}");

    let stranger = sign(
        &PrivateKey::generate().unwrap(),
        &claims(&channel).build().unwrap(),
    );
    let (status, body) = t.play(&format!("{url}?token={stranger}"), None).await;
    assert_eq!(status, 403);
    assert!(refused(&body).contains(&key.fingerprint().to_string()));

    let origins = claims(&channel)
        .allowed_origins(AllowedOrigins::parse("https://app.example.com").unwrap())
        .build()
        .unwrap();
    let with_origin = sign(&key, &origins);
    let (status, _) = t
        .play(
            &format!("{url}?token={with_origin}"),
            Some("https://app.example.com"),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = t
        .play(
            &format!("{url}?token={with_origin}"),
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(status, 403);
    assert!(refused(&body).contains("origin https://evil.example"));

    let single = sign(&key, &claims(&channel).single_use().build().unwrap());
    assert_eq!(t.play(&format!("{url}?token={single}"), None).await.0, 200);
    let (status, body) = t.play(&format!("{url}?token={single}"), None).await;
    assert_eq!(status, 403);
    assert!(refused(&body).contains("already used"));

    let viewer = |version: u64| {
        sign(
            &key,
            &claims(&channel)
                .viewer_id(ViewerId::parse("viewer-7").unwrap())
                .viewer_session_version(ViewerSessionVersion::new(version).unwrap())
                .build()
                .unwrap(),
        )
    };
    assert_eq!(
        t.play(&format!("{url}?token={}", viewer(1)), None).await.0,
        200
    );
    c.start_viewer_session_revocation()
        .channel_arn(channel.as_str())
        .viewer_id("viewer-7")
        .viewer_session_versions_less_than_or_equal_to(1)
        .send()
        .await
        .unwrap();
    let (status, body) = t.play(&format!("{url}?token={}", viewer(1)), None).await;
    assert_eq!(status, 403);
    assert!(refused(&body).contains("revoked"));
    assert_eq!(
        t.play(&format!("{url}?token={}", viewer(2)), None).await.0,
        200
    );

    let sd = sign(
        &key,
        &claims(&channel)
            .maximum_resolution(MaximumResolution::Sd)
            .build()
            .unwrap(),
    );
    let (status, body) = t.play(&format!("{url}?token={sd}"), None).await;
    assert_eq!(status, 200);
    assert!(
        !body.contains("1280x720") && body.contains("640x360"),
        "{body}"
    );

    // Deleting the key kills every token it signed.
    c.delete_playback_key_pair()
        .arn(&key_arn)
        .send()
        .await
        .unwrap();
    let (status, body) = t.play(&format!("{url}?token={good}"), None).await;
    assert_eq!(status, 403);
    assert!(refused(&body).contains("no public keys"));
}

#[tokio::test]
async fn strict_origin_enforcement_checks_variant_playlists_and_segments() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let key = PrivateKey::generate().unwrap();
    import(&c, &key).await;
    let (channel, url) = private_channel(&c, "strict").await;
    let token = sign(
        &key,
        &claims(&channel)
            .allowed_origins(AllowedOrigins::parse("https://app.example.com").unwrap())
            .strict_origin_enforcement(true)
            .build()
            .unwrap(),
    );
    let origin = Some("https://app.example.com");
    let (status, body) = t.play(&format!("{url}?token={token}"), None).await;
    assert_eq!(status, 403, "strict needs an Origin: {body}");
    let (status, playlist) = t.play(&format!("{url}?token={token}"), origin).await;
    assert_eq!(status, 200);
    let variant = playlist
        .lines()
        .find(|l| l.starts_with("http"))
        .unwrap()
        .to_owned();
    assert_eq!(t.play(&variant, None).await.0, 403);
    assert_eq!(t.play(&variant, Some("https://evil.example")).await.0, 403);
    let (status, media) = t.play(&variant, origin).await;
    assert_eq!(status, 200);
    assert!(media.contains("#EXT-X-MEDIA-SEQUENCE"));
    let segment = media.lines().find(|l| l.ends_with(".ts")).unwrap();
    let segment = format!("{}{segment}", t.url());
    assert_eq!(t.play(&segment, None).await.0, 403);
    assert_eq!(t.play(&segment, origin).await.0, 200);
}

#[tokio::test]
async fn public_channels_play_without_a_token() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let out = c.create_channel().send().await.unwrap();
    let url = out.channel().unwrap().playback_url().unwrap();
    let (status, body) = t.play(url, None).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("#EXTM3U"));
}

#[tokio::test]
async fn bad_input_gets_a_model_shaped_error_never_a_500() {
    let t = TestIvs::start().await;
    let cases: Vec<(Method, &str, Vec<u8>, u16)> = vec![
        (Method::POST, "/CreateChannel", b"{not json".to_vec(), 400),
        (Method::POST, "/CreateChannel", b"[1,2]".to_vec(), 400),
        (
            Method::POST,
            "/CreateChannel",
            br#"{"authorized":"yes"}"#.to_vec(),
            400,
        ),
        (
            Method::POST,
            "/CreateChannel",
            br#"{"name":"spaces not allowed"}"#.to_vec(),
            400,
        ),
        (
            Method::POST,
            "/CreateChannel",
            br#"{"type":"BASIC","preset":"HIGHER_BANDWIDTH_DELIVERY"}"#.to_vec(),
            400,
        ),
        (
            Method::POST,
            "/GetChannel",
            br#"{"arn":"arn:aws:ivs:us-west-2:1:stream-key/x"}"#.to_vec(),
            400,
        ),
        (Method::POST, "/GetChannel", b"{}".to_vec(), 400),
        (
            Method::POST,
            "/ListChannels",
            br#"{"maxResults":0}"#.to_vec(),
            400,
        ),
        (
            Method::POST,
            "/BatchGetChannel",
            br#"{"arns":[]}"#.to_vec(),
            400,
        ),
        (
            Method::POST,
            "/ImportPlaybackKeyPair",
            br#"{"publicKeyMaterial":12}"#.to_vec(),
            400,
        ),
        (
            Method::POST,
            "/CreateChannel",
            vec![b' '; 2 * 1024 * 1024],
            413,
        ),
        (Method::POST, "/NoSuchOperation", b"{}".to_vec(), 404),
        (Method::GET, "/CreateChannel", Vec::new(), 404),
        (
            Method::PUT,
            "/tags/arn%3Aaws%3Aivs%3Aus-west-2%3A1%3Achannel%2Fx",
            b"{}".to_vec(),
            404,
        ),
        (
            Method::POST,
            "/tags/not-an-arn",
            br#"{"tags":{}}"#.to_vec(),
            400,
        ),
        (Method::POST, "/tags/%zz", br#"{"tags":{}}"#.to_vec(), 400),
    ];
    for (method, path, body, want) in cases {
        let r = t.raw(method.clone(), path, body).await;
        let status = r.status().as_u16();
        let code = r
            .headers()
            .get("x-amzn-errortype")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = r.text().await.unwrap();
        assert_eq!(status, want, "{method} {path}: {text}");
        assert!(code.is_some(), "{method} {path}: no x-amzn-ErrorType");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(
            json["exceptionMessage"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{text}"
        );
    }
    // The validation message names the member.
    let r = t
        .raw(
            Method::POST,
            "/CreateChannel",
            br#"{"latencyMode":"FAST"}"#.to_vec(),
        )
        .await;
    assert!(r.text().await.unwrap().contains("at 'latencyMode'"));
}

#[tokio::test]
async fn requests_must_be_signed_and_signatures_are_checked() {
    let t = TestIvs::with_config(LocalIvsConfig {
        credentials: vec![(
            ACCESS_KEY.into(),
            SECRET.into(),
            Some("210987654321".into()),
        )],
        ..LocalIvsConfig::default()
    })
    .await;
    let unsigned = t
        .http
        .post(format!("{}/ListChannels", t.url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    assert_eq!(
        unsigned.headers()["x-amzn-errortype"],
        "MissingAuthenticationTokenException"
    );
    let good = t.client(REGION);
    let out = good.create_channel().name("signed").send().await.unwrap();
    assert!(
        out.channel()
            .unwrap()
            .arn()
            .unwrap()
            .contains(":210987654321:channel/")
    );
    // Tag routes put the ARN in the path: the signature covers it too.
    let arn = out.channel().unwrap().arn().unwrap();
    good.tag_resource()
        .resource_arn(arn)
        .tags("k", "v")
        .send()
        .await
        .unwrap();

    let wrong_secret = t.client_with(REGION, ACCESS_KEY, "not-the-secret");
    let err = wrong_secret.list_channels().send().await.unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 403);
    assert_eq!(err.code(), Some("InvalidSignatureException"));
    let unknown_key = t.client_with(REGION, "AKIDUNKNOWN", SECRET);
    let err = unknown_key.list_channels().send().await.unwrap_err();
    assert_eq!(err.code(), Some("UnrecognizedClientException"));
    // A forged header with the right key id but a made-up signature.
    let r = t.raw(Method::POST, "/ListChannels", b"{}".to_vec()).await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn injected_faults_hit_the_next_calls_then_stop() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    t.fault(r#"{"operation":"ListChannels","count":2,"error":"ThrottlingException"}"#)
        .await;
    for _ in 0..2 {
        let err = c.list_channels().send().await.unwrap_err();
        assert_eq!(err.raw_response().unwrap().status().as_u16(), 429);
        assert_eq!(err.code(), Some("ThrottlingException"));
    }
    c.list_channels().send().await.unwrap();

    t.fault(r#"{"operation":"ImportPlaybackKeyPair","error":"InternalServerException"}"#)
        .await;
    let key = PrivateKey::generate().unwrap();
    let err = c
        .import_playback_key_pair()
        .public_key_material(key.public_key().to_pem())
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 500);
    t.fault(r#"{"operation":"*","error":"ServiceUnavailable"}"#)
        .await;
    let err = c.list_channels().send().await.unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 503);

    t.fault(r#"{"operation":"ListChannels","delayMs":400}"#)
        .await;
    let started = Instant::now();
    c.list_channels().send().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400));

    t.fault(r#"{"operation":"ListChannels","drop":true}"#).await;
    let err = c.list_channels().send().await.unwrap_err();
    // The connection closes before a response: the SDK sees a dispatch
    // failure (hyper's IncompleteMessage), as with a real network drop.
    assert!(
        matches!(err, aws_sdk_ivs::error::SdkError::DispatchFailure(_)),
        "{err:?}"
    );
    c.list_channels().send().await.unwrap();

    // The key import that failed left nothing behind.
    import(&c, &key).await;

    // Reset wipes everything.
    let r = t
        .http
        .post(format!("{}/_local/reset", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        c.list_playback_key_pairs()
            .send()
            .await
            .unwrap()
            .key_pairs()
            .is_empty()
    );
}

#[tokio::test]
async fn test_controls_are_off_unless_enabled() {
    let t = TestIvs::with_config(LocalIvsConfig::default()).await;
    for path in ["/_local/reset", "/_local/faults", "/_local/streams/start"] {
        let r = t
            .http
            .post(format!("{}{path}", t.url()))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(
            r.headers()["x-amzn-errortype"],
            "UnknownOperationException",
            "{path}"
        );
    }
}

#[tokio::test]
async fn state_survives_a_restart_and_a_corrupt_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ivs-state.json");
    let config = LocalIvsConfig {
        state_file: Some(file.clone()),
        ..LocalIvsConfig::default()
    };
    let t = TestIvs::with_config(config.clone()).await;
    let c = t.client(REGION);
    let (channel, _) = private_channel(&c, "kept").await;
    let key = PrivateKey::generate().unwrap();
    import(&c, &key).await;
    t.ivs.stop().await;

    let t = TestIvs::with_config(config.clone()).await;
    let c = t.client(REGION);
    let got = c.get_channel().arn(channel.as_str()).send().await.unwrap();
    assert_eq!(got.channel().unwrap().name().unwrap(), "kept");
    // The playback URL follows the new port.
    assert!(
        got.channel()
            .unwrap()
            .playback_url()
            .unwrap()
            .starts_with(t.url())
    );
    assert_eq!(
        c.list_playback_key_pairs()
            .send()
            .await
            .unwrap()
            .key_pairs()
            .len(),
        1
    );
    t.ivs.stop().await;

    let saved = std::fs::read(&file).unwrap();
    std::fs::write(&file, &saved[..saved.len() / 2]).unwrap();
    let err = ivs_playback_auth::service::local_ivs::LocalIvs::start(config)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), &saved[..saved.len() / 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_use_token_plays_once_even_under_a_race_and_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = LocalIvsConfig {
        state_file: Some(dir.path().join("state.json")),
        ..LocalIvsConfig::default()
    };
    let t = TestIvs::with_config(config.clone()).await;
    let c = t.client(REGION);
    let key = PrivateKey::generate().unwrap();
    import(&c, &key).await;
    let (channel, url) = private_channel(&c, "once").await;
    let token = sign(&key, &claims(&channel).single_use().build().unwrap());
    let play_url = format!("{url}?token={token}");
    let mut plays = Vec::new();
    for _ in 0..8 {
        let http = t.http.clone();
        let play_url = play_url.clone();
        plays.push(tokio::spawn(async move {
            http.get(play_url).send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for p in plays {
        statuses.push(p.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 403).count(),
        7,
        "{statuses:?}"
    );
    let path = play_url[t.url().len()..].to_owned();
    t.ivs.stop().await;

    // The restarted IVS listens on another port; the playback path is the same.
    let t = TestIvs::with_config(config).await;
    let (status, body) = t.play(&format!("{}{path}", t.url()), None).await;
    assert_eq!(status, 403);
    assert!(body.contains("already used"), "{body}");
}

/// A token made by another JWT library (the `jsonwebtoken` crate), with
/// whatever header and claims it is given.
fn foreign_token(
    key: &PrivateKey,
    kid: Option<&str>,
    typ: &str,
    claims: serde_json::Value,
) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = kid.map(str::to_owned);
    header.typ = Some(typ.to_owned());
    let pem = key.to_pkcs8_pem().unwrap();
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// The edge's JSON refusal: (status, error_code, error), checking the shape
/// and the content type of every answer.
async fn edge_refusal(t: &TestIvs, method: Method, url: &str) -> (u16, String, String) {
    let response = reqwest::Client::new()
        .request(method, url)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.text().await.unwrap();
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "{url}: {body}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
    assert_eq!(json[0]["type"], "error", "{body}");
    assert!(
        json[0]["url"].as_str().unwrap().starts_with(t.url()),
        "{body}"
    );
    (
        status,
        json[0]["error_code"].as_str().unwrap().to_owned(),
        json[0]["error"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn tokens_as_other_signers_write_them_play_and_nbf_is_enforced() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let key = PrivateKey::generate().unwrap();
    let key_arn = import(&c, &key).await;
    let (channel, url) = private_channel(&c, "foreign").await;
    let now = common::unix_seconds_now() as f64;
    let arn = channel.as_str();
    // PyJWT's `time.time() + 300`, JavaScript's `Date.now() / 1000 + 300`, a
    // `kid` set to the key-pair ARN, `typ` in lower case.
    for (kid, typ, exp) in [
        (Some(key_arn.as_str()), "JWT", now + 300.25),
        (None, "jwt", (now + 300.0).floor()),
        (Some("not-a-key-we-know"), "JWT", now + 299.5),
    ] {
        let token = foreign_token(
            &key,
            kid,
            typ,
            serde_json::json!({"aws:channel-arn": arn, "exp": exp}),
        );
        let (status, body) = t.play(&format!("{url}?token={token}"), None).await;
        assert_eq!(status, 200, "kid {kid:?}, typ {typ}, exp {exp}: {body}");
    }
    // `nbf` an hour ahead is refused; passed, it plays.
    let ahead = foreign_token(
        &key,
        None,
        "JWT",
        serde_json::json!({"aws:channel-arn": arn, "exp": now + 7200.0, "nbf": now + 3600.0}),
    );
    let (status, code, error) =
        edge_refusal(&t, Method::GET, &format!("{url}?token={ahead}")).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "invalid_playback_auth_token")
    );
    assert!(error.contains("not valid yet"), "{error}");
    let passed = foreign_token(
        &key,
        None,
        "JWT",
        serde_json::json!({"aws:channel-arn": arn, "exp": now + 300.0, "nbf": now - 60.5}),
    );
    let (status, body) = t.play(&format!("{url}?token={passed}"), None).await;
    assert_eq!(status, 200, "{body}");
    // `crit` must be understood or refused (RFC 7515).
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.crit = Some(vec!["exp".into()]);
    let crit = jsonwebtoken::encode(
        &header,
        &serde_json::json!({"aws:channel-arn": arn, "exp": now + 300.0}),
        &jsonwebtoken::EncodingKey::from_ec_pem(key.to_pkcs8_pem().unwrap().as_bytes()).unwrap(),
    )
    .unwrap();
    let (status, _, error) = edge_refusal(&t, Method::GET, &format!("{url}?token={crit}")).await;
    assert_eq!(status, 403);
    assert!(error.contains("crit"), "{error}");
}

#[tokio::test]
async fn every_answer_of_the_playback_path_is_the_edge_s_json() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let key = PrivateKey::generate().unwrap();
    import(&c, &key).await;
    let (channel, url) = private_channel(&c, "shapes").await;
    let good = sign(&key, &claims(&channel).build().unwrap());
    // Percent-encoded, among other parameters, with a fragment a browser
    // would not send: plays.
    let encoded = good.replace('.', "%2E");
    let (status, body) = t.play(&format!("{url}?x=1&token={encoded}&y"), None).await;
    assert_eq!(status, 200, "{body}");
    for (method, target, status, words) in [
        // The parameter twice: the edge's 403, not a framework's 400.
        (
            Method::GET,
            format!("{url}?token={good}&token={good}"),
            403,
            "2 `token`",
        ),
        (
            Method::GET,
            format!("{url}?token=a&token=b"),
            403,
            "2 `token`",
        ),
        (
            Method::GET,
            format!("{url}?token=%zz"),
            403,
            "percent-encoding",
        ),
        (Method::GET, format!("{url}?token"), 403, "no `token`"),
        (Method::POST, format!("{url}?token={good}"), 405, "GET"),
        (Method::DELETE, url.clone(), 405, "GET"),
        (
            Method::GET,
            format!("{}/api/video/v1/a/b", t.url()),
            404,
            "not a playback URL",
        ),
        (
            Method::GET,
            format!("{}/api/video/v1/%ff.m3u8", t.url()),
            404,
            "percent-encoding",
        ),
        (
            Method::GET,
            format!("{}/api/video/v1/nope.m3u8", t.url()),
            404,
            "not a playback URL",
        ),
        (
            Method::GET,
            format!("{}/api/video/v1/session/nope/720p30/0.ts", t.url()),
            404,
            "session",
        ),
    ] {
        let (got, _, error) = edge_refusal(&t, method.clone(), &target).await;
        assert_eq!(got, status, "{method} {target}: {error}");
        assert!(error.contains(words), "{method} {target}: {error}");
    }
    // An injected fault on playback answers in the edge's shape too.
    t.fault(r#"{"operation":"Playback","error":"InternalServerException"}"#)
        .await;
    let (status, code, _) = edge_refusal(&t, Method::GET, &format!("{url}?token={good}")).await;
    assert_eq!((status, code.as_str()), (500, "InternalServerException"));
}

/// A ValidationException whose message has these words.
fn refused(e: impl aws_sdk_ivs::error::ProvideErrorMetadata + std::fmt::Debug, words: &str) {
    assert_eq!(e.code(), Some("ValidationException"), "{e:?}");
    // IVS's message travels as `exceptionMessage`, which the SDK keeps in
    // the typed error (shown by Debug), not in `message()`.
    assert!(format!("{e:?}").contains(words), "{e:?}");
}

#[tokio::test]
async fn tag_rules_hold_on_every_taggable_resource_and_a_refusal_stores_nothing() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let (channel, _) = private_channel(&c, "tags").await;
    let key_arn = import(&c, &PrivateKey::generate().unwrap()).await;
    let stream_key = c
        .list_stream_keys()
        .channel_arn(channel.as_str())
        .send()
        .await
        .unwrap()
        .stream_keys()[0]
        .arn()
        .unwrap()
        .to_owned();
    let tags_of = async |arn: &str| {
        let out = c
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap();
        let mut keys: Vec<String> = out.tags().keys().cloned().collect();
        keys.sort();
        keys
    };
    let recording = c
        .create_recording_configuration()
        .destination_configuration(resources::s3("tagged-recordings"))
        .send()
        .await
        .unwrap()
        .recording_configuration()
        .unwrap()
        .arn()
        .to_owned();
    let policy = c
        .create_playback_restriction_policy()
        .send()
        .await
        .unwrap()
        .playback_restriction_policy()
        .unwrap()
        .arn()
        .to_owned();
    let long = |n: usize, c: char| std::iter::repeat_n(c, n).collect::<String>();
    for arn in [
        channel.as_str(),
        key_arn.as_str(),
        stream_key.as_str(),
        recording.as_str(),
        policy.as_str(),
    ] {
        for (key, value, words) in [
            ("aws:team".to_owned(), "v".to_owned(), "reserved"),
            ("AWS:Team".to_owned(), "v".to_owned(), "reserved"),
            ("Aws:x".to_owned(), "v".to_owned(), "reserved"),
            (
                long(129, 'k'),
                "v".to_owned(),
                "length less than or equal to 128",
            ),
            (
                "k".to_owned(),
                long(257, 'v'),
                "length less than or equal to 256",
            ),
            ("team#1".to_owned(), "v".to_owned(), "regular expression"),
            ("team".to_owned(), "a*b".to_owned(), "regular expression"),
        ] {
            let err = c
                .tag_resource()
                .resource_arn(arn)
                .tags("ok", "1")
                .tags(&key, value)
                .send()
                .await
                .unwrap_err();
            refused(err, words);
            assert!(
                tags_of(arn).await.is_empty(),
                "{arn}: {key} stored something"
            );
        }
        // At the limits, counted in characters (a key of 128 `é` is 256
        // bytes), letters of any script, spaces and `_.:/=+-@` are fine.
        c.tag_resource()
            .resource_arn(arn)
            .tags(long(128, 'é'), long(256, 'v'))
            .tags("équipe vidéo_1.a:b/c=d+e-f@g", "")
            .tags("awsome", "aws:is fine in a value")
            .send()
            .await
            .unwrap();
        assert_eq!(tags_of(arn).await.len(), 3);
        let err = c
            .untag_resource()
            .resource_arn(arn)
            .tag_keys("aws:x")
            .send()
            .await
            .unwrap_err();
        refused(err, "reserved");
        // 50 per resource: 47 more make 50; one more is refused, whole.
        let mut up_to = c.tag_resource().resource_arn(arn);
        for i in 0..47 {
            up_to = up_to.tags(format!("k{i}"), "v");
        }
        up_to.send().await.unwrap();
        let err = c
            .tag_resource()
            .resource_arn(arn)
            .tags("one-more", "v")
            .send()
            .await
            .unwrap_err();
        refused(err, "at most 50");
        assert_eq!(tags_of(arn).await.len(), 50);
    }
    // Tags given at creation obey the same rules, and a refused creation
    // creates nothing.
    let before = c.list_channels().send().await.unwrap().channels().len();
    let err = c
        .create_channel()
        .name("x")
        .tags("aws:cost-center", "1")
        .send()
        .await
        .unwrap_err();
    refused(err, "reserved");
    assert_eq!(
        c.list_channels().send().await.unwrap().channels().len(),
        before
    );
    let err = c
        .import_playback_key_pair()
        .public_key_material(PrivateKey::generate().unwrap().public_key().to_pem())
        .tags("AWS:owner", "me")
        .send()
        .await
        .unwrap_err();
    refused(err, "reserved");
    assert_eq!(
        c.list_playback_key_pairs()
            .send()
            .await
            .unwrap()
            .key_pairs()
            .len(),
        1
    );
    c.delete_stream_key().arn(&stream_key).send().await.unwrap();
    let err = c
        .create_stream_key()
        .channel_arn(channel.as_str())
        .tags("aws:x", "1")
        .send()
        .await
        .unwrap_err();
    refused(err, "reserved");
    let keys = c
        .list_stream_keys()
        .channel_arn(channel.as_str())
        .send()
        .await
        .unwrap();
    assert!(keys.stream_keys().is_empty());
    // The two resources made with tags too: recording configurations and
    // playback restriction policies.
    let err = c
        .create_recording_configuration()
        .destination_configuration(resources::s3("tagged-recordings"))
        .tags("AWS:team", "1")
        .send()
        .await
        .unwrap_err();
    refused(err, "reserved");
    let recordings = c.list_recording_configurations().send().await.unwrap();
    assert_eq!(recordings.recording_configurations().len(), 1);
    let err = c
        .create_playback_restriction_policy()
        .tags("aws:team", "1")
        .send()
        .await
        .unwrap_err();
    refused(err, "reserved");
    let policies = c.list_playback_restriction_policies().send().await.unwrap();
    assert_eq!(policies.playback_restriction_policies().len(), 1);
}

#[tokio::test]
async fn viewer_ids_are_counted_in_characters_by_the_edge_and_the_revocation_api_alike() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let key = PrivateKey::generate().unwrap();
    import(&c, &key).await;
    let (channel, url) = private_channel(&c, "accents").await;
    // Issue 12: 21 `é` are 42 bytes and 21 characters.
    let viewer = "é".repeat(21);
    let token = sign(
        &key,
        &claims(&channel)
            .viewer_id(ViewerId::parse(&viewer).unwrap())
            .build()
            .unwrap(),
    );
    let (status, body) = t.play(&format!("{url}?token={token}"), None).await;
    assert_eq!(status, 200, "{body}");
    c.start_viewer_session_revocation()
        .channel_arn(channel.as_str())
        .viewer_id(&viewer)
        .send()
        .await
        .unwrap();
    let (status, body) = t.play(&format!("{url}?token={token}"), None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("revoked"), "{body}");
    // 41 characters: refused by both, in the same unit.
    let err = c
        .start_viewer_session_revocation()
        .channel_arn(channel.as_str())
        .viewer_id("é".repeat(41))
        .send()
        .await
        .unwrap_err();
    refused(err, "length less than or equal to 40");
    let err = ViewerId::parse(&"é".repeat(41)).unwrap_err();
    assert!(err.rule().contains("40 characters"), "{err}");
}
