//! Many replicas, one truth: three replicas of the real binary (`serve` in
//! aws mode, keys in Secrets Manager, coordination in DynamoDB) against one
//! local IVS and one real moto_server. Intervals are short (poll 1 s, lease
//! 3 s, tokens 3 s) so that the whole life of keys fits in a test; every
//! wait is a poll with a deadline. The tests run one at a time: each starts
//! its own moto_server, IVS and replicas, and two machines' worth of
//! processes at once would measure the machine, not the service.

// Helpers outside #[test] functions unwrap too: a set-up failure should stop
// the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::replicas::{
    ADMIN, API_KEY, Cluster, LEASE, POLL, STALE_AFTER, active_key, mint_and_play,
};
use common::service::TestService;
use common::{poll_for, poll_until};
use ivs_playback_auth::service::control::rotation::HOLD_HOOK_ENV;
use serde_json::{Value, json};

/// One test at a time (see the module's docs).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a change may take to reach a replica: one poll interval, plus
/// what that poll itself takes (a read of the table, a read of the new
/// key's secret) on a loaded machine. The figures are printed.
const PROPAGATION: Duration = Duration::from_millis(POLL.as_millis() as u64 + 1_000);

/// Waits until every replica signs with `fingerprint`; returns how long
/// each took (each watched on its own, every 20 ms).
async fn reached_all(replicas: &[TestService], fingerprint: &str) -> Vec<Duration> {
    let started = Instant::now();
    let watch = replicas.iter().map(|replica| async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        while active_key(replica).await.as_deref() != Some(fingerprint) {
            assert!(
                Instant::now() < deadline,
                "{} never signed with {fingerprint}",
                replica.api
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = started.elapsed();
        if took > PROPAGATION {
            let logs = replica.logs.lock().unwrap();
            let warnings: Vec<&String> = logs
                .iter()
                .filter(|l| !l.contains("\"level\":\"INFO\""))
                .collect();
            eprintln!(
                "{} took {took:?} to follow; its last warnings:\n{}",
                replica.api,
                warnings[warnings.len().saturating_sub(10)..]
                    .iter()
                    .map(|l| l.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        took
    });
    futures_util::future::join_all(watch).await
}

/// Waits until every replica signs with one and the same key; returns it.
async fn agreed_key(replicas: &[TestService]) -> String {
    poll_for(
        Duration::from_secs(30),
        "every replica signs with the same key",
        async || {
            let mut keys = Vec::new();
            for r in replicas {
                keys.push(active_key(r).await);
            }
            match keys[0].clone() {
                Some(k) if keys.iter().all(|x| x.as_deref() == Some(k.as_str())) => Ok(k),
                _ => Err(format!("{keys:?}")),
            }
        },
    )
    .await
}

/// Rotates on `replica`, asking again while IVS has no free slot (409
/// `key_quota_full`: a retired key's tokens have not all expired yet).
async fn rotate_when_a_slot_is_free(replica: &TestService) -> Value {
    poll_for(
        Duration::from_secs(60),
        "a rotation with a free IVS slot",
        async || {
            let (status, body) = replica.rotate().await;
            match (status, body["error"]["code"].as_str()) {
                (200, _) => Ok(body),
                (409, Some("key_quota_full")) => Err(body.to_string()),
                _ => panic!("rotation on {}: {status} {body}", replica.api),
            }
        },
    )
    .await
}

/// Counts the key pairs IVS holds, every 50 ms, until stopped; the largest
/// count seen.
fn watch_key_pairs(cluster: &Cluster, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    let client = cluster.ivs.client("us-west-2");
    tokio::spawn(async move {
        let mut most = 0;
        while !stop.load(Ordering::Relaxed) {
            let held = client
                .list_playback_key_pairs()
                .send()
                .await
                .unwrap()
                .key_pairs()
                .len();
            most = most.max(held);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        most
    })
}

/// Files under `dir` whose name ends in `.pem`.
fn pem_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(pem_files(&path));
        } else if path.extension().is_some_and(|e| e == "pem") {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn three_replicas_mint_and_play_through_five_rotations_made_on_different_replicas() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut cluster) = Cluster::new().await else {
        return;
    };
    let replicas = Arc::new(cluster.replicas(3).await);
    let first = agreed_key(&replicas).await;

    // A client mints on every replica in turn and plays every token.
    let stop = Arc::new(AtomicBool::new(false));
    let plays = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let client = {
        let (replicas, stop, plays, failures) = (
            Arc::clone(&replicas),
            Arc::clone(&stop),
            Arc::clone(&plays),
            Arc::clone(&failures),
        );
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let replica = &replicas[i % replicas.len()];
                match mint_and_play(replica, &format!("viewer-{i}")).await {
                    Ok(_) => {}
                    Err(e) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{}: {e}", replica.api)),
                }
                plays.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    let most_key_pairs = watch_key_pairs(&cluster, Arc::clone(&stop));

    let mut actives = vec![first];
    let mut reach = Vec::new();
    for k in 0..5 {
        let on = &replicas[k % 3];
        let rotated = rotate_when_a_slot_is_free(on).await;
        assert_eq!(rotated["joined"], false, "{rotated}");
        let active = rotated["active"].as_str().unwrap().to_owned();
        assert_eq!(
            rotated["retired"],
            actives.last().unwrap().as_str(),
            "{rotated}"
        );
        let took = reached_all(&replicas, &active).await;
        eprintln!(
            "rotation {k} on replica {}: reached the replicas after {took:?}",
            k % 3
        );
        reach.push(took.into_iter().max().unwrap());
        actives.push(active);
    }
    stop.store(true, Ordering::Relaxed);
    client.await.unwrap();
    let most = most_key_pairs.await.unwrap();
    let failures = failures.lock().unwrap().clone();
    let plays = plays.load(Ordering::Relaxed);
    let slowest = reach.iter().max().unwrap();
    eprintln!(
        "{plays} tokens minted round-robin and played, {} failed; slowest propagation {slowest:?} (poll interval {POLL:?}); at most {most} key pairs in IVS",
        failures.len()
    );
    assert!(failures.is_empty(), "failed plays: {failures:?}");
    assert!(plays >= 50, "only {plays} plays");
    assert!(most <= 3, "IVS held {most} key pairs");
    assert!(
        *slowest <= PROPAGATION,
        "a rotation took {slowest:?} to reach every replica"
    );

    // Six keys, each one secret written once; none on any disk.
    let mut secrets = cluster.secret_names().await;
    secrets.sort();
    let mut wanted: Vec<String> = actives
        .iter()
        .map(|fp| format!("ivs-playback-auth/test/{}", fp.replace(':', "")))
        .collect();
    wanted.sort();
    assert_eq!(secrets, wanted);
    let mut disks = vec![cluster.dir.path().to_owned()];
    disks.extend(replicas.iter().map(|r| r.dir.path().to_owned()));
    for dir in disks {
        assert_eq!(
            pem_files(&dir),
            Vec::<std::path::PathBuf>::new(),
            "a key on disk in {}",
            dir.display()
        );
    }
    let state = cluster.state().await;
    let recorded: Vec<&str> = state["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(
        recorded,
        actives.iter().map(String::as_str).collect::<Vec<_>>()
    );
    // The retired keys go once every replica is done with them.
    poll_until(
        Duration::from_secs(30),
        "IVS holds only the active key",
        async || cluster.ivs_fingerprints().await == [actives.last().unwrap().clone()],
    )
    .await;
}

#[tokio::test]
async fn two_replicas_asked_at_once_make_one_rotation_and_one_idempotency_key_rotates_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut cluster) = Cluster::new().await else {
        return;
    };
    let replicas = cluster.replicas(3).await;
    let first = agreed_key(&replicas).await;

    let ((sa, a), (sb, b)) = tokio::join!(replicas[0].rotate(), replicas[1].rotate());
    assert_eq!((sa, sb), (200, 200), "{a} {b}");
    assert_eq!(a["active"], b["active"], "two rotations: {a} {b}");
    assert_eq!(a["retired"], first.as_str());
    let joined = [&a, &b].iter().filter(|r| r["joined"] == true).count();
    assert_eq!(
        joined, 1,
        "exactly one request joins the other's rotation: {a} {b}"
    );
    assert_eq!(cluster.state().await["keys"].as_array().unwrap().len(), 2);
    let second = a["active"].as_str().unwrap().to_owned();
    reached_all(&replicas, &second).await;

    // The same Idempotency-Key on two replicas at once: one rotation, one
    // answer, replayed by the other.
    let (x, y) = tokio::join!(
        replicas[1].rotate_with_idempotency_key("rotate-once-1"),
        replicas[2].rotate_with_idempotency_key("rotate-once-1")
    );
    assert_eq!(
        (x.status.as_u16(), y.status.as_u16()),
        (200, 200),
        "{} {}",
        x.text,
        y.text
    );
    assert_eq!(x.text, y.text);
    let replayed = [&x, &y]
        .iter()
        .filter(|r| r.header("idempotent-replay") == Some("true"))
        .count();
    assert_eq!(replayed, 1, "{:?} {:?}", x.headers, y.headers);
    let third = x.json()["active"].as_str().unwrap().to_owned();
    assert_ne!(third, second);
    assert_eq!(x.json()["joined"], false);
    assert_eq!(cluster.state().await["keys"].as_array().unwrap().len(), 3);
    // Later, on the third replica: the same answer, no rotation.
    let again = replicas[0]
        .rotate_with_idempotency_key("rotate-once-1")
        .await;
    assert_eq!(
        (again.status.as_u16(), again.text.as_str()),
        (200, x.text.as_str())
    );
    assert_eq!(again.header("idempotent-replay"), Some("true"));
    assert_eq!(cluster.state().await["keys"].as_array().unwrap().len(), 3);
    assert_eq!(cluster.secret_names().await.len(), 3);
    assert!(cluster.ivs_fingerprints().await.len() <= 3);
}

/// Starts a replica that stops for good after `step` of a key operation.
async fn start_holder(cluster: &mut Cluster, step: &str) -> (TestService, String) {
    let holder = cluster.replica(&[(HOLD_HOOK_ENV, step)]).await;
    (holder, cluster.hosts.last().unwrap().clone())
}

/// Runs `operation` on `holder` (not awaited: it never answers) and kills
/// the replica with SIGKILL once it stopped after `step`, holding the
/// lease. Returns when it was killed.
async fn kill_the_lease_holder_after(
    cluster: &Cluster,
    (holder, host): (TestService, String),
    step: &str,
    operation: &str,
) -> Instant {
    let request = reqwest::Client::new()
        .post(format!("{}{operation}", holder.admin))
        .bearer_auth(ADMIN)
        .send();
    let pending = tokio::spawn(request);
    let marker = format!("{HOLD_HOOK_ENV}={step}: holding");
    poll_for(
        Duration::from_secs(30),
        &format!("{host} to stop after `{step}`"),
        async || {
            if holder
                .logs
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(&marker))
            {
                return Ok(());
            }
            assert!(
                !pending.is_finished(),
                "{operation} on {host} answered instead of stopping after `{step}`"
            );
            Err("not yet".to_owned())
        },
    )
    .await;
    let lease = cluster.lease_holder().await.unwrap();
    assert!(
        lease.starts_with(&format!("{host}-")),
        "the lease is {lease}'s, not {host}'s"
    );
    holder.kill().await;
    let killed = Instant::now();
    // The request got no answer: the connection died with the replica.
    assert!(pending.await.unwrap().is_err());
    killed
}

#[tokio::test]
async fn a_lease_holder_killed_after_each_step_is_finished_by_another_replica() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut cluster) = Cluster::new().await else {
        return;
    };
    let replicas = cluster.replicas(2).await;
    agreed_key(&replicas).await;
    let stop = Arc::new(AtomicBool::new(false));
    let most_key_pairs = watch_key_pairs(&cluster, Arc::clone(&stop));
    let mut took = Vec::new();
    for step in ["generated", "imported", "activated"] {
        poll_until(
            Duration::from_secs(30),
            "a free IVS key-pair slot",
            async || cluster.ivs_fingerprints().await.len() <= 2,
        )
        .await;
        let holder = start_holder(&mut cluster, step).await;
        let killed =
            kill_the_lease_holder_after(&cluster, holder, step, "/admin/v1/keys/rotate").await;
        let dead = cluster.hosts.last().unwrap().clone();
        let state = cluster.state().await;
        let new_key = match step {
            "activated" => state["last_rotation"]["active"].clone(),
            _ => state["in_progress"]["fingerprint"].clone(),
        };
        let new_key = new_key.as_str().unwrap().to_owned();
        poll_until(
            Duration::from_secs(30),
            &format!("the rotation {dead} began to end on another replica"),
            async || {
                let state = cluster.state().await;
                let lease = cluster.lease_holder().await.unwrap_or_default();
                state["in_progress"].is_null()
                    && state["last_rotation"]["active"] == new_key.as_str()
                    && !lease.starts_with(&format!("{dead}-"))
            },
        )
        .await;
        reached_all(&replicas, &new_key).await;
        let after = killed.elapsed();
        eprintln!(
            "killed after `{step}`: finished by another replica {after:?} after the kill (lease {LEASE:?})"
        );
        assert!(
            after <= LEASE + POLL * 3 + Duration::from_secs(2),
            "{after:?}"
        );
        took.push(after);
        for r in &replicas {
            mint_and_play(r, "after-the-kill").await.unwrap();
        }
    }
    // Killed in the middle of deleting a retired key (an emergency
    // revocation): another replica finishes the deletion. The key retires
    // once the replica is up, so that its tokens have not expired yet.
    let holder = start_holder(&mut cluster, "deleting").await;
    poll_until(
        Duration::from_secs(30),
        "a free IVS key-pair slot",
        async || cluster.ivs_fingerprints().await.len() <= 2,
    )
    .await;
    let rotated = rotate_when_a_slot_is_free(&replicas[0]).await;
    let retiring = rotated["retired"].as_str().unwrap().to_owned();
    let killed = kill_the_lease_holder_after(
        &cluster,
        holder,
        "deleting",
        &format!("/admin/v1/keys/{retiring}/revoke"),
    )
    .await;
    poll_until(
        Duration::from_secs(30),
        "IVS no longer holds the revoked key",
        async || !cluster.ivs_fingerprints().await.contains(&retiring),
    )
    .await;
    eprintln!(
        "killed while deleting: finished {:?} after the kill",
        killed.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    let most = most_key_pairs.await.unwrap();
    assert!(most <= 3, "IVS held {most} key pairs");
}

