//! The playback keys' life in IVS: adoption at start-up, rotation, the
//! deletion of retired keys once their tokens have expired, and emergency
//! revocation.
//!
//! ```text
//! generated ──import──▶ imported ──checks──▶ active ──next rotation──▶ retiring ──last exp + skew──▶ deleted
//! ```
//!
//! Every step is recorded in the [`KeyStore`] *before* its side effect, and
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

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::ivs::{Ivs, IvsError, KeyPairInfo};
use super::store::{DirStore, KeyRecord, KeyState, KeyStore as _, RotationState, StoreError};
use crate::claims::unix_seconds;
use crate::{
    ChannelArn, ExpiresAt, Fingerprint, KeySet, PlaybackClaims, PrivateKey, SharedKeySet,
    SigningKey, TokenSigner, Verifier,
};

/// IVS's quota of playback key pairs per region (not adjustable).
pub const KEY_PAIR_LIMIT: usize = 3;
/// The tag that marks a key pair as this store's.
pub const STORE_TAG: &str = "ivs-playback-auth:store";
/// The environment variable of the crash test hook: set it to a step name
/// (`generated`, `imported`, `activated`, `deleting`) and the process aborts
/// right after that step is recorded, as `kill -9` would stop it.
pub const CRASH_HOOK_ENV: &str = "IVS_PLAYBACK_AUTH_TEST_CRASH_AFTER";

/// `[rotation]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// Rotate on a schedule every this many seconds; 0 = only when asked.
    #[serde(default)]
    pub interval_seconds: u64,
    /// Margin kept after a retired key's last token expires before the key
    /// is deleted (clock skew between here and IVS).
    #[serde(default = "default_skew")]
    pub skew_seconds: u64,
    /// How often retired keys are checked for deletion, and the key store for
    /// changes made by another process (`keys rotate`).
    #[serde(default = "default_sweep")]
    pub sweep_seconds: u64,
    /// How often the key pairs IVS holds are compared with the store (an
    /// active key deleted in the console is imported again).
    #[serde(default = "default_reconcile")]
    pub reconcile_seconds: u64,
    /// A private channel (ARN or name) whose playback URL must accept a
    /// canary token of the new key before it signs. The channel must be live
    /// for real IVS to answer 200. Local mode uses the demo channel.
    #[serde(default)]
    pub canary_channel: Option<String>,
}

fn default_skew() -> u64 {
    60
}
fn default_sweep() -> u64 {
    15
}
fn default_reconcile() -> u64 {
    300
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self {
            interval_seconds: 0,
            skew_seconds: default_skew(),
            sweep_seconds: default_sweep(),
            reconcile_seconds: default_reconcile(),
            canary_channel: None,
        }
    }
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
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
    /// No key to sign with, and none may be generated.
    #[error("{0}")]
    NoKey(String),
}

/// A completed rotation.
#[derive(Debug, Clone, Serialize)]
pub struct Rotated {
    /// The key that signs now.
    pub active: String,
    /// The key it replaced, now retiring.
    pub retired: Option<String>,
    /// When the retired key will be deleted (Unix seconds).
    pub retired_key_deleted_after: Option<u64>,
    /// The new key's IVS ARN.
    pub ivs_arn: String,
    /// From the call to the new key signing.
    pub took_ms: u64,
}

/// A revoked key.
#[derive(Debug, Clone, Serialize)]
pub struct Revoked {
    /// The key deleted from IVS.
    pub fingerprint: String,
    /// Unexpired tokens it had signed, as counted since this process started.
    pub unexpired_tokens_killed: u64,
    /// The latest `exp` it signed, if it signed since this process started.
    pub tokens_valid_until: Option<u64>,
    /// Whether IVS still held it.
    pub ivs_deleted: bool,
}

/// Local and IVS state side by side.
#[derive(Debug, Clone, Serialize)]
pub struct KeysView {
    /// The store's record, with signing figures of keys in use.
    pub local: Vec<LocalKey>,
    /// What IVS holds in the region.
    pub ivs: Vec<IvsKey>,
    /// IVS's quota.
    pub limit: usize,
}

