//! PutMetadata through aws-sdk-ivs: the payload in the next segment of every
//! rendition, as IVS carries it (read back byte for byte and by ffprobe),
//! the clip untouched elsewhere, and IVS's errors and rate quotas.

use std::time::UNIX_EPOCH;

use aws_sdk_ivs::operation::put_metadata::PutMetadataError;
use serde_json::json;

use super::*;

/// The ID3 tag IVS puts a PutMetadata payload in: ID3v2.4, one `PRIV` frame
/// owned by `metadata.live-video.net` whose data is the payload (written
/// out here from the ID3 specification, not by the code under test).
fn ivs_id3_tag(payload: &str) -> Vec<u8> {
    let syncsafe = |n: usize| {
        [
            (n >> 21) & 0x7F,
            (n >> 14) & 0x7F,
            (n >> 7) & 0x7F,
            n & 0x7F,
        ]
        .map(|b| b as u8)
    };
    let owner = b"metadata.live-video.net\0";
    let frame_len = owner.len() + payload.len();
    let mut tag = b"ID3\x04\x00\x00".to_vec();
    tag.extend(syncsafe(10 + frame_len));
    tag.extend(b"PRIV");
    tag.extend(syncsafe(frame_len));
    tag.extend([0, 0]);
    tag.extend(owner);
    tag.extend(payload.as_bytes());
    tag
}

/// A clip segment as committed (`assets/clip/RENDITION/N.ts`): what the
/// edge must serve, byte for byte, for a segment without metadata.
fn clip_file(rendition: &str, sequence: u64) -> Vec<u8> {
    let path = format!(
        "{}/assets/clip/{rendition}/{}.ts",
        env!("CARGO_MANIFEST_DIR"),
        sequence % 4
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A playback session on a public channel: the URL of its variant playlist
/// per rendition.
async fn variants(t: &TestIvs, playback_url: &str) -> Vec<(String, String)> {
    let (status, playlist) = t.play(playback_url, None).await;
    assert_eq!(status, 200, "{playlist}");
    let urls: Vec<(String, String)> = playlist
        .lines()
        .filter(|l| l.starts_with("http"))
        .map(|url| {
            let rendition = url.rsplit('/').nth(1).unwrap().to_owned();
            (rendition, url.to_owned())
        })
        .collect();
    assert_eq!(
        urls.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
        ["720p30", "360p30"]
    );
    urls
}

/// Polls a variant playlist until it has listed `sequence` (a segment is
/// listed once it is whole, and stays served after the live window has
/// moved past it), then GETs that segment.
async fn listed_segment(t: &TestIvs, variant: &str, sequence: u64) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, media) = t.play(variant, None).await;
        assert_eq!(status, 200, "{media}");
        let newest = media
            .lines()
            .filter_map(|l| {
                l.rsplit('/')
                    .next()?
                    .strip_suffix(".ts")?
                    .parse::<u64>()
                    .ok()
            })
            .max();
        if newest.is_some_and(|n| n >= sequence) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{sequence}.ts never listed: {media}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = variant.replace("playlist.m3u8", &format!("{sequence}.ts"));
    let response = t.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "video/mp2t");
    response.bytes().await.unwrap().to_vec()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The segment sequence being made at `t` (2-second segments).
fn sequence_at(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() / 2
}

#[tokio::test]
async fn put_metadata_reaches_the_next_segment_of_every_rendition_as_ivs_carries_it() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let channel = c.create_channel().name("quiz").send().await.unwrap();
    let channel = channel.channel().unwrap();
    let variants = variants(&t, channel.playback_url().unwrap()).await;
    let payload =
        json!({"question": "Which clip is this?", "answers": ["SMPTE bars", "a sine"], "é": "ü"})
            .to_string();

    let before = SystemTime::now();
    c.put_metadata()
        .channel_arn(channel.arn().unwrap())
        .metadata(&payload)
        .send()
        .await
        .unwrap();
    let after = SystemTime::now();
    let tag = ivs_id3_tag(&payload);
    // The payload went into the segment being made when the call arrived.
    for (rendition, variant) in &variants {
        let mut carrying = Vec::new();
        for sequence in sequence_at(before)..=sequence_at(after) {
            let segment = listed_segment(&t, variant, sequence).await;
            if contains(&segment, &tag) {
                carrying.push((sequence, segment));
            } else {
                assert_eq!(segment, clip_file(rendition, sequence));
            }
        }
        assert_eq!(
            carrying.len(),
            1,
            "{rendition}: the payload goes into one segment"
        );
        let (sequence, segment) = carrying.pop().unwrap();
        assert!(segment.len() > clip_file(rendition, sequence).len());
        // The segments around it are the clip's bytes.
        for around in [sequence - 1, sequence + 1] {
            assert_eq!(
                listed_segment(&t, variant, around).await,
                clip_file(rendition, around),
                "{rendition} segment {around}"
            );
        }
        ffprobe_sees_the_payload(&segment, &tag);
    }
}

