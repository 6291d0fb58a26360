//! Where private keys and rotation state live.
//!
//! [`KeyStore`] is the seam rotation works through, and [`Store`] the one
//! it holds, in either of two shapes chosen by `keys.store`:
//! - `dir` (the default, one replica): keys and state in a directory
//!   ([`DirStore`]);
//! - `secrets-manager` (many replicas): each private key one secret in AWS
//!   Secrets Manager, written once and never on a replica's disk
//!   ([`SecretsKeys`]), and the rotation state one item of the coordination
//!   table, saved only by the holder of the rotation lease and only over the
//!   version it read (a stale save is refused).
//!
//! Rotation records each step in the state *before* its side effect, so
//! that a crash at any point leaves a state from which a restart (or
//! another replica) can converge.

mod dir;
mod secrets;

use std::future::Future;

use serde::{Deserialize, Serialize};

pub(crate) use self::dir::{DirStore, check_private};
pub(crate) use self::secrets::SecretsKeys;
use crate::service::control::coordination::{Coordination, CoordinationError};
use crate::{Fingerprint, PrivateKey};

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KeyState {
    /// Made and stored here; IVS does not hold it yet.
    Generated,
    /// IVS holds its public half (fingerprint checked); not signing yet.
    Imported,
    /// Signing.
    Active,
    /// No longer signing; its tokens are still valid until `max_exp`.
    Retiring,
    /// Deleted from IVS; kept in the record for the audit trail.
    Deleted,
}

/// One key as rotation knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyRecord {
    /// The IVS fingerprint (`aa:bb:...`).
    pub(crate) fingerprint: String,
    /// Where it is in its life.
    pub(crate) state: KeyState,
    /// Its IVS key-pair ARN, once imported.
    pub(crate) ivs_arn: Option<String>,
    /// The latest `exp` of a token it signed (Unix seconds), recorded when
    /// it retires.
    pub(crate) max_exp: Option<u64>,
    /// When it stopped signing (Unix seconds).
    #[serde(default)]
    pub(crate) retired_at: Option<u64>,
    /// When it may be deleted: its last token's expiry plus the skew margin
    /// (Unix seconds).
    #[serde(default)]
    pub(crate) delete_after: Option<u64>,
    /// When the record last changed (Unix seconds).
    pub(crate) updated_at: u64,
}

/// A rotation under way: set with its first step, cleared with its last, so
/// that another replica knows there is one to finish when its runner died.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InProgress {
    /// The key it makes active.
    pub(crate) fingerprint: String,
    /// When it started (Unix milliseconds).
    pub(crate) started_at_ms: u64,
    /// The replica that started it.
    pub(crate) by: String,
}

/// The last rotation that finished: what a request that joined it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LastRotation {
    /// The key it made active.
    pub(crate) active: String,
    /// The key that retired.
    pub(crate) retired: Option<String>,
    /// When the retired key may be deleted (Unix seconds).
    pub(crate) retired_key_deleted_after: Option<u64>,
    /// The active key's IVS ARN.
    pub(crate) ivs_arn: String,
    /// When it started (Unix milliseconds).
    pub(crate) started_at_ms: u64,
    /// When the new key started signing (Unix milliseconds).
    pub(crate) finished_at_ms: u64,
    /// The replica that finished it.
    pub(crate) by: String,
}

/// Everything rotation persists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RotationState {
    /// Grows with every save; a store refuses to save over a newer state.
    pub(crate) version: u64,
    /// This store's id, tagged on the key pairs it imports, so that keys
    /// that are not ours are never touched.
    #[serde(default)]
    pub(crate) store_id: String,
    /// Every key, oldest first.
    pub(crate) keys: Vec<KeyRecord>,
    /// The rotation under way, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) in_progress: Option<InProgress>,
    /// The last rotation that finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_rotation: Option<LastRotation>,
}

impl RotationState {
    /// The signing key's record.
    pub(crate) fn active(&self) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.state == KeyState::Active)
    }

    /// The record of a key.
    pub(crate) fn find(&self, fingerprint: &str) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.fingerprint == fingerprint)
    }
}

