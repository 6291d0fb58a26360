//! The live stream's media as the edge serves it: the looping clip, cut in
//! segments made one after the other by the clock, and the media playlist
//! that lists them as IVS's low-latency edge does.
//!
//! Segment `n` is made from `n × 2 s` to `(n + 1) × 2 s` since the Unix epoch
//! (wall-clock time, so every rendition, session and restart agrees on it).
//! The playlist lists the last complete segments, each with its
//! `#EXT-X-PROGRAM-DATE-TIME`, and, as `#EXT-X-TWITCH-PREFETCH`, the segment
//! being made and the next: the player asks for them early and the edge
//! answers at once, with the media once the segment is complete (see
//! [`availability`]), so that the player plays near the live edge rather
//! than three segments behind it. A prefetched segment that starts a loop
//! of the clip is announced as a discontinuity, as a listed one is.
//!
//! Where that comes from:
//! - The IVS Web Player (amazon-ivs-player 1.56.1,
//!   `amazon-ivs-wasmworker.min.wasm`) knows the tags `EXT-X-TWITCH-PREFETCH`,
//!   `EXT-X-PREFETCH` and `EXT-X-PROGRAM-DATE-TIME` (its strings); IVS runs on
//!   Twitch's video system (`*.hls.live-video.net` segment hosts), whose live
//!   media playlists carry a `#EXT-X-PROGRAM-DATE-TIME` per segment,
//!   `#EXTINF:2.000,live`, and one or two `#EXT-X-TWITCH-PREFETCH:URL` after
//!   the last segment (playlists captured from it, quoted in the tests of
//!   third-party Twitch clients). Without a program date the
//!   player has no wall-clock time for the stream; without prefetch it
//!   plays 5-7 s behind. docs/ivs-facts.md §7a has the evidence.
//! - [OPEN] IVS's exact media playlist is not documented; the local edge
//!   takes the tags above, which the player is checked to honour
//!   (`tests/browser/play.mjs`: a PutMetadata cue within two segment
//!   durations).

use std::time::{Duration, SystemTime};

use super::api::streams::iso8601;

/// Segment length of the local stream (the clip's, see assets/clip).
pub(crate) const SEGMENT_SECONDS: u64 = 2;
const SEGMENT_MS: u64 = SEGMENT_SECONDS * 1000;

/// The looping clip: per rendition, its segments in order (H.264 + AAC in
/// MPEG-TS, made by assets/clip/make-clip.sh).
const CLIP: &[(&str, [&[u8]; 4])] = &[
    (
        "720p30",
        [
            include_bytes!("../../../assets/clip/720p30/0.ts"),
            include_bytes!("../../../assets/clip/720p30/1.ts"),
            include_bytes!("../../../assets/clip/720p30/2.ts"),
            include_bytes!("../../../assets/clip/720p30/3.ts"),
        ],
    ),
    (
        "360p30",
        [
            include_bytes!("../../../assets/clip/360p30/0.ts"),
            include_bytes!("../../../assets/clip/360p30/1.ts"),
            include_bytes!("../../../assets/clip/360p30/2.ts"),
            include_bytes!("../../../assets/clip/360p30/3.ts"),
        ],
    ),
];

/// Segments in one loop of the clip.
const CLIP_SEGMENTS: u64 = 4;

/// The media of segment `sequence` of a rendition: the clip, looped.
pub(crate) fn segment(rendition: &str, sequence: u64) -> Option<&'static [u8]> {
    let (_, segments) = CLIP.iter().find(|(name, _)| *name == rendition)?;
    usize::try_from(sequence % CLIP_SEGMENTS)
        .ok()
        .and_then(|i| segments.get(i))
        .copied()
}

/// Milliseconds since the Unix epoch (0 before it).
pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The segment being made at `now` and how far into it `now` is, in ms.
pub(crate) fn position(now: SystemTime) -> (u64, u64) {
    let ms = unix_ms(now);
    (ms / SEGMENT_MS, ms % SEGMENT_MS)
}

/// Complete segments in the live window.
const WINDOW: u64 = 3;
/// Segments the playlist announces before they are complete: the one being
/// made and the next, as Twitch's edge announces two.
const PREFETCH: u64 = 2;

/// When the edge can answer a request for a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Availability {
    /// Complete: answer now.
    Now,
    /// Announced (prefetch) but still being made, or next: answer once it is
    /// complete, after this long.
    After(Duration),
    /// Not announced yet: nobody can know its media.
    NotYet,
}

/// When segment `sequence` can be served at `now`. A prefetched segment's
/// answer waits for the segment to be complete, so that a PutMetadata made
/// while it is being made is in it for every viewer.
pub(crate) fn availability(sequence: u64, now: SystemTime) -> Availability {
    let (making, _) = position(now);
    if sequence < making {
        return Availability::Now;
    }
    if sequence >= making.saturating_add(PREFETCH) {
        return Availability::NotYet;
    }
    let complete_ms = sequence.saturating_add(1).saturating_mul(SEGMENT_MS);
    Availability::After(Duration::from_millis(
        complete_ms.saturating_sub(unix_ms(now)),
    ))
}

