//! Checks a playback token the way IVS does, and says why it fails.
//!
//! The order follows what the IVS edge can know at each step: the token's
//! shape, its header, its signature against the imported public keys, then
//! the claims (`exp`, the 10-minute rule, every claim's value) and the channel.
//! Each failure is a [`Rejection`] whose `Display` is a sentence a developer
//! can act on, and whose [`code`](Rejection::code) is stable for machines.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::claims::{
    ChannelArn, MILLISECONDS_THRESHOLD, PlaybackClaims, SHORT_LIVED_LIMIT, names, payload_map,
    unix_seconds,
};
use crate::error::ClaimError;
use crate::keys::{Fingerprint, PublicKey};
use crate::keyset::KeySet;
use crate::signing_key::SIGNATURE_LEN;

/// Verifies IVS playback tokens against a set of public keys.
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: Vec<VerifyingKey>,
    channel: Option<ChannelArn>,
    leeway: Duration,
}

#[derive(Clone, Debug)]
struct VerifyingKey {
    public: PublicKey,
    #[cfg(feature = "aws-lc-rs")]
    sec1_point: Box<[u8]>,
    #[cfg(not(feature = "aws-lc-rs"))]
    rust_crypto: p384::ecdsa::VerifyingKey,
}

impl Verifier {
    /// A verifier that accepts tokens signed by any of `keys`, as IVS accepts
    /// tokens signed by any key pair imported in the region.
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|public| VerifyingKey {
                    public: public.clone(),
                    #[cfg(feature = "aws-lc-rs")]
                    sec1_point: public.to_sec1_bytes(),
                    #[cfg(not(feature = "aws-lc-rs"))]
                    rust_crypto: p384::ecdsa::VerifyingKey::from(*public.p384()),
                })
                .collect(),
            channel: None,
            leeway: Duration::ZERO,
        }
    }

    /// A verifier for the active and retiring keys of a key set.
    pub fn for_key_set(set: &KeySet) -> Self {
        Self::new(set.public_keys())
    }

    /// Also require `aws:channel-arn` to be this channel (IVS checks the
    /// token against the channel being played).
    pub fn expect_channel(mut self, channel: ChannelArn) -> Self {
        self.channel = Some(channel);
        self
    }

    /// Tolerate clocks this far apart when checking `exp` (default none, like
    /// IVS).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The fingerprints of the keys tried.
    pub fn fingerprints(&self) -> impl Iterator<Item = &Fingerprint> {
        self.keys.iter().map(|k| k.public.fingerprint())
    }

    /// Verifies a token now.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, Rejection> {
        self.verify_at(token, SystemTime::now())
    }

    /// Verifies a token as of `now`.
    pub fn verify_at(&self, token: &str, now: SystemTime) -> Result<VerifiedToken, Rejection> {
        let token = token.trim();
        let segments: Vec<&str> = token.split('.').collect();
        if segments.len() != 3 {
            return Err(Rejection::Malformed(format!(
                "a JWS compact token has 3 segments separated by `.`, this one has {}",
                segments.len()
            )));
        }
        let [header_b64, payload_b64, signature_b64] = [segments[0], segments[1], segments[2]];
        let header = decode_segment("header", header_b64)?;
        check_header(&header)?;
        let signature = decode_segment("signature", signature_b64)?;
        if signature.len() != SIGNATURE_LEN {
            let der_hint =
                if signature.first() == Some(&0x30) && (100..=104).contains(&signature.len()) {
                    " (it looks DER-encoded; a JWS ES384 signature is the raw 96-byte r||s)"
                } else {
                    ""
                };
            return Err(Rejection::Malformed(format!(
                "the signature is {} bytes; ES384 signatures are {SIGNATURE_LEN} bytes{der_hint}",
                signature.len()
            )));
        }
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        let key = self
            .keys
            .iter()
            .find(|k| k.verifies(signing_input.as_bytes(), &signature))
            .ok_or_else(|| Rejection::UnknownKey {
                tried: self.fingerprints().copied().collect(),
            })?;
        let payload = decode_segment("payload", payload_b64)?;
        let map = payload_map(&payload).map_err(Rejection::InvalidClaim)?;
        // Said before the other claims are judged: it is the likeliest mistake.
        if let Some(exp) = map
            .get(names::EXP)
            .and_then(serde_json::Value::as_u64)
            .filter(|&e| e >= MILLISECONDS_THRESHOLD)
        {
            return Err(Rejection::ExpInMilliseconds { exp });
        }
        let (claims, unknown_claims) =
            PlaybackClaims::from_map(&map).map_err(Rejection::InvalidClaim)?;
        let now_s = unix_seconds(now);
        let exp = claims.expires_at().unix_seconds();
        if exp.saturating_add(self.leeway.as_secs()) <= now_s {
            return Err(Rejection::Expired {
                exp,
                ago: Duration::from_secs(now_s - exp),
            });
        }
        let limit = SHORT_LIVED_LIMIT + self.leeway;
        if claims.is_short_lived() && exp.saturating_sub(now_s) > limit.as_secs() {
            return Err(Rejection::ExpTooFarAhead {
                ahead: Duration::from_secs(exp - now_s),
                claim: if claims.viewer_id().is_some() {
                    names::VIEWER_ID
                } else {
                    names::SINGLE_USE_UUID
                },
            });
        }
        if let Some(expected) = self.channel.as_ref().filter(|c| *c != claims.channel_arn()) {
            return Err(Rejection::ChannelMismatch {
                expected: expected.clone(),
                actual: claims.channel_arn().clone(),
            });
        }
        Ok(VerifiedToken {
            claims,
            fingerprint: *key.public.fingerprint(),
            unknown_claims,
        })
    }
}