/// A store failure; the message names the file, secret or table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum StoreError {
    /// Reading or writing failed (or the store could not be reached).
    #[error("key store: {0}")]
    Io(String),
    /// The state is unreadable (it is left as it is).
    #[error("key store: {0}")]
    Corrupt(String),
    /// A key with this fingerprint is already stored.
    #[error("key store: key {0} already exists")]
    Exists(String),
    /// No key with this fingerprint.
    #[error("key store: no key {0}")]
    Missing(String),
    /// A key file or the key directory is open to others (or a link).
    #[error("key store: {0}")]
    Exposed(String),
    /// Someone saved a newer state meanwhile (another replica).
    #[error("key store: the state changed meanwhile (version {stored} is newer than {ours})")]
    Conflict {
        /// The stored version.
        stored: u64,
        /// The version this save was based on.
        ours: u64,
    },
    /// This replica no longer holds the rotation lease: another took it
    /// over (this one was too slow), so its save is refused.
    #[error("key store: {0}")]
    LeaseLost(String),
}

/// Where private keys and rotation state live.
pub(crate) trait KeyStore: Send + Sync {
    /// The rotation state; an empty one if none was saved yet.
    fn load_state(&self) -> impl Future<Output = Result<RotationState, StoreError>> + Send;
    /// Saves `state` if the stored version is still `state.version - 1`.
    fn save_state(
        &self,
        state: &RotationState,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Stores a new private key; never replaces one.
    fn put_key(&self, key: &PrivateKey) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A stored private key.
    fn get_key(
        &self,
        fingerprint: &Fingerprint,
    ) -> impl Future<Output = Result<PrivateKey, StoreError>> + Send;
}

/// The store a service runs on.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    /// Keys and state in a directory (one replica).
    Dir(DirStore),
    /// Keys in Secrets Manager, state in the coordination table (many
    /// replicas).
    Shared {
        /// The private keys.
        keys: SecretsKeys,
        /// The table that holds the state.
        table: Coordination,
    },
}

impl Store {
    /// Where a key is kept, for people: a file or a secret's name.
    pub(crate) fn location(&self, fingerprint: &Fingerprint) -> String {
        match self {
            Self::Dir(dir) => dir.key_path(fingerprint).display().to_string(),
            Self::Shared { keys, .. } => {
                format!("Secrets Manager secret {}", keys.secret_name(fingerprint))
            }
        }
    }

    /// The coordination table, when replicas share this store.
    pub(crate) fn coordination(&self) -> Option<&Coordination> {
        match self {
            Self::Dir(_) => None,
            Self::Shared { table, .. } => Some(table),
        }
    }
}

impl From<CoordinationError> for StoreError {
    fn from(e: CoordinationError) -> Self {
        match e {
            CoordinationError::LeaseLost(message) => Self::LeaseLost(message),
            CoordinationError::Conflict { stored, ours } => Self::Conflict { stored, ours },
            other => Self::Io(other.to_string()),
        }
    }
}

impl KeyStore for Store {
    async fn load_state(&self) -> Result<RotationState, StoreError> {
        match self {
            Self::Dir(dir) => dir.load_state().await,
            Self::Shared { table, .. } => match table.load_state().await? {
                None => Ok(RotationState::default()),
                Some(json) => serde_json::from_str(&json).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "the rotation state in table {} is unreadable ({e}); left as it is",
                        table.table()
                    ))
                }),
            },
        }
    }

    async fn save_state(&self, state: &RotationState) -> Result<(), StoreError> {
        match self {
            Self::Dir(dir) => dir.save_state(state).await,
            Self::Shared { table, .. } => {
                let json =
                    serde_json::to_string(state).map_err(|e| StoreError::Io(e.to_string()))?;
                Ok(table.save_state(state.version, &json).await?)
            }
        }
    }

    async fn put_key(&self, key: &PrivateKey) -> Result<(), StoreError> {
        match self {
            Self::Dir(dir) => dir.put_key(key).await,
            Self::Shared { keys, .. } => keys.put_key(key).await,
        }
    }

    async fn get_key(&self, fingerprint: &Fingerprint) -> Result<PrivateKey, StoreError> {
        match self {
            Self::Dir(dir) => dir.get_key(fingerprint).await,
            Self::Shared { keys, .. } => keys.get_key(fingerprint).await,
        }
    }
}
