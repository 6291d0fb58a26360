//! The channel cache: the token path answers from memory.
//!
//! A full listing (ListChannels + BatchGetChannel) warms the cache at
//! start-up and refreshes it in the background. A name is known only from
//! the last full listing: a name it does not hold is not found, and IVS is
//! not asked (a new channel is found at the next refresh, or at once through
//! the admin refresh). A miss by ARN may ask IVS (GetChannel), but only for a
//! caller already entitled to that ARN (the mint room decides that first,
//! then calls [`ChannelCache::fetch`]), single-flight (one call however many
//! requests wait), and within a small budget shared by all misses, so that
//! made-up ARNs cannot spend the region's channel quota (5 calls/s) that
//! rotation and revocation share. Unknown ARNs are remembered for a while.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::future::Cache;

use crate::ChannelArn;
use crate::service::channel::{ChannelInfo, ChannelRef};

/// A failure of the channel source, kept as the error it was.
pub type SourceError = Arc<dyn std::error::Error + Send + Sync>;

/// A boxed future of the channel source.
pub type SourceFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SourceError>> + Send + 'a>>;

/// Where channels come from (IVS, through the control room's client). The
/// mint room knows IVS only through this.
pub trait ChannelSource: Send + Sync + 'static {
    /// Every channel of the region.
    fn all_channels(&self) -> SourceFuture<'_, Vec<ChannelInfo>>;
    /// One channel by ARN; `None` if IVS does not hold it.
    fn channel(&self, arn: &ChannelArn) -> SourceFuture<'_, Option<ChannelInfo>>;
    /// One channel by name; `None` if IVS has none of that name.
    fn channel_by_name(&self, name: &str) -> SourceFuture<'_, Option<ChannelInfo>>;
}

/// Why a channel could not be resolved.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Not in the listing, or IVS does not hold it.
    NotFound,
    /// The budget of IVS lookups for cache misses is spent for now.
    Busy(Duration),
    /// IVS could not be asked.
    Unavailable(SourceError),
}

/// A channel the cache does not hold, as it is asked for.
#[derive(Clone, Copy)]
enum Missing<'a> {
    Arn(&'a ChannelArn),
    Name(&'a str),
}

/// [`Missing`], owned by the single-flight lookup.
enum Owned {
    Arn(ChannelArn),
    Name(String),
}

/// Most IVS lookups per second that cache misses may make, and their burst,
/// in each replica: rotation's and revocation's calls share the region's 5
/// channel calls per second with these, so with many replicas the budget
/// each leaves is smaller (N replicas may spend N per second).
pub const MISS_BUDGET_PER_SECOND: u32 = 1;
/// The burst of [`MISS_BUDGET_PER_SECOND`].
pub const MISS_BUDGET_BURST: u32 = 2;

/// `channel_cache_total` for the lookups every token makes, registered
/// once (on the first lookup, after the HTTP room installed the recorder):
/// an atomic add per token rather than a registry look-up.
struct LookupMetrics {
    hit: metrics::Counter,
    miss: metrics::Counter,
    anonymous: metrics::Counter,
}

fn lookup_metrics() -> &'static LookupMetrics {
    static METRICS: std::sync::OnceLock<LookupMetrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| LookupMetrics {
        hit: metrics::counter!("channel_cache_total", "result" => "hit"),
        miss: metrics::counter!("channel_cache_total", "result" => "miss"),
        anonymous: metrics::counter!("channel_cache_total", "result" => "anonymous"),
    })
}

/// The cache.
#[derive(Clone)]
pub struct ChannelCache {
    source: Arc<dyn ChannelSource>,
    by_arn: Cache<String, Arc<ChannelInfo>>,
    unknown: Cache<String, ()>,
    /// Name → ARN, from the last full listing.
    names: Arc<ArcSwap<HashMap<String, String>>>,
    warm: Arc<AtomicBool>,
    miss_budget: Arc<DefaultDirectRateLimiter>,
}

