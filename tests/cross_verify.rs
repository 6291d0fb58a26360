//! Our tokens checked by an independent implementation, the `jsonwebtoken`
//! crate, and its tokens checked by ours.

// Helpers outside #[test] functions unwrap too: a set-up failure should stop
// the test loudly.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{HEADER, decode_parts, realistic_claims, signer_for};
use ivs_playback_auth::{Backend, PrivateKey, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};

fn jsonwebtoken_validation() -> Validation {
    let mut validation = Validation::new(Algorithm::ES384);
    validation.set_required_spec_claims(&["exp"]);
    validation.leeway = 0;
    validation
}

#[test]
fn jsonwebtoken_verifies_our_tokens_from_every_backend() {
    let key = PrivateKey::generate().unwrap();
    let decoding = DecodingKey::from_ec_pem(key.public_key().to_pem().as_bytes()).unwrap();
    let now = SystemTime::now();
    let claims = realistic_claims(now);
    for &backend in Backend::ALL {
        let token = signer_for(&key, backend).sign_at(&claims, now).unwrap();
        let data =
            decode::<serde_json::Value>(token.as_str(), &decoding, &jsonwebtoken_validation())
                .unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
        assert_eq!(data.header.alg, Algorithm::ES384);
        assert_eq!(data.header.kid, None);
        assert_eq!(
            data.claims,
            serde_json::from_str::<serde_json::Value>(&claims.to_json()).unwrap()
        );
        let (header, _, signature) = decode_parts(token.as_str());
        assert_eq!(
            header,
            HEADER.as_bytes(),
            "the header is exactly the documented one"
        );
        assert_eq!(signature.len(), 96, "raw r||s, not DER");
    }
}

#[test]
fn jsonwebtoken_refuses_tampered_tokens_and_other_keys() {
    let key = PrivateKey::generate().unwrap();
    let other = PrivateKey::generate().unwrap();
    let now = SystemTime::now();
    let token = signer_for(&key, Backend::DEFAULT)
        .sign_at(&realistic_claims(now), now)
        .unwrap()
        .into_string();
    let decoding = DecodingKey::from_ec_pem(key.public_key().to_pem().as_bytes()).unwrap();
    let other_decoding = DecodingKey::from_ec_pem(other.public_key().to_pem().as_bytes()).unwrap();
    let validation = jsonwebtoken_validation();
    assert!(decode::<serde_json::Value>(&token, &other_decoding, &validation).is_err());
    let parts: Vec<&str> = token.split('.').collect();
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap())
        .unwrap()
        .replace("viewer-42", "viewer-43");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload),
        parts[2]
    );
    assert!(decode::<serde_json::Value>(&tampered, &decoding, &validation).is_err());
    // Our verifier agrees on all three.
    let ours = Verifier::new([key.public_key()]);
    assert!(ours.verify_at(&token, now).is_ok());
    assert_eq!(
        ours.verify_at(&tampered, now).unwrap_err().code(),
        "unknown_key"
    );
    assert_eq!(
        Verifier::new([other.public_key()])
            .verify_at(&token, now)
            .unwrap_err()
            .code(),
        "unknown_key"
    );
}

#[test]
fn our_verifier_accepts_jsonwebtoken_tokens() {
    let key = PrivateKey::generate().unwrap();
    let now = SystemTime::now();
    let claims = realistic_claims(now);
    let encoding = EncodingKey::from_ec_pem(key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    let token = encode(&Header::new(Algorithm::ES384), &claims, &encoding).unwrap();
    let verified = Verifier::new([key.public_key()])
        .verify_at(&token, now)
        .unwrap();
    assert_eq!(verified.claims(), &claims);
}

#[test]
fn both_verifiers_refuse_an_expired_token() {
    let key = PrivateKey::generate().unwrap();
    let then = SystemTime::now() - Duration::from_secs(3600);
    let token = signer_for(&key, Backend::DEFAULT)
        .sign_at(&realistic_claims(then), then)
        .unwrap();
    let decoding = DecodingKey::from_ec_pem(key.public_key().to_pem().as_bytes()).unwrap();
    let err = decode::<serde_json::Value>(token.as_str(), &decoding, &jsonwebtoken_validation())
        .unwrap_err();
    assert_eq!(
        err.kind(),
        &jsonwebtoken::errors::ErrorKind::ExpiredSignature
    );
    assert_eq!(
        Verifier::new([key.public_key()])
            .verify(token.as_str())
            .unwrap_err()
            .code(),
        "expired"
    );
}
