//! Key rotation and revocation, end to end: the real binary (`serve` in aws
//! mode) talks HTTP to a local IVS started by the test, which also checks
//! every token played. Token lifetimes are seconds long so retired keys
//! expire within the test.

// Helpers outside #[test] functions unwrap too: a set-up failure should stop
// the test loudly.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::local_ivs::{TestIvs, aws_env};
use common::service::{TestService, sha256_hex};
use ivs_playback_auth::service::control::rotation::CRASH_HOOK_ENV;
use ivs_playback_auth::{PrivateKey, Verifier};
use serde_json::{Value, json};

const ADMIN: &str = "rotation-admin-token-0123456789";
const API_KEY: &str = "rotation-backend-key-0123456789";

struct Rig {
    ivs: TestIvs,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Rig {
    async fn new(rotation_extra: &str) -> Self {
        let ivs = TestIvs::start().await;
        let client = ivs.client("us-west-2");
        client
            .create_channel()
            .name("stage")
            .authorized(true)
            .send()
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[server]
listen = "127.0.0.1:0"
[ivs]
mode = "aws"
region = "us-west-2"
endpoint_url = "{url}"
[keys]
dir = "{keys}"
generate_if_missing = true
[tokens]
default_ttl_seconds = 3
share_bucket_seconds = 1
[anonymous]
channels = ["stage"]
ttl_seconds = 3
rate_per_ip_per_second = 100000
[[api_keys]]
name = "backend"
sha256 = "{api}"
channels = ["*"]
max_ttl_seconds = 3
rate_per_second = 100000
[viewer_ids]
secret = "rotation-test-viewer-secret-0123456789"
[admin]
listen = "127.0.0.1:0"
token_sha256 = "{admin}"
[rotation]
skew_seconds = 1
sweep_seconds = 1
canary_channel = "stage"
{rotation_extra}
"#,
                url = ivs.url(),
                keys = dir.path().join("keys").display(),
                api = sha256_hex(API_KEY),
                admin = sha256_hex(ADMIN),
            ),
        )
        .unwrap();
        Self { ivs, dir, config }
    }

    fn env(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut env = aws_env();
        env.extend_from_slice(extra);
        env
    }

    async fn serve(&self) -> TestService {
        self.serve_with(&[]).await
    }

    async fn serve_with(&self, extra: &[(&'static str, &'static str)]) -> TestService {
        TestService::start_with_env(
            tempfile::tempdir().unwrap(),
            &self.config,
            &Self::env(extra),
        )
        .await
        .with_admin_token(ADMIN)
    }

    fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    fn state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.keys_dir().join("rotation-state.json")).unwrap())
            .unwrap()
    }

    /// Fingerprints of the key pairs IVS holds.
    async fn ivs_fingerprints(&self) -> Vec<String> {
        self.ivs.fingerprints().await
    }

    /// The invariants after any run: at most 3 keys in IVS, the active key
    /// among them, every one of ours recorded in the state.
    async fn check_invariants(&self) {
        let held = self.ivs_fingerprints().await;
        assert!(held.len() <= 3, "IVS holds {held:?}");
        let state = self.state();
        let active: Vec<&Value> = state["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["state"] == "active")
            .collect();
        assert_eq!(active.len(), 1, "{state:#}");
        let fp = active[0]["fingerprint"].as_str().unwrap();
        assert!(
            held.iter().any(|h| h == fp),
            "active {fp} not in IVS {held:?}"
        );
    }
}

fn key_of(dir: &Path, fingerprint: &str) -> PrivateKey {
    PrivateKey::read_file(dir.join(format!("{}.pem", fingerprint.replace(':', "")))).unwrap()
}

