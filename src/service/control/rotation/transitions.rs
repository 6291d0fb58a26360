//! The rotation state machine's transitions: pure functions of the recorded
//! state and the time, with no IVS, store or clock of their own. The steps
//! (`steps.rs`) call them, record the result, then act.

use std::collections::HashSet;
use std::time::Duration;

use crate::service::control::coordination::Heartbeat;
use crate::service::control::ivs::KeyPairInfo;
use crate::service::control::store::{KeyRecord, KeyState, RotationState};

/// A fresh record of a key.
pub(super) fn new_record(fingerprint: &str, state: KeyState, now: u64) -> KeyRecord {
    KeyRecord {
        fingerprint: fingerprint.to_owned(),
        state,
        ivs_arn: None,
        max_exp: None,
        retired_at: None,
        delete_after: None,
        updated_at: now,
    }
}

/// Moves a key to `to`.
pub(super) fn set_state(state: &mut RotationState, fingerprint: &str, to: KeyState, now: u64) {
    if let Some(k) = state.keys.iter_mut().find(|k| k.fingerprint == fingerprint) {
        k.state = to;
        k.updated_at = now;
    }
}

/// Records the IVS key-pair ARN of an imported key.
pub(super) fn imported(state: &mut RotationState, fingerprint: &str, arn: &str, now: u64) {
    if let Some(k) = state.keys.iter_mut().find(|k| k.fingerprint == fingerprint) {
        k.ivs_arn = Some(arn.to_owned());
    }
    set_state(state, fingerprint, KeyState::Imported, now);
}

/// The key an interrupted rotation (or start, or `keys import`) left
/// between `generated` and `active`: the newest such key.
pub(super) fn resumable(state: &RotationState) -> Option<String> {
    state
        .keys
        .iter()
        .rev()
        .find(|k| matches!(k.state, KeyState::Generated | KeyState::Imported))
        .map(|k| k.fingerprint.clone())
}

/// Whether rotating to `next` (`None`: a key yet to be generated) needs a
/// free key-pair slot in IVS: a new key, or one IVS does not hold yet.
pub(super) fn needs_slot(state: &RotationState, next: Option<&str>) -> bool {
    next.is_none_or(|fp| state.find(fp).is_some_and(|k| k.ivs_arn.is_none()))
}

/// `next` signs from `now`; every other active key retires.
pub(super) fn activate(state: &mut RotationState, next: &str, now: u64) {
    for k in &mut state.keys {
        if k.state == KeyState::Active && k.fingerprint != next {
            k.state = KeyState::Retiring;
            k.retired_at = Some(now);
            k.updated_at = now;
        }
    }
    set_state(state, next, KeyState::Active, now);
}

/// When a key that stopped signing at `now` may be deleted: after the
/// latest `exp` it signed and after the longest TTL from now (a token signed
/// just before the switch), plus the skew margin. Records both on the key
/// and returns the time.
pub(super) fn schedule_deletion(
    state: &mut RotationState,
    retired: &str,
    max_exp_signed: u64,
    now: u64,
    longest_ttl: Duration,
    skew: Duration,
) -> u64 {
    let after = max_exp_signed.max(now + longest_ttl.as_secs()) + skew.as_secs();
    if let Some(k) = state.keys.iter_mut().find(|k| k.fingerprint == retired) {
        k.max_exp = Some(max_exp_signed);
        k.delete_after = Some(after);
    }
    after
}

/// Retiring keys whose deletion time was never recorded (a run stopped
/// between retiring and scheduling) get one: all their tokens expire within
/// the longest TTL from now. Returns the keys dated.
pub(super) fn date_undated(
    state: &mut RotationState,
    now: u64,
    longest_ttl: Duration,
    skew: Duration,
) -> Vec<String> {
    let mut dated = Vec::new();
    for k in &mut state.keys {
        if k.state == KeyState::Retiring && k.delete_after.is_none() {
            k.delete_after = Some(now + longest_ttl.as_secs() + skew.as_secs());
            dated.push(k.fingerprint.clone());
        }
    }
    dated
}

/// Retiring keys whose tokens have all expired at `now`, oldest first.
pub(super) fn due_for_deletion(state: &RotationState, now: u64) -> Vec<String> {
    state
        .keys
        .iter()
        .filter(|k| k.state == KeyState::Retiring && k.delete_after.is_some_and(|t| t <= now))
        .map(|k| k.fingerprint.clone())
        .collect()
}