#[tokio::test]
async fn a_viewer_revoked_on_one_replica_is_refused_by_the_others_within_a_poll() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut cluster) = Cluster::new().await else {
        return;
    };
    let replicas = cluster.replicas(3).await;
    agreed_key(&replicas).await;
    for r in &replicas {
        mint_and_play(r, "alice").await.unwrap();
    }
    let (status, body) = replicas[0]
        .revoke_viewers(
            json!({"sessions": [{"channel": "stage", "viewer_id": "alice"}], "block_seconds": 600}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["shared_with_replicas"], true, "{body}");
    assert_eq!(body["results"][0]["revoked"], true, "{body}");
    let revoked_at = Instant::now();
    let mut reach = Vec::new();
    for r in &replicas {
        poll_until(
            Duration::from_secs(10),
            &format!("{} refuses alice", r.api),
            async || {
                let (status, body) = r
                    .token(
                        Some(API_KEY),
                        json!({"channel": "stage", "viewer_id": "alice"}),
                    )
                    .await;
                status == 403 && body["error"]["code"] == "viewer_revoked"
            },
        )
        .await;
        reach.push(revoked_at.elapsed());
    }
    eprintln!("the revocation reached the replicas after {reach:?} (poll interval {POLL:?})");
    assert!(reach.iter().all(|t| *t <= PROPAGATION), "{reach:?}");
    for r in &replicas {
        mint_and_play(r, "bob").await.unwrap();
    }
}

