//! The raw ES384 signing rate of aws-lc-rs on N threads: the ceiling the
//! token service is measured against (`benches/load.sh`).
//!
//! `cargo run --release --example sign_rate -- THREADS SECONDS` prints two
//! numbers: signatures per second (wall clock, all threads), and signatures
//! per CPU-second of the signing threads (from each thread's
//! `/proc/thread-self/schedstat`; the first number again where that cannot
//! be read). The second is one core's raw rate, as other work on the same
//! cores moves it least.

// A measuring tool: a failure should stop it loudly.
#![allow(clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let key = ivs_playback_auth::PrivateKey::generate().expect("key");
    let pkcs8 = key.to_pkcs8_der().expect("pkcs8");
    // About the size of a realistic token's signing input.
    let message = vec![b'a'; 330];
    let deadline = Duration::from_secs(seconds);
    let started = Instant::now();
    let counted: Vec<(u64, Option<Duration>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let pkcs8 = &pkcs8;
                let message = &message;
                s.spawn(move || {
                    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8)
                        .expect("aws-lc-rs key");
                    let rng = SystemRandom::new();
                    let mut n = 0u64;
                    let start = Instant::now();
                    while start.elapsed() < deadline {
                        for _ in 0..64 {
                            std::hint::black_box(pair.sign(&rng, message).expect("sign"));
                        }
                        n += 64;
                    }
                    (n, thread_cpu_time())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let total: u64 = counted.iter().map(|(n, _)| n).sum();
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let cpu: Option<Duration> = counted.iter().map(|(_, cpu)| *cpu).sum();
    let per_cpu_second = cpu.map_or(rate / threads as f64, |cpu| {
        total as f64 / cpu.as_secs_f64()
    });
    println!("{rate:.0} {per_cpu_second:.0}");
}

/// The CPU time this thread has run so far (Linux: the first field of
/// `/proc/thread-self/schedstat`, in nanoseconds).
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}
