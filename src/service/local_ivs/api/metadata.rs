//! PutMetadata: a payload for the live stream of a channel, carried to the
//! viewers in the next segment of every rendition (`cue_queue`,
//! `timed_metadata`).
//!
//! What IVS documents, and so what is checked here, in this order:
//! - the model (`ivs-service-2.json`, PutMetadata): `POST /PutMetadata`
//!   with `channelArn` and `metadata` (a string of at least 1 character,
//!   checked against the model before this), answered 204 with no body;
//! - the payload is at most "1 KB per request" (the model and the API
//!   reference). A payload is bytes, and what goes into the segment is its
//!   UTF-8 (the ID3 frame carries bytes, see `timed_metadata`), so the
//!   limit is 1024 bytes of UTF-8, not 1024 characters [OPEN: whether IVS
//!   counts KB as 1000 or 1024; 1024, the larger, refuses nothing IVS
//!   would take];
//! - "At most 5 requests per second per channel are allowed [...] At most
//!   155 requests per second per account" (the model; the IVS User Guide,
//!   "Service Quotas": PutMetadata "5 TPS per channel, 155 TPS per
//!   account", and "All quotas are enforced per region"): past either, 429
//!   ThrottlingException, the model's status. Checked before the channel is
//!   looked up, as a rate limit in front of the API would be [OPEN: whether
//!   IVS counts calls on channels that do not exist or are offline];
//! - the channel must exist (404 ResourceNotFoundException) and "must have
//!   an active stream" (the model's `channelArn` documentation), else 404
//!   ChannelNotBroadcasting, "The stream is offline for the given channel
//!   ARN" (the model's error and status).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::streams::live;
use super::{Context, str_of};
use crate::service::local_ivs::cue_queue::CueQueue;
use crate::service::local_ivs::error::ApiError;
use crate::service::local_ivs::lock;
use crate::service::local_ivs::state::RegionState;

/// The largest payload, in bytes of UTF-8 ("Maximum: 1 KB per request").
const MAX_METADATA_BYTES: usize = 1024;
/// PutMetadata calls a second on one channel.
const PER_CHANNEL_PER_SECOND: usize = 5;
/// PutMetadata calls a second in one account (and region).
const PER_ACCOUNT_PER_SECOND: usize = 155;

/// Inserts the payload into the channel's live stream.
pub(super) fn put(
    input: &Value,
    region: &RegionState,
    ctx: &Context<'_>,
) -> Result<Value, ApiError> {
    let channel_arn = str_of(input, "channelArn");
    let metadata = str_of(input, "metadata");
    if metadata.len() > MAX_METADATA_BYTES {
        return Err(ApiError::validation(format!(
            "metadata is {} bytes of UTF-8; PutMetadata takes at most {MAX_METADATA_BYTES} (1 KB) \
             per request: send less, or spread it over several calls",
            metadata.len()
        )));
    }
    let now = ctx.metadata.clock();
    lock(&ctx.metadata.quota).admit(&ctx.scope.key(), channel_arn, now)?;
    live(region, channel_arn)?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(ctx.now_ms);
    lock(&ctx.metadata.cues).put(channel_arn, metadata.to_owned(), at);
    Ok(Value::Null)
}

/// What PutMetadata keeps beside the state, in memory only: the calls of
/// the last second, the payloads waiting for their segments, and the clock
/// the quotas read.
#[derive(Debug, Default)]
pub(crate) struct TimedMetadata {
    pub(crate) quota: Mutex<Quota>,
    pub(crate) cues: Mutex<CueQueue>,
    /// Where a test paused the quotas' clock (`POST /_local/quota-clock`);
    /// `None`: real time.
    pub(crate) paused_at: Mutex<Option<Instant>>,
}

impl TimedMetadata {
    /// Now, on the quotas' clock (monotonic).
    pub(crate) fn clock(&self) -> Instant {
        lock(&self.paused_at).unwrap_or_else(Instant::now)
    }
}

/// PutMetadata's two rate quotas, as IVS words them: at most N calls in
/// any one second. A sliding log of the calls admitted in the last second
/// (at most 5 per channel, 155 per account) says exactly that.
///
/// A token bucket (governor's GCRA, as the token service's limits use) does
/// not: with a burst of 5 refilled at 5 a second it admits 5 at once and
/// then one every 200 ms, 9 within one second; without the burst it refuses
/// two calls in quick succession, which IVS allows.
#[derive(Debug, Default)]
pub(crate) struct Quota {
    per_channel: HashMap<String, Window>,
    per_account: HashMap<String, Window>,
    /// Map size past which idle windows are dropped (grows with the live
    /// ones, so dropping stays amortised O(1) a call).
    prune_at: usize,
}

/// The times of the calls admitted in the last second, oldest first.
#[derive(Debug, Default)]
struct Window(VecDeque<Instant>);

impl Window {
    /// Forgets calls a second or more before `now`; true if fewer than
    /// `limit` remain.
    fn has_room(&mut self, now: Instant, limit: usize) -> bool {
        while self
            .0
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(1))
        {
            self.0.pop_front();
        }
        self.0.len() < limit
    }

    /// How long until the oldest call leaves the window.
    fn wait(&self, now: Instant) -> Duration {
        self.0.front().map_or(Duration::ZERO, |t| {
            Duration::from_secs(1).saturating_sub(now.saturating_duration_since(*t))
        })
    }
}