impl ChannelCache {
    /// An empty cache over a channel source.
    pub fn new(source: impl ChannelSource, negative_ttl: Duration) -> Self {
        let per_second = NonZeroU32::new(MISS_BUDGET_PER_SECOND).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(MISS_BUDGET_BURST).unwrap_or(NonZeroU32::MIN);
        Self {
            source: Arc::new(source),
            by_arn: Cache::builder().max_capacity(100_000).build(),
            unknown: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(negative_ttl)
                .build(),
            names: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            warm: Arc::new(AtomicBool::new(false)),
            miss_budget: Arc::new(RateLimiter::direct(
                Quota::per_second(per_second).allow_burst(burst),
            )),
        }
    }

    /// Loads every channel; the cache is warm once this has succeeded.
    /// Returns how many named channels the listing holds.
    pub async fn refresh(&self) -> Result<usize, SourceError> {
        metrics::counter!("ivs_calls_total", "operation" => "ListChannels").increment(1);
        let channels = self.source.all_channels().await?;
        let mut names = HashMap::with_capacity(channels.len());
        let live: HashSet<String> = channels.iter().map(|c| c.arn.as_str().to_owned()).collect();
        for channel in channels {
            if !channel.name.is_empty() {
                names.insert(channel.name.clone(), channel.arn.as_str().to_owned());
            }
            self.unknown.invalidate(channel.arn.as_str()).await;
            self.by_arn
                .insert(channel.arn.as_str().to_owned(), Arc::new(channel))
                .await;
        }
        // Channels deleted in IVS leave the cache.
        let stale: Vec<String> = self
            .by_arn
            .iter()
            .filter(|(arn, _)| !live.contains(arn.as_str()))
            .map(|(arn, _)| (*arn).clone())
            .collect();
        for arn in stale {
            self.by_arn.invalidate(&arn).await;
        }
        let count = names.len();
        self.names.store(Arc::new(names));
        self.warm.store(true, Ordering::Release);
        Ok(count)
    }

    /// A full listing now, forgetting which ARNs were unknown; what is
    /// cached keeps answering while the listing runs.
    pub async fn reload(&self) -> Result<usize, SourceError> {
        self.unknown.invalidate_all();
        self.refresh().await
    }

    /// Whether a full listing has succeeded.
    pub fn is_warm(&self) -> bool {
        self.warm.load(Ordering::Acquire)
    }

    /// Every cached channel.
    pub fn snapshot(&self) -> Vec<Arc<ChannelInfo>> {
        self.by_arn.iter().map(|(_, c)| c).collect()
    }

    /// A channel from memory only: never asks IVS.
    pub async fn cached(&self, reference: &ChannelRef) -> Option<Arc<ChannelInfo>> {
        let hit = self.peek(reference).await;
        let counters = lookup_metrics();
        match hit {
            Some(_) => counters.hit.increment(1),
            None => counters.miss.increment(1),
        }
        hit
    }

    /// [`Self::cached`] without counting: for anonymous callers, whose
    /// lookups must not show in the public metrics whether a channel exists.
    pub(crate) async fn cached_uncounted(
        &self,
        reference: &ChannelRef,
    ) -> Option<Arc<ChannelInfo>> {
        lookup_metrics().anonymous.increment(1);
        self.peek(reference).await
    }

    async fn peek(&self, reference: &ChannelRef) -> Option<Arc<ChannelInfo>> {
        match reference {
            ChannelRef::Arn(arn) => self.by_arn.get(arn.as_str()).await,
            ChannelRef::Name(name) => {
                let arn = self.names.load().get(name).cloned();
                match arn {
                    Some(arn) => self.by_arn.get(&arn).await,
                    None => None,
                }
            }
        }
    }

