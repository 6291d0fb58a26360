//! Rotation among replicas: every change to the state or to IVS's key pairs
//! happens under the rotation lease; a rotation request that finds the lease
//! held waits for that rotation and answers with it; the sweep takes the
//! lease when it is free and first finishes a rotation whose runner died;
//! the poll picks up what others recorded; the heartbeat says which key this
//! replica signs with and what it signed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::report::Rotated;
use super::steps::now;
use super::{RotationError, Rotator, RotatorOptions};
use crate::ExpiresAt;
use crate::service::control::coordination::{Coordination, Freshness, Head, Lease, now_ms};
use crate::service::control::ivs::Ivs;
use crate::service::control::store::{
    KeyStore as _, LastRotation, RotationState, Store, StoreError,
};

/// How often a replica waiting for the lease looks again.
const LEASE_WAIT: Duration = Duration::from_millis(100);
/// How long a poll waits for this process's lock before it leaves the new
/// state to whoever holds it.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// How long a replica waits for a lease held by another: long enough for
/// the holder to finish, or for its lease to expire if it died.
fn patience(table: &Coordination) -> Duration {
    table.lease_duration() * 3 + Duration::from_secs(10)
}

/// Waits until this replica holds the lease; returns the replica whose
/// expired lease it took over, if any.
pub(super) async fn wait_for_lease(table: &Coordination) -> Result<Option<String>, RotationError> {
    let deadline = Instant::now() + patience(table);
    loop {
        match table.try_lease().await.map_err(StoreError::from)? {
            Lease::Acquired { took_over } => return Ok(took_over),
            Lease::Held { holder, .. } if Instant::now() >= deadline => {
                return Err(busy(table, &holder));
            }
            Lease::Held { .. } => tokio::time::sleep(LEASE_WAIT).await,
        }
    }
}

fn busy(table: &Coordination, holder: &str) -> RotationError {
    RotationError::Busy(format!(
        "replica {holder} has held the rotation lease for longer than {} s; try again later",
        patience(table).as_secs()
    ))
}

/// Start-up of a replica: a state with an imported active key is used as it
/// is (the lease holder's sweep reconciles it with IVS); a fresh or
/// unfinished one is prepared under the lease, by one replica at a time.
pub(super) async fn prepare(
    ivs: &Ivs,
    store: &Store,
    options: &RotatorOptions,
    table: &Coordination,
) -> Result<(RotationState, bool), RotationError> {
    let state = store.load_state().await?;
    if state.active().is_some_and(|k| k.ivs_arn.is_some()) {
        return Ok((state, false));
    }
    wait_for_lease(table).await?;
    let prepared = Rotator::prepare(ivs, store, options).await;
    table.release_lease().await;
    prepared
}

/// A rotation among replicas: under the lease, or joined to the one that
/// holds it.
pub(super) async fn rotate(
    rotator: &Rotator,
    table: &Coordination,
    requested_at: u64,
) -> Result<Rotated, RotationError> {
    let deadline = Instant::now() + patience(table);
    loop {
        match table.try_lease().await.map_err(StoreError::from)? {
            Lease::Acquired { .. } => {
                let out = rotator.rotate_locked(Some(requested_at)).await;
                table.release_lease().await;
                return out;
            }
            Lease::Held { holder, .. } => loop {
                tokio::time::sleep(LEASE_WAIT).await;
                if let Some(last) = follow(rotator, requested_at).await? {
                    tracing::info!(target: "audit", action = "rotation_joined", active = %last.active, by = %last.by);
                    return Ok(Rotated::joined(&last));
                }
                if table
                    .head()
                    .await
                    .map_err(StoreError::from)?
                    .lease_free(now_ms())
                {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(busy(table, &holder));
                }
            },
        }
    }
}

/// While waiting for another replica's rotation: applies what it recorded
/// (this replica holds its own lock, so its poll cannot), and returns the
/// rotation once it finished after `requested_at`.
async fn follow(
    rotator: &Rotator,
    requested_at: u64,
) -> Result<Option<LastRotation>, RotationError> {
    let state = rotator.inner.store.load_state().await?;
    if state.version > rotator.inner.applied.load(Ordering::SeqCst) {
        rotator.apply(&state).await?;
    }
    Ok(state
        .last_rotation
        .filter(|l| state.in_progress.is_none() && l.finished_at_ms >= requested_at))
}

