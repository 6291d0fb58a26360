//! A local IVS control-plane request: `METHOD\nPATH?QUERY\n` then header
//! lines `name: value` up to an empty line, then the body. Goes through the
//! operation routing, SigV4 (open and with a configured key), the model's
//! input validation and the operation itself on a seeded state.
#![no_main]

use std::sync::LazyLock;

use ivs_playback_auth::fuzzing::LocalIvs;
use ivs_playback_auth_fuzz::{KEY, NOW, split_line};
use libfuzzer_sys::fuzz_target;

static IVS: LazyLock<LocalIvs> =
    LazyLock::new(|| LocalIvs::new(&KEY.public_key().to_pem()).expect("seeded local IVS"));

fuzz_target!(|data: &[u8]| {
    let (method, rest) = split_line(data);
    let (path, mut rest) = split_line(rest);
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let mut headers = Vec::new();
    loop {
        let (line, after) = split_line(rest);
        rest = after;
        if line.is_empty() {
            break;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => (&line[..i], line[i + 1..].trim_ascii_start()),
            None => (line, &[][..]),
        };
        headers.push((name, value));
    }
    let _ = IVS.control(method, path, &headers, rest, NOW);
});
