//! The directory store: `DIR/FINGERPRINT.pem` (PKCS#8, 0600, never
//! overwritten) and `DIR/rotation-state.json` (replaced atomically:
//! temporary file, fsync, rename, fsync of the directory). One replica's
//! disk: replicas that share keys use Secrets Manager and the coordination
//! table instead.

use std::path::{Path, PathBuf};

use super::{KeyStore, RotationState, StoreError};
use crate::fsutil::write_replacing;
use crate::{Fingerprint, PrivateKey};

/// The directory store.
#[derive(Debug, Clone)]
pub(crate) struct DirStore {
    dir: PathBuf,
}

const STATE_FILE: &str = "rotation-state.json";

impl DirStore {
    /// A store in `dir` (created 0700 if missing).
    pub(crate) fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder
            .create(&dir)
            .map_err(|e| StoreError::Io(format!("{}: {e}", dir.display())))?;
        check_private(&dir, true)?;
        // Every private key here, not only those read now: a copy of the
        // active key (`playback-key.pem`) or a retiring key left readable
        // exposes the same secret.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".pem") && !name.ends_with(".pub.pem") {
                    check_private(&entry.path(), false)?;
                }
            }
        }
        let store = Self { dir };
        store.remove_stale_temporaries();
        Ok(store)
    }

    /// Removes the temporary files of writes that a crash (kill -9, a full
    /// disk) interrupted: `.NAME.UUID.tmp`, older than a minute so that a
    /// write still under way in another process (`keys rotate`) is left be.
    fn remove_stale_temporaries(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= STALE_TEMPORARY);
            if name.starts_with('.') && name.ends_with(".tmp") && stale {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => {
                        tracing::info!(file = %entry.path().display(), "removed a temporary file left by an interrupted write")
                    }
                    Err(e) => {
                        tracing::warn!(file = %entry.path().display(), error = %e, "could not remove a stale temporary file")
                    }
                }
            }
        }
    }

    /// Key files (`FINGERPRINT.pem`) that no record names: moved into
    /// `orphaned/` (never deleted: a key is never lost), so that a write
    /// whose state save failed leaves nothing behind that restarts pile up.
    pub(crate) fn quarantine_unrecorded(&self, state: &RotationState) -> Vec<PathBuf> {
        let known: std::collections::HashSet<String> = state
            .keys
            .iter()
            .map(|k| format!("{}.pem", k.fingerprint.replace(':', "")))
            .collect();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut moved = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_key_file = name.len() == 36
                && name.ends_with(".pem")
                && name[..32].bytes().all(|b| b.is_ascii_hexdigit());
            if !is_key_file || known.contains(&name) {
                continue;
            }
            let quarantine = self.dir.join(ORPHANED_DIR);
            let target = quarantine.join(&name);
            let moved_ok = std::fs::create_dir_all(&quarantine)
                .and_then(|()| std::fs::rename(entry.path(), &target));
            match moved_ok {
                Ok(()) => {
                    tracing::warn!(file = %target.display(), "a key file no record names was moved aside");
                    moved.push(target);
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "could not move an unrecorded key file aside")
                }
            }
        }
        moved
    }

    /// The file of a stored key.
    pub(crate) fn key_path(&self, fingerprint: &Fingerprint) -> PathBuf {
        self.dir
            .join(format!("{}.pem", fingerprint.to_string().replace(':', "")))
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    fn read_state(path: &Path) -> Result<RotationState, StoreError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::Corrupt(format!(
                    "{}: unreadable rotation state ({e}); left as it is",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RotationState::default()),
            Err(e) => Err(StoreError::Io(format!("{}: {e}", path.display()))),
        }
    }
}

impl KeyStore for DirStore {
    async fn load_state(&self) -> Result<RotationState, StoreError> {
        let path = self.state_path();
        tokio::task::spawn_blocking(move || Self::read_state(&path))
            .await
            .map_err(|e| StoreError::Io(e.to_string()))?
    }

    async fn save_state(&self, state: &RotationState) -> Result<(), StoreError> {
        let path = self.state_path();
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            let stored = Self::read_state(&path)?;
            if stored.version + 1 != state.version {
                return Err(StoreError::Conflict {
                    stored: stored.version,
                    ours: state.version.saturating_sub(1),
                });
            }
            let bytes =
                serde_json::to_vec_pretty(&state).map_err(|e| StoreError::Io(e.to_string()))?;
            write_replacing(&path, &bytes, 0o600).map_err(|e| StoreError::Io(e.to_string()))
        })
        .await
        .map_err(|e| StoreError::Io(e.to_string()))?
    }

    async fn put_key(&self, key: &PrivateKey) -> Result<(), StoreError> {
        // A few hundred bytes written once per rotation: done in place rather
        // than moving the key to a blocking thread.
        let path = self.key_path(key.fingerprint());
        let fingerprint = key.fingerprint().to_string();
        match key.write_pem_file(&path) {
            Ok(()) => Ok(()),
            Err(crate::Error::KeyFileExists { .. }) => Err(StoreError::Exists(fingerprint)),
            Err(e) => Err(StoreError::Io(e.to_string())),
        }
    }

    async fn get_key(&self, fingerprint: &Fingerprint) -> Result<PrivateKey, StoreError> {
        let path = self.key_path(fingerprint);
        if std::fs::symlink_metadata(&path).is_err() {
            return Err(StoreError::Missing(fingerprint.to_string()));
        }
        check_private(&path, false)?;
        let key = PrivateKey::read_file(&path).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if key.fingerprint() != fingerprint {
            return Err(StoreError::Corrupt(format!(
                "{} holds key {}, not {fingerprint}",
                path.display(),
                key.fingerprint()
            )));
        }
        Ok(key)
    }
}

