//! The claims JSON of a token (its payload) through every check `verify`
//! makes after the signature, with and without an expected channel, at the
//! fixed now.
#![no_main]

use ivs_playback_auth::fuzzing::verify_payload;
use ivs_playback_auth_fuzz::{CHANNEL_ARN, NOW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let with_channel = verify_payload(data, Some(CHANNEL_ARN), NOW);
    let without = verify_payload(data, None, NOW);
    // Expecting a channel can only refuse more.
    if with_channel.is_ok() {
        assert!(without.is_ok(), "{without:?}");
    }
});