/// A live media playlist at `now`: the last complete segments, each with
/// the wall-clock time its first frame was made, then the segments being
/// made as prefetch. Each loop of the clip starts its timestamps again, so
/// every loop start is a discontinuity, numbered by the loop.
pub(crate) fn media_playlist(session_id: &str, rendition: &str, now: SystemTime) -> String {
    let (making, _) = position(now);
    let first = making.saturating_sub(WINDOW);
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{SEGMENT_SECONDS}\n#EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
        first / CLIP_SEGMENTS
    );
    let uri = |seq: u64| format!("/api/video/v1/session/{session_id}/{rendition}/{seq}.ts");
    for seq in first..making {
        if seq != first && seq % CLIP_SEGMENTS == 0 {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        out.push_str(&format!(
            "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{SEGMENT_SECONDS}.000,live\n{}\n",
            iso8601(seq.saturating_mul(SEGMENT_MS)),
            uri(seq)
        ));
    }
    for seq in making..making.saturating_add(PREFETCH) {
        if seq != first && seq % CLIP_SEGMENTS == 0 {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        out.push_str(&format!("#EXT-X-TWITCH-PREFETCH:{}\n", uri(seq)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_playlist_advances_with_time() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_002_500);
        let a = media_playlist("s", "360p30", t);
        let b = media_playlist("s", "360p30", t + Duration::from_secs(2));
        assert!(a.contains("#EXT-X-MEDIA-SEQUENCE:498"));
        assert!(b.contains("#EXT-X-MEDIA-SEQUENCE:499"));
        // 500 starts a loop of the clip (a discontinuity); 498 is in loop
        // 124, and so is 499.
        assert!(a.contains("#EXT-X-DISCONTINUITY-SEQUENCE:124"));
        assert!(b.contains("#EXT-X-DISCONTINUITY-SEQUENCE:124"));
        assert!(
            b.contains("499.ts\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:16:40.000Z\n#EXTINF:2.000,live\n/api/video/v1/session/s/360p30/500.ts\n"),
            "{b}"
        );
        assert_eq!(b.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{b}");
    }

    #[test]
    fn media_playlist_dates_each_segment_and_prefetches_the_ones_being_made() {
        // 1 002.5 s: segment 501 is being made; 500 starts a loop.
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_002_500);
        let want = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n\
            #EXT-X-MEDIA-SEQUENCE:498\n#EXT-X-DISCONTINUITY-SEQUENCE:124\n\
            #EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:16:36.000Z\n#EXTINF:2.000,live\n/api/video/v1/session/s/720p30/498.ts\n\
            #EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:16:38.000Z\n#EXTINF:2.000,live\n/api/video/v1/session/s/720p30/499.ts\n\
            #EXT-X-DISCONTINUITY\n\
            #EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:16:40.000Z\n#EXTINF:2.000,live\n/api/video/v1/session/s/720p30/500.ts\n\
            #EXT-X-TWITCH-PREFETCH:/api/video/v1/session/s/720p30/501.ts\n\
            #EXT-X-TWITCH-PREFETCH:/api/video/v1/session/s/720p30/502.ts\n";
        assert_eq!(media_playlist("s", "720p30", t), want);
    }

    #[test]
    fn a_prefetched_segment_that_starts_a_loop_is_announced_as_a_discontinuity() {
        // Without it the IVS Web Player stalls at the loop and drops the
        // cues of the next segments (seen in Chromium, amazon-ivs-player
        // 1.56.1).
        for (ms, prefetch) in [(1_000_500, "500"), (998_500, "500")] {
            let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
            let p = media_playlist("s", "720p30", t);
            let want = format!(
                "#EXT-X-DISCONTINUITY\n#EXT-X-TWITCH-PREFETCH:/api/video/v1/session/s/720p30/{prefetch}.ts\n"
            );
            assert!(p.contains(&want), "{p}");
            assert_eq!(p.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{p}");
        }
    }

    #[test]
    fn a_segment_is_served_once_complete_and_a_prefetched_one_waits_for_it() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_500);
        assert_eq!(position(t), (500, 500));
        assert_eq!(availability(499, t), Availability::Now);
        assert_eq!(availability(3, t), Availability::Now);
        assert_eq!(
            availability(500, t),
            Availability::After(Duration::from_millis(1_500))
        );
        assert_eq!(
            availability(501, t),
            Availability::After(Duration::from_millis(3_500))
        );
        assert_eq!(availability(502, t), Availability::NotYet);
        assert_eq!(availability(u64::MAX, t), Availability::NotYet);
        // At the boundary the segment just made is complete.
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_002_000);
        assert_eq!(availability(500, at), Availability::Now);
    }

    #[test]
    fn segments_are_the_clip_looped() {
        assert_eq!(segment("720p30", 5), segment("720p30", 1));
        assert_ne!(segment("720p30", 1), segment("360p30", 1));
        assert!(segment("1080p60", 0).is_none());
        // MPEG-TS: 188-byte packets starting with the sync byte.
        let ts = segment("360p30", 0).unwrap();
        assert_eq!(ts.len() % 188, 0);
        assert!(ts.chunks(188).all(|p| p[0] == 0x47));
    }
}
