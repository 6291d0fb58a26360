//! The service's IVS client against the local IVS over HTTP: it paces itself
//! to IVS's quotas, retries what is worth retrying, and gives up in time.

// Helpers outside #[test] functions unwrap too: a set-up failure should stop
// the test loudly (unwrap, panic).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::local_ivs::TestIvs;
use ivs_playback_auth::PrivateKey;
use ivs_playback_auth::service::control::ivs::{Ivs, IvsOptions};

fn client(t: &TestIvs, options: &IvsOptions) -> Ivs {
    Ivs::local(t.url(), "us-west-2", options)
}

fn fast() -> IvsOptions {
    IvsOptions {
        max_attempts: 4,
        attempt_timeout: Duration::from_millis(500),
        operation_timeout: Duration::from_secs(5),
        key_pair_calls_per_second: 1000,
        channel_calls_per_second: 1000,
        revocation_calls_per_second: 1000,
    }
}

#[tokio::test]
async fn throttling_5xx_and_dropped_connections_are_retried() {
    let t = TestIvs::start().await;
    let ivs = client(&t, &fast());
    ivs.ensure_private_channel("retry-me").await.unwrap();
    for fault in [
        r#"{"operation":"ListChannels","count":2,"error":"ThrottlingException"}"#,
        r#"{"operation":"ListChannels","count":2,"error":"InternalServerException"}"#,
        r#"{"operation":"BatchGetChannel","count":1,"error":"ServiceUnavailable"}"#,
        r#"{"operation":"ListChannels","count":1,"drop":true}"#,
    ] {
        t.fault(fault).await;
        let channels = ivs
            .all_channels()
            .await
            .unwrap_or_else(|e| panic!("{fault}: {e}"));
        assert_eq!(channels.len(), 1, "{fault}");
    }
}

#[tokio::test]
async fn persistent_throttling_gives_up_with_the_ivs_code() {
    let t = TestIvs::start().await;
    let ivs = client(&t, &fast());
    t.fault(r#"{"operation":"ListChannels","count":10,"error":"ThrottlingException"}"#)
        .await;
    let err = ivs.all_channels().await.unwrap_err();
    assert_eq!(err.code(), Some("ThrottlingException"), "{err}");
    // Every attempt it has, and no more.
    assert_eq!(t.calls_of("ListChannels").await, 4);
    assert_eq!(t.pending_faults().await, 6);
}

#[tokio::test]
async fn validation_errors_are_not_retried() {
    let t = TestIvs::start().await;
    let ivs = client(&t, &fast());
    // A valid import that IVS refuses once: a retry would succeed, so only a
    // client that does not retry fails.
    t.fault(r#"{"operation":"ImportPlaybackKeyPair","count":1,"error":"ValidationException"}"#)
        .await;
    let key = PrivateKey::generate().unwrap();
    let err = ivs
        .ensure_imported(key.public_key(), "valid-name")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"), "{err}");
    assert_eq!(t.calls_of("ImportPlaybackKeyPair").await, 1);
    assert_eq!(t.pending_faults().await, 0);
    // The same call, without the fault, succeeds.
    ivs.ensure_imported(key.public_key(), "valid-name")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_hanging_ivs_is_abandoned_at_the_deadline() {
    let t = TestIvs::start().await;
    // Each attempt may take a minute and IVS hangs for longer than that, so
    // only the 1.5 s deadline of the whole call can end it well before a
    // minute.
    let options = IvsOptions {
        max_attempts: 2,
        attempt_timeout: Duration::from_secs(60),
        operation_timeout: Duration::from_millis(1500),
        ..fast()
    };
    let ivs = client(&t, &options);
    t.fault(r#"{"operation":"GetChannel","count":2,"delayMs":120000}"#)
        .await;
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(50),
        ivs.channel("arn:aws:ivs:us-west-2:123456789012:channel/abc"),
    )
    .await
    .unwrap_or_else(|_| panic!("still waiting for IVS after 50 s"))
    .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500),
        "gave up before the deadline, after {elapsed:?}: {err}"
    );
    assert_eq!(err.code(), None, "IVS never answered: {err}");
    assert!(err.to_string().contains("timeout"), "{err}");
    assert_eq!(t.calls_of("GetChannel").await, 1, "one attempt, abandoned");
}

#[tokio::test]
async fn key_pair_calls_are_paced_to_three_per_second() {
    let t = TestIvs::start().await;
    let options = IvsOptions {
        key_pair_calls_per_second: 3,
        ..fast()
    };
    let ivs = client(&t, &options);
    let key = PrivateKey::generate().unwrap();
    let started = Instant::now();
    // 1st: list + import; then list + get each time: 8 key-pair calls. With a
    // burst of 3 at 3/s, the 8th cannot start before (8 - 3) / 3 s: a bound
    // no host can beat, however fast.
    let first = ivs
        .ensure_imported(key.public_key(), "paced")
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            ivs.ensure_imported(key.public_key(), "paced")
                .await
                .unwrap(),
            first
        );
    }
    let elapsed = started.elapsed();
    let calls = t.calls().await;
    assert_eq!(
        (
            &calls["calls"]["ListPlaybackKeyPairs"],
            &calls["calls"]["ImportPlaybackKeyPair"],
            &calls["calls"]["GetPlaybackKeyPair"]
        ),
        (&4.into(), &1.into(), &3.into()),
        "{calls}"
    );
    assert!(elapsed >= Duration::from_millis(1600), "{elapsed:?}");
}
