//! The keys in play during a rotation: one active key that signs, and
//! retiring keys that no longer sign but whose tokens still verify until they
//! expire.
//!
//! A [`KeySet`] is immutable; a rotation builds the next one and swaps it into
//! the [`SharedKeySet`] atomically (`arc-swap`), so signers never take a lock
//! and never see half a rotation.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use crate::keys::{Fingerprint, PublicKey};
use crate::signing_key::SigningKey;

/// An active signing key and the retiring keys that still verify.
///
/// Keys are told apart by [`Fingerprint`]: a set never holds two keys with
/// the same one. IVS allows 3 playback key pairs per region
/// (service-quotas), so a set in steady state holds 1 or 2 keys, leaving a
/// slot for an emergency import (`docs/ivs-facts.md` §2, §6). `Debug`
/// shows the keys' fingerprints, never their secrets.
#[derive(Debug, Clone)]
pub struct KeySet {
    active: Arc<SigningKey>,
    retiring: Vec<Arc<SigningKey>>,
}

impl KeySet {
    /// A set with one active key and nothing retiring. Takes a
    /// [`SigningKey`] or an `Arc` of one.
    pub fn new(active: impl Into<Arc<SigningKey>>) -> Self {
        Self {
            active: active.into(),
            retiring: Vec::new(),
        }
    }

    /// This set with one more retiring key (a key already in the set is not
    /// added twice).
    #[must_use]
    pub fn with_retiring(mut self, key: impl Into<Arc<SigningKey>>) -> Self {
        let key = key.into();
        if self.find(key.fingerprint()).is_none() {
            self.retiring.push(key);
        }
        self
    }

    /// The key that signs.
    pub fn active(&self) -> &Arc<SigningKey> {
        &self.active
    }

    /// Keys that no longer sign but whose tokens may still be valid, oldest
    /// first.
    pub fn retiring(&self) -> &[Arc<SigningKey>] {
        &self.retiring
    }

    /// Every key, the active one first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<SigningKey>> {
        std::iter::once(&self.active).chain(self.retiring.iter())
    }

    /// The public keys that verify tokens of this set, the active one first.
    pub fn public_keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.iter().map(|k| k.public_key())
    }

    /// The key with this fingerprint, active or retiring; `None` if the set
    /// has none.
    pub fn find(&self, fingerprint: &Fingerprint) -> Option<&Arc<SigningKey>> {
        self.iter().find(|k| k.fingerprint() == fingerprint)
    }

    /// The next set: `next` signs, the current active key retires. If `next`
    /// is already in the set (a resumed rotation), it is promoted instead of
    /// added twice.
    pub fn rotated_to(&self, next: Arc<SigningKey>) -> Self {
        // The same key again (a resumed rotation) comes as a new value:
        // carry over what the old one signed, or its key pair could look
        // safe to delete from IVS while its tokens still play.
        if let Some(max) = self
            .find(next.fingerprint())
            .and_then(|same| same.max_exp_signed())
        {
            next.note_signed(max.unix_seconds());
        }
        let mut retiring: Vec<Arc<SigningKey>> = self
            .iter()
            .filter(|k| k.fingerprint() != next.fingerprint())
            .cloned()
            .collect();
        retiring.dedup_by(|a, b| a.fingerprint() == b.fingerprint());
        Self {
            active: next,
            retiring,
        }
    }

    /// The next set without a retiring key. The active key cannot be removed:
    /// `None` if `fingerprint` is the active key's. A fingerprint that is not
    /// in the set gives an unchanged copy.
    pub fn without(&self, fingerprint: &Fingerprint) -> Option<Self> {
        if self.active.fingerprint() == fingerprint {
            return None;
        }
        Some(Self {
            active: Arc::clone(&self.active),
            retiring: self
                .retiring
                .iter()
                .filter(|k| k.fingerprint() != fingerprint)
                .cloned()
                .collect(),
        })
    }
}

