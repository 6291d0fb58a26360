//! What the local IVS holds, per account and region, and its optional state
//! file.
//!
//! The state file is written whole and atomically after every change
//! (temporary file, fsync, rename); at start-up a file that does not parse is
//! reported and left alone, never replaced by an empty state.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fsutil::write_replacing;

const FORMAT: u32 = 1;

/// Everything, for every account and region.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    format: u32,
    /// Orders resources by creation, for stable pagination.
    pub(crate) next_seq: u64,
    /// Keyed `ACCOUNT/REGION`.
    pub(crate) regions: BTreeMap<String, RegionState>,
}

impl State {
    pub(crate) fn empty() -> Self {
        Self {
            format: FORMAT,
            next_seq: 1,
            regions: BTreeMap::new(),
        }
    }

    pub(crate) fn region(&self, scope: &Scope) -> Option<&RegionState> {
        self.regions.get(&scope.key())
    }

    pub(crate) fn region_mut(&mut self, scope: &Scope) -> &mut RegionState {
        self.regions.entry(scope.key()).or_default()
    }

    pub(crate) fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}

/// An account and region: where a request's resources live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scope {
    pub(crate) account: String,
    pub(crate) region: String,
}

impl Scope {
    /// The key of this scope's region in `State::regions`.
    pub(crate) fn key(&self) -> String {
        format!("{}/{}", self.account, self.region)
    }

    pub(crate) fn arn(&self, resource: &str, id: &str) -> String {
        format!(
            "arn:aws:ivs:{}:{}:{resource}/{id}",
            self.region, self.account
        )
    }
}

/// The resources of one account in one region.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct RegionState {
    /// By channel id.
    pub(crate) channels: BTreeMap<String, Channel>,
    /// By stream-key id.
    pub(crate) stream_keys: BTreeMap<String, StreamKey>,
    /// By key-pair id.
    pub(crate) key_pairs: BTreeMap<String, KeyPair>,
    /// By recording-configuration id. (`default`: state files written before
    /// recording configurations existed still load.)
    #[serde(default)]
    pub(crate) recording_configurations: BTreeMap<String, RecordingConfiguration>,
    /// By playback-restriction-policy id; the edge reads them from here.
    #[serde(default)]
    pub(crate) playback_restriction_policies: BTreeMap<String, PlaybackRestrictionPolicy>,
    /// Stream sessions, live and ended, by stream id (`st-...`). A channel
    /// is live while one of its sessions has no end time.
    #[serde(default)]
    pub(crate) stream_sessions: BTreeMap<String, StreamSession>,
    /// The highest revoked session version, by channel ARN and viewer id.
    pub(crate) revocations: BTreeMap<String, BTreeMap<String, i64>>,
    /// Single-use UUIDs already used, with the `exp` of their token (kept
    /// until then).
    pub(crate) used_single_use: BTreeMap<String, u64>,
}

/// A channel: its document as GetChannel returns it, without tags.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Channel {
    pub(crate) seq: u64,
    pub(crate) doc: Map<String, Value>,
    pub(crate) tags: BTreeMap<String, String>,
}

