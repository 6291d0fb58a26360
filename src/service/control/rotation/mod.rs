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
//! With many replicas (the store in Secrets Manager and the coordination
//! table), every change to the state or to IVS's key pairs is made by the
//! holder of the rotation lease, whose saves are refused once it lost the
//! lease; a request to rotate that finds another replica rotating joins
//! that rotation, and a rotation whose runner died is finished by the next
//! replica that takes the lease (`shared`). A retired key is deleted only
//! when every replica's heartbeat says it is done with it.
//!
//! The rooms of this module: [`transitions`] (the state machine as pure
//! functions of the recorded state and the time), `steps` (the record and
//! the IVS and store actions), `adopt` (keys from outside: a fresh store's
//! first key, `keys import`), `shared` (the lease, polling, heartbeats),
//! [`report`] (what the operations answer), and here the [`Rotator`] that
//! runs them one at a time.

mod adopt;
mod checks;
pub(crate) mod report;
mod shared;
mod steps;
pub(crate) mod transitions;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use self::report::{IvsKey, KeysView, LocalKey, Revoked, Rotated};
use self::steps::{Record, crash_point, now, parse_fp, put_once};
use crate::service::control::coordination::{Freshness, Heartbeat, now_ms};
use crate::service::control::ivs::{Ivs, IvsError, KeyPairInfo};
use crate::service::control::store::{
    InProgress, KeyState, KeyStore as _, LastRotation, RotationState, Store, StoreError,
};
use crate::service::ledger::TokenLedger;
use crate::{ChannelArn, ExpiresAt, PrivateKey, SharedKeySet};

pub(crate) use self::adopt::import_key;

/// IVS's quota of playback key pairs per region (not adjustable).
pub(crate) const KEY_PAIR_LIMIT: usize = 3;
/// The tag that marks a key pair as this store's.
pub(crate) const STORE_TAG: &str = "ivs-playback-auth:store";
/// The environment variable of the crash test hook: set it to a step name
/// (`generated`, `imported`, `activated`, `deleting`) and the process aborts
/// right after that step is recorded, as `kill -9` would stop it.
pub const CRASH_HOOK_ENV: &str = "IVS_PLAYBACK_AUTH_TEST_CRASH_AFTER";
/// The environment variable of the hold test hook: set it to a step name
/// and the key operation stops for good right after that step is recorded,
/// holding the rotation lease, so that a test can `kill -9` the replica
/// there.
pub const HOLD_HOOK_ENV: &str = "IVS_PLAYBACK_AUTH_TEST_HOLD_AFTER";

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
    /// Another replica holds the rotation lease and did not finish in time.
    #[error("{0}")]
    Busy(String),
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
    /// With replicas: how long a heartbeat says this replica is alive
    /// (`coordination.stale_after_seconds`: a replica that could not write
    /// one for that long is not ready, and gets no more traffic).
    pub(crate) live_for: Duration,
}

/// The key a fresh store starts with.
#[derive(Debug, Clone)]
pub(crate) struct FirstKey {
    /// Its file (none with Secrets Manager: the key never touches a disk).
    pub(crate) path: Option<std::path::PathBuf>,
    /// Generate it when missing.
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
    store: Store,
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
    /// With replicas: when this one last polled and beat.
    freshness: Arc<Freshness>,
}

/// What start-up found.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    /// The rotator.
    pub(crate) rotator: Rotator,
    /// The active key's fingerprint.
    pub(crate) fingerprint: String,
    /// Where the store keeps it (a file, a secret).
    pub(crate) key_location: String,
    /// The first key was generated now.
    pub(crate) generated: bool,
}