impl Quota {
    /// Admits one call on `channel_arn` in `account` (an account and region,
    /// `Scope::key`) at `now`, or refuses it: a refused call is not counted.
    pub(crate) fn admit(
        &mut self,
        account: &str,
        channel_arn: &str,
        now: Instant,
    ) -> Result<(), ApiError> {
        self.prune(now);
        let in_account = self.per_account.entry(account.to_owned()).or_default();
        if !in_account.has_room(now, PER_ACCOUNT_PER_SECOND) {
            return Err(ApiError::throttling(format!(
                "PutMetadata is limited to {PER_ACCOUNT_PER_SECOND} calls per second per account; \
                 retry in {} ms",
                in_account.wait(now).as_millis()
            )));
        }
        let on_channel = self.per_channel.entry(channel_arn.to_owned()).or_default();
        if !on_channel.has_room(now, PER_CHANNEL_PER_SECOND) {
            return Err(ApiError::throttling(format!(
                "PutMetadata is limited to {PER_CHANNEL_PER_SECOND} calls per second on channel \
                 {channel_arn}; retry in {} ms, or batch the data into fewer calls",
                on_channel.wait(now).as_millis()
            )));
        }
        on_channel.0.push_back(now);
        if let Some(w) = self.per_account.get_mut(account) {
            w.0.push_back(now);
        }
        Ok(())
    }

    /// Drops windows with no call in the last second once the maps have
    /// grown, so that many channels or regions, each called once, cannot
    /// grow memory without bound.
    fn prune(&mut self, now: Instant) {
        if self.per_channel.len() + self.per_account.len() <= self.prune_at.max(256) {
            return;
        }
        self.per_channel.retain(|_, w| !w.has_room(now, 1));
        self.per_account.retain(|_, w| !w.has_room(now, 1));
        self.prune_at = 2 * (self.per_channel.len() + self.per_account.len());
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.per_channel.len() + self.per_account.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "123456789012/us-west-2";

    fn channel(n: usize) -> String {
        format!("arn:aws:ivs:us-west-2:123456789012:channel/ch{n}")
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_sixth_call_within_a_second_on_one_channel_is_throttled() {
        let t0 = Instant::now();
        let mut q = Quota::default();
        let a = channel(1);
        for i in 0..5 {
            q.admit(ACCOUNT, &a, t0 + ms(i * 100)).unwrap();
        }
        let e = q.admit(ACCOUNT, &a, t0 + ms(999)).unwrap_err();
        assert_eq!(e.code, "ThrottlingException");
        assert_eq!(e.status.as_u16(), 429);
        assert!(
            e.message.contains("5 calls per second on channel"),
            "{}",
            e.message
        );
        assert!(e.message.contains("retry in 1 ms"), "{}", e.message);
        // Another channel is not affected.
        q.admit(ACCOUNT, &channel(2), t0 + ms(999)).unwrap();
        // A second after the first call, its place is free, and only its.
        q.admit(ACCOUNT, &a, t0 + ms(1000)).unwrap();
        assert!(q.admit(ACCOUNT, &a, t0 + ms(1050)).is_err());
        q.admit(ACCOUNT, &a, t0 + ms(1100)).unwrap();
    }

    #[test]
    fn refused_calls_are_not_counted() {
        let t0 = Instant::now();
        let mut q = Quota::default();
        let a = channel(1);
        for _ in 0..5 {
            q.admit(ACCOUNT, &a, t0).unwrap();
        }
        for i in 1..100 {
            assert!(q.admit(ACCOUNT, &a, t0 + ms(i * 5)).is_err());
        }
        // Hammering did not push the window on: at 1 s all five places free.
        for _ in 0..5 {
            q.admit(ACCOUNT, &a, t0 + ms(1000)).unwrap();
        }
    }

    #[test]
    fn the_account_takes_155_calls_a_second_across_its_channels() {
        let t0 = Instant::now();
        let mut q = Quota::default();
        // 31 channels at their own limit of 5: 155 calls.
        for c in 0..31 {
            for _ in 0..5 {
                q.admit(ACCOUNT, &channel(c), t0 + ms(c as u64)).unwrap();
            }
        }
        let e = q.admit(ACCOUNT, &channel(31), t0 + ms(500)).unwrap_err();
        assert!(
            e.message.contains("155 calls per second per account"),
            "{}",
            e.message
        );
        assert!(e.message.contains("retry in 500 ms"), "{}", e.message);
        // Another account, or the same account in another region, has its own.
        q.admit("210987654321/us-west-2", &channel(31), t0 + ms(500))
            .unwrap();
        q.admit("123456789012/eu-west-1", &channel(31), t0 + ms(500))
            .unwrap();
        // A second later the first channel's calls have left the window.
        q.admit(ACCOUNT, &channel(31), t0 + ms(1000)).unwrap();
    }

    #[test]
    fn idle_windows_are_forgotten() {
        let t0 = Instant::now();
        let mut q = Quota::default();
        // 10 000 channels, each called once, 100 a second: about 100 live
        // windows at any time.
        for c in 0..10_000 {
            q.admit(ACCOUNT, &channel(c), t0 + ms(c as u64 * 10))
                .unwrap();
        }
        assert!(q.tracked() <= 2 * 101 + 256, "{}", q.tracked());
    }
}
