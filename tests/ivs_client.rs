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
    // Validation errors are not retried: they would fail again.
    let err = ivs
        .ensure_imported(PrivateKey::generate().unwrap().public_key(), "bad name!")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"), "{err}");
}

#[tokio::test]
async fn a_hanging_ivs_is_abandoned_at_the_deadline() {
    let t = TestIvs::start().await;
    let options = IvsOptions {
        max_attempts: 2,
        attempt_timeout: Duration::from_millis(300),
        operation_timeout: Duration::from_millis(1500),
        ..fast()
    };
    let ivs = client(&t, &options);
    t.fault(r#"{"operation":"GetChannel","count":5,"delayMs":5000}"#)
        .await;
    let started = Instant::now();
    let err = ivs
        .channel("arn:aws:ivs:us-west-2:123456789012:channel/abc")
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}: {err}",
        started.elapsed()
    );
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
    // burst of 3 at 3/s, the last waits about (8 - 3) / 3 s.
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
    assert!(elapsed >= Duration::from_millis(1400), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}
