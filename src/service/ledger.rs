//! The ledger of signed tokens: how many tokens each key signed, by `exp`.
//! The mint room writes it on every signature; the control room reads it to
//! say how many unexpired tokens a key revocation kills. Its own home, so
//! that neither room imports the other for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Fingerprint;

/// Counts the tokens each key signed, by `exp`, so a revocation can say how
/// many unexpired tokens it kills. Sharded by thread, so that signers on
/// different threads never wait for each other (one uncontended lock per
/// signature, no await).
#[derive(Debug)]
pub(crate) struct TokenLedger {
    shards: Box<[Mutex<LedgerShard>]>,
}

type LedgerShard = HashMap<Fingerprint, BTreeMap<u64, u64>>;

const LEDGER_SHARDS: usize = 16;

impl Default for TokenLedger {
    fn default() -> Self {
        Self {
            shards: (0..LEDGER_SHARDS)
                .map(|_| Mutex::new(LedgerShard::new()))
                .collect(),
        }
    }
}

fn ledger_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % LEDGER_SHARDS;
    }
    SHARD.with(|s| *s)
}

impl TokenLedger {
    /// A token signed by `key`, valid until `exp`.
    pub(crate) fn record(&self, key: &Fingerprint, exp: u64) {
        if let Some(Ok(mut shard)) = self.shards.get(ledger_shard()).map(|s| s.lock()) {
            *shard.entry(*key).or_default().entry(exp).or_default() += 1;
        }
    }

    /// Tokens of `key` still valid at `now` (Unix seconds).
    pub(crate) fn unexpired(&self, key: &Fingerprint, now: u64) -> u64 {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok())
            .map(|shard| {
                shard
                    .get(key)
                    .map_or(0, |exps| exps.range(now..).map(|(_, n)| n).sum())
            })
            .sum()
    }

    /// Forgets expired tokens.
    pub(crate) fn prune(&self, now: u64) {
        for shard in self.shards.iter() {
            if let Ok(mut shard) = shard.lock() {
                for exps in shard.values_mut() {
                    *exps = exps.split_off(&now);
                }
                shard.retain(|_, exps| !exps.is_empty());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::PrivateKey;

    #[test]
    fn the_ledger_counts_unexpired_tokens_across_threads_and_forgets_expired_ones() {
        let ledger = Arc::new(TokenLedger::default());
        let a = *PrivateKey::generate().unwrap().fingerprint();
        let b = *PrivateKey::generate().unwrap().fingerprint();
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let ledger = Arc::clone(&ledger);
                std::thread::spawn(move || {
                    for n in 0..100 {
                        ledger.record(&a, 1_000 + n % 10);
                        if i == 0 {
                            ledger.record(&b, 2_000);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(ledger.unexpired(&a, 0), 400);
        assert_eq!(ledger.unexpired(&a, 1_005), 200);
        assert_eq!(ledger.unexpired(&b, 1_005), 100);
        ledger.prune(1_010);
        assert_eq!(ledger.unexpired(&a, 0), 0);
        assert_eq!(ledger.unexpired(&b, 0), 100);
    }
}
