//! What the fuzz targets share: the fixed key and a raw ES384 signer, so that
//! a target can sign what its input says and reach the checks behind the
//! signature.

use std::sync::LazyLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ivs_playback_auth::PrivateKey;

/// 2025-06-15T12:00:00Z: the fixed "now" of the targets (the seeds' dates
/// and expiries are around it).
pub const NOW: u64 = 1_749_988_800;

/// The channel the targets expect tokens for.
pub const CHANNEL_ARN: &str = "arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl";

/// The fixed P-384 key (fixtures/playback-key.pem, PKCS#8).
pub static KEY: LazyLock<PrivateKey> = LazyLock::new(|| {
    PrivateKey::from_pem(include_str!("../fixtures/playback-key.pem")).expect("fixture key")
});

static SIGNER: LazyLock<EcdsaKeyPair> = LazyLock::new(|| {
    let der = KEY.to_pkcs8_der().expect("fixture key to DER");
    EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &der).expect("fixture key")
});

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWS compact token of these header and payload bytes, signed with
/// [`KEY`].
pub fn sign_jws(header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = SIGNER
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("ES384 signing");
    format!("{input}.{}", b64(sig.as_ref()))
}

/// Splits at the first `\n`: (before, after); all of it before if none.
pub fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
