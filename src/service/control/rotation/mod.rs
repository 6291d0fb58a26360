//! The playback keys' life in IVS: adoption at start-up, rotation, the
//! deletion of retired keys once their tokens have expired, and emergency
//! revocation.
//!
//! ```text
//! generated ──import──▶ imported ──checks──▶ active ──next rotation──▶ retiring ──last exp + skew──▶ deleted
//! ```
//!
//! Every step is recorded in the key store *before* its side effect, and
//! every run starts by reconciling the record with what IVS holds, so a crash
//! (kill -9) at any point converges on the next run:
//! - a recorded `generated` key that IVS holds (the crash came after the
//!   import) is adopted by fingerprint; one IVS does not hold is imported;
//! - a key pair tagged with this store's id that the record does not know is
//!   adopted when its private key is in the store, else deleted (ours and
//!   orphaned: it can never sign);
//! - a recorded `deleted` key that IVS still holds is deleted;
//! - key pairs without this store's tag are never touched.
//!
//! IVS holds at most 3 key pairs per region. A rotation needs a free slot;
//! it frees one only by deleting a retiring key whose tokens have all
//! expired, never the active key, and otherwise refuses with
//! [`RotationError::QuotaFull`]. After a rotation one key retires and is
//! deleted when its last token expires, so one slot is free in steady state.
//!
//! Signing never stops (the key set is swapped atomically) and never uses a
//! key IVS does not hold: a key becomes active only after IVS reported its
//! fingerprint, and an active key IVS lost is imported again before signing.
//!
//! The rooms of this module: [`transitions`] (the state machine as pure
//! functions of the recorded state and the time), `steps` (the record and
//! the IVS and store actions), `adopt` (keys from outside: a fresh store's
//! first key, `keys import`), [`report`] (what the operations answer), and
//! here the [`Rotator`] that runs them one at a time.

mod adopt;
pub(crate) mod report;
mod steps;
pub(crate) mod transitions;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use self::report::{IvsKey, KeysView, LocalKey, Revoked, Rotated};
use self::steps::{Record, crash_point, now, parse_fp, put_once};
use crate::service::control::ivs::{Ivs, IvsError, KeyPairInfo};
use crate::service::control::store::{DirStore, KeyState, KeyStore as _, StoreError};
use crate::service::ledger::TokenLedger;
use crate::{
    ChannelArn, ExpiresAt, PlaybackClaims, PrivateKey, SharedKeySet, SigningKey, TokenSigner,
    Verifier,
};

pub(crate) use self::adopt::import_key;

/// IVS's quota of playback key pairs per region (not adjustable).
pub(crate) const KEY_PAIR_LIMIT: usize = 3;
/// The tag that marks a key pair as this store's.
pub(crate) const STORE_TAG: &str = "ivs-playback-auth:store";
/// The environment variable of the crash test hook: set it to a step name
/// (`generated`, `imported`, `activated`, `deleting`) and the process aborts
/// right after that step is recorded, as `kill -9` would stop it.
pub const CRASH_HOOK_ENV: &str = "IVS_PLAYBACK_AUTH_TEST_CRASH_AFTER";

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RotationError {
    /// IVS holds 3 key pairs and none can be freed now.
    #[error("IVS holds {held} of {KEY_PAIR_LIMIT} key pairs and none can be freed: {detail}")]
    QuotaFull {
        /// How many IVS holds.
        held: usize,
        /// Which ones, and when a slot frees up.
        detail: String,
    },
    /// IVS refused or could not be reached.
    #[error(transparent)]
    Ivs(#[from] IvsError),
    /// The key store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A check before switching failed (fingerprint, canary).
    #[error("check failed: {0}")]
    Check(String),
    /// The active key cannot be revoked.
    #[error("{0} is the active key; rotate first, then revoke it")]
    ActiveKey(String),
    /// No key with this fingerprint in the store's record.
    #[error("no key {0} in the key store")]
    UnknownKey(String),
    /// The key was deleted from IVS already; nothing is left to revoke.
    #[error("{0} was deleted from IVS already; its tokens no longer play")]
    AlreadyDeleted(String),
    /// No key to sign with, and none may be generated.
    #[error("{0}")]
    NoKey(String),
}

/// How a [`Rotator`] is set up.
#[derive(Debug, Clone)]
pub(crate) struct RotatorOptions {
    /// The longest TTL the service grants: a retired key's tokens are all
    /// expired this long after it stopped signing.
    pub(crate) longest_ttl: Duration,
    /// Margin after the last `exp`.
    pub(crate) skew: Duration,
    /// Canary playback URL (without `?token=`) and its channel.
    pub(crate) canary: Option<(ChannelArn, String)>,
    /// How often the sweep reconciles the store with what IVS holds.
    pub(crate) reconcile_every: Duration,
    /// A key to adopt when the store has none (the dev key), and whether it
    /// may be generated.
    pub(crate) first_key: Option<FirstKey>,
    /// The client that plays the canary: built by the caller, which knows
    /// whether it must trust the system's certificate authorities (aws
    /// mode) or none (the local IVS on loopback).
    pub(crate) http: reqwest::Client,
}

/// The key a fresh store starts with.
#[derive(Debug, Clone)]
pub(crate) struct FirstKey {
    /// Its file.
    pub(crate) path: std::path::PathBuf,
    /// Generate it there when missing.
    pub(crate) generate: bool,
}

/// Owns the playback keys in IVS and the key set the signer uses.
#[derive(Clone)]
pub(crate) struct Rotator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Rotator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotator").finish_non_exhaustive()
    }
}

