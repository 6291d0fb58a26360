//! `Verifier::verify_at` on a token made from the input, against the fixed
//! key and channel. The first byte picks how the token is made:
//! - 0: the rest as the token text, as a player or a caller would send it;
//! - 1: `HEADER\nPAYLOAD\nSIGNATURE`, each base64url-encoded and joined with
//!   `.` (reaches the header checks without the fuzzer having to learn
//!   base64; the signature fails);
//! - 2: `HEADER\nPAYLOAD`, signed with the fixed key (reaches every claim
//!   check behind the signature).
#![no_main]

use ivs_playback_auth::{ChannelArn, Verifier};
use ivs_playback_auth_fuzz::{CHANNEL_ARN, KEY, NOW, b64, sign_jws, split_line};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    Verifier::new([KEY.public_key()])
        .expect_channel(ChannelArn::parse(CHANNEL_ARN).expect("fixed ARN"))
});
static LENIENT: LazyLock<Verifier> =
    LazyLock::new(|| Verifier::new([KEY.public_key()]).leeway(Duration::from_secs(30)));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = match mode % 3 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => {
            let (header, rest) = split_line(rest);
            let (payload, signature) = split_line(rest);
            format!("{}.{}.{}", b64(header), b64(payload), b64(signature))
        }
        _ => {
            let (header, payload) = split_line(rest);
            sign_jws(header, payload)
        }
    };
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    for verifier in [&*VERIFIER, &*LENIENT] {
        if let Ok(verified) = verifier.verify_at(&token, now) {
            // What passes must say what it is: the claims serialise and
            // parse back as what they were.
            let json = verified.claims().to_json();
            let again = sign_jws(br#"{"alg":"ES384","typ":"JWT"}"#, json.as_bytes());
            let reverified = verifier
                .verify_at(&again, now)
                .expect("re-signed claims verify");
            assert_eq!(reverified.claims(), verified.claims());
        }
    }
});