/// How old a temporary file must be to count as left by a crash.
const STALE_TEMPORARY: std::time::Duration = std::time::Duration::from_secs(60);
/// Where key files that no record names are moved.
const ORPHANED_DIR: &str = "orphaned";

/// Refuses a key file or key directory that others could read or that is a
/// symbolic link (whose target's permissions are not this store's to keep):
/// a private key is used only from a file that only its owner reads.
pub(crate) fn check_private(path: &Path, is_dir: bool) -> Result<(), StoreError> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
    if meta.file_type().is_symlink() {
        return Err(StoreError::Exposed(format!(
            "{} is a symbolic link; keep the key {} itself there (not a link), mode {}",
            path.display(),
            if is_dir { "directory" } else { "file" },
            if is_dir { "0700" } else { "0600" }
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        // A key file: its owner's alone. The directory: nobody else may add,
        // replace or remove a key in it; that others may list the names
        // (fingerprints, which IVS shows anyway) is tolerated, so that a
        // directory git or a umask of 022 made works, with a warning.
        let forbidden = if is_dir { 0o022 } else { 0o077 };
        if mode & forbidden != 0 {
            let fix = if is_dir { "chmod 700" } else { "chmod 600" };
            let what = if is_dir {
                "writable by group or others"
            } else {
                "readable by group or others"
            };
            return Err(StoreError::Exposed(format!(
                "{} is {what} (mode {mode:o}); a private key must be its owner's alone: {fix} {}",
                path.display(),
                path.display()
            )));
        }
        if is_dir && mode & 0o077 != 0 {
            tracing::warn!(dir = %path.display(), mode = format!("{mode:o}"), "the key directory can be listed by group or others (the key files are 0600); chmod 700 it");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::control::store::{KeyRecord, KeyState};

    fn record(fp: &Fingerprint, state: KeyState) -> KeyRecord {
        KeyRecord {
            fingerprint: fp.to_string(),
            state,
            ivs_arn: None,
            max_exp: None,
            retired_at: None,
            delete_after: None,
            updated_at: 1,
        }
    }

    #[tokio::test]
    async fn keys_are_stored_0600_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path().join("keys")).unwrap();
        let key = PrivateKey::generate().unwrap();
        store.put_key(&key).await.unwrap();
        assert!(matches!(
            store.put_key(&key).await,
            Err(StoreError::Exists(_))
        ));
        let back = store.get_key(key.fingerprint()).await.unwrap();
        assert_eq!(back.fingerprint(), key.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(store.key_path(key.fingerprint()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = PrivateKey::generate().unwrap();
        assert!(matches!(
            store.get_key(other.fingerprint()).await,
            Err(StoreError::Missing(_))
        ));
    }

    #[tokio::test]
    async fn state_saves_are_versioned_and_a_stale_save_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        let key = PrivateKey::generate().unwrap();
        let mut state = store.load_state().await.unwrap();
        assert_eq!(state, RotationState::default());
        state.version = 1;
        state
            .keys
            .push(record(key.fingerprint(), KeyState::Generated));
        store.save_state(&state).await.unwrap();
        let mut next = store.load_state().await.unwrap();
        assert_eq!(next, state);
        next.version = 2;
        next.keys[0].state = KeyState::Active;
        store.save_state(&next).await.unwrap();
        assert_eq!(
            store
                .load_state()
                .await
                .unwrap()
                .active()
                .unwrap()
                .fingerprint,
            key.fingerprint().to_string()
        );
        // A replica still at version 1 cannot overwrite version 2.
        let mut stale = state.clone();
        stale.version = 2;
        assert!(matches!(
            store.save_state(&stale).await,
            Err(StoreError::Conflict { stored: 2, .. })
        ));
    }

    #[tokio::test]
    async fn a_corrupt_state_is_reported_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        std::fs::write(store.state_path(), b"{\"version\": 3, \"keys\": [").unwrap();
        assert!(matches!(
            store.load_state().await,
            Err(StoreError::Corrupt(_))
        ));
        let mut state = RotationState {
            version: 4,
            ..RotationState::default()
        };
        assert!(store.save_state(&state).await.is_err());
        state.version = 1;
        assert!(store.save_state(&state).await.is_err());
        assert_eq!(
            std::fs::read(store.state_path()).unwrap(),
            b"{\"version\": 3, \"keys\": ["
        );
    }
}
