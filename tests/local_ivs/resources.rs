//! Recording configurations, playback restriction policies, BatchGetStreamKey
//! and the references between them and channels, through aws-sdk-ivs.

use aws_sdk_ivs::types::{
    DestinationConfiguration, RecordingConfigurationState, RecordingMode, RenditionConfiguration,
    RenditionConfigurationRendition, RenditionConfigurationRenditionSelection,
    S3DestinationConfiguration, ThumbnailConfiguration, ThumbnailConfigurationResolution,
    ThumbnailConfigurationStorage,
};

use super::*;

/// An S3 destination for a recording configuration.
pub(super) fn s3(bucket: &str) -> DestinationConfiguration {
    DestinationConfiguration::builder()
        .s3(S3DestinationConfiguration::builder()
            .bucket_name(bucket)
            .build()
            .unwrap())
        .build()
}

async fn recording_configuration(c: &aws_sdk_ivs::Client, bucket: &str) -> String {
    c.create_recording_configuration()
        .destination_configuration(s3(bucket))
        .send()
        .await
        .unwrap()
        .recording_configuration()
        .unwrap()
        .arn()
        .to_owned()
}

async fn policy(c: &aws_sdk_ivs::Client) -> String {
    c.create_playback_restriction_policy()
        .allowed_countries("US")
        .send()
        .await
        .unwrap()
        .playback_restriction_policy()
        .unwrap()
        .arn()
        .to_owned()
}

#[tokio::test]
async fn recording_configurations_live_their_whole_life_through_the_sdk() {
    let t = TestIvs::with_config(LocalIvsConfig {
        test_controls: true,
        missing_buckets: vec!["gone-bucket".into()],
        ..LocalIvsConfig::default()
    })
    .await;
    let c = t.client(REGION);
    let created = c
        .create_recording_configuration()
        .name("archive")
        .destination_configuration(s3("my-recordings.v2"))
        .thumbnail_configuration(
            ThumbnailConfiguration::builder()
                .recording_mode(RecordingMode::Interval)
                .target_interval_seconds(10)
                .resolution(ThumbnailConfigurationResolution::Hd)
                .storage(ThumbnailConfigurationStorage::Latest)
                .storage(ThumbnailConfigurationStorage::Sequential)
                .build(),
        )
        .rendition_configuration(
            RenditionConfiguration::builder()
                .rendition_selection(RenditionConfigurationRenditionSelection::Custom)
                .renditions(RenditionConfigurationRendition::FullHd)
                .build(),
        )
        .recording_reconnect_window_seconds(30)
        .tags("team", "video")
        .send()
        .await
        .unwrap();
    let config = created.recording_configuration().unwrap();
    let arn = config.arn().to_owned();
    assert!(
        arn.starts_with("arn:aws:ivs:us-west-2:123456789012:recording-configuration/"),
        "{arn}"
    );
    // Created: CREATING, as IVS answers; settled on the next read.
    assert_eq!(config.state(), &RecordingConfigurationState::Creating);
    let got = c
        .get_recording_configuration()
        .arn(&arn)
        .send()
        .await
        .unwrap();
    let got = got.recording_configuration().unwrap();
    assert_eq!(got.state(), &RecordingConfigurationState::Active);
    assert_eq!(got.name(), Some("archive"));
    assert_eq!(
        got.destination_configuration()
            .unwrap()
            .s3()
            .unwrap()
            .bucket_name(),
        "my-recordings.v2"
    );
    let thumbs = got.thumbnail_configuration().unwrap();
    assert_eq!(thumbs.target_interval_seconds(), Some(10));
    assert_eq!(
        thumbs.resolution(),
        Some(&ThumbnailConfigurationResolution::Hd)
    );
    assert_eq!(thumbs.storage().len(), 2);
    assert_eq!(
        got.rendition_configuration().unwrap().renditions(),
        &[RenditionConfigurationRendition::FullHd]
    );
    assert_eq!(got.recording_reconnect_window_seconds(), 30);
    assert_eq!(got.tags().unwrap()["team"], "video");

    // The documented defaults.
    let plain = recording_configuration(&c, "plain-bucket").await;
    let got = c
        .get_recording_configuration()
        .arn(&plain)
        .send()
        .await
        .unwrap();
    let got = got.recording_configuration().unwrap();
    let thumbs = got.thumbnail_configuration().unwrap();
    assert_eq!(thumbs.recording_mode(), Some(&RecordingMode::Interval));
    assert_eq!(thumbs.target_interval_seconds(), Some(60));
    assert_eq!(
        thumbs.storage(),
        &[ThumbnailConfigurationStorage::Sequential]
    );
    assert_eq!(thumbs.resolution(), None);
    assert_eq!(
        got.rendition_configuration().unwrap().rendition_selection(),
        Some(&RenditionConfigurationRenditionSelection::All)
    );
    assert_eq!(got.recording_reconnect_window_seconds(), 0);

    // A bucket the local IVS is told is missing: CREATE_FAILED.
    let failed = recording_configuration(&c, "gone-bucket").await;
    let got = c
        .get_recording_configuration()
        .arn(&failed)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.recording_configuration().unwrap().state(),
        &RecordingConfigurationState::CreateFailed
    );

    // Listed in creation order, page by page, as summaries.
    let pages: Vec<_> = c
        .list_recording_configurations()
        .max_results(2)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(pages.len(), 2);
    let listed: Vec<&str> = pages
        .iter()
        .flat_map(|p| p.recording_configurations())
        .map(|s| s.arn())
        .collect();
    assert_eq!(listed, [arn.as_str(), plain.as_str(), failed.as_str()]);

    c.delete_recording_configuration()
        .arn(&plain)
        .send()
        .await
        .unwrap();
    for arn in [
        plain.clone(),
        "arn:aws:ivs:eu-west-1:123456789012:recording-configuration/abc".to_owned(),
    ] {
        let err = c
            .get_recording_configuration()
            .arn(&arn)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(err.is_resource_not_found_exception(), "{err:?}");
        let err = c
            .delete_recording_configuration()
            .arn(&arn)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(err.is_resource_not_found_exception(), "{err:?}");
    }
}

