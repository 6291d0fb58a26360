//! Viewer revocation: a local deny-list that stops minting for a revoked
//! viewer at once, and the session versions IVS revokes by.
//!
//! Every viewer token carries `aws:viewer-session-version` = the Unix second
//! it was minted (kept in 0..=2^31-1, since the revocation API's filter is a
//! 32-bit integer in IVS's service model: `docs/ivs-facts.md` §1; Unix
//! seconds fit until 2038). Revoking at second `T` asks IVS to end the
//! viewer's sessions with a version ≤ `T`; tokens minted after `T` carry a
//! larger version and play.
//! No per-viewer counter needs to survive a restart. The deny-list covers at
//! least the second of the revocation (a token minted then would be revoked
//! on arrival) and, by default, much longer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::{ChannelArn, ViewerId, ViewerIdHasher};

/// Revoked viewers, per channel, until when. Read on every viewer mint
/// without a lock (arc-swap); written by revocations only.
pub(crate) struct Revocations {
    hasher: ViewerIdHasher,
    denied: ArcSwap<HashMap<(String, String), u64>>,
    /// Serialises writers (read-copy-update).
    writing: Mutex<()>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations").finish_non_exhaustive()
    }
}

impl Revocations {
    /// An empty deny-list; viewer ids are hashed as the token API hashes them.
    pub(crate) fn new(hasher: ViewerIdHasher) -> Self {
        Self {
            hasher,
            denied: ArcSwap::from_pointee(HashMap::new()),
            writing: Mutex::new(()),
        }
    }

    /// The `aws:viewer-id` the token API puts in tokens for this viewer.
    pub(crate) fn pseudonym(&self, viewer: &str) -> ViewerId {
        self.hasher.viewer_id(viewer)
    }

    /// Refuses tokens for `viewer` on `channel` until `until` (Unix seconds,
    /// exclusive). A later revocation only extends.
    pub(crate) fn deny(&self, channel: &ChannelArn, viewer: &str, until: u64) {
        let _writer = self.writing.lock();
        let mut map = HashMap::clone(&self.denied.load());
        let entry = map
            .entry((channel.as_str().to_owned(), viewer.to_owned()))
            .or_insert(0);
        *entry = (*entry).max(until);
        self.denied.store(Arc::new(map));
    }

    /// Until when `viewer` is refused on `channel`, if it is at `now`.
    pub(crate) fn denied_until(&self, channel: &ChannelArn, viewer: &str, now: u64) -> Option<u64> {
        let map = self.denied.load();
        if map.is_empty() {
            return None;
        }
        map.get(&(channel.as_str().to_owned(), viewer.to_owned()))
            .copied()
            .filter(|until| now < *until)
    }

    /// Forgets entries that ended.
    pub(crate) fn prune(&self, now: u64) {
        let _writer = self.writing.lock();
        if self.denied.load().values().any(|until| now >= *until) {
            let mut map = HashMap::clone(&self.denied.load());
            map.retain(|_, until| now < *until);
            self.denied.store(Arc::new(map));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_holds_until_its_end_and_only_extends() {
        let r = Revocations::new(ViewerIdHasher::new(&[7u8; 32]).unwrap());
        let ch = ChannelArn::parse("arn:aws:ivs:us-west-2:123456789012:channel/abcd").unwrap();
        let other = ChannelArn::parse("arn:aws:ivs:us-west-2:123456789012:channel/efgh").unwrap();
        let v = r.pseudonym("alice");
        r.deny(&ch, v.as_str(), 100);
        r.deny(&ch, v.as_str(), 50);
        assert_eq!(r.denied_until(&ch, v.as_str(), 99), Some(100));
        assert_eq!(r.denied_until(&ch, v.as_str(), 100), None);
        assert_eq!(r.denied_until(&other, v.as_str(), 10), None);
        assert_eq!(r.denied_until(&ch, r.pseudonym("bob").as_str(), 10), None);
        r.prune(100);
        assert!(r.denied.load().is_empty());
    }
}
