//! The files of a started playback session: its media playlists and
//! segments, checked again for the session's origins, its stream and its
//! viewer on every request, as the IVS edge checks them.

use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::playback::{self, Refusal, Session};
use super::{App, live_media, lock, origin_of, playback_response, refusal_response};

pub(super) fn playback_session(
    app: &App,
    session_id: &str,
    rendition: &str,
    file: &str,
    headers: &HeaderMap,
    url: &str,
) -> Response {
    let now = SystemTime::now();
    let session: Option<Session> = lock(&app.inner.sessions).get(session_id, now).cloned();
    let Some(session) = session else {
        return refusal_response(
            &Refusal::session("the playback session does not exist or has ended"),
            url,
        );
    };
    if let Err(r) =
        playback::check_origin(session.origins.as_ref(), session.strict, origin_of(headers))
    {
        return refusal_response(&r, url);
    }
    if let Some((policy, allowed)) = &session.policy_origins
        && let Err(r) = playback::check_policy_origin(allowed, true, origin_of(headers), policy)
    {
        return refusal_response(&r, url);
    }
    let checked = {
        let state = lock(&app.inner.state);
        let region = state.region(&session.scope);
        // A stopped stream ends its sessions: the player's next variant
        // playlist is refused as an expired session's is [OPEN: IVS's edge
        // may instead end the playlist].
        let streaming = region
            .and_then(|r| r.stream_sessions.get(&session.stream_id))
            .is_some_and(|s| s.end_ms.is_none());
        let revoked = match (&session.viewer, region) {
            (Some((viewer, version)), Some(region)) => {
                playback::check_revocation(region, &session.channel_arn, viewer, *version)
            }
            _ => Ok(()),
        };
        if streaming {
            revoked
        } else {
            Err(Refusal::session(
                "the stream of this playback session has ended",
            ))
        }
    };
    if let Err(r) = checked {
        return refusal_response(&r, url);
    }
    if !playback::RENDITIONS.iter().any(|r| r.name == rendition) {
        return refusal_response(&Refusal::session("no such rendition"), url);
    }
    if file == "playlist.m3u8" {
        return playback_response(
            StatusCode::OK,
            "application/vnd.apple.mpegurl",
            live_media::media_playlist(session_id, rendition, now),
        );
    }
    let Some(sequence) = file.strip_suffix(".ts").and_then(|n| n.parse::<u64>().ok()) else {
        return refusal_response(&Refusal::session("no such file in this session"), url);
    };
    let body = match live_media::availability(sequence, now) {
        live_media::Availability::Now => {
            let Some(media) = segment_media(app, &session.channel_arn, rendition, sequence) else {
                return refusal_response(&Refusal::session("no such file in this session"), url);
            };
            Body::from(media)
        }
        // A prefetched segment: the answer starts now, as a low-latency
        // edge's does, and its media follows once the segment is complete,
        // with every cue put while it was being made.
        live_media::Availability::After(wait) => {
            let (app, channel_arn, rendition) = (
                app.clone(),
                session.channel_arn.clone(),
                rendition.to_owned(),
            );
            Body::from_stream(futures_util::stream::once(async move {
                tokio::time::sleep(wait).await;
                segment_media(&app, &channel_arn, &rendition, sequence).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such rendition")
                })
            }))
        }
        live_media::Availability::NotYet => {
            return refusal_response(
                &Refusal::session(format!(
                    "segment {sequence} is not made yet: the media playlist lists the segments that can be fetched"
                )),
                url,
            );
        }
    };
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// Segment `sequence` of a rendition of the channel, with its cues (`None`:
/// no such rendition).
fn segment_media(app: &App, channel_arn: &str, rendition: &str, sequence: u64) -> Option<Bytes> {
    let segment = lock(&app.inner.metadata.cues).segment(channel_arn, rendition, sequence)?;
    Some(match segment {
        std::borrow::Cow::Borrowed(clip) => Bytes::from_static(clip),
        std::borrow::Cow::Owned(with_cues) => Bytes::from(with_cues),
    })
}