impl VerifyingKey {
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        #[cfg(feature = "aws-lc-rs")]
        {
            aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED,
                &self.sec1_point,
            )
            .verify(message, signature)
            .is_ok()
        }
        #[cfg(not(feature = "aws-lc-rs"))]
        {
            use p384::ecdsa::signature::Verifier as _;
            p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| self.rust_crypto.verify(message, &sig).is_ok())
        }
    }
}

fn decode_segment(which: &'static str, b64: &str) -> Result<Vec<u8>, Rejection> {
    if b64.is_empty() {
        return Err(Rejection::Malformed(format!(
            "the {which} segment is empty"
        )));
    }
    if b64.contains('=') {
        return Err(Rejection::Malformed(format!(
            "the {which} has base64 padding `=`; JWS uses base64url without padding"
        )));
    }
    if b64.contains(['+', '/']) {
        return Err(Rejection::Malformed(format!(
            "the {which} uses standard base64 (`+` or `/`); JWS uses base64url (`-` and `_`)"
        )));
    }
    URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|e| Rejection::Malformed(format!("the {which} is not valid base64url: {e}")))
}

fn check_header(header: &[u8]) -> Result<(), Rejection> {
    let value: serde_json::Value = serde_json::from_slice(header).map_err(|_| {
        Rejection::Malformed(format!(
            "the header is not JSON: {}",
            String::from_utf8_lossy(header)
        ))
    })?;
    let object = value
        .as_object()
        .ok_or_else(|| Rejection::Malformed("the header is not a JSON object".into()))?;
    match object.get("alg").and_then(serde_json::Value::as_str) {
        Some("ES384") => {}
        Some(alg) => return Err(Rejection::WrongAlgorithm(alg.to_owned())),
        None => return Err(Rejection::WrongAlgorithm("(missing)".to_owned())),
    }
    match object.get("typ") {
        None => {}
        Some(typ) if typ.as_str() == Some("JWT") => {}
        Some(typ) => {
            return Err(Rejection::UnexpectedHeader(format!(
                "`typ` is {typ}; IVS documents exactly {{\"alg\":\"ES384\",\"typ\":\"JWT\"}}"
            )));
        }
    }
    // IVS documents no other header member [OPEN]: refusing them keeps tokens
    // to what IVS is known to accept.
    if let Some(other) = object.keys().find(|k| *k != "alg" && *k != "typ") {
        return Err(Rejection::UnexpectedHeader(format!(
            "header member `{other}` is not part of the IVS token format, which is exactly {{\"alg\":\"ES384\",\"typ\":\"JWT\"}}"
        )));
    }
    Ok(())
}