/// One key of the store's record.
#[derive(Debug, Clone, Serialize)]
pub struct LocalKey {
    /// The record.
    #[serde(flatten)]
    pub record: KeyRecord,
    /// Whether IVS holds it now.
    pub in_ivs: bool,
    /// Unexpired tokens it signed (since this process started).
    pub unexpired_tokens: u64,
}

/// One key pair IVS holds.
#[derive(Debug, Clone, Serialize)]
pub struct IvsKey {
    /// What IVS says.
    #[serde(flatten)]
    pub pair: KeyPairInfo,
    /// Tagged with this store's id.
    pub ours: bool,
}

/// Counts the tokens each key signed, by `exp`, so a revocation can say how
/// many unexpired tokens it kills. Sharded by thread, so that signers on
/// different threads never wait for each other (one uncontended lock per
/// signature, no await).
#[derive(Debug)]
pub struct TokenLedger {
    shards: Box<[std::sync::Mutex<LedgerShard>]>,
}

type LedgerShard = std::collections::HashMap<Fingerprint, std::collections::BTreeMap<u64, u64>>;

const LEDGER_SHARDS: usize = 16;

impl Default for TokenLedger {
    fn default() -> Self {
        Self {
            shards: (0..LEDGER_SHARDS)
                .map(|_| std::sync::Mutex::new(LedgerShard::new()))
                .collect(),
        }
    }
}

fn ledger_shard() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % LEDGER_SHARDS;
    }
    SHARD.with(|s| *s)
}

impl TokenLedger {
    /// A token signed by `key`, valid until `exp`.
    pub fn record(&self, key: &Fingerprint, exp: u64) {
        if let Some(Ok(mut shard)) = self.shards.get(ledger_shard()).map(|s| s.lock()) {
            *shard.entry(*key).or_default().entry(exp).or_default() += 1;
        }
    }

