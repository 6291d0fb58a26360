//! The signer in any framework (actix-web, rocket, a Lambda, a CLI): one
//! function from "this logged-in user may watch this channel" to a playback
//! URL. Your framework's handler calls it after its own login check.
//!
//! `cargo run --example mint_plain -- KEY.pem CHANNEL_ARN PLAYBACK_URL USER_ID`
//! (with no arguments it makes a throwaway key and a sample channel).

use std::error::Error;
use std::time::Duration;

use ivs_playback_auth::{
    ChannelArn, PlaybackClaims, PrivateKey, SigningKey, TokenSigner, Verifier, ViewerIdHasher,
};

/// What a backend keeps from start-up: the signer (the key parsed once) and
/// the hasher that turns its own user ids into IVS viewer ids.
struct Playback {
    signer: TokenSigner,
    viewer_ids: ViewerIdHasher,
}

impl Playback {
    /// The playback URL for `user_id` on `channel`, valid for starting
    /// playback within five minutes. Errors are the signer's: a claim IVS
    /// would refuse, or a key that cannot sign.
    fn url_for(
        &self,
        channel: &ChannelArn,
        playback_url: &str,
        user_id: &str,
    ) -> Result<String, ivs_playback_auth::Error> {
        let claims = PlaybackClaims::builder(channel.clone())
            .expires_in(Duration::from_secs(300))
            // Any user id fits: the hasher maps it to a fixed-length opaque
            // id (IVS allows at most 40 characters), the same every time, so
            // revoking a viewer works by that id.
            .viewer_id(self.viewer_ids.viewer_id(user_id))
            .build()?;
        let token = self.signer.sign(&claims)?;
        Ok(format!("{playback_url}?token={}", token.as_str()))
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (key, channel, playback_url, user) = match args.as_slice() {
        [key, arn, url, user] => (
            PrivateKey::read_file(key)?,
            ChannelArn::parse(arn)?,
            url.clone(),
            user.clone(),
        ),
        [] => (
            PrivateKey::generate()?,
            ChannelArn::parse("arn:aws:ivs:us-west-2:123456789012:channel/abcdEFGH1234")?,
            "https://example.us-west-2.playback.live-video.net/api/video/v1/demo.m3u8".to_owned(),
            "user-42@example.com".to_owned(),
        ),
        _ => return Err("usage: mint_plain [KEY.pem CHANNEL_ARN PLAYBACK_URL USER_ID]".into()),
    };
    let playback = Playback {
        signer: TokenSigner::new(SigningKey::new(&key)?),
        // Keep the secret in your secret store: it makes viewer ids
        // unguessable from user ids.
        viewer_ids: ViewerIdHasher::new(b"a secret of at least 32 bytes, from your store")?,
    };
    let url = playback.url_for(&channel, &playback_url, &user)?;
    println!("{url}");

    // What IVS will check, with the public half.
    let token = url
        .rsplit_once("?token=")
        .map(|(_, t)| t)
        .unwrap_or_default();
    let verified = Verifier::new([key.public_key()])
        .expect_channel(channel)
        .verify(token)?;
    eprintln!(
        "verified: key {}, viewer {}",
        verified.fingerprint(),
        verified
            .claims()
            .viewer_id()
            .map(|v| v.as_str())
            .unwrap_or("-")
    );
    Ok(())
}