#[tokio::test]
async fn with_the_stores_stopped_for_30_s_signing_goes_on_readiness_says_so_and_recovers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut cluster) = Cluster::new().await else {
        return;
    };
    let replicas = cluster.replicas(3).await;
    let before = agreed_key(&replicas).await;
    for r in &replicas {
        poll_until(Duration::from_secs(10), "ready", async || {
            r.readyz().await.status == 200
        })
        .await;
    }
    cluster.moto.pause();
    let paused = Instant::now();
    let plays = AtomicUsize::new(0);
    let mut not_ready_after: Vec<Option<Duration>> = vec![None; replicas.len()];
    let mut i = 0;
    while paused.elapsed() < Duration::from_secs(30) {
        let r = &replicas[i % replicas.len()];
        mint_and_play(r, &format!("during-{i}")).await.unwrap();
        plays.fetch_add(1, Ordering::Relaxed);
        let ready = r.readyz().await;
        if ready.status == 503 && not_ready_after[i % replicas.len()].is_none() {
            assert_eq!(ready.json()["stores_fresh"], false, "{}", ready.text);
            assert_eq!(ready.json()["active_key"], before.as_str());
            not_ready_after[i % replicas.len()] = Some(paused.elapsed());
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "stores stopped 30 s: {} tokens minted and played, replicas not ready after {not_ready_after:?} (stale_after {STALE_AFTER:?})",
        plays.load(Ordering::Relaxed)
    );
    for (n, at) in not_ready_after.iter().enumerate() {
        let at = at.unwrap_or_else(|| panic!("replica {n} stayed ready with the stores stopped"));
        assert!(
            at <= STALE_AFTER + POLL * 3,
            "replica {n} turned not ready only after {at:?}"
        );
    }
    cluster.moto.resume();
    let resumed = Instant::now();
    for r in &replicas {
        poll_until(
            Duration::from_secs(30),
            &format!("{} ready again", r.api),
            async || r.readyz().await.status == 200,
        )
        .await;
    }
    eprintln!(
        "ready again {:?} after the stores came back",
        resumed.elapsed()
    );
    // Not restarted, and coordinating again.
    let rotated = rotate_when_a_slot_is_free(&replicas[2]).await;
    reached_all(&replicas, rotated["active"].as_str().unwrap()).await;
    for r in &replicas {
        mint_and_play(r, "after").await.unwrap();
    }
}