/// The segments a media playlist announces as prefetch (being made), in
/// order: their URLs.
fn prefetched(media: &str, base: &str) -> Vec<String> {
    media
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-TWITCH-PREFETCH:"))
        .map(|path| format!("{base}{path}"))
        .collect()
}

#[tokio::test]
async fn a_prefetched_segment_is_answered_once_complete_with_the_cues_put_while_it_was_made() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let channel = c.create_channel().name("prefetch").send().await.unwrap();
    let channel = channel.channel().unwrap();
    let (rendition, variant) = variants(&t, channel.playback_url().unwrap())
        .await
        .remove(0);
    // Early in a segment, so that the call below lands in the one being
    // made or the next, both announced.
    let deadline = Instant::now() + Duration::from_secs(10);
    while SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 2000
        > 800
    {
        assert!(Instant::now() < deadline, "the clock did not move");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, media) = t.play(&variant, None).await;
    assert_eq!(status, 200, "{media}");
    let making = sequence_at(SystemTime::now());
    let urls = prefetched(&media, t.url());
    assert_eq!(
        urls,
        [making, making + 1].map(|n| variant.replace("playlist.m3u8", &format!("{n}.ts"))),
        "{media}"
    );
    // The player asks for both before the call, as it does.
    let asked = urls.iter().map(|url| {
        let http = t.http.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let response = http.get(&url).send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap().to_vec();
            (status, body, SystemTime::now())
        })
    });
    let asked: Vec<_> = asked.collect();
    let payload = "{\"drop\":\"sneakers\"}";
    let before = SystemTime::now();
    c.put_metadata()
        .channel_arn(channel.arn().unwrap())
        .metadata(payload)
        .send()
        .await
        .unwrap();
    let after = SystemTime::now();
    let tag = ivs_id3_tag(payload);
    let put_in = sequence_at(before)..=sequence_at(after);
    for (sequence, answer) in (making..).zip(asked) {
        let (status, body, answered) = answer.await.unwrap();
        assert_eq!(status, 200);
        // Not before the segment is complete: the cue put while it was
        // being made is in it.
        let complete = UNIX_EPOCH + Duration::from_secs(2 * (sequence + 1));
        assert!(
            answered >= complete,
            "{sequence}.ts answered before it was complete"
        );
        if put_in.contains(&sequence) {
            assert!(contains(&body, &tag), "{sequence}.ts lacks the cue");
        } else {
            // The fast path: no cue, the clip's bytes.
            assert_eq!(body, clip_file(&rendition, sequence), "{sequence}.ts");
        }
    }
    assert!(
        put_in.clone().all(|n| n == making || n == making + 1),
        "the call took from segment {} to {}: too slow to tell",
        put_in.start(),
        put_in.end()
    );
    // Past what the playlist announces, nobody knows the media yet.
    let now = sequence_at(SystemTime::now());
    let (status, body) = t
        .play(
            &variant.replace("playlist.m3u8", &format!("{}.ts", now + 2)),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("is not made yet"), "{body}");
}

/// ffprobe (CI installs ffmpeg and sets CI_REQUIRE_FFPROBE) reads the
/// segment's metadata stream as timed ID3, with the tag as its packet.
fn ffprobe_sees_the_payload(segment: &[u8], tag: &[u8]) {
    if std::process::Command::new("ffprobe")
        .arg("-version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI_REQUIRE_FFPROBE").is_none(),
            "CI_REQUIRE_FFPROBE is set but ffprobe does not run"
        );
        eprintln!(
            "\n!!! SKIPPED: ffprobe is not installed (apt-get install ffmpeg); the timed ID3 stream is unchecked by ffprobe !!!\n"
        );
        return;
    }
    let file = tempfile::Builder::new().suffix(".ts").tempfile().unwrap();
    std::fs::write(file.path(), segment).unwrap();
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_packets",
            "-show_data",
            "-of",
            "json",
        ])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    let streams = json["streams"].as_array().unwrap();
    let id3 = streams
        .iter()
        .find(|s| s["codec_name"] == "timed_id3")
        .unwrap_or_else(|| panic!("no timed_id3 stream: {streams:?}"));
    assert_eq!(id3["codec_type"], "data");
    // The PID IVS's own segments give it, after video and audio.
    assert_eq!(id3["id"], "0x102");
    let packets: Vec<&serde_json::Value> = json["packets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["stream_index"] == id3["index"])
        .collect();
    assert_eq!(packets.len(), 1, "one cue packet");
    // -show_data is a hex dump ("00000000: 4944 3304 ...  text"). ffmpeg
    // 5.1 (Debian 12) drops the first 5 bytes after the PES header of a
    // stream_type 0x15 stream (it reads a metadata AU cell header there,
    // which Apple's ID3 carriage does not have): the rest is the tag.
    let dump = packets[0]["data"].as_str().unwrap();
    let hex: String = dump
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(_, rest)| rest.split("  ").next().unwrap().replace(' ', ""))
        .collect();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(bytes, tag[5..], "{dump}");
    for codec in ["h264", "aac"] {
        assert!(streams.iter().any(|s| s["codec_name"] == codec));
    }
}

