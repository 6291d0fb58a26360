//! The channel cache: the token path never calls IVS.
//!
//! Warmed at start-up from ListChannels + BatchGetChannel, refreshed in the
//! background, single-flight on misses (one IVS call however many requests
//! wait), and unknown channels remembered for a while so that a flood of
//! requests for a made-up channel costs one call.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use moka::future::Cache;

use super::ivs::{ChannelInfo, Ivs, IvsError};
use crate::ChannelArn;

/// Why a channel could not be resolved.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// IVS does not know it.
    NotFound,
    /// IVS could not be asked.
    Unavailable(Arc<IvsError>),
}

/// The cache.
#[derive(Clone)]
pub struct ChannelCache {
    ivs: Ivs,
    by_arn: Cache<String, Arc<ChannelInfo>>,
    unknown: Cache<String, ()>,
    /// Name → ARN, from the last full listing.
    names: Arc<ArcSwap<HashMap<String, String>>>,
    warm: Arc<AtomicBool>,
}

impl ChannelCache {
    /// An empty cache over an IVS client.
    pub fn new(ivs: Ivs, negative_ttl: Duration) -> Self {
        Self {
            ivs,
            by_arn: Cache::builder().max_capacity(100_000).build(),
            unknown: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(negative_ttl)
                .build(),
            names: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            warm: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Loads every channel; the cache is warm once this has succeeded.
    pub async fn refresh(&self) -> Result<usize, IvsError> {
        metrics::counter!("ivs_calls_total", "operation" => "ListChannels").increment(1);
        let channels = self.ivs.all_channels().await?;
        let mut names = HashMap::with_capacity(channels.len());
        let live: std::collections::HashSet<String> =
            channels.iter().map(|c| c.arn.as_str().to_owned()).collect();
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

    /// Forgets everything; the next refresh loads it again.
    pub async fn invalidate(&self) {
        self.by_arn.invalidate_all();
        self.unknown.invalidate_all();
    }

    /// Whether a full listing has succeeded.
    pub fn is_warm(&self) -> bool {
        self.warm.load(Ordering::Acquire)
    }

    /// Every cached channel.
    pub fn snapshot(&self) -> Vec<Arc<ChannelInfo>> {
        self.by_arn.iter().map(|(_, c)| c).collect()
    }

    /// A channel by ARN or name.
    pub async fn resolve(&self, reference: &str) -> Result<Arc<ChannelInfo>, Lookup> {
        let arn = if ChannelArn::parse(reference).is_ok() {
            reference.to_owned()
        } else if let Some(arn) = self.names.load().get(reference) {
            arn.clone()
        } else {
            return self.resolve_name(reference).await;
        };
        if let Some(hit) = self.by_arn.get(&arn).await {
            metrics::counter!("channel_cache_total", "result" => "hit").increment(1);
            return Ok(hit);
        }
        if self.unknown.contains_key(&arn) {
            metrics::counter!("channel_cache_total", "result" => "negative_hit").increment(1);
            return Err(Lookup::NotFound);
        }
        metrics::counter!("channel_cache_total", "result" => "miss").increment(1);
        let ivs = self.ivs.clone();
        let key = arn.clone();
        let fetched = self
            .by_arn
            .try_get_with(arn.clone(), async move {
                metrics::counter!("ivs_calls_total", "operation" => "GetChannel").increment(1);
                match ivs.channel(&key).await {
                    Ok(Some(c)) => Ok(Arc::new(c)),
                    Ok(None) => Err(Lookup::NotFound),
                    Err(e) => Err(Lookup::Unavailable(Arc::new(e))),
                }
            })
            .await;
        self.settle(&arn, fetched).await
    }

    async fn resolve_name(&self, name: &str) -> Result<Arc<ChannelInfo>, Lookup> {
        let key = format!("name:{name}");
        if self.unknown.contains_key(&key) {
            metrics::counter!("channel_cache_total", "result" => "negative_hit").increment(1);
            return Err(Lookup::NotFound);
        }
        metrics::counter!("channel_cache_total", "result" => "miss").increment(1);
        let ivs = self.ivs.clone();
        let owned = name.to_owned();
        let fetched = self
            .by_arn
            .try_get_with(key.clone(), async move {
                metrics::counter!("ivs_calls_total", "operation" => "ListChannels").increment(1);
                match ivs.channel_by_name(&owned).await {
                    Ok(Some(c)) => Ok(Arc::new(c)),
                    Ok(None) => Err(Lookup::NotFound),
                    Err(e) => Err(Lookup::Unavailable(Arc::new(e))),
                }
            })
            .await;
        // The entry was stored under the name key for single-flight; file it
        // under its ARN, where the refresh keeps it current.
        self.by_arn.invalidate(&key).await;
        if let Ok(c) = &fetched {
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
