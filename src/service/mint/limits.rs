//! Rate limits per caller: per API key, per client address for anonymous
//! callers, per viewer (`sub`) for viewer JWTs. Token buckets (governor)
//! whose burst is the per-second rate.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, RateLimiter};

use super::policy::{Caller, quota};
use super::refusal::Refusal;
use crate::service::config::Config;

/// The buckets of callers without a rule of their own (an API key's bucket
/// is in its rule).
pub(crate) struct Limits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_viewer: DefaultKeyedRateLimiter<String>,
}

impl Limits {
    /// The limits of a (validated) configuration: per anonymous client
    /// address, per viewer.
    pub(crate) fn new(config: &Config) -> Self {
        let per_viewer = config
            .viewer_jwt
            .as_ref()
            .map_or(1, |v| v.rate_per_viewer_per_second);
        Self {
            per_ip: RateLimiter::keyed(quota(config.anonymous.rate_per_ip_per_second)),
            per_viewer: RateLimiter::keyed(quota(per_viewer)),
        }
    }

    /// Takes `n` requests from the caller's bucket.
    pub(crate) fn take(&self, caller: &Caller, n: u32) -> Result<(), Refusal> {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let (result, which) = match caller {
            Caller::ApiKey(rule) => (rule.limiter.check_n(n), format!("API key {}", rule.name)),
            Caller::Anonymous(ip) => (self.per_ip.check_key_n(ip, n), format!("client {ip}")),
            Caller::Viewer(v) => (
                self.per_viewer.check_key_n(&v.subject, n),
                format!("viewer {}", v.pseudonym),
            ),
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Refusal::RateLimited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
                message: format!("rate limit of {which} exceeded"),
            }),
            Err(_) => Err(Refusal::RateLimited {
                retry_after: Duration::from_secs(1),
                message: format!("a batch larger than the rate limit of {which}"),
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
    use super::*;

    #[test]
    fn housekeeping_forgets_quiet_clients() {
        let mut config = Config::default();
        config.anonymous.rate_per_ip_per_second = 1000;
        let limits = Limits::new(&config);
        for i in 0..500u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            limits.take(&Caller::Anonymous(ip), 1).unwrap();
        }
        assert_eq!(limits.tracked_clients(), 500);
        std::thread::sleep(Duration::from_millis(50));
        limits.housekeeping();
        assert_eq!(limits.tracked_clients(), 0);
    }

    #[test]
    fn a_client_past_its_bucket_is_told_when_to_retry() {
        let mut config = Config::default();
        config.anonymous.rate_per_ip_per_second = 2;
        let limits = Limits::new(&config);
        let caller = Caller::Anonymous(IpAddr::from([127, 0, 0, 1]));
        limits.take(&caller, 2).unwrap();
        match limits.take(&caller, 1) {
            Err(Refusal::RateLimited { retry_after, .. }) => {
                assert!(retry_after <= Duration::from_secs(1));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            limits.take(&caller, 3),
            Err(Refusal::RateLimited { .. })
        ));
    }
}
