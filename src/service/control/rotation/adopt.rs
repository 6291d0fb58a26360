//! Keys from outside a rotation: the first key of a fresh store (the key
//! file, generated in local mode), and `keys import` of an existing key.

use super::report::ImportedKey;
use super::steps::{self, Record, now, put_once};
use super::{FirstKey, RotationError, shared, transitions};
use crate::PrivateKey;
use crate::service::control::ivs::Ivs;
use crate::service::control::store::{KeyState, Store, check_private};

/// Gives a store without an active key one: a key imported but not
/// activated (an interrupted first start, or `keys import`), else the first
/// key file (generated there when allowed). `held` is how many key pairs IVS
/// holds. Returns whether a key was generated.
pub(super) async fn first_active_key(
    ivs: &Ivs,
    record: &mut Record<'_>,
    first: Option<&FirstKey>,
    held: usize,
) -> Result<bool, RotationError> {
    let mut generated = false;
    let fingerprint = match transitions::resumable(&record.state) {
        Some(fp) => fp,
        None => {
            let first =
                first.ok_or_else(|| RotationError::NoKey("the key store is empty".into()))?;
            let (key, made) = first_key(first)?;
            generated = made;
            put_once(record.store(), &key).await?;
            let fp = key.fingerprint().to_string();
            record
                .state
                .keys
                .push(transitions::new_record(&fp, KeyState::Generated, now()));
            fp
        }
    };
    record.save().await?;
    steps::import_if_needed(ivs, record, &fingerprint, held).await?;
    record
        .step(|s| transitions::set_state(s, &fingerprint, KeyState::Active, now()))
        .await?;
    Ok(generated)
}

/// The first key of a fresh store: the file if there is one and it
/// exists, else generated (and written to the file, if there is one) when
/// allowed. With Secrets Manager there is no file: the key is made in
/// memory and goes straight to the secret.
fn first_key(first: &FirstKey) -> Result<(PrivateKey, bool), RotationError> {
    if let Some(path) = &first.path
        && std::fs::symlink_metadata(path).is_ok()
    {
        check_private(path, false)?;
        let key = PrivateKey::read_file(path).map_err(|e| RotationError::NoKey(e.to_string()))?;
        return Ok((key, false));
    }
    if !first.generate {
        return Err(RotationError::NoKey(match &first.path {
            Some(path) => format!(
                "{} does not exist and the key store is empty; make one with `ivs-playback-auth keys generate --out {}` or adopt one with `keys import --private-key FILE` (or set keys.generate_if_missing)",
                path.display(),
                path.parent().map_or(".".into(), |p| p.display().to_string())
            ),
            None => "the key store is empty; adopt a key with `ivs-playback-auth keys import --private-key FILE --config FILE`, or set keys.generate_if_missing = true".into(),
        }));
    }
    let key = PrivateKey::generate().map_err(|e| RotationError::NoKey(e.to_string()))?;
    if let Some(path) = &first.path {
        key.write_pem_file(path)
            .map_err(|e| RotationError::NoKey(e.to_string()))?;
        let public = path.with_file_name("playback-key.pub.pem");
        if !public.exists() {
            key.public_key()
                .write_pem_file(&public)
                .map_err(|e| RotationError::NoKey(e.to_string()))?;
        }
    }
    Ok((key, true))
}

/// Adopts an existing private key: stores it, finds its IVS key pair by
/// fingerprint or imports it, and records it; it becomes active if the store
/// has no active key, else the next rotation activates it.
pub(crate) async fn import_key(
    ivs: &Ivs,
    store: &Store,
    key: &PrivateKey,
) -> Result<ImportedKey, RotationError> {
    // Replicas change the state only under the rotation lease.
    let Some(table) = store.coordination() else {
        return import_key_held(ivs, store, key).await;
    };
    shared::wait_for_lease(table).await?;
    let out = import_key_held(ivs, store, key).await;
    table.release_lease().await;
    out
}

async fn import_key_held(
    ivs: &Ivs,
    store: &Store,
    key: &PrivateKey,
) -> Result<ImportedKey, RotationError> {
    let mut record = Record::load(store).await?;
    if record.state.store_id.is_empty() {
        record.state.store_id = uuid::Uuid::new_v4().to_string();
    }
    let fingerprint = key.fingerprint().to_string();
    if let Some(k) = record.state.find(&fingerprint)
        && k.state != KeyState::Deleted
    {
        return Err(RotationError::Check(format!(
            "key {fingerprint} is already in the store ({:?})",
            k.state
        )));
    }
    let pairs = steps::reconcile(ivs, &mut record).await?;
    put_once(store, key).await?;
    let existing = pairs.iter().find(|p| p.fingerprint == fingerprint);
    let now = now();
    record
        .step(|s| {
            s.keys.retain(|k| k.fingerprint != fingerprint);
            s.keys.push(transitions::new_record(
                &fingerprint,
                KeyState::Generated,
                now,
            ));
            if let Some(pair) = existing {
                transitions::imported(s, &fingerprint, &pair.arn, now);
            }
        })
        .await?;
    let arn = steps::import_if_needed(ivs, &mut record, &fingerprint, pairs.len()).await?;
    let to = if record.state.active().is_none() {
        KeyState::Active
    } else {
        KeyState::Imported
    };
    record
        .step(|s| transitions::set_state(s, &fingerprint, to, now))
        .await?;
    tracing::info!(target: "audit", action = "key_adopted", fingerprint, arn = %arn, state = ?to);
    Ok(ImportedKey {
        fingerprint,
        ivs_arn: arn,
        adopted: existing.is_some(),
        state: to,
    })
}