/// A [`KeySet`] shared between signers and the rotation that replaces it.
/// Reading is lock-free; cloning shares the same set.
///
/// IVS documents no key rotation; the procedure this supports
/// (`docs/ivs-facts.md` §6): import the new public key into IVS and check
/// the fingerprint it returns, then [`rotate_to`](Self::rotate_to) the new
/// key on every replica, keep the old key pair in IVS until the last token
/// it signed has expired ([`SigningKey::max_exp_signed`] plus a skew
/// margin), delete it from IVS, then [`remove`](Self::remove) it here. The
/// crate docs show it in code.
#[derive(Clone, Debug)]
pub struct SharedKeySet {
    inner: Arc<ArcSwap<KeySet>>,
}

impl SharedKeySet {
    /// Shares a key set. Clone the result to share it further.
    pub fn new(set: KeySet) -> Self {
        Self {
            inner: Arc::new(ArcSwap::from_pointee(set)),
        }
    }

    /// The current set, without a lock. Hold the guard briefly (for one
    /// signature); use [`snapshot`](Self::snapshot) to keep it longer.
    pub fn load(&self) -> Guard<Arc<KeySet>> {
        self.inner.load()
    }

    /// The current set, to keep.
    pub fn snapshot(&self) -> Arc<KeySet> {
        self.inner.load_full()
    }

    /// Replaces the set; signers use the new one from their next token. A
    /// rotation or removal running at the same time may be lost: prefer
    /// [`rotate_to`](Self::rotate_to) and [`remove`](Self::remove), which
    /// update atomically.
    pub fn store(&self, set: KeySet) {
        self.inner.store(Arc::new(set));
    }

    /// Makes `next` the active key and retires the current one, atomically
    /// even against concurrent updates. If a key with `next`'s fingerprint is
    /// already in the set (a resumed rotation), `next` replaces it rather
    /// than being added twice. Import the public key into IVS first: a token
    /// signed with a key IVS does not know fails.
    pub fn rotate_to(&self, next: SigningKey) {
        let next = Arc::new(next);
        self.inner
            .rcu(|current| Arc::new(current.rotated_to(Arc::clone(&next))));
    }