/// A token that passed every check.
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    claims: PlaybackClaims,
    fingerprint: Fingerprint,
    unknown_claims: Vec<String>,
}

impl VerifiedToken {
    /// Its claims.
    pub fn claims(&self) -> &PlaybackClaims {
        &self.claims
    }

    /// The fingerprint of the key whose signature verified.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// Claims IVS does not document (they are ignored, but worth a look).
    pub fn unknown_claims(&self) -> &[String] {
        &self.unknown_claims
    }
}

/// Why a token was refused.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not a JWS compact token: segments, base64url or JSON are broken.
    Malformed(String),
    /// `alg` is not ES384 (`none`, `HS384`, `RS256`, ...).
    WrongAlgorithm(String),
    /// The header has members IVS does not document.
    UnexpectedHeader(String),
    /// The signature does not verify with any key of the set.
    UnknownKey {
        /// The fingerprints of the keys tried.
        tried: Vec<Fingerprint>,
    },
    /// `exp` is past.
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// How long ago it expired.
        ago: Duration,
    },
    /// `exp` is in milliseconds.
    ExpInMilliseconds {
        /// The token's `exp`.
        exp: u64,
    },
    /// `exp` is more than 10 minutes ahead on a viewer-id or single-use token.
    ExpTooFarAhead {
        /// How far ahead.
        ahead: Duration,
        /// The claim that imposes the limit.
        claim: &'static str,
    },
    /// A claim has a value IVS refuses, or a required claim is missing.
    InvalidClaim(ClaimError),
    /// The token is for another channel.
    ChannelMismatch {
        /// The channel being played.
        expected: ChannelArn,
        /// The channel in the token.
        actual: ChannelArn,
    },
}

impl Rejection {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::WrongAlgorithm(_) => "wrong_algorithm",
            Self::UnexpectedHeader(_) => "unexpected_header",
            Self::UnknownKey { .. } => "unknown_key",
            Self::Expired { .. } => "expired",
            Self::ExpInMilliseconds { .. } => "exp_in_milliseconds",
            Self::ExpTooFarAhead { .. } => "exp_too_far_ahead",
            Self::InvalidClaim(_) => "invalid_claim",
            Self::ChannelMismatch { .. } => "channel_mismatch",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "malformed token: {why}"),
            Self::WrongAlgorithm(alg) => write!(
                f,
                "wrong algorithm: the header says `alg` {alg}; IVS accepts only ES384 (ECDSA P-384 with SHA-384)"
            ),
            Self::UnexpectedHeader(why) => write!(f, "unexpected header: {why}"),
            Self::UnknownKey { tried } if tried.is_empty() => {
                f.write_str("the signature cannot be checked: no public keys are imported")
            }
            Self::UnknownKey { tried } => {
                write!(
                    f,
                    "the signature does not verify with any of the {} imported key(s) (fingerprints ",
                    tried.len()
                )?;
                for (i, fp) in tried.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{fp}")?;
                }
                f.write_str("): it was signed by another key, or altered after signing")
            }
            Self::Expired { exp, ago } => {
                write!(f, "expired: `exp` {exp} was {} ago", HumanDuration(*ago))
            }
            Self::ExpInMilliseconds { exp } => write!(
                f,
                "`exp` {exp} looks like milliseconds; IVS reads it as Unix seconds, so this token would never expire"
            ),
            Self::ExpTooFarAhead { ahead, claim } => write!(
                f,
                "`exp` is {} ahead; a token with {claim} may be valid for at most 10 minutes",
                HumanDuration(*ahead)
            ),
            Self::InvalidClaim(e) => write!(f, "invalid claim {e}"),
            Self::ChannelMismatch { expected, actual } => {
                write!(f, "the token is for channel {actual}, not {expected}")
            }
        }
    }
}