struct Inner {
    ivs: Ivs,
    store: DirStore,
    keys: SharedKeySet,
    ledger: Arc<TokenLedger>,
    options: RotatorOptions,
    /// One key operation at a time in this process; the store's versioned
    /// saves refuse a concurrent one from another process.
    lock: tokio::sync::Mutex<()>,
    /// The state version the key set reflects.
    applied: AtomicU64,
    /// When the active key started signing (Unix seconds).
    active_since: Arc<AtomicU64>,
    /// When the sweep last reconciled with IVS.
    last_reconcile: std::sync::Mutex<Instant>,
}

/// What start-up found.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    /// The rotator.
    pub(crate) rotator: Rotator,
    /// The active key's fingerprint.
    pub(crate) fingerprint: String,
    /// Its file in the store.
    pub(crate) key_file: std::path::PathBuf,
    /// The first key was generated now.
    pub(crate) generated: bool,
}

impl Rotator {
    /// Reconciles the store with IVS, adopts or imports the first key when
    /// the store has none, and builds the key set the signer will use.
    pub(crate) async fn start(
        ivs: Ivs,
        store: DirStore,
        options: RotatorOptions,
        ledger: Arc<TokenLedger>,
    ) -> Result<Started, RotationError> {
        let mut record = Record::load(&store).await?;
        if record.state.store_id.is_empty() {
            record.state.store_id = uuid::Uuid::new_v4().to_string();
        }
        let pairs = steps::reconcile(&ivs, &mut record).await?;
        // A key file written by a rotation whose state save then failed (a
        // full disk) is named by no record: moved aside, never signed with.
        // A recorded `generated` key is kept: the rotation resumes with it.
        store.quarantine_unrecorded(&record.state);
        let generated = if record.state.active().is_none() {
            adopt::first_active_key(&ivs, &mut record, options.first_key.as_ref(), pairs.len())
                .await?
        } else {
            record.save().await?;
            false
        };
        let set = steps::key_set(&store, &record.state, None).await?;
        let fingerprint = set.active().fingerprint().to_string();
        let key_file = store.key_path(set.active().fingerprint());
        let version = record.state.version;
        let active_since = record.state.active().map_or(0, |k| k.updated_at);
        let inner = Inner {
            ivs,
            store,
            keys: SharedKeySet::new(set),
            ledger,
            options,
            lock: tokio::sync::Mutex::new(()),
            applied: AtomicU64::new(version),
            active_since: Arc::new(AtomicU64::new(active_since)),
            last_reconcile: std::sync::Mutex::new(Instant::now()),
        };
        Ok(Started {
            rotator: Rotator {
                inner: Arc::new(inner),
            },
            fingerprint,
            key_file,
            generated,
        })
    }