impl Rotator {
    /// Reconciles the store with IVS, adopts or imports the first key when
    /// the store has none, and builds the key set the signer will use.
    pub(crate) async fn start(
        ivs: Ivs,
        store: Store,
        options: RotatorOptions,
        ledger: Arc<TokenLedger>,
    ) -> Result<Started, RotationError> {
        let (state, generated) = match store.coordination().cloned() {
            None => Self::prepare(&ivs, &store, &options).await?,
            Some(table) => shared::prepare(&ivs, &store, &options, &table).await?,
        };
        let set = steps::key_set(&store, &state, None).await?;
        let fingerprint = set.active().fingerprint().to_string();
        let key_location = store.location(set.active().fingerprint());
        let version = state.version;
        let active_since = state.active().map_or(0, |k| k.updated_at);
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
            freshness: Arc::new(Freshness::default()),
        };
        Ok(Started {
            rotator: Rotator {
                inner: Arc::new(inner),
            },
            fingerprint,
            key_location,
            generated,
        })
    }

    /// Brings the store in line with IVS and gives it an active key (the
    /// caller holds the lease, if there is one). Returns the state and
    /// whether a key was generated.
    async fn prepare(
        ivs: &Ivs,
        store: &Store,
        options: &RotatorOptions,
    ) -> Result<(RotationState, bool), RotationError> {
        let mut record = Record::load(store).await?;
        if record.state.store_id.is_empty() {
            record.state.store_id = uuid::Uuid::new_v4().to_string();
        }
        let pairs = steps::reconcile(ivs, &mut record).await?;
        // A key file written by a rotation whose state save then failed (a
        // full disk) is named by no record: moved aside, never signed with.
        // A recorded `generated` key is kept: the rotation resumes with it.
        if let Store::Dir(dir) = store {
            dir.quarantine_unrecorded(&record.state);
        }
        let generated = if record.state.active().is_none() {
            adopt::first_active_key(ivs, &mut record, options.first_key.as_ref(), pairs.len())
                .await?
        } else {
            record.save().await?;
            false
        };
        Ok((record.state, generated))
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
        let requested_at = now_ms();
        let _guard = self.inner.lock.lock().await;
        match self.inner.store.coordination().cloned() {
            None => self.rotate_locked(None).await,
            Some(table) => shared::rotate(self, &table, requested_at).await,
        }
    }

    /// The rotation itself, run by the one holding the lock (and the lease).
    /// With `join_after` (Unix ms: when the request arrived), a rotation
    /// that finished since is the answer instead of a new one.
    async fn rotate_locked(&self, join_after: Option<u64>) -> Result<Rotated, RotationError> {
        let started = Instant::now();
        let started_ms = now_ms();
        let inner = &self.inner;
        let mut record = Record::load(&inner.store).await?;
        if let Some(at) = join_after
            && record.state.in_progress.is_none()
            && let Some(last) = record
                .state
                .last_rotation
                .as_ref()
                .filter(|l| l.finished_at_ms >= at)
        {
            return Ok(Rotated::joined(last));
        }
        let pairs = steps::reconcile(&inner.ivs, &mut record).await?;
        record.save().await?;
        self.apply(&record.state).await?;
        if let Some(done) = self.finish_activated(&mut record).await? {
            return Ok(done);
        }
        let previous = record.state.active().map(|k| k.fingerprint.clone());

        let resumable = transitions::resumable(&record.state);
        let mut held = pairs.len();
        if transitions::needs_slot(&record.state, resumable.as_deref()) && held >= KEY_PAIR_LIMIT {
            held -= self.free_a_slot(&mut record, &pairs).await?;
        }
        let me = self.replica();
        let fingerprint = match resumable {
            Some(fp) => {
                if record.state.in_progress.is_none() {
                    record
                        .step(|s| {
                            s.in_progress = Some(InProgress {
                                fingerprint: fp.clone(),
                                started_at_ms: started_ms,
                                by: me.clone(),
                            });
                        })
                        .await?;
                }
                fp
            }
            None => {
                let key =
                    PrivateKey::generate().map_err(|e| RotationError::Check(e.to_string()))?;
                put_once(&inner.store, &key).await?;
                let fp = key.fingerprint().to_string();
                record
                    .step(|s| {
                        s.keys
                            .push(transitions::new_record(&fp, KeyState::Generated, now()));
                        s.in_progress = Some(InProgress {
                            fingerprint: fp.clone(),
                            started_at_ms: started_ms,
                            by: me.clone(),
                        });
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
        if let Some(table) = inner.store.coordination() {
            // The others read from the heartbeat which key this one signs
            // with: say it now rather than at the next beat.
            shared::beat(self, table).await;
        }

        // The old key's tokens: none outlives the longest TTL from now (it
        // stopped signing just now), nor the largest exp it signed.
        let retired = previous.filter(|p| *p != fingerprint);
        let signed = retired
            .as_deref()
            .and_then(|old| parse_fp(old).ok())
            .and_then(|fp| inner.keys.load().find(&fp).and_then(|k| k.max_exp_signed()))
            .map_or(0, ExpiresAt::unix_seconds);
        let (ttl, skew) = (inner.options.longest_ttl, inner.options.skew);
        let last = LastRotation {
            active: fingerprint.clone(),
            retired: retired.clone(),
            retired_key_deleted_after: None,
            ivs_arn: arn.clone(),
            started_at_ms: record
                .state
                .in_progress
                .as_ref()
                .map_or(started_ms, |p| p.started_at_ms),
            finished_at_ms: now_ms(),
            by: me,
        };
        let deleted_after = record
            .step(|s| {
                let after = retired.as_deref().map(|old| {
                    transitions::schedule_deletion(s, old, signed, switched_at, ttl, skew)
                });
                s.in_progress = None;
                s.last_rotation = Some(LastRotation {
                    retired_key_deleted_after: after,
                    ..last
                });
                after
            })
            .await?;
        crash_point("activated");
        tracing::info!(target: "audit", action = "key_rotated", active = %fingerprint, retired = ?retired, took_ms = took.as_millis() as u64);
        Ok(Rotated {
            active: fingerprint,
            retired,
            retired_key_deleted_after: deleted_after,
            ivs_arn: arn,
            took_ms: took.as_millis() as u64,
            joined: false,
        })
    }

    /// A rotation whose runner stopped after its key became active and
    /// before it recorded the end: the end is recorded now (the retired
    /// key's deletion dated a full TTL from now). `None` when there is none.
    async fn finish_activated(
        &self,
        record: &mut Record<'_>,
    ) -> Result<Option<Rotated>, RotationError> {
        let Some(p) = record.state.in_progress.clone() else {
            return Ok(None);
        };
        let Some(active) = record
            .state
            .active()
            .filter(|k| k.fingerprint == p.fingerprint)
            .cloned()
        else {
            return Ok(None);
        };
        let retired = record
            .state
            .keys
            .iter()
            .find(|k| k.state == KeyState::Retiring && k.retired_at == Some(active.updated_at))
            .map(|k| k.fingerprint.clone());
        let (ttl, skew) = (self.inner.options.longest_ttl, self.inner.options.skew);
        let now = now();
        let last = record
            .step(|s| {
                transitions::date_undated(s, now, ttl, skew);
                let last = LastRotation {
                    retired_key_deleted_after: retired
                        .as_deref()
                        .and_then(|r| s.find(r))
                        .and_then(|k| k.delete_after),
                    active: active.fingerprint.clone(),
                    retired: retired.clone(),
                    ivs_arn: active.ivs_arn.clone().unwrap_or_default(),
                    started_at_ms: p.started_at_ms,
                    finished_at_ms: now_ms(),
                    by: self.replica(),
                };
                s.in_progress = None;
                s.last_rotation = Some(last.clone());
                last
            })
            .await?;
        tracing::info!(target: "audit", action = "key_rotated", active = %last.active, retired = ?last.retired, resumed_from = %p.by);
        Ok(Some(Rotated {
            joined: false,
            ..Rotated::joined(&last)
        }))
    }

    /// This replica's id in the coordination table ("local" alone).
    fn replica(&self) -> String {
        self.inner
            .store
            .coordination()
            .map_or_else(|| "local".to_owned(), |c| c.replica().to_owned())
    }

    /// Deletes retired keys whose tokens have all expired, and picks up
    /// changes another process made to the store. Returns how many keys it
    /// deleted.
    pub(crate) async fn sweep(&self) -> Result<usize, RotationError> {
        match self.inner.store.coordination().cloned() {
            None => {
                let _guard = self.inner.lock.lock().await;
                self.sweep_locked(&[], false).await
            }
            Some(table) => shared::sweep(self, &table).await,
        }
    }

    /// The sweep, run by the one holding the lock (and the lease): `beats`
    /// are the replicas' heartbeats, `reconcile_now` asks for a
    /// reconciliation with IVS whether or not one is due.
    async fn sweep_locked(
        &self,
        beats: &[Heartbeat],
        reconcile_now: bool,
    ) -> Result<usize, RotationError> {
        let inner = &self.inner;
        let mut record = Record::load(&inner.store).await?;
        // Now and then, what IVS holds: a key deleted behind our back (in the
        // console, say) is imported again before it signs much longer.
        let reconcile_due = reconcile_now
            || inner
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
        for fingerprint in transitions::deletable(&record.state, beats, now, ttl, skew) {
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
        let Some(table) = self.inner.store.coordination().cloned() else {
            return self.revoke_locked(fingerprint).await;
        };
        shared::wait_for_lease(&table).await?;
        let out = self.revoke_locked(fingerprint).await;
        table.release_lease().await;
        out
    }

    async fn revoke_locked(&self, fingerprint: &str) -> Result<Revoked, RotationError> {
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
        let beats = match self.inner.store.coordination() {
            Some(table) => table.heartbeats().await.map_err(StoreError::from)?,
            None => Vec::new(),
        };
        let (ttl, skew) = (self.inner.options.longest_ttl, self.inner.options.skew);
        if let Some(fp) = transitions::deletable(&record.state, &beats, now, ttl, skew).first() {
            self.delete(record, fp, "slot needed for a rotation")
                .await?;
            return Ok(1);
        }
        Err(RotationError::QuotaFull {
            held: pairs.len(),
            detail: transitions::quota_detail(&record.state, pairs, now),
        })
    }

    /// Makes the key set match a state saved (maybe by another process).
    async fn apply(&self, state: &RotationState) -> Result<(), RotationError> {
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
