//! What the key operations answer: the admin API and the CLI print these
//! as JSON.

use serde::Serialize;

use crate::service::control::ivs::KeyPairInfo;
use crate::service::control::store::{KeyRecord, KeyState, LastRotation};

/// A completed rotation.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Rotated {
    /// The key that signs now.
    pub(crate) active: String,
    /// The key it replaced, now retiring.
    pub(crate) retired: Option<String>,
    /// When the retired key will be deleted (Unix seconds).
    pub(crate) retired_key_deleted_after: Option<u64>,
    /// The new key's IVS ARN.
    pub(crate) ivs_arn: String,
    /// From the call to the new key signing.
    pub(crate) took_ms: u64,
    /// This request found a rotation under way on another replica (or just
    /// finished there, after the request arrived) and answers with it
    /// instead of rotating again.
    pub(crate) joined: bool,
}

impl Rotated {
    /// The answer of a request that joined `last`.
    pub(crate) fn joined(last: &LastRotation) -> Self {
        Self {
            active: last.active.clone(),
            retired: last.retired.clone(),
            retired_key_deleted_after: last.retired_key_deleted_after,
            ivs_arn: last.ivs_arn.clone(),
            took_ms: last.finished_at_ms.saturating_sub(last.started_at_ms),
            joined: true,
        }
    }
}

/// A revoked key.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Revoked {
    /// The key deleted from IVS.
    pub(crate) fingerprint: String,
    /// Unexpired tokens it had signed, as counted since this process started.
    pub(crate) unexpired_tokens_killed: u64,
    /// The latest `exp` it signed, if it signed since this process started.
    pub(crate) tokens_valid_until: Option<u64>,
    /// Whether IVS still held it.
    pub(crate) ivs_deleted: bool,
}

/// Local and IVS state side by side.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeysView {
    /// The store's record, with signing figures of keys in use.
    pub(crate) local: Vec<LocalKey>,
    /// What IVS holds in the region.
    pub(crate) ivs: Vec<IvsKey>,
    /// IVS's quota.
    pub(crate) limit: usize,
}

/// One key of the store's record.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LocalKey {
    /// The record.
    #[serde(flatten)]
    pub(crate) record: KeyRecord,
    /// Whether IVS holds it now.
    pub(crate) in_ivs: bool,
    /// Unexpired tokens it signed (since this process started).
    pub(crate) unexpired_tokens: u64,
}

/// One key pair IVS holds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IvsKey {
    /// What IVS says.
    #[serde(flatten)]
    pub(crate) pair: KeyPairInfo,
    /// Tagged with this store's id.
    pub(crate) ours: bool,
}

/// What `keys import` did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ImportedKey {
    /// The key.
    pub(crate) fingerprint: String,
    /// Its IVS key pair.
    pub(crate) ivs_arn: String,
    /// IVS already held it (made in the console, say) and it was adopted.
    pub(crate) adopted: bool,
    /// Where it is now: `active` when the store had no active key, else
    /// `imported` (the next rotation activates it).
    pub(crate) state: KeyState,
}