    /// The key set the signer uses.
    pub(crate) fn keys(&self) -> &SharedKeySet {
        &self.inner.keys
    }

    /// When the active key started signing (Unix seconds), kept current by
    /// every rotation; shared so that readers need not hold the rotator.
    pub(crate) fn active_since(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.inner.active_since)
    }

    /// Rotates: a new key is generated, stored, imported, checked, and made
    /// active; the old one retires. Resumes an interrupted rotation instead
    /// of starting another.
    pub(crate) async fn rotate(&self) -> Result<Rotated, RotationError> {
        let started = Instant::now();
        let _guard = self.inner.lock.lock().await;
        let inner = &self.inner;
        let mut record = Record::load(&inner.store).await?;
        let pairs = steps::reconcile(&inner.ivs, &mut record).await?;
        record.save().await?;
        self.apply(&record.state).await?;
        let previous = record.state.active().map(|k| k.fingerprint.clone());

        let resumable = transitions::resumable(&record.state);
        let mut held = pairs.len();
        if transitions::needs_slot(&record.state, resumable.as_deref()) && held >= KEY_PAIR_LIMIT {
            held -= self.free_a_slot(&mut record, &pairs).await?;
        }
        let fingerprint = match resumable {
            Some(fp) => fp,
            None => {
                let key =
                    PrivateKey::generate().map_err(|e| RotationError::Check(e.to_string()))?;
                put_once(&inner.store, &key).await?;
                let fp = key.fingerprint().to_string();
                record
                    .step(|s| {
                        s.keys
                            .push(transitions::new_record(&fp, KeyState::Generated, now()))
                    })
                    .await?;
                crash_point("generated");
                fp
            }
        };
        let arn = steps::import_if_needed(&inner.ivs, &mut record, &fingerprint, held).await?;
        record.save().await?;
        crash_point("imported");

        let next = self.checked_signing_key(&fingerprint, &arn).await?;

        // Switch: record, then swap the set the signers read.
        let switched_at = now();
        record
            .step(|s| transitions::activate(s, &fingerprint, switched_at))
            .await?;
        inner.keys.rotate_to(next);
        inner.applied.store(record.state.version, Ordering::SeqCst);
        inner.active_since.store(switched_at, Ordering::Relaxed);
        let took = started.elapsed();
        metrics::counter!("key_rotations_total").increment(1);

        // The old key's tokens: none outlives the longest TTL from now (it
        // stopped signing just now), nor the largest exp it signed.
        let deleted_after = match &previous {
            Some(old) if *old != fingerprint => {
                let signed = parse_fp(old)
                    .ok()
                    .and_then(|fp| inner.keys.load().find(&fp).and_then(|k| k.max_exp_signed()))
                    .map_or(0, ExpiresAt::unix_seconds);
                let (ttl, skew) = (inner.options.longest_ttl, inner.options.skew);
                let after = record
                    .step(|s| {
                        transitions::schedule_deletion(s, old, signed, switched_at, ttl, skew)
                    })
                    .await?;
                Some(after)
            }
            _ => None,
        };
        crash_point("activated");
        tracing::info!(target: "audit", action = "key_rotated", active = %fingerprint, retired = ?previous, took_ms = took.as_millis() as u64);
        let retired = previous.filter(|p| *p != fingerprint);
        Ok(Rotated {
            active: fingerprint,
            retired,
            retired_key_deleted_after: deleted_after,
            ivs_arn: arn,
            took_ms: took.as_millis() as u64,
        })
    }

    /// The checks before a key may sign: IVS holds it under this ARN with
    /// its fingerprint, and a canary token of it verifies (and plays, when a
    /// canary channel is set). Returns the key ready to sign.
    async fn checked_signing_key(
        &self,
        fingerprint: &str,
        arn: &str,
    ) -> Result<SigningKey, RotationError> {
        let inner = &self.inner;
        let pair = inner.ivs.key_pair(arn).await?.ok_or_else(|| {
            RotationError::Check(format!("IVS does not hold {arn} right after importing it"))
        })?;
        if pair.fingerprint != fingerprint {
            return Err(RotationError::Check(format!(
                "IVS holds fingerprint {} under {arn}, the key's is {fingerprint}",
                pair.fingerprint
            )));
        }
        let key = inner.store.get_key(&parse_fp(fingerprint)?).await?;
        let next = SigningKey::new(&key)
            .map_err(|e| RotationError::Check(e.to_string()))?
            .with_ivs_key_pair_arn(arn.to_owned());
        self.canary(&key).await?;
        Ok(next)
    }

    /// Deletes retired keys whose tokens have all expired, and picks up
    /// changes another process made to the store. Returns how many keys it
    /// deleted.
    pub(crate) async fn sweep(&self) -> Result<usize, RotationError> {
        let _guard = self.inner.lock.lock().await;
        let inner = &self.inner;
        let mut record = Record::load(&inner.store).await?;
        // Now and then, what IVS holds: a key deleted behind our back (in the
        // console, say) is imported again before it signs much longer.
        let reconcile_due = inner
            .last_reconcile
            .lock()
            .map(|t| t.elapsed() >= inner.options.reconcile_every)
            .unwrap_or(true);
        if reconcile_due {
            steps::reconcile(&inner.ivs, &mut record).await?;
            record.save().await?;
            if let Ok(mut t) = inner.last_reconcile.lock() {
                *t = Instant::now();
            }
        }
        if record.state.version != inner.applied.load(Ordering::SeqCst) {
            self.apply(&record.state).await?;
        }
        let now = now();
        let (ttl, skew) = (inner.options.longest_ttl, inner.options.skew);
        record
            .step(|s| transitions::date_undated(s, now, ttl, skew))
            .await?;
        let mut deleted = 0;
        for fingerprint in transitions::due_for_deletion(&record.state, now) {
            self.delete(&mut record, &fingerprint, "retired key's tokens expired")
                .await?;
            deleted += 1;
        }
        inner.ledger.prune(now);
        Ok(deleted)
    }

    /// Emergency: deletes a non-active key from IVS now, killing its tokens.
    pub(crate) async fn revoke(&self, fingerprint: &str) -> Result<Revoked, RotationError> {
        let _guard = self.inner.lock.lock().await;
        let inner = &self.inner;
        let mut record = Record::load(&inner.store).await?;
        let Some(rec) = record.state.find(fingerprint).cloned() else {
            return Err(RotationError::UnknownKey(fingerprint.to_owned()));
        };
        match rec.state {
            KeyState::Active => return Err(RotationError::ActiveKey(fingerprint.to_owned())),
            KeyState::Deleted => {
                return Err(RotationError::AlreadyDeleted(fingerprint.to_owned()));
            }
            _ => {}
        }
        let fp = parse_fp(fingerprint)?;
        let now = now();
        let killed = inner.ledger.unexpired(&fp, now);
        let valid_until = inner
            .keys
            .load()
            .find(&fp)
            .and_then(|k| k.max_exp_signed())
            .map(ExpiresAt::unix_seconds)
            .or(rec.max_exp);
        let ivs_deleted = self
            .delete(&mut record, fingerprint, "revoked by an admin")
            .await?;
        Ok(Revoked {
            fingerprint: fingerprint.to_owned(),
            unexpired_tokens_killed: killed,
            tokens_valid_until: valid_until.filter(|t| *t > now),
            ivs_deleted,
        })
    }

    /// The store's record and IVS's key pairs side by side.
    pub(crate) async fn view(&self) -> Result<KeysView, RotationError> {
        let state = self.inner.store.load_state().await?;
        let pairs = self.inner.ivs.key_pairs().await?;
        let now = now();
        let local = state
            .keys
            .iter()
            .map(|r| LocalKey {
                in_ivs: pairs.iter().any(|p| p.fingerprint == r.fingerprint),
                unexpired_tokens: parse_fp(&r.fingerprint)
                    .map_or(0, |fp| self.inner.ledger.unexpired(&fp, now)),
                record: r.clone(),
            })
            .collect();
        let ivs = pairs
            .into_iter()
            .map(|pair| IvsKey {
                ours: pair.tags.get(STORE_TAG) == Some(&state.store_id),
                pair,
            })
            .collect();
        Ok(KeysView {
            local,
            ivs,
            limit: KEY_PAIR_LIMIT,
        })
    }

    /// Records `fingerprint` deleted, deletes it from IVS, drops it from the
    /// key set. Returns whether IVS still held it.
    async fn delete(
        &self,
        record: &mut Record<'_>,
        fingerprint: &str,
        why: &str,
    ) -> Result<bool, RotationError> {
        let inner = &self.inner;
        let arn = record
            .state
            .find(fingerprint)
            .and_then(|k| k.ivs_arn.clone());
        record
            .step(|s| transitions::set_state(s, fingerprint, KeyState::Deleted, now()))
            .await?;
        crash_point("deleting");
        if let Ok(fp) = parse_fp(fingerprint) {
            inner.keys.remove(&fp);
        }
        let held = match arn {
            Some(arn) => inner.ivs.delete_key_pair(&arn).await?,
            None => false,
        };
        tracing::info!(target: "audit", action = "key_deleted", fingerprint, reason = why, ivs_held = held);
        Ok(held)
    }

    /// Deletes a retiring key whose tokens have expired to free a slot;
    /// returns how many were deleted, or refuses.
    async fn free_a_slot(
        &self,
        record: &mut Record<'_>,
        pairs: &[KeyPairInfo],
    ) -> Result<usize, RotationError> {
        let now = now();
        if let Some(fp) = transitions::due_for_deletion(&record.state, now).first() {
            self.delete(record, fp, "slot needed for a rotation")
                .await?;
            return Ok(1);
        }
        Err(RotationError::QuotaFull {
            held: pairs.len(),
            detail: transitions::quota_detail(&record.state, pairs, now),
        })
    }

    /// Signs a canary with `key`, verifies it, and plays it on the canary
    /// channel when one is configured.
    async fn canary(&self, key: &PrivateKey) -> Result<(), RotationError> {
        let signer = TokenSigner::new(
            SigningKey::new(key).map_err(|e| RotationError::Check(e.to_string()))?,
        );
        let channel = match &self.inner.options.canary {
            Some((arn, _)) => arn.clone(),
            None => ChannelArn::parse("arn:aws:ivs:us-west-2:000000000000:channel/canary")
                .map_err(|e| RotationError::Check(e.to_string()))?,
        };
        let claims = PlaybackClaims::builder(channel.clone())
            .expires_in(Duration::from_secs(60))
            .build()
            .map_err(|e| RotationError::Check(e.to_string()))?;
        let token = signer
            .sign(&claims)
            .map_err(|e| RotationError::Check(format!("canary signing: {e}")))?;
        Verifier::new([key.public_key()])
            .expect_channel(channel)
            .verify(token.as_str())
            .map_err(|e| RotationError::Check(format!("canary token: {e}")))?;
        if let Some((_, url)) = &self.inner.options.canary {
            let answer = self
                .inner
                .options
                .http
                .get(format!("{url}?token={}", token.as_str()))
                .send()
                .await
                .map_err(|e| RotationError::Check(format!("canary playback {url}: {e}")))?;
            if !answer.status().is_success() {
                return Err(RotationError::Check(format!(
                    "canary playback {url} answered {}",
                    answer.status()
                )));
            }
        }
        Ok(())
    }

    /// Makes the key set match a state saved (maybe by another process).
    async fn apply(
        &self,
        state: &crate::service::control::store::RotationState,
    ) -> Result<(), RotationError> {
        let current = self.inner.keys.snapshot();
        let set = steps::key_set(&self.inner.store, state, Some(&current)).await?;
        self.inner.keys.store(set);
        self.inner.applied.store(state.version, Ordering::SeqCst);
        if let Some(active) = state.active() {
            self.inner
                .active_since
                .store(active.updated_at, Ordering::Relaxed);
        }
        Ok(())
    }
}
