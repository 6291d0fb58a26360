//! `POST /v1/token` and `/v1/tokens` bodies after the JSON parse: every
//! field checked with the field named, no panic.
#![no_main]

use ivs_playback_auth::fuzzing::parse_token_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_token_body(data);
});