#[tokio::test]
async fn recording_configurations_refuse_what_cannot_work_and_store_nothing() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let create = |bucket: &str| {
        c.create_recording_configuration()
            .destination_configuration(s3(bucket))
    };
    for (bucket, words) in [
        ("MyBucket", "regular expression pattern"),
        ("ab", "length greater than or equal to 3"),
        ("-bucket", "begin and end"),
        ("bucket.", "begin and end"),
        ("a..b", "adjacent periods"),
        ("10.0.0.1", "IP address"),
    ] {
        let err = create(bucket).send().await.unwrap_err();
        refused(err, words);
    }
    let err = c
        .create_recording_configuration()
        .destination_configuration(DestinationConfiguration::builder().build())
        .send()
        .await
        .unwrap_err();
    refused(err, "destinationConfiguration.s3");
    let err = create("ok-bucket")
        .rendition_configuration(
            RenditionConfiguration::builder()
                .rendition_selection(RenditionConfigurationRenditionSelection::Custom)
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    refused(err, "CUSTOM");
    let err = create("ok-bucket")
        .thumbnail_configuration(
            ThumbnailConfiguration::builder()
                .target_interval_seconds(0)
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    refused(err, "greater than or equal to 1");
    let err = create("ok-bucket")
        .recording_reconnect_window_seconds(301)
        .send()
        .await
        .unwrap_err();
    refused(err, "less than or equal to 300");
    let err = create("ok-bucket")
        .tags("aws:x", "1")
        .send()
        .await
        .unwrap_err();
    refused(err, "reserved");
    let listed = c.list_recording_configurations().send().await.unwrap();
    assert!(listed.recording_configurations().is_empty());

    // The quota: 20 per region.
    for _ in 0..20 {
        recording_configuration(&c, "ok-bucket").await;
    }
    let err = create("ok-bucket")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_service_quota_exceeded_exception(), "{err:?}");
}