impl std::error::Error for Rejection {}

/// `3 h 2 min 5 s`, or `42 s`.
struct HumanDuration(Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
        let mut parts = Vec::new();
        if d > 0 {
            parts.push(format!("{d} d"));
        }
        if h > 0 {
            parts.push(format!("{h} h"));
        }
        if m > 0 {
            parts.push(format!("{m} min"));
        }
        if s > 0 || parts.is_empty() {
            parts.push(format!("{s} s"));
        }
        f.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::claims::{AllowedOrigins, ViewerId};
    use crate::keys::PrivateKey;
    use crate::signer::TokenSigner;
    use crate::signing_key::{Backend, SigningKey};

    const ARN: &str = "arn:aws:ivs:us-west-2:123456789012:channel/abcd";

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn setup() -> (PrivateKey, TokenSigner, Verifier) {
        let key = PrivateKey::generate().unwrap();
        let signer = TokenSigner::new(SigningKey::new(&key).unwrap());
        let verifier = Verifier::new([key.public_key()]);
        (key, signer, verifier)
    }

    fn claims() -> PlaybackClaims {
        PlaybackClaims::builder(ChannelArn::parse(ARN).unwrap())
            .viewer_id(ViewerId::parse("viewer").unwrap())
            .allowed_origins(AllowedOrigins::parse("https://a.com").unwrap())
            .expires_in(Duration::from_secs(300))
            .build_at(now())
            .unwrap()
    }

    /// Signs an arbitrary payload with the key, bypassing the builder, to
    /// test what the verifier says of tokens other issuers make.
    fn forge(key: &PrivateKey, header: &str, payload: &str) -> String {
        use p384::ecdsa::signature::Signer as _;
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let sk = p384::ecdsa::SigningKey::from(key.secret());
        let sig: p384::ecdsa::Signature = sk.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    const HEADER: &str = r#"{"alg":"ES384","typ":"JWT"}"#;

    #[test]
    fn accepts_a_fresh_token_from_every_backend() {
        let key = PrivateKey::generate().unwrap();
        let verifier =
            Verifier::new([key.public_key()]).expect_channel(ChannelArn::parse(ARN).unwrap());
        for &backend in Backend::ALL {
            let signer = TokenSigner::new(SigningKey::with_backend(&key, backend).unwrap());
            let token = signer.sign_at(&claims(), now()).unwrap();
            let verified = verifier.verify_at(token.as_str(), now()).unwrap();
            assert_eq!(verified.claims(), &claims());
            assert_eq!(verified.fingerprint(), key.fingerprint());
        }
    }

    #[test]
    fn explains_wrong_segment_count() {
        let (_, _, verifier) = setup();
        let err = verifier.verify_at("a.b", now()).unwrap_err();
        assert_eq!(err.code(), "malformed");
        assert!(err.to_string().contains("3 segments"), "{err}");
    }

    #[test]
    fn explains_bad_base64() {
        let (_, signer, verifier) = setup();
        let token = signer.sign_at(&claims(), now()).unwrap().into_string();
        let padded = token.replacen('.', "=.", 1);
        assert!(
            verifier
                .verify_at(&padded, now())
                .unwrap_err()
                .to_string()
                .contains("padding")
        );
        let std_b64 = format!("{}+", token);
        assert!(
            verifier
                .verify_at(&std_b64, now())
                .unwrap_err()
                .to_string()
                .contains("standard base64")
        );
        let garbage = token.replacen('.', "!.", 1);
        assert_eq!(
            verifier.verify_at(&garbage, now()).unwrap_err().code(),
            "malformed"
        );
    }

    #[test]
    fn rejects_tampered_payload_and_signature() {
        let (_, signer, verifier) = setup();
        let token = signer.sign_at(&claims(), now()).unwrap().into_string();
        let parts: Vec<&str> = token.split('.').collect();
        let mut payload = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
        let text = String::from_utf8(payload.clone())
            .unwrap()
            .replace("viewer", "victim");
        payload = text.into_bytes();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(&payload),
            parts[2]
        );
        assert_eq!(
            verifier.verify_at(&tampered, now()).unwrap_err().code(),
            "unknown_key"
        );
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[10] ^= 1;
        let tampered = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(
            verifier.verify_at(&tampered, now()).unwrap_err().code(),
            "unknown_key"
        );
    }

    #[test]
    fn names_the_fingerprints_tried_for_another_key() {
        let (key, _, _) = setup();
        let other = PrivateKey::generate().unwrap();
        let verifier = Verifier::new([other.public_key()]);
        let token = TokenSigner::new(SigningKey::new(&key).unwrap())
            .sign_at(&claims(), now())
            .unwrap();
        let err = verifier.verify_at(token.as_str(), now()).unwrap_err();
        assert_eq!(
            err,
            Rejection::UnknownKey {
                tried: vec![*other.fingerprint()]
            }
        );
        assert!(err.to_string().contains(&other.fingerprint().to_string()));
        let empty = Verifier::new([]);
        assert!(
            empty
                .verify_at(token.as_str(), now())
                .unwrap_err()
                .to_string()
                .contains("no public keys")
        );
    }

    #[test]
    fn rejects_alg_none_and_hs384() {
        let (_, signer, verifier) = setup();
        let token = signer.sign_at(&claims(), now()).unwrap().into_string();
        let payload = token.split('.').nth(1).unwrap();
        for alg in ["none", "HS384", "RS256", "ES256"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            let forged = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode([0u8; 48]));
            let err = verifier.verify_at(&forged, now()).unwrap_err();
            assert_eq!(err, Rejection::WrongAlgorithm(alg.into()));
        }
        let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert_eq!(
            verifier.verify_at(&none, now()).unwrap_err().code(),
            "wrong_algorithm"
        );
    }

    #[test]
    fn rejects_kid_and_other_header_members() {
        let (key, _, verifier) = setup();
        let payload = claims().to_json();
        let token = forge(&key, r#"{"alg":"ES384","typ":"JWT","kid":"k1"}"#, &payload);
        let err = verifier.verify_at(&token, now()).unwrap_err();
        assert_eq!(err.code(), "unexpected_header");
        assert!(err.to_string().contains("kid"));
        // Member order and absent typ are fine.
        let token = forge(&key, r#"{"typ":"JWT","alg":"ES384"}"#, &payload);
        assert!(verifier.verify_at(&token, now()).is_ok());
    }

    #[test]
    fn says_how_long_ago_a_token_expired() {
        let (_, signer, verifier) = setup();
        let token = signer.sign_at(&claims(), now()).unwrap();
        let later = now() + Duration::from_secs(300 + 3725);
        let err = verifier.verify_at(token.as_str(), later).unwrap_err();
        assert_eq!(err.code(), "expired");
        assert!(err.to_string().contains("1 h 2 min 5 s ago"), "{err}");
        assert!(
            verifier
                .clone()
                .leeway(Duration::from_secs(4000))
                .verify_at(token.as_str(), later)
                .is_ok()
        );
        // exp == now is expired, as in every JWT library.
        assert!(
            verifier
                .verify_at(token.as_str(), now() + Duration::from_secs(300))
                .is_err()
        );
    }

    #[test]
    fn recognises_exp_in_milliseconds() {
        let (key, _, verifier) = setup();
        let token = forge(
            &key,
            HEADER,
            &format!(r#"{{"aws:channel-arn":"{ARN}","exp":1800000300000}}"#),
        );
        let err = verifier.verify_at(&token, now()).unwrap_err();
        assert_eq!(err.code(), "exp_in_milliseconds");
        assert!(err.to_string().contains("never expire"));
    }

    #[test]
    fn refuses_viewer_tokens_valid_for_over_ten_minutes() {
        let (key, _, verifier) = setup();
        let token = forge(
            &key,
            HEADER,
            &format!(r#"{{"aws:channel-arn":"{ARN}","aws:viewer-id":"v","exp":1800000900}}"#),
        );
        let err = verifier.verify_at(&token, now()).unwrap_err();
        assert_eq!(err.code(), "exp_too_far_ahead");
        assert!(err.to_string().contains("15 min"), "{err}");
        let token = forge(
            &key,
            HEADER,
            &format!(
                r#"{{"aws:channel-arn":"{ARN}","aws:single-use-uuid":"6a1a9c5e-0d3b-4c2f-9f4f-0b1f0e3c2a11","exp":1800000601}}"#
            ),
        );
        assert!(
            verifier
                .verify_at(&token, now())
                .unwrap_err()
                .to_string()
                .contains("aws:single-use-uuid")
        );
    }

    #[test]
    fn names_the_claim_at_fault() {
        let (key, _, verifier) = setup();
        for (payload, claim) in [
            (
                format!(
                    r#"{{"aws:channel-arn":"{ARN}","aws:viewer-id":"{}","exp":1800000060}}"#,
                    "x".repeat(41)
                ),
                names::VIEWER_ID,
            ),
            (
                format!(
                    r#"{{"aws:channel-arn":"{ARN}","aws:access-control-allow-origin":"https://a.com/path","exp":1800000060}}"#
                ),
                names::ALLOW_ORIGIN,
            ),
            (
                format!(
                    r#"{{"aws:channel-arn":"{ARN}","aws:maximum-resolution":"4K","exp":1800000060}}"#
                ),
                names::MAXIMUM_RESOLUTION,
            ),
            (
                r#"{"aws:channel-arn":"arn:aws:ivs:us-west-2:1:stream-key/x","exp":1800000060}"#
                    .to_owned(),
                names::CHANNEL_ARN,
            ),
            (format!(r#"{{"aws:channel-arn":"{ARN}"}}"#), names::EXP),
        ] {
            let err = verifier
                .verify_at(&forge(&key, HEADER, &payload), now())
                .unwrap_err();
            match &err {
                Rejection::InvalidClaim(e) => assert_eq!(e.claim(), claim, "{err}"),
                other => panic!("{payload}: {other}"),
            }
            assert!(err.to_string().contains(claim));
        }
    }

    #[test]
    fn refuses_a_token_for_another_channel() {
        let (key, signer, _) = setup();
        let other = ChannelArn::parse("arn:aws:ivs:us-west-2:123456789012:channel/other").unwrap();
        let verifier = Verifier::new([key.public_key()]).expect_channel(other);
        let token = signer.sign_at(&claims(), now()).unwrap();
        let err = verifier.verify_at(token.as_str(), now()).unwrap_err();
        assert_eq!(err.code(), "channel_mismatch");
        assert!(err.to_string().contains("channel/other"));
    }

    #[test]
    fn explains_a_der_signature() {
        let (key, _, verifier) = setup();
        let token = forge(&key, HEADER, &claims().to_json());
        let (input, _) = token.rsplit_once('.').unwrap();
        let der = [0x30u8; 103];
        let bad = format!("{input}.{}", URL_SAFE_NO_PAD.encode(der));
        assert!(
            verifier
                .verify_at(&bad, now())
                .unwrap_err()
                .to_string()
                .contains("DER")
        );
    }

    #[test]
    fn verifies_tokens_of_retiring_keys() {
        let old = SigningKey::new(&PrivateKey::generate().unwrap()).unwrap();
        let shared = crate::keyset::SharedKeySet::new(KeySet::new(old));
        let signer = TokenSigner::from_shared(shared.clone());
        let before = signer.sign_at(&claims(), now()).unwrap();
        shared.rotate_to(SigningKey::new(&PrivateKey::generate().unwrap()).unwrap());
        let after = signer.sign_at(&claims(), now()).unwrap();
        let verifier = Verifier::for_key_set(&shared.snapshot());
        assert!(verifier.verify_at(before.as_str(), now()).is_ok());
        assert!(verifier.verify_at(after.as_str(), now()).is_ok());
        assert_ne!(before.fingerprint(), after.fingerprint());
    }
}