/// Whether every replica is done with `fingerprint` at `now`: none alive
/// signs with it, and every token any replica signed with it has expired
/// (plus the skew). A replica whose heartbeat expired while it signed with
/// the key may have signed until then: its tokens last the longest TTL
/// beyond. With one replica (no heartbeats) this holds trivially, and the
/// key's own `delete_after` decides.
pub(super) fn replicas_done_with(
    fingerprint: &str,
    beats: &[Heartbeat],
    now: u64,
    longest_ttl: Duration,
    skew: Duration,
) -> bool {
    beats.iter().all(|b| {
        let signed_until = b
            .signed
            .get(fingerprint)
            .map_or(0, |exp| exp + skew.as_secs());
        if signed_until > now {
            return false;
        }
        if b.active != fingerprint {
            return true;
        }
        // Alive and signing with it, or dead too recently.
        b.expires_at + longest_ttl.as_secs() + skew.as_secs() <= now
    })
}

/// Retiring keys that may be deleted at `now`: their own time has come and
/// every replica is done with them, oldest first.
pub(super) fn deletable(
    state: &RotationState,
    beats: &[Heartbeat],
    now: u64,
    longest_ttl: Duration,
    skew: Duration,
) -> Vec<String> {
    due_for_deletion(state, now)
        .into_iter()
        .filter(|fp| replicas_done_with(fp, beats, now, longest_ttl, skew))
        .collect()
}

/// Why no slot can be freed: each key pair IVS holds and when (if ever) it
/// becomes deletable.
pub(super) fn quota_detail(state: &RotationState, pairs: &[KeyPairInfo], now: u64) -> String {
    pairs
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
        .join(", ")
}

/// A key pair IVS holds that reconciliation deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Deletion {
    /// Its ARN.
    pub(super) arn: String,
    /// Its fingerprint.
    pub(super) fingerprint: String,
    /// Why, for the audit line.
    pub(super) reason: &'static str,
}

/// What reconciling the record with IVS's key pairs decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Reconciled {
    /// Key pairs to delete from IVS.
    pub(super) delete: Vec<Deletion>,
    /// Key pairs of ours adopted into the record (fingerprint, ARN).
    pub(super) adopted: Vec<(String, String)>,
    /// Keys in use that IVS lost: they must be imported again before they
    /// sign.
    pub(super) lost: Vec<String>,
}