#[tokio::test]
async fn playback_restriction_policies_live_their_whole_life_through_the_sdk() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let created = c
        .create_playback_restriction_policy()
        .name("europe-only")
        .allowed_countries("DE")
        .allowed_countries("FR")
        .allowed_origins("https://www.example.com")
        .enable_strict_origin_enforcement(true)
        .tags("team", "video")
        .send()
        .await
        .unwrap();
    let policy = created.playback_restriction_policy().unwrap();
    let arn = policy.arn().to_owned();
    assert!(
        arn.starts_with("arn:aws:ivs:us-west-2:123456789012:playback-restriction-policy/"),
        "{arn}"
    );
    assert_eq!(policy.allowed_countries(), ["DE", "FR"]);
    assert_eq!(policy.allowed_origins(), ["https://www.example.com"]);
    assert_eq!(policy.enable_strict_origin_enforcement(), Some(true));

    // An update changes what it names and keeps the rest.
    let updated = c
        .update_playback_restriction_policy()
        .arn(&arn)
        .allowed_countries("US")
        .send()
        .await
        .unwrap();
    let policy = updated.playback_restriction_policy().unwrap();
    assert_eq!(policy.allowed_countries(), ["US"]);
    assert_eq!(policy.allowed_origins(), ["https://www.example.com"]);
    assert_eq!(policy.name(), Some("europe-only"));
    let got = c
        .get_playback_restriction_policy()
        .arn(&arn)
        .send()
        .await
        .unwrap();
    let got = got.playback_restriction_policy().unwrap();
    assert_eq!(got.allowed_countries(), ["US"]);
    assert_eq!(got.tags().unwrap()["team"], "video");

    // Defaults: every country, every origin, not strict.
    let open = c.create_playback_restriction_policy().send().await.unwrap();
    let open = open.playback_restriction_policy().unwrap();
    assert!(open.allowed_countries().is_empty() && open.allowed_origins().is_empty());
    assert_eq!(open.enable_strict_origin_enforcement(), Some(false));

    // The model's default page size is 1: the paginator walks two pages.
    let pages: Vec<_> = c
        .list_playback_restriction_policies()
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].playback_restriction_policies()[0].arn(), arn);

    for (countries, origin, words) in [
        (
            "XK",
            "https://a.example.com",
            "'XK' at 'allowedCountries.1.member'",
        ),
        ("us", "https://a.example.com", "upper case: US"),
        (
            "USA",
            "https://a.example.com",
            "length less than or equal to 2",
        ),
        ("US", "a.example.com", "allowedOrigins.1.member"),
        ("US", "https://a.example.com/path", "Origin header value"),
    ] {
        let err = c
            .create_playback_restriction_policy()
            .allowed_countries(countries)
            .allowed_origins(origin)
            .send()
            .await
            .unwrap_err();
        refused(err, words);
        let err = c
            .update_playback_restriction_policy()
            .arn(&arn)
            .allowed_countries(countries)
            .allowed_origins(origin)
            .send()
            .await
            .unwrap_err();
        refused(err, words);
    }
    // A refused update changed nothing.
    let got = c
        .get_playback_restriction_policy()
        .arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.playback_restriction_policy()
            .unwrap()
            .allowed_countries(),
        ["US"]
    );

    c.delete_playback_restriction_policy()
        .arn(&arn)
        .send()
        .await
        .unwrap();
    let err = c
        .get_playback_restriction_policy()
        .arn(&arn)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = c
        .update_playback_restriction_policy()
        .arn(&arn)
        .name("x")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = c
        .delete_playback_restriction_policy()
        .arn(&arn)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn a_channel_names_only_resources_that_exist_and_they_stay_while_named() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let recording = recording_configuration(&c, "recordings").await;
    let restriction = policy(&c).await;
    let missing_recording = "arn:aws:ivs:us-west-2:123456789012:recording-configuration/missing";
    let missing_policy = "arn:aws:ivs:us-west-2:123456789012:playback-restriction-policy/missing";
    // Another region's resource is not this region's.
    let elsewhere = t.client("eu-west-1");
    let foreign = recording_configuration(&elsewhere, "recordings").await;

    for arn in [missing_recording, foreign.as_str()] {
        let err = c
            .create_channel()
            .recording_configuration_arn(arn)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(err.is_resource_not_found_exception(), "{err:?}");
    }
    let err = c
        .create_channel()
        .playback_restriction_policy_arn(missing_policy)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    assert!(
        c.list_channels()
            .send()
            .await
            .unwrap()
            .channels()
            .is_empty()
    );

    let created = c
        .create_channel()
        .name("recorded")
        .recording_configuration_arn(&recording)
        .send()
        .await
        .unwrap();
    let channel = created.channel().unwrap().arn().unwrap().to_owned();
    let err = c
        .update_channel()
        .arn(&channel)
        .playback_restriction_policy_arn(missing_policy)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = c
        .update_channel()
        .arn(&channel)
        .recording_configuration_arn(missing_recording)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    c.update_channel()
        .arn(&channel)
        .playback_restriction_policy_arn(&restriction)
        .send()
        .await
        .unwrap();
    let got = c.get_channel().arn(&channel).send().await.unwrap();
    let got = got.channel().unwrap();
    assert_eq!(got.recording_configuration_arn(), Some(recording.as_str()));
    assert_eq!(
        got.playback_restriction_policy_arn(),
        Some(restriction.as_str())
    );
    let filtered = c
        .list_channels()
        .filter_by_playback_restriction_policy_arn(&restriction)
        .send()
        .await
        .unwrap();
    assert_eq!(filtered.channels().len(), 1);

    // Named by a channel: 409, and both stay.
    let err = c
        .delete_recording_configuration()
        .arn(&recording)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_conflict_exception(), "{err:?}");
    let err = c
        .delete_playback_restriction_policy()
        .arn(&restriction)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_conflict_exception(), "{err:?}");
    c.get_recording_configuration()
        .arn(&recording)
        .send()
        .await
        .unwrap();

    // Unset ("" is "none", as IVS documents), they can go.
    c.update_channel()
        .arn(&channel)
        .recording_configuration_arn("")
        .playback_restriction_policy_arn("")
        .send()
        .await
        .unwrap();
    c.delete_recording_configuration()
        .arn(&recording)
        .send()
        .await
        .unwrap();
    c.delete_playback_restriction_policy()
        .arn(&restriction)
        .send()
        .await
        .unwrap();

    // Deleting the channel frees what it named, too.
    let again = recording_configuration(&c, "recordings").await;
    c.update_channel()
        .arn(&channel)
        .recording_configuration_arn(&again)
        .send()
        .await
        .unwrap();
    // Live since its creation: stopped first, as IVS requires.
    c.stop_stream().channel_arn(&channel).send().await.unwrap();
    c.delete_channel().arn(&channel).send().await.unwrap();
    c.delete_recording_configuration()
        .arn(&again)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn batch_get_stream_key_answers_each_key_once_and_an_error_per_missing_arn() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let a = c.create_channel().send().await.unwrap();
    let b = c.create_channel().send().await.unwrap();
    let key_a = a.stream_key().unwrap();
    let key_b = b.stream_key().unwrap();
    let missing = "arn:aws:ivs:us-west-2:123456789012:stream-key/missing";
    let out = c
        .batch_get_stream_key()
        .arns(key_a.arn().unwrap())
        .arns(key_b.arn().unwrap())
        .arns(key_a.arn().unwrap())
        .arns(missing)
        .send()
        .await
        .unwrap();
    assert_eq!(out.stream_keys().len(), 2);
    assert_eq!(out.stream_keys()[0].value(), key_a.value());
    assert_eq!(out.stream_keys()[1].channel_arn(), key_b.channel_arn());
    assert_eq!(out.errors().len(), 1);
    assert_eq!(out.errors()[0].arn(), Some(missing));
    assert_eq!(out.errors()[0].code(), Some("ResourceNotFoundException"));
    let err = c.batch_get_stream_key().send().await.unwrap_err();
    refused(err, "arns");
}

