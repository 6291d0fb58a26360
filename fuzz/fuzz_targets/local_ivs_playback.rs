//! A playback request at the local IVS edge: `FILE\nQUERY\nORIGIN` (a
//! missing line is a missing part). `@0@` to `@3@` in the query become
//! tokens signed for the seeded channel at setup (plain, viewer, single-use,
//! origins with strict enforcement and SD), so that the checks behind the
//! signature (revocation, origins, single use) are reached.
#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ivs_playback_auth::fuzzing::LocalIvs;
use ivs_playback_auth::{
    AllowedOrigins, ChannelArn, MaximumResolution, PlaybackClaims, SigningKey, TokenSigner,
    ViewerId,
};
use ivs_playback_auth_fuzz::{KEY, split_line};
use libfuzzer_sys::fuzz_target;

struct Setup {
    ivs: LocalIvs,
    tokens: Vec<String>,
    /// The signer checks `exp` against the real clock, so the tokens are
    /// made at the time of setup, and every input is judged at that time.
    now: u64,
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let ivs = LocalIvs::new(&KEY.public_key().to_pem()).expect("seeded local IVS");
    let signer = TokenSigner::new(SigningKey::new(&KEY).expect("signing key"));
    let channel = ChannelArn::parse(ivs.channel_arn()).expect("seeded ARN");
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let now = UNIX_EPOCH + Duration::from_secs(now_s);
    let builders = [
        PlaybackClaims::builder(channel.clone()).expires_in(Duration::from_secs(3600)),
        PlaybackClaims::builder(channel.clone())
            .expires_in(Duration::from_secs(300))
            .viewer_id(ViewerId::parse("fuzz-viewer").expect("viewer id")),
        PlaybackClaims::builder(channel.clone())
            .expires_in(Duration::from_secs(300))
            .single_use(),
        PlaybackClaims::builder(channel)
            .expires_in(Duration::from_secs(600))
            .allowed_origins(AllowedOrigins::parse("https://a.example").expect("origins"))
            .strict_origin_enforcement(true)
            .maximum_resolution(MaximumResolution::Sd),
    ];
    let tokens = builders
        .into_iter()
        .map(|b| {
            let claims = b.build_at(now).expect("claims");
            signer.sign(&claims).expect("sign").as_str().to_owned()
        })
        .collect();
    Setup {
        ivs,
        tokens,
        now: now_s,
    }
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let setup = &*SETUP;
    let (file, rest) = split_line(text.as_bytes());
    let (query, origin) = split_line(rest);
    let (Ok(file), Ok(query), Ok(origin)) = (
        std::str::from_utf8(file),
        std::str::from_utf8(query),
        std::str::from_utf8(origin),
    ) else {
        return;
    };
    let file = file.replace("@F@", &setup.ivs.playback_file());
    let mut query = query.to_owned();
    for (i, token) in setup.tokens.iter().enumerate() {
        query = query.replace(&format!("@{i}@"), token);
    }
    let query = (!query.is_empty()).then_some(query.as_str());
    let origin = (!origin.is_empty()).then_some(origin);
    let _ = setup.ivs.playback(&file, query, origin, setup.now);
});