/// The sweep among replicas: by the lease holder only (the others skip it),
/// which first finishes a rotation whose runner died, and deletes a retired
/// key only when every replica's heartbeat says it is done with it.
pub(super) async fn sweep(rotator: &Rotator, table: &Coordination) -> Result<usize, RotationError> {
    // A key operation of this process holds the lock (and the lease, which
    // is this replica's, not this task's): it does the work.
    let Ok(_guard) = rotator.inner.lock.try_lock() else {
        return Ok(0);
    };
    let Lease::Acquired { took_over } = table.try_lease().await.map_err(StoreError::from)? else {
        // The holder sweeps; this replica only forgets its expired tokens.
        rotator.inner.ledger.prune(now());
        return Ok(0);
    };
    let out = async {
        let state = rotator.inner.store.load_state().await?;
        if let Some(p) = &state.in_progress {
            tracing::warn!(started_by = %p.by, key = %p.fingerprint, "finishing a rotation its replica left unfinished");
            rotator.rotate_locked(None).await?;
        }
        let beats = table.heartbeats().await.map_err(StoreError::from)?;
        // A replica that let its lease expire may have stopped in the middle
        // of any step: what IVS holds is looked at now.
        rotator.sweep_locked(&beats, took_over.is_some()).await
    }
    .await;
    table.release_lease().await;
    out
}

/// Writes this replica's heartbeat: the key it signs with and the latest
/// `exp` it signed with each key it holds. A failure is logged; readiness
/// reports it once it lasts.
pub(super) async fn beat(rotator: &Rotator, table: &Coordination) {
    let set = rotator.inner.keys.snapshot();
    let signed: BTreeMap<String, u64> = set
        .iter()
        .map(|k| {
            let exp = k.max_exp_signed().map_or(0, ExpiresAt::unix_seconds);
            (k.fingerprint().to_string(), exp)
        })
        .collect();
    let options = &rotator.inner.options;
    // A dead replica's last heartbeat is read until its last tokens expired.
    let keep_for = options.longest_ttl + options.skew + options.live_for;
    let active = set.active().fingerprint().to_string();
    match table
        .beat(&active, &signed, options.live_for, keep_for)
        .await
    {
        Ok(()) => rotator.inner.freshness.beat(now()),
        Err(e) => tracing::warn!(error = %e, "heartbeat not written; retrying at the next one"),
    }
}

impl Rotator {
    /// With replicas: reads what changed in the table (one small read when
    /// nothing did) and swaps in the key set of a newer state. Returns what
    /// it read, for the deny-list's version; `None` for a replica alone.
    pub(crate) async fn poll(&self) -> Result<Option<Head>, RotationError> {
        let Some(table) = self.inner.store.coordination() else {
            return Ok(None);
        };
        let head = table.head().await.map_err(StoreError::from)?;
        if head.state_version > self.inner.applied.load(Ordering::SeqCst)
            // A sweep holds the lock briefly; a key operation of this
            // process that holds it longer applies what it records itself.
            && let Ok(_guard) = tokio::time::timeout(LOCK_WAIT, self.inner.lock.lock()).await
        {
            let state = self.inner.store.load_state().await?;
            if state.version > self.inner.applied.load(Ordering::SeqCst) {
                self.apply(&state).await?;
                beat(self, table).await;
            }
        }
        self.inner.freshness.polled(now());
        Ok(Some(head))
    }

    /// With replicas: writes this replica's heartbeat.
    pub(crate) async fn heartbeat(&self) {
        if let Some(table) = self.inner.store.coordination() {
            beat(self, table).await;
        }
    }

    /// The coordination table, with replicas.
    pub(crate) fn coordination(&self) -> Option<&Coordination> {
        self.inner.store.coordination()
    }

    /// How fresh this replica's view of the shared stores is.
    pub(crate) fn freshness(&self) -> Arc<Freshness> {
        Arc::clone(&self.inner.freshness)
    }
}