#[tokio::test]
async fn tags_and_state_hold_for_recording_configurations_and_policies() {
    let dir = tempfile::tempdir().unwrap();
    let config = LocalIvsConfig {
        state_file: Some(dir.path().join("state.json")),
        ..LocalIvsConfig::default()
    };
    let t = TestIvs::with_config(config.clone()).await;
    let c = t.client(REGION);
    let recording = recording_configuration(&c, "kept-recordings").await;
    let restriction = policy(&c).await;
    for arn in [&recording, &restriction] {
        c.tag_resource()
            .resource_arn(arn)
            .tags("a", "1")
            .tags("b", "2")
            .send()
            .await
            .unwrap();
        c.untag_resource()
            .resource_arn(arn)
            .tag_keys("a")
            .send()
            .await
            .unwrap();
        let err = c
            .tag_resource()
            .resource_arn(arn)
            .tags("aws:x", "1")
            .send()
            .await
            .unwrap_err();
        refused(err, "reserved");
    }
    let channel = c
        .create_channel()
        .recording_configuration_arn(&recording)
        .playback_restriction_policy_arn(&restriction)
        .send()
        .await
        .unwrap()
        .channel()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    t.ivs.stop().await;

    // Restarted from the state file: both kept, with their tags, and still
    // named by the channel.
    let t = TestIvs::with_config(config).await;
    let c = t.client(REGION);
    for arn in [&recording, &restriction] {
        let tags = c
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap();
        assert_eq!(tags.tags().len(), 1, "{arn}");
        assert_eq!(tags.tags()["b"], "2");
    }
    let got = c
        .get_recording_configuration()
        .arn(&recording)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.recording_configuration().unwrap().state(),
        &RecordingConfigurationState::Active
    );
    let err = c
        .delete_playback_restriction_policy()
        .arn(&restriction)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_conflict_exception(), "{err:?}");
    // Live since its creation: stopped first, as IVS requires.
    c.stop_stream().channel_arn(&channel).send().await.unwrap();
    c.delete_channel().arn(&channel).send().await.unwrap();
    let err = c
        .list_tags_for_resource()
        .resource_arn("arn:aws:ivs:us-west-2:123456789012:playback-restriction-policy/missing")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn malformed_input_to_the_new_operations_is_a_400_never_a_500() {
    let t = TestIvs::start().await;
    let cases: &[(&str, &str)] = &[
        ("/CreateRecordingConfiguration", r#"{}"#),
        (
            "/CreateRecordingConfiguration",
            r#"{"destinationConfiguration":"s3"}"#,
        ),
        (
            "/CreateRecordingConfiguration",
            r#"{"destinationConfiguration":{"s3":{"bucketName":5}}}"#,
        ),
        (
            "/CreateRecordingConfiguration",
            r#"{"destinationConfiguration":{"s3":{"bucketName":"ok-bucket"}},"thumbnailConfiguration":{"storage":"LATEST"}}"#,
        ),
        (
            "/CreateRecordingConfiguration",
            r#"{"destinationConfiguration":{"s3":{"bucketName":"ok-bucket"}},"renditionConfiguration":{"renditions":["4K"]}}"#,
        ),
        (
            "/GetRecordingConfiguration",
            r#"{"arn":"arn:aws:ivs:us-west-2:1:channel/x"}"#,
        ),
        (
            "/CreatePlaybackRestrictionPolicy",
            r#"{"allowedCountries":"US"}"#,
        ),
        (
            "/CreatePlaybackRestrictionPolicy",
            r#"{"allowedCountries":[1]}"#,
        ),
        (
            "/CreatePlaybackRestrictionPolicy",
            r#"{"allowedOrigins":[null]}"#,
        ),
        (
            "/CreatePlaybackRestrictionPolicy",
            r#"{"enableStrictOriginEnforcement":"yes"}"#,
        ),
        (
            "/UpdatePlaybackRestrictionPolicy",
            r#"{"allowedCountries":["US"]}"#,
        ),
        ("/BatchGetStreamKey", r#"{"arns":"x"}"#),
        (
            "/BatchGetStreamKey",
            r#"{"arns":["arn:aws:ivs:us-west-2:1:channel/x"]}"#,
        ),
    ];
    for (path, body) in cases {
        let r = t.raw(Method::POST, path, body.as_bytes().to_vec()).await;
        let status = r.status().as_u16();
        let code = r
            .headers()
            .get("x-amzn-errortype")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = r.text().await.unwrap();
        assert_eq!(status, 400, "{path} {body}: {text}");
        assert_eq!(
            code.as_deref(),
            Some("ValidationException"),
            "{path} {body}"
        );
        assert!(text.contains("exceptionMessage"), "{text}");
    }
}
