//! The channel cache against stock moto_server, an implementation of the IVS
//! channel API that is not ours. `.ci/run` installs moto and sets
//! `MOTO_SERVER` to `tests/moto/moto_server.py` (moto's `moto_server`, one
//! request at a time); without it the test says so and passes only when
//! `CI_REQUIRE_MOTO` is unset.

// Helpers outside #[test] functions unwrap too: a set-up failure should stop
// the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use aws_sdk_ivs::config::{BehaviorVersion, Credentials, Region};
use ivs_playback_auth::ChannelArn;
use ivs_playback_auth::service::channel::ChannelRef;
use ivs_playback_auth::service::control::ivs::{Ivs, IvsOptions};
use ivs_playback_auth::service::mint::channels::{ChannelCache, Lookup};

use common::moto::moto;

#[tokio::test]
async fn the_channel_cache_works_against_moto_server() {
    let Some(mut moto) = moto().await else {
        return;
    };
    let sdk = aws_sdk_ivs::Client::from_conf(
        aws_sdk_ivs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&moto.url)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .build(),
    );
    let mut private = Vec::new();
    for i in 0..7 {
        let out = sdk
            .create_channel()
            .name(format!("show-{i}"))
            .authorized(i != 6)
            .send()
            .await
            .unwrap();
        private.push(out.channel().unwrap().arn().unwrap().to_owned());
    }
    let ivs = Ivs::local(&moto.url, "us-east-1", &IvsOptions::default());
    let cache = ChannelCache::new(ivs, Duration::from_secs(30));
    assert!(!cache.is_warm());
    assert_eq!(cache.refresh().await.unwrap(), 7);
    assert!(cache.is_warm());
    assert_eq!(cache.snapshot().len(), 7);

    // By name and by ARN, with moto's playback URLs and `authorized`.
    let by_name = cache.cached(&reference("show-3")).await.unwrap();
    assert_eq!(by_name.arn.as_str(), private[3]);
    assert!(by_name.authorized);
    assert!(
        by_name.playback_url.ends_with(".m3u8"),
        "{}",
        by_name.playback_url
    );
    let by_arn = cache.cached(&reference(&private[3])).await.unwrap();
    assert_eq!(by_arn, by_name);
    assert!(!cache.cached(&reference("show-6")).await.unwrap().authorized);

    // A channel made after the warm-up: the cache does not hold it by name
    // (only the listing names channels) nor by ARN; a miss by ARN is
    // fetched (GetChannel, as for an entitled caller), and the admin path
    // finds it by name too (ListChannels).
    let late = sdk
        .create_channel()
        .name("late")
        .authorized(true)
        .send()
        .await
        .unwrap();
    let late_arn = late.channel().unwrap().arn().unwrap().to_owned();
    assert!(cache.cached(&reference("late")).await.is_none());
    assert!(cache.cached(&reference(&late_arn)).await.is_none());
    let arn = ChannelArn::parse(&late_arn).unwrap();
    assert_eq!(cache.fetch(&arn).await.unwrap().arn.as_str(), late_arn);
    assert!(cache.cached(&reference("late")).await.is_none());
    assert_eq!(
        cache
            .resolve_trusted(&reference("late"))
            .await
            .unwrap()
            .arn
            .as_str(),
        late_arn
    );
    assert_eq!(
        cache.cached(&reference("late")).await.unwrap().arn.as_str(),
        late_arn
    );
    assert!(matches!(
        cache.resolve_trusted(&reference("nobody")).await,
        Err(Lookup::NotFound)
    ));
    let unknown_arn = private[0].rsplit_once('/').unwrap().0.to_owned() + "/AbCdEfGh1234";
    assert!(matches!(
        cache.fetch(&ChannelArn::parse(&unknown_arn).unwrap()).await,
        Err(Lookup::NotFound)
    ));

    // A deleted channel is gone after a reload.
    sdk.delete_channel().arn(&private[0]).send().await.unwrap();
    cache.reload().await.unwrap();
    assert!(cache.cached(&reference(&private[0])).await.is_none());
    assert!(matches!(
        cache.resolve_trusted(&reference(&private[0])).await,
        Err(Lookup::NotFound)
    ));
    assert_eq!(cache.snapshot().len(), 7);
    moto.child.kill().await.unwrap();
}

fn reference(r: &str) -> ChannelRef {
    ChannelRef::parse(r).unwrap()
}