impl Channel {
    pub(crate) fn arn(&self) -> &str {
        self.doc
            .get("arn")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub(crate) fn authorized(&self) -> bool {
        self.doc
            .get("authorized")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// A recording configuration: its document as GetRecordingConfiguration
/// returns it once settled, without tags.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RecordingConfiguration {
    pub(crate) seq: u64,
    pub(crate) doc: Map<String, Value>,
    pub(crate) tags: BTreeMap<String, String>,
}

impl RecordingConfiguration {
    pub(crate) fn arn(&self) -> &str {
        self.doc
            .get("arn")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// A playback restriction policy, typed: the edge enforces it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PlaybackRestrictionPolicy {
    pub(crate) seq: u64,
    pub(crate) arn: String,
    pub(crate) name: String,
    /// ISO 3166-1 alpha-2 codes; empty: every country.
    pub(crate) allowed_countries: Vec<String>,
    /// Origins as the `Origin` header carries them; empty: every origin.
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) enable_strict_origin_enforcement: bool,
    pub(crate) tags: BTreeMap<String, String>,
}

/// One broadcast on a channel, from its start to its end, with what the
/// channel and its recording configuration were when it started.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StreamSession {
    pub(crate) seq: u64,
    pub(crate) stream_id: String,
    pub(crate) channel_arn: String,
    /// Milliseconds since the Unix epoch.
    pub(crate) start_ms: u64,
    pub(crate) end_ms: Option<u64>,
    /// `HEALTHY`, `STARVING` or `UNKNOWN`.
    pub(crate) health: String,
    /// The channel's GetChannel document at the start.
    pub(crate) channel: Value,
    /// The channel's recording configuration at the start, if it had one.
    pub(crate) recording_configuration: Option<Value>,
    /// `StreamEvent`s, oldest first.
    pub(crate) events: Vec<Value>,
}

impl RegionState {
    /// The live session of a channel, if it is broadcasting.
    pub(crate) fn live_session(&self, channel_arn: &str) -> Option<&StreamSession> {
        self.stream_sessions
            .values()
            .find(|s| s.end_ms.is_none() && s.channel_arn == channel_arn)
    }
}

/// A stream key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StreamKey {
    pub(crate) seq: u64,
    pub(crate) arn: String,
    pub(crate) value: String,
    pub(crate) channel_arn: String,
    pub(crate) tags: BTreeMap<String, String>,
}

/// An imported playback key pair (its public half).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct KeyPair {
    pub(crate) seq: u64,
    pub(crate) arn: String,
    pub(crate) name: String,
    pub(crate) fingerprint: String,
    pub(crate) public_key_pem: String,
    pub(crate) tags: BTreeMap<String, String>,
}

/// A random IVS-style resource id: 12 letters and digits.
pub(crate) fn new_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in uuid::Uuid::new_v4().as_bytes() {
            // 62 * 4 = 248: rejecting bytes from 248 keeps the choice uniform.
            if *b < 248 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(*b % 62)]));
            }
        }
    }
    out
}

/// Where the state lives between runs.
#[derive(Clone, Debug)]
pub(crate) struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The saved state; an empty one if the file does not exist yet. A file
    /// that cannot be read or parsed is an error: it is never replaced.
    pub(crate) fn load(&self) -> Result<State, String> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::empty()),
            Err(e) => return Err(format!("{}: {e}", self.path.display())),
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{}: the state file is corrupt or torn ({e}); it was left as it is: move it away to start empty",
                self.path.display()
            )
        })?;
        if state.format != FORMAT {
            return Err(format!(
                "{}: state format {} is not the supported format {FORMAT}",
                self.path.display(),
                state.format
            ));
        }
        Ok(state)
    }

    /// Saves the state atomically (mode 0600: it holds stream keys).
    pub(crate) fn save(&self, state: &State) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
        write_replacing(&self.path, &bytes, 0o600).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_alphanumeric_and_distinct() {
        let a = new_id(12);
        assert_eq!(a.len(), 12);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, new_id(12));
    }

    #[test]
    fn state_survives_a_save_and_a_corrupt_file_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("state.json"));
        let mut state = file.load().unwrap();
        let scope = Scope {
            account: "123456789012".into(),
            region: "us-west-2".into(),
        };
        let seq = state.take_seq();
        state
            .region_mut(&scope)
            .used_single_use
            .insert("u".into(), seq);
        file.save(&state).unwrap();
        let back = file.load().unwrap();
        assert_eq!(back.region(&scope).unwrap().used_single_use["u"], 1);

        std::fs::write(&file.path, b"{\"format\":1,\"next_se").unwrap();
        let err = file.load().unwrap_err();
        assert!(err.contains("corrupt or torn"), "{err}");
        assert_eq!(
            std::fs::read(&file.path).unwrap(),
            b"{\"format\":1,\"next_se"
        );
    }
}
