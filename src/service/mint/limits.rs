//! Rate limits per caller: per API key, per client address for anonymous
//! callers, per viewer (`sub`) for viewer JWTs. Token buckets (governor)
//! whose burst is the per-second rate.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::policy::Caller;
use super::refusal::Refusal;
use crate::service::config::Config;

/// A quota of `per_second` requests (at least 1).
fn quota(per_second: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
}

type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Keyed<K, C> =
    RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Every caller's bucket. The clock is a parameter so that tests can drive
/// time (governor's `FakeRelativeClock`); the service runs on the default.
pub(crate) struct Limits<C: Clock = DefaultClock> {
    /// One bucket per API key, in the order of `api_keys` (the rule's index).
    per_api_key: Vec<Direct<C>>,
    per_ip: Keyed<IpAddr, C>,
    per_viewer: Keyed<String, C>,
    clock: C,
}

impl Limits {
    /// The limits of a (validated) configuration: one bucket per API key
    /// (names are unique), per anonymous client address, per viewer.
    pub(crate) fn new(config: &Config) -> Self {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limits<C> {
    /// [`Limits::new`] on another clock.
    pub(crate) fn with_clock(config: &Config, clock: C) -> Self {
        let per_viewer = config
            .viewer_jwt
            .as_ref()
            .map_or(1, |v| v.rate_per_viewer_per_second);
        Self {
            per_api_key: config
                .api_keys
                .iter()
                .map(|k| RateLimiter::direct_with_clock(quota(k.rate_per_second), clock.clone()))
                .collect(),
            per_ip: RateLimiter::new(
                quota(config.anonymous.rate_per_ip_per_second),
                DefaultKeyedStateStore::default(),
                clock.clone(),
            ),
            per_viewer: RateLimiter::new(
                quota(per_viewer),
                DefaultKeyedStateStore::default(),
                clock.clone(),
            ),
            clock,
        }
    }

    /// Takes `n` requests from the caller's bucket.
    pub(crate) fn take(&self, caller: &Caller, n: u32) -> Result<(), Refusal> {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let result = match caller {
            Caller::ApiKey(rule) => match self.per_api_key.get(rule.index) {
                Some(limiter) => limiter.check_n(n),
                // The rules and these buckets come from the same list.
                None => {
                    tracing::error!(api_key = %rule.name, "no rate-limit bucket for this API key");
                    return Err(Refusal::Internal);
                }
            },
            Caller::Anonymous(ip) => self.per_ip.check_key_n(ip, n),
            Caller::Viewer(v) => self.per_viewer.check_key_n(&v.subject, n),
        };
        // Named only for a refusal: an allowed request formats nothing.
        let which = || match caller {
            Caller::ApiKey(rule) => format!("API key {}", rule.name),
            Caller::Anonymous(ip) => format!("client {ip}"),
            Caller::Viewer(v) => format!("viewer {}", v.pseudonym),
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Refusal::RateLimited {
                retry_after: not_until.wait_time_from(self.clock.now()),
                message: format!("rate limit of {} exceeded", which()),
            }),
            Err(_) => Err(Refusal::RateLimited {
                retry_after: Duration::from_secs(1),
                message: format!("a batch larger than the rate limit of {}", which()),
            }),
        }
    }

    /// Forgets the state of clients and viewers that have been quiet long
    /// enough to be back at a full bucket, so that many distinct addresses
    /// cannot grow memory without bound.
    pub(crate) fn housekeeping(&self) {
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
        self.per_viewer.retain_recent();
        self.per_viewer.shrink_to_fit();
    }

    #[cfg(test)]
    pub(crate) fn tracked_clients(&self) -> usize {
        self.per_ip.len()
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    /// Limits on a clock that moves only when the test says so.
    fn limits(anonymous_per_second: u32) -> (Limits<FakeRelativeClock>, FakeRelativeClock) {
        let mut config = Config::default();
        config.anonymous.rate_per_ip_per_second = anonymous_per_second;
        let clock = FakeRelativeClock::default();
        (Limits::with_clock(&config, clock.clone()), clock)
    }

    fn retry_after(result: Result<(), Refusal>) -> Duration {
        match result {
            Err(Refusal::RateLimited { retry_after, .. }) => retry_after,
            other => panic!("not rate limited: {other:?}"),
        }
    }

    #[test]
    fn housekeeping_forgets_quiet_clients() {
        let (limits, clock) = limits(1000);
        for i in 0..500u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            limits.take(&Caller::Anonymous(ip), 1).unwrap();
        }
        limits.housekeeping();
        assert_eq!(limits.tracked_clients(), 500, "each is still refilling");
        // A full bucket of 1000 refills in a second.
        clock.advance(Duration::from_secs(1));
        limits.housekeeping();
        assert_eq!(limits.tracked_clients(), 0);
    }

    #[test]
    fn a_burst_of_the_rate_passes_and_the_next_request_waits_one_refill() {
        let (limits, clock) = limits(5);
        let caller = Caller::Anonymous(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..5 {
            limits.take(&caller, 1).unwrap();
        }
        // 5 per second: one request's worth comes back every 200 ms.
        assert_eq!(
            retry_after(limits.take(&caller, 1)),
            Duration::from_millis(200)
        );
        clock.advance(Duration::from_millis(150));
        assert_eq!(
            retry_after(limits.take(&caller, 1)),
            Duration::from_millis(50)
        );
        clock.advance(Duration::from_millis(50));
        limits.take(&caller, 1).unwrap();
        assert!(limits.take(&caller, 1).is_err());
        // Another client has its own bucket.
        limits
            .take(&Caller::Anonymous(IpAddr::from([127, 0, 0, 2])), 5)
            .unwrap();
    }

    #[test]
    fn a_batch_larger_than_the_rate_is_refused_however_long_the_caller_waited() {
        let (limits, clock) = limits(2);
        let caller = Caller::Anonymous(IpAddr::from([127, 0, 0, 1]));
        clock.advance(Duration::from_secs(3600));
        match limits.take(&caller, 3) {
            Err(Refusal::RateLimited { message, .. }) => {
                assert!(message.contains("batch larger"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        limits.take(&caller, 2).unwrap();
    }
}