/// Brings the record in line with the key pairs IVS holds (see the rotation
/// module's docs); `have_key` says whether the store holds a key's private
/// half. The deletions it returns are the caller's to make.
pub(super) fn reconcile(
    state: &mut RotationState,
    pairs: &[KeyPairInfo],
    store_tag: &str,
    have_key: &dyn Fn(&str) -> bool,
    now: u64,
) -> Reconciled {
    let mut out = Reconciled::default();
    let mut gone = HashSet::new();
    for pair in pairs {
        let ours = pair.tags.get(store_tag) == Some(&state.store_id);
        match state
            .keys
            .iter_mut()
            .find(|k| k.fingerprint == pair.fingerprint)
        {
            Some(k) if k.state == KeyState::Deleted => {
                // A deletion recorded but not done (or an import of a
                // deleted key): finish it.
                out.delete.push(Deletion {
                    arn: pair.arn.clone(),
                    fingerprint: pair.fingerprint.clone(),
                    reason: "recorded deleted",
                });
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
            None if ours && have_key(&pair.fingerprint) => {
                let mut rec = new_record(&pair.fingerprint, KeyState::Imported, now);
                rec.ivs_arn = Some(pair.arn.clone());
                state.keys.push(rec);
                out.adopted
                    .push((pair.fingerprint.clone(), pair.arn.clone()));
            }
            None if ours => {
                out.delete.push(Deletion {
                    arn: pair.arn.clone(),
                    fingerprint: pair.fingerprint.clone(),
                    reason: "ours, orphaned: no private key in the store",
                });
                gone.insert(pair.arn.clone());
            }
            None => {}
        }
    }
    for k in &mut state.keys {
        let held = pairs
            .iter()
            .any(|p| p.fingerprint == k.fingerprint && !gone.contains(&p.arn));
        if held {
            continue;
        }
        match k.state {
            // IVS lost a key we use: it must be imported again before it
            // signs (the ARN is forgotten so the import happens).
            KeyState::Imported | KeyState::Active if k.ivs_arn.is_some() => {
                k.ivs_arn = None;
                if k.state == KeyState::Imported {
                    k.state = KeyState::Generated;
                }
                k.updated_at = now;
                out.lost.push(k.fingerprint.clone());
            }
            KeyState::Retiring => {
                k.state = KeyState::Deleted;
                k.updated_at = now;
            }
            _ => {}
        }
    }
    out
}

/// Active keys IVS does not hold: imported again before anything signs.
pub(super) fn unheld_active(state: &RotationState) -> Vec<String> {
    state
        .keys
        .iter()
        .filter(|k| k.state == KeyState::Active && k.ivs_arn.is_none())
        .map(|k| k.fingerprint.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const TTL: Duration = Duration::from_secs(300);
    const SKEW: Duration = Duration::from_secs(60);
    const TAG: &str = "store-tag";

    fn fp(n: u8) -> String {
        format!("{n:02x}{}", ":00".repeat(15))
    }

    fn pair(n: u8, ours: Option<&str>) -> KeyPairInfo {
        KeyPairInfo {
            arn: format!("arn:aws:ivs:us-west-2:123456789012:playback-key/{n}"),
            name: format!("k{n}"),
            fingerprint: fp(n),
            tags: ours
                .map(|id| BTreeMap::from([(TAG.to_owned(), id.to_owned())]))
                .unwrap_or_default(),
        }
    }

    fn state_with(keys: &[(u8, KeyState, bool)]) -> RotationState {
        RotationState {
            version: 1,
            store_id: "me".into(),
            keys: keys
                .iter()
                .map(|(n, s, held)| {
                    let mut r = new_record(&fp(*n), *s, 0);
                    if *held {
                        r.ivs_arn = Some(pair(*n, None).arn);
                    }
                    r
                })
                .collect(),
            ..RotationState::default()
        }
    }

    #[test]
    fn a_rotation_walks_generated_imported_active_retiring_deleted() {
        let mut s = state_with(&[(1, KeyState::Active, true)]);
        assert_eq!(resumable(&s), None);
        assert!(needs_slot(&s, None));
        s.keys.push(new_record(&fp(2), KeyState::Generated, 10));
        assert_eq!(resumable(&s), Some(fp(2)));
        assert!(needs_slot(&s, Some(&fp(2))));
        imported(&mut s, &fp(2), "arn-2", 11);
        assert!(!needs_slot(&s, Some(&fp(2))));
        assert_eq!(s.find(&fp(2)).unwrap().state, KeyState::Imported);

        activate(&mut s, &fp(2), 100);
        assert_eq!(s.active().unwrap().fingerprint, fp(2));
        let old = s.find(&fp(1)).unwrap();
        assert_eq!((old.state, old.retired_at), (KeyState::Retiring, Some(100)));
        assert_eq!(resumable(&s), None);

        // The old key's last token: an exp later than now + TTL wins.
        let after = schedule_deletion(&mut s, &fp(1), 500, 100, TTL, SKEW);
        assert_eq!(after, 500 + 60);
        let after = schedule_deletion(&mut s, &fp(1), 0, 100, TTL, SKEW);
        assert_eq!(after, 100 + 300 + 60);
        assert!(due_for_deletion(&s, after - 1).is_empty());
        assert_eq!(due_for_deletion(&s, after), vec![fp(1)]);
        set_state(&mut s, &fp(1), KeyState::Deleted, after);
        assert!(due_for_deletion(&s, after + 1000).is_empty());
        assert_eq!(s.active().unwrap().fingerprint, fp(2));
    }

    #[test]
    fn an_undated_retiring_key_is_dated_a_full_ttl_from_now() {
        let mut s = state_with(&[(1, KeyState::Retiring, true), (2, KeyState::Active, true)]);
        assert!(due_for_deletion(&s, u64::MAX).is_empty());
        assert_eq!(date_undated(&mut s, 1_000, TTL, SKEW), vec![fp(1)]);
        assert_eq!(s.find(&fp(1)).unwrap().delete_after, Some(1_360));
        assert!(date_undated(&mut s, 2_000, TTL, SKEW).is_empty());
    }

    #[test]
    fn reconciling_adopts_ours_deletes_orphans_and_never_touches_foreign_keys() {
        let mut s = state_with(&[
            (1, KeyState::Active, true),
            (2, KeyState::Deleted, true),
            (3, KeyState::Generated, false),
        ]);
        let pairs = [
            pair(1, Some("me")),
            pair(2, Some("me")),
            pair(3, Some("me")),
            pair(4, Some("me")),
            pair(5, Some("me")),
            pair(6, None),
            pair(7, Some("someone-else")),
        ];
        let have = |f: &str| f == fp(4);
        let out = reconcile(&mut s, &pairs, TAG, &have, 50);
        let deleted: Vec<&str> = out.delete.iter().map(|d| d.fingerprint.as_str()).collect();
        assert_eq!(deleted, [fp(2), fp(5)]);
        assert_eq!(out.adopted, vec![(fp(4), pairs[3].arn.clone())]);
        assert!(out.lost.is_empty());
        // The generated key IVS holds (an import whose answer was lost).
        assert_eq!(s.find(&fp(3)).unwrap().state, KeyState::Imported);
        assert_eq!(s.find(&fp(4)).unwrap().state, KeyState::Imported);
        assert!(s.find(&fp(6)).is_none() && s.find(&fp(7)).is_none());
    }

    #[test]
    fn keys_ivs_lost_are_imported_again_or_recorded_deleted() {
        let mut s = state_with(&[
            (1, KeyState::Active, true),
            (2, KeyState::Imported, true),
            (3, KeyState::Retiring, true),
        ]);
        let out = reconcile(&mut s, &[], TAG, &|_| false, 9);
        assert_eq!(out.lost, vec![fp(1), fp(2)]);
        assert_eq!(s.find(&fp(1)).unwrap().state, KeyState::Active);
        assert_eq!(s.find(&fp(2)).unwrap().state, KeyState::Generated);
        assert_eq!(s.find(&fp(3)).unwrap().state, KeyState::Deleted);
        assert_eq!(unheld_active(&s), vec![fp(1)]);
    }

    fn beat(active: u8, signed: &[(u8, u64)], expires_at: u64) -> Heartbeat {
        Heartbeat {
            replica: format!("r{active}"),
            active: fp(active),
            signed: signed.iter().map(|(n, e)| (fp(*n), *e)).collect(),
            expires_at,
        }
    }

    #[test]
    fn a_key_is_deletable_only_when_no_replica_signs_or_signed_with_it_lately() {
        let mut s = state_with(&[(1, KeyState::Retiring, true), (2, KeyState::Active, true)]);
        s.keys[0].delete_after = Some(1_000);
        let (ttl, skew) = (TTL, SKEW);
        // No heartbeats (one replica): the key's own time decides.
        assert!(deletable(&s, &[], 999, ttl, skew).is_empty());
        assert_eq!(deletable(&s, &[], 1_000, ttl, skew), vec![fp(1)]);
        // A live replica still signing with it: never.
        let slow = beat(1, &[(1, 990)], 5_000);
        assert!(deletable(&s, std::slice::from_ref(&slow), 4_999, ttl, skew).is_empty());
        // It moved on, but signed with it until 990 + 300: after that + skew.
        let moved = beat(2, &[(1, 1_290), (2, 1_300)], 5_000);
        assert!(deletable(&s, std::slice::from_ref(&moved), 1_349, ttl, skew).is_empty());
        assert_eq!(
            deletable(&s, std::slice::from_ref(&moved), 1_350, ttl, skew),
            vec![fp(1)]
        );
        // A replica that died (heartbeat expired at 2 000) while signing with
        // it: its last tokens last the longest TTL beyond, plus the skew.
        let dead = beat(1, &[(1, 1_100)], 2_000);
        assert!(deletable(&s, &[moved.clone(), dead.clone()], 2_359, ttl, skew).is_empty());
        assert_eq!(deletable(&s, &[moved, dead], 2_360, ttl, skew), vec![fp(1)]);
    }

    #[test]
    fn the_quota_detail_says_when_each_slot_frees_up() {
        let mut s = state_with(&[(1, KeyState::Active, true), (2, KeyState::Retiring, true)]);
        s.keys[1].delete_after = Some(130);
        let detail = quota_detail(&s, &[pair(1, None), pair(2, None), pair(9, None)], 100);
        assert!(detail.contains(&format!("{} (active)", fp(1))), "{detail}");
        assert!(detail.contains("in 30 s"), "{detail}");
        assert!(detail.contains("not ours: never touched"), "{detail}");
    }
}