    /// A channel by ARN that the cache does not hold, from IVS, for a caller
    /// already entitled to that ARN: single-flight, remembered when
    /// unknown, and within the budget shared by all misses.
    pub async fn fetch(&self, arn: &ChannelArn) -> Result<Arc<ChannelInfo>, Lookup> {
        self.fetch_from_ivs(Missing::Arn(arn), true).await
    }

    /// A channel for the admin API (a trusted caller): from memory, else
    /// from IVS by ARN or by name, outside the misses' budget (the IVS
    /// client still paces it to the region's quota).
    pub async fn resolve_trusted(
        &self,
        reference: &ChannelRef,
    ) -> Result<Arc<ChannelInfo>, Lookup> {
        if let Some(hit) = self.cached(reference).await {
            return Ok(hit);
        }
        let missing = match reference {
            ChannelRef::Arn(arn) => Missing::Arn(arn),
            ChannelRef::Name(name) => Missing::Name(name),
        };
        self.fetch_from_ivs(missing, false).await
    }

    /// Asks IVS for one missing channel. Concurrent requests for the same
    /// one share the call (and the budget token it spends).
    async fn fetch_from_ivs(
        &self,
        missing: Missing<'_>,
        budgeted: bool,
    ) -> Result<Arc<ChannelInfo>, Lookup> {
        let key = match missing {
            Missing::Arn(arn) => arn.as_str().to_owned(),
            Missing::Name(name) => format!("name:{name}"),
        };
        if self.unknown.contains_key(&key) {
            metrics::counter!("channel_cache_total", "result" => "negative_hit").increment(1);
            return Err(Lookup::NotFound);
        }
        let source = Arc::clone(&self.source);
        let budget = budgeted.then(|| Arc::clone(&self.miss_budget));
        let owned = match missing {
            Missing::Arn(arn) => Owned::Arn(arn.clone()),
            Missing::Name(name) => Owned::Name(name.to_owned()),
        };
        let fetched = self
            .by_arn
            .try_get_with(key.clone(), async move {
                if let Some(budget) = budget
                    && let Err(not_until) = budget.check()
                {
                    metrics::counter!("channel_cache_total", "result" => "budget_spent")
                        .increment(1);
                    return Err(Lookup::Busy(
                        not_until.wait_time_from(DefaultClock::default().now()),
                    ));
                }
                let found = match &owned {
                    Owned::Arn(arn) => {
                        metrics::counter!("ivs_calls_total", "operation" => "GetChannel")
                            .increment(1);
                        source.channel(arn).await
                    }
                    Owned::Name(name) => {
                        metrics::counter!("ivs_calls_total", "operation" => "ListChannels")
                            .increment(1);
                        source.channel_by_name(name).await
                    }
                };
                match found {
                    Ok(Some(c)) => Ok(Arc::new(c)),
                    Ok(None) => Err(Lookup::NotFound),
                    Err(e) => Err(Lookup::Unavailable(e)),
                }
            })
            .await;
        if let (Missing::Name(name), Ok(c)) = (missing, &fetched) {
            // Stored under the name key for single-flight; file it under its
            // ARN and name, where the refresh keeps it current.
            self.by_arn.invalidate(&key).await;
            self.by_arn
                .insert(c.arn.as_str().to_owned(), Arc::clone(c))
                .await;
            let mut names = HashMap::clone(&self.names.load());
            names.insert(name.to_owned(), c.arn.as_str().to_owned());
            self.names.store(Arc::new(names));
        }
        self.settle(&key, fetched).await
    }

    async fn settle(
        &self,
        key: &str,
        fetched: Result<Arc<ChannelInfo>, Arc<Lookup>>,
    ) -> Result<Arc<ChannelInfo>, Lookup> {
        match fetched {
            Ok(c) => Ok(c),
            Err(e) => {
                if matches!(*e, Lookup::NotFound) {
                    self.unknown.insert(key.to_owned(), ()).await;
                }
                Err(Lookup::clone(&e))
            }
        }
    }
}
