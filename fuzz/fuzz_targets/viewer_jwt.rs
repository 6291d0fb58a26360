//! The viewer-JWT path against a fixed JWKS (the fixed key as `fuzz-1`,
//! ES384): the first byte picks
//! - even: the rest as the JWT text;
//! - odd: `HEADER\nCLAIMS`, signed with the fixed key (reaches the claim
//!   checks: issuer, audience, expiry, `sub`, the channels claim).
#![no_main]

use std::sync::LazyLock;

use ivs_playback_auth::fuzzing::ViewerJwt;
use ivs_playback_auth_fuzz::{KEY, b64, sign_jws, split_line};
use libfuzzer_sys::fuzz_target;

static AUTH: LazyLock<ViewerJwt> = LazyLock::new(|| {
    let point = KEY.public_key().to_sec1_bytes();
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-384", "kid": "fuzz-1", "alg": "ES384", "use": "sig",
        "x": b64(&point[1..49]), "y": b64(&point[49..97]),
    }]});
    let path = std::env::temp_dir().join(format!("ivs-fuzz-jwks-{}.json", std::process::id()));
    std::fs::write(&path, jwks.to_string()).expect("write the JWKS");
    let auth = ViewerJwt::new("https://idp.fuzz/", "ivs-playback", &path).expect("viewer auth");
    let _ = std::fs::remove_file(&path);
    auth
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let (header, claims) = split_line(rest);
        sign_jws(header, claims)
    };
    if let Ok((subject, _channels)) = AUTH.verify(&token) {
        assert!(!subject.is_empty());
    }
});
