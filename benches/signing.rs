//! Token issuance against its floor, the raw ES384 signature, in one run.
//!
//! - `raw_sign/*`: one ECDSA P-384 SHA-384 signature over a token-sized
//!   message with aws-lc-rs, ring and p384: the cost nothing can avoid.
//! - `issue/*`: a full token with realistic claims (channel ARN, two origins,
//!   viewer id, exp) through `TokenSigner`, with each backend: build the
//!   claims from parsed parts, serialise, encode, sign.
//! - `issue/jsonwebtoken-encode`: the same claims through
//!   `jsonwebtoken::encode` (aws-lc-rs backend), the naive baseline.
//! - `verify/*`: checking a token the way IVS does.
//!
//! Goal: `issue/aws-lc-rs` at ≥ 0.97× the rate of `raw_sign/aws-lc-rs`, and
//! ≥ 1.6× the rate of `issue/jsonwebtoken-encode`.
//! Run: `cargo bench --bench signing` (CI runs `-- --test` once per case).

// Set-up failures in a benchmark should stop it loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use ivs_playback_auth::{
    AllowedOrigins, Backend, ChannelArn, PlaybackClaims, PrivateKey, SigningKey, TokenSigner,
    Verifier, ViewerId,
};

const CHANNEL: &str = "arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl";

/// Parsed once, as the service holds them: channel from its cache, origins
/// from the caller's policy, the viewer id from the caller's identity.
struct Parts {
    channel: ChannelArn,
    origins: AllowedOrigins,
    viewer: ViewerId,
}

impl Parts {
    fn new() -> Self {
        Self {
            channel: ChannelArn::parse(CHANNEL).expect("valid ARN literal"),
            origins: AllowedOrigins::parse("https://www.example.com,https://app.example.com")
                .expect("valid origins literal"),
            viewer: ViewerId::parse("u_7Yq2mR9xKf3LpW0aZb8cNd").expect("valid viewer id literal"),
        }
    }

    fn claims(&self, now: SystemTime) -> PlaybackClaims {
        PlaybackClaims::builder(self.channel.clone())
            .allowed_origins(self.origins.clone())
            .viewer_id(self.viewer.clone())
            .expires_in(Duration::from_secs(300))
            .build_at(now)
            .expect("valid claims")
    }
}

fn benches(c: &mut Criterion) {
    let key = PrivateKey::generate().expect("key generation");
    let pkcs8 = key.to_pkcs8_der().expect("pkcs8 encoding");
    let parts = Parts::new();
    let now = SystemTime::now();
    let claims = parts.claims(now);
    // The message a real token signs: header.payload of these claims.
    let reference = TokenSigner::new(SigningKey::new(&key).expect("signing key"))
        .sign_at(&claims, now)
        .expect("reference token");
    let message = reference
        .as_str()
        .rsplit_once('.')
        .map(|(input, _)| input.as_bytes().to_vec())
        .expect("three segments");

    let mut raw = c.benchmark_group("raw_sign");
    {
        use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &pkcs8)
            .expect("aws-lc-rs key");
        let rng = aws_lc_rs::rand::SystemRandom::new();
        raw.bench_function("aws-lc-rs", |b| {
            b.iter(|| pair.sign(&rng, black_box(&message)).expect("sign"))
        });
    }
    {
        use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &pkcs8, &rng)
            .expect("ring key");
        raw.bench_function("ring", |b| {
            b.iter(|| pair.sign(&rng, black_box(&message)).expect("sign"))
        });
    }
    {
        use p384::ecdsa::signature::Signer as _;
        use p384::pkcs8::DecodePrivateKey as _;
        let sk = p384::ecdsa::SigningKey::from_pkcs8_der(&pkcs8).expect("p384 key");
        raw.bench_function("p384", |b| {
            b.iter(|| -> p384::ecdsa::Signature { sk.sign(black_box(&message)) })
        });
    }
    raw.finish();

    let mut issue = c.benchmark_group("issue");
    for &backend in Backend::ALL {
        let signer =
            TokenSigner::new(SigningKey::with_backend(&key, backend).expect("signing key"));
        issue.bench_function(backend.name(), |b| {
            b.iter(|| {
                let claims = parts.claims(now);
                signer.sign_at(black_box(&claims), now).expect("token")
            })
        });
    }
    {
        use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
        let pem = key.to_pkcs8_pem().expect("pem");
        let encoding_key = EncodingKey::from_ec_pem(pem.as_bytes()).expect("jsonwebtoken key");
        let header = Header::new(Algorithm::ES384);
        issue.bench_function("jsonwebtoken-encode", |b| {
            b.iter(|| {
                let claims = parts.claims(now);
                encode(&header, black_box(&claims), &encoding_key).expect("token")
            })
        });
    }
    issue.finish();

    let mut verify = c.benchmark_group("verify");
    let verifier = Verifier::new([key.public_key()]).expect_channel(parts.channel.clone());
    verify.bench_function("ours", |b| {
        b.iter(|| {
            verifier
                .verify_at(black_box(reference.as_str()), now)
                .expect("valid")
        })
    });
    verify.finish();
}

criterion_group! {
    name = signing;
    config = Criterion::default().sample_size(60).measurement_time(Duration::from_secs(6));
    targets = benches
}
criterion_main!(signing);
