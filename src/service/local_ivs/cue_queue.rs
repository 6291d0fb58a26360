//! Timed metadata waiting for the edge: per channel, the cues of each
//! segment sequence. A payload put at time `t` belongs to the segment being
//! made at `t` (the first the media playlist announces as prefetch, see
//! `live_media::media_playlist`; the edge answers it once complete), at its
//! offset into that segment, so every rendition's copy of that segment
//! carries it, once, and every viewer and every retry gets the same bytes.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use super::live_media;
use super::timed_metadata::{self, Cue};

/// Segments kept after their time: well past the playlist's live window
/// (3 segments), so a player that lags behind still finds the cues.
const KEEP_SEGMENTS: u64 = 30;
/// Most cues kept per segment: PutMetadata is throttled at 5 a second per
/// channel by IVS, 10 a segment; more are dropped, oldest kept.
const MAX_CUES_PER_SEGMENT: usize = 64;

/// Cues by channel ARN, then by segment sequence.
#[derive(Debug, Default)]
pub(crate) struct CueQueue {
    by_channel: HashMap<String, BTreeMap<u64, Vec<Cue>>>,
}

/// The segment being made at `now` and the offset into it, in 90 kHz
/// ticks.
fn position(now: SystemTime) -> (u64, u64) {
    let (sequence, offset_ms) = live_media::position(now);
    (sequence, offset_ms * 90)
}

impl CueQueue {
    /// Queues `text` (a PutMetadata payload) for `channel_arn` at `now`.
    pub(crate) fn put(&mut self, channel_arn: &str, text: String, now: SystemTime) {
        let (sequence, offset_ticks) = position(now);
        let segments = self.by_channel.entry(channel_arn.to_owned()).or_default();
        // Sequences only grow with the clock: drop what no player asks for.
        let keep_from = sequence.saturating_sub(KEEP_SEGMENTS);
        *segments = segments.split_off(&keep_from);
        let cues = segments.entry(sequence).or_default();
        if cues.len() < MAX_CUES_PER_SEGMENT {
            cues.push(Cue { text, offset_ticks });
        }
    }

    /// The cues of segment `sequence` of the channel (empty: none).
    pub(crate) fn cues(&self, channel_arn: &str, sequence: u64) -> &[Cue] {
        self.by_channel
            .get(channel_arn)
            .and_then(|s| s.get(&sequence))
            .map_or(&[], Vec::as_slice)
    }

    /// Segment `sequence` of a rendition of the channel, as the edge serves
    /// it: the clip, with the segment's cues if it has any (`None`: no such
    /// rendition).
    pub(crate) fn segment(
        &self,
        channel_arn: &str,
        rendition: &str,
        sequence: u64,
    ) -> Option<Cow<'static, [u8]>> {
        let clip = live_media::segment(rendition, sequence)?;
        Some(
            match timed_metadata::with_cues(clip, self.cues(channel_arn, sequence)) {
                Ok(segment) => segment,
                Err(e) => {
                    // The clip is ours and reads; should it not, the media
                    // still plays, without the cues.
                    tracing::warn!(error = %e, "local IVS: segment served without its timed metadata");
                    Cow::Borrowed(clip)
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_cue_goes_into_the_segment_made_at_its_time_for_every_rendition() {
        let arn = "arn:aws:ivs:us-west-2:123456789012:channel/abcd";
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_500);
        let mut q = CueQueue::default();
        q.put(arn, "one".into(), t);
        q.put(arn, "two".into(), t + Duration::from_millis(1_000));
        q.put(arn, "next".into(), t + Duration::from_millis(1_500));
        // 1 000 500 ms is 500 ms into segment 500.
        let want = [
            Cue {
                text: "one".into(),
                offset_ticks: 45_000,
            },
            Cue {
                text: "two".into(),
                offset_ticks: 135_000,
            },
        ];
        assert_eq!(q.cues(arn, 500), want);
        // The queue is read, not drained: each rendition's segment 500, and
        // a second viewer's, carry the same cues.
        assert_eq!(q.cues(arn, 500), want);
        assert_eq!(
            q.cues(arn, 501),
            [Cue {
                text: "next".into(),
                offset_ticks: 0
            }]
        );
        assert!(q.cues(arn, 499).is_empty());
        assert!(
            q.cues("arn:aws:ivs:us-west-2:123456789012:channel/other", 500)
                .is_empty()
        );
        // Old segments go as the clock moves on.
        q.put(
            arn,
            "later".into(),
            t + Duration::from_secs(2 * KEEP_SEGMENTS + 10),
        );
        assert!(q.cues(arn, 500).is_empty());
        for _ in 0..MAX_CUES_PER_SEGMENT + 5 {
            q.put(arn, "x".into(), t);
        }
        assert_eq!(q.cues(arn, 500).len(), MAX_CUES_PER_SEGMENT);
    }

    #[test]
    fn the_edge_serves_the_cue_in_that_segment_of_every_rendition_and_the_clip_elsewhere() {
        let arn = "arn:aws:ivs:us-west-2:123456789012:channel/abcd";
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_500);
        let mut q = CueQueue::default();
        q.put(arn, "{\"score\":3}".into(), t);
        for rendition in ["720p30", "360p30"] {
            let clip = live_media::segment(rendition, 500).unwrap();
            let served = q.segment(arn, rendition, 500).unwrap();
            assert!(matches!(served, Cow::Owned(_)));
            assert!(served.len() > clip.len());
            let text = b"{\"score\":3}";
            assert!(served.windows(text.len()).any(|w| w == text));
            // Twice the same bytes: a retry, or a second viewer.
            assert_eq!(q.segment(arn, rendition, 500).unwrap(), served);
            // The segments around it, and another channel's, are the clip.
            for (channel, seq) in [(arn, 499), (arn, 501), ("other", 500)] {
                let plain = q.segment(channel, rendition, seq).unwrap();
                assert!(
                    matches!(plain, Cow::Borrowed(b) if b == live_media::segment(rendition, seq).unwrap())
                );
            }
        }
        assert!(q.segment(arn, "1080p60", 500).is_none());
    }
}
