//! Streams and stream sessions, the edge's answer for an offline channel,
//! and playback restriction policies at the edge, through aws-sdk-ivs and
//! plain HTTP.

use aws_sdk_ivs::types::StreamHealth;
use serde_json::{Value, json};

use super::*;

/// A local IVS whose channels are offline until a stream starts, trusting
/// `X-Country` for the viewer's country.
async fn offline_ivs() -> TestIvs {
    TestIvs::with_config(LocalIvsConfig {
        test_controls: true,
        live_on_create: false,
        trusted_country_header: Some("X-Country".into()),
        ..LocalIvsConfig::default()
    })
    .await
}

/// `POST /_local/streams/start`: (status, body).
async fn start_stream(t: &TestIvs, body: Value) -> (u16, Value) {
    let response = t
        .http
        .post(format!("{}/_local/streams/start", t.url()))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A GET with an optional Origin and country: (status, body).
async fn get(t: &TestIvs, url: &str, origin: Option<&str>, country: Option<&str>) -> (u16, String) {
    let mut request = t.http.get(url);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if let Some(country) = country {
        request = request.header("x-country", country);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn first_variant(playlist: &str) -> String {
    playlist
        .lines()
        .find(|l| l.starts_with("http"))
        .unwrap_or_else(|| panic!("no variant in {playlist}"))
        .to_owned()
}

fn edge_error(body: &str) -> (String, String) {
    let json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(json[0]["type"], "error", "{body}");
    (
        json[0]["error_code"].as_str().unwrap().to_owned(),
        json[0]["error"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_stream_starts_with_its_key_stops_and_leaves_a_session() {
    let t = offline_ivs().await;
    let c = t.client(REGION);
    let created = c.create_channel().name("stage").send().await.unwrap();
    let channel = created.channel().unwrap();
    let arn = channel.arn().unwrap().to_owned();
    let url = channel.playback_url().unwrap().to_owned();
    let key = created.stream_key().unwrap().value().unwrap().to_owned();

    // Offline: the stream operations say so, and so does the edge.
    let err = c.get_stream().channel_arn(&arn).send().await.unwrap_err();
    assert!(err.into_service_error().is_channel_not_broadcasting());
    let err = c.stop_stream().channel_arn(&arn).send().await.unwrap_err();
    assert!(err.into_service_error().is_channel_not_broadcasting());
    let err = c.get_stream_session().channel_arn(&arn).send().await;
    assert!(
        err.unwrap_err()
            .into_service_error()
            .is_resource_not_found_exception()
    );
    assert!(c.list_streams().send().await.unwrap().streams().is_empty());
    let sessions = c.list_stream_sessions().channel_arn(&arn).send().await;
    assert!(sessions.unwrap().stream_sessions().is_empty());
    let (status, body) = get(&t, &url, None, None).await;
    assert_eq!(status, 404, "{body}");
    let (code, reason) = edge_error(&body);
    assert_eq!(code, "not_found");
    assert!(reason.contains("offline"), "{reason}");

    // A broadcaster connects with the stream key.
    let (status, started) = start_stream(&t, json!({ "streamKey": key })).await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["channelArn"], arn.as_str());
    let (status, again) = start_stream(&t, json!({ "streamKey": key })).await;
    assert_eq!(status, 409, "a second broadcaster: {again}");
    let got = c.get_stream().channel_arn(&arn).send().await.unwrap();
    let stream = got.stream().unwrap();
    let stream_id = stream.stream_id().unwrap().to_owned();
    assert_eq!(stream_id, started["streamId"].as_str().unwrap());
    assert!(
        stream_id.starts_with("st-") && stream_id.len() == 26,
        "{stream_id}"
    );
    assert_eq!(stream.state().unwrap().as_str(), "LIVE");
    assert_eq!(stream.health(), Some(&StreamHealth::StreamHealthy));
    assert_eq!(stream.playback_url().unwrap(), url);
    assert!(stream.start_time().is_some());
    let listed = c.list_streams().send().await.unwrap();
    assert_eq!(listed.streams().len(), 1);
    assert_eq!(listed.streams()[0].channel_arn().unwrap(), arn);
    let starving = c
        .list_streams()
        .filter_by(
            aws_sdk_ivs::types::StreamFilters::builder()
                .health(StreamHealth::Starving)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(starving.streams().is_empty());

    // It plays; once stopped, the session's playlists end and the channel
    // is offline again.
    let (status, playlist) = get(&t, &url, None, None).await;
    assert_eq!(status, 200, "{playlist}");
    let variant = first_variant(&playlist);
    assert_eq!(get(&t, &variant, None, None).await.0, 200);
    // A rename while live: the session keeps the channel as it was.
    c.update_channel()
        .arn(&arn)
        .name("renamed")
        .send()
        .await
        .unwrap();
    c.stop_stream().channel_arn(&arn).send().await.unwrap();
    let err = c.get_stream().channel_arn(&arn).send().await.unwrap_err();
    assert!(err.into_service_error().is_channel_not_broadcasting());
    assert_eq!(get(&t, &variant, None, None).await.0, 404);
    assert_eq!(get(&t, &url, None, None).await.0, 404);

    let session = c
        .get_stream_session()
        .channel_arn(&arn)
        .stream_id(&stream_id)
        .send()
        .await
        .unwrap();
    let session = session.stream_session().unwrap();
    assert_eq!(session.stream_id().unwrap(), stream_id);
    assert!(session.end_time().unwrap() >= session.start_time().unwrap());
    assert_eq!(session.channel().unwrap().name().unwrap(), "stage");
    assert_eq!(session.channel().unwrap().arn().unwrap(), arn);
    let events: Vec<&str> = session
        .truncated_events()
        .iter()
        .filter_map(|e| e.name())
        .collect();
    assert_eq!(
        events,
        [
            "Session Created",
            "Stream Start",
            "Stream End",
            "Session Ended"
        ]
    );
    let video = session.ingest_configuration().unwrap().video().unwrap();
    assert_eq!((video.video_width(), video.video_height()), (1280, 720));

    // A second stream: a second session, listed first; the latest is the
    // default of GetStreamSession.
    let (_, second) = start_stream(&t, json!({ "streamKey": key, "health": "STARVING" })).await;
    let second_id = second["streamId"].as_str().unwrap().to_owned();
    assert_ne!(second_id, stream_id);
    let latest = c
        .get_stream_session()
        .channel_arn(&arn)
        .send()
        .await
        .unwrap();
    let latest = latest.stream_session().unwrap();
    assert_eq!(latest.stream_id().unwrap(), second_id);
    assert!(latest.end_time().is_none());
    assert_eq!(latest.channel().unwrap().name().unwrap(), "renamed");
    let starving = c
        .list_streams()
        .filter_by(
            aws_sdk_ivs::types::StreamFilters::builder()
                .health(StreamHealth::Starving)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(starving.streams().len(), 1);
    let page = c
        .list_stream_sessions()
        .channel_arn(&arn)
        .max_results(1)
        .send()
        .await
        .unwrap();
    assert_eq!(page.stream_sessions()[0].stream_id().unwrap(), second_id);
    assert!(page.stream_sessions()[0].end_time().is_none());
    let rest = c
        .list_stream_sessions()
        .channel_arn(&arn)
        .next_token(page.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.stream_sessions().len(), 1);
    assert_eq!(rest.stream_sessions()[0].stream_id().unwrap(), stream_id);
    assert!(rest.stream_sessions()[0].end_time().is_some());
    assert!(rest.next_token().is_none());

    // A live channel cannot be deleted (409), as the model documents.
    let err = c.delete_channel().arn(&arn).send().await.unwrap_err();
    assert!(err.into_service_error().is_conflict_exception());
    c.stop_stream().channel_arn(&arn).send().await.unwrap();
    c.delete_channel().arn(&arn).send().await.unwrap();
    let err = c.list_stream_sessions().channel_arn(&arn).send().await;
    assert!(
        err.unwrap_err()
            .into_service_error()
            .is_resource_not_found_exception()
    );
}

#[tokio::test]
async fn stream_operations_answer_ivs_errors_for_bad_input() {
    let t = offline_ivs().await;
    let c = t.client(REGION);
    let missing = "arn:aws:ivs:us-west-2:123456789012:channel/doesNotExist";
    let e = c
        .get_stream()
        .channel_arn(missing)
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_resource_not_found_exception());
    let e = c
        .stop_stream()
        .channel_arn(missing)
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_resource_not_found_exception());
    let e = c.get_stream_session().channel_arn(missing).send().await;
    assert!(
        e.unwrap_err()
            .into_service_error()
            .is_resource_not_found_exception()
    );
    let e = c.list_stream_sessions().channel_arn(missing).send().await;
    assert!(
        e.unwrap_err()
            .into_service_error()
            .is_resource_not_found_exception()
    );
    let arn = c.create_channel().send().await.unwrap();
    let arn = arn.channel().unwrap().arn().unwrap().to_owned();
    let e = c
        .get_stream_session()
        .channel_arn(&arn)
        .stream_id("st-AAAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await;
    assert!(
        e.unwrap_err()
            .into_service_error()
            .is_resource_not_found_exception()
    );
    // The model's rules: a stream id is 26 characters; health is an enum.
    let cases: Vec<(&str, Value)> = vec![
        (
            "/GetStreamSession",
            json!({ "channelArn": arn, "streamId": "st-short" }),
        ),
        ("/GetStream", json!({})),
        ("/ListStreams", json!({ "filterBy": { "health": "SICK" } })),
        ("/ListStreams", json!({ "maxResults": 0 })),
        (
            "/ListStreamSessions",
            json!({ "channelArn": arn, "nextToken": "bm9wZQ" }),
        ),
    ];
    for (path, body) in cases {
        let response = t
            .raw(Method::POST, path, body.to_string().into_bytes())
            .await;
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(response.status().as_u16(), 400, "{path} {body}");
        assert_eq!(error_type.as_deref(), Some("ValidationException"), "{path}");
    }
    // The test control's own refusals, in IVS's shape.
    let (status, body) = start_stream(&t, json!({ "streamKey": "sk_us-west-2_nope" })).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["exceptionMessage"]
            .as_str()
            .unwrap()
            .contains("stream key")
    );
    assert_eq!(start_stream(&t, json!({})).await.0, 400);
    assert_eq!(
        start_stream(&t, json!({ "streamKey": "k", "health": "OK" }))
            .await
            .0,
        400
    );
    let response = t
        .http
        .post(format!("{}/_local/streams/start", t.url()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
}

#[tokio::test]
async fn channels_go_live_when_created_by_default_and_sessions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = || LocalIvsConfig {
        state_file: Some(dir.path().join("state.json")),
        ..LocalIvsConfig::default()
    };
    let t = TestIvs::with_config(config()).await;
    let c = t.client(REGION);
    let live = c.create_channel().name("live").send().await.unwrap();
    let live = live.channel().unwrap().arn().unwrap().to_owned();
    let stopped = c.create_channel().name("stopped").send().await.unwrap();
    let stopped = stopped.channel().unwrap().arn().unwrap().to_owned();
    let stream = c.get_stream().channel_arn(&live).send().await.unwrap();
    let stream_id = stream.stream().unwrap().stream_id().unwrap().to_owned();
    c.stop_stream().channel_arn(&stopped).send().await.unwrap();
    t.ivs.stop().await;

    // A stopped channel stays stopped; the live one is the same stream.
    let t = TestIvs::with_config(config()).await;
    let c = t.client(REGION);
    let again = c.get_stream().channel_arn(&live).send().await.unwrap();
    assert_eq!(again.stream().unwrap().stream_id().unwrap(), stream_id);
    let err = c
        .get_stream()
        .channel_arn(&stopped)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_channel_not_broadcasting());
    let sessions = c.list_stream_sessions().channel_arn(&stopped).send().await;
    let sessions = sessions.unwrap();
    assert_eq!(sessions.stream_sessions().len(), 1);
    assert!(sessions.stream_sessions()[0].end_time().is_some());
}

async fn policy_with(
    c: &aws_sdk_ivs::Client,
    countries: &[&str],
    origins: &[&str],
    strict: bool,
) -> String {
    let mut create = c
        .create_playback_restriction_policy()
        .enable_strict_origin_enforcement(strict);
    for country in countries {
        create = create.allowed_countries(*country);
    }
    for origin in origins {
        create = create.allowed_origins(*origin);
    }
    create
        .send()
        .await
        .unwrap()
        .playback_restriction_policy()
        .unwrap()
        .arn()
        .to_owned()
}

#[tokio::test]
async fn the_edge_enforces_a_public_channel_s_policy_by_country_and_origin() {
    let t = offline_ivs().await;
    let c = t.client(REGION);
    let app = "https://app.example.com";
    let policy = policy_with(&c, &["US", "CA"], &[app], false).await;
    let created = c
        .create_channel()
        .playback_restriction_policy_arn(&policy)
        .send()
        .await
        .unwrap();
    let url = created
        .channel()
        .unwrap()
        .playback_url()
        .unwrap()
        .to_owned();
    let key = created.stream_key().unwrap().value().unwrap().to_owned();
    start_stream(&t, json!({ "streamKey": key })).await;

    // Countries: from the trusted header, in any case; unknown is refused.
    let (status, body) = get(&t, &url, None, None).await;
    assert_eq!(status, 403, "{body}");
    let (code, reason) = edge_error(&body);
    assert_eq!(code, "playback_restricted");
    assert!(reason.contains("country is unknown"), "{reason}");
    let (status, body) = get(&t, &url, None, Some("FR")).await;
    assert_eq!(status, 403);
    assert!(
        edge_error(&body).1.starts_with("country FR is not allowed"),
        "{body}"
    );
    assert_eq!(get(&t, &url, None, Some("us")).await.0, 200);
    assert_eq!(get(&t, &url, None, Some("U1")).await.0, 403);

    // Origins, not strict: only the multivariant playlist is checked, and a
    // request without Origin (not a browser) passes.
    let (status, body) = get(&t, &url, Some("https://evil.example"), Some("US")).await;
    assert_eq!(status, 403);
    assert!(
        edge_error(&body)
            .1
            .starts_with("origin https://evil.example is not allowed")
    );
    let (status, playlist) = get(&t, &url, Some(app), Some("CA")).await;
    assert_eq!(status, 200, "{playlist}");
    let variant = first_variant(&playlist);
    assert_eq!(
        get(&t, &variant, Some("https://evil.example"), None)
            .await
            .0,
        200
    );

    // Strict: every playlist and segment request needs an allowed Origin.
    c.update_playback_restriction_policy()
        .arn(&policy)
        .enable_strict_origin_enforcement(true)
        .send()
        .await
        .unwrap();
    assert_eq!(get(&t, &url, None, Some("US")).await.0, 403);
    let (status, playlist) = get(&t, &url, Some(app), Some("US")).await;
    assert_eq!(status, 200);
    let variant = first_variant(&playlist);
    assert_eq!(get(&t, &variant, None, None).await.0, 403);
    assert_eq!(
        get(&t, &variant, Some("https://evil.example"), None)
            .await
            .0,
        403
    );
    let (status, media) = get(&t, &variant, Some(app), None).await;
    assert_eq!(status, 200);
    let segment = format!(
        "{}{}",
        t.url(),
        media.lines().find(|l| l.ends_with(".ts")).unwrap()
    );
    assert_eq!(get(&t, &segment, None, None).await.0, 403);
    assert_eq!(get(&t, &segment, Some(app), None).await.0, 200);

    // A policy without lists allows everyone.
    let open = policy_with(&c, &[], &[], true).await;
    let created = c
        .create_channel()
        .playback_restriction_policy_arn(&open)
        .send()
        .await
        .unwrap();
    let open_url = created
        .channel()
        .unwrap()
        .playback_url()
        .unwrap()
        .to_owned();
    let key = created.stream_key().unwrap().value().unwrap().to_owned();
    start_stream(&t, json!({ "streamKey": key })).await;
    assert_eq!(
        get(&t, &open_url, Some("https://any.example"), None)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn a_private_channel_ignores_its_policy_and_still_needs_a_token() {
    let t = offline_ivs().await;
    let c = t.client(REGION);
    let key = PrivateKey::generate().unwrap();
    import(&c, &key).await;
    let policy = policy_with(&c, &["US"], &["https://app.example.com"], true).await;
    let created = c
        .create_channel()
        .authorized(true)
        .playback_restriction_policy_arn(&policy)
        .send()
        .await
        .unwrap();
    let channel = ChannelArn::parse(created.channel().unwrap().arn().unwrap()).unwrap();
    let url = created
        .channel()
        .unwrap()
        .playback_url()
        .unwrap()
        .to_owned();
    let stream_key = created.stream_key().unwrap().value().unwrap().to_owned();
    start_stream(&t, json!({ "streamKey": stream_key })).await;
    let (status, body) = get(&t, &url, Some("https://app.example.com"), Some("US")).await;
    assert_eq!(status, 403);
    assert_eq!(edge_error(&body).0, "invalid_playback_auth_token");
    let token = sign(&key, &claims(&channel).build().unwrap());
    let (status, playlist) = get(
        &t,
        &format!("{url}?token={token}"),
        Some("https://elsewhere.example"),
        Some("FR"),
    )
    .await;
    assert_eq!(status, 200, "{playlist}");
    assert_eq!(get(&t, &first_variant(&playlist), None, None).await.0, 200);

    // Offline, a valid single-use token is refused as offline and not spent.
    c.stop_stream()
        .channel_arn(channel.as_str())
        .send()
        .await
        .unwrap();
    let single = sign(&key, &claims(&channel).single_use().build().unwrap());
    let (status, body) = get(&t, &format!("{url}?token={single}"), None, None).await;
    assert_eq!(status, 404, "{body}");
    start_stream(&t, json!({ "streamKey": stream_key })).await;
    assert_eq!(
        get(&t, &format!("{url}?token={single}"), None, None)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn a_bad_trusted_country_header_is_a_config_error() {
    let err = ivs_playback_auth::service::local_ivs::LocalIvs::start(LocalIvsConfig {
        trusted_country_header: Some("X Country".into()),
        ..LocalIvsConfig::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("X Country"), "{err}");
}