    /// Tokens of `key` still valid at `now` (Unix seconds).
    pub fn unexpired(&self, key: &Fingerprint, now: u64) -> u64 {
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
    pub fn prune(&self, now: u64) {
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

/// How a [`Rotator`] is set up.
#[derive(Debug, Clone)]
pub struct RotatorOptions {
    /// The longest TTL the service grants: a retired key's tokens are all
    /// expired this long after it stopped signing.
    pub longest_ttl: Duration,
    /// Margin after the last `exp`.
    pub skew: Duration,
    /// Canary playback URL (without `?token=`) and its channel.
    pub canary: Option<(ChannelArn, String)>,
    /// How often the sweep reconciles the store with what IVS holds.
    pub reconcile_every: Duration,
    /// A key to adopt when the store has none (the dev key), and whether it
    /// may be generated.
    pub first_key: Option<FirstKey>,
}

/// The key a fresh store starts with.
#[derive(Debug, Clone)]
pub struct FirstKey {
    /// Its file.
    pub path: std::path::PathBuf,
    /// Generate it there when missing.
    pub generate: bool,
}

/// Owns the playback keys in IVS and the key set the signer uses.
#[derive(Clone)]
pub struct Rotator {
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
    active_since: AtomicU64,
    /// When the sweep last reconciled with IVS.
    last_reconcile: std::sync::Mutex<Instant>,
    http: reqwest::Client,
}

/// What start-up found.
#[derive(Debug, Clone)]
pub struct Started {
    /// The rotator.
    pub rotator: Rotator,
    /// The active key's fingerprint.
    pub fingerprint: String,
    /// Its file in the store.
    pub key_file: std::path::PathBuf,
    /// The first key was generated now.
    pub generated: bool,
}

impl Rotator {
    /// Reconciles the store with IVS, adopts or imports the first key when
    /// the store has none, and builds the key set the signer will use.
    pub async fn start(
        ivs: Ivs,
        store: DirStore,
        options: RotatorOptions,
    ) -> Result<Started, RotationError> {
        let mut state = store.load_state().await?;
        let before = state.clone();
        if state.store_id.is_empty() {
            state.store_id = uuid::Uuid::new_v4().to_string();
        }
        let mut generated = false;
        let pairs = reconcile(&ivs, &store, &mut state).await?;
        if state.active().is_none() {
            // A key imported but not activated (an interrupted first start,
            // or `keys import`) becomes the first active key.
            let candidate = state
                .keys
                .iter()
                .rev()
                .find(|k| matches!(k.state, KeyState::Imported | KeyState::Generated))
                .map(|k| k.fingerprint.clone());
            let fingerprint = match candidate {
                Some(fp) => fp,
                None => {
                    let first = options
                        .first_key
                        .clone()
                        .ok_or_else(|| RotationError::NoKey("the key store is empty".into()))?;
                    let (key, made) = first_key(&first)?;
                    generated = made;
                    put_once(&store, &key).await?;
                    state
                        .keys
                        .push(record(key.fingerprint(), KeyState::Generated));
                    key.fingerprint().to_string()
                }
            };
            let count = pairs.len();
            save(&store, &mut state, &before).await?;
            let before = state.clone();
            import_if_needed(&ivs, &store, &mut state, &fingerprint, count).await?;
            set_state(&mut state, &fingerprint, KeyState::Active);
            save(&store, &mut state, &before).await?;
        } else {
            save(&store, &mut state, &before).await?;
        }
        let set = key_set(&store, &state, None).await?;
        let fingerprint = set.active().fingerprint().to_string();
        let key_file = store.key_path(set.active().fingerprint());
        let inner = Inner {
            ivs,
            store,
            keys: SharedKeySet::new(set),
            ledger: Arc::new(TokenLedger::default()),
            options,
            lock: tokio::sync::Mutex::new(()),
            applied: AtomicU64::new(state.version),
            active_since: AtomicU64::new(state.active().map_or(0, |k| k.updated_at)),
            last_reconcile: std::sync::Mutex::new(Instant::now()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| RotationError::Check(e.to_string()))?,
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
    pub fn keys(&self) -> &SharedKeySet {
        &self.inner.keys
    }

    /// When the active key started signing (Unix seconds).
    pub fn active_since(&self) -> u64 {
        self.inner.active_since.load(Ordering::Relaxed)
    }

    /// The token counts per key.
    pub fn ledger(&self) -> &Arc<TokenLedger> {
        &self.inner.ledger
    }

    /// Rotates: a new key is generated, stored, imported, checked, and made
    /// active; the old one retires. Resumes an interrupted rotation instead
    /// of starting another.
    pub async fn rotate(&self) -> Result<Rotated, RotationError> {
        let started = Instant::now();
        let _guard = self.inner.lock.lock().await;
        let inner = &self.inner;
        let mut state = inner.store.load_state().await?;
        let before = state.clone();
        let pairs = reconcile(&inner.ivs, &inner.store, &mut state).await?;
        save(&inner.store, &mut state, &before).await?;
        self.apply(&state).await?;
        let previous = state.active().map(|k| k.fingerprint.clone());

        let resumable = state
            .keys
            .iter()
            .rev()
            .find(|k| matches!(k.state, KeyState::Generated | KeyState::Imported))
            .map(|k| k.fingerprint.clone());
        let mut held = pairs.len();
        // A new key, or a resumed one IVS does not hold yet, needs a slot.
        let needs_slot = resumable
            .as_ref()
            .is_none_or(|fp| state.find(fp).is_some_and(|k| k.ivs_arn.is_none()));
        if needs_slot && held >= KEY_PAIR_LIMIT {
            held -= self.free_a_slot(&mut state, &pairs).await?;
        }
        let fingerprint = match resumable {
            Some(fp) => fp,
            None => {
                let key =
                    PrivateKey::generate().map_err(|e| RotationError::Check(e.to_string()))?;
                put_once(&inner.store, &key).await?;
                let before = state.clone();
                state
                    .keys
                    .push(record(key.fingerprint(), KeyState::Generated));
                save(&inner.store, &mut state, &before).await?;
                crash_point("generated");
                key.fingerprint().to_string()
            }
        };
        let before = state.clone();
        let arn =
            import_if_needed(&inner.ivs, &inner.store, &mut state, &fingerprint, held).await?;
        save(&inner.store, &mut state, &before).await?;
        crash_point("imported");

        // The checks before switching: IVS holds the key under this ARN with
        // this fingerprint, and a canary token of it verifies (and plays).
        let pair = inner.ivs.key_pair(&arn).await?.ok_or_else(|| {
            RotationError::Check(format!("IVS does not hold {arn} right after importing it"))
        })?;
        if pair.fingerprint != fingerprint {
            return Err(RotationError::Check(format!(
                "IVS holds fingerprint {} under {arn}, the key's is {fingerprint}",
                pair.fingerprint
            )));
        }
        let fp = parse_fp(&fingerprint)?;
        let key = inner.store.get_key(&fp).await?;
        let next = SigningKey::new(&key)
            .map_err(|e| RotationError::Check(e.to_string()))?
            .with_ivs_key_pair_arn(arn.clone());
        self.canary(&key).await?;
        drop(key);

        // Switch: record, then swap the set the signers read.
        let before = state.clone();
        let now = unix_seconds(SystemTime::now());
        for k in &mut state.keys {
            if k.state == KeyState::Active && k.fingerprint != fingerprint {
                k.state = KeyState::Retiring;
                k.retired_at = Some(now);
                k.updated_at = now;
            }
        }
        set_state(&mut state, &fingerprint, KeyState::Active);
        save(&inner.store, &mut state, &before).await?;
        inner.keys.rotate_to(next);
        inner.applied.store(state.version, Ordering::SeqCst);
        inner.active_since.store(now, Ordering::Relaxed);
        let took = started.elapsed();
        metrics::counter!("key_rotations_total").increment(1);

        // The old key's tokens: none outlives the longest TTL from now (it
        // stopped signing just now), nor the largest exp it signed.
        let deleted_after = match &previous {
            Some(old) if *old != fingerprint => {
                let before = state.clone();
                let signed = parse_fp(old)
                    .ok()
                    .and_then(|fp| inner.keys.load().find(&fp).and_then(|k| k.max_exp_signed()))
                    .map_or(0, ExpiresAt::unix_seconds);
                let after = signed.max(now + inner.options.longest_ttl.as_secs())
                    + inner.options.skew.as_secs();
                if let Some(k) = state.keys.iter_mut().find(|k| k.fingerprint == *old) {
                    k.max_exp = Some(signed);
                    k.delete_after = Some(after);
                }
                save(&inner.store, &mut state, &before).await?;
                Some(after)
            }
            _ => None,
        };
        crash_point("activated");
        tracing::info!(target: "audit", action = "key_rotated", active = %fingerprint, retired = ?previous, took_ms = took.as_millis() as u64);
        Ok(Rotated {
            active: fingerprint,
            retired: previous.filter(|p| p != &pair.fingerprint),
            retired_key_deleted_after: deleted_after,
            ivs_arn: arn,
            took_ms: took.as_millis() as u64,
        })
    }

    /// Deletes retired keys whose tokens have all expired, and picks up
    /// changes another process made to the store. Returns how many keys it
    /// deleted.
    pub async fn sweep(&self) -> Result<usize, RotationError> {
        let _guard = self.inner.lock.lock().await;
        let inner = &self.inner;
        let mut state = inner.store.load_state().await?;
        // Now and then, what IVS holds: a key deleted behind our back (in the
        // console, say) is imported again before it signs much longer.
        let reconcile_due = inner
            .last_reconcile
            .lock()
            .map(|t| t.elapsed() >= inner.options.reconcile_every)
            .unwrap_or(true);
        if reconcile_due {
            let before = state.clone();
            reconcile(&inner.ivs, &inner.store, &mut state).await?;
            save(&inner.store, &mut state, &before).await?;
            if let Ok(mut t) = inner.last_reconcile.lock() {
                *t = Instant::now();
            }
        }
        if state.version != inner.applied.load(Ordering::SeqCst) {
            self.apply(&state).await?;
        }
        let now = unix_seconds(SystemTime::now());
        let due: Vec<String> = state
            .keys
            .iter()
            .filter(|k| k.state == KeyState::Retiring)
            .filter(|k| k.delete_after.is_none_or(|t| t <= now))
            .map(|k| k.fingerprint.clone())
            .collect();
        let mut deleted = 0;
        for fingerprint in due {
            let Some(k) = state.keys.iter_mut().find(|k| k.fingerprint == fingerprint) else {
                continue;
            };
            if k.delete_after.is_none() {
                // Retired by a run that stopped before recording when: its
                // tokens all expire within the longest TTL from now.
                let before = state.clone();
                if let Some(k) = state.keys.iter_mut().find(|k| k.fingerprint == fingerprint) {
                    k.delete_after = Some(
                        now + inner.options.longest_ttl.as_secs() + inner.options.skew.as_secs(),
                    );
                }
                save(&inner.store, &mut state, &before).await?;
                continue;
            }
            self.delete(&mut state, &fingerprint, "retired key's tokens expired")
                .await?;
            deleted += 1;
        }
        inner.ledger.prune(now);
        Ok(deleted)
    }

    /// Emergency: deletes a non-active key from IVS now, killing its tokens.
    pub async fn revoke(&self, fingerprint: &str) -> Result<Revoked, RotationError> {
        let _guard = self.inner.lock.lock().await;
        let inner = &self.inner;
        let mut state = inner.store.load_state().await?;
        let Some(rec) = state.find(fingerprint).cloned() else {
            return Err(RotationError::UnknownKey(fingerprint.to_owned()));
        };
        if rec.state == KeyState::Active {
            return Err(RotationError::ActiveKey(fingerprint.to_owned()));
        }
        let fp = parse_fp(fingerprint)?;
        let now = unix_seconds(SystemTime::now());
        let killed = inner.ledger.unexpired(&fp, now);
        let valid_until = inner
            .keys
            .load()
            .find(&fp)
            .and_then(|k| k.max_exp_signed())
            .map(ExpiresAt::unix_seconds)
            .or(rec.max_exp);
        let ivs_deleted = self
            .delete(&mut state, fingerprint, "revoked by an admin")
            .await?;
        Ok(Revoked {
            fingerprint: fingerprint.to_owned(),
            unexpired_tokens_killed: killed,
            tokens_valid_until: valid_until.filter(|t| *t > now),
            ivs_deleted,
        })
    }

    /// The store's record and IVS's key pairs side by side.
    pub async fn view(&self) -> Result<KeysView, RotationError> {
        let state = self.inner.store.load_state().await?;
        let pairs = self.inner.ivs.key_pairs().await?;
        let now = unix_seconds(SystemTime::now());
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
        state: &mut RotationState,
        fingerprint: &str,
        why: &str,
    ) -> Result<bool, RotationError> {
        let inner = &self.inner;
        let before = state.clone();
        let arn = state.find(fingerprint).and_then(|k| k.ivs_arn.clone());
        set_state(state, fingerprint, KeyState::Deleted);
        save(&inner.store, state, &before).await?;
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

    /// Deletes retiring keys whose tokens have expired until a slot is free;
    /// returns how many were deleted, or refuses.
    async fn free_a_slot(
        &self,
        state: &mut RotationState,
        pairs: &[KeyPairInfo],
    ) -> Result<usize, RotationError> {
        let now = unix_seconds(SystemTime::now());
        let expired: Vec<String> = state
            .keys
            .iter()
            .filter(|k| k.state == KeyState::Retiring && k.delete_after.is_some_and(|t| t <= now))
            .map(|k| k.fingerprint.clone())
            .collect();
        if let Some(fp) = expired.first() {
            self.delete(state, fp, "slot needed for a rotation").await?;
            return Ok(1);
        }
        let detail = pairs
            .iter()
            .map(|p| match state.find(&p.fingerprint) {
                Some(k) if k.state == KeyState::Active => format!("{} (active)", p.fingerprint),
                Some(k) if k.state == KeyState::Retiring => format!(
                    "{} (retiring; deletable {})",
                    p.fingerprint,
                    k.delete_after
                        .map_or("once its tokens expire".into(), |t| format!(
                            "at {t} Unix seconds, in {} s",
                            t.saturating_sub(now)
                        ))
                ),
                _ => format!("{} ({}, not ours: never touched)", p.fingerprint, p.name),
            })
            .collect::<Vec<_>>()
            .join(", ");
        Err(RotationError::QuotaFull {
            held: pairs.len(),
            detail,
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
    async fn apply(&self, state: &RotationState) -> Result<(), RotationError> {
        let current = self.inner.keys.snapshot();
        let set = key_set(&self.inner.store, state, Some(&current)).await?;
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

/// What `keys import` did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportedKey {
    /// The key.
    pub fingerprint: String,
    /// Its IVS key pair.
    pub ivs_arn: String,
    /// IVS already held it (made in the console, say) and it was adopted.
    pub adopted: bool,
    /// Where it is now: `active` when the store had no active key, else
    /// `imported` (the next rotation activates it).
    pub state: KeyState,
}

/// Adopts an existing private key: stores it, finds its IVS key pair by
/// fingerprint or imports it, and records it; it becomes active if the store
/// has no active key, else the next rotation activates it.
pub async fn import_key(
    ivs: &Ivs,
    store: &DirStore,
    key: &PrivateKey,
) -> Result<ImportedKey, RotationError> {
    let mut state = store.load_state().await?;
    let before = state.clone();
    if state.store_id.is_empty() {
        state.store_id = uuid::Uuid::new_v4().to_string();
    }
    let fingerprint = key.fingerprint().to_string();
    if let Some(k) = state.find(&fingerprint)
        && k.state != KeyState::Deleted
    {
        return Err(RotationError::Check(format!(
            "key {fingerprint} is already in the store ({:?})",
            k.state
        )));
    }
    let pairs = reconcile(ivs, store, &mut state).await?;
    put_once(store, key).await?;
    state.keys.retain(|k| k.fingerprint != fingerprint);
    let mut rec = record(key.fingerprint(), KeyState::Generated);
    let existing = pairs.iter().find(|p| p.fingerprint == fingerprint);
    if let Some(pair) = existing {
        rec.ivs_arn = Some(pair.arn.clone());
        rec.state = KeyState::Imported;
    }
    state.keys.push(rec);
    save(store, &mut state, &before).await?;
    let before = state.clone();
    let arn = import_if_needed(ivs, store, &mut state, &fingerprint, pairs.len()).await?;
    let to = if state.active().is_none() {
        KeyState::Active
    } else {
        KeyState::Imported
    };
    set_state(&mut state, &fingerprint, to);
    save(store, &mut state, &before).await?;
    tracing::info!(target: "audit", action = "key_adopted", fingerprint, arn = %arn, state = ?to);
    Ok(ImportedKey {
        fingerprint,
        ivs_arn: arn,
        adopted: existing.is_some(),
        state: to,
    })
}

/// Aborts the process after `step` when the crash test hook asks for it.
fn crash_point(step: &str) {
    if std::env::var(CRASH_HOOK_ENV).is_ok_and(|v| v == step) {
        eprintln!("{CRASH_HOOK_ENV}={step}: aborting as asked");
        std::process::abort();
    }
}

fn record(fingerprint: &Fingerprint, state: KeyState) -> KeyRecord {
    KeyRecord {
        fingerprint: fingerprint.to_string(),
        state,
        ivs_arn: None,
        max_exp: None,
        retired_at: None,
        delete_after: None,
        updated_at: unix_seconds(SystemTime::now()),
    }
}

fn set_state(state: &mut RotationState, fingerprint: &str, to: KeyState) {
    if let Some(k) = state.keys.iter_mut().find(|k| k.fingerprint == fingerprint) {
        k.state = to;
        k.updated_at = unix_seconds(SystemTime::now());
    }
}

fn parse_fp(fingerprint: &str) -> Result<Fingerprint, RotationError> {
    fingerprint
        .parse()
        .map_err(|_| RotationError::UnknownKey(fingerprint.to_owned()))
}

/// Saves `state` as the next version if it differs from `before`.
async fn save(
    store: &DirStore,
    state: &mut RotationState,
    before: &RotationState,
) -> Result<(), RotationError> {
    if state == before {
        return Ok(());
    }
    state.version = before.version + 1;
    store.save_state(state).await?;
    Ok(())
}

async fn put_once(store: &DirStore, key: &PrivateKey) -> Result<(), RotationError> {
    match store.put_key(key).await {
        Ok(()) | Err(StoreError::Exists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The first key of a fresh store: the file if it exists, else generated
/// there when allowed.
fn first_key(first: &FirstKey) -> Result<(PrivateKey, bool), RotationError> {
    if first.path.exists() {
        let key =
            PrivateKey::read_file(&first.path).map_err(|e| RotationError::NoKey(e.to_string()))?;
        return Ok((key, false));
    }
    if !first.generate {
        return Err(RotationError::NoKey(format!(
            "{} does not exist and the key store is empty; make one with `ivs-playback-auth keys generate --out {}` or adopt one with `keys import --private-key FILE` (or set keys.generate_if_missing)",
            first.path.display(),
            first
                .path
                .parent()
                .map_or(".".into(), |p| p.display().to_string())
        )));
    }
    let key = PrivateKey::generate().map_err(|e| RotationError::NoKey(e.to_string()))?;
    key.write_pem_file(&first.path)
        .map_err(|e| RotationError::NoKey(e.to_string()))?;
    let public = first.path.with_file_name("playback-key.pub.pem");
    if !public.exists() {
        key.public_key()
            .write_pem_file(&public)
            .map_err(|e| RotationError::NoKey(e.to_string()))?;
    }
    Ok((key, true))
}

/// Imports `fingerprint` unless IVS holds it (its record then has the ARN);
/// records it imported. `held` is how many key pairs IVS holds now.
async fn import_if_needed(
    ivs: &Ivs,
    store: &DirStore,
    state: &mut RotationState,
    fingerprint: &str,
    held: usize,
) -> Result<String, RotationError> {
    if let Some(arn) = state.find(fingerprint).and_then(|k| k.ivs_arn.clone()) {
        set_state(state, fingerprint, KeyState::Imported);
        return Ok(arn);
    }
    if held >= KEY_PAIR_LIMIT {
        let pairs = ivs.key_pairs().await?;
        return Err(RotationError::QuotaFull {
            held: pairs.len(),
            detail: pairs
                .iter()
                .map(|p| format!("{} ({})", p.fingerprint, p.name))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let fp = parse_fp(fingerprint)?;
    let key = store.get_key(&fp).await?;
    let name = format!("ivs-playback-auth-{}", fingerprint.replace(':', ""));
    let pair = ivs
        .import_key_pair(
            key.public_key(),
            &name[..name.len().min(128)],
            &[(STORE_TAG, state.store_id.as_str())],
        )
        .await;
    let pair = match pair {
        Ok(pair) => pair,
        // An import whose answer was lost, then retried: IVS holds the key.
        Err(e) if e.code() == Some("ConflictException") => ivs
            .key_pairs()
            .await?
            .into_iter()
            .find(|p| p.fingerprint == fingerprint)
            .ok_or(RotationError::Ivs(e))?,
        Err(e) if e.code() == Some("ServiceQuotaExceededException") => {
            return Err(RotationError::QuotaFull {
                held,
                detail: e.to_string(),
            });
        }
        Err(e) => return Err(RotationError::Ivs(e)),
    };
    if let Some(k) = state.keys.iter_mut().find(|k| k.fingerprint == fingerprint) {
        k.ivs_arn = Some(pair.arn.clone());
    }
    set_state(state, fingerprint, KeyState::Imported);
    tracing::info!(target: "audit", action = "key_imported", fingerprint, arn = %pair.arn);
    Ok(pair.arn)
}

/// Brings the record in line with what IVS holds (see the module docs);
/// returns the key pairs IVS holds afterwards.
async fn reconcile(
    ivs: &Ivs,
    store: &DirStore,
    state: &mut RotationState,
) -> Result<Vec<KeyPairInfo>, RotationError> {
    let mut pairs = ivs.key_pairs().await?;
    let now = unix_seconds(SystemTime::now());
    let mut gone = HashSet::new();
    for pair in &pairs {
        let ours = pair.tags.get(STORE_TAG) == Some(&state.store_id);
        match state
            .keys
            .iter_mut()
            .find(|k| k.fingerprint == pair.fingerprint)
        {
            Some(k) if k.state == KeyState::Deleted => {
                // A deletion recorded but not done (or an import of a
                // deleted key): finish it.
                ivs.delete_key_pair(&pair.arn).await?;
                gone.insert(pair.arn.clone());
            }
            Some(k) => {
                if k.ivs_arn.as_deref() != Some(pair.arn.as_str()) {
                    k.ivs_arn = Some(pair.arn.clone());
                    k.updated_at = now;
                }
                if k.state == KeyState::Generated {
                    k.state = KeyState::Imported;
                    k.updated_at = now;
                }
            }
            None if ours => {
                let fp = parse_fp(&pair.fingerprint)?;
                match store.get_key(&fp).await {
                    Ok(_) => {
                        let mut rec = record(&fp, KeyState::Imported);
                        rec.ivs_arn = Some(pair.arn.clone());
                        state.keys.push(rec);
                        tracing::info!(target: "audit", action = "key_adopted", fingerprint = %pair.fingerprint, arn = %pair.arn);
                    }
                    Err(StoreError::Missing(_)) => {
                        ivs.delete_key_pair(&pair.arn).await?;
                        gone.insert(pair.arn.clone());
                        tracing::info!(target: "audit", action = "key_deleted", fingerprint = %pair.fingerprint, reason = "ours, orphaned: no private key in the store");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => {}
        }
    }
    pairs.retain(|p| !gone.contains(&p.arn));
    for k in &mut state.keys {
        let held = pairs.iter().any(|p| p.fingerprint == k.fingerprint);
        if held {
            continue;
        }
        match k.state {
            // IVS lost a key we use: it must be imported again before it
            // signs (the ARN is forgotten so the import happens).
            KeyState::Imported | KeyState::Active if k.ivs_arn.is_some() => {
                tracing::warn!(fingerprint = %k.fingerprint, "IVS no longer holds this key; importing it again");
                k.ivs_arn = None;
                k.state = if k.state == KeyState::Active {
                    KeyState::Active
                } else {
                    KeyState::Generated
                };
                k.updated_at = now;
            }
            KeyState::Retiring => {
                k.state = KeyState::Deleted;
                k.updated_at = now;
            }
            _ => {}
        }
    }
    // An active key without an ARN is imported now, before anything signs.
    let unheld: Vec<String> = state
        .keys
        .iter()
        .filter(|k| k.state == KeyState::Active && k.ivs_arn.is_none())
        .map(|k| k.fingerprint.clone())
        .collect();
    for fp in unheld {
        import_if_needed(ivs, store, state, &fp, pairs.len()).await?;
        set_state(state, &fp, KeyState::Active);
        pairs = ivs.key_pairs().await?;
    }
    Ok(pairs)
}

/// The key set of a state: its active key and its retiring keys, reusing
/// the signing keys of `current` (and what they track) where it can.
async fn key_set(
    store: &DirStore,
    state: &RotationState,
    current: Option<&KeySet>,
) -> Result<KeySet, RotationError> {
    async fn signing_key(
        store: &DirStore,
        rec: &KeyRecord,
        current: Option<&KeySet>,
    ) -> Result<Arc<SigningKey>, RotationError> {
        let fp = parse_fp(&rec.fingerprint)?;
        // The signing key in use, with what it tracks, unless it was imported
        // again under another ARN.
        if let Some(k) = current
            .and_then(|c| c.find(&fp))
            .filter(|k| k.ivs_key_pair_arn() == rec.ivs_arn.as_deref())
        {
            return Ok(Arc::clone(k));
        }
        let key = store.get_key(&fp).await?;
        let mut signing = SigningKey::new(&key).map_err(|e| RotationError::Check(e.to_string()))?;
        if let Some(arn) = &rec.ivs_arn {
            signing = signing.with_ivs_key_pair_arn(arn.clone());
        }
        Ok(Arc::new(signing))
    }
    let active = state
        .active()
        .ok_or_else(|| RotationError::NoKey("the key store records no active key".into()))?;
    if active.ivs_arn.is_none() {
        return Err(RotationError::NoKey(format!(
            "the active key {} is not imported into IVS",
            active.fingerprint
        )));
    }
    let mut set = KeySet::new(signing_key(store, active, current).await?);
    for rec in state.keys.iter().filter(|k| k.state == KeyState::Retiring) {
        set = set.with_retiring(signing_key(store, rec, current).await?);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

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