#[tokio::test]
async fn segments_without_pending_metadata_are_the_clip_byte_for_byte() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let quiet = c.create_channel().send().await.unwrap();
    let quiet = quiet.channel().unwrap();
    // Metadata on another channel of the account changes nothing here.
    let busy = c.create_channel().send().await.unwrap();
    c.put_metadata()
        .channel_arn(busy.channel().unwrap().arn().unwrap())
        .metadata("elsewhere")
        .send()
        .await
        .unwrap();
    let now = sequence_at(SystemTime::now());
    for (rendition, variant) in variants(&t, quiet.playback_url().unwrap()).await {
        for sequence in now - 3..=now {
            assert_eq!(
                listed_segment(&t, &variant, sequence).await,
                clip_file(&rendition, sequence),
                "{rendition} segment {sequence}"
            );
        }
    }
}

#[tokio::test]
async fn put_metadata_needs_a_live_channel_that_exists() {
    let t = TestIvs::with_config(LocalIvsConfig {
        test_controls: true,
        live_on_create: false,
        ..LocalIvsConfig::default()
    })
    .await;
    let c = t.client(REGION);
    let put = |arn: String| {
        let c = c.clone();
        async move {
            let err = c
                .put_metadata()
                .channel_arn(arn)
                .metadata("{}")
                .send()
                .await
                .unwrap_err();
            let status = err.raw_response().unwrap().status().as_u16();
            (status, err.into_service_error())
        }
    };
    let created = c.create_channel().send().await.unwrap();
    let arn = created.channel().unwrap().arn().unwrap().to_owned();
    let (status, err) = put(arn.clone()).await;
    assert_eq!(status, 404);
    assert!(
        matches!(err, PutMetadataError::ChannelNotBroadcasting(_)),
        "{err:?}"
    );
    assert!(format!("{err:?}").contains("not broadcasting"), "{err:?}");

    // Live once a broadcaster connects; offline again after StopStream.
    let key = created.stream_key().unwrap().value().unwrap();
    let started = t
        .http
        .post(format!("{}/_local/streams/start", t.url()))
        .body(json!({ "streamKey": key }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 200);
    c.put_metadata()
        .channel_arn(&arn)
        .metadata("live")
        .send()
        .await
        .unwrap();
    c.stop_stream().channel_arn(&arn).send().await.unwrap();
    let (status, err) = put(arn.clone()).await;
    assert_eq!(status, 404);
    assert!(
        matches!(err, PutMetadataError::ChannelNotBroadcasting(_)),
        "{err:?}"
    );

    let (status, err) = put("arn:aws:ivs:us-west-2:123456789012:channel/doesNotExist".into()).await;
    assert_eq!(status, 404);
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    // Another region's ARN is another region's channel: not found here.
    let (_, err) = put(arn.replace("us-west-2", "eu-west-1")).await;
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn put_metadata_takes_at_most_1_kb_of_utf8_and_at_least_a_character() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let arn = c.create_channel().send().await.unwrap();
    let arn = arn.channel().unwrap().arn().unwrap().to_owned();
    // 512 characters of two bytes each: 1024 bytes, the most.
    let most = "é".repeat(512);
    c.put_metadata()
        .channel_arn(&arn)
        .metadata(&most)
        .send()
        .await
        .unwrap();
    // 1024 characters but 1025 bytes: bytes count, not characters.
    let over = format!("{}é", "a".repeat(1023));
    assert_eq!((over.chars().count(), over.len()), (1024, 1025));
    for (metadata, says) in [
        (over.as_str(), "1025 bytes of UTF-8"),
        ("", "Member must have length greater than or equal to 1"),
    ] {
        let err = c
            .put_metadata()
            .channel_arn(&arn)
            .metadata(metadata)
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.raw_response().unwrap().status().as_u16(), 400);
        let err = err.into_service_error();
        assert!(err.is_validation_exception(), "{err:?}");
        assert!(format!("{err:?}").contains(says), "{err:?}");
    }
    // A malformed ARN is the model's pattern error.
    let err = c
        .put_metadata()
        .channel_arn("not-an-arn")
        .metadata("x")
        .send()
        .await;
    assert!(
        err.unwrap_err()
            .into_service_error()
            .is_validation_exception()
    );
}