/// Mints a viewer token and a shared token for the channel and plays both
/// against the local IVS.
async fn mint_and_play(s: &TestService, viewer: &str) -> Result<(), String> {
    s.mint_and_play(API_KEY, "stage", viewer).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_under_load_fails_no_play_and_the_old_key_is_deleted_after_its_tokens() {
    let rig = Rig::new("").await;
    let s = Arc::new(rig.serve().await);
    let first = rig.state()["keys"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(rig.ivs_fingerprints().await, vec![first.clone()]);

    // A client mints and plays continuously through the rotation.
    let stop = Arc::new(AtomicBool::new(false));
    let (plays, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (s, stop, plays, failures) = (s.clone(), stop.clone(), plays.clone(), failures.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match mint_and_play(&s, &format!("viewer-{}", n % 7)).await {
                    Ok(()) => plays.fetch_add(2, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })
    };
    // The load is flowing before the rotation starts.
    common::poll_until(
        Duration::from_secs(30),
        "the load to complete 5 mint-and-play rounds (or fail one)",
        async || plays.load(Ordering::Relaxed) >= 10 || failures.load(Ordering::Relaxed) > 0,
    )
    .await;

    // Rotate, and time it from the admin call to a minted token signed by
    // the new key.
    let started = Instant::now();
    let (status, rotated) = s.rotate().await;
    assert_eq!(status, 200, "{rotated}");
    let new_fp = rotated["active"].as_str().unwrap().to_owned();
    assert_ne!(new_fp, first);
    assert_eq!(rotated["retired"], first.as_str());
    let verifier = Verifier::new([key_of(&rig.keys_dir(), &new_fp).public_key()]);
    let (status, answer) = s
        .token(
            Some(API_KEY),
            json!({"channel": "stage", "viewer_id": "timer"}),
        )
        .await;
    assert_eq!(status, 200);
    verifier
        .verify(answer["token"].as_str().unwrap())
        .expect("the first token after the rotation is signed by the new key");
    let end_to_end = started.elapsed();
    eprintln!(
        "rotation end to end (admin call -> new key signing): {} ms (rotation itself {} ms)",
        end_to_end.as_millis(),
        rotated["took_ms"]
    );
    let mut held = rig.ivs_fingerprints().await;
    held.sort();
    let mut both = vec![first.clone(), new_fp.clone()];
    both.sort();
    assert_eq!(
        held, both,
        "the retiring key stays while its tokens are valid"
    );

    // GET /admin/v1/keys shows both sides.
    let (status, view) = s.keys().await;
    assert_eq!(status, 200);
    assert_eq!(view["limit"], 3);
    let states: Vec<(String, String)> = view["local"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["fingerprint"].as_str().unwrap().to_owned(),
                k["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&(first.clone(), "retiring".into())),
        "{view:#}"
    );
    assert!(
        states.contains(&(new_fp.clone(), "active".into())),
        "{view:#}"
    );
    assert!(
        view["ivs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["ours"] == true),
        "{view:#}"
    );

    // Plays go on after the switch, while the old key retires (or is
    // deleted): 5 more whole rounds, however long the host takes for them.
    let at_switch = plays.load(Ordering::Relaxed);
    common::poll_until(
        Duration::from_secs(30),
        "5 more mint-and-play rounds after the switch (or a failure)",
        async || {
            plays.load(Ordering::Relaxed) >= at_switch + 10 || failures.load(Ordering::Relaxed) > 0
        },
    )
    .await;
    // The old key goes once its last token expired (3 s TTL + 1 s skew + sweep).
    common::poll_for(
        Duration::from_secs(30),
        "the retired key to be deleted from IVS",
        async || {
            let held = rig.ivs_fingerprints().await;
            if held == vec![new_fp.clone()] {
                Ok(())
            } else {
                Err(format!("IVS holds {held:?}"))
            }
        },
    )
    .await;
    // Plays go on once the old key is gone: 5 more whole rounds, so at least
    // 4 that started after the deletion.
    let at_deletion = plays.load(Ordering::Relaxed);
    common::poll_until(
        Duration::from_secs(30),
        "5 more mint-and-play rounds after the deletion (or a failure)",
        async || {
            plays.load(Ordering::Relaxed) >= at_deletion + 10
                || failures.load(Ordering::Relaxed) > 0
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let (plays, failures) = (
        plays.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    eprintln!("plays during the rotation: {plays}, failures: {failures}");
    // The polls above waited for 5 rounds before the rotation, 5 after the
    // switch and 5 after the deletion (each stops early on a failure): none
    // may have failed.
    assert_eq!(failures, 0);
    // Audited, and no key or token in the log.
    {
        for action in ["key_imported", "key_rotated", "key_deleted"] {
            s.logs_when(&format!("{action} audit line"), |logs| {
                logs.iter()
                    .any(|l| l.contains(&format!("\"action\":\"{action}\"")))
            })
            .await;
        }
        let logs = s.settled_logs().await;
        assert!(
            !logs
                .iter()
                .any(|l| l.contains("PRIVATE KEY") || l.contains("eyJ"))
        );
    }
    let deleted = &rig.state()["keys"][0];
    assert_eq!(deleted["state"], "deleted");
    assert!(
        deleted["delete_after"].as_u64().unwrap() >= deleted["retired_at"].as_u64().unwrap() + 4
    );
    rig.check_invariants().await;
}

#[tokio::test]
async fn rotations_are_idempotent_by_key_and_a_restart_keeps_the_rotated_key() {
    let rig = Rig::new("").await;
    let s = rig.serve().await;
    let a = s.rotate_with_idempotency_key("deploy-42").await;
    assert_eq!(a.status, 200);
    assert!(a.headers.get("idempotent-replay").is_none());
    let a: Value = a.json();
    let b = s.rotate_with_idempotency_key("deploy-42").await;
    assert_eq!(b.status, 200);
    assert_eq!(b.headers["idempotent-replay"], "true");
    let b: Value = b.json();
    assert_eq!(a, b);
    assert_eq!(
        rig.ivs_fingerprints().await.len(),
        2,
        "one rotation, not two"
    );
    let active = a["active"].as_str().unwrap().to_owned();

    // A bad idempotency key is a 400 naming the header.
    let bad = s.rotate_with_idempotency_key(&"x".repeat(200)).await;
    assert_eq!(bad.status, 400);
    let bad: Value = bad.json();
    assert_eq!(bad["error"]["field"], "Idempotency-Key");

    // Restarted, the service signs with the rotated key.
    s.kill().await;
    let s = rig.serve().await;
    let (status, answer) = s
        .token(Some(API_KEY), json!({"channel": "stage", "viewer_id": "v"}))
        .await;
    assert_eq!(status, 200);
    Verifier::new([key_of(&rig.keys_dir(), &active).public_key()])
        .verify(answer["token"].as_str().unwrap())
        .unwrap();
    rig.check_invariants().await;
}

#[tokio::test]
async fn revoking_a_key_kills_its_tokens_at_once_and_says_how_many() {
    let rig = Rig::new("").await;
    let s = rig.serve().await;
    let old = rig.state()["keys"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut old_urls = Vec::new();
    for i in 0..5 {
        let (status, a) = s
            .token(
                Some(API_KEY),
                json!({"channel": "stage", "viewer_id": format!("v{i}")}),
            )
            .await;
        assert_eq!(status, 200);
        old_urls.push(a["playback_url"].as_str().unwrap().to_owned());
    }
    let (_, shared_before) = s.token(None, json!({"channel": "stage"})).await;
    let (status, rotated) = s.rotate().await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["active"].as_str().unwrap().to_owned();

    // The active key cannot be revoked; unknown and malformed are told apart.
    let (status, e) = s.revoke_key(&new).await;
    assert_eq!(
        (status, e["error"]["code"].as_str().unwrap()),
        (409, "active_key")
    );
    let unknown = "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff";
    let (status, e) = s.revoke_key(unknown).await;
    assert_eq!(
        (status, e["error"]["code"].as_str().unwrap()),
        (404, "unknown_key")
    );
    let (status, e) = s.revoke_key("not-a-fingerprint").await;
    assert_eq!(
        (status, e["error"]["field"].as_str().unwrap()),
        (400, "fingerprint")
    );

    for url in &old_urls {
        assert_eq!(s.play(url, None).await.0, 200);
    }
    let (status, revoked) = s.revoke_key(&old.replace(':', "")).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["fingerprint"], old.as_str());
    assert_eq!(revoked["ivs_deleted"], true);
    // 5 viewer tokens and the shared one.
    assert_eq!(revoked["unexpired_tokens_killed"], 6, "{revoked}");
    for url in &old_urls {
        assert_eq!(
            s.play(url, None).await.0,
            403,
            "a revoked key's token still plays"
        );
    }
    assert_eq!(rig.ivs_fingerprints().await, vec![new.clone()]);
    // The shared token of the revoked key is not served again.
    let (_, shared_after) = s.token(None, json!({"channel": "stage"})).await;
    assert_ne!(shared_after["token"], shared_before["token"]);
    assert_eq!(s.play_minted(&shared_after, None).await.0, 200);
    // Revoking again: the record says deleted, nothing is done twice.
    let (status, again) = s.revoke_key(&old).await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "already_deleted", "{again}");
    rig.check_invariants().await;
}

#[tokio::test]
async fn a_region_full_of_foreign_keys_is_refused_clearly_and_they_are_never_touched() {
    let rig = Rig::new("").await;
    let client = rig.ivs.client("us-west-2");
    // Someone else's key pairs, made in the console.
    let mut foreign = Vec::new();
    for i in 0..2 {
        let key = PrivateKey::generate().unwrap();
        client
            .import_playback_key_pair()
            .name(format!("console-{i}"))
            .public_key_material(key.public_key().to_pem())
            .send()
            .await
            .unwrap();
        foreign.push(key.fingerprint().to_string());
    }
    let s = rig.serve().await;
    assert_eq!(rig.ivs_fingerprints().await.len(), 3);
    let (status, e) = s.rotate().await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["code"], "key_quota_full");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("3 of 3"), "{message}");
    for fp in &foreign {
        assert!(
            message.contains(fp.as_str()) && message.contains("not ours"),
            "{message}"
        );
    }
    // Signing goes on with the active key; the foreign keys are still there.
    mint_and_play(&s, "v").await.unwrap();
    let held = rig.ivs_fingerprints().await;
    assert!(foreign.iter().all(|f| held.contains(f)));
    let (_, view) = s.keys().await;
    assert_eq!(
        view["ivs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["ours"] == false)
            .count(),
        2
    );
    s.kill().await;

    // A third foreign key: a fresh store cannot even import its first key.
    let rig2 = Rig::new("").await;
    let client = rig2.ivs.client("us-west-2");
    for i in 0..3 {
        let key = PrivateKey::generate().unwrap();
        client
            .import_playback_key_pair()
            .name(format!("console-{i}"))
            .public_key_material(key.public_key().to_pem())
            .send()
            .await
            .unwrap();
    }
    let out = TestService::serve_until_exit(&rig2.config, &Rig::env(&[])).await;
    assert_eq!(out.status.code(), Some(2), "start-up failures exit 2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3 of 3 key pairs"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The faults the local IVS can inject, one call each.
const FAULTS: [&str; 5] = [
    r#""error":"ThrottlingException""#,
    r#""error":"InternalServerException""#,
    r#""error":"ServiceUnavailable""#,
    r#""delayMs":300"#,
    r#""drop":true"#,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_at_every_step_of_a_rotation_are_retried_or_refused_without_harm() {
    let rig = Rig::new("").await;
    // No sweep in this test (its first run, at start, finds nothing to do):
    // it deletes expired retired keys on its own and would meet the faults
    // meant for a rotation's or a revocation's deletion.
    let s = rig
        .serve_with(&[("IVS_AUTH__ROTATION__SWEEP_SECONDS", "3600")])
        .await;
    assert_eq!(rig.ivs.pending_faults().await, 0);

    // The steps of every rotation: reconcile (list, get), import, check (get).
    for op in [
        "ListPlaybackKeyPairs",
        "GetPlaybackKeyPair",
        "ImportPlaybackKeyPair",
    ] {
        for fault in FAULTS {
            rig.ivs
                .fault(&format!(r#"{{"operation":"{op}","count":1,{fault}}}"#))
                .await;
            let (status, rotated) = s.rotate().await;
            assert_eq!(status, 200, "{op} {fault}: {rotated}");
            assert_eq!(
                rig.ivs.pending_faults().await,
                0,
                "{op} {fault}: the rotation never met it"
            );
            // A revocation's deletion, faulted the same way; it frees the
            // slot for the next round.
            let retired = rotated["retired"].as_str().unwrap();
            rig.ivs
                .fault(&format!(
                    r#"{{"operation":"DeletePlaybackKeyPair","count":1,{fault}}}"#
                ))
                .await;
            let (status, revoked) = s.revoke_key(retired).await;
            assert_eq!(status, 200, "revoke after {op} {fault}: {revoked}");
            assert_eq!(revoked["ivs_deleted"], true, "{revoked}");
            assert_eq!(
                rig.ivs.pending_faults().await,
                0,
                "revoke after {op} {fault}: the deletion never met it"
            );
            mint_and_play(&s, "v")
                .await
                .unwrap_or_else(|e| panic!("{op} {fault}: {e}"));
            rig.check_invariants().await;
        }
    }

    // A fault that outlasts the retries: the rotation fails with a clear
    // 503, signing goes on with the current key, and the next try finishes
    // the same rotation (no second new key).
    let before = rig.state()["keys"].as_array().unwrap().len();
    // The service makes 5 attempts per call: all 5 faults are met by them.
    rig.ivs
        .fault(
            r#"{"operation":"ImportPlaybackKeyPair","count":5,"error":"InternalServerException"}"#,
        )
        .await;
    let (status, e) = s.rotate().await;
    assert_eq!(
        (status, e["error"]["code"].as_str().unwrap()),
        (503, "ivs_unavailable"),
        "{e}"
    );
    assert_eq!(rig.ivs.pending_faults().await, 0);
    mint_and_play(&s, "v").await.unwrap();
    let (status, rotated) = s.rotate().await;
    assert_eq!(status, 200, "the rotation did not resume: {rotated}");
    assert_eq!(
        rig.state()["keys"].as_array().unwrap().len(),
        before + 1,
        "resumed, not restarted"
    );
    rig.check_invariants().await;

    // A rotation's own deletion: with 3 key pairs held, it deletes the
    // retired key whose tokens expired to free a slot.
    for fault in FAULTS {
        while rig.ivs_fingerprints().await.len() < 3 {
            let (status, rotated) = s.rotate().await;
            assert_eq!(status, 200, "{rotated}");
        }
        let due = common::poll_for(
            Duration::from_secs(30),
            "the oldest retired key's tokens to expire",
            async || {
                let state = rig.state();
                let oldest = state["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|k| k["state"] == "retiring")
                    .min_by_key(|k| k["delete_after"].as_u64().unwrap())
                    .cloned()
                    .unwrap();
                if oldest["delete_after"].as_u64().unwrap() <= common::unix_seconds_now() {
                    Ok(oldest["fingerprint"].as_str().unwrap().to_owned())
                } else {
                    Err(format!("{oldest}"))
                }
            },
        )
        .await;
        rig.ivs
            .fault(&format!(
                r#"{{"operation":"DeletePlaybackKeyPair","count":1,{fault}}}"#
            ))
            .await;
        let (status, rotated) = s.rotate().await;
        assert_eq!(status, 200, "{fault}: {rotated}");
        assert_eq!(
            rig.ivs.pending_faults().await,
            0,
            "{fault}: the rotation's deletion never met it"
        );
        let held = rig.ivs_fingerprints().await;
        assert!(!held.contains(&due), "{fault}: {due} still held: {held:?}");
        assert_eq!(held.len(), 3, "{held:?}");
        mint_and_play(&s, "v")
            .await
            .unwrap_or_else(|e| panic!("{fault}: {e}"));
        rig.check_invariants().await;
    }
}

/// kill -9 (an abort from the test hook) right after each step, restart,
/// and the store and IVS converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_step_converges_on_restart() {
    for step in ["generated", "imported", "activated"] {
        let rig = Rig::new("").await;
        let s = rig.serve_with(&[(CRASH_HOOK_ENV, step)]).await;
        let first = rig.state()["keys"][0]["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned();
        let crashed = s.try_rotate().await;
        assert!(crashed.is_err(), "{step}: the hook did not abort");
        s.kill().await;
        let s = rig.serve().await;
        rig.check_invariants().await;
        mint_and_play(&s, "v")
            .await
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        // The next rotation finishes (or follows) the interrupted one.
        let (status, rotated) = s.rotate().await;
        assert_eq!(status, 200, "{step}: {rotated}");
        rig.check_invariants().await;
        mint_and_play(&s, "v")
            .await
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        let keys = rig.state()["keys"].as_array().unwrap().clone();
        let made = keys.len();
        match step {
            // The interrupted rotation is resumed: its key becomes active.
            "generated" | "imported" => {
                assert_eq!(made, 2, "{step}: {keys:#?}");
                assert_eq!(rotated["retired"], first.as_str());
            }
            // It had finished: this is a second rotation.
            _ => assert_eq!(made, 3, "{step}: {keys:#?}"),
        }
        assert!(rig.ivs_fingerprints().await.len() <= 3);
    }

    // A crash between recording a deletion and doing it.
    let rig = Rig::new("").await;
    let s = rig.serve_with(&[(CRASH_HOOK_ENV, "deleting")]).await;
    let (status, rotated) = s.rotate().await;
    assert_eq!(status, 200);
    let retired = rotated["retired"].as_str().unwrap().to_owned();
    let crashed = s.try_revoke_key(&retired).await;
    assert!(crashed.is_err(), "deleting: the hook did not abort");
    s.kill().await;
    assert_eq!(
        rig.ivs_fingerprints().await.len(),
        2,
        "the crash came before the delete"
    );
    let s = rig.serve().await;
    assert!(
        !rig.ivs_fingerprints().await.contains(&retired),
        "the recorded deletion was finished"
    );
    rig.check_invariants().await;
    mint_and_play(&s, "v").await.unwrap();
}

#[tokio::test]
async fn an_orphaned_import_of_ours_is_adopted_or_deleted_and_a_lost_active_key_is_imported_again()
{
    let rig = Rig::new("").await;
    let s = rig.serve().await;
    let store_id = rig.state()["store_id"].as_str().unwrap().to_owned();
    let active = rig.state()["keys"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    s.kill().await;
    let client = rig.ivs.client("us-west-2");
    // An import tagged as ours whose private key the store holds (the state
    // file missed it) and one whose private key is gone.
    let held = PrivateKey::generate().unwrap();
    held.write_pem_file(rig.keys_dir().join(format!(
        "{}.pem",
        held.fingerprint().to_string().replace(':', "")
    )))
    .unwrap();
    let lost = PrivateKey::generate().unwrap();
    for key in [&held, &lost] {
        client
            .import_playback_key_pair()
            .public_key_material(key.public_key().to_pem())
            .tags("ivs-playback-auth:store", &store_id)
            .send()
            .await
            .unwrap();
    }
    // And someone deleted our active key in the console.
    let list = client.list_playback_key_pairs().send().await.unwrap();
    for k in list.key_pairs() {
        let got = client
            .get_playback_key_pair()
            .arn(k.arn().unwrap())
            .send()
            .await
            .unwrap();
        if got.key_pair().unwrap().fingerprint() == Some(active.as_str()) {
            client
                .delete_playback_key_pair()
                .arn(k.arn().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    let s = rig.serve().await;
    let held_now = rig.ivs_fingerprints().await;
    assert!(
        held_now.contains(&held.fingerprint().to_string()),
        "adopted: {held_now:?}"
    );
    assert!(
        !held_now.contains(&lost.fingerprint().to_string()),
        "orphan deleted: {held_now:?}"
    );
    assert!(
        held_now.contains(&active),
        "active key imported again: {held_now:?}"
    );
    mint_and_play(&s, "v").await.unwrap();
    // The adopted key is the next rotation's key: no new key is generated.
    let (status, rotated) = s.rotate().await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["active"], held.fingerprint().to_string().as_str());
    rig.check_invariants().await;
}

#[tokio::test]
async fn revoked_viewers_lose_their_sessions_and_get_no_token_until_the_block_ends() {
    let rig = Rig::new("").await;
    let s = rig.serve().await;
    let (_, alice) = s
        .token(
            Some(API_KEY),
            json!({"channel": "stage", "viewer_id": "alice"}),
        )
        .await;
    let (_, bob) = s
        .token(
            Some(API_KEY),
            json!({"channel": "stage", "viewer_id": "bob"}),
        )
        .await;
    let alice_url = alice["playback_url"].as_str().unwrap();
    assert_eq!(s.play(alice_url, None).await.0, 200);
    let before_revoking = common::unix_seconds_now();
    let (status, answer) = s
        .revoke_viewers(json!({
            "sessions": [
                {"channel": "stage", "viewer_id": "alice"},
                {"channel": "no-such-channel", "viewer_id": "alice"},
                {"channel": "stage"},
            ],
            "block_seconds": 2,
        }))
        .await;
    let after_revoking = common::unix_seconds_now();
    assert_eq!(status, 200, "{answer}");
    // The block is the 2 s asked for, from the second of the revocation.
    let blocked_until = answer["blocked_until"].as_u64().unwrap();
    assert!(
        (before_revoking + 2..=after_revoking + 2).contains(&blocked_until),
        "{answer}"
    );
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results[0]["revoked"], true, "{answer}");
    assert_eq!(results[1]["error"]["code"], "channel_not_found");
    assert_eq!(results[2]["error"]["field"], "viewer_id");
    // Her session ends; Bob's does not; she gets no token during the block.
    assert_eq!(s.play(alice_url, None).await.0, 403);
    assert_eq!(s.play_minted(&bob, None).await.0, 200);
    let (status, e) = s
        .token(
            Some(API_KEY),
            json!({"channel": "stage", "viewer_id": "alice"}),
        )
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str().unwrap()),
        (403, "viewer_revoked")
    );
    // After it, her new token carries a newer session version and plays.
    // Until then she is refused, and only then: a refusal asked for once
    // the block's second has come fails the test, and so does a token
    // answered before it.
    let again = common::poll_for(
        Duration::from_secs(30),
        "the service to mint alice's token again once her block ended",
        async || {
            let asked = common::unix_seconds_now();
            let (status, answer) = s
                .token(
                    Some(API_KEY),
                    json!({"channel": "stage", "viewer_id": "alice"}),
                )
                .await;
            let answered = common::unix_seconds_now();
            if status == 200 {
                assert!(
                    answered >= blocked_until,
                    "a token at {answered}, before the block's end at {blocked_until}"
                );
                return Ok(answer);
            }
            assert_eq!(
                (status, answer["error"]["code"].as_str()),
                (403, Some("viewer_revoked")),
                "{answer}"
            );
            assert!(
                asked < blocked_until,
                "still refused at {asked}, the block ended at {blocked_until}: {answer}"
            );
            Err(format!("{status}: {answer}"))
        },
    )
    .await;
    assert_eq!(s.play_minted(&again, None).await.0, 200);

    // Many at once: batched by 20 at IVS's 2 calls/s, one result each.
    let sessions: Vec<Value> = (0..45)
        .map(|i| json!({"channel": "stage", "viewer_id": format!("fan-{i}")}))
        .collect();
    let started = Instant::now();
    let (status, answer) = s.revoke_viewers(json!({"sessions": sessions})).await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 45);
    assert!(results.iter().all(|r| r["revoked"] == true), "{answer}");
    // 3 calls at 2/s: the third waits for the quota.
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    // Malformed requests are 400s.
    for bad in [
        json!({"sessions": []}),
        json!({"sessions": "x"}),
        json!({"nope": 1}),
    ] {
        let (status, e) = s.revoke_viewers(bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {e}");
    }
}

#[tokio::test]
async fn no_admin_route_lets_an_unauthenticated_request_through() {
    let rig = Rig::new("").await;
    let s = rig.serve().await;
    let fp = rig.state()["keys"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let routes = [
        (reqwest::Method::GET, "/admin/v1/keys".to_owned()),
        (reqwest::Method::POST, "/admin/v1/keys/rotate".to_owned()),
        (reqwest::Method::POST, format!("/admin/v1/keys/{fp}/revoke")),
        (reqwest::Method::POST, "/admin/v1/viewers/revoke".to_owned()),
        (
            reqwest::Method::POST,
            "/admin/v1/channels/refresh".to_owned(),
        ),
    ];
    // Every attempt is refused: the first ten failures from this address
    // are checked (401), the rest throttled (429) without a check.
    let (mut checked, mut throttled) = (0, 0);
    for (method, path) in &routes {
        for auth in [
            None,
            Some("Bearer wrong".to_owned()),
            Some(format!("Basic {ADMIN}")),
            Some(format!("Bearer {ADMIN}x")),
            Some("Bearer ".to_owned()),
        ] {
            let r = s
                .admin_call(method.clone(), path)
                .authorization(auth.as_deref())
                .body(r#"{"sessions":[{"channel":"stage","viewer_id":"x"}]}"#)
                .send()
                .await;
            match r.status.as_u16() {
                401 => checked += 1,
                429 => throttled += 1,
                other => panic!("{method} {path}: {other} {}", r.text),
            }
        }
    }
    assert_eq!((checked, throttled), (10, 15));
    // Nothing happened.
    assert_eq!(rig.ivs_fingerprints().await, vec![fp]);
    assert_eq!(rig.state()["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_schedule_rotates_on_its_own() {
    let rig = Rig::new("interval_seconds = 2").await;
    let s = rig.serve().await;
    let first = rig.state()["keys"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    common::poll_until(
        Duration::from_secs(10),
        "a scheduled rotation (another active key)",
        async || {
            let state = rig.state();
            let active = state["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["state"] == "active")
                .unwrap()["fingerprint"]
                .as_str()
                .unwrap()
                .to_owned();
            active != first
        },
    )
    .await;
    mint_and_play(&s, "v").await.unwrap();
    rig.check_invariants().await;
}

async fn cli(rig: &Rig, args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ivs-playback-auth"))
        .args(args)
        .args(["--config", rig.config.to_str().unwrap()])
        .envs(Rig::env(&[]))
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_from_the_command_line_is_picked_up_by_the_running_service() {
    let rig = Rig::new("").await;
    let s = rig.serve().await;
    let (code, out, err) = cli(&rig, &["keys", "rotate"]).await;
    assert_eq!(code, Some(0), "{err}");
    let rotated: Value = serde_json::from_str(out.trim()).unwrap();
    let new = rotated["active"].as_str().unwrap().to_owned();
    let verifier = Verifier::new([key_of(&rig.keys_dir(), &new).public_key()]);
    // The service notices the store changed at its next sweep (1 s here).
    common::poll_until(
        Duration::from_secs(5),
        &format!("the service to sign with the new key {new}"),
        async || {
            let (_, a) = s
                .token(Some(API_KEY), json!({"channel": "stage", "viewer_id": "v"}))
                .await;
            verifier.verify(a["token"].as_str().unwrap()).is_ok()
        },
    )
    .await;
    mint_and_play(&s, "v").await.unwrap();
    rig.check_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_import_reads_a_key_in_any_layout_openssl_reads() {
    // One long base64 line (as a secret store hands it back) with explicit
    // curve parameters and a compressed point: the fingerprint IVS gets is
    // the one openssl computed for the corpus (tests/data/keys/MANIFEST).
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/keys");
    let manifest = std::fs::read_to_string(corpus.join("MANIFEST")).unwrap();
    let want = manifest
        .lines()
        .find_map(|l| l.strip_prefix("sec1.pem\tprivate\treads\t"))
        .unwrap()
        .to_owned();
    for file in [
        "pkcs8-explicit-one-line.pem",
        "sec1-explicit-compressed.pem",
    ] {
        let rig = Rig::new("").await;
        let path = corpus.join(file);
        let (code, out, err) = cli(
            &rig,
            &["keys", "import", "--private-key", path.to_str().unwrap()],
        )
        .await;
        assert_eq!(code, Some(0), "{file}: {err}");
        let imported: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(imported["fingerprint"], want.as_str(), "{file}");
        assert_eq!(rig.ivs_fingerprints().await, vec![want.clone()], "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_import_adopts_a_console_key_by_fingerprint_and_serve_signs_with_it() {
    let rig = Rig::new("").await;
    let console = PrivateKey::generate().unwrap();
    let file = rig.dir.path().join("console.pem");
    console.write_pem_file(&file).unwrap();
    rig.ivs
        .client("us-west-2")
        .import_playback_key_pair()
        .name("made-in-the-console")
        .public_key_material(console.public_key().to_pem())
        .send()
        .await
        .unwrap();
    let (code, out, err) = cli(
        &rig,
        &["keys", "import", "--private-key", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    let imported: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(imported["adopted"], true);
    assert_eq!(imported["state"], "active");
    assert_eq!(
        imported["fingerprint"],
        console.fingerprint().to_string().as_str()
    );
    assert_eq!(
        rig.ivs_fingerprints().await.len(),
        1,
        "adopted, not imported twice"
    );
    // Twice is refused, naming the key.
    let (code, _, err) = cli(
        &rig,
        &["keys", "import", "--private-key", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, Some(2));
    assert!(err.contains("already in the store"), "{err}");
    // A missing file is named.
    let (code, _, err) = cli(
        &rig,
        &["keys", "import", "--private-key", "/nonexistent.pem"],
    )
    .await;
    assert_eq!(code, Some(2));
    assert!(err.contains("--private-key: /nonexistent.pem"), "{err}");

    let s = rig.serve().await;
    let (_, a) = s
        .token(Some(API_KEY), json!({"channel": "stage", "viewer_id": "v"}))
        .await;
    Verifier::new([console.public_key()])
        .verify(a["token"].as_str().unwrap())
        .unwrap();
    mint_and_play(&s, "v").await.unwrap();
    rig.check_invariants().await;
}

#[tokio::test]
async fn key_commands_refuse_the_embedded_local_ivs_clearly() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ivs-playback-auth"))
        .args(["keys", "rotate"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ivs.mode") && err.contains("/admin/v1/keys/rotate"),
        "{err}"
    );
}

#[tokio::test]
async fn an_active_key_deleted_behind_the_services_back_is_imported_again() {
    let rig = Rig::new("reconcile_seconds = 1").await;
    let s = rig.serve().await;
    let active = rig.state()["keys"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = rig.ivs.client("us-west-2");
    let arn = rig.state()["keys"][0]["ivs_arn"]
        .as_str()
        .unwrap()
        .to_owned();
    client
        .delete_playback_key_pair()
        .arn(&arn)
        .send()
        .await
        .unwrap();
    assert!(rig.ivs_fingerprints().await.is_empty());
    // Imported again, and recorded under its new ARN.
    common::poll_for(
        Duration::from_secs(10),
        "the active key to be imported again under a new ARN",
        async || {
            let held = rig.ivs_fingerprints().await;
            let recorded = rig.state()["keys"][0]["ivs_arn"].clone();
            if held.contains(&active) && recorded.as_str() != Some(arn.as_str()) {
                Ok(())
            } else {
                Err(format!("IVS holds {held:?}, the state records {recorded}"))
            }
        },
    )
    .await;
    mint_and_play(&s, "v").await.unwrap();
    rig.check_invariants().await;
}
