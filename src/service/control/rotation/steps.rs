//! The steps that act. A step of the rotation records what it is about to
//! do in the key store (through [`Record::step`]) before it touches IVS, then
//! acts, so that a crash between the two converges on the next run.
//! Reconciliation is the other way round, and safe to repeat: it makes the
//! record match what IVS holds (deleting only what the record or the store
//! says must go), and the caller saves the result.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use super::transitions::{self, Reconciled};
use super::{KEY_PAIR_LIMIT, RotationError, STORE_TAG};
use crate::claims::unix_seconds;
use crate::service::control::ivs::{Ivs, KeyPairInfo};
use crate::service::control::store::{
    KeyRecord, KeyState, KeyStore as _, RotationState, Store, StoreError,
};
use crate::{Fingerprint, KeySet, PrivateKey, SigningKey};

/// The clock of the steps (the transitions take it as an argument).
pub(super) fn now() -> u64 {
    unix_seconds(SystemTime::now())
}

/// The recorded state, with the version last saved: every change goes to
/// the store as the next version before the side effect it announces.
pub(super) struct Record<'s> {
    store: &'s Store,
    pub(super) state: RotationState,
    saved: RotationState,
}

impl<'s> Record<'s> {
    /// The state as stored now.
    pub(super) async fn load(store: &'s Store) -> Result<Self, RotationError> {
        let state = store.load_state().await?;
        Ok(Self {
            store,
            saved: state.clone(),
            state,
        })
    }

    /// The store the state is recorded in.
    pub(super) fn store(&self) -> &'s Store {
        self.store
    }

    /// Saves the state as the next version if it changed since the last
    /// save (the store refuses it if someone else saved meanwhile).
    pub(super) async fn save(&mut self) -> Result<(), RotationError> {
        if self.state == self.saved {
            return Ok(());
        }
        self.state.version = self.saved.version + 1;
        self.store.save_state(&self.state).await?;
        self.saved = self.state.clone();
        Ok(())
    }

    /// Applies a transition and records it, before anything acts on it.
    pub(super) async fn step<T>(
        &mut self,
        transition: impl FnOnce(&mut RotationState) -> T,
    ) -> Result<T, RotationError> {
        let out = transition(&mut self.state);
        self.save().await?;
        Ok(out)
    }
}

/// Aborts the process after `step` when the crash test hook asks for it,
/// or stops it there for good when the hold hook does (a test then kills it
/// with SIGKILL, as an orchestrator would a replica that hangs).
pub(super) fn crash_point(step: &str) {
    if std::env::var(super::CRASH_HOOK_ENV).is_ok_and(|v| v == step) {
        // The log lines of the steps before it are on stderr first.
        crate::service::log_writer::flush();
        eprintln!("{}={step}: aborting as asked", super::CRASH_HOOK_ENV);
        std::process::abort();
    }
    if std::env::var(super::HOLD_HOOK_ENV).is_ok_and(|v| v == step) {
        eprintln!("{}={step}: holding as asked", super::HOLD_HOOK_ENV);
        // This worker thread only: the listeners and the heartbeat go on.
        loop {
            std::thread::park();
        }
    }
}

pub(super) fn parse_fp(fingerprint: &str) -> Result<Fingerprint, RotationError> {
    fingerprint
        .parse()
        .map_err(|_| RotationError::UnknownKey(fingerprint.to_owned()))
}

/// Stores a private key; one already stored is the same key (write-once).
pub(super) async fn put_once(store: &Store, key: &PrivateKey) -> Result<(), RotationError> {
    match store.put_key(key).await {
        Ok(()) | Err(StoreError::Exists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Imports `fingerprint` unless IVS holds it (its record then has the ARN);
/// records it imported. `held` is how many key pairs IVS holds now.
pub(super) async fn import_if_needed(
    ivs: &Ivs,
    record: &mut Record<'_>,
    fingerprint: &str,
    held: usize,
) -> Result<String, RotationError> {
    if let Some(arn) = record
        .state
        .find(fingerprint)
        .and_then(|k| k.ivs_arn.clone())
    {
        transitions::set_state(&mut record.state, fingerprint, KeyState::Imported, now());
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
    let key = record.store.get_key(&parse_fp(fingerprint)?).await?;
    let name = format!("ivs-playback-auth-{}", fingerprint.replace(':', ""));
    let answer = ivs
        .import_key_pair(
            key.public_key(),
            &name[..name.len().min(128)],
            &[(STORE_TAG, record.state.store_id.as_str())],
        )
        .await;
    let pair = match answer {
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
    transitions::imported(&mut record.state, fingerprint, &pair.arn, now());
    tracing::info!(target: "audit", action = "key_imported", fingerprint, arn = %pair.arn);
    Ok(pair.arn)
}

/// Brings the record in line with what IVS holds (the transition decides;
/// this asks the store which orphans it can adopt, deletes what must go and
/// imports active keys IVS lost). Returns the key pairs IVS holds after.
pub(super) async fn reconcile(
    ivs: &Ivs,
    record: &mut Record<'_>,
) -> Result<Vec<KeyPairInfo>, RotationError> {
    let mut pairs = ivs.key_pairs().await?;
    let store_id = record.state.store_id.clone();
    let mut have = HashSet::new();
    for pair in &pairs {
        let ours = pair.tags.get(STORE_TAG) == Some(&store_id);
        if ours && record.state.find(&pair.fingerprint).is_none() {
            match record.store.get_key(&parse_fp(&pair.fingerprint)?).await {
                Ok(_) => {
                    have.insert(pair.fingerprint.clone());
                }
                Err(StoreError::Missing(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let Reconciled {
        delete,
        adopted,
        lost,
    } = transitions::reconcile(
        &mut record.state,
        &pairs,
        STORE_TAG,
        &|fp| have.contains(fp),
        now(),
    );
    for d in &delete {
        ivs.delete_key_pair(&d.arn).await?;
        tracing::info!(target: "audit", action = "key_deleted", fingerprint = %d.fingerprint, reason = d.reason);
    }
    pairs.retain(|p| !delete.iter().any(|d| d.arn == p.arn));
    for (fingerprint, arn) in &adopted {
        tracing::info!(target: "audit", action = "key_adopted", fingerprint = %fingerprint, arn = %arn);
    }
    for fingerprint in &lost {
        tracing::warn!(fingerprint = %fingerprint, "IVS no longer holds this key; importing it again");
    }
    // An active key without an ARN is imported now, before anything signs.
    for fp in transitions::unheld_active(&record.state) {
        import_if_needed(ivs, record, &fp, pairs.len()).await?;
        transitions::set_state(&mut record.state, &fp, KeyState::Active, now());
        pairs = ivs.key_pairs().await?;
    }
    Ok(pairs)
}

/// The key set of a state: its active key and its retiring keys, reusing
/// the signing keys of `current` (and what they track) where it can.
pub(super) async fn key_set(
    store: &Store,
    state: &RotationState,
    current: Option<&KeySet>,
) -> Result<KeySet, RotationError> {
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

async fn signing_key(
    store: &Store,
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