/// One PutMetadata: `Ok`, or the error with its HTTP status.
async fn put(c: &aws_sdk_ivs::Client, arn: &str) -> Result<(), (u16, PutMetadataError)> {
    match c
        .put_metadata()
        .channel_arn(arn)
        .metadata("{}")
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let status = e.raw_response().unwrap().status().as_u16();
            Err((status, e.into_service_error()))
        }
    }
}

fn assert_throttled(outcome: Result<(), (u16, PutMetadataError)>, says: &str) {
    let Err((status, e)) = outcome else {
        panic!("not throttled")
    };
    assert_eq!(status, 429);
    assert!(e.is_throttling_exception(), "{e:?}");
    assert!(format!("{e:?}").contains(says), "{e:?}");
}

#[tokio::test]
async fn a_sixth_put_metadata_within_a_second_on_one_channel_is_throttled() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let a = c.create_channel().send().await.unwrap();
    let a = a.channel().unwrap().arn().unwrap().to_owned();
    let b = c.create_channel().send().await.unwrap();
    let b = b.channel().unwrap().arn().unwrap().to_owned();
    t.quota_clock(r#"{"pause": true}"#).await;
    for _ in 0..5 {
        put(&c, &a).await.unwrap();
    }
    assert_throttled(put(&c, &a).await, "5 calls per second on channel");
    // Another channel has its own five.
    put(&c, &b).await.unwrap();
    t.quota_clock(r#"{"advanceMs": 999}"#).await;
    assert_throttled(put(&c, &a).await, "retry in 1 ms");
    // A second after the five, their places are free again (the refused
    // calls took none).
    t.quota_clock(r#"{"advanceMs": 1}"#).await;
    for _ in 0..5 {
        put(&c, &a).await.unwrap();
    }
    assert_throttled(put(&c, &a).await, "5 calls per second on channel");
}

#[tokio::test]
async fn the_account_takes_155_put_metadata_a_second_across_its_channels() {
    let t = TestIvs::start().await;
    let c = t.client(REGION);
    let mut channels = Vec::new();
    for _ in 0..32 {
        let arn = c.create_channel().send().await.unwrap();
        channels.push(arn.channel().unwrap().arn().unwrap().to_owned());
    }
    t.quota_clock(r#"{"pause": true}"#).await;
    // 31 channels at their own limit: 155 calls, the account's.
    for arn in &channels[..31] {
        for _ in 0..5 {
            put(&c, arn).await.unwrap();
        }
    }
    assert_throttled(
        put(&c, &channels[31]).await,
        "155 calls per second per account",
    );
    // Another region of the account has its own quota.
    let other = t.client("eu-west-1");
    let arn = other.create_channel().send().await.unwrap();
    put(&other, arn.channel().unwrap().arn().unwrap())
        .await
        .unwrap();
    t.quota_clock(r#"{"advanceMs": 1000}"#).await;
    put(&c, &channels[31]).await.unwrap();
}

#[tokio::test]
async fn put_metadata_is_signed_like_every_operation() {
    let t = TestIvs::with_config(LocalIvsConfig {
        credentials: vec![(ACCESS_KEY.into(), SECRET.into(), None)],
        ..LocalIvsConfig::default()
    })
    .await;
    let arn = t.client(REGION).create_channel().send().await.unwrap();
    let arn = arn.channel().unwrap().arn().unwrap().to_owned();
    let wrong = t.client_with(REGION, ACCESS_KEY, "not-the-secret");
    let err = wrong
        .put_metadata()
        .channel_arn(&arn)
        .metadata("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 403);
    assert_eq!(err.code(), Some("InvalidSignatureException"));
    let unsigned = t
        .http
        .post(format!("{}/PutMetadata", t.url()))
        .body(json!({ "channelArn": arn, "metadata": "x" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    t.client(REGION)
        .put_metadata()
        .channel_arn(&arn)
        .metadata("x")
        .send()
        .await
        .unwrap();
}