    /// Drops a retiring key, once its key pair is deleted from IVS (its
    /// tokens no longer play). Returns false (and changes nothing) for the
    /// active key or a key not in the set.
    pub fn remove(&self, fingerprint: &Fingerprint) -> bool {
        let mut removed = false;
        self.inner
            .rcu(|current| match current.without(fingerprint) {
                Some(next) if next.retiring.len() < current.retiring.len() => {
                    removed = true;
                    Arc::new(next)
                }
                _ => {
                    removed = false;
                    Arc::clone(current)
                }
            });
        removed
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::thread;
    use std::time::{Duration, Instant, SystemTime};

    use super::*;
    use crate::claims::{ChannelArn, PlaybackClaims};
    use crate::keys::PrivateKey;
    use crate::signer::{Token, TokenSigner};
    use crate::verify::Verifier;

    fn key() -> SigningKey {
        SigningKey::new(&PrivateKey::generate().unwrap()).unwrap()
    }

    #[test]
    fn rotating_to_a_key_already_in_the_set_keeps_what_it_signed() {
        let first = PrivateKey::generate().unwrap();
        let second = PrivateKey::generate().unwrap();
        let shared = SharedKeySet::new(KeySet::new(SigningKey::new(&first).unwrap()));
        let signer = TokenSigner::from_shared(shared.clone());
        let channel =
            ChannelArn::parse("arn:aws:ivs:us-west-2:123456789012:channel/abcdEFGH1234").unwrap();
        let claims = PlaybackClaims::builder(channel)
            .expires_in(Duration::from_secs(3600))
            .build()
            .unwrap();
        let signed = signer.sign(&claims).unwrap().expires_at();
        shared.rotate_to(SigningKey::new(&second).unwrap());
        // A resumed rotation hands the first key in again, as a new value.
        shared.rotate_to(SigningKey::new(&first).unwrap());
        let set = shared.load();
        assert_eq!(set.active().fingerprint(), first.fingerprint());
        assert_eq!(set.active().max_exp_signed(), Some(signed));
    }

    #[test]
    fn rotation_retires_the_old_key_and_never_removes_the_active_one() {
        let first = key();
        let first_fp = *first.fingerprint();
        let shared = SharedKeySet::new(KeySet::new(first));
        let second = key();
        let second_fp = *second.fingerprint();
        shared.rotate_to(second);
        let set = shared.snapshot();
        assert_eq!(set.active().fingerprint(), &second_fp);
        assert_eq!(set.retiring().len(), 1);
        assert_eq!(set.retiring()[0].fingerprint(), &first_fp);
        assert!(set.find(&first_fp).is_some());
        assert!(!shared.remove(&second_fp), "the active key stays");
        assert!(shared.remove(&first_fp));
        assert!(!shared.remove(&first_fp));
        assert_eq!(shared.snapshot().iter().count(), 1);
    }

    #[test]
    fn promoting_a_retiring_key_does_not_duplicate_it() {
        let a = Arc::new(key());
        let b = Arc::new(key());
        let set = KeySet {
            active: Arc::clone(&a),
            retiring: vec![Arc::clone(&b)],
        };
        let next = set.rotated_to(Arc::clone(&b));
        assert_eq!(next.active().fingerprint(), b.fingerprint());
        assert_eq!(next.retiring().len(), 1);
        assert_eq!(next.retiring()[0].fingerprint(), a.fingerprint());
    }

    #[test]
    fn every_token_signed_during_a_rotation_verifies_under_the_old_or_the_new_key() {
        let old = key();
        let old_public = old.public_key().clone();
        let shared = SharedKeySet::new(KeySet::new(old));
        let signer = TokenSigner::from_shared(shared.clone());
        let claims = PlaybackClaims::builder(
            ChannelArn::parse("arn:aws:ivs:us-west-2:123456789012:channel/abcd").unwrap(),
        )
        .expires_in(Duration::from_secs(60))
        .build()
        .unwrap();
        let next = key();
        let next_public = next.public_key().clone();
        let (old_fp, next_fp) = (*old_public.fingerprint(), *next_public.fingerprint());
        let verifier = Verifier::new([&old_public, &next_public]);
        const THREADS: usize = 4;
        const AFTER_SWITCH: usize = 20;
        // Every thread signs with the old key before the rotation (the
        // barrier), and goes on until it has signed with the new one, so
        // both keys are certainly in play, whatever the scheduling; then
        // signs some more, which must all be the new key's.
        let start = Barrier::new(THREADS + 1);
        let per_thread: Vec<Vec<Token>> = thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        let mut tokens = vec![signer.sign_at(&claims, SystemTime::now()).unwrap()];
                        start.wait();
                        let deadline = Instant::now() + Duration::from_secs(60);
                        while tokens.last().unwrap().fingerprint() != &next_fp {
                            assert!(Instant::now() < deadline, "the new key never signed");
                            tokens.push(signer.sign_at(&claims, SystemTime::now()).unwrap());
                        }
                        for _ in 0..AFTER_SWITCH {
                            tokens.push(signer.sign_at(&claims, SystemTime::now()).unwrap());
                        }
                        tokens
                    })
                })
                .collect();
            start.wait();
            shared.rotate_to(next);
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        for tokens in &per_thread {
            assert_eq!(tokens[0].fingerprint(), &old_fp);
            // Once a thread has seen the new key it never signs with the old
            // one again.
            let switched = tokens
                .iter()
                .position(|t| t.fingerprint() == &next_fp)
                .unwrap();
            assert_eq!(tokens.len() - switched, 1 + AFTER_SWITCH);
            assert!(
                tokens[switched..]
                    .iter()
                    .all(|t| t.fingerprint() == &next_fp),
                "a token signed by the old key after the new one had signed"
            );
            for token in tokens {
                let verified = verifier
                    .verify(token.as_str())
                    .unwrap_or_else(|e| panic!("a token signed during the rotation: {e}"));
                assert_eq!(
                    verified.fingerprint(),
                    token.fingerprint(),
                    "the token names one key and was signed by another"
                );
            }
        }
    }
}
